//! The control-plane daemon: keypair, informers, embedded token server,
//! health endpoints, leader election and reconcile workers, wired together.

use std::net::SocketAddr;
use std::sync::Arc;

use ambient_protocol::exchange::KeySet;
use ambient_protocol::phase::Phase;
use ambient_protocol::v1::{Project, ProjectSettings, Session};
use ambient_session_gateway::SessionTokens;
use ambient_token_server::server::RunningServer;
use ambient_token_server::{
    BoxFuture, DirectoryError, Hooks, Identity, OidcClientCredentials, SessionDirectory,
    SessionRecord, StaticToken, TokenProvider, TokenServer,
};
use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio::sync::{broadcast, watch};

use crate::api::Api;
use crate::config::{ApiAuth, Config, Mode, SessionIdentityMode, Settings};
use crate::informer::{self, Store};
use crate::keypair::rotation::{self, KeyStore};
use crate::metrics::Metrics;
use crate::queue::WorkQueue;
use crate::reconcile::{Controller, Key};
use crate::rest::Rest;
use crate::runtime::SessionRuntime;
use crate::runtime::kube::KubeRuntime;
use crate::runtime::log::LogRuntime;
use crate::runtime::process::{self, ProcessRuntime, RuntimeKind};
use crate::session_identity::{self, SessionIdentities};
use crate::session_keys::V3Roots;
use crate::supervisor::supervise;
use crate::{keypair, leader};

/// The informer's session cache answers the token server: a session may
/// hold a token while it is cached and not terminal (wire.md §3). A
/// `Stopping` session still gets tokens: its runner is in its grace period.
impl SessionDirectory for Store<Session> {
    fn lookup<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, DirectoryError>> {
        let record = self.get(session_id).map(|s| SessionRecord {
            project: s.project_id.unwrap_or_default(),
            live: Phase::of_session(s.phase.as_deref()).is_ok_and(|p| !p.is_terminal()),
        });
        Box::pin(async move { Ok(record) })
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
    /// Every Kubernetes permission of rbac.yaml is granted (`permissions`).
    permissions: Arc<std::sync::atomic::AtomicBool>,
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if !h.permissions.load(std::sync::atomic::Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "missing Kubernetes permissions (see the log)",
        )
    } else if h.sessions.is_synced() && h.projects.is_synced() && h.settings.is_synced() {
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
        Self::announcing(api, resync, metrics, queue, tasks, None)
    }

    /// [`Caches::informed`], also announcing every changed session ID on
    /// `session_changes` (the session gateway closes streams that no
    /// longer hold).
    pub fn announcing(
        api: &Api,
        resync: std::time::Duration,
        metrics: &Metrics,
        queue: &WorkQueue<Key>,
        tasks: &mut tokio::task::JoinSet<()>,
        session_changes: Option<broadcast::Sender<String>>,
    ) -> Caches {
        let caches = Caches {
            sessions: Arc::default(),
            projects: Arc::default(),
            settings: Arc::default(),
        };
        let context = (api, resync, metrics, queue);
        tasks.spawn(informed(
            context,
            "session informer",
            &caches.sessions,
            (Key::Session, session_changes),
        ));
        tasks.spawn(informed(
            context,
            "project informer",
            &caches.projects,
            (Key::Project, None),
        ));
        tasks.spawn(informed(
            context,
            "project settings informer",
            &caches.settings,
            (Key::ProjectSettings, None),
        ));
        caches
    }
}

/// How an informer's changed ID is enqueued, and where it is announced.
type KeyAndAnnounce = (fn(String) -> Key, Option<broadcast::Sender<String>>);

/// The informer of `store`, restarted if it panics; every changed ID is
/// enqueued as `key(id)` (and announced on `announce`, when given).
fn informed<K: informer::Kind>(
    (api, resync, metrics, queue): (&Api, std::time::Duration, &Metrics, &WorkQueue<Key>),
    name: &'static str,
    store: &Arc<Store<K>>,
    (key, announce): KeyAndAnnounce,
) -> impl Future<Output = ()> + Send + 'static {
    let (api, store, metrics, queue) = (api.clone(), store.clone(), metrics.clone(), queue.clone());
    supervise(name, move || {
        let q = queue.clone();
        let announce = announce.clone();
        informer::run(
            api.clone(),
            store.clone(),
            resync,
            metrics.clone(),
            move |id| {
                q.add(key(id.to_owned()));
                if let Some(a) = &announce {
                    let _ = a.send(id.to_owned());
                }
            },
        )
    })
}

/// Where sessions run: local processes, pods, or (test mode, no `kube`
/// reconciler) nowhere but the log.
fn runtime_of(
    cfg: &Config,
    settings: &Settings,
    (clients, local): (
        Option<&(kube::Client, kube::Client)>,
        Option<&ProcessRuntime>,
    ),
    (projects, sessions): (&Arc<Store<Project>>, &Arc<Store<Session>>),
    v3_roots: &V3Roots,
) -> Arc<dyn SessionRuntime> {
    match (clients, local) {
        (_, Some(local)) => {
            local.set_session_keys(v3_roots.clone());
            Arc::new(local.clone())
        }
        (Some((_, project)), None) if settings.provision => Arc::new(
            KubeRuntime::new(
                project.clone(),
                cfg.platform_mode,
                &settings.pod.installation,
            )
            .configured(&settings.pod)
            .knowing(projects.clone(), sessions.clone())
            .with_session_keys(v3_roots.clone()),
        ),
        _ => {
            tracing::warn!(
                "sessions are not provisioned (MODE=test or no kube in RECONCILERS): only logged"
            );
            Arc::new(LogRuntime::default())
        }
    }
}

/// What every replica serves to session pods.
struct Serving {
    token_server: RunningServer,
    /// The session gateway's address (absent with `CP_SESSION_IDENTITY=platform`).
    gateway: Option<SocketAddr>,
    /// The session tokens' minter (absent with `CP_SESSION_IDENTITY=platform`).
    tokens: Option<Arc<SessionTokens>>,
}

/// Binds the token server and, unless sessions act as the platform, the
/// session gateway (its task joins `tasks`) — wire.md §3.
async fn serve_sessions(
    cfg: &Config,
    settings: &Settings,
    (keys, v3_roots): (keypair::Keys, &V3Roots),
    (identities, provider): (&Arc<SessionIdentities>, &Arc<dyn TokenProvider>),
    tasks: &mut tokio::task::JoinSet<()>,
) -> anyhow::Result<Serving> {
    let exchange_keys = KeySet::new(vec![keys.exchange]).context("no key")?;
    let sessions: Arc<dyn SessionDirectory> = identities.directory();
    let gateway_mode = settings.identity.mode == SessionIdentityMode::Gateway;
    let (identity, hooks) = if gateway_mode {
        let minter = Arc::new(
            SessionTokens::new(
                keys.signing,
                ambient_session_gateway::token::DEFAULT_LIFETIME,
            )
            .context("session tokens")?,
        );
        let hooks = Hooks {
            binding: identities.clone(),
            ..Hooks::default()
        };
        (Identity::SessionTokens(minter), hooks)
    } else {
        tracing::warn!(
            "CP_SESSION_IDENTITY=platform: every session gets the control plane's own API token \
             and can act as the control plane (read any project's credentials, any session); \
             use only where session pods cannot reach the session gateway"
        );
        (Identity::Platform(provider.clone()), Hooks::default())
    };
    let minter = identity.session_tokens().cloned();
    let token_server = TokenServer::with_hooks(
        exchange_keys,
        sessions,
        identity,
        settings.token_server_config(),
        hooks,
    )
    .with_v3_roots(v3_roots.clone())
    .bind(settings.token_listen)
    .await?;
    ambient_daemon::announce_listening("token server", token_server.local_addr());
    let Some(minter) = minter else {
        return Ok(Serving {
            token_server,
            gateway: None,
            tokens: None,
        });
    };
    let gateway = session_identity::gateway(cfg, identities, provider, minter.clone())?;
    let listener = tokio::net::TcpListener::bind(settings.identity.gateway_listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.identity.gateway_listen))?;
    let addr = listener.local_addr()?;
    ambient_daemon::announce_listening("session gateway", addr);
    tasks.spawn(async move {
        if let Err(e) = gateway.serve(listener, None, std::future::pending()).await {
            tracing::error!(error = %e, "the session gateway stopped");
        }
    });
    Ok(Serving {
        token_server,
        gateway: Some(addr),
        tokens: Some(minter),
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
    let keys = match (&clients, &local) {
        (Some((_, project)), _) => {
            keypair::bootstrap(project.clone(), &settings.runtime_namespace).await?
        }
        (None, Some(local)) => local.keys().await?,
        (None, None) => tokio::task::spawn_blocking(keypair::Keys::generate)
            .await
            .context("key generation")?
            .context("key generation")?,
    };
    // Exchange v3: every replica verifies with the roots; the runtime
    // derives session key files from the current one.
    let v3_roots = V3Roots::new(keys.roots.keys(&settings.pod.installation));
    // Every verb of rbac.yaml, asked of the API server until granted.
    let permissions = Arc::new(std::sync::atomic::AtomicBool::new(clients.is_none()));
    if let Some((own, project)) = &clients {
        tokio::spawn(crate::permissions::check_until_granted(
            own.clone(),
            project.clone(),
            settings.runtime_namespace.clone(),
            permissions.clone(),
        ));
    }
    let public_key_pem = keys.exchange.public_key().to_pem();
    let provider = provider(&settings.auth)?;
    // The OpenShift service CA, when present, is trusted by both sides of
    // the API client (as the reference does); an explicit gRPC CA file
    // takes its place for gRPC.
    let service_ca = cfg
        .service_ca_file
        .is_file()
        .then(|| cfg.service_ca_file.clone());
    if let Some(ca) = &service_ca {
        tracing::info!(file = %ca.display(), "trusting the service CA for the API server");
    }
    let rest = Rest::new(&cfg.api_server_url, provider.clone(), service_ca.as_slice())
        .context("AMBIENT_API_SERVER_URL")?;
    let api = Api::new(
        &cfg.grpc_server_addr,
        cfg.grpc_use_tls,
        cfg.grpc_ca_cert_file.as_deref().or(service_ca.as_deref()),
        provider.clone(),
    )?;

    let queue: WorkQueue<Key> = WorkQueue::new();
    let mut tasks = tokio::task::JoinSet::new();
    let session_changes = session_identity::changes();
    let Caches {
        sessions,
        projects,
        settings: settings_store,
    } = Caches::announcing(
        &api,
        settings.resync,
        &metrics,
        &queue,
        &mut tasks,
        Some(session_changes.clone()),
    );
    let runtime = runtime_of(
        &cfg,
        &settings,
        (clients.as_ref(), local.as_ref()),
        (&projects, &sessions),
        &v3_roots,
    );

    // Every replica serves tokens (from the informer's session cache) and
    // the session gateway.
    let identities = SessionIdentities::new(sessions.clone(), runtime.clone(), session_changes);
    tasks.spawn(identities.clone().forget_ended());
    let serving = serve_sessions(
        &cfg,
        &settings,
        (keys, &v3_roots),
        (&identities, &provider),
        &mut tasks,
    )
    .await?;
    let key_store = match (&clients, &local) {
        (Some((_, project)), _) => Some(KeyStore::secret(
            project.clone(),
            &settings.runtime_namespace,
        )),
        (None, Some(local)) => Some(KeyStore::Files(local.clone())),
        (None, None) => None,
    };
    let roots = rotation::Roots {
        holder: v3_roots.clone(),
        installation: settings.pod.installation.clone(),
        runtime: runtime.clone(),
    };
    // Every replica follows the signing keys and roots of the Secret (and
    // drops retired roots when their time is up); the leader rotates them
    // (below).
    if let (Some(store), Some(tokens)) = (&key_store, &serving.tokens) {
        tasks.spawn(rotation::reload(
            store.clone(),
            settings.identity.key_reload,
            tokens.clone(),
            Some(roots.clone()),
        ));
    }
    let rotating = match (key_store, &serving.tokens, settings.identity.key_rotation) {
        (Some(store), Some(tokens), Some(period)) => Some((
            store,
            tokens.clone(),
            (period, settings.identity.key_reload),
            roots.clone(),
        )),
        _ => None,
    };

    let (health_addr, health_task) = serve_health(
        settings.health_listen,
        Health {
            metrics: metrics.clone(),
            sessions: sessions.clone(),
            projects: projects.clone(),
            settings: settings_store.clone(),
            permissions,
        },
    )
    .await?;
    ambient_daemon::announce_listening("health", health_addr);

    let mut pod_config = settings.pod.clone();
    if let Some(local) = &local {
        let token_url = process::local_token_url(serving.token_server.local_addr());
        local.settings().adjust(&mut pod_config, token_url);
    }
    match (&serving.gateway, &settings.identity.gateway_url) {
        (Some(addr), _) if local.is_some() => {
            session_identity::point_pods_at(&mut pod_config, &process::local_base_url(*addr));
        }
        (Some(_), Some(url)) => session_identity::point_pods_at(&mut pod_config, url),
        (Some(_), None) => tracing::warn!(
            "neither CP_GATEWAY_URL nor CP_TOKEN_URL is set: session pods are not pointed at \
             the session gateway, and their session tokens work nowhere else"
        ),
        (None, _) => {}
    }
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
        .with_rest(rest, settings.service_identity.clone())
        .with_manager(crate::runtime::kube::own_service_account(
            &settings.runtime_namespace,
        )),
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
        let mut rotation_task: Option<tokio::task::JoinHandle<()>> = None;
        loop {
            let is_leader = *leading.borrow_and_update();
            metrics.set_leader(is_leader);
            match (is_leader, running.is_some()) {
                (true, false) => {
                    tracing::info!("leading: starting reconcile workers");
                    let (stop_tx, stop_rx) = watch::channel(false);
                    let task = tokio::spawn(controller.clone().run(workers, stop_rx));
                    running = Some((stop_tx, task));
                    rotation_task =
                        rotating
                            .clone()
                            .map(|(store, tokens, (period, retry), roots)| {
                                tokio::spawn(rotation::rotate(
                                    store,
                                    period,
                                    retry,
                                    tokens,
                                    Some(roots),
                                ))
                            });
                }
                (false, true) => {
                    tracing::info!("lost the lease: stopping reconcile workers");
                    if let Some(rotation) = rotation_task.take() {
                        rotation.abort();
                    }
                    if let Some((stop, task)) = running.take() {
                        let _ = stop.send(true);
                        let _ = task.await;
                    }
                }
                _ => {}
            }
            if leading.changed().await.is_err() {
                // The election task ended: never reconcile without the lease.
                if let Some(rotation) = rotation_task.take() {
                    rotation.abort();
                }
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
    serving.token_server.shutdown().await?;
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
