//! The runner environment of wire.md §5, each variable also a flag.
//! [`Config::validate`] turns the raw values into [`Settings`] or one clear
//! line saying what is wrong.

use std::path::{Path, PathBuf};

use ambient_protocol::Secret;
use ambient_protocol::env;
use ambient_protocol::exchange::Protocol;
use ambient_protocol::keys::PublicKey;
use clap::{Args, ValueEnum};

/// Where the reference runner looks for the OpenShift service CA when
/// `AMBIENT_GRPC_CA_CERT_FILE` names no readable file.
pub const SERVICE_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/service-ca.crt";

/// The bot-token file a session may mount (daemons.md), re-read when it changes.
pub const BOT_TOKEN_PATH: &str = "/var/run/secrets/ambient/bot-token";

/// The API server's gRPC address when `AMBIENT_GRPC_URL` is unset.
pub const DEFAULT_GRPC_URL: &str = "ambient-api-server:9000";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Token-exchange plaintext version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExchangeProtocol {
    /// The reference protocol: the bare session ID.
    V1,
    /// Replay-resistant JSON plaintext (default).
    V2,
}

/// Connection and token settings shared by every command.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// gRPC address of the API server (host:port, or an http(s):// URL).
    #[arg(long, value_name = "ADDR", env = env::AMBIENT_GRPC_URL, default_value = DEFAULT_GRPC_URL)]
    pub grpc_url: String,

    /// Use TLS to the API server: as the reference runner reads it, `true`,
    /// `1` or `yes` (any case) is true, anything else false.
    #[arg(long, value_name = "BOOL", env = env::AMBIENT_GRPC_USE_TLS, default_value = "false", action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", value_parser = ambient_daemon::env_rules::is_truthy)]
    pub grpc_use_tls: bool,

    /// CA certificate (PEM) to trust for gRPC TLS besides the system roots.
    /// When it names no file, --service-ca-file is tried, then the system
    /// roots alone.
    #[arg(long, value_name = "PEM", env = env::AMBIENT_GRPC_CA_CERT_FILE)]
    pub grpc_ca_cert_file: Option<PathBuf>,

    /// Fallback CA file (the OpenShift service CA) when --grpc-ca-cert-file
    /// is unset or missing.
    #[arg(long, value_name = "PEM", env = "AMBIENT_SERVICE_CA_FILE", default_value = SERVICE_CA_PATH)]
    pub service_ca_file: PathBuf,

    /// Control-plane token endpoint; when set, tokens come from the exchange
    /// (needs --cp-token-public-key and --session-id).
    #[arg(long, value_name = "URL", env = env::AMBIENT_CP_TOKEN_URL)]
    pub cp_token_url: Option<String>,

    /// The control plane's public key (PEM text, or @FILE).
    #[arg(long, value_name = "PEM", env = env::AMBIENT_CP_TOKEN_PUBLIC_KEY)]
    pub cp_token_public_key: Option<String>,

    /// The session's exchange-v3 key file: while it exists, the exchange
    /// proves this key (no private-key operation on the server) instead of
    /// encrypting a v1/v2 bearer; read again at every exchange.
    #[arg(long, value_name = "PATH", env = env::AMBIENT_SESSION_KEY_FILE)]
    pub session_key_file: Option<PathBuf>,

    /// Token-exchange protocol (v1 for token servers that check the bare session ID).
    #[arg(
        long,
        value_enum,
        value_name = "V",
        env = env::AMBIENT_CP_TOKEN_PROTOCOL,
        default_value = "v2"
    )]
    pub exchange_protocol: ExchangeProtocol,

    /// This session's ID: the exchange identity, and the default session of push and watch.
    #[arg(long, value_name = "ID", env = env::SESSION_ID)]
    pub session_id: Option<String>,

    /// File holding the API token, re-read when it changes (used when no
    /// token URL is set and the file exists; before BOT_TOKEN).
    #[arg(long, value_name = "F", env = "BOT_TOKEN_FILE", default_value = BOT_TOKEN_PATH)]
    pub bot_token_file: PathBuf,

    /// Static API token (when there is no token URL and no token file),
    /// from the environment only: a value here is refused, since the
    /// process list shows it.
    #[arg(long, value_name = "T", env = env::BOT_TOKEN, hide_env_values = true)]
    pub bot_token: Option<Secret>,

    /// Log filter on stderr (error, warn, info, debug, or a tracing filter).
    #[arg(long, value_name = "FILTER", env = env::LOG_LEVEL, default_value = "info")]
    pub log_level: String,

    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// Where the API token comes from.
#[derive(Debug, Clone)]
pub enum TokenConfig {
    /// The control-plane exchange.
    Exchange {
        url: String,
        public_key: PublicKey,
        session_id: String,
        protocol: Protocol,
        /// The exchange-v3 key file (used while it exists).
        session_key_file: Option<PathBuf>,
    },
    /// A token file, re-read when it changes.
    File(PathBuf),
    /// A fixed token.
    Static(Secret),
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub grpc_url: String,
    pub use_tls: bool,
    /// The CA file to trust (besides the system roots), if any.
    pub ca_file: Option<PathBuf>,
    pub token: TokenConfig,
    pub session_id: Option<String>,
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is set, so {1} is required too")]
    Missing(&'static str, &'static str),
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error(
        "no API token source: set AMBIENT_CP_TOKEN_URL (with AMBIENT_CP_TOKEN_PUBLIC_KEY and SESSION_ID), provide --bot-token-file, or set BOT_TOKEN"
    )]
    NoToken,
}

impl Config {
    /// Checks the settings; reads the public key if given as `@FILE`.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let session_id = self.session_id.clone().filter(|s| !s.trim().is_empty());
        Ok(Settings {
            grpc_url: self.grpc_url.trim().to_owned(),
            use_tls: self.grpc_use_tls,
            ca_file: self.ca_file(),
            token: self.token_config(session_id.as_deref())?,
            session_id,
        })
    }

    /// The explicit CA file when it exists, else the service CA when it
    /// exists, else none (system roots). A configured file that is missing
    /// is not an error: pods always name the service-CA path, whose
    /// ConfigMap is optional.
    fn ca_file(&self) -> Option<PathBuf> {
        if let Some(path) = &self.grpc_ca_cert_file {
            if path.exists() {
                return Some(path.clone());
            }
            tracing::debug!(path = %path.display(), "CA file absent; trying the service CA");
        }
        self.service_ca_file
            .exists()
            .then(|| self.service_ca_file.clone())
    }

    fn token_config(&self, session_id: Option<&str>) -> Result<TokenConfig, ConfigError> {
        let url = self.cp_token_url.as_deref().map(str::trim);
        if let Some(url) = url.filter(|u| !u.is_empty()) {
            let pem = self
                .cp_token_public_key
                .as_deref()
                .filter(|k| !k.trim().is_empty())
                .ok_or(ConfigError::Missing(
                    env::AMBIENT_CP_TOKEN_URL,
                    env::AMBIENT_CP_TOKEN_PUBLIC_KEY,
                ))?;
            let session_id = session_id.ok_or(ConfigError::Missing(
                env::AMBIENT_CP_TOKEN_URL,
                env::SESSION_ID,
            ))?;
            let public_key = read_public_key(pem)?;
            ambient_protocol::url_policy::token_url(url).map_err(|e| ConfigError::Invalid {
                what: env::AMBIENT_CP_TOKEN_URL,
                reason: e.to_string(),
            })?;
            return Ok(TokenConfig::Exchange {
                url: url.to_owned(),
                public_key,
                session_id: session_id.to_owned(),
                protocol: match self.exchange_protocol {
                    ExchangeProtocol::V1 => Protocol::V1,
                    ExchangeProtocol::V2 => Protocol::V2,
                },
                session_key_file: self.session_key_file.clone(),
            });
        }
        // daemons.md order: exchange, then the (rotatable) file, then BOT_TOKEN.
        if self.bot_token_file.exists() {
            return Ok(TokenConfig::File(self.bot_token_file.clone()));
        }
        if let Some(token) = self.bot_token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(TokenConfig::Static(token.clone()));
        }
        Err(ConfigError::NoToken)
    }
}

/// PEM text, or `@FILE` holding it.
fn read_public_key(value: &str) -> Result<PublicKey, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        what: env::AMBIENT_CP_TOKEN_PUBLIC_KEY,
        reason,
    };
    let pem = match value.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(Path::new(path))
            .map_err(|e| invalid(format!("cannot read {path}: {e}")))?,
        None => value.to_owned(),
    };
    PublicKey::from_pem(&pem).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["t", "--bot-token-file", "/nonexistent/bot-token"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|c| c.config)
    }

    #[test]
    fn token_url_needs_key_and_session() {
        let cfg =
            parse(&["--cp-token-url", "http://cp:8080/token"]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.validate().err(),
            Some(ConfigError::Missing(
                "AMBIENT_CP_TOKEN_URL",
                "AMBIENT_CP_TOKEN_PUBLIC_KEY"
            ))
        );
        let cfg = parse(&[
            "--cp-token-url",
            "http://cp:8080/token",
            "--cp-token-public-key",
            "not a key",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.validate().err(),
            Some(ConfigError::Missing("AMBIENT_CP_TOKEN_URL", "SESSION_ID"))
        );
        let cfg = parse(&[
            "--cp-token-url",
            "http://cp:8080/token",
            "--cp-token-public-key",
            "not a key",
            "--session-id",
            "session-0001",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            cfg.validate(),
            Err(ConfigError::Invalid {
                what: "AMBIENT_CP_TOKEN_PUBLIC_KEY",
                ..
            })
        ));
    }

    #[test]
    fn static_token_and_no_token() {
        let cfg = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.validate().err(), Some(ConfigError::NoToken));
        let cfg = parse(&["--bot-token", "tok-123"]).unwrap_or_else(|e| panic!("{e}"));
        let settings = cfg.validate().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(settings.token, TokenConfig::Static(t) if t.expose() == "tok-123"));
        assert_eq!(settings.grpc_url, DEFAULT_GRPC_URL);
        assert!(!settings.use_tls);
        // An existing token file comes before BOT_TOKEN.
        let file = std::env::current_exe().unwrap_or_default();
        let file = file.display().to_string();
        let cfg = Cli::try_parse_from(["t", "--bot-token-file", &file, "--bot-token", "tok"])
            .unwrap_or_else(|e| panic!("{e}"))
            .config;
        let settings = cfg.validate().unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(settings.token, TokenConfig::File(p) if p == Path::new(&file)));
    }

    #[test]
    fn missing_ca_files_fall_back_to_system_roots() {
        let cfg = parse(&[
            "--bot-token",
            "t",
            "--grpc-ca-cert-file",
            "/nonexistent/ca.crt",
            "--service-ca-file",
            "/nonexistent/service-ca.crt",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let settings = cfg.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.ca_file, None);
        let here = std::env::current_exe().unwrap_or_default();
        let here = here.display().to_string();
        let cfg = parse(&[
            "--bot-token",
            "t",
            "--grpc-ca-cert-file",
            "/nonexistent/ca.crt",
            "--service-ca-file",
            &here,
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let settings = cfg.validate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(settings.ca_file, Some(PathBuf::from(here)));
    }
}
