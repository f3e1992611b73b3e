//! `cargo xtask bench reconcile [SESSIONS]`: session created over REST →
//! its runner process started, with the process runtime (quality.md:
//! p50 ≤ 50 ms, p99 ≤ 250 ms). Release devserver and control plane; the
//! runner appends `SESSION_ID UNIX_NANOS` to a file and exits at once.
//! Sessions are created one after the other; each latency runs from just
//! before the create call (create, then start: two REST calls) to the
//! runner's own timestamp. Writes `target/bench/reconcile.json`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use integration_tests::local_system::{LocalSystem, Options};
use serde_json::json;

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Runs the benchmark; `sessions` defaults to 200.
pub fn run(out: &Path, sessions: Option<&String>) -> Result<()> {
    let count: usize = match sessions {
        Some(s) => s
            .parse()
            .with_context(|| format!("SESSIONS must be a number, got {s:?}"))?,
        None => 200,
    };
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
    let mut created = HashMap::new();
    let t0 = Instant::now();
    for i in 0..count {
        let before = unix_nanos();
        let id = system
            .start_session("bench", &format!("bench-{i}"), json!({}))
            .map_err(anyhow::Error::msg)?;
        created.insert(id, before);
    }
    let submitted = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(300);
    let started = loop {
        let text = std::fs::read_to_string(&marks).unwrap_or_default();
        let started: HashMap<String, u128> = text
            .lines()
            .filter_map(|l| {
                let (id, ns) = l.split_once(' ')?;
                Some((id.to_owned(), ns.trim().parse().ok()?))
            })
            .collect();
        if created.keys().all(|id| started.contains_key(id)) {
            break started;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} runners started within 300 s",
                started.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_file(&marks);
    let mut ms: Vec<f64> = created
        .iter()
        .map(|(id, before)| started[id].saturating_sub(*before) as f64 / 1e6)
        .collect();
    ms.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&ms, 50.0),
        percentile(&ms, 99.0),
        ms.last().copied().unwrap_or(0.0),
    );
    println!(
        "reconcile: {count} sessions, created (REST) → runner process started: p50 {p50:.1} ms (target <= 50), p99 {p99:.1} ms (target <= 250), max {max:.1} ms"
    );
    println!(
        "reconcile: {count} sessions submitted in {:.1} s (one at a time)",
        submitted.as_secs_f64()
    );
    drop(system);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let report = json!({"sessions": count, "p50_ms": p50, "p99_ms": p99, "max_ms": max});
    std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    println!("wrote {}", out.display());
    Ok(())
}
