//! `cargo xtask bench runner-messages [SECONDS]`: push → watch delivery
//! through a release ambient-devserver over loopback, with this crate's
//! client on both ends (quality.md: p50 ≤ 5 ms).
//!
//! 1. latency: one push at a time; the time from the push call to the
//!    message coming out of a `watch` stream on the same session (p50, p99),
//!    beside the bare push round trip;
//! 2. throughput: 16 concurrent pushers on one session for SECONDS; the
//!    messages/s the watch delivers (each checked to come once, in order).
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

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let (_server, grpc) = start_devserver(&args.devserver)?;
    let api = Api::new(&grpc, false, None, TokenSource::fixed(Secret::new(TOKEN)))?;
    let session = api
        .unary(
            CreateSessionRequest {
                name: "bench".into(),
                ..CreateSessionRequest::default()
            },
            |ch, req| async move { SessionServiceClient::new(ch).create_session(req).await },
        )
        .await?;
    let id = session.metadata.map(|m| m.id).unwrap_or_default();
    let messages = SessionMessages::new(api, id);

    let (delivery, rtt, last) = latency(&messages, args.seconds / 2).await?;
    let (received, rate) = throughput(&messages, last, args.seconds / 2).await?;

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
