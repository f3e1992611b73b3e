//! Test support: the real ambient-devserver as the API server, the gateway
//! in process on an ephemeral loopback port with stand-ins for the token
//! verifier and the control plane's session facts, and clients that speak
//! to either.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ambient_protocol::Secret;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_session_gateway::{
    Gateway, SessionFacts, SessionIdentity, SessionState, Upstream, UpstreamAuth, VerifyToken,
};
use futures::future::BoxFuture;
use integration_tests::{Daemon, Spec};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tonic::transport::Channel;

/// The setup identity (talks to the devserver directly).
pub const ADMIN_TOKEN: &str = "gw-it-admin-token-8c1d";
/// The control plane's identity: the devserver names it `cp`.
pub const CP_TOKEN: &str = "gw-it-cp-token-41f7";
/// The own session's token. The devserver also accepts it, as the user
/// `leak`, so a forwarded session token would show in `created_by_user_id`.
pub const OWN_TOKEN: &str = "gw-it-session-own-token-93ab";
/// The token of another session of the same project.
pub const SIBLING_TOKEN: &str = "gw-it-session-sibling-token-0e52";
/// The first generation of every session's pod.
pub const GEN: &str = "pod-uid-1";

/// Stand-in verifier: a map token → identity.
#[derive(Debug, Default)]
pub struct Tokens(Mutex<HashMap<String, SessionIdentity>>);

impl Tokens {
    pub fn add(&self, token: &str, session: &str, project: &str, generation: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(
                token.to_owned(),
                SessionIdentity {
                    session_id: session.to_owned(),
                    project: project.to_owned(),
                    generation: generation.to_owned(),
                },
            );
        }
    }
}

impl VerifyToken for Tokens {
    fn verify(&self, bearer: &str) -> Option<SessionIdentity> {
        self.0.lock().ok()?.get(bearer).cloned()
    }
}

/// Stand-in for the control plane's caches.
#[derive(Debug)]
pub struct Facts {
    sessions: Mutex<HashMap<String, SessionState>>,
    delivered: Mutex<HashMap<String, BTreeSet<String>>>,
    changes: broadcast::Sender<String>,
}

impl Default for Facts {
    fn default() -> Self {
        Facts {
            sessions: Mutex::default(),
            delivered: Mutex::default(),
            changes: broadcast::channel(64).0,
        }
    }
}

impl Facts {
    /// Sets a session's state and announces the change.
    pub fn set(&self, id: &str, project: &str, live: bool, generation: Option<&str>) {
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(
                id.to_owned(),
                SessionState {
                    project: project.to_owned(),
                    live,
                    generation: generation.map(str::to_owned),
                },
            );
        }
        let _ = self.changes.send(id.to_owned());
    }

    pub fn deliver(&self, session: &str, credential: &str) {
        if let Ok(mut m) = self.delivered.lock() {
            m.entry(session.to_owned())
                .or_default()
                .insert(credential.to_owned());
        }
    }
}

impl SessionFacts for Facts {
    fn session(&self, id: &str) -> Option<SessionState> {
        self.sessions.lock().ok()?.get(id).cloned()
    }

    fn delivered_credentials(&self, id: &str) -> BTreeSet<String> {
        self.delivered
            .lock()
            .ok()
            .and_then(|m| m.get(id).cloned())
            .unwrap_or_default()
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

/// The control plane's identity toward the devserver.
#[derive(Debug)]
pub struct CpIdentity;

impl UpstreamAuth for CpIdentity {
    fn token(&self) -> BoxFuture<'_, Result<Secret, String>> {
        Box::pin(async { Ok(Secret::new(CP_TOKEN)) })
    }
}

/// A REST client of `base` (`http://host:port`).
#[derive(Debug, Clone)]
pub struct Rest {
    pub base: String,
    http: reqwest::Client,
}

impl Rest {
    pub fn new(addr: SocketAddr) -> Rest {
        Rest {
            base: format!("http://{addr}/api/ambient/v1"),
            http: reqwest::Client::new(),
        }
    }

    /// One call; (status, JSON body or the text as a string).
    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("REST {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A call that must succeed; its body.
    pub async fn ok(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(token, method.clone(), path, body, &[]).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {v}"
        );
        v
    }
}

/// The string at `v`.
pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

/// The devserver, the gateway in front of it, and a cast: projects `alpha`
/// (own) and `beta`; sessions `own` and `sibling` in alpha (both started),
/// `foreign` in beta; credentials `delivered` (to own) and `undelivered`.
pub struct World {
    pub dev: Daemon,
    pub gateway: SocketAddr,
    pub facts: Arc<Facts>,
    pub tokens: Arc<Tokens>,
    /// Straight to the devserver (setup and checks, as admin).
    pub api: Rest,
    /// Through the gateway.
    pub gw: Rest,
    pub own: String,
    pub sibling: String,
    pub foreign: String,
    pub delivered: String,
    pub undelivered: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub const OWN_PROJECT: &str = "alpha";
pub const OTHER_PROJECT: &str = "beta";
pub const DELIVERED_SECRET: &str = "ghp-delivered-secret-7731";
pub const UNDELIVERED_SECRET: &str = "ghp-undelivered-secret-1204";

impl World {
    pub async fn start() -> World {
        World::start_with(None).await
    }

    /// [`World::start`], the gateway serving TLS when `tls` is given (the
    /// REST client `gw` then still speaks plain HTTP: use your own).
    pub async fn start_with(tls: Option<ambient_session_gateway::GatewayTls>) -> World {
        let dev = Daemon::start(
            Spec::new("ambient-devserver")
                .args([
                    "--grpc-listen",
                    "127.0.0.1:0",
                    "--http-listen",
                    "127.0.0.1:0",
                ])
                .arg("--in-memory")
                // Secrets in the environment: the devserver refuses them on argv.
                .env(
                    "AMBIENT_DEVSERVER_TOKEN",
                    format!("admin={ADMIN_TOKEN},cp={CP_TOKEN},leak={OWN_TOKEN}"),
                )
                .listener("grpc")
                .listener("http"),
        );
        let api = Rest::new(dev.addr("http"));
        let post = |path: &'static str, body: Value| {
            let api = api.clone();
            async move { api.ok(ADMIN_TOKEN, Method::POST, path, Some(body)).await }
        };
        post("/projects", json!({"name": OWN_PROJECT})).await;
        post("/projects", json!({"name": OTHER_PROJECT})).await;
        let own = s(&post(
            "/sessions",
            json!({"name": "own", "project_id": OWN_PROJECT}),
        )
        .await["id"]);
        let sibling = s(&post(
            "/sessions",
            json!({"name": "sibling", "project_id": OWN_PROJECT}),
        )
        .await["id"]);
        let foreign = s(&post(
            "/sessions",
            json!({"name": "foreign", "project_id": OTHER_PROJECT}),
        )
        .await["id"]);
        for id in [&own, &sibling, &foreign] {
            api.ok(
                ADMIN_TOKEN,
                Method::POST,
                &format!("/sessions/{id}/start"),
                None,
            )
            .await;
        }
        let cred = |name: &'static str, secret: &'static str| {
            post(
                "/credentials",
                json!({"name": name, "provider": "github", "token": secret}),
            )
        };
        let delivered = s(&cred("delivered", DELIVERED_SECRET).await["id"]);
        let undelivered = s(&cred("undelivered", UNDELIVERED_SECRET).await["id"]);

        let facts = Arc::new(Facts::default());
        facts.set(&own, OWN_PROJECT, true, Some(GEN));
        facts.set(&sibling, OWN_PROJECT, true, Some(GEN));
        facts.set(&foreign, OTHER_PROJECT, true, Some(GEN));
        facts.deliver(&own, &delivered);
        facts.deliver(&sibling, &undelivered);
        let tokens = Arc::new(Tokens::default());
        tokens.add(OWN_TOKEN, &own, OWN_PROJECT, GEN);
        tokens.add(SIBLING_TOKEN, &sibling, OWN_PROJECT, GEN);

        let channel = Channel::from_shared(format!("http://{}", dev.addr("grpc")))
            .unwrap_or_else(|e| panic!("{e}"))
            .connect_lazy();
        let api_url = url::Url::parse(&format!("http://{}", dev.addr("http")))
            .unwrap_or_else(|e| panic!("{e}"));
        let upstream = Upstream::new(
            &api_url,
            reqwest::Client::new(),
            channel,
            Arc::new(CpIdentity),
        );
        let gateway = Gateway::new(tokens.clone(), facts.clone(), upstream);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = gateway
                .serve(listener, tls, async {
                    let _ = rx.await;
                })
                .await;
        });
        World {
            dev,
            gateway: addr,
            facts,
            tokens,
            api,
            gw: Rest::new(addr),
            own,
            sibling,
            foreign,
            delivered,
            undelivered,
            shutdown: Some(tx),
        }
    }

    /// A gRPC client of the gateway.
    pub async fn grpc(&self) -> SessionServiceClient<Channel> {
        let ch = Channel::from_shared(format!("http://{}", self.gateway))
            .unwrap_or_else(|e| panic!("{e}"))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to the gateway: {e}"));
        SessionServiceClient::new(ch)
    }
}

/// `msg` with `Authorization: Bearer token`.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let value = format!("Bearer {token}")
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    req.metadata_mut().insert("authorization", value);
    req
}
