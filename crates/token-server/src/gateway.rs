//! The session gateway of the standalone binary (`--gateway-listen`): the
//! same gateway the control plane embeds, its session facts read from the API
//! server ([`ambient_token_server::session_facts`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ambient_session_gateway::{Gateway, SessionTokens, Upstream};
use ambient_token_server::Identity;
use ambient_token_server::session_facts::{ApiFacts, GatewayFacts, ProviderAuth};
use ambient_token_server::{SessionDirectory, TokenProvider};
use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{error, info};

use crate::Cli;

/// Where the session gateway listens and forwards REST to, when
/// `--gateway-listen` is given; its flags checked.
pub fn target(cli: &Cli, identity: &Identity) -> Result<Option<(SocketAddr, reqwest::Url)>> {
    let Some(listen) = cli.gateway_listen else {
        if cli.api_server_url.is_some() {
            bail!("--api-server-url is for the session gateway: add --gateway-listen");
        }
        return Ok(None);
    };
    if identity.session_tokens().is_none() {
        bail!(
            "--gateway-listen admits session tokens only: it cannot serve --session-identity platform"
        );
    }
    let url = cli
        .api_server_url
        .as_deref()
        .ok_or_else(|| anyhow!("--gateway-listen needs --api-server-url (the API's REST root)"))?;
    let url = reqwest::Url::parse(url).map_err(|e| anyhow!("--api-server-url: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("--api-server-url must be an http(s) URL with a host");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("--api-server-url must not carry credentials");
    }
    Ok(Some((listen, url)))
}

/// How long the gateway trusts what it read of a session or its grants
/// before reading it again in the background (at least a second).
fn refresh(cli: &Cli) -> Duration {
    Duration::from_millis(cli.session_cache_ms).max(Duration::from_secs(1))
}

/// Binds `listen` and serves the gateway in a task until `stop` is
/// notified; returns the session directory the exchange must use (it
/// remembers what it learns for the gateway) and the task.
pub async fn start(
    cli: &Cli,
    (listen, api_url): (SocketAddr, reqwest::Url),
    directory: Arc<dyn SessionDirectory>,
    provider: &Arc<dyn TokenProvider>,
    minter: Arc<SessionTokens>,
    stop: Arc<Notify>,
) -> Result<(Arc<dyn SessionDirectory>, JoinHandle<()>)> {
    let grpc_addr = cli
        .api_server_grpc
        .as_deref()
        .context("--gateway-listen needs --api-server-grpc")?;
    let mut http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(ca) = &cli.api_server_ca_file {
        let pem = std::fs::read(ca)
            .with_context(|| format!("reading --api-server-ca-file {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--api-server-ca-file {}", ca.display()))?
        {
            http = http.add_root_certificate(cert);
        }
    }
    let http = http.build().context("the gateway's HTTP client")?;
    let facts = ApiFacts::new(
        directory,
        &api_url,
        http.clone(),
        provider.clone(),
        refresh(cli),
    );
    let grpc = ambient_protocol::grpc::endpoint(
        grpc_addr,
        cli.api_server_grpc_tls,
        cli.api_server_ca_file.as_deref(),
    )
    .context("--api-server-grpc")?
    .connect_lazy();
    let upstream = Upstream::new(
        &api_url,
        http,
        grpc,
        Arc::new(ProviderAuth(provider.clone())),
    );
    let gateway = Gateway::new(minter, Arc::new(GatewayFacts(facts.clone())), upstream);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    ambient_daemon::announce_listening("session gateway", addr);
    info!(%addr, api = %api_url, "session gateway started");
    let task = tokio::spawn(async move {
        if let Err(e) = gateway
            .serve(listener, None, async move { stop.notified().await })
            .await
        {
            error!(error = %e, "the session gateway stopped");
        }
    });
    Ok((facts.directory(), task))
}
