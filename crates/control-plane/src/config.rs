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

/// What the control plane runs against (`MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Sessions become pods on Kubernetes.
    Kube,
    /// Touches no cluster: every change a session would cause is only logged.
    Test,
}

/// The reference's default OIDC token endpoint (`OIDC_TOKEN_URL`).
pub const DEFAULT_OIDC_TOKEN_URL: &str =
    "https://sso.redhat.com/auth/realms/redhat-external/protocol/openid-connect/token";

/// Reconcilers the reference knows (`RECONCILERS`): `tally` counts
/// sessions (ours always keeps metrics), `kube` provisions them.
pub const RECONCILERS: [&str; 2] = ["tally", "kube"];

/// `USE_VERTEX` and other reference booleans written as `1`/`true`/`0`/`false`.
fn parse_flag(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        other => Err(format!("{other:?} is not 1, true, 0 or false")),
    }
}

/// The control plane's settings, as flags and environment variables.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// REST base URL of the ambient API server (passed to sessions as BACKEND_API_URL default).
    #[arg(long, env = env::AMBIENT_API_SERVER_URL, default_value = "http://localhost:8000")]
    pub api_server_url: String,

    /// Static bearer token for the API server (or use the OIDC settings),
    /// from the environment only: a value on the command line is refused
    /// (any local user can read the process list). Or --api-token-file.
    #[arg(long, env = env::AMBIENT_API_TOKEN, hide_env_values = true)]
    pub api_token: Option<Secret>,

    /// File holding the static bearer token (alternative to --api-token).
    #[arg(long, env = "AMBIENT_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,

    /// OIDC token endpoint for client-credentials authentication (https;
    /// plain http only with --allow-insecure-oidc).
    #[arg(long, env = env::OIDC_TOKEN_URL, default_value = DEFAULT_OIDC_TOKEN_URL)]
    pub oidc_token_url: Option<String>,

    /// Accept a plain-http OIDC token URL (the client secret then crosses the
    /// network unencrypted; for local development only).
    #[arg(long, env = "OIDC_ALLOW_INSECURE")]
    pub allow_insecure_oidc: bool,

    /// OIDC client ID.
    #[arg(long, env = env::OIDC_CLIENT_ID)]
    pub oidc_client_id: Option<String>,

    /// OIDC client secret, from the environment only: a value on the command
    /// line is refused (any local user can read the process list). Or
    /// --oidc-client-secret-file.
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

    /// Seconds a Kubernetes request may wait for its answer; past it the
    /// request fails and is retried with backoff (a watch only waits for its
    /// first bytes).
    #[arg(long, env = "CP_KUBE_REQUEST_TIMEOUT", value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub kube_request_timeout: u64,

    /// kube: sessions become pods; test: touch no cluster and only log
    /// what would be done.
    #[arg(long, env = "MODE", value_enum, default_value_t = Mode::Kube)]
    pub mode: Mode,

    /// Reconcilers to run (comma list): `kube` provisions sessions, `tally`
    /// is accepted (metrics are always kept); unknown names are ignored with
    /// a warning. Without `kube`, sessions are only logged, as in test mode.
    #[arg(long, env = "RECONCILERS", default_value = "tally,kube")]
    pub reconcilers: String,

    /// Platform mode.
    #[arg(long, env = env::PLATFORM_MODE, value_enum, default_value_t = PlatformMode::Standard)]
    pub platform_mode: PlatformMode,

    /// Namespace of the MPP TenantNamespaces (mpp mode).
    #[arg(long, env = env::MPP_CONFIG_NAMESPACE, default_value = "ambient-code--config")]
    pub mpp_config_namespace: Option<String>,

    /// Bearer-token file of a second identity on the same cluster, used for
    /// namespaces, session objects and the keypair (the default identity
    /// keeps the Lease).
    #[arg(long, env = "PROJECT_KUBE_TOKEN_FILE")]
    pub project_kube_token_file: Option<PathBuf>,

    /// Namespace of the runner image on OpenShift's registry: every session
    /// namespace's service accounts may pull from it.
    #[arg(long, env = "RUNNER_IMAGE_NAMESPACE")]
    pub runner_image_namespace: Option<String>,

    /// Service identity of the control plane in the API (user ID): when set,
    /// each session gets `credential:token-reader` bindings for its
    /// credentials, revoked when it ends.
    #[arg(long, env = "GRPC_SERVICE_ACCOUNT")]
    pub grpc_service_account: Option<String>,

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

    /// Anthropic API key, from the environment only (a value on the command
    /// line is refused); reaches runners only through a per-session Secret
    /// (secretKeyRef).
    #[arg(long, env = env::ANTHROPIC_API_KEY, hide_env_values = true)]
    pub anthropic_api_key: Option<Secret>,

    /// Use Vertex AI instead of the Anthropic API (`1`/`true` or `0`/`false`).
    #[arg(long, env = env::USE_VERTEX, default_value = "false", value_parser = parse_flag, num_args = 0..=1, default_missing_value = "true")]
    pub use_vertex: bool,

    /// Vertex region (CLOUD_ML_REGION) handed to runners.
    #[arg(long, env = "CLOUD_ML_REGION", default_value = "global")]
    pub vertex_region: Option<String>,

    /// Vertex project (ANTHROPIC_VERTEX_PROJECT_ID) handed to runners.
    #[arg(long, env = "ANTHROPIC_VERTEX_PROJECT_ID")]
    pub vertex_project_id: Option<String>,

    /// Path of the Vertex key in the runner (GOOGLE_APPLICATION_CREDENTIALS),
    /// inside the Vertex Secret mounted at /app/vertex.
    #[arg(long, env = env::GOOGLE_APPLICATION_CREDENTIALS, default_value = "/app/vertex/ambient-code-key.json")]
    pub vertex_credentials_path: String,

    /// Secret holding the Vertex key, copied into every session namespace.
    #[arg(long, env = "VERTEX_SECRET_NAME", default_value = "ambient-vertex")]
    pub vertex_secret_name: String,

    /// Namespace of the Vertex Secret.
    #[arg(long, env = "VERTEX_SECRET_NAMESPACE", default_value = "ambient-code")]
    pub vertex_secret_namespace: String,

    /// Runner container CPU request.
    #[arg(long, env = "RUNNER_CPU_REQUEST", default_value = "500m")]
    pub runner_cpu_request: String,
    /// Runner container memory request.
    #[arg(long, env = "RUNNER_MEMORY_REQUEST", default_value = "1Gi")]
    pub runner_memory_request: String,
    /// Runner container CPU limit.
    #[arg(long, env = "RUNNER_CPU_LIMIT", default_value = "2000m")]
    pub runner_cpu_limit: String,
    /// Runner container memory limit.
    #[arg(long, env = "RUNNER_MEMORY_LIMIT", default_value = "4Gi")]
    pub runner_memory_limit: String,
    /// CPU request of every sidecar (default: MCP 100m, credential 100m).
    #[arg(long, env = "SIDECAR_CPU_REQUEST")]
    pub sidecar_cpu_request: Option<String>,
    /// Memory request of every sidecar (default: MCP 128Mi, credential 256Mi).
    #[arg(long, env = "SIDECAR_MEMORY_REQUEST")]
    pub sidecar_memory_request: Option<String>,
    /// CPU limit of every sidecar (default: 500m).
    #[arg(long, env = "SIDECAR_CPU_LIMIT")]
    pub sidecar_cpu_limit: Option<String>,
    /// Memory limit of every sidecar (default: MCP 256Mi, credential 512Mi).
    #[arg(long, env = "SIDECAR_MEMORY_LIMIT")]
    pub sidecar_memory_limit: Option<String>,

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
    #[error("invalid {name}: {value:?} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")]
    Quantity { name: &'static str, value: String },
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
    /// Where sessions go: `false` in test mode or without the `kube`
    /// reconciler (only logged then).
    pub provision: bool,
    /// Test mode: no cluster is touched at all.
    pub mode: Mode,
    /// The control plane's user ID in the API, for token-reader bindings.
    pub service_identity: Option<String>,
    /// Settings that are accepted but deserve a word in the log.
    pub warnings: Vec<String>,
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
        let (reconcilers, mut warnings) = self.reconcilers();
        if self.oidc_wins() {
            warnings.push(
                "both AMBIENT_API_TOKEN and OIDC client credentials are set: using OIDC".into(),
            );
        }
        Ok(Settings {
            auth,
            provision: self.mode == Mode::Kube && reconcilers.contains(&"kube"),
            mode: self.mode,
            service_identity: self
                .grpc_service_account
                .as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            warnings,
            runtime_namespace: self.runtime_namespace(),
            token_listen: parse_listen(env::CP_TOKEN_LISTEN_ADDR, &self.token_listen_addr)?,
            health_listen: parse_listen("CP_HEALTH_LISTEN_ADDR", &self.health_listen_addr)?,
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            pod,
        })
    }

    /// The known reconcilers of `RECONCILERS`, and a warning per unknown name.
    pub fn reconcilers(&self) -> (Vec<&'static str>, Vec<String>) {
        let mut known = Vec::new();
        let mut warnings = Vec::new();
        for name in self.reconcilers.split(',').map(str::trim) {
            match RECONCILERS.iter().find(|k| **k == name) {
                Some(k) => known.push(*k),
                None if name.is_empty() => {}
                None => warnings.push(format!("RECONCILERS: unknown reconciler {name:?} ignored")),
            }
        }
        (known, warnings)
    }

    /// True when a static token and OIDC client credentials are both set
    /// (OIDC is used, as by the reference).
    fn oidc_wins(&self) -> bool {
        let set = |s: &Option<Secret>| s.as_ref().is_some_and(|s| !s.is_empty());
        (set(&self.api_token) || self.api_token_file.is_some())
            && self
                .oidc_client_id
                .as_deref()
                .is_some_and(|s| !s.is_empty())
            && (set(&self.oidc_client_secret) || self.oidc_client_secret_file.is_some())
    }

    /// The API credentials: a static token, or OIDC client credentials
    /// (which win when both are set).
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
            (Some(t), None, None) => Ok(ApiAuth::Static(t)),
            (_, Some(_), None) => Err(ConfigError::HalfOidc(
                env::OIDC_CLIENT_ID,
                env::OIDC_CLIENT_SECRET,
            )),
            (_, None, Some(_)) => Err(ConfigError::HalfOidc(
                env::OIDC_CLIENT_SECRET,
                env::OIDC_CLIENT_ID,
            )),
            (None, None, None) => Err(ConfigError::NoAuth),
            (_, Some(client_id), Some(client_secret)) => {
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
        use crate::objects::{CredentialImages, PodConfig, VertexConfig};
        let nonempty = |o: &Option<String>| o.clone().filter(|s| !s.is_empty());
        if self.platform_mode == PlatformMode::Mpp && nonempty(&self.mpp_config_namespace).is_none()
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
        let vertex = self.use_vertex.then(|| VertexConfig {
            project_id: nonempty(&self.vertex_project_id),
            region: nonempty(&self.vertex_region).unwrap_or_else(|| "global".into()),
            credentials_path: self.vertex_credentials_path.clone(),
            secret_name: self.vertex_secret_name.clone(),
            secret_namespace: self.vertex_secret_namespace.clone(),
        });
        if let Some(v) = &vertex {
            let bad = |name, value: &str| ConfigError::Invalid {
                name,
                reason: format!("{value:?} is not a Kubernetes name"),
            };
            if !crate::names::is_dns_subdomain(&v.secret_name) {
                return Err(bad("VERTEX_SECRET_NAME", &v.secret_name));
            }
            if !crate::names::is_dns_label(&v.secret_namespace) {
                return Err(bad("VERTEX_SECRET_NAMESPACE", &v.secret_namespace));
            }
        }
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
            runner_image_namespace: nonempty(&self.runner_image_namespace),
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
            vertex,
            runner_resources: self.runner_resources()?,
            mcp_resources: self.sidecar_resources(crate::objects::Resources::mcp())?,
            credential_resources: self.sidecar_resources(crate::objects::Resources::credential())?,
        })
    }

    fn runner_resources(&self) -> Result<crate::objects::Resources, ConfigError> {
        Ok(crate::objects::Resources {
            cpu_request: quantity("RUNNER_CPU_REQUEST", &self.runner_cpu_request)?,
            memory_request: quantity("RUNNER_MEMORY_REQUEST", &self.runner_memory_request)?,
            cpu_limit: quantity("RUNNER_CPU_LIMIT", &self.runner_cpu_limit)?,
            memory_limit: quantity("RUNNER_MEMORY_LIMIT", &self.runner_memory_limit)?,
        })
    }

    /// `defaults` with the `SIDECAR_*` overrides applied.
    fn sidecar_resources(
        &self,
        defaults: crate::objects::Resources,
    ) -> Result<crate::objects::Resources, ConfigError> {
        let pick = |name, set: &Option<String>, default: String| match set {
            Some(v) => quantity(name, v),
            None => Ok(default),
        };
        Ok(crate::objects::Resources {
            cpu_request: pick(
                "SIDECAR_CPU_REQUEST",
                &self.sidecar_cpu_request,
                defaults.cpu_request,
            )?,
            memory_request: pick(
                "SIDECAR_MEMORY_REQUEST",
                &self.sidecar_memory_request,
                defaults.memory_request,
            )?,
            cpu_limit: pick(
                "SIDECAR_CPU_LIMIT",
                &self.sidecar_cpu_limit,
                defaults.cpu_limit,
            )?,
            memory_limit: pick(
                "SIDECAR_MEMORY_LIMIT",
                &self.sidecar_memory_limit,
                defaults.memory_limit,
            )?,
        })
    }
}

/// `raw` when it is a Kubernetes quantity (or empty: not set), else one
/// clear error at startup instead of a refused pod per session.
pub fn quantity(name: &'static str, raw: &str) -> Result<String, ConfigError> {
    let raw = raw.trim();
    if raw.is_empty() || is_quantity(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ConfigError::Quantity {
            name,
            value: raw.to_owned(),
        })
    }
}

/// The quantity grammar of Kubernetes (`k8s.io/apimachinery` resource),
/// without a sign: a decimal number, then a binary-SI suffix (`Ki`..`Ei`),
/// a decimal-SI suffix (`m`, `k`, `M`, `G`, `T`, `P`, `E`) or an exponent
/// (`e3`, `E-2`).
pub fn is_quantity(s: &str) -> bool {
    let digits_end = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let int = digits_end(s);
    let (number, rest) = match s[int..].strip_prefix('.') {
        Some(after) => {
            let frac = digits_end(after);
            (int + frac > 0, &after[frac..])
        }
        None => (int > 0, &s[int..]),
    };
    if !number {
        return false;
    }
    match rest {
        "" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        _ => match rest.strip_prefix(['e', 'E']) {
            Some(exp) => {
                let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
            }
            None => false,
        },
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
        // Half of OIDC is contradictory even beside a static token.
        assert!(matches!(
            parse(&["--api-token", "t", "--oidc-client-id", "i"]).auth(),
            Err(ConfigError::HalfOidc(..))
        ));
        // Both complete: OIDC wins (as the reference), with a warning.
        let both = parse(&[
            "--api-token",
            "t",
            "--oidc-client-id",
            "i",
            "--oidc-client-secret",
            "s",
        ]);
        assert!(matches!(both.auth(), Ok(ApiAuth::Oidc { .. })));
        let warnings = both.validate().map(|s| s.warnings).unwrap_or_default();
        assert!(
            warnings.iter().any(|w| w.contains("using OIDC")),
            "{warnings:?}"
        );
        assert!(matches!(
            parse(&["--oidc-client-id", "i"]).auth().err(),
            Some(ConfigError::HalfOidc(..))
        ));
        assert!(matches!(
            parse(&["--oidc-client-secret", "s"]).auth().err(),
            Some(ConfigError::HalfOidc(..))
        ));
        // No URL: the reference's SSO endpoint.
        match parse(&["--oidc-client-id", "i", "--oidc-client-secret", "s"]).auth() {
            Ok(ApiAuth::Oidc { token_url, .. }) => assert_eq!(token_url, DEFAULT_OIDC_TOKEN_URL),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(&[
                "--oidc-client-id",
                "i",
                "--oidc-client-secret",
                "s",
                "--oidc-token-url",
                ""
            ])
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
            "tok-hidden-value",
            "--oidc-client-secret",
            "sec-hidden-value",
        ])
        .auth()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(!err.is_empty());
        assert!(!err.contains("hidden-value"), "{err}");
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
        // MPP_CONFIG_NAMESPACE defaults as the reference's; only an empty one is refused.
        let mpp = parse(&["--platform-mode", "mpp"]).pod_config();
        assert_eq!(
            mpp.ok().and_then(|p| p.mpp_config_namespace).as_deref(),
            Some("ambient-code--config")
        );
        assert_eq!(
            parse(&["--platform-mode", "mpp", "--mpp-config-namespace", ""])
                .pod_config()
                .err(),
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

    #[test]
    fn quantities_are_checked_at_startup() {
        for ok in [
            "500m", "2", "1Gi", "0.5", ".5", "1e3", "2E-2", "100Ki", "1.5G",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "abc", "1GB", "-1", "1.2.3", "m", "1e", "1 Gi", "1Gi "] {
            assert!(!is_quantity(bad), "{bad:?}");
        }
        let err = parse(&["--runner-memory-limit", "4GB"]).pod_config().err();
        assert_eq!(
            err,
            Some(ConfigError::Quantity {
                name: "RUNNER_MEMORY_LIMIT",
                value: "4GB".into()
            })
        );
        assert!(err.is_some_and(|e| e.to_string().contains("RUNNER_MEMORY_LIMIT")));
        assert!(matches!(
            parse(&["--sidecar-cpu-limit", "lots"]).pod_config(),
            Err(ConfigError::Quantity {
                name: "SIDECAR_CPU_LIMIT",
                ..
            })
        ));
        // Sidecar overrides apply to the MCP and the credential sidecars.
        let pod = parse(&["--sidecar-memory-limit", "1Gi"])
            .pod_config()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pod.mcp_resources.memory_limit, "1Gi");
        assert_eq!(pod.credential_resources.memory_limit, "1Gi");
        assert_eq!(pod.mcp_resources.memory_request, "128Mi");
        assert_eq!(pod.credential_resources.memory_request, "256Mi");
        assert_eq!(pod.runner_resources.memory_request, "1Gi");
    }

    #[test]
    fn vertex_mode_and_reconcilers_read_as_the_reference() {
        for (raw, on) in [
            ("1", true),
            ("true", true),
            ("TRUE", true),
            ("0", false),
            ("false", false),
        ] {
            let cfg = parse(&["--use-vertex", raw]);
            assert_eq!(cfg.use_vertex, on, "{raw}");
            let vertex = cfg.pod_config().ok().and_then(|p| p.vertex);
            assert_eq!(vertex.is_some(), on);
        }
        assert!(Probe::try_parse_from(["cp", "--use-vertex", "yes-please"]).is_err());
        let v = parse(&["--use-vertex"])
            .pod_config()
            .ok()
            .and_then(|p| p.vertex)
            .unwrap_or_else(|| panic!("vertex off"));
        assert_eq!(v.region, "global");
        assert_eq!(v.credentials_path, "/app/vertex/ambient-code-key.json");
        assert_eq!(
            (v.secret_namespace.as_str(), v.secret_name.as_str()),
            ("ambient-code", "ambient-vertex")
        );
        assert!(matches!(
            parse(&["--use-vertex", "--vertex-secret-name", "Bad Name"]).pod_config(),
            Err(ConfigError::Invalid {
                name: "VERTEX_SECRET_NAME",
                ..
            })
        ));

        let settings = |args: &[&str]| {
            let mut all = vec!["--api-token", "t"];
            all.extend_from_slice(args);
            parse(&all).validate().unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(settings(&[]).provision);
        assert_eq!(settings(&[]).mode, Mode::Kube);
        assert!(!settings(&["--mode", "test"]).provision);
        assert!(!settings(&["--reconcilers", "tally"]).provision);
        let s = settings(&["--reconcilers", "tally, kube,bogus"]);
        assert!(s.provision);
        assert!(
            s.warnings.iter().any(|w| w.contains("bogus")),
            "{:?}",
            s.warnings
        );
        assert!(Probe::try_parse_from(["cp", "--mode", "prod"]).is_err());
        assert_eq!(
            settings(&["--grpc-service-account", "  svc-1 "])
                .service_identity
                .as_deref(),
            Some("svc-1")
        );
        assert_eq!(
            settings(&["--grpc-service-account", " "]).service_identity,
            None
        );
    }
}
