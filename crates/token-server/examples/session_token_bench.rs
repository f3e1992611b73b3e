//! `cargo xtask bench session-tokens`: session-token minting as the token
//! server does it (issue 25). Three tight loops, each on as many threads as
//! there are cores, each for `--seconds`:
//!
//! - signing only (cache bypassed): one RSA-2048 PKCS#1 v1.5 signature per
//!   token (target ≥ 2 000/s on 2 cores);
//! - cache hits: a refresh of a session whose token still has more than a
//!   third of its lifetime left (no signature);
//! - verification, as the session gateway does on every call.
//!
//! Usage: `session_token_bench [--seconds N] [--out PATH]` (release build).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ambient_session_gateway::token::{DEFAULT_LIFETIME, KeyRing, SigningKey};
use ambient_token_server::SessionTokens;

const SESSIONS: usize = 1000;
const SIGN_TARGET: f64 = 2000.0;

fn main() -> anyhow::Result<()> {
    let mut seconds = 5u64;
    let mut out = std::path::PathBuf::from("target/bench/session-tokens.json");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--seconds needs a value"))?
                    .parse()?
            }
            "--out" => {
                out = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--out needs a value"))?
                    .into()
            }
            other => anyhow::bail!("unknown argument {other:?}"),
        }
    }
    let window = Duration::from_secs(seconds.max(1));
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let ring = KeyRing::new(SigningKey::generate()?);
    let tokens = Arc::new(SessionTokens::new(ring, DEFAULT_LIFETIME)?);
    let sessions: Arc<Vec<String>> = Arc::new(
        (0..SESSIONS)
            .map(|i| format!("bench-session-{i:06}"))
            .collect(),
    );
    let now = SystemTime::now();
    for sid in sessions.iter() {
        tokens.mint(sid, "bench-project", "1", now)?;
    }
    let minted: Arc<Vec<String>> = Arc::new(
        sessions
            .iter()
            .map(|sid| {
                tokens
                    .mint(sid, "bench-project", "1", now)
                    .map(|m| m.token.expose().to_owned())
            })
            .collect::<Result<_, _>>()?,
    );

    let signed = rate(cores, window, {
        let (tokens, sessions) = (tokens.clone(), sessions.clone());
        move |i| {
            tokens
                .sign(&sessions[i % SESSIONS], "bench-project", "1", now)
                .is_ok()
        }
    });
    let hits = rate(cores, window, {
        let (tokens, sessions) = (tokens.clone(), sessions.clone());
        move |i| {
            tokens
                .mint(&sessions[i % SESSIONS], "bench-project", "1", now)
                .is_ok()
        }
    });
    let verified = rate(cores, window, {
        let (tokens, minted) = (tokens.clone(), minted.clone());
        move |i| tokens.verify_at(&minted[i % SESSIONS], now).is_ok()
    });

    println!(
        "session tokens signed/s ({cores} threads on {cores} cores, cache bypassed): {signed:.0} (target >= {SIGN_TARGET:.0})"
    );
    println!("session tokens from the cache/s: {hits:.0}");
    println!("session tokens verified/s: {verified:.0}");
    let json = serde_json::json!({
        "bench": "session-tokens",
        "cores": cores,
        "seconds_per_phase": window.as_secs(),
        "sessions": SESSIONS,
        "signed_per_sec": signed,
        "cache_hits_per_sec": hits,
        "verified_per_sec": verified,
        // The figures `cargo xtask bench all` reports: {name, value, unit, target, better}.
        "figures": [
            {"name": "session tokens signed/s", "value": signed, "unit": "/s", "target": SIGN_TARGET, "better": "higher"},
            {"name": "session tokens from the cache/s", "value": hits, "unit": "/s", "target": null, "better": "higher"},
            {"name": "session tokens verified/s", "value": verified, "unit": "/s", "target": null, "better": "higher"},
        ],
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Operations per second of `op` (which says whether it succeeded) on
/// `threads` threads for `window`. A failed operation aborts the bench.
fn rate(
    threads: usize,
    window: Duration,
    op: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> f64 {
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (op, stop, done) = (op.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = t * 7919;
                while !stop.load(Ordering::Relaxed) {
                    assert!(op(i), "operation failed");
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}
