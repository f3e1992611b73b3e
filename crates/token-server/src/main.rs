//! `ambient-token-server`: the standalone token exchange.

mod gateway;
mod key_files;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ambient_daemon::LogFormat;
use ambient_protocol::Secret;
use ambient_protocol::backoff::Backoff;
use ambient_protocol::exchange::KeySet;
use ambient_protocol::exchange::v3::RootKeys;
use ambient_protocol::url_policy;
use ambient_session_gateway::token::MAX_LIFETIME;
use ambient_token_server::{
    Config, GrpcDirectory, Identity, NoSessionCheck, OidcClientCredentials, RateLimit,
    SessionDirectory, SessionTokens, StaticToken, TokenProvider, TokenServer, V3Roots,
};
use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tracing::{info, warn};

/// The hardened token exchange: session containers trade an RSA-OAEP
/// encrypted session ID (v1), a replay-resistant v2 request, or a v3 proof
/// of their per-session key (--session-root-key-file), after a
/// live-session check, for a session token (a short-lived JWT naming the
/// session and its project; JWKS at /.well-known/jwks.json) or, with
/// --session-identity platform, for this server's own API token. With
/// --gateway-listen it also serves the session gateway: the API endpoint to
/// give sessions, which admits only session tokens and forwards, with this
/// server's identity, what the session may do on its own session, project
/// and delivered credentials.
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

    /// What a session gets: `session-tokens` (a JWT bound to the session,
    /// its project and pod generation) or `platform` (this server's own API
    /// token, with which every session can act as the platform: read every
    /// project and credential; only where session pods cannot be given a
    /// session gateway).
    #[arg(
        long,
        value_enum,
        env = "TOKEN_SERVER_SESSION_IDENTITY",
        default_value = "session-tokens"
    )]
    session_identity: SessionIdentityFlag,

    /// Session-token signing key PEM (RSA, 2048 to 4096 bits; PKCS#8 or
    /// PKCS#1). The first signs; a second is only published in the JWKS.
    /// To rotate: add the new key second and wait for verifiers to refresh
    /// the JWKS; swap the two; drop the old one once its last token expired
    /// (--session-token-ttl plus 30 s).
    #[arg(
        long = "signing-key-file",
        value_name = "PEM",
        env = "TOKEN_SERVER_SIGNING_KEY_FILES",
        value_delimiter = ','
    )]
    signing_key_files: Vec<PathBuf>,

    /// Create the first --signing-key-file (RSA-2048, mode 0600) if it does
    /// not exist.
    #[arg(long, env = "TOKEN_SERVER_GENERATE_SIGNING_KEY")]
    generate_signing_key: bool,

    /// Lifetime of a session token, in seconds (at most 600). A session's
    /// token is reused while a third of it remains.
    #[arg(
        long,
        value_name = "S",
        env = "TOKEN_SERVER_SESSION_TOKEN_TTL",
        default_value_t = 600,
        value_parser = clap::value_parser!(u64).range(1..=MAX_LIFETIME.as_secs())
    )]
    session_token_ttl: u64,

    /// File holding the static API token handed out (recommended over
    /// --api-token).
    #[arg(long, value_name = "F", env = "AMBIENT_API_TOKEN_FILE")]
    api_token_file: Option<PathBuf>,

    /// The static API token itself, from the environment only: a value given
    /// as --api-token is refused (any local user can read the process list).
    /// Prefer --api-token-file.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "AMBIENT_API_TOKEN",
        hide_env_values = true
    )]
    api_token: Option<Secret>,

    /// OIDC token endpoint for the client-credentials grant (https; plain
    /// http only with --allow-insecure-oidc).
    #[arg(long, value_name = "U", env = "OIDC_TOKEN_URL")]
    oidc_token_url: Option<String>,

    /// Accept a plain-http --oidc-token-url (the client secret then crosses
    /// the network unencrypted; for local development only).
    #[arg(long, env = "OIDC_ALLOW_INSECURE")]
    allow_insecure_oidc: bool,

    /// OIDC client ID.
    #[arg(long, value_name = "I", env = "OIDC_CLIENT_ID")]
    oidc_client_id: Option<String>,

    /// File holding the OIDC client secret (recommended over
    /// --oidc-client-secret).
    #[arg(
        long,
        value_name = "F",
        env = "OIDC_CLIENT_SECRET_FILE",
        hide_env_values = true
    )]
    oidc_client_secret_file: Option<PathBuf>,

    /// The OIDC client secret itself, from the environment only: a value
    /// given as --oidc-client-secret is refused (any local user can read the
    /// process list). Prefer --oidc-client-secret-file.
    #[arg(
        long,
        value_name = "S",
        env = "OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    oidc_client_secret: Option<Secret>,

    /// API server gRPC address (host:port or http://host:port) used to check
    /// that a session is live (GetSession, answers cached briefly).
    #[arg(long, value_name = "ADDR", env = "AMBIENT_GRPC_SERVER_ADDR")]
    api_server_grpc: Option<String>,

    /// Serve the session gateway on this address (port 0 picks a free port):
    /// point the sessions' AMBIENT_GRPC_URL, AMBIENT_API_URL and
    /// BACKEND_API_URL at it. Needs session tokens, --api-server-grpc and
    /// --api-server-url.
    #[arg(long, value_name = "ADDR", env = "TOKEN_SERVER_GATEWAY_LISTEN")]
    gateway_listen: Option<SocketAddr>,

    /// The API server's REST root (e.g. http://ambient-api-server:8000), to
    /// which the session gateway forwards REST calls.
    #[arg(long, value_name = "URL", env = "AMBIENT_API_SERVER_URL")]
    api_server_url: Option<String>,

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

    /// How long a GetSession answer is reused, in milliseconds (at most 60000).
    #[arg(
        long,
        value_name = "MS",
        env = "TOKEN_SERVER_SESSION_CACHE_MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(0..=60_000)
    )]
    session_cache_ms: u64,

    /// Hand a token to every well-formed session ID without checking the
    /// session (unsafe; for development only; with --session-identity
    /// platform only: a session token names the session's project, which
    /// only the session check knows).
    #[arg(long, env = "TOKEN_SERVER_NO_SESSION_CHECK")]
    no_session_check: bool,

    /// Refuse v1 (bare session ID) requests.
    #[arg(long, env = "TOKEN_SERVER_REQUIRE_V2")]
    require_v2: bool,

    /// Exchange v3 root key file (32 random bytes, base64; mode 0600). A
    /// session's containers prove the per-session key derived from it (an
    /// `Ambient-HMAC` header: two HMACs, no private-key operation here).
    /// Repeat for rotation: the first is current, the others still verify
    /// (keep the previous one for a session-token lifetime). The key is
    /// never printed. A session's key is derived from the root, the
    /// --installation-id, the session ID and its generation ("0" here, where
    /// callers are not bound to pods).
    #[arg(
        long = "session-root-key-file",
        value_name = "FILE",
        env = "TOKEN_SERVER_SESSION_ROOT_KEY_FILES",
        value_delimiter = ','
    )]
    session_root_key_files: Vec<PathBuf>,

    /// Create the first --session-root-key-file (mode 0600) if it does not
    /// exist.
    #[arg(long, env = "TOKEN_SERVER_GENERATE_SESSION_ROOT_KEY")]
    generate_session_root_key: bool,

    /// The installation the v3 session keys are derived for (1 to 128 of
    /// A-Z a-z 0-9 . _ : -); needed with --session-root-key-file.
    #[arg(long, value_name = "ID", env = "TOKEN_SERVER_INSTALLATION_ID")]
    installation_id: Option<String>,

    /// Refuse v1 and v2 requests: only exchange v3 gets a token (for
    /// installations whose session containers all run our clients). Needs
    /// --session-root-key-file.
    #[arg(long, env = "TOKEN_SERVER_REQUIRE_V3")]
    require_v3: bool,

    /// Sustained /token requests per second per client IP (0 turns the limit
    /// off; otherwise between 0.001 and 1000000).
    #[arg(
        long,
        value_name = "N",
        env = "TOKEN_SERVER_RATE_PER_IP",
        default_value_t = 10.0,
        value_parser = parse_rate
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

    /// Open connections in total; more are closed at once.
    #[arg(
        long,
        value_name = "N",
        env = "TOKEN_SERVER_MAX_CONNECTIONS",
        default_value_t = 4096,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    max_connections: u32,

    /// Open connections per client IP (IPv6 by /64); more are closed at once.
    #[arg(
        long,
        value_name = "N",
        env = "TOKEN_SERVER_MAX_CONNECTIONS_PER_IP",
        default_value_t = 32,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000)
    )]
    max_connections_per_ip: u32,

    /// Log format on stderr.
    #[arg(long, value_enum, env = "LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    /// Log filter (tracing EnvFilter syntax, e.g. info or debug).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    log_level: String,
}

/// The `--session-identity` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SessionIdentityFlag {
    SessionTokens,
    Platform,
}

/// A rate the limiter can compute with (refused at parse time otherwise).
fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    RateLimit {
        per_second: rate,
        ..RateLimit::default()
    }
    .validate()
    .map(|()| rate)
    .map_err(str::to_owned)
}

fn main() {
    let cli: Cli =
        ambient_daemon::parse_refusing_secret_args("", &["api_token", "oidc_client_secret"]);
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
        key_files::generate_exchange_key(&first)?;
    }
    let keys = cli
        .key_files
        .iter()
        .map(|p| key_files::load_exchange_key(p))
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
    let identity = identity(&cli, &provider)?;
    let v3_roots = v3_roots(&cli)?;
    let gateway = gateway::target(&cli, &identity)?;
    ambient_daemon::init_tracing(cli.log_format, &cli.log_level)?;
    let key_paths = cli
        .key_files
        .iter()
        .chain(&cli.signing_key_files)
        .chain(&cli.session_root_key_files);
    for path in key_paths.filter(|p| key_files::too_open(p)) {
        warn!(path = %path.display(), "key file is readable by group or others (chmod 600 it)");
    }
    if let Identity::Platform(_) = identity {
        warn!(
            "SESSION IDENTITY IS THE PLATFORM'S (--session-identity platform): every session container receives this server's own API token and can act as the platform, reading every project's sessions and every credential it may read; use only where session pods cannot be given a session gateway"
        );
    }
    let rt = ambient_daemon::async_runtime(ambient_daemon::Threads::PerCore)
        .context("starting the runtime")?;
    rt.block_on(serve(
        cli,
        (keys, v3_roots),
        provider,
        identity,
        session_check,
        gateway,
    ))
}

/// The v3 roots of `--session-root-key-file` (none without the flag).
fn v3_roots(cli: &Cli) -> Result<V3Roots> {
    if cli.session_root_key_files.is_empty() {
        if cli.require_v3 {
            bail!("--require-v3 needs --session-root-key-file (and --installation-id)");
        }
        if cli.generate_session_root_key || cli.installation_id.is_some() {
            bail!("--generate-session-root-key and --installation-id need --session-root-key-file");
        }
        return Ok(V3Roots::default());
    }
    let installation = cli
        .installation_id
        .as_deref()
        .ok_or_else(|| anyhow!("--session-root-key-file needs --installation-id"))?;
    if !key_files::is_installation_id(installation) {
        bail!("--installation-id must be 1 to 128 of A-Z a-z 0-9 . _ : -");
    }
    if cli.generate_session_root_key {
        key_files::generate_session_root_key(&cli.session_root_key_files[0])?;
    }
    let roots = cli
        .session_root_key_files
        .iter()
        .map(|p| key_files::load_session_root_key(p))
        .collect::<Result<Vec<_>>>()?;
    let roots = RootKeys::new(installation, roots)
        .ok_or_else(|| anyhow!("--session-root-key-file is required"))?;
    Ok(V3Roots::new(Some(roots)))
}

/// The identity of `--session-identity`, its flags checked.
fn identity(cli: &Cli, provider: &Arc<dyn TokenProvider>) -> Result<Identity> {
    match cli.session_identity {
        SessionIdentityFlag::Platform => {
            if !cli.signing_key_files.is_empty() || cli.generate_signing_key {
                bail!(
                    "--signing-key-file is for session tokens; --session-identity platform does not sign any"
                );
            }
            Ok(Identity::Platform(provider.clone()))
        }
        SessionIdentityFlag::SessionTokens => {
            if cli.no_session_check {
                bail!(
                    "--no-session-check cannot serve session tokens (a session token names the session's project, which only the session check knows): use --api-server-grpc, or --session-identity platform"
                );
            }
            if cli.generate_signing_key
                && let Some(first) = cli.signing_key_files.first()
            {
                key_files::generate_signing_key(first)?;
            }
            let ring = key_files::load_signing_ring(&cli.signing_key_files)?;
            let ttl = Duration::from_secs(cli.session_token_ttl);
            Ok(Identity::SessionTokens(Arc::new(SessionTokens::new(
                ring, ttl,
            )?)))
        }
    }
}

/// A secret given directly or as a file (not both); `None` when neither.
fn secret_from(value: Option<&Secret>, file: Option<&Path>, flag: &str) -> Result<Option<Secret>> {
    let secret = match (value, file) {
        (Some(_), Some(_)) => bail!("--{flag} and --{flag}-file are both set; use one"),
        (Some(v), None) => v.clone(),
        (None, Some(path)) => Secret::from_file(path)
            .with_context(|| format!("reading --{flag}-file {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    if secret.is_empty() {
        bail!("--{flag} is empty");
    }
    Ok(Some(secret))
}

fn provider(cli: &Cli) -> Result<Arc<dyn TokenProvider>> {
    let token = secret_from(
        cli.api_token.as_ref(),
        cli.api_token_file.as_deref(),
        "api-token",
    )?;
    let client_secret = secret_from(
        cli.oidc_client_secret.as_ref(),
        cli.oidc_client_secret_file.as_deref(),
        "oidc-client-secret",
    )?;
    let oidc_given =
        cli.oidc_token_url.is_some() || cli.oidc_client_id.is_some() || client_secret.is_some();
    match (token, oidc_given) {
        (Some(_), true) => bail!("--api-token(-file) and --oidc-* contradict each other"),
        (Some(token), false) => Ok(Arc::new(StaticToken::new(token))),
        (None, true) => {
            let (Some(url), Some(id), Some(secret)) =
                (&cli.oidc_token_url, &cli.oidc_client_id, client_secret)
            else {
                bail!(
                    "OIDC needs all of --oidc-token-url, --oidc-client-id and --oidc-client-secret-file"
                );
            };
            url_policy::oidc_token_url(url, cli.allow_insecure_oidc)
                .map_err(|e| anyhow!("--oidc-token-url: {e}"))?;
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
    (keys, v3_roots): (KeySet, V3Roots),
    provider: Arc<dyn TokenProvider>,
    identity: Identity,
    grpc: Option<String>,
    gateway: Option<(SocketAddr, reqwest::Url)>,
) -> Result<()> {
    let mut gateway_task = None;
    let stop_gateway = Arc::new(tokio::sync::Notify::new());
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
            match (gateway, identity.session_tokens()) {
                (Some(target), Some(minter)) => {
                    let (directory, task) = gateway::start(
                        &cli,
                        target,
                        dir,
                        &provider,
                        minter.clone(),
                        stop_gateway.clone(),
                    )
                    .await?;
                    gateway_task = Some(task);
                    directory
                }
                _ => dir,
            }
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
        require_v3: cli.require_v3,
        rate_limit: RateLimit {
            per_second: cli.rate_per_ip,
            burst: cli.burst_per_ip,
            ..RateLimit::default()
        },
        max_connections: cli.max_connections as usize,
        max_connections_per_ip: cli.max_connections_per_ip as usize,
        ..Config::default()
    };
    config.validate()?;
    let identity_name = identity.name();
    let v3_kids: Vec<String> = v3_roots
        .get()
        .map(|r| r.roots().iter().map(|k| k.kid().to_owned()).collect())
        .unwrap_or_default();
    let server = TokenServer::new(keys, directory, identity, config).with_v3_roots(v3_roots);
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let addr = listener.local_addr()?;
    ambient_daemon::announce_listening("token server", addr);
    info!(%addr, require_v2 = cli.require_v2, require_v3 = cli.require_v3, v3_kids = ?v3_kids, identity = identity_name, "token server started");
    let shutdown = ambient_daemon::shutdown_signal().context("installing the signal handlers")?;
    server
        .serve(listener, async move {
            shutdown.await;
            info!("shutdown requested");
        })
        .await?;
    if let Some(mut task) = gateway_task {
        // Its open watches get the same grace as the exchange's requests.
        stop_gateway.notify_one();
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
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
