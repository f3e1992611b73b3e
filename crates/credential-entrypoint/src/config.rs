//! Fail-closed validation of the command line into [`Settings`]: every
//! missing or malformed value is one clear error, and nothing has started.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ambient_protocol::exchange::Protocol;
use ambient_protocol::exchanger::ExchangerConfig;
use ambient_protocol::keys::PublicKey;
use ambient_protocol::provider::Provider;
use ambient_protocol::url_policy;
use reqwest::Url;

use crate::cli::{Cli, ExchangeProtocol, Invocation, OnRotate, PlatformMode};

/// A configuration the entrypoint refuses to start with. Never carries a
/// secret or the public key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required (set --{1} or ${2})")]
    Missing(&'static str, &'static str, &'static str),
    #[error("a command to run is required: credential-entrypoint [options] <command> [args...]")]
    NoCommand,
    #[error("{0}")]
    Provider(String),
    #[error("CREDENTIAL_IDS is not a JSON object of provider to credential ID")]
    CredentialIds,
    #[error("CREDENTIAL_IDS has no credential ID for provider {0}")]
    NoCredentialId(Provider),
    #[error("the credential ID for provider {0} is not of the form [A-Za-z0-9_-]+")]
    BadCredentialId(Provider),
    #[error("AMBIENT_API_URL refused: {0}")]
    ApiUrl(url_policy::UrlError),
    #[error("AMBIENT_CP_TOKEN_URL refused: {0}")]
    TokenUrl(url_policy::UrlError),
    #[error("AMBIENT_CP_TOKEN_PUBLIC_KEY is not a usable public key: {0}")]
    PublicKey(String),
    #[error("--refresh-interval must be at least 1 second")]
    RefreshInterval,
    #[error("CREDENTIAL_MCP_ALLOWED_PEERS refused: {0}")]
    McpPeers(String),
    #[error("{0} must be at least 1")]
    AtLeastOne(&'static str),
}

/// Everything the entrypoint needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub provider: Provider,
    pub credential_id: String,
    pub api_url: Url,
    pub exchanger: ExchangerConfig,
    pub mpp: bool,
    pub refresh_interval: Duration,
    pub on_rotate: OnRotate,
    pub grace_period: Duration,
    pub kubeconfig_path: PathBuf,
    pub mpp_config_path: PathBuf,
    pub files_dir: PathBuf,
    pub serve_mcp: Option<ambient_mcp_http::ListenAddr>,
    /// How `--serve-mcp` serves (peers, session cap, idle timeout).
    pub mcp: ambient_mcp_http::HttpConfig,
    pub command: Vec<OsString>,
}

impl Settings {
    /// Validates an invocation.
    pub fn from_invocation(inv: Invocation) -> Result<Settings, ConfigError> {
        let Invocation { cli, command } = inv;
        if command.is_empty() {
            return Err(ConfigError::NoCommand);
        }
        let session_id = required(
            &cli.session_id,
            "the session ID",
            "session-id",
            "SESSION_ID",
        )?;
        let provider = provider(&cli)?;
        let credential_id = credential_id(&cli, provider)?;
        let api_url = api_url(
            required(&cli.api_url, "the API URL", "api-url", "AMBIENT_API_URL")?,
            &cli.allow_hosts,
        )?;
        let token_url = required(
            &cli.token_url,
            "the token URL",
            "token-url",
            "AMBIENT_CP_TOKEN_URL",
        )?;
        url_policy::token_url(token_url).map_err(ConfigError::TokenUrl)?;
        let pem = required(
            &cli.public_key,
            "the control plane public key",
            "public-key",
            "AMBIENT_CP_TOKEN_PUBLIC_KEY",
        )?;
        let public_key =
            PublicKey::from_pem(pem).map_err(|e| ConfigError::PublicKey(e.to_string()))?;
        if cli.refresh_seconds == 0 {
            return Err(ConfigError::RefreshInterval);
        }
        let mut exchanger = ExchangerConfig::new(token_url, public_key, session_id);
        exchanger.protocol = match cli.exchange_protocol {
            ExchangeProtocol::V1 => Protocol::V1,
            ExchangeProtocol::V2 => Protocol::V2,
        };
        exchanger.session_key_file = cli.session_key_file.clone();
        let mcp = mcp_config(&cli)?;
        let files_dir = cli.files_dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("ambient-credentials-{}", std::process::id()))
        });
        Ok(Settings {
            provider,
            credential_id,
            api_url,
            exchanger,
            mpp: cli.platform_mode == PlatformMode::Mpp,
            refresh_interval: cli.refresh_interval(),
            on_rotate: cli.on_rotate,
            grace_period: cli.grace_period(),
            kubeconfig_path: cli.kubeconfig_path,
            mpp_config_path: cli.mpp_config_path,
            files_dir,
            serve_mcp: cli.serve_mcp,
            mcp,
            command,
        })
    }
}

/// How `--serve-mcp` serves: loopback names, the peers, the cap and the idle timeout.
fn mcp_config(cli: &Cli) -> Result<ambient_mcp_http::HttpConfig, ConfigError> {
    let peers = ambient_mcp_http::AllowedPeers::new(&cli.mcp_allow_peers)
        .map_err(|e| ConfigError::McpPeers(e.to_string()))?;
    if cli.mcp_max_sessions == 0 {
        return Err(ConfigError::AtLeastOne("--mcp-max-sessions"));
    }
    if cli.mcp_idle_seconds == 0 {
        return Err(ConfigError::AtLeastOne("--mcp-idle-timeout"));
    }
    Ok(ambient_mcp_http::HttpConfig {
        guard: ambient_mcp_http::Guard {
            peers,
            ..ambient_mcp_http::Guard::default()
        },
        max_sessions: cli.mcp_max_sessions,
        idle_timeout: Duration::from_secs(cli.mcp_idle_seconds),
        ..ambient_mcp_http::HttpConfig::default()
    })
}

fn required<'a>(
    value: &'a Option<String>,
    what: &'static str,
    flag: &'static str,
    var: &'static str,
) -> Result<&'a str, ConfigError> {
    match value.as_deref().map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(what, flag, var)),
    }
}

fn provider(cli: &Cli) -> Result<Provider, ConfigError> {
    let raw = required(
        &cli.provider,
        "the credential provider",
        "provider",
        "CREDENTIAL_PROVIDER",
    )?;
    let provider = Provider::parse(raw).map_err(|e| ConfigError::Provider(e.to_string()))?;
    if provider.sidecar().is_none() {
        return Err(ConfigError::Provider(format!(
            "provider {provider} has no credential sidecar"
        )));
    }
    Ok(provider)
}

fn credential_id(cli: &Cli, provider: Provider) -> Result<String, ConfigError> {
    let raw = required(
        &cli.credential_ids,
        "the credential IDs",
        "credential-ids",
        "CREDENTIAL_IDS",
    )?;
    let ids: BTreeMap<String, String> =
        serde_json::from_str(raw).map_err(|_| ConfigError::CredentialIds)?;
    let id = ids
        .get(provider.as_str())
        .ok_or(ConfigError::NoCredentialId(provider))?;
    let well_formed = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !well_formed {
        return Err(ConfigError::BadCredentialId(provider));
    }
    Ok(id.clone())
}

/// The API URL, accepted when the protocol crate's cluster-local rule
/// accepts it, or when its *parsed* host (the one connected to) is one of
/// the explicitly allowed hosts.
pub fn api_url(raw: &str, allow_hosts: &[String]) -> Result<Url, ConfigError> {
    let parsed = url_policy::token_url(raw).map_err(ConfigError::ApiUrl)?;
    if let Some(host) = parsed.host_str()
        && allow_hosts
            .iter()
            .any(|h| !h.is_empty() && h.trim_matches(['[', ']']) == host.trim_matches(['[', ']']))
    {
        return Ok(parsed);
    }
    // The rule looks at the host as written; the host connected to is the
    // parsed one, so both must pass (parser-confusion inputs differ).
    let url = url_policy::cluster_local(raw).map_err(ConfigError::ApiUrl)?;
    match url.host_str() {
        Some(host) if url_policy::is_cluster_local_host(host) => Ok(url),
        host => Err(ConfigError::ApiUrl(url_policy::UrlError::NotClusterLocal(
            host.unwrap_or_default().to_owned(),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// quality.md's host table: every one of these is refused.
    #[test]
    fn cluster_local_rule_refuses_the_quality_host_table() {
        for bad in [
            "http://evil.svc.example.com",
            "http://svc",
            "http://a..svc",
            "http://10.0.0.1:8000",
            "http://169.254.169.254/",
            "http://[fe80::1]/",
            "http://X.SVC",
            "http://api.NS.svc",
            "http://x.svc./",
            "http://x.svc.cluster.local./",
            "http://user:pw@x.svc/",
            "http://user@localhost/",
            "http:evil.com/://x.svc/",
            "http:/evil.com/://x.svc",
            "http:\\\\evil.com\\://api.ns.svc:8000/",
            "HTTP:evil.com/://localhost",
            "http://evil.com\\@x.svc/",
            "http://x.svc\\@evil.com/",
            "http://evil.com\t.svc/",
            "http://x.svc\r\n.evil.com/",
            " http://evil.com/ http://x.svc",
            "http://evil.com#@x.svc",
            "http://evil.com?@x.svc",
        ] {
            let got = api_url(bad, &[]);
            assert!(got.is_err(), "{bad:?} was accepted as {got:?}");
        }
        for ok in [
            "http://ambient-api-server.ambient-code.svc:8000",
            "http://api.ns.svc.cluster.local:8000/",
            "http://localhost:8000",
            "http://127.0.0.1:8000",
            "http://[::1]:8000",
        ] {
            assert!(api_url(ok, &[]).is_ok(), "{ok}");
        }
    }

    #[test]
    fn allow_host_matches_the_parsed_host_only() {
        let allow = vec!["127.0.0.2".to_owned()];
        assert!(api_url("http://127.0.0.2:9/", &allow).is_ok());
        // The naive reading says 127.0.0.2, the parser says evil.com.
        assert!(api_url("http:evil.com/://127.0.0.2/", &allow).is_err());
        assert!(api_url("http://127.0.0.3/", &allow).is_err());
        assert!(api_url("http://u:p@127.0.0.2/", &allow).is_err());
    }
}
