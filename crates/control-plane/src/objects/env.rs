//! The environment of each container of a session pod (wire.md §5), with
//! the reference's values: what the runner and the sidecar images read.

use std::collections::BTreeMap;

use ambient_protocol::env;
use ambient_protocol::provider::Provider;
use ambient_protocol::v1::Session;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use super::{BuildError, PodConfig, PromptSources, SessionInput};
use crate::names;

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn proxy_env(cfg: &PodConfig, out: &mut Vec<EnvVar>) {
    for (name, value) in [
        (env::HTTP_PROXY, &cfg.http_proxy),
        (env::HTTPS_PROXY, &cfg.https_proxy),
        (env::NO_PROXY, &cfg.no_proxy),
    ] {
        if let Some(v) = value {
            out.push(plain(name, v.clone()));
            out.push(plain(&name.to_lowercase(), v.clone()));
        }
    }
}

fn exchange_env(cfg: &PodConfig, key_pem: Option<&str>, out: &mut Vec<EnvVar>) {
    if let Some(url) = &cfg.token_url {
        out.push(plain(env::AMBIENT_CP_TOKEN_URL, url.clone()));
    }
    if let Some(pem) = key_pem {
        out.push(plain(env::AMBIENT_CP_TOKEN_PUBLIC_KEY, pem));
    }
}

/// A float as Go's `%g` prints it (the reference formats `LLM_TEMPERATURE`
/// so): the shortest digits that round-trip, in exponent form (`1e-05`,
/// `1.5e+06`) when the exponent is below -4 or at least 6.
pub fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return f.to_string();
    }
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    if !(-4..6).contains(&exp) {
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{mantissa}e{exp_sign}{:02}", exp.abs());
    }
    let digits = mantissa.replace('.', "");
    let fixed = match usize::try_from(exp) {
        Err(_) => format!("0.{}{digits}", "0".repeat(exp.unsigned_abs() as usize - 1)),
        Ok(e) if digits.len() <= e + 1 => format!("{digits}{}", "0".repeat(e + 1 - digits.len())),
        Ok(e) => format!("{}.{}", &digits[..=e], &digits[e + 1..]),
    };
    format!("{sign}{fixed}")
}

/// `INITIAL_PROMPT`: the non-empty of the project prompt, the agent prompt,
/// the agent's unread inbox messages and the session prompt, joined by
/// blank lines.
pub fn initial_prompt(session: &Session, sources: &PromptSources) -> String {
    let parts = [
        sources.project_prompt.as_deref(),
        sources.agent_prompt.as_deref(),
    ]
    .into_iter()
    .flatten()
    .chain(sources.inbox.iter().map(String::as_str))
    .chain(session.prompt.as_deref());
    parts
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// Whether `name` is one of the platform's variables, which a session's
/// `environment_variables` may not set even where the platform sets
/// nothing: `AMBIENT_*` and `CREDENTIAL_*` (a `CREDENTIAL_IDS` of the
/// user's would name credentials the session was never given, and the
/// session gateway reads the delivered ones from the pod).
pub fn is_reserved(name: &str) -> bool {
    name.starts_with("AMBIENT_") || name.starts_with("CREDENTIAL_")
}

/// The runner's environment: the user's `environment_variables` first, then
/// ours (ours wins on a clash).
pub(super) fn runner_env(
    cfg: &PodConfig,
    input: SessionInput<'_>,
    id: &str,
    ns: &str,
    sidecars: &[(Provider, &'static str, u16, &str)],
    mcp: bool,
) -> Result<Vec<EnvVar>, BuildError> {
    let session = input.session;
    let key_pem = input.public_key_pem.filter(|k| !k.is_empty());
    let use_vertex = if cfg.vertex.is_some() { "1" } else { "0" };
    let mut ours = vec![
        plain(env::SESSION_ID, id),
        plain(env::AGENTIC_SESSION_NAME, session.name.clone()),
        plain(env::AGENTIC_SESSION_NAMESPACE, ns),
        plain(
            env::PROJECT_NAME,
            session.project_id.clone().unwrap_or_default(),
        ),
        plain(env::AGENT_ID, session.agent_id.clone().unwrap_or_default()),
        plain(env::WORKSPACE_PATH, names::WORKSPACE_PATH),
        plain(env::ARTIFACTS_DIR, names::ARTIFACTS_DIR),
        plain(env::AGUI_PORT, names::AGUI_PORT.to_string()),
        plain(env::USE_AGUI, "true"),
        plain(env::LOG_LEVEL, cfg.runner_log_level.clone()),
        plain(env::BACKEND_API_URL, cfg.backend_api_url.clone()),
        plain(env::USE_VERTEX, use_vertex),
        plain(env::CLAUDE_CODE_USE_VERTEX, use_vertex),
        plain(env::AMBIENT_GRPC_URL, cfg.grpc_url.clone()),
        plain(
            env::AMBIENT_GRPC_ENABLED,
            (!cfg.grpc_url.is_empty()).to_string(),
        ),
        plain(env::AMBIENT_GRPC_USE_TLS, cfg.grpc_use_tls.to_string()),
        plain(env::AMBIENT_GRPC_CA_CERT_FILE, names::SERVICE_CA_PATH),
        plain(env::SSL_CERT_FILE, names::SERVICE_CA_PATH),
        plain(env::REQUESTS_CA_BUNDLE, names::SERVICE_CA_PATH),
    ];
    exchange_env(cfg, key_pem, &mut ours);
    if session.start_time.is_some() {
        ours.push(plain(env::IS_RESUME, "true"));
        if let Some(seq) = input.last_seq {
            ours.push(plain(env::RESUME_AFTER_SEQ, seq.to_string()));
        }
    }
    if cfg.anthropic_api_key.is_some() {
        ours.push(from_secret(
            env::ANTHROPIC_API_KEY,
            &names::secret_name(id),
            env::ANTHROPIC_API_KEY,
        ));
    }
    if mcp {
        ours.push(plain(
            env::AMBIENT_MCP_URL,
            format!("http://localhost:{}", names::MCP_PORT),
        ));
    }
    if let Some(v) = &cfg.vertex {
        ours.extend([
            plain(
                env::ANTHROPIC_VERTEX_PROJECT_ID,
                v.project_id.clone().unwrap_or_default(),
            ),
            plain(env::CLOUD_ML_REGION, v.region.clone()),
            plain(
                env::GOOGLE_APPLICATION_CREDENTIALS,
                v.credentials_path.clone(),
            ),
            plain(env::GCE_METADATA_HOST, "metadata.invalid"),
            plain(env::GCE_METADATA_TIMEOUT, "1"),
        ]);
    }
    let prompt = initial_prompt(session, input.prompt);
    if !prompt.is_empty() {
        ours.push(plain(env::INITIAL_PROMPT, prompt));
    }
    session_settings(session, &mut ours);
    proxy_env(cfg, &mut ours);
    credential_urls(input.credentials, sidecars, &mut ours);

    let mut runner: Vec<EnvVar> = user_environment(session)
        .into_iter()
        .filter(|(k, _)| !ours.iter().any(|o| &o.name == k))
        .filter(|(k, _)| {
            let reserved = is_reserved(k);
            if reserved {
                tracing::warn!(
                    session = %id,
                    variable = %k,
                    "a session's environment_variables cannot set a variable of the platform's; dropped"
                );
            }
            !reserved
        })
        .map(|(k, v)| plain(&k, v))
        .collect();
    runner.extend(ours);
    Ok(runner)
}

/// The session's model settings: `LLM_MODEL` when set, the numbers only
/// when non-zero; `REPOS_JSON` from `repo_url` (else the session's `repos`).
fn session_settings(session: &Session, out: &mut Vec<EnvVar>) {
    if let Some(m) = session.llm_model.as_deref().filter(|m| !m.is_empty()) {
        out.push(plain(env::LLM_MODEL, m));
    }
    if let Some(t) = session.llm_temperature.filter(|t| *t != 0.0) {
        out.push(plain(env::LLM_TEMPERATURE, go_float(t)));
    }
    if let Some(t) = session.llm_max_tokens.filter(|t| *t != 0) {
        out.push(plain(env::LLM_MAX_TOKENS, t.to_string()));
    }
    if let Some(t) = session.timeout.filter(|t| *t != 0) {
        out.push(plain(env::TIMEOUT, t.to_string()));
    }
    if let Some(url) = session.repo_url.as_deref().filter(|u| !u.is_empty()) {
        let repos = serde_json::json!([{ "url": url }]);
        out.push(plain(env::REPOS_JSON, repos.to_string()));
    } else if let Some(r) = session.repos.as_deref().filter(|r| !r.is_empty()) {
        out.push(plain(env::REPOS_JSON, r));
    }
}

/// `CREDENTIAL_MCP_URLS` (+ `CREDENTIAL_SIDECAR_MODE`) when sidecars run,
/// else `CREDENTIAL_IDS` when credentials were resolved.
fn credential_urls(
    credentials: &BTreeMap<Provider, String>,
    sidecars: &[(Provider, &'static str, u16, &str)],
    out: &mut Vec<EnvVar>,
) {
    if !sidecars.is_empty() {
        // No path: the runner appends `/sse` itself.
        let urls: BTreeMap<&str, String> = sidecars
            .iter()
            .map(|(p, _, port, _)| (p.as_str(), format!("http://localhost:{port}")))
            .collect();
        out.push(plain(
            env::CREDENTIAL_MCP_URLS,
            serde_json::to_string(&urls).unwrap_or_default(),
        ));
        out.push(plain(env::CREDENTIAL_SIDECAR_MODE, "true"));
    } else if !credentials.is_empty() {
        let ids: BTreeMap<&str, &str> = credentials
            .iter()
            .map(|(p, id)| (p.as_str(), id.as_str()))
            .collect();
        out.push(plain(
            env::CREDENTIAL_IDS,
            serde_json::to_string(&ids).unwrap_or_default(),
        ));
    }
}

/// The `ambient-mcp` sidecar's environment.
pub(super) fn mcp_env(cfg: &PodConfig, id: &str, key_pem: Option<&str>) -> Vec<EnvVar> {
    let mut e = vec![
        plain(env::MCP_TRANSPORT, "sse"),
        plain(env::MCP_BIND_ADDR, format!("127.0.0.1:{}", names::MCP_PORT)),
        plain(env::AMBIENT_API_URL, cfg.sidecar_api_url.clone()),
        plain(env::SESSION_ID, id),
        plain(env::SSL_CERT_FILE, names::SERVICE_CA_PATH),
    ];
    exchange_env(cfg, key_pem, &mut e);
    proxy_env(cfg, &mut e);
    e
}

/// A credential sidecar's environment: its one credential, nothing else.
pub(super) fn credential_env(
    cfg: &PodConfig,
    input: SessionInput<'_>,
    id: &str,
    ns: &str,
    provider: Provider,
    key_pem: Option<&str>,
) -> Result<Vec<EnvVar>, BuildError> {
    let credential = input
        .credentials
        .get(&provider)
        .cloned()
        .unwrap_or_default();
    let ids = BTreeMap::from([(provider.as_str(), credential)]);
    let mut e = vec![
        plain(env::SESSION_ID, id),
        plain(env::CREDENTIAL_PROVIDER, provider.as_str()),
        plain(
            env::CREDENTIAL_IDS,
            serde_json::to_string(&ids).unwrap_or_default(),
        ),
        plain(env::AGENTIC_SESSION_NAMESPACE, ns),
        plain(env::AMBIENT_API_URL, cfg.sidecar_api_url.clone()),
        plain(env::PLATFORM_MODE, cfg.platform_mode.as_str()),
        plain(env::SSL_CERT_FILE, names::SERVICE_CA_PATH),
    ];
    if let Some(m) = &cfg.mpp_config_namespace {
        e.push(plain(env::MPP_CONFIG_NAMESPACE, m.clone()));
    }
    if provider == Provider::Jira {
        if let Some(v) = user_environment(input.session).get(env::JIRA_READ_ONLY_MODE) {
            e.push(plain(env::JIRA_READ_ONLY_MODE, v.clone()));
        }
        // For any entrypoint (the reference's passes its environment on):
        // mcp-atlassian 0.23 answers every request 401 without it. Ours
        // sets it too; see its `mapping::ALLOW_GLOBAL_CRED_FALLBACK`.
        e.push(plain(env::ALLOW_GLOBAL_CRED_FALLBACK, "true"));
    }
    exchange_env(cfg, key_pem, &mut e);
    proxy_env(cfg, &mut e);
    Ok(e)
}

/// The session's `environment_variables` (a JSON object; non-string values
/// as their JSON text). A value that is no JSON object reads as none, as
/// the reference reads it: the session starts, and the reconciler reports
/// it ([`environment_problem`]).
pub fn user_environment(session: &Session) -> BTreeMap<String, String> {
    parse_environment(session).unwrap_or_default()
}

/// Why the session's `environment_variables` is ignored, when it is.
pub fn environment_problem(session: &Session) -> Option<String> {
    parse_environment(session).err()
}

fn parse_environment(session: &Session) -> Result<BTreeMap<String, String>, String> {
    match session.environment_variables.as_deref().map(str::trim) {
        None | Some("") => Ok(BTreeMap::new()),
        Some(raw) => {
            let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
            let obj = value.as_object().ok_or("not a JSON object")?;
            Ok(obj
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k.clone(), s.clone()),
                    other => (k.clone(), other.to_string()),
                })
                .collect())
        }
    }
}
