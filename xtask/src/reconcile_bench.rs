//! `cargo xtask bench reconcile [SESSIONS] [RATE]`: the reconcile latency of
//! quality.md — session created over REST → its pod's create request seen
//! by the runtime, with the process runtime (p50 ≤ 50 ms, p99 ≤ 250 ms).
//! Without arguments, the series: one run per creation rate of [`SERIES`]
//! (1, 5, 20, 50 sessions/s), each in a fresh system; the 5/s run gives the
//! figures, and the `plots` of the report draw p50/p99 against the rate.
//!
//! What is measured: from just before the `POST /sessions` (the create, which
//! also starts it) to the `pod_requested_at` the process runtime records in
//! the session's `session.json` the moment its `provision` is called. That
//! covers the API's commit and watch event, the informer, the work queue
//! and the reconcile up to the runtime (the project, credential and
//! prompt reads over REST); not the spawning of the pod's processes.
//! As context: REST create → the runner process's own first timestamp (its
//! command appends `SESSION_ID UNIX_NANOS` to a file and exits), which adds
//! the spawn (shim, `sh`, `date`) and whatever the machine is busy with
//! (every session also starts ambient-mcp, which fetches its token), and
//! the REST create call alone.
//!
//! Load model: sessions arrive at a steady RATE (default 5 per second, a
//! busy installation's burst and well inside what one control plane on two
//! cores sustains, processes included), open loop: the i-th create is sent
//! at `i / RATE` seconds whether or not earlier ones were handled, so a
//! control plane that falls behind shows it as latency rather than slowing
//! the arrivals down. `RATE` 0 sends them one at a time instead, each after
//! the previous one's runner started (an idle system's latency). Each
//! session's runner exits at once, so sessions complete and their
//! processes stop while later ones arrive, as they would in use.
//!
//! Release devserver and control plane (built with the workspace's one
//! release build), `--log-level warn`. Writes `target/bench/reconcile.json`
//! with a `figures` array (`bench all`).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use integration_tests::local_system::{LocalSystem, Options};
use serde_json::{Value, json};

/// Sessions per second unless told.
const DEFAULT_RATE: f64 = 5.0;
/// How long the runtime and the runners get to catch up after the last create.
const SETTLE: Duration = Duration::from_secs(120);

/// One session's times.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Just before the create call.
    sent: SystemTime,
    /// The create call's answer.
    created: SystemTime,
}

fn ms(later: SystemTime, earlier: SystemTime) -> f64 {
    later
        .duration_since(earlier)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The runner's marks: session ID → when its process ran.
fn runner_marks(marks: &Path) -> HashMap<String, SystemTime> {
    std::fs::read_to_string(marks)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (id, ns) = l.split_once(' ')?;
            let ns: u64 = ns.trim().parse().ok()?;
            Some((
                id.to_owned(),
                SystemTime::UNIX_EPOCH + Duration::from_nanos(ns),
            ))
        })
        .collect()
}

/// A figure of `reconcile.json` (see `bench::Figure`).
fn figure(name: &str, value: f64, unit: &str, target: Option<f64>, better: &str) -> Value {
    json!({"name": name, "value": value, "unit": unit, "target": target, "better": better})
}

/// p50, p99 and max of `values` (milliseconds), sorted in place.
fn spread(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (
        percentile(values, 50.0),
        percentile(values, 99.0),
        values.last().copied().unwrap_or(0.0),
    )
}

/// The creation rates of the series (sessions per second) and how many
/// sessions each creates: 5/s is quality.md's figure (200 sessions, as a
/// single run); the others last 5–20 s each.
const SERIES: &[(f64, usize)] = &[(1.0, 20), (DEFAULT_RATE, 200), (20.0, 200), (50.0, 250)];

/// One run's latencies (milliseconds) and rate.
#[derive(Debug, Clone, Copy)]
struct Measured {
    count: usize,
    rate: f64,
    achieved: f64,
    p50: f64,
    p99: f64,
    max: f64,
    runner50: f64,
    runner99: f64,
    rest50: f64,
}

/// Runs the benchmark: `args` are `[SESSIONS] [RATE]` (one run), or none:
/// the series over [`SERIES`], whose 5/s run gives the figures.
pub fn run(out: &Path, args: &[String]) -> Result<()> {
    if args.is_empty() {
        return run_series(out);
    }
    let count: usize = match args.first() {
        Some(s) => s
            .parse()
            .with_context(|| format!("SESSIONS must be a number, got {s:?}"))?,
        None => 200,
    };
    let rate: f64 = match args.get(1) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|r: &f64| r.is_finite() && *r >= 0.0)
            .with_context(|| format!("RATE must be a number of sessions per second, got {s:?}"))?,
        None => DEFAULT_RATE,
    };
    let m = measure(count, rate)?;
    write(out, &m, &[])
}

/// Every rate of [`SERIES`], each in a fresh system; the figures of the
/// default rate and the plot of p50/p99 against the rate.
fn run_series(out: &Path) -> Result<()> {
    let mut runs = Vec::new();
    for &(rate, count) in SERIES {
        runs.push(measure(count, rate)?);
    }
    let headline = runs
        .iter()
        .find(|m| m.rate == DEFAULT_RATE)
        .copied()
        .context("the series has the default rate")?;
    write(out, &headline, &runs)
}

fn measure(count: usize, rate: f64) -> Result<Measured> {
    // The workspace's one release build (one feature set: nothing rebuilt twice).
    let release = crate::bench::release_build()?;
    let marks = std::env::temp_dir().join(format!("reconcile-bench-{}", std::process::id()));
    let _ = std::fs::remove_file(&marks);
    let options = Options {
        bin_dir: Some(release),
        runner_command: Some(format!(
            "echo \"$SESSION_ID $(date +%s%N)\" >> '{}'",
            marks.display()
        )),
        control_plane_args: vec!["--stop-sessions-on-exit".into()],
        log_level: Some("warn".into()),
        ..Options::default()
    };
    let system = LocalSystem::start(options).map_err(anyhow::Error::msg)?;
    system.create_project("bench").map_err(anyhow::Error::msg)?;
    let load = if rate > 0.0 {
        format!("{rate} sessions/s, open loop")
    } else {
        "one at a time".to_owned()
    };
    println!("reconcile: creating {count} sessions ({load})");
    let mut samples: HashMap<String, Sample> = HashMap::new();
    let t0 = Instant::now();
    for i in 0..count {
        if rate > 0.0 {
            let due = t0 + Duration::from_secs_f64(i as f64 / rate);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let sent = SystemTime::now();
        let id = system
            .start_session("bench", &format!("bench-{i}"), json!({}))
            .map_err(anyhow::Error::msg)?;
        samples.insert(
            id.clone(),
            Sample {
                sent,
                created: SystemTime::now(),
            },
        );
        if rate == 0.0 {
            system
                .wait_until(SETTLE, "the runner to start", || {
                    Ok(runner_marks(&marks).contains_key(&id))
                })
                .map_err(anyhow::Error::msg)?;
        }
    }
    let submitted = t0.elapsed().as_secs_f64();
    let mut requested = HashMap::new();
    let mut started = HashMap::new();
    let settled = system.wait_until(SETTLE, "every session's runner", || {
        for id in samples.keys() {
            if !requested.contains_key(id)
                && let Some(at) = system.pod_requested_at(id)
            {
                requested.insert(id.clone(), at);
            }
        }
        started = runner_marks(&marks);
        Ok(requested.len() == count && samples.keys().all(|id| started.contains_key(id)))
    });
    let _ = std::fs::remove_file(&marks);
    drop(system);
    if let Err(e) = settled {
        bail!(
            "{e}: {} of {count} pods requested, {} runners started",
            requested.len(),
            started.len()
        );
    }
    let mut to_runtime: Vec<f64> = samples
        .iter()
        .map(|(id, s)| ms(requested[id], s.sent))
        .collect();
    let mut to_runner: Vec<f64> = samples
        .iter()
        .map(|(id, s)| ms(started[id], s.sent))
        .collect();
    let mut rest: Vec<f64> = samples.values().map(|s| ms(s.created, s.sent)).collect();
    let (p50, p99, max) = spread(&mut to_runtime);
    let (runner50, runner99, _) = spread(&mut to_runner);
    let (rest50, rest99, _) = spread(&mut rest);
    let achieved = count as f64 / submitted.max(1e-9);
    println!(
        "reconcile: {count} sessions at {achieved:.1}/s ({load}); created (REST) → pod create request seen by the runtime: p50 {p50:.1} ms (target <= 50), p99 {p99:.1} ms (target <= 250), max {max:.1} ms"
    );
    println!(
        "reconcile: context: created (REST) → runner process started p50 {runner50:.1} ms, p99 {runner99:.1} ms; the REST create call itself p50 {rest50:.1} ms, p99 {rest99:.1} ms"
    );
    Ok(Measured {
        count,
        rate,
        achieved,
        p50,
        p99,
        max,
        runner50,
        runner99,
        rest50,
    })
}

/// Writes `reconcile.json`: the figures of `m`, and with a series the plot
/// of create → runtime request p50/p99 against the creation rate.
fn write(out: &Path, m: &Measured, series: &[Measured]) -> Result<()> {
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let load = if m.rate > 0.0 {
        format!("{} sessions/s, open loop", m.rate)
    } else {
        "one at a time".to_owned()
    };
    let points = |f: fn(&Measured) -> f64| -> Vec<Value> {
        series.iter().map(|m| json!([m.rate, f(m)])).collect()
    };
    let plots = if series.is_empty() {
        vec![]
    } else {
        vec![json!({
            "id": "reconcile-rate",
            "title": "reconcile: create → runtime request vs creation rate (process runtime)",
            "x": {"label": "sessions created per second", "unit": "1/s", "log": true},
            "y": {"label": "create → runtime request", "unit": "ms", "log": true},
            "series": [
                {"name": "p50", "points": points(|m| m.p50)},
                {"name": "p99", "points": points(|m| m.p99)},
            ],
            "levels": [
                {"name": "target p50", "value": 50.0},
                {"name": "target p99", "value": 250.0},
            ],
        })]
    };
    let report = json!({
        "sessions": m.count,
        "rate_per_second": m.rate,
        "load": load,
        "series": series.iter().map(|m| json!({
            "rate_per_second": m.rate, "sessions": m.count, "achieved_per_second": m.achieved,
            "p50_ms": m.p50, "p99_ms": m.p99, "max_ms": m.max,
        })).collect::<Vec<_>>(),
        "figures": [
            figure("create → runtime request p50", m.p50, "ms", Some(50.0), "lower"),
            figure("create → runtime request p99", m.p99, "ms", Some(250.0), "lower"),
            figure("create → runtime request max", m.max, "ms", None, "lower"),
            figure("create → runner started p50", m.runner50, "ms", None, "lower"),
            figure("create → runner started p99", m.runner99, "ms", None, "lower"),
            figure("REST create call p50", m.rest50, "ms", None, "lower"),
            figure("sessions created per second", m.achieved, "1/s", None, "higher"),
        ],
        "plots": plots,
    });
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
