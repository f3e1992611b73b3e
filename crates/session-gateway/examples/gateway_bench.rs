//! `cargo xtask bench gateway [SECONDS]`: the session gateway figures of
//! quality.md (issue 25), side by side with the same calls made directly to
//! a release ambient-devserver, over loopback, in one run:
//!
//! - push → watch through the gateway: a real session token (RS256, minted by
//!   [`SessionTokens`], which is also the gateway's verifier) opens a gRPC
//!   `WatchSessionMessages` through the gateway; each `PushSessionMessage`
//!   through the gateway is timed until the watch yields it; target p50
//!   ≤ 5 ms. The same, direct to the devserver, is context;
//! - gateway overhead on a REST GET: `GET /sessions/{own}` through the
//!   gateway and direct, interleaved, with one keep-alive client; target
//!   p50(gateway) − p50(direct) ≤ +300 µs.
//!
//! Session-token minting is `bench session-tokens`' figure, not repeated here.
//! The gateway runs in this process (as the control plane embeds it), with
//! the control plane's session facts stood in by a fixed table.
//!
//! Arguments: `--devserver PATH [--seconds N] --out FILE`.

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::Secret;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_protocol::v1::{PushSessionMessageRequest, WatchSessionMessagesRequest};
use ambient_session_gateway::token::{DEFAULT_LIFETIME, KeyRing, SigningKey};
use ambient_session_gateway::{
    Gateway, SessionFacts, SessionState, SessionTokens, Upstream, UpstreamAuth,
};
use anyhow::{Context as _, Result, bail};
use clap::Parser;
use futures::future::BoxFuture;
use integration_tests::bench::{percentile, start_announced};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tonic::transport::Channel;

const ADMIN_TOKEN: &str = "gateway-bench-admin-token";
const CP_TOKEN: &str = "gateway-bench-cp-token";
const PROJECT: &str = "bench";
const GENERATION: &str = "pod-uid-1";
const WARMUP: usize = 200;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    devserver: String,
    /// Seconds for each of the two measurements.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// The control plane's session facts, fixed: every session live on its
/// first pod.
struct Facts {
    sessions: HashMap<String, SessionState>,
    changes: broadcast::Sender<String>,
}

impl SessionFacts for Facts {
    fn session(&self, id: &str) -> Option<SessionState> {
        self.sessions.get(id).cloned()
    }

    fn delivered_credentials(&self, _id: &str) -> BTreeSet<String> {
        BTreeSet::new()
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}

/// The control plane's identity toward the devserver.
struct CpIdentity;

impl UpstreamAuth for CpIdentity {
    fn token(&self) -> BoxFuture<'_, Result<Secret, String>> {
        Box::pin(async { Ok(Secret::new(CP_TOKEN)) })
    }
}

/// One endpoint to measure: where, and with which bearer.
#[derive(Clone)]
struct Side {
    grpc: SessionServiceClient<Channel>,
    rest: String,
    bearer: String,
}

impl Side {
    async fn new(addr: &str, bearer: &str) -> Result<Side> {
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        Ok(Side {
            grpc: SessionServiceClient::new(channel),
            rest: format!("http://{addr}/api/ambient/v1"),
            bearer: bearer.to_owned(),
        })
    }

    fn authed<T>(&self, msg: T) -> Result<tonic::Request<T>> {
        let mut req = tonic::Request::new(msg);
        let value = format!("Bearer {}", self.bearer).parse()?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn summary(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    json!({
        "samples": samples.len(),
        "p50_ms": ms(percentile(&samples, 0.50)),
        "p99_ms": ms(percentile(&samples, 0.99)),
        "max_ms": ms(percentile(&samples, 1.0)),
    })
}

/// A watch on `session` through `side`, and a timer of push → watched.
struct PushWatch {
    side: Side,
    session: String,
    watch: tonic::Streaming<ambient_protocol::v1::SessionMessage>,
}

impl PushWatch {
    async fn open(side: &Side, session: &str) -> Result<PushWatch> {
        let watch = side
            .grpc
            .clone()
            .watch_session_messages(side.authed(WatchSessionMessagesRequest {
                session_id: session.to_owned(),
                after_seq: 0,
            })?)
            .await
            .context("WatchSessionMessages")?
            .into_inner();
        Ok(PushWatch {
            side: side.clone(),
            session: session.to_owned(),
            watch,
        })
    }

    /// One push; the time until the watch yields it.
    async fn once(&mut self, i: usize) -> Result<Duration> {
        let push = self.side.authed(PushSessionMessageRequest {
            session_id: self.session.clone(),
            event_type: "bench".into(),
            payload: format!("latency-{i}"),
        })?;
        let start = Instant::now();
        let pushed = self
            .side
            .grpc
            .push_session_message(push)
            .await
            .context("PushSessionMessage")?
            .into_inner();
        loop {
            match self.watch.message().await {
                Ok(Some(m)) if m.seq == pushed.seq => return Ok(start.elapsed()),
                Ok(Some(m)) if m.seq < pushed.seq => continue,
                other => bail!("watch: expected seq {}, got {other:?}", pushed.seq),
            }
        }
    }
}

/// The rounds of one side-by-side measurement: a warm-up, then at least
/// as many measured rounds again, until `seconds` have passed.
struct Rounds {
    next: usize,
    deadline: Instant,
}

impl Rounds {
    fn new(seconds: u64) -> Rounds {
        Rounds {
            next: 0,
            deadline: Instant::now() + Duration::from_secs(seconds.max(1)),
        }
    }

    /// The next round's number, or `None` when done.
    fn round(&mut self) -> Option<usize> {
        let i = self.next;
        self.next += 1;
        (i < WARMUP * 2 || Instant::now() < self.deadline).then_some(i)
    }

    /// Whether round `i` is measured (past the warm-up).
    fn measured(i: usize) -> bool {
        i >= WARMUP
    }
}

/// One `GET /sessions/{id}` on `side` with the shared keep-alive client.
async fn get_session(http: &reqwest::Client, side: &Side, id: &str) -> Result<Duration> {
    let start = Instant::now();
    let resp = http
        .get(format!("{}/sessions/{id}", side.rest))
        .bearer_auth(&side.bearer)
        .header("Accept", "application/json")
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("GET /sessions/{id}: {}", resp.status());
    }
    resp.bytes().await?;
    Ok(start.elapsed())
}

/// Creates a started session of [`PROJECT`] on the devserver; its ID.
async fn create_session(http: &reqwest::Client, rest: &str, name: &str) -> Result<String> {
    let admin = |path: String, body: Value| {
        http.post(format!("{rest}{path}"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let created: Value = admin(
        "/sessions".into(),
        json!({"name": name, "project_id": PROJECT}),
    )
    .await?
    .error_for_status()?
    .json()
    .await?;
    let id = created["id"]
        .as_str()
        .context("created session without an id")?
        .to_owned();
    admin(format!("/sessions/{id}/start"), json!({}))
        .await?
        .error_for_status()?;
    Ok(id)
}

/// The gateway in this process in front of the devserver, admitting the
/// tokens of `tokens` for `sessions`; its address.
async fn start_gateway(
    grpc: &str,
    http: &str,
    tokens: Arc<SessionTokens>,
    sessions: &[&str],
) -> Result<std::net::SocketAddr> {
    let facts = Facts {
        sessions: sessions
            .iter()
            .map(|id| {
                let state = SessionState {
                    project: PROJECT.into(),
                    live: true,
                    generation: Some(GENERATION.into()),
                };
                ((*id).to_owned(), state)
            })
            .collect(),
        changes: broadcast::channel(16).0,
    };
    let channel = Channel::from_shared(format!("http://{grpc}"))?.connect_lazy();
    let api_url = url::Url::parse(&format!("http://{http}"))?;
    let upstream = Upstream::new(
        &api_url,
        reqwest::Client::new(),
        channel,
        Arc::new(CpIdentity),
    );
    let gateway = Gateway::new(tokens, Arc::new(facts), upstream);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = gateway
            .serve(listener, None, std::future::pending::<()>())
            .await;
    });
    Ok(addr)
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let load_before = load_average();
    let (_devserver, addrs, _) = start_announced(
        Command::new(&args.devserver)
            .args(["--in-memory", "--grpc-listen", "127.0.0.1:0"])
            .args(["--http-listen", "127.0.0.1:0"])
            .env(
                "AMBIENT_DEVSERVER_TOKEN",
                format!("admin={ADMIN_TOKEN},cp={CP_TOKEN}"),
            )
            .args(["--log-level", "warn"]),
        &["grpc", "http"],
    )
    .with_context(|| format!("starting {}", args.devserver))?;
    let (dev_grpc, dev_http) = (&addrs[0], &addrs[1]);

    let http = reqwest::Client::builder().tcp_nodelay(true).build()?;
    let dev_rest = format!("http://{dev_http}/api/ambient/v1");
    http.post(format!("{dev_rest}/projects"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": PROJECT}))
        .send()
        .await?
        .error_for_status()?;
    let own = create_session(&http, &dev_rest, "own").await?;
    let direct_session = create_session(&http, &dev_rest, "direct").await?;

    let ring = KeyRing::new(SigningKey::generate()?);
    let tokens = Arc::new(SessionTokens::new(ring, DEFAULT_LIFETIME)?);
    let minted = tokens.mint(&own, PROJECT, GENERATION, SystemTime::now())?;
    let gateway = start_gateway(dev_grpc, dev_http, tokens, &[&own]).await?;

    let via = Side::new(&gateway.to_string(), minted.token.expose()).await?;
    let direct = Side::new(dev_grpc, ADMIN_TOKEN).await?;
    let direct_rest = Side {
        rest: dev_rest.clone(),
        ..direct.clone()
    };

    // 1. push → watch, through the gateway and direct, alternately.
    let mut gw_watch = PushWatch::open(&via, &own).await?;
    let mut dev_watch = PushWatch::open(&direct, &direct_session).await?;
    let (mut gw_pw, mut dev_pw) = (Vec::new(), Vec::new());
    let mut rounds = Rounds::new(args.seconds);
    while let Some(i) = rounds.round() {
        let (x, y) = (gw_watch.once(i).await?, dev_watch.once(i).await?);
        if Rounds::measured(i) {
            gw_pw.push(x);
            dev_pw.push(y);
        }
    }

    // 2. GET /sessions/{own}, through the gateway and direct, alternately.
    let (mut gw_get, mut dev_get) = (Vec::new(), Vec::new());
    let mut rounds = Rounds::new(args.seconds);
    while let Some(i) = rounds.round() {
        let x = get_session(&http, &via, &own).await?;
        let y = get_session(&http, &direct_rest, &own).await?;
        if Rounds::measured(i) {
            gw_get.push(x);
            dev_get.push(y);
        }
    }
    let load_after = load_average();

    let (mut g, mut d) = (gw_get.clone(), dev_get.clone());
    g.sort();
    d.sort();
    let overhead_us = us(percentile(&g, 0.5)) - us(percentile(&d, 0.5));
    let mut report = json!({
        "bench": "gateway",
        "push_watch_gateway": summary(gw_pw),
        "push_watch_direct": summary(dev_pw),
        "get_session_gateway": summary(gw_get),
        "get_session_direct": summary(dev_get),
        "get_overhead_p50_us": overhead_us,
        "load_average": {"start": load_before, "end": load_after},
    });
    let at = |k: &str, p: &str| report[k][p].as_f64().unwrap_or(f64::NAN);
    let figures = json!([
        {"name": "push -> watch via gateway p50", "value": at("push_watch_gateway", "p50_ms"), "unit": "ms", "target": 5.0, "better": "lower"},
        {"name": "push -> watch via gateway p99", "value": at("push_watch_gateway", "p99_ms"), "unit": "ms", "target": null, "better": "lower"},
        {"name": "push -> watch direct p50", "value": at("push_watch_direct", "p50_ms"), "unit": "ms", "target": null, "better": "lower"},
        {"name": "REST GET gateway overhead p50", "value": overhead_us, "unit": "µs", "target": 300.0, "better": "lower"},
        {"name": "REST GET via gateway p50", "value": at("get_session_gateway", "p50_ms") * 1e3, "unit": "µs", "target": null, "better": "lower"},
        {"name": "REST GET direct p50", "value": at("get_session_direct", "p50_ms") * 1e3, "unit": "µs", "target": null, "better": "lower"},
    ]);
    println!(
        "gateway push → watch: p50 {:.3} ms, p99 {:.3} ms through the gateway ({} samples; target p50 ≤ 5 ms); direct p50 {:.3} ms, p99 {:.3} ms",
        at("push_watch_gateway", "p50_ms"),
        at("push_watch_gateway", "p99_ms"),
        report["push_watch_gateway"]["samples"],
        at("push_watch_direct", "p50_ms"),
        at("push_watch_direct", "p99_ms"),
    );
    println!(
        "gateway REST GET /sessions/{{id}}: p50 {:.0} µs (p99 {:.0}) through the gateway vs {:.0} µs (p99 {:.0}) direct: +{overhead_us:.0} µs ({} samples each; target ≤ +300 µs)",
        at("get_session_gateway", "p50_ms") * 1e3,
        at("get_session_gateway", "p99_ms") * 1e3,
        at("get_session_direct", "p50_ms") * 1e3,
        at("get_session_direct", "p99_ms") * 1e3,
        report["get_session_gateway"]["samples"],
    );
    println!("load average (1 min): {load_before:.2} at start, {load_after:.2} at end");
    report["figures"] = figures;
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
