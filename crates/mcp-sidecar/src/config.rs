//! Flags and environment (wire.md §5, ambient-mcp), validated into
//! [`Settings`] or one clear line.

use std::path::PathBuf;

use ambient_daemon::LogFormat;
use ambient_mcp_http::{AllowedHosts, AllowedPeers, ListenAddr};
use ambient_protocol::exchange::Protocol;
use ambient_protocol::exchanger::ExchangerConfig;
use ambient_protocol::keys::PublicKey;
use ambient_protocol::{Secret, env};
use reqwest::Url;

/// Which MCP transport to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// JSON-RPC over stdin/stdout (the reference default).
    Stdio,
    /// HTTP: legacy SSE (`/sse` + `/message`) and Streamable HTTP (`/mcp`).
    Sse,
    /// The same listener as `sse`.
    Http,
}

impl TransportKind {
    /// True for the HTTP listener (`sse` or `http`).
    pub fn is_http(self) -> bool {
        !matches!(self, TransportKind::Stdio)
    }
}

/// Token exchange protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExchangeProtocol {
    /// Bare session ID (for a reference control plane).
    V1,
    /// Replay-resistant JSON request (ours).
    V2,
}

/// The platform-tools MCP sidecar: the session's agent reaches sessions,
/// agents and projects through its tools, with an API token the sidecar
/// exchanges and refreshes itself.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "ambient-mcp", version)]
pub struct Config {
    /// MCP transport: stdio, or sse/http (both serve /sse + /message and /mcp on one listener).
    #[arg(long, value_enum, env = env::MCP_TRANSPORT, default_value = "stdio")]
    pub transport: TransportKind,

    /// Listen address of the HTTP transports: IP:PORT, or the reference's
    /// `:PORT`, which means 127.0.0.1:PORT (the pod's containers share
    /// loopback). An address beyond loopback is served with a warning, to
    /// loopback peers and --allow-peer only.
    #[arg(long = "bind", value_name = "ADDR", env = env::MCP_BIND_ADDR, default_value = "127.0.0.1:8090")]
    pub bind: String,

    /// Base URL of the ambient API server (REST under /api/ambient/v1).
    #[arg(long, value_name = "URL", env = env::AMBIENT_API_URL, default_value = "http://localhost:8080")]
    pub api_url: String,

    /// Token exchange URL of the control plane.
    #[arg(long, value_name = "URL", env = env::AMBIENT_CP_TOKEN_URL)]
    pub token_url: Option<String>,

    /// The control plane's public key (PEM) for the token exchange.
    #[arg(long, value_name = "PEM", env = env::AMBIENT_CP_TOKEN_PUBLIC_KEY, hide_env_values = true)]
    pub token_public_key: Option<String>,

    /// The session's exchange-v3 key file: while it exists, the exchange
    /// proves this key (no private-key operation on the server) instead of
    /// encrypting a v1/v2 bearer; read again at every exchange.
    #[arg(long, value_name = "PATH", env = env::AMBIENT_SESSION_KEY_FILE)]
    pub session_key_file: Option<PathBuf>,

    /// This session's ID (the subject of the token exchange).
    #[arg(long, value_name = "ID", env = env::SESSION_ID)]
    pub session_id: Option<String>,

    /// Static API token, used only when the three exchange settings are not
    /// all given: from the environment only (a value here is refused).
    #[arg(long, value_name = "TOKEN", env = env::AMBIENT_TOKEN, hide_env_values = true)]
    pub token: Option<Secret>,

    /// Token exchange protocol: v2 (ours), or v1 for a reference control plane.
    #[arg(
        long,
        value_enum,
        env = env::AMBIENT_CP_TOKEN_PROTOCOL,
        default_value = "v2"
    )]
    pub exchange_protocol: ExchangeProtocol,

    /// Host names admitted in Host/Origin headers, comma-separated (`*` = any).
    #[arg(
        long,
        value_name = "HOSTS",
        env = "MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub allowed_hosts: Vec<String>,

    /// Peers served besides loopback: IP addresses or CIDR blocks,
    /// comma-separated (whatever their Host header says, others get 403).
    #[arg(
        long = "allow-peer",
        value_name = "CIDRS",
        env = "MCP_ALLOWED_PEERS",
        value_delimiter = ','
    )]
    pub allowed_peers: Vec<String>,

    /// Extra CA certificates (PEM bundle) trusted for TLS to the API.
    #[arg(long, value_name = "PEM", env = env::SSL_CERT_FILE)]
    pub ca_file: Option<PathBuf>,

    /// Most message subscriptions one MCP session may hold.
    #[arg(
        long,
        value_name = "N",
        env = "MCP_MAX_SUBSCRIPTIONS",
        default_value_t = 16
    )]
    pub max_subscriptions: usize,

    /// Log format on stderr.
    #[arg(long, value_enum, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter (tracing env-filter syntax, e.g. info or ambient_mcp=debug).
    #[arg(long, value_name = "FILTER", env = env::LOG_LEVEL, default_value = "info")]
    pub log_level: String,
}

/// Where the API token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// The control plane's token exchange.
    Exchange(Box<ExchangerConfig>),
    /// `AMBIENT_TOKEN`.
    Static(Secret),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub transport: TransportKind,
    pub bind: ListenAddr,
    /// `<api>/api/ambient/v1/`.
    pub api_base: Url,
    pub token: TokenSource,
    pub allowed_hosts: AllowedHosts,
    pub allowed_peers: AllowedPeers,
    pub ca_file: Option<PathBuf>,
    pub max_subscriptions: usize,
}

/// A configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error(
        "no API token: set AMBIENT_CP_TOKEN_URL, AMBIENT_CP_TOKEN_PUBLIC_KEY and SESSION_ID for the token exchange, or AMBIENT_TOKEN{missing}"
    )]
    NoToken { missing: String },
}

fn invalid(what: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        what,
        reason: reason.into(),
    }
}

/// `IP:PORT`, or the reference's `:PORT` for loopback.
pub fn parse_bind(raw: &str) -> Result<ListenAddr, ConfigError> {
    raw.parse()
        .map_err(|e: ambient_mcp_http::listen::ListenError| invalid("MCP_BIND_ADDR", e.to_string()))
}

/// The REST base `<api>/api/ambient/v1/` of an API URL.
pub fn api_base(raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim()).map_err(|e| invalid("AMBIENT_API_URL", e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(
            "AMBIENT_API_URL",
            "must be an http(s) URL with a host",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("AMBIENT_API_URL", "must not carry credentials"));
    }
    let path = url.path().trim_end_matches('/');
    url.join(&format!("{path}/api/ambient/v1/"))
        .map_err(|e| invalid("AMBIENT_API_URL", e.to_string()))
}

impl Config {
    /// Checks everything that can be checked before running.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let bind = parse_bind(&self.bind)?;
        let api_base = api_base(&self.api_url)?;
        let token = self.token_source()?;
        if self.max_subscriptions == 0 {
            return Err(invalid("MCP_MAX_SUBSCRIPTIONS", "must be at least 1"));
        }
        Ok(Settings {
            transport: self.transport,
            bind,
            api_base,
            token,
            allowed_hosts: AllowedHosts::new(&self.allowed_hosts),
            allowed_peers: AllowedPeers::new(&self.allowed_peers)
                .map_err(|e| invalid("MCP_ALLOWED_PEERS", e.to_string()))?,
            ca_file: self.ca_file.clone(),
            max_subscriptions: self.max_subscriptions,
        })
    }

    fn token_source(&self) -> Result<TokenSource, ConfigError> {
        fn nonempty(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let (url, pem, sid) = (
            nonempty(&self.token_url),
            nonempty(&self.token_public_key),
            nonempty(&self.session_id),
        );
        if let (Some(url), Some(pem), Some(sid)) = (url, pem, sid) {
            let key = PublicKey::from_pem(pem)
                .map_err(|e| invalid("AMBIENT_CP_TOKEN_PUBLIC_KEY", e.to_string()))?;
            ambient_protocol::url_policy::token_url(url)
                .map_err(|e| invalid("AMBIENT_CP_TOKEN_URL", e.to_string()))?;
            let mut cfg = ExchangerConfig::new(url, key, sid);
            cfg.protocol = match self.exchange_protocol {
                ExchangeProtocol::V1 => Protocol::V1,
                ExchangeProtocol::V2 => Protocol::V2,
            };
            cfg.session_key_file = self.session_key_file.clone();
            return Ok(TokenSource::Exchange(Box::new(cfg)));
        }
        match &self.token {
            Some(t) if !t.expose().trim().is_empty() => {
                Ok(TokenSource::Static(Secret::new(t.expose().trim())))
            }
            _ => {
                let missing: Vec<&str> = [
                    (url.is_none(), env::AMBIENT_CP_TOKEN_URL),
                    (pem.is_none(), env::AMBIENT_CP_TOKEN_PUBLIC_KEY),
                    (sid.is_none(), env::SESSION_ID),
                ]
                .into_iter()
                .filter_map(|(absent, name)| absent.then_some(name))
                .collect();
                let missing = if missing.len() < 3 {
                    format!(" (missing {})", missing.join(", "))
                } else {
                    String::new()
                };
                Err(ConfigError::NoToken { missing })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["ambient-mcp"];
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn bind_forms() {
        let addr = |b: &str| parse_bind(b).ok().map(|l| l.addr);
        // The reference's `:8090` stays on loopback.
        assert_eq!(addr(":8090"), "127.0.0.1:8090".parse().ok());
        assert_eq!(addr("127.0.0.1:0"), "127.0.0.1:0".parse().ok());
        assert_eq!(addr("0.0.0.0:8090"), "0.0.0.0:8090".parse().ok());
        assert!(parse_bind("localhost").is_err());
    }

    #[test]
    fn a_bad_peer_is_one_line() {
        let c = parse(&["--token", "tok", "--allow-peer", "10.0.0.0/8,nope"]);
        let msg = c
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("MCP_ALLOWED_PEERS") && msg.contains("nope"),
            "{msg}"
        );
    }

    #[test]
    fn api_base_is_under_the_rest_prefix() {
        let b = api_base("http://api:8000").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.as_str(), "http://api:8000/api/ambient/v1/");
        let b = api_base("https://h/prefix/").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.as_str(), "https://h/prefix/api/ambient/v1/");
        assert!(api_base("ftp://h").is_err());
        assert!(api_base("http://u:p@h").is_err());
    }

    #[test]
    fn a_static_token_is_the_fallback_and_some_token_is_required() {
        let c = parse(&["--token", "tok", "--session-id", "s1"]);
        assert!(matches!(
            c.validate().map(|s| s.token),
            Ok(TokenSource::Static(_))
        ));
        let err = parse(&["--session-id", "s1"]).validate().err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("missing AMBIENT_CP_TOKEN_URL, AMBIENT_CP_TOKEN_PUBLIC_KEY"),
            "{msg}"
        );
        assert!(!msg.contains("s1"));
    }
}
