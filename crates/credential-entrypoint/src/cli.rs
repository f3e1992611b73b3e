//! The command line: `credential-entrypoint [options] <command> [args...]`.
//!
//! The reference images call the entrypoint with the child's command and its
//! own flags right after it and no `--` (wire.md §5), so options are only
//! recognised *before* the command; everything from the first non-option
//! word on belongs to the child. A leading `--` is accepted and dropped.
//! Every option also has an environment variable, so an image needs no new
//! command line: the sidecar environment of wire.md §5 configures it.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use ambient_daemon::LogFormat;
use ambient_protocol::env;
use clap::{CommandFactory as _, Parser, ValueEnum};

/// Default kubeconfig path: the reference k8s image's command names it.
pub const DEFAULT_KUBECONFIG_PATH: &str = "/tmp/.ambient_kubeconfig";
/// Default path of the MPP deny-Namespace config (wire.md §5).
pub const DEFAULT_MPP_CONFIG_PATH: &str = "/tmp/mcp-mpp-config.toml";

/// What a changed credential does to a running child that reads it from its
/// environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnRotate {
    /// Stop the child gracefully (SIGTERM, grace period, SIGKILL) and start it
    /// again with the new credential.
    Restart,
    /// Keep the child running on the old credential (files are still rewritten).
    Ignore,
}

/// Token exchange plaintext form (wire.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExchangeProtocol {
    V1,
    V2,
}

/// Platform mode (wire.md §5 `PLATFORM_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformMode {
    Standard,
    Mpp,
}

/// Fetches one third-party credential with the session's exchanged API
/// token, hands it to the command it runs (environment variables or 0600
/// files), keeps it fresh, and supervises the command. Options go before the
/// command; everything from the command on is passed to it unchanged.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "credential-entrypoint",
    version,
    override_usage = "credential-entrypoint [OPTIONS] <COMMAND> [ARGS]..."
)]
pub struct Cli {
    /// Session whose token is exchanged.
    #[arg(long, value_name = "ID", env = env::SESSION_ID)]
    pub session_id: Option<String>,

    /// Credential provider served: github, gitlab, jira, google or kubeconfig.
    #[arg(long, value_name = "P", env = env::CREDENTIAL_PROVIDER)]
    pub provider: Option<String>,

    /// JSON object provider → credential ID, e.g. {"github":"abc123"}.
    #[arg(long, value_name = "JSON", env = env::CREDENTIAL_IDS)]
    pub credential_ids: Option<String>,

    /// API server base URL; its host must be cluster-local (localhost,
    /// 127.0.0.1, ::1, *.svc, *.svc.cluster.local) or given with --allow-host.
    #[arg(long, value_name = "URL", env = env::AMBIENT_API_URL)]
    pub api_url: Option<String>,

    /// Extra API host to accept besides the cluster-local ones (repeatable;
    /// comma-separated in the environment). Compared with the parsed host.
    #[arg(
        long = "allow-host",
        value_name = "H",
        env = "CREDENTIAL_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,

    /// Control plane token endpoint.
    #[arg(long, value_name = "URL", env = env::AMBIENT_CP_TOKEN_URL)]
    pub token_url: Option<String>,

    /// Control plane public key (PEM).
    #[arg(
        long,
        value_name = "PEM",
        env = env::AMBIENT_CP_TOKEN_PUBLIC_KEY,
        hide_env_values = true
    )]
    pub public_key: Option<String>,

    /// The session's exchange-v3 key file: while it exists, the exchange
    /// proves this key (no private-key operation on the server) instead of
    /// encrypting a v1/v2 bearer; read again at every exchange.
    #[arg(long, value_name = "PATH", env = env::AMBIENT_SESSION_KEY_FILE)]
    pub session_key_file: Option<PathBuf>,

    /// Token exchange protocol (v1 only for a reference control plane that
    /// checks the plaintext against its sessions). AMBIENT_EXCHANGE_PROTOCOL,
    /// its older name, is read when AMBIENT_CP_TOKEN_PROTOCOL is unset.
    #[arg(
        long,
        value_enum,
        value_name = "V",
        env = env::AMBIENT_CP_TOKEN_PROTOCOL,
        default_value = "v2"
    )]
    pub exchange_protocol: ExchangeProtocol,

    /// Platform mode; `mpp` with the kubeconfig provider writes the
    /// deny-Namespace config and passes `--config` to the command.
    #[arg(
        long,
        value_enum,
        value_name = "MODE",
        env = env::PLATFORM_MODE,
        default_value = "standard",
        ignore_case = true
    )]
    pub platform_mode: PlatformMode,

    /// Seconds between credential refreshes.
    #[arg(
        long = "refresh-interval",
        value_name = "SECS",
        env = "AMBIENT_CREDENTIAL_REFRESH_SECONDS",
        default_value_t = 300
    )]
    pub refresh_seconds: u64,

    /// What a changed environment credential does to the running command.
    #[arg(
        long,
        value_enum,
        value_name = "WHAT",
        env = "CREDENTIAL_ON_ROTATE",
        default_value = "restart"
    )]
    pub on_rotate: OnRotate,

    /// Seconds a command gets to exit after SIGTERM on a rotation restart
    /// before it is killed.
    #[arg(
        long = "grace-period",
        value_name = "SECS",
        env = "CREDENTIAL_GRACE_PERIOD_SECONDS",
        default_value_t = 10
    )]
    pub grace_seconds: u64,

    /// Where the kubeconfig credential is written.
    #[arg(
        long,
        value_name = "PATH",
        env = "CREDENTIAL_KUBECONFIG_PATH",
        default_value = DEFAULT_KUBECONFIG_PATH
    )]
    pub kubeconfig_path: PathBuf,

    /// Where the MPP deny-Namespace config is written.
    #[arg(
        long,
        value_name = "PATH",
        env = "CREDENTIAL_MPP_CONFIG_PATH",
        default_value = DEFAULT_MPP_CONFIG_PATH
    )]
    pub mpp_config_path: PathBuf,

    /// Private directory (created 0700) for other credential files, such as
    /// a Google service-account key. Default: a fresh directory under $TMPDIR.
    #[arg(long, value_name = "DIR", env = "CREDENTIAL_FILES_DIR")]
    pub files_dir: Option<PathBuf>,

    /// Serve the command's stdio MCP over HTTP on this address: legacy SSE
    /// at /sse + /message and Streamable HTTP at /mcp, one command per MCP
    /// session (instead of running the command once with our stdio). IP:PORT,
    /// or :PORT for 127.0.0.1:PORT; beyond loopback with a warning, serving
    /// loopback peers and --mcp-allow-peer only.
    #[arg(long, value_name = "ADDR", env = "CREDENTIAL_SERVE_MCP")]
    pub serve_mcp: Option<ambient_mcp_http::ListenAddr>,

    /// Peers served by --serve-mcp besides loopback: IP addresses or CIDR
    /// blocks (repeatable; comma-separated in the environment).
    #[arg(
        long = "mcp-allow-peer",
        value_name = "CIDR",
        env = "CREDENTIAL_MCP_ALLOWED_PEERS",
        value_delimiter = ','
    )]
    pub mcp_allow_peers: Vec<String>,

    /// Most MCP sessions (each with its own command) --serve-mcp holds at
    /// once, both transports together; beyond, a new session gets 503.
    #[arg(
        long,
        value_name = "N",
        env = "CREDENTIAL_MCP_MAX_SESSIONS",
        default_value_t = ambient_mcp_http::DEFAULT_MAX_SESSIONS
    )]
    pub mcp_max_sessions: usize,

    /// Seconds a Streamable HTTP session of --serve-mcp may go without a
    /// message before it is ended (and its command stopped).
    #[arg(
        long = "mcp-idle-timeout",
        value_name = "SECS",
        env = "CREDENTIAL_MCP_IDLE_SECONDS",
        default_value_t = ambient_mcp_http::DEFAULT_IDLE_TIMEOUT.as_secs()
    )]
    pub mcp_idle_seconds: u64,

    /// Log format on stderr.
    #[arg(long, value_enum, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. info or debug).
    #[arg(long, value_name = "FILTER", env = env::LOG_LEVEL, default_value = "info")]
    pub log_level: String,
}

impl Cli {
    /// The refresh interval.
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_seconds)
    }

    /// The rotation grace period.
    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_seconds)
    }
}

/// The parsed command line: options and the child's command.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub cli: Cli,
    /// The command and its arguments, exactly as given.
    pub command: Vec<OsString>,
}

/// Splits `argv` (with the program name first) into the options, which
/// stop at the first word that is not an option or an option's value, and
/// the command. A `--` that ends the options is dropped.
pub fn split(argv: &[OsString]) -> (Vec<OsString>, Vec<OsString>) {
    let spec = Cli::command();
    let takes_value = |long: &str| {
        spec.get_arguments()
            .find(|a| a.get_long() == Some(long))
            .is_some_and(|a| a.get_action().takes_values())
    };
    let program = argv.first().cloned().unwrap_or_default();
    let mut options = vec![program];
    let mut i = 1;
    while let Some(word) = argv.get(i) {
        let text = word.to_str().unwrap_or("");
        if text == "--" {
            return (options, argv[i + 1..].to_vec());
        }
        if let Some(long) = text.strip_prefix("--") {
            options.push(word.clone());
            if !long.contains('=')
                && takes_value(long)
                && let Some(value) = argv.get(i + 1)
            {
                options.push(value.clone());
                i += 1;
            }
        } else if text.starts_with('-') && text.len() > 1 {
            options.push(word.clone());
        } else {
            return (options, argv[i..].to_vec());
        }
        i += 1;
    }
    (options, Vec::new())
}

/// Parses the whole command line. `--help`/`--version` and option errors
/// come back as clap errors.
pub fn parse(argv: &[OsString]) -> Result<Invocation, clap::Error> {
    let (options, command) = split(argv);
    let cli = ambient_daemon::env_rules::try_parse_from::<Cli, _, _>(options)?;
    Ok(Invocation { cli, command })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        std::iter::once("credential-entrypoint")
            .chain(words.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn command_of(words: &[&str]) -> Vec<String> {
        split(&argv(words))
            .1
            .into_iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn reference_image_commands_pass_through_unchanged() {
        for cmd in [
            &[
                "mcp-proxy",
                "--pass-environment",
                "--port",
                "8091",
                "--",
                "github-mcp-server",
                "stdio",
            ][..],
            &["mcp-atlassian", "--transport", "sse", "--port", "8092"],
            &[
                "kubernetes-mcp-server",
                "--port",
                "8093",
                "--disable-multi-cluster",
                "--kubeconfig",
                "/tmp/.ambient_kubeconfig",
            ],
        ] {
            assert_eq!(command_of(cmd), cmd.to_vec());
        }
    }

    #[test]
    fn options_stop_at_the_command_and_a_leading_double_dash_is_dropped() {
        let words = [
            "--refresh-interval",
            "2",
            "--allow-host=127.0.0.2",
            "--on-rotate",
            "ignore",
            "--",
            "server",
            "--refresh-interval",
            "9",
        ];
        let inv = parse(&argv(&words)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inv.cli.refresh_seconds, 2);
        assert_eq!(inv.cli.on_rotate, OnRotate::Ignore);
        assert_eq!(inv.cli.allow_hosts, vec!["127.0.0.2".to_owned()]);
        assert_eq!(
            inv.command,
            ["server", "--refresh-interval", "9"].map(OsString::from)
        );
        // Without the `--`: the same split.
        assert_eq!(command_of(&words[..5]), Vec::<String>::new());
        assert_eq!(
            command_of(&["--on-rotate", "ignore", "server", "--on-rotate", "x"]),
            vec!["server", "--on-rotate", "x"]
        );
    }

    #[test]
    fn an_unknown_option_before_the_command_is_an_error() {
        assert!(parse(&argv(&["--port", "8091", "server"])).is_err());
    }

    #[test]
    fn every_option_has_an_environment_variable() {
        for arg in Cli::command().get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(
                arg.get_env().is_some(),
                "--{id} has no environment variable"
            );
        }
    }
}
