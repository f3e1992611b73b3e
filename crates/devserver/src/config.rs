//! Command-line flags; each one can also be set through its environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ambient_protocol::Secret;

pub use ambient_daemon::LogFormat;

/// Configuration of the devserver.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ambient-devserver",
    version,
    about = "A local, wire-compatible stand-in for ambient-api-server (gRPC ambient.v1 + REST /api/ambient/v1 over SQLite). Not a production API server."
)]
pub struct Config {
    /// gRPC listen address; port 0 picks a free port.
    #[arg(
        long,
        value_name = "ADDR",
        env = "AMBIENT_DEVSERVER_GRPC_LISTEN",
        default_value = "127.0.0.1:9000"
    )]
    pub grpc_listen: SocketAddr,

    /// HTTP (REST, OIDC token endpoint) listen address; port 0 picks a free port.
    #[arg(
        long,
        value_name = "ADDR",
        env = "AMBIENT_DEVSERVER_HTTP_LISTEN",
        default_value = "127.0.0.1:8000"
    )]
    pub http_listen: SocketAddr,

    /// A bearer token the server accepts, optionally `NAME=TOKEN`: NAME is the
    /// caller's identity (`created_by_user_id`, owners), `dev` when absent
    /// (comma-separated). From the environment variable only: a value on the
    /// command line is refused (any local user can read it there).
    #[arg(
        long = "token",
        value_name = "T",
        env = "AMBIENT_DEVSERVER_TOKEN",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub tokens: Vec<Secret>,

    /// A file of accepted bearer tokens, one `TOKEN` or `NAME=TOKEN` per line;
    /// blank lines and lines starting with `#` are skipped (repeatable;
    /// comma-separated in the env).
    #[arg(
        long = "token-file",
        value_name = "F",
        env = "AMBIENT_DEVSERVER_TOKEN_FILE",
        value_delimiter = ','
    )]
    pub token_files: Vec<PathBuf>,

    /// Directory of the SQLite database, created mode 0700, the file 0600
    /// (credential tokens are stored in clear) [default: $XDG_DATA_HOME/ambient-devserver,
    /// else ~/.local/share/ambient-devserver].
    #[arg(
        long,
        value_name = "D",
        env = "AMBIENT_DEVSERVER_DATA_DIR",
        conflicts_with = "in_memory"
    )]
    pub data_dir: Option<PathBuf>,

    /// Keep everything in memory (lost on exit); for tests.
    #[arg(long, env = "AMBIENT_DEVSERVER_IN_MEMORY")]
    pub in_memory: bool,

    /// OIDC client id accepted by `POST /oidc/token` (client-credentials grant).
    #[arg(
        long,
        value_name = "ID",
        env = "AMBIENT_DEVSERVER_OIDC_CLIENT_ID",
        requires = "oidc_client_secret"
    )]
    pub oidc_client_id: Option<String>,

    /// OIDC client secret accepted by `POST /oidc/token`, from the
    /// environment variable only (a value on the command line is refused).
    #[arg(
        long,
        value_name = "SECRET",
        env = "AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET",
        hide_env_values = true,
        requires = "oidc_client_id"
    )]
    pub oidc_client_secret: Option<Secret>,

    /// Lifetime in seconds of the tokens `POST /oidc/token` issues.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "AMBIENT_DEVSERVER_OIDC_TOKEN_TTL",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub oidc_token_ttl: u64,

    /// Serve gRPC over TLS with this certificate chain (PEM); needs --tls-key-file.
    #[arg(
        long,
        value_name = "PEM",
        env = "AMBIENT_DEVSERVER_TLS_CERT_FILE",
        requires = "tls_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert-file.
    #[arg(
        long,
        value_name = "PEM",
        env = "AMBIENT_DEVSERVER_TLS_KEY_FILE",
        requires = "tls_cert_file"
    )]
    pub tls_key_file: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = "AMBIENT_DEVSERVER_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter (tracing env-filter syntax, e.g. `info` or `ambient_devserver=debug`).
    #[arg(long, value_name = "FILTER", env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl Config {
    /// The OIDC token lifetime.
    pub fn oidc_token_ttl(&self) -> Duration {
        Duration::from_secs(self.oidc_token_ttl)
    }

    /// Where the database lives: `None` for in-memory.
    pub fn database_dir(&self) -> Option<PathBuf> {
        if self.in_memory {
            return None;
        }
        Some(self.data_dir.clone().unwrap_or_else(default_data_dir))
    }
}

/// The per-user data directory: `$XDG_DATA_HOME/ambient-devserver`, else
/// `~/.local/share/ambient-devserver`, else `./ambient-devserver-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("ambient-devserver");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/ambient-devserver");
    }
    PathBuf::from("ambient-devserver-data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn repeatable_tokens_and_defaults() {
        let c = Config::try_parse_from([
            "ambient-devserver",
            "--token",
            "a",
            "--token",
            "b",
            "--in-memory",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tokens.len(), 2);
        assert_eq!(c.grpc_listen.port(), 9000);
        assert_eq!(c.http_listen.port(), 8000);
        assert_eq!(c.database_dir(), None);
        assert!(
            Config::try_parse_from(["x", "--in-memory", "--data-dir", "/tmp/x"]).is_err(),
            "--in-memory and --data-dir conflict"
        );
        assert!(
            Config::try_parse_from(["x", "--oidc-client-id", "id"]).is_err(),
            "an OIDC client id needs a secret"
        );
    }

    #[test]
    fn help_never_shows_secret_values() {
        let help = Config::command().render_long_help().to_string();
        assert!(help.contains("AMBIENT_DEVSERVER_TOKEN"));
        assert!(help.contains("AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET"));
        for flag in [
            "--grpc-listen",
            "--http-listen",
            "--token",
            "--token-file",
            "--data-dir",
            "--in-memory",
            "--oidc-client-id",
            "--oidc-client-secret",
            "--oidc-token-ttl",
            "--log-format",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }
}
