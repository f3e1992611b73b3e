//! The control-plane daemon: keypair, informers, embedded token server,
//! health endpoints, leader election and reconcile workers, wired together.

use std::net::SocketAddr;
use std::sync::Arc;

use ambient_protocol::exchange::KeySet;
use ambient_protocol::phase::Phase;
use ambient_protocol::v1::{Project, ProjectSettings, Session};
use ambient_token_server::{
    BoxFuture, DirectoryError, OidcClientCredentials, SessionDirectory, StaticToken, TokenProvider,
    TokenServer,
};
use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::watch;

use crate::api::Api;
use crate::config::{ApiAuth, Config, Mode, Settings};
use crate::informer::{self, Store};
use crate::metrics::Metrics;
use crate::queue::WorkQueue;
use crate::reconcile::{Controller, Key};
use crate::rest::Rest;
use crate::runtime::SessionRuntime;
use crate::runtime::kube::KubeRuntime;
use crate::runtime::log::LogRuntime;
use crate::runtime::process::{self, ProcessRuntime, RuntimeKind};
use crate::supervisor::supervise;
use crate::{keypair, leader};

/// The informer's session cache answers the token server: a session may
/// hold a token while it is cached and not terminal (wire.md §3). A
/// `Stopping` session still gets tokens: its runner is in its grace period.
impl SessionDirectory for Store<Session> {
    fn is_live<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<bool, DirectoryError>> {
        let live = self
            .get(session_id)
            .is_some_and(|s| Phase::of_session(s.phase.as_deref()).is_ok_and(|p| !p.is_terminal()));
        Box::pin(async move { Ok(live) })
    }

    fn is_ready(&self) -> bool {
        self.is_synced()
    }
}

/// The API token provider of `auth`, shared by the API client and the token server.
pub fn provider(auth: &ApiAuth) -> anyhow::Result<Arc<dyn TokenProvider>> {
    Ok(match auth {
        ApiAuth::Static(t) => Arc::new(StaticToken::new(t.clone())),
        ApiAuth::Oidc {
            token_url,
            client_id,
            client_secret,
        } => Arc::new(
            OidcClientCredentials::new(token_url.clone(), client_id.clone(), client_secret.clone())
                .context("OIDC client")?,
        ),
    })
}

/// The Kubernetes client of the control plane's own identity, and the one
/// for namespaces, session objects and the keypair: the same unless
/// `PROJECT_KUBE_TOKEN_FILE` names a second identity's bearer-token file.
async fn kube_clients(cfg: &Config) -> anyhow::Result<(kube::Client, kube::Client)> {
    let config = kube_config(cfg).await?;
    let own = kube_client(config.clone(), cfg).context("kubernetes client")?;
    let Some(token_file) = &cfg.project_kube_token_file else {
        return Ok((own.clone(), own));
    };
    let raw = std::fs::read_to_string(token_file)
        .with_context(|| format!("PROJECT_KUBE_TOKEN_FILE {}", token_file.display()))?;
    let token = raw.trim();
    if token.is_empty() {
        anyhow::bail!("PROJECT_KUBE_TOKEN_FILE {} is empty", token_file.display());
    }
    let mut project = config;
    project.auth_info = if token.len() == raw.len() {
        // Re-read by the client as it rotates (a projected token).
        kube::config::AuthInfo {
            token_file: Some(token_file.display().to_string()),
            ..kube::config::AuthInfo::default()
        }
    } else {
        // The client would send the newline too: the trimmed token, fixed.
        tracing::warn!(token_file = %token_file.display(),
            "PROJECT_KUBE_TOKEN_FILE ends with whitespace: its token is read once (no rotation)");
        kube::config::AuthInfo {
            token: Some(token.to_owned().into()),
            ..kube::config::AuthInfo::default()
        }
    };
    let project = kube_client(project, cfg).context("project kubernetes client")?;
    tracing::info!(token_file = %token_file.display(), "namespaces and session objects use the project identity");
    Ok((own, project))
}

/// A client of `config` whose requests time out: a request whose answer
/// never comes would hold its reconcile until the reconcile deadline; past
/// `--kube-request-timeout` it fails as a transient error instead. (The
/// timeout covers the response head: a watch's stream is not cut.)
fn kube_client(config: kube::Config, cfg: &Config) -> Result<kube::Client, kube::Error> {
    let timeout =
        tower::timeout::TimeoutLayer::new(std::time::Duration::from_secs(cfg.kube_request_timeout));
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&timeout)
        .build())
}

async fn kube_config(cfg: &Config) -> anyhow::Result<kube::Config> {
    let config = match &cfg.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .context("kubeconfig")?
        }
        None => kube::Config::infer()
            .await
            .context("no kubeconfig and not in a cluster")?,
    };
    Ok(config)
}

#[derive(Clone)]
struct Health {
    metrics: Metrics,
    sessions: Arc<Store<Session>>,
    projects: Arc<Store<Project>>,
    settings: Arc<Store<ProjectSettings>>,
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.sessions.is_synced() && h.projects.is_synced() && h.settings.is_synced() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "informers not synced")
    }
}

async fn serve_health(
    addr: SocketAddr,
    health: Health,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move {
                (
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    h.metrics.encode(),
                )
            }),
        )
        .with_state(health);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the health listener {addr}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health server failed");
        }
    });
    Ok((bound, task))
}

/// The session, project and project-settings caches, each kept true by
/// its own supervised informer that enqueues every changed ID.
#[derive(Debug, Clone)]
pub struct Caches {
    pub sessions: Arc<Store<Session>>,
    pub projects: Arc<Store<Project>>,
    pub settings: Arc<Store<ProjectSettings>>,
}

impl Caches {
    /// Starts the three informers in `tasks` (aborted with it).
    pub fn informed(
        api: &Api,
        resync: std::time::Duration,
        metrics: &Metrics,
        queue: &WorkQueue<Key>,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> Caches {
        let caches = Caches {
            sessions: Arc::default(),
            projects: Arc::default(),
            settings: Arc::default(),
        };
        tasks.spawn(informed(
            (api, resync, metrics, queue),
            "session informer",
            &caches.sessions,
            Key::Session,
        ));
        tasks.spawn(informed(
            (api, resync, metrics, queue),
            "project informer",
            &caches.projects,
            Key::Project,
        ));
        tasks.spawn(informed(
            (api, resync, metrics, queue),
            "project settings informer",
            &caches.settings,
            Key::ProjectSettings,
        ));
        caches
    }
}

/// The informer of `store`, restarted if it panics; every changed ID is
/// enqueued as `key(id)`.
fn informed<K: informer::Kind>(
    (api, resync, metrics, queue): (&Api, std::time::Duration, &Metrics, &WorkQueue<Key>),
    name: &'static str,
    store: &Arc<Store<K>>,
    key: fn(String) -> Key,
) -> impl Future<Output = ()> + Send + 'static {
    let (api, store, metrics, queue) = (api.clone(), store.clone(), metrics.clone(), queue.clone());
    supervise(name, move || {
        let q = queue.clone();
        informer::run(
            api.clone(),
            store.clone(),
            resync,
            metrics.clone(),
            move |id| {
                q.add(key(id.to_owned()));
            },
        )
    })
}

/// Runs the control plane until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    for warning in &settings.warnings {
        tracing::warn!("{warning}");
    }
    // The process runtime needs no cluster at all.
    let local = match cfg.runtime.kind {
        RuntimeKind::Process => Some(ProcessRuntime::open(cfg.runtime.process()?)?),
        RuntimeKind::Kube => None,
    };
    if settings.pod.token_url.is_none() && local.is_none() {
        tracing::warn!(
            "CP_TOKEN_URL is not set: session pods get no token-exchange settings \
             (AMBIENT_CP_TOKEN_URL) and no MCP sidecar"
        );
    }
    // Test mode touches no cluster: an in-memory key, no Lease, and a
    // runtime that only logs.
    let clients = match (settings.mode, &local) {
        (_, Some(_)) => None,
        (Mode::Kube, None) => Some(kube_clients(&cfg).await?),
        (Mode::Test, None) => {
            tracing::warn!("MODE=test: no cluster is touched; sessions are only logged");
            None
        }
    };
    let key = match (&clients, &local) {
        (Some((_, project)), _) => {
            keypair::bootstrap(project.clone(), &settings.runtime_namespace).await?
        }
        (None, Some(local)) => local.keypair().await?,
        (None, None) => tokio::task::spawn_blocking(ambient_protocol::keys::PrivateKey::generate)
            .await
            .context("key generation")?
            .context("key generation")?,
    };
    let public_key_pem = key.public_key().to_pem();
    let provider = provider(&settings.auth)?;
    let rest =
        Rest::new(&cfg.api_server_url, provider.clone()).context("AMBIENT_API_SERVER_URL")?;
    let api = Api::new(
        &cfg.grpc_server_addr,
        cfg.grpc_use_tls,
        cfg.grpc_ca_cert_file.as_deref(),
        provider.clone(),
    )?;

    let queue: WorkQueue<Key> = WorkQueue::new();
    let mut tasks = tokio::task::JoinSet::new();
    let Caches {
        sessions,
        projects,
        settings: settings_store,
    } = Caches::informed(&api, settings.resync, &metrics, &queue, &mut tasks);

    // Every replica serves tokens, from the informer's session cache.
    let keys = KeySet::new(vec![key]).context("no key")?;
    let token_server = TokenServer::new(
        keys,
        sessions.clone(),
        provider.clone(),
        settings.token_server_config(),
    )
    .bind(settings.token_listen)
    .await?;
    ambient_daemon::announce_listening("token server", token_server.local_addr());

    let (health_addr, health_task) = serve_health(
        settings.health_listen,
        Health {
            metrics: metrics.clone(),
            sessions: sessions.clone(),
            projects: projects.clone(),
            settings: settings_store.clone(),
        },
    )
    .await?;
    ambient_daemon::announce_listening("health", health_addr);

    let mut pod_config = settings.pod.clone();
    let runtime: Arc<dyn SessionRuntime> = match (&clients, &local) {
        (_, Some(local)) => {
            let token_url = process::local_token_url(token_server.local_addr());
            local.settings().adjust(&mut pod_config, token_url);
            Arc::new(local.clone())
        }
        (Some((_, project)), None) if settings.provision => Arc::new(
            KubeRuntime::new(
                project.clone(),
                cfg.platform_mode,
                &settings.pod.installation,
            )
            .configured(&settings.pod),
        ),
        _ => {
            tracing::warn!(
                "sessions are not provisioned (MODE=test or no kube in RECONCILERS): only logged"
            );
            Arc::new(LogRuntime::default())
        }
    };
    let controller = Arc::new(
        Controller::new(
            api,
            sessions,
            projects,
            settings_store,
            runtime,
            pod_config,
            Some(public_key_pem),
            queue.clone(),
            metrics.clone(),
        )
        .with_rest(rest, settings.service_identity.clone()),
    );

    let lease_client = clients.map(|(own, _)| own);
    let (_always_tx, mut leading, election) = if let Some(client) = lease_client
        && cfg.leader_election
    {
        let identity = cfg
            .identity
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(leader::default_identity);
        tracing::info!(identity = %identity, lease = %cfg.lease_name, "competing for leadership");
        let namespace = &settings.runtime_namespace;
        let (rx, election) =
            leader::elect(client.clone(), namespace, &cfg.lease_name, &identity).await?;
        (None, rx, Some(election))
    } else {
        let (tx, rx) = leader::always();
        (Some(tx), rx, None)
    };

    let workers = cfg.workers;
    let leadership = async {
        let mut running: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)> = None;
        loop {
            let is_leader = *leading.borrow_and_update();
            metrics.set_leader(is_leader);
            match (is_leader, running.is_some()) {
                (true, false) => {
                    tracing::info!("leading: starting reconcile workers");
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let task = tokio::spawn(controller.clone().run(workers, stop_rx));
                    running = Some((stop_tx, task));
                }
                (false, true) => {
                    tracing::info!("lost the lease: stopping reconcile workers");
                    if let Some((stop, task)) = running.take() {
                        let _ = stop.send(true);
                        let _ = task.await;
                    }
                }
                _ => {}
            }
            if leading.changed().await.is_err() {
                // The election task ended: never reconcile without the lease.
                if let Some((stop, task)) = running.take() {
                    let _ = stop.send(true);
                    let _ = task.await;
                }
                metrics.set_leader(false);
                std::future::pending::<()>().await;
            }
        }
    };

    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        () = leadership => {}
    }
    queue.shutdown();
    tasks.abort_all();
    health_task.abort();
    if let Some(local) = &local {
        local.shutdown().await;
    }
    token_server.shutdown().await?;
    // Release the Lease so a follower takes over without waiting for expiry.
    drop(leading);
    if let Some(election) = election {
        match tokio::time::timeout(std::time::Duration::from_secs(5), election).await {
            Ok(Ok(Ok(_))) => tracing::info!("lease released"),
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "could not release the lease"),
            Ok(Err(e)) => tracing::warn!(error = %e, "election task failed"),
            Err(_) => tracing::warn!("timed out releasing the lease"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_protocol::v1::ObjectReference;

    #[tokio::test]
    async fn stopping_sessions_still_get_tokens_and_terminal_ones_do_not() {
        let store = Store::<Session>::default();
        for phase in Phase::ALL {
            store.upsert(Session {
                metadata: Some(ObjectReference {
                    id: phase.as_str().into(),
                    ..ObjectReference::default()
                }),
                phase: Some(phase.as_str().into()),
                ..Session::default()
            });
        }
        for phase in Phase::ALL {
            let live = store.is_live(phase.as_str()).await.ok();
            assert_eq!(live, Some(!phase.is_terminal()), "{phase}");
        }
        assert_eq!(store.is_live("unknown").await.ok(), Some(false));
    }
}
