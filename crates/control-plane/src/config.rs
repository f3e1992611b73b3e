//! Configuration: every environment variable of the wire contract (§5), each
//! with a matching flag. [`Config::validate`] turns the raw flags into a
//! [`Settings`] or one clear line saying what is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ambient_protocol::Secret;
use ambient_protocol::env;
use clap::{Args, ValueEnum};

/// Platform mode: how session namespaces are named and provisioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformMode {
    /// Namespace `lower(project_id)`, created by the control plane.
    Standard,
    /// Namespace `ambient-code--<lower(project_id)>`, provisioned by the platform.
    Mpp,
}

impl PlatformMode {
    /// The wire string (`standard` / `mpp`).
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformMode::Standard => "standard",
            PlatformMode::Mpp => "mpp",
        }
    }
}

pub use ambient_daemon::LogFormat;

/// The control plane's settings, as flags and environment variables.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// REST base URL of the ambient API server (passed to sessions as BACKEND_API_URL default).
    #[arg(long, env = env::AMBIENT_API_SERVER_URL, default_value = "http://localhost:8000")]
    pub api_server_url: String,

    /// Static bearer token for the API server (or use the OIDC settings).
    #[arg(long, env = env::AMBIENT_API_TOKEN, hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// File holding the static bearer token (alternative to --api-token).
    #[arg(long, env = "AMBIENT_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,

    /// OIDC token endpoint for client-credentials authentication (https;
    /// plain http only with --allow-insecure-oidc).
    #[arg(long, env = env::OIDC_TOKEN_URL)]
    pub oidc_token_url: Option<String>,

    /// Accept a plain-http OIDC token URL (the client secret then crosses the
    /// network unencrypted; for local development only).
    #[arg(long, env = "OIDC_ALLOW_INSECURE")]
    pub allow_insecure_oidc: bool,

    /// OIDC client ID.
    #[arg(long, env = env::OIDC_CLIENT_ID)]
    pub oidc_client_id: Option<String>,

    /// OIDC client secret. Prefer --oidc-client-secret-file: a value on the
    /// command line is visible in the process list.
    #[arg(long, env = env::OIDC_CLIENT_SECRET, hide_env_values = true)]
    pub oidc_client_secret: Option<Secret>,

    /// File holding the OIDC client secret (alternative to --oidc-client-secret).
    #[arg(long, env = "OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// gRPC address of the API server (host:port or URL).
    #[arg(long = "grpc-server-addr", env = env::AMBIENT_GRPC_SERVER_ADDR, default_value = "localhost:8001")]
    pub grpc_server_addr: String,

    /// Use TLS for gRPC (to the API server, and told to runners).
    #[arg(long, env = env::AMBIENT_GRPC_USE_TLS, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub grpc_use_tls: bool,

    /// CA file to trust for gRPC TLS (besides the system roots).
    #[arg(long, env = env::AMBIENT_GRPC_CA_CERT_FILE)]
    pub grpc_ca_cert_file: Option<PathBuf>,

    /// Log level filter (error, warn, info, debug, trace, or a tracing filter).
    #[arg(long, env = env::LOG_LEVEL, default_value = "info")]
    pub log_level: String,

    /// Log format on stderr.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Kubeconfig file (in-cluster configuration when unset).
    #[arg(long, env = env::KUBECONFIG)]
    pub kubeconfig: Option<PathBuf>,

    /// Platform mode.
    #[arg(long, env = env::PLATFORM_MODE, value_enum, default_value_t = PlatformMode::Standard)]
    pub platform_mode: PlatformMode,

    /// Namespace holding the MPP configuration (mpp mode).
    #[arg(long, env = env::MPP_CONFIG_NAMESPACE)]
    pub mpp_config_namespace: Option<String>,

    /// Namespace the control plane runs in (keypair Secret, Lease, network policy source).
    /// Falls back to NAMESPACE, then `ambient-code`.
    #[arg(long, env = env::CP_RUNTIME_NAMESPACE)]
    pub runtime_namespace: Option<String>,

    /// ID of this installation, labelled on every object it manages: two
    /// installations in one cluster never touch each other's objects.
    /// Defaults to the runtime namespace.
    #[arg(long, env = env::CP_INSTALLATION_ID)]
    pub installation_id: Option<String>,

    /// Fallback for --runtime-namespace.
    #[arg(long = "namespace", env = env::NAMESPACE, hide = true)]
    pub namespace_fallback: Option<String>,

    /// Image of the session runner container.
    #[arg(long, env = env::RUNNER_IMAGE, default_value = "quay.io/ambient_code/vteam_claude_runner:latest")]
    pub runner_image: String,

    /// Backend API URL handed to runners (defaults to --api-server-url).
    #[arg(long, env = env::BACKEND_API_URL)]
    pub backend_api_url: Option<String>,

    /// Image of the ambient-mcp sidecar; no MCP sidecar when unset.
    #[arg(long, env = env::MCP_IMAGE)]
    pub mcp_image: Option<String>,

    /// API URL the MCP and credential sidecars use (defaults to --api-server-url).
    #[arg(long, env = env::MCP_API_SERVER_URL)]
    pub mcp_api_server_url: Option<String>,

    /// Image of the GitHub credential sidecar.
    #[arg(long, env = env::GITHUB_MCP_IMAGE)]
    pub github_mcp_image: Option<String>,

    /// Image of the Jira credential sidecar.
    #[arg(long, env = env::JIRA_MCP_IMAGE)]
    pub jira_mcp_image: Option<String>,

    /// Image of the Kubernetes (kubeconfig) credential sidecar.
    #[arg(long, env = env::K8S_MCP_IMAGE)]
    pub k8s_mcp_image: Option<String>,

    /// Image of the Google credential sidecar.
    #[arg(long, env = env::GOOGLE_MCP_IMAGE)]
    pub google_mcp_image: Option<String>,

    /// Image of the GitLab credential sidecar.
    #[arg(long, env = "GITLAB_MCP_IMAGE")]
    pub gitlab_mcp_image: Option<String>,

    /// Log level handed to runners.
    #[arg(long, env = env::RUNNER_LOG_LEVEL, default_value = "info")]
    pub runner_log_level: String,

    /// Listen address of the embedded token server (`:8080` = all interfaces).
    #[arg(long, env = env::CP_TOKEN_LISTEN_ADDR, default_value = ":8080")]
    pub token_listen_addr: String,

    /// Token URL sessions use to reach the token server, e.g.
    /// http://ambient-control-plane.ambient-code.svc:8080/token.
    #[arg(long, env = env::CP_TOKEN_URL)]
    pub token_url: Option<String>,

    /// Proxy settings handed to session containers.
    #[arg(long, env = env::HTTP_PROXY)]
    pub http_proxy: Option<String>,

    /// Proxy settings handed to session containers.
    #[arg(long, env = env::HTTPS_PROXY)]
    pub https_proxy: Option<String>,

    /// Proxy exclusions handed to session containers.
    #[arg(long, env = env::NO_PROXY)]
    pub no_proxy: Option<String>,

    /// Image pull secret name for session pods.
    #[arg(long, env = env::IMAGE_PULL_SECRET)]
    pub image_pull_secret: Option<String>,

    /// Anthropic API key; reaches runners only through a per-session Secret (secretKeyRef).
    #[arg(long, env = env::ANTHROPIC_API_KEY, hide_env_values = true)]
    pub anthropic_api_key: Option<Secret>,

    /// Use Vertex AI instead of the Anthropic API.
    #[arg(long, env = env::USE_VERTEX, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub use_vertex: bool,

    /// Vertex region (CLOUD_ML_REGION) handed to runners.
    #[arg(long, env = "CLOUD_ML_REGION")]
    pub vertex_region: Option<String>,

    /// Vertex project (ANTHROPIC_VERTEX_PROJECT_ID) handed to runners.
    #[arg(long, env = "ANTHROPIC_VERTEX_PROJECT_ID")]
    pub vertex_project_id: Option<String>,

    /// Runner container CPU request.
    #[arg(long, env = "RUNNER_CPU_REQUEST", default_value = "500m")]
    pub runner_cpu_request: String,
    /// Runner container memory request.
    #[arg(long, env = "RUNNER_MEMORY_REQUEST", default_value = "512Mi")]
    pub runner_memory_request: String,
    /// Runner container CPU limit.
    #[arg(long, env = "RUNNER_CPU_LIMIT", default_value = "2")]
    pub runner_cpu_limit: String,
    /// Runner container memory limit.
    #[arg(long, env = "RUNNER_MEMORY_LIMIT", default_value = "4Gi")]
    pub runner_memory_limit: String,
    /// Sidecar CPU request.
    #[arg(long, env = "SIDECAR_CPU_REQUEST", default_value = "50m")]
    pub sidecar_cpu_request: String,
    /// Sidecar memory request.
    #[arg(long, env = "SIDECAR_MEMORY_REQUEST", default_value = "64Mi")]
    pub sidecar_memory_request: String,
    /// Sidecar memory limit.
    #[arg(long, env = "SIDECAR_MEMORY_LIMIT", default_value = "256Mi")]
    pub sidecar_memory_limit: String,

    /// Reconcile workers.
    #[arg(long, env = "CP_WORKERS", default_value_t = 8)]
    pub workers: usize,

    /// Seconds between full resyncs of every object.
    #[arg(long, env = "CP_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,

    /// Listen address of /healthz, /readyz and /metrics.
    #[arg(long, env = "CP_HEALTH_LISTEN_ADDR", default_value = ":8081")]
    pub health_listen_addr: String,

    /// Run reconcile workers only while holding the Lease (all replicas serve tokens).
    #[arg(long, env = "CP_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "CP_LEASE_NAME", default_value = "ambient-control-plane")]
    pub lease_name: String,

    /// Identity of this replica in the Lease (defaults to POD_NAME, then HOSTNAME).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    #[command(flatten)]
    pub runtime: crate::runtime::process::RuntimeArgs,
}

/// Why the configuration was refused: one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "no API credentials: set AMBIENT_API_TOKEN (or --api-token-file) or both OIDC_CLIENT_ID and OIDC_CLIENT_SECRET"
    )]
    NoAuth,
    #[error(
        "contradictory API credentials: set either a static token or the OIDC client credentials, not both"
    )]
    BothAuth,
    #[error("{0} is set without {1}: OIDC needs both a client ID and a client secret")]
    HalfOidc(&'static str, &'static str),
    #[error("OIDC_TOKEN_URL is required with OIDC client credentials")]
    NoOidcUrl,
    #[error("a secret is set both directly and as a file; use one")]
    TwoTokens,
    #[error("cannot read the secret file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error("{name} is empty")]
    Empty { name: &'static str },
    #[error("invalid {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("MPP_CONFIG_NAMESPACE is required when PLATFORM_MODE=mpp")]
    MppNamespace,
}

/// How the control plane authenticates to the API server.
#[derive(Debug, Clone)]
pub enum ApiAuth {
    Static(Secret),
    Oidc {
        token_url: String,
        client_id: String,
        client_secret: Secret,
    },
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub auth: ApiAuth,
    pub runtime_namespace: String,
    pub token_listen: SocketAddr,
    pub health_listen: SocketAddr,
    pub resync: Duration,
    pub pod: crate::objects::PodConfig,
}

impl Config {
    /// The namespace the control plane runs in.
    pub fn runtime_namespace(&self) -> String {
        [&self.runtime_namespace, &self.namespace_fallback]
            .into_iter()
            .flatten()
            .find(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "ambient-code".into())
    }

    /// Checks everything that does not need the network.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let auth = self.auth()?;
        let pod = self.pod_config()?;
        if self.workers == 0 {
            return Err(ConfigError::Invalid {
                name: "CP_WORKERS",
                reason: "must be at least 1".into(),
            });
        }
        Ok(Settings {
            auth,
            runtime_namespace: self.runtime_namespace(),
            token_listen: parse_listen(env::CP_TOKEN_LISTEN_ADDR, &self.token_listen_addr)?,
            health_listen: parse_listen("CP_HEALTH_LISTEN_ADDR", &self.health_listen_addr)?,
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            pod,
        })
    }

    /// The API credentials: a static token, or OIDC client credentials.
    pub fn auth(&self) -> Result<ApiAuth, ConfigError> {
        let file_token = match &self.api_token_file {
            Some(path) => Some(Secret::from_file(path).map_err(|e| ConfigError::TokenFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let token = match (self.api_token.clone().filter(|t| !t.is_empty()), file_token) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoTokens),
            (Some(t), None) | (None, Some(t)) => Some(t),
            (None, None) => None,
        };
        if token.as_ref().is_some_and(Secret::is_empty) {
            return Err(ConfigError::Empty {
                name: "the API token file",
            });
        }
        let id = self.oidc_client_id.clone().filter(|s| !s.is_empty());
        let secret_file = match &self.oidc_client_secret_file {
            Some(path) => Some(Secret::from_file(path).map_err(|e| ConfigError::TokenFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        let secret = match (
            self.oidc_client_secret.clone().filter(|s| !s.is_empty()),
            secret_file,
        ) {
            (Some(_), Some(_)) => return Err(ConfigError::TwoTokens),
            (Some(s), None) | (None, Some(s)) => Some(s).filter(|s| !s.is_empty()),
            (None, None) => None,
        };
        match (token, id, secret) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(ConfigError::BothAuth),
            (Some(t), None, None) => Ok(ApiAuth::Static(t)),
            (None, Some(_), None) => Err(ConfigError::HalfOidc(
                env::OIDC_CLIENT_ID,
                env::OIDC_CLIENT_SECRET,
            )),
            (None, None, Some(_)) => Err(ConfigError::HalfOidc(
                env::OIDC_CLIENT_SECRET,
                env::OIDC_CLIENT_ID,
            )),
            (None, None, None) => Err(ConfigError::NoAuth),
            (None, Some(client_id), Some(client_secret)) => {
                let token_url = self
                    .oidc_token_url
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or(ConfigError::NoOidcUrl)?;
                ambient_protocol::url_policy::oidc_token_url(&token_url, self.allow_insecure_oidc)
                    .map_err(|e| ConfigError::Invalid {
                        name: env::OIDC_TOKEN_URL,
                        reason: e.to_string(),
                    })?;
                Ok(ApiAuth::Oidc {
                    token_url,
                    client_id,
                    client_secret,
                })
            }
        }
    }

    /// What the object builders need (no auth required: used by `render`).
    pub fn pod_config(&self) -> Result<crate::objects::PodConfig, ConfigError> {
        use crate::objects::{CredentialImages, PodConfig, Resources};
        if self.platform_mode == PlatformMode::Mpp
            && self
                .mpp_config_namespace
                .as_deref()
                .unwrap_or("")
                .is_empty()
        {
            return Err(ConfigError::MppNamespace);
        }
        if self.runner_image.is_empty() {
            return Err(ConfigError::Empty {
                name: env::RUNNER_IMAGE,
            });
        }
        if let Some(url) = self.token_url.as_deref().filter(|u| !u.is_empty()) {
            ambient_protocol::url_policy::token_url(url).map_err(|e| ConfigError::Invalid {
                name: env::CP_TOKEN_URL,
                reason: e.to_string(),
            })?;
        }
        if let Some(id) = self.installation_id.as_deref().filter(|i| !i.is_empty())
            && !crate::names::is_label_value(id)
        {
            return Err(ConfigError::Invalid {
                name: env::CP_INSTALLATION_ID,
                reason:
                    "not a label value (at most 63 of A-Z a-z 0-9 - _ ., alphanumeric at both ends)"
                        .into(),
            });
        }
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
        let api_url = self.api_server_url.clone();
        Ok(PodConfig {
            platform_mode: self.platform_mode,
            mpp_config_namespace: nonempty(&self.mpp_config_namespace),
            control_plane_namespace: self.runtime_namespace(),
            installation: self
                .installation_id
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| self.runtime_namespace()),
            runner_image: self.runner_image.clone(),
            backend_api_url: nonempty(&self.backend_api_url).unwrap_or_else(|| api_url.clone()),
            sidecar_api_url: nonempty(&self.mcp_api_server_url).unwrap_or(api_url),
            grpc_url: self.grpc_server_addr.clone(),
            grpc_use_tls: self.grpc_use_tls,
            runner_log_level: self.runner_log_level.clone(),
            token_url: nonempty(&self.token_url),
            mcp_image: nonempty(&self.mcp_image),
            credential_images: CredentialImages {
                github: nonempty(&self.github_mcp_image),
                gitlab: nonempty(&self.gitlab_mcp_image),
                jira: nonempty(&self.jira_mcp_image),
                kubeconfig: nonempty(&self.k8s_mcp_image),
                google: nonempty(&self.google_mcp_image),
            },
            http_proxy: nonempty(&self.http_proxy),
            https_proxy: nonempty(&self.https_proxy),
            no_proxy: nonempty(&self.no_proxy),
            image_pull_secret: nonempty(&self.image_pull_secret),
            anthropic_api_key: self.anthropic_api_key.clone().filter(|k| !k.is_empty()),
            use_vertex: self.use_vertex,
            vertex_region: nonempty(&self.vertex_region),
            vertex_project_id: nonempty(&self.vertex_project_id),
            runner_resources: Resources {
                cpu_request: self.runner_cpu_request.clone(),
                memory_request: self.runner_memory_request.clone(),
                cpu_limit: Some(self.runner_cpu_limit.clone()),
                memory_limit: self.runner_memory_limit.clone(),
            },
            sidecar_resources: Resources {
                cpu_request: self.sidecar_cpu_request.clone(),
                memory_request: self.sidecar_memory_request.clone(),
                cpu_limit: None,
                memory_limit: self.sidecar_memory_limit.clone(),
            },
        })
    }
}

/// Parses `:8080`, `0.0.0.0:8080`, `127.0.0.1:0` or `[::1]:8080`.
pub fn parse_listen(name: &'static str, raw: &str) -> Result<SocketAddr, ConfigError> {
    let full = if raw.starts_with(':') {
        format!("0.0.0.0{raw}")
    } else {
        raw.to_owned()
    };
    full.parse().map_err(|_| ConfigError::Invalid {
        name,
        reason: format!("{raw:?} is not host:port"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        let mut argv = vec!["cp"];
        argv.extend_from_slice(args);
        Probe::try_parse_from(argv)
            .map(|p| p.config)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn auth_rules() {
        assert!(matches!(
            parse(&["--api-token", "t"]).auth(),
            Ok(ApiAuth::Static(_))
        ));
        assert_eq!(parse(&[]).auth().err(), Some(ConfigError::NoAuth));
        assert_eq!(
            parse(&["--api-token", "t", "--oidc-client-id", "i"])
                .auth()
                .err(),
            Some(ConfigError::BothAuth)
        );
        assert!(matches!(
            parse(&["--oidc-client-id", "i"]).auth().err(),
            Some(ConfigError::HalfOidc(..))
        ));
        assert!(matches!(
            parse(&["--oidc-client-secret", "s"]).auth().err(),
            Some(ConfigError::HalfOidc(..))
        ));
        assert_eq!(
            parse(&["--oidc-client-id", "i", "--oidc-client-secret", "s"])
                .auth()
                .err(),
            Some(ConfigError::NoOidcUrl)
        );
        let oidc = [
            "--oidc-client-id",
            "i",
            "--oidc-client-secret",
            "s",
            "--oidc-token-url",
            "http://localhost:8000/oidc/token",
        ];
        // Plain http is refused unless explicitly allowed.
        assert!(matches!(
            parse(&oidc).auth(),
            Err(ConfigError::Invalid {
                name: "OIDC_TOKEN_URL",
                ..
            })
        ));
        let mut allowed = oidc.to_vec();
        allowed.push("--allow-insecure-oidc");
        assert!(matches!(parse(&allowed).auth(), Ok(ApiAuth::Oidc { .. })));
        let mut https = oidc.to_vec();
        https[5] = "https://sso.example.com/token";
        assert!(matches!(parse(&https).auth(), Ok(ApiAuth::Oidc { .. })));
    }

    #[test]
    fn errors_never_contain_secrets() {
        let err = parse(&[
            "--api-token",
            "tok-SECRET",
            "--oidc-client-secret",
            "sec-SECRET",
        ])
        .auth()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(!err.contains("SECRET"), "{err}");
        let cfg = parse(&["--api-token", "tok-SECRET"]);
        assert!(!format!("{cfg:?}").contains("tok-SECRET"));
    }

    #[test]
    fn runtime_namespace_falls_back() {
        assert_eq!(parse(&[]).runtime_namespace(), "ambient-code");
        assert_eq!(parse(&["--namespace", "ns1"]).runtime_namespace(), "ns1");
        assert_eq!(
            parse(&["--namespace", "ns1", "--runtime-namespace", "ns2"]).runtime_namespace(),
            "ns2"
        );
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("x", ":8080").ok(), "0.0.0.0:8080".parse().ok());
        assert_eq!(
            parse_listen("x", "127.0.0.1:0").ok(),
            "127.0.0.1:0".parse().ok()
        );
        assert!(parse_listen("x", "8080").is_err());
    }

    #[test]
    fn mpp_needs_its_namespace_and_token_url_is_checked() {
        assert_eq!(
            parse(&["--platform-mode", "mpp"]).pod_config().err(),
            Some(ConfigError::MppNamespace)
        );
        assert!(
            parse(&["--platform-mode", "mpp", "--mpp-config-namespace", "x"])
                .pod_config()
                .is_ok()
        );
        assert!(matches!(
            parse(&["--token-url", "ftp://x/token"]).pod_config().err(),
            Some(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn installation_id_defaults_to_the_runtime_namespace_and_is_a_label_value() {
        let pod = |args: &[&str]| parse(args).pod_config().map(|p| p.installation);
        assert_eq!(pod(&[]).ok().as_deref(), Some("ambient-code"));
        assert_eq!(
            pod(&["--runtime-namespace", "cp1"]).ok().as_deref(),
            Some("cp1")
        );
        assert_eq!(
            pod(&["--installation-id", "Prod_1.eu"]).ok().as_deref(),
            Some("Prod_1.eu")
        );
        for bad in ["-x", "a b", "x/y", &"a".repeat(64)] {
            let arg = format!("--installation-id={bad}");
            assert!(pod(&[&arg]).is_err(), "{bad}");
        }
    }
}
