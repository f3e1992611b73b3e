//! `ambient-token-server`: the standalone token exchange.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ambient_daemon::LogFormat;
use ambient_protocol::Secret;
use ambient_protocol::backoff::Backoff;
use ambient_protocol::exchange::KeySet;
use ambient_protocol::keys::PrivateKey;
use ambient_token_server::{
    Config, GrpcDirectory, NoSessionCheck, OidcClientCredentials, RateLimit, SessionDirectory,
    StaticToken, TokenProvider, TokenServer,
};
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tracing::{info, warn};

/// The hardened token exchange: session containers trade an RSA-OAEP
/// encrypted session ID (v1) or a replay-resistant v2 request for the API
/// token, after a live-session check.
#[derive(Debug, Parser)]
#[command(name = "ambient-token-server", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "TOKEN_SERVER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Private key PEM (PKCS#1 or PKCS#8). Repeat for rotation: the first is
    /// current and published, all are tried for decryption.
    #[arg(
        long = "key-file",
        value_name = "PEM",
        env = "TOKEN_SERVER_KEY_FILES",
        value_delimiter = ','
    )]
    key_files: Vec<PathBuf>,

    /// Create the first --key-file (RSA-4096, mode 0600) if it does not exist.
    #[arg(long, env = "TOKEN_SERVER_GENERATE_KEY")]
    generate_key: bool,

    /// Print the current public key (SPKI PEM) to stdout and exit.
    #[arg(long, env = "TOKEN_SERVER_PRINT_PUBLIC_KEY")]
    print_public_key: bool,

    /// File holding the static API token handed out.
    #[arg(long, value_name = "F", env = "AMBIENT_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,

    /// OIDC token endpoint for the client-credentials grant.
    #[arg(long, value_name = "U", env = "OIDC_TOKEN_URL")]
    oidc_token_url: Option<String>,

    /// OIDC client ID.
    #[arg(long, value_name = "I", env = "OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,

    /// File holding the OIDC client secret.
    #[arg(
        long,
        value_name = "S",
        env = "OIDC_CLIENT_SECRET_FILE",
        hide_env_values = true
    )]
    oidc_client_secret_file: Option<PathBuf>,

    /// API server gRPC address (host:port or http://host:port) used to check
    /// that a session is live (GetSession, answers cached briefly).
    #[arg(long, value_name = "ADDR", env = "AMBIENT_GRPC_SERVER_ADDR")]
    api_server_grpc: Option<String>,

    /// Use TLS to the API server's gRPC address (system roots plus
    /// --api-server-ca-file).
    #[arg(
        long,
        env = "AMBIENT_GRPC_USE_TLS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true"
    )]
    api_server_grpc_tls: bool,

    /// CA file to trust for gRPC TLS (e.g. the OpenShift service CA).
    #[arg(long, value_name = "PEM", env = "AMBIENT_GRPC_CA_CERT_FILE")]
    api_server_ca_file: Option<PathBuf>,

    /// How long a GetSession answer is reused, in milliseconds.
    #[arg(
        long,
        value_name = "MS",
        env = "TOKEN_SERVER_SESSION_CACHE_MS",
        default_value_t = 2000
    )]
    session_cache_ms: u64,

    /// Hand a token to every well-formed session ID without checking the
    /// session (unsafe; for development only).
    #[arg(long, env = "TOKEN_SERVER_NO_SESSION_CHECK")]
    no_session_check: bool,

    /// Refuse v1 (bare session ID) requests.
    #[arg(long, env = "TOKEN_SERVER_REQUIRE_V2")]
    require_v2: bool,

    /// Sustained /token requests per second per client IP.
    #[arg(
        long,
        value_name = "N",
        env = "TOKEN_SERVER_RATE_PER_IP",
        default_value_t = 10.0
    )]
    rate_per_ip: f64,

    /// /token requests a client IP may send in a burst.
    #[arg(
        long,
        value_name = "N",
        env = "TOKEN_SERVER_BURST_PER_IP",
        default_value_t = 20
    )]
    burst_per_ip: u32,

    /// Log format on stderr.
    #[arg(long, value_enum, env = "LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. info or debug).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                let _ = e.print();
                std::process::exit(0);
            }
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let first = cli
        .key_files
        .first()
        .ok_or_else(|| anyhow!("--key-file is required"))?
        .clone();
    if cli.generate_key {
        generate_if_absent(&first)?;
    }
    let keys = cli
        .key_files
        .iter()
        .map(|p| load_key(p))
        .collect::<Result<Vec<_>>>()?;
    let keys = KeySet::new(keys).ok_or_else(|| anyhow!("--key-file is required"))?;
    if cli.print_public_key {
        let mut out = std::io::stdout().lock();
        out.write_all(keys.current().public_key().to_pem().as_bytes())?;
        out.flush()?;
        return Ok(());
    }
    let provider = provider(&cli)?;
    let session_check = match (&cli.api_server_grpc, cli.no_session_check) {
        (Some(_), true) => bail!("--api-server-grpc and --no-session-check contradict each other"),
        (None, false) => bail!("one of --api-server-grpc or --no-session-check is required"),
        (addr, _) => addr.clone(),
    };
    ambient_daemon::init_tracing(cli.log_format, &cli.log_level)?;
    for path in cli.key_files.iter().filter(|p| too_open(p)) {
        warn!(path = %path.display(), "key file is readable by group or others (chmod 600 it)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(serve(cli, keys, provider, session_check))
}

fn provider(cli: &Cli) -> Result<Arc<dyn TokenProvider>> {
    let oidc_given = cli.oidc_token_url.is_some()
        || cli.oidc_client_id.is_some()
        || cli.oidc_client_secret_file.is_some();
    match (&cli.api_token_file, oidc_given) {
        (Some(_), true) => bail!("--api-token-file and --oidc-* contradict each other"),
        (Some(path), false) => {
            let token = Secret::from_file(path)
                .with_context(|| format!("reading --api-token-file {}", path.display()))?;
            if token.is_empty() {
                bail!("--api-token-file {} is empty", path.display());
            }
            Ok(Arc::new(StaticToken::new(token)))
        }
        (None, true) => {
            let (Some(url), Some(id), Some(secret_file)) = (
                &cli.oidc_token_url,
                &cli.oidc_client_id,
                &cli.oidc_client_secret_file,
            ) else {
                bail!(
                    "OIDC needs all of --oidc-token-url, --oidc-client-id and --oidc-client-secret-file"
                );
            };
            let parsed = reqwest::Url::parse(url)
                .with_context(|| "--oidc-token-url is not a URL".to_owned())?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                bail!("--oidc-token-url must be an http(s) URL with a host");
            }
            let secret = Secret::from_file(secret_file).with_context(|| {
                format!(
                    "reading --oidc-client-secret-file {}",
                    secret_file.display()
                )
            })?;
            Ok(Arc::new(OidcClientCredentials::new(
                url.clone(),
                id.clone(),
                secret,
            )?))
        }
        (None, false) => bail!(
            "an API token source is required: --api-token-file, or --oidc-token-url with --oidc-client-id and --oidc-client-secret-file"
        ),
    }
}

async fn serve(
    cli: Cli,
    keys: KeySet,
    provider: Arc<dyn TokenProvider>,
    grpc: Option<String>,
) -> Result<()> {
    let directory: Arc<dyn SessionDirectory> = match grpc {
        Some(addr) => {
            let dir = Arc::new(GrpcDirectory::new(
                &addr,
                cli.api_server_grpc_tls,
                cli.api_server_ca_file.as_deref(),
                provider.clone(),
                Duration::from_millis(cli.session_cache_ms),
            )?);
            tokio::spawn(probe_until_ready(dir.clone()));
            dir
        }
        None => {
            warn!(
                "SESSION CHECK DISABLED (--no-session-check): any holder of the public key gets the API token for any session ID; never run this in production"
            );
            Arc::new(NoSessionCheck)
        }
    };
    let config = Config {
        require_v2: cli.require_v2,
        rate_limit: RateLimit {
            per_second: cli.rate_per_ip,
            burst: cli.burst_per_ip,
            ..RateLimit::default()
        },
        ..Config::default()
    };
    let server = TokenServer::new(keys, directory, provider, config);
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let addr = listener.local_addr()?;
    ambient_daemon::announce_listening("token server", addr);
    info!(%addr, require_v2 = cli.require_v2, "token server started");
    let shutdown = ambient_daemon::shutdown_signal().context("installing the signal handlers")?;
    server
        .serve(listener, async move {
            shutdown.await;
            info!("shutdown requested");
        })
        .await?;
    info!("token server stopped");
    Ok(())
}

async fn probe_until_ready(dir: Arc<GrpcDirectory>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match dir.probe().await {
            Ok(()) => {
                info!("session directory reachable");
                return;
            }
            Err(e) => {
                let wait = backoff.next_delay();
                warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "session directory not reachable yet");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn load_key(path: &Path) -> Result<PrivateKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading --key-file {}", path.display()))?;
    PrivateKey::from_pem(&pem).with_context(|| format!("--key-file {}", path.display()))
}

/// True when a key file can be read by group or others.
fn too_open(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

fn generate_if_absent(path: &Path) -> Result<()> {
    if path.exists() {
        return Ok(());
    }
    let key = PrivateKey::generate().context("generating an RSA-4096 key")?;
    let pem = key.to_pkcs1_pem()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(pem.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("generated a new RSA-4096 key in {}", path.display());
            Ok(())
        }
        // Someone else created it meanwhile: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}
