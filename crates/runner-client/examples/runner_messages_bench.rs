//! `cargo xtask bench runner-messages [SECONDS]`: push → watch delivery
//! through a release ambient-devserver over loopback, with this crate's
//! client on both ends (quality.md: p50 ≤ 5 ms).
//!
//! 1. latency: one push at a time; the time from the push call to the
//!    message coming out of a `watch` stream on the same session (p50, p99),
//!    beside the bare push round trip;
//! 2. throughput: 16 concurrent pushers on one session for SECONDS; the
//!    messages/s the watch delivers (each checked to come once, in order);
//! 3. the series: 1, 100 and 1 000 sessions watched at once, each with one
//!    pusher sending a message every 500 ms for SECONDS and its own watch;
//!    push → watch p50/p99 over every session (`plots` of the report).
//!
//! Arguments: `--devserver PATH --seconds N --out FILE`.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ambient_protocol::Secret;
use ambient_protocol::v1::CreateSessionRequest;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_runner_client::{Api, SessionMessages, TokenSource};
use anyhow::{Context as _, Result, bail};
use clap::Parser;
use futures::StreamExt as _;
use serde_json::json;

const TOKEN: &str = "runner-messages-bench-token";
const WARMUP: usize = 200;
const PUSHERS: usize = 16;
/// Sessions watched at once in the series.
const WATCHED: &[usize] = &[1, 100, 1000];
/// How often each session's pusher sends in the series.
const PUSH_EVERY: Duration = Duration::from_millis(500);
/// Sessions per gRPC connection in the series (a server caps the streams
/// of one HTTP/2 connection; agents are separate processes anyway).
const SESSIONS_PER_CONNECTION: usize = 50;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    devserver: String,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

/// The devserver child, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_devserver(path: &str) -> Result<(Server, String)> {
    let mut child = Command::new(path)
        .args(["--in-memory", "--grpc-listen", "127.0.0.1:0"])
        .args(["--http-listen", "127.0.0.1:0"])
        .env("AMBIENT_DEVSERVER_TOKEN", TOKEN)
        .args(["--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {path}"))?;
    let stdout = child.stdout.take().context("devserver stdout")?;
    let server = Server(child);
    for line in BufReader::new(stdout).lines() {
        if let Some(addr) = line?.strip_prefix("grpc listening on ") {
            return Ok((server, addr.trim().to_owned()));
        }
    }
    bail!("the devserver exited before announcing its gRPC address")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    json!({
        "samples": samples.len(),
        "p50_ms": percentile(&samples, 0.50),
        "p99_ms": percentile(&samples, 0.99),
        "max_ms": percentile(&samples, 1.0),
    })
}

/// One push at a time; each timed until the watch yields it.
/// Returns the delivery times, the push round trips and the last seq.
async fn latency(
    messages: &SessionMessages,
    seconds: u64,
) -> Result<(Vec<Duration>, Vec<Duration>, i64)> {
    let mut watch = Box::pin(messages.watch(0));
    let (mut delivery, mut rtt) = (Vec::new(), Vec::new());
    let deadline = Instant::now() + Duration::from_secs(seconds.max(1));
    let (mut i, mut last) = (0usize, 0);
    while Instant::now() < deadline || i < WARMUP * 2 {
        let start = Instant::now();
        let pushed = messages.push("bench", format!("latency-{i}")).await?;
        let pushed_in = start.elapsed();
        last = pushed.seq;
        loop {
            match watch.next().await {
                Some(Ok(m)) if m.seq == pushed.seq => break,
                Some(Ok(m)) if m.seq < pushed.seq => continue,
                other => bail!("watch: expected seq {}, got {other:?}", pushed.seq),
            }
        }
        if i >= WARMUP {
            delivery.push(start.elapsed());
            rtt.push(pushed_in);
        }
        i += 1;
    }
    Ok((delivery, rtt, last))
}

/// PUSHERS concurrent pushers for `seconds`; messages/s out of the watch.
async fn throughput(messages: &SessionMessages, after: i64, seconds: u64) -> Result<(usize, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut pushers = Vec::new();
    for p in 0..PUSHERS {
        let (messages, stop) = (messages.clone(), stop.clone());
        pushers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                messages.push("bench", format!("tp-{p}-{n}")).await?;
                n += 1;
            }
            anyhow::Ok(n)
        }));
    }
    let mut watch = Box::pin(messages.watch(after));
    let start = Instant::now();
    let (mut received, mut last) = (0usize, after);
    let run = Duration::from_secs(seconds.max(1));
    while start.elapsed() < run {
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await {
            Ok(Some(Ok(m))) => {
                if m.seq <= last {
                    bail!("seq {} after {last}: not exactly once in order", m.seq);
                }
                last = m.seq;
                received += 1;
            }
            other => bail!("watch stalled: {other:?}"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for p in pushers {
        p.await??;
    }
    Ok((received, received as f64 / elapsed))
}

async fn create_session(api: &Api, name: String) -> Result<String> {
    let session = api
        .unary(
            CreateSessionRequest {
                name,
                ..CreateSessionRequest::default()
            },
            |ch, req| async move { SessionServiceClient::new(ch).create_session(req).await },
        )
        .await?;
    Ok(session.metadata.map(|m| m.id).unwrap_or_default())
}

/// One session of the series: a paced pusher and its own watch; the push →
/// watch time of every message after the first.
async fn paced(
    messages: SessionMessages,
    offset: Duration,
    run: Duration,
) -> Result<Vec<Duration>> {
    let mut watch = Box::pin(messages.watch(0));
    let t0 = tokio::time::Instant::now() + offset;
    let mut delivery = Vec::new();
    for i in 0u32.. {
        let due = t0 + PUSH_EVERY * i;
        if due > t0 + run {
            break;
        }
        tokio::time::sleep_until(due).await;
        let start = Instant::now();
        let pushed = messages.push("bench", format!("watched-{i}")).await?;
        loop {
            match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
                Ok(Some(Ok(m))) if m.seq == pushed.seq => break,
                Ok(Some(Ok(m))) if m.seq < pushed.seq => continue,
                other => bail!("watch: expected seq {}, got {other:?}", pushed.seq),
            }
        }
        if i > 0 {
            delivery.push(start.elapsed());
        }
    }
    Ok(delivery)
}

/// The series over [`WATCHED`]: (sessions, p50 ms, p99 ms, samples).
async fn watched_series(grpc: &str, seconds: u64) -> Result<Vec<(usize, f64, f64, usize)>> {
    let most = WATCHED.iter().copied().max().unwrap_or(1);
    let mut apis = Vec::new();
    for _ in 0..most.div_ceil(SESSIONS_PER_CONNECTION) {
        apis.push(Api::new(
            grpc,
            false,
            None,
            TokenSource::fixed(Secret::new(TOKEN)),
        )?);
    }
    let mut sessions = Vec::new();
    for i in 0..most {
        let api = apis[i / SESSIONS_PER_CONNECTION].clone();
        let id = create_session(&api, format!("watched-{i}")).await?;
        sessions.push(SessionMessages::new(api, id));
    }
    let run = Duration::from_secs(seconds.max(2));
    let mut points = Vec::new();
    for &n in WATCHED {
        let mut tasks = Vec::new();
        for (i, messages) in sessions.iter().take(n).enumerate() {
            // Pushers spread evenly over the interval, not all at once.
            let offset = PUSH_EVERY.mul_f64(i as f64 / n as f64);
            tasks.push(tokio::spawn(paced(messages.clone(), offset, run)));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        all.sort();
        let (p50, p99) = (percentile(&all, 0.50), percentile(&all, 0.99));
        println!(
            "push → watch with {n} sessions watched (one pusher each, every {} ms): p50 {p50:.3} ms, p99 {p99:.3} ms ({} samples)",
            PUSH_EVERY.as_millis(),
            all.len()
        );
        points.push((n, p50, p99, all.len()));
    }
    Ok(points)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (_server, grpc) = start_devserver(&args.devserver)?;
    let api = Api::new(&grpc, false, None, TokenSource::fixed(Secret::new(TOKEN)))?;
    let id = create_session(&api, "bench".into()).await?;
    let messages = SessionMessages::new(api, id);

    let (delivery, rtt, last) = latency(&messages, args.seconds / 2).await?;
    let (received, rate) = throughput(&messages, last, args.seconds / 2).await?;
    let watched = watched_series(&grpc, args.seconds).await?;
    let line = |f: fn(&(usize, f64, f64, usize)) -> f64| -> Vec<serde_json::Value> {
        watched.iter().map(|p| json!([p.0, f(p)])).collect()
    };

    let mut report = json!({
        "bench": "runner-messages",
        "delivery_latency": summary(delivery),
        "push_round_trip": summary(rtt),
        "throughput": {
            "pushers": PUSHERS,
            "messages": received,
            "messages_per_s": rate,
        },
        "target_p50_ms": 5.0,
        "watched_series": watched.iter().map(|(n, p50, p99, samples)| json!({
            "sessions": n, "p50_ms": p50, "p99_ms": p99, "samples": samples,
            "push_every_ms": PUSH_EVERY.as_millis() as u64,
        })).collect::<Vec<_>>(),
        // The line chart `cargo xtask bench all` draws.
        "plots": [{
            "id": "runner-messages-watched",
            "title": "message stream: push → watch vs sessions watched at once",
            "x": {"label": "sessions watched, one pusher each (2 messages/s)", "unit": "", "log": true},
            "y": {"label": "push → watch", "unit": "ms", "log": true},
            "series": [
                {"name": "p50", "points": line(|p| p.1)},
                {"name": "p99", "points": line(|p| p.2)},
            ],
            "levels": [{"name": "target p50", "value": 5.0}],
        }],
    });
    // The figures `cargo xtask bench all` reports.
    report["figures"] = json!([
        {"name": "push -> watch p50", "value": report["delivery_latency"]["p50_ms"], "unit": "ms", "target": 5.0, "better": "lower"},
        {"name": "push -> watch p99", "value": report["delivery_latency"]["p99_ms"], "unit": "ms", "target": null, "better": "lower"},
        {"name": "messages/s, one session", "value": rate, "unit": "/s", "target": null, "better": "higher"},
    ]);
    let d = &report["delivery_latency"];
    println!(
        "push → watch delivery: p50 {:.3} ms, p99 {:.3} ms ({} samples; target p50 ≤ 5 ms)",
        d["p50_ms"].as_f64().unwrap_or_default(),
        d["p99_ms"].as_f64().unwrap_or_default(),
        d["samples"]
    );
    let r = &report["push_round_trip"];
    println!(
        "push round trip alone: p50 {:.3} ms, p99 {:.3} ms",
        r["p50_ms"].as_f64().unwrap_or_default(),
        r["p99_ms"].as_f64().unwrap_or_default()
    );
    println!(
        "one session, {PUSHERS} pushers: {rate:.0} messages/s delivered by the watch ({received} messages)"
    );
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}
