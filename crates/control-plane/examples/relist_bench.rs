//! `cargo xtask bench relist [SESSIONS]`: control-plane start → every session
//! reconciled, against a release ambient-devserver holding SESSIONS sessions
//! (default 10 000), with a no-op runtime, plus the control plane's peak RSS.
//! quality.md targets: ≤ 5 s and ≤ 96 MiB (issue 17, at 100 000: ≤ 10 s and
//! ≤ 256 MiB).
//!
//! Arguments: `--devserver PATH --sessions N --out FILE`.
//!
//! This process starts the devserver and fills it (not timed), then runs
//! itself again with `--grpc ADDR`: that second process is the control plane
//! alone (informers, queue, reconcilers, no-op runtime), so its peak RSS
//! (`VmHWM`) holds nothing of the seeding client.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ambient_control_plane::api::Api;
use ambient_control_plane::config::Config;
use ambient_control_plane::daemon::Caches;
use ambient_control_plane::metrics::Metrics;
use ambient_control_plane::objects::SessionObjects;
use ambient_control_plane::queue::WorkQueue;
use ambient_control_plane::reconcile::{Controller, Key};
use ambient_control_plane::runtime::{
    BoxFuture, GroupBinding, Observation, RuntimeError, SessionRuntime,
};
use ambient_protocol::Secret;
use ambient_protocol::v1::project_service_client::ProjectServiceClient;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_protocol::v1::{CreateProjectRequest, CreateSessionRequest, Session};
use ambient_token_server::StaticToken;
use anyhow::{Context, Result, bail};
use clap::Parser;

const TOKEN: &str = "relist-bench-token";
/// The project every session lives in (a project's ID is its name).
const PROJECT: &str = "bench";

fn authed<T>(msg: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Ok(v) = format!("Bearer {TOKEN}").parse() {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

#[derive(Parser)]
struct Args {
    #[arg(long, required_unless_present = "grpc")]
    devserver: Option<String>,
    /// Measure against this already filled devserver (the child process).
    #[arg(long, hide = true)]
    grpc: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    sessions: usize,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    config: Config,
}

/// Provisions nothing; remembers what it was asked to provision.
#[derive(Default)]
struct NoopRuntime {
    provisioned: Mutex<HashSet<String>>,
    count: AtomicUsize,
}

impl SessionRuntime for NoopRuntime {
    fn provision<'a>(&'a self, o: &'a SessionObjects) -> BoxFuture<'a, Result<(), RuntimeError>> {
        let id = o
            .pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("ambient-code.io/session-id"))
            .cloned()
            .unwrap_or_default();
        if let Ok(mut p) = self.provisioned.lock() {
            p.insert(id);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Ok(()) })
    }
    fn observe<'a>(
        &'a self,
        id: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Observation, RuntimeError>> {
        let seen = self
            .provisioned
            .lock()
            .map(|p| p.contains(id))
            .unwrap_or(false);
        Box::pin(async move {
            Ok(if seen {
                Observation::Starting
            } else {
                Observation::Absent
            })
        })
    }
    fn reprovisions<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        Box::pin(async { Ok(0) })
    }
    fn stop<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        Box::pin(async { Ok(true) })
    }
    fn cleanup<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn sessions(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn projects(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn remove_project<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn sync_group_access<'a>(
        &'a self,
        _: &'a str,
        _: &'a [GroupBinding],
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }
    fn caller<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: std::net::SocketAddr,
        _: std::net::SocketAddr,
    ) -> BoxFuture<'a, Result<ambient_control_plane::runtime::Caller, RuntimeError>> {
        Box::pin(async { Ok(ambient_control_plane::runtime::Caller::NotYet) })
    }

    fn pod_facts<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<ambient_control_plane::runtime::PodFacts>, RuntimeError>> {
        Box::pin(async { Ok(None) })
    }

    fn watch(&self, _: tokio::sync::mpsc::UnboundedSender<String>) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ambient_daemon::logging::init_tracing(
        ambient_daemon::logging::LogFormat::Text,
        "warn,ambient_control_plane::informer=info",
    )?;
    if let Some(grpc) = &args.grpc {
        return measure(&args, grpc).await;
    }
    let devserver = args.devserver.as_deref().context("--devserver")?;
    let mut dev = Command::new(devserver)
        .args([
            "--in-memory",
            "--grpc-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--log-level", "warn"])
        .env("AMBIENT_DEVSERVER_TOKEN", TOKEN)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {devserver}"))?;
    let stdout = dev.stdout.take().context("devserver stdout")?;
    let mut grpc = None;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(addr) = line.strip_prefix("grpc listening on ") {
            grpc = Some(addr.trim().to_owned());
            break;
        }
    }
    let Some(grpc) = grpc else {
        bail!("the devserver did not announce its gRPC address");
    };
    let result = match seed(&args, &grpc).await {
        Ok(()) => control_plane(&args, &grpc),
        Err(e) => Err(e),
    };
    let _ = dev.kill();
    let _ = dev.wait();
    result
}

/// Runs the measured control plane: this program again, with `--grpc`.
fn control_plane(args: &Args, grpc: &str) -> Result<()> {
    let mut child = Command::new(std::env::current_exe().context("own path")?);
    child
        .args(["--grpc", grpc])
        .args(["--sessions", &args.sessions.to_string()]);
    if let Some(out) = &args.out {
        child.arg("--out").arg(out);
    }
    let status = child
        .status()
        .context("starting the control-plane process")?;
    if !status.success() {
        bail!("the control-plane process failed: {status}");
    }
    Ok(())
}

/// Fills the devserver: one project, then the sessions in it.
async fn seed(args: &Args, grpc: &str) -> Result<()> {
    let started = Instant::now();
    ProjectServiceClient::connect(format!("http://{grpc}"))
        .await?
        .create_project(authed(CreateProjectRequest {
            name: PROJECT.into(),
            ..CreateProjectRequest::default()
        }))
        .await?;
    let client = SessionServiceClient::connect(format!("http://{grpc}")).await?;
    let next = Arc::new(AtomicUsize::new(0));
    let mut fill = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let mut client = client.clone();
        let next = next.clone();
        let total = args.sessions;
        fill.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), tonic::Status>(());
                }
                let req = authed(CreateSessionRequest {
                    name: format!("bench-{i}"),
                    project_id: Some(PROJECT.into()),
                    ..CreateSessionRequest::default()
                });
                client.create_session(req).await?;
            }
        });
    }
    while let Some(r) = fill.join_next().await {
        r??;
    }
    eprintln!(
        "bench: created {} sessions in {:.1} s",
        args.sessions,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Starts the control plane's machinery against the filled devserver at
/// `grpc` and times it until every session is reconciled.
async fn measure(args: &Args, grpc: &str) -> Result<()> {
    // The daemon's defaults (and its environment: CP_WORKERS, ...).
    let config = Defaults::parse_from(["relist-bench"]).config;
    let pod_config = config.pod_config()?;
    let provider = Arc::new(StaticToken::new(Secret::new(TOKEN)));
    let t0 = Instant::now();
    let api = Api::new(grpc, false, None, provider)?;
    let queue: WorkQueue<Key> = WorkQueue::new();
    let metrics = Metrics::new();
    let mut informers = tokio::task::JoinSet::new();
    let caches = Caches::informed(
        &api,
        Duration::from_secs(3600),
        &metrics,
        &queue,
        &mut informers,
    );
    let sessions = caches.sessions.clone();
    let runtime = Arc::new(NoopRuntime::default());
    let controller = Arc::new(Controller::new(
        api,
        caches.sessions,
        caches.projects,
        caches.settings,
        runtime.clone(),
        pod_config,
        None,
        queue,
        metrics.clone(),
    ));
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(controller.run(config.workers, stop_rx));
    let deadline = Instant::now() + Duration::from_secs(300);
    let creating = |s: &Session| s.phase.as_deref() == Some("Creating");
    let mut last_report = Instant::now();
    let mut synced_at = None;
    loop {
        if synced_at.is_none() && sessions.is_synced() {
            synced_at = Some(t0.elapsed().as_secs_f64());
            eprintln!(
                "bench: session cache synced (listed) after {:.2} s",
                t0.elapsed().as_secs_f64()
            );
        }
        // A session is provisioned before its phase is written: counting
        // the cache (a scan of every session under its lock, which slows
        // the control plane down) waits until every one was provisioned.
        let provisioned = runtime.count.load(Ordering::Relaxed);
        let report = last_report.elapsed() >= Duration::from_secs(1);
        if provisioned >= args.sessions || report {
            let reconciled = sessions.count_where(creating);
            if report {
                last_report = Instant::now();
                eprintln!(
                    "bench: {:.1} s: cached {}, reconciled {reconciled}, provisioned {provisioned}",
                    t0.elapsed().as_secs_f64(),
                    sessions.len(),
                );
            }
            if reconciled == args.sessions {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!("not converged after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed().as_secs_f64();
    let rss = peak_rss_mib();
    // quality.md sets 10 000 sessions: ≤ 5 s, ≤ 96 MiB; at 100 000, ≤ 10 s
    // and ≤ 256 MiB (issue 17).
    let (took_target, rss_target) = if args.sessions > 10_000 {
        (10.0, 256.0)
    } else {
        (5.0, 96.0)
    };
    println!(
        "relist: {} sessions listed and reconciled (no-op runtime) in {took:.2} s (target <= {took_target} s)",
        args.sessions
    );
    println!(
        "relist: provision calls {}, reconcile workers {}",
        runtime.count.load(Ordering::Relaxed),
        config.workers
    );
    println!(
        "relist: peak RSS of the control-plane process {rss:.1} MiB (target <= {rss_target} MiB)"
    );
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::json!({
            "sessions": args.sessions,
            "seconds_to_reconciled": took,
            "seconds_to_listed": synced_at,
            "peak_rss_mib": rss,
            "provision_calls": runtime.count.load(Ordering::Relaxed),
            "workers": config.workers,
            // The figures `cargo xtask bench all` reports.
            "figures": [
                {"name": format!("{} sessions reconciled", args.sessions), "value": took, "unit": "s", "target": took_target, "better": "lower"},
                {"name": "control-plane peak RSS", "value": rss, "unit": "MiB", "target": rss_target, "better": "lower"},
            ],
        });
        std::fs::write(out, serde_json::to_string_pretty(&json)?)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
