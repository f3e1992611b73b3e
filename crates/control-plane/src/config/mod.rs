//! Configuration: every environment variable of the wire contract (§5), each
//! with a matching flag. [`Config::validate`] turns the raw flags into a
//! [`Settings`] or one clear line saying what is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ambient_protocol::Secret;
use ambient_protocol::env;
use clap::{Args, ValueEnum};

mod auth;
mod identity;
mod pod;

pub use auth::ApiAuth;
pub use identity::{IdentityArgs, IdentitySettings, SessionIdentityMode, gateway_url_beside};
pub use pod::{is_quantity, quantity};

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
    /// network unencrypted; for local development only). Only `true` is true.
    #[arg(long, env = "OIDC_ALLOW_INSECURE", default_value = "false", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_true)]
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

    /// Use TLS for gRPC (to the API server, and told to runners). As the
    /// reference reads it: only `true` is true.
    #[arg(long, env = env::AMBIENT_GRPC_USE_TLS, default_value = "false", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_true)]
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

    /// The OpenShift service CA, trusted (when the file exists) by the REST
    /// client, and by gRPC without AMBIENT_GRPC_CA_CERT_FILE, as the
    /// reference does. Hidden: only tests point it elsewhere.
    #[arg(long, env = "CP_SERVICE_CA_FILE", hide = true, default_value = crate::names::SERVICE_ACCOUNT_SERVICE_CA)]
    pub service_ca_file: PathBuf,

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
    #[arg(long, env = env::GITLAB_MCP_IMAGE)]
    pub gitlab_mcp_image: Option<String>,

    /// Log level handed to runners.
    #[arg(long, env = env::RUNNER_LOG_LEVEL, default_value = "info")]
    pub runner_log_level: String,

    /// Listen address of the embedded token server (`:8080` = all interfaces).
    #[arg(long, env = env::CP_TOKEN_LISTEN_ADDR, default_value = ":8080")]
    pub token_listen_addr: String,

    /// Refuse v1 token exchanges (a bare session ID): only the
    /// replay-resistant v2 is accepted. Off by default, for reference
    /// runners and sidecars that speak v1 only. Only `true` is true.
    #[arg(long, env = "CP_TOKEN_REQUIRE_V2", default_value = "false", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_true)]
    pub token_require_v2: bool,

    /// Refuse v1 and v2 token exchanges: only exchange v3 (the session key
    /// file, wire.md §3) is accepted. Off by default; for installations
    /// that run only our runner clients and no credential sidecars (those
    /// keep v2). Only `true` is true.
    #[arg(long, env = "CP_TOKEN_REQUIRE_V3", default_value = "false", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_true)]
    pub token_require_v3: bool,

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

    /// Use Vertex AI instead of the Anthropic API: as the reference reads
    /// it, `1` or `true` is true, anything else false.
    #[arg(long, env = env::USE_VERTEX, default_value = "false", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_one_or_true)]
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

    /// Reconcile workers: sessions reconciled at once. A reconcile mostly
    /// waits on API round trips, so throughput is workers / latency (a
    /// relist of 100 000 sessions: 8 workers take twice as long as 64).
    #[arg(long, env = "CP_WORKERS", default_value_t = 64)]
    pub workers: usize,

    /// Seconds between full resyncs of every object.
    #[arg(long, env = "CP_RESYNC_SECONDS", default_value_t = 600)]
    pub resync_seconds: u64,

    /// Listen address of /healthz, /readyz and /metrics.
    #[arg(long, env = "CP_HEALTH_LISTEN_ADDR", default_value = ":8081")]
    pub health_listen_addr: String,

    /// Run reconcile workers only while holding the Lease (all replicas
    /// serve tokens). Only `true` is true.
    #[arg(long, env = "CP_LEADER_ELECTION", default_value = "true", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_true)]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(long, env = "CP_LEASE_NAME", default_value = "ambient-control-plane")]
    pub lease_name: String,

    /// Identity of this replica in the Lease (defaults to POD_NAME, then HOSTNAME).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    #[command(flatten)]
    pub runtime: crate::runtime::process::RuntimeArgs,

    #[command(flatten)]
    pub session: IdentityArgs,
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
    /// The embedded token server refuses v1 exchanges.
    pub token_require_v2: bool,
    /// The embedded token server refuses v1 and v2 exchanges.
    pub token_require_v3: bool,
    pub health_listen: SocketAddr,
    pub resync: Duration,
    pub pod: crate::objects::PodConfig,
    /// What sessions act as, and where the session gateway listens.
    pub identity: IdentitySettings,
}

impl Settings {
    /// The embedded token server's configuration.
    pub fn token_server_config(&self) -> ambient_token_server::Config {
        ambient_token_server::Config {
            require_v2: self.token_require_v2,
            require_v3: self.token_require_v3,
            ..ambient_token_server::Config::default()
        }
    }
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
        let mut pod = self.pod_config()?;
        // Exchange v3 binds a key to the pod's generation, which only the
        // gateway identity's caller binding knows: the platform escape hatch
        // keeps the reference's exchange (v1/v2) and gives pods no key.
        pod.session_keys = self.session.session_identity == SessionIdentityMode::Gateway;
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
            token_require_v2: self.token_require_v2,
            token_require_v3: self.token_require_v3,
            health_listen: parse_listen("CP_HEALTH_LISTEN_ADDR", &self.health_listen_addr)?,
            resync: Duration::from_secs(self.resync_seconds.max(1)),
            identity: self.session.validate(pod.token_url.as_deref())?,
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
mod tests;
