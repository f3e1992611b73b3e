//! `cargo xtask bench token-exchange`: v2 exchanges/s with 16 concurrent
//! clients over loopback against an in-process [`TokenServer`], next to the
//! raw RSA-4096 OAEP decryptions/s a tight loop achieves on the same cores in
//! the same run; their ratio (quality.md target ≥ 0.85); and p50/p99 latency
//! at half of the measured maximum. Writes JSON to `--out`.
//!
//! Usage: `token_exchange_bench [--seconds N] [--out PATH]` (release build).
//! The raw loop and the exchange run alternate in 5 rounds of N/5 seconds
//! each (so both see the same load on a shared machine); the ratio reported
//! is the median of the per-round ratios. The latency run then offers half
//! of the measured exchange rate for N seconds.
//! A last phase measures flood resistance with the production rate limit:
//! valid clients on 8 other loopback IPs, alone and while 127.0.0.2 sends
//! garbage bearers as fast as 32 connections can.
//! A v3 series ([`v3`]) then measures v3 refreshes/s against v1 exchanges/s
//! in alternating rounds, the v3 p99 at half its maximum, and the
//! private-key operations `/metrics` counted meanwhile.
//! In the throughput phases the per-IP rate limit is off (all clients share 127.0.0.1); every
//! other check runs as in production, the session check against an
//! in-memory directory.
//! Last, the series: exchanges/s, p50 and p99 of 1, 4, 16 and 64 closed-loop
//! clients (N/5 seconds each), drawn beside the raw decrypt rate (`plots`).

#[path = "token_exchange_bench/v3.rs"]
mod v3;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ambient_protocol::exchange::{KeySet, encrypt_v2};
use ambient_protocol::keys::PrivateKey;
use ambient_session_gateway::token::{DEFAULT_LIFETIME, KeyRing, SigningKey};
use ambient_token_server::{
    Config, Identity, RateLimit, SessionTokens, StaticDirectory, TokenServer,
};

const CLIENTS: usize = 16;
/// Raw and exchange measurements alternate this many times, so that both see
/// the same machine load (the machines are shared and noisy).
const ROUNDS: usize = 5;
const SESSION: &str = "bench-session-0001";

fn main() -> anyhow::Result<()> {
    let mut seconds = 10u64;
    let mut out = std::path::PathBuf::from("target/bench/token-exchange.json");
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
    eprintln!("bench: generating an RSA-4096 key ...");
    let key = PrivateKey::generate()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    // The raw loop runs as many threads as the server may run key
    // operations at once, so that on a shared machine both get the same
    // share of the cores (on an idle one, any count ≥ cores is the same).
    let threads = Config::default().max_key_ops;
    let r = rt.block_on(run_rounds(&key, window, threads))?;
    let flood = rt.block_on(flood_phase(&key, window))?;
    let v3 = rt.block_on(v3::series(&key, window, threads))?;
    // The series: one entry per exchange protocol measured.
    let slice = window.div_f64(ROUNDS as f64).max(Duration::from_secs(1));
    let series = vec![
        rt.block_on(v2_clients_series(&key, slice, threads, r.raw))?,
        rt.block_on(v3::clients_series(&key, slice, threads))?,
    ];

    println!(
        "raw RSA-4096 OAEP decryptions/s ({threads} threads on {cores} cores, tight loop): {:.1}",
        r.raw
    );
    println!(
        "v2 token exchanges/s ({CLIENTS} concurrent clients, loopback): {:.1}",
        r.exchanges
    );
    println!(
        "ratio exchanges/raw: {:.3} (median of {ROUNDS} interleaved rounds; overall {:.3}; target >= 0.85)",
        r.ratio_median,
        r.exchanges / r.raw
    );
    println!(
        "latency at {:.1} req/s (half of max): p50 {:.2} ms, p99 {:.2} ms over {} requests (target p99 <= 25 ms)",
        r.lat.rate, r.lat.p50_ms, r.lat.p99_ms, r.lat.samples
    );
    println!(
        "flood: valid clients from {FLOOD_VALID_IPS} other IPs kept {:.1}% of their unloaded throughput ({:.1}/s → {:.1}/s) while 127.0.0.2 sent {:.0} garbage requests/s ({:.0}% answered 429; target >= 80%)",
        100.0 * flood.loaded / flood.unloaded.max(f64::MIN_POSITIVE),
        flood.unloaded,
        flood.loaded,
        flood.garbage_rate,
        100.0 * flood.garbage_429_share
    );
    println!(
        "v3 refreshes/s ({CLIENTS} keep-alive clients): {:.1}; v1 exchanges/s in the same run: {:.1}; ratio {:.1} (median of {ROUNDS} interleaved rounds; target >= 40)",
        v3.v3, v3.v1, v3.ratio_median
    );
    println!(
        "v3 latency at {:.1} req/s (half of max): p50 {:.2} ms, p99 {:.2} ms over {} requests (target p99 <= 5 ms); private-key operations during the v3 series: {} (target 0)",
        v3.lat.rate, v3.lat.p50_ms, v3.lat.p99_ms, v3.lat.samples, v3.private_key_ops
    );
    let v3_rounds: Vec<_> = v3
        .rounds
        .iter()
        .map(|(v1, r)| serde_json::json!({"v1_exchanges_per_sec": v1, "v3_refreshes_per_sec": r, "ratio": r / v1.max(f64::MIN_POSITIVE)}))
        .collect();
    let (raw, exchanges, ratio, lat) = (r.raw, r.exchanges, r.ratio_median, r.lat);
    let rounds: Vec<_> = r
        .rounds
        .iter()
        .map(|(raw, ex)| serde_json::json!({"raw_decrypts_per_sec": raw, "exchanges_per_sec": ex, "ratio": ex / raw}))
        .collect();
    let json = serde_json::json!({
        "bench": "token-exchange",
        "cores": cores,
        "raw_threads_and_server_key_ops": threads,
        "seconds_per_phase": window.as_secs(),
        "clients": CLIENTS,
        "raw_decrypts_per_sec": raw,
        "rounds": rounds,
        "exchanges_per_sec": exchanges,
        "ratio": ratio,
        "ratio_target": 0.85,
        "flood": {
            "valid_ips": FLOOD_VALID_IPS,
            "valid_unloaded_per_sec": flood.unloaded,
            "valid_loaded_per_sec": flood.loaded,
            "kept": flood.loaded / flood.unloaded.max(f64::MIN_POSITIVE),
            "kept_target": 0.8,
            "garbage_per_sec": flood.garbage_rate,
            "garbage_429_share": flood.garbage_429_share,
        },
        "latency": {
            "offered_rate_per_sec": lat.rate,
            "p50_ms": lat.p50_ms,
            "p99_ms": lat.p99_ms,
            "samples": lat.samples,
            "p99_target_ms": 25.0,
        },
        "v3": {
            "v1_exchanges_per_sec": v3.v1,
            "v3_refreshes_per_sec": v3.v3,
            "ratio": v3.ratio_median,
            "ratio_target": 40.0,
            "rounds": v3_rounds,
            "private_key_operations": v3.private_key_ops,
            "latency": {
                "offered_rate_per_sec": v3.lat.rate,
                "p50_ms": v3.lat.p50_ms,
                "p99_ms": v3.lat.p99_ms,
                "samples": v3.lat.samples,
                "p99_target_ms": 5.0,
            },
        },
        "clients_series": clients_detail(&series),
        "plots": clients_plots(&series, raw),
        // The figures `cargo xtask bench all` reports: {name, value, unit, target, better}.
        "figures": [
            {"name": "exchanges/raw decrypts", "value": ratio, "unit": "x", "target": 0.85, "better": "higher"},
            {"name": "latency p99", "value": lat.p99_ms, "unit": "ms", "target": 25.0, "better": "lower"},
            {"name": "flood: valid throughput kept", "value": flood.loaded / flood.unloaded.max(f64::MIN_POSITIVE), "unit": "x", "target": 0.8, "better": "higher"},
            {"name": "latency p50", "value": lat.p50_ms, "unit": "ms", "target": null, "better": "lower"},
            {"name": "exchanges/s", "value": exchanges, "unit": "/s", "target": null, "better": "higher"},
            {"name": "v3 refreshes/v1 exchanges", "value": v3.ratio_median, "unit": "x", "target": 40.0, "better": "higher"},
            {"name": "v3 latency p99", "value": v3.lat.p99_ms, "unit": "ms", "target": 5.0, "better": "lower"},
            {"name": "v3 private-key operations", "value": v3.private_key_ops, "unit": "", "target": 0, "better": "lower"},
            {"name": "v3 refreshes/s", "value": v3.v3, "unit": "/s", "target": null, "better": "higher"},
        ],
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&json)? + "\n")?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Decryptions per second of `threads` threads in a tight loop.
fn raw_decrypt_rate(key: &PrivateKey, threads: usize, window: Duration) -> f64 {
    let ciphertext =
        match ambient_protocol::exchange::encrypt_v2(key.public_key(), SESSION, SystemTime::now())
            .map(|b64| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b64)
            }) {
            Ok(Ok(c)) => c,
            _ => return 0.0,
        };
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (key, ct, stop, count) =
                (key.clone(), ciphertext.clone(), stop.clone(), count.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; key.ciphertext_len()];
                while !stop.load(Ordering::Relaxed) {
                    if key.decrypt(&ct, &mut buf).is_some() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

struct Latency {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

/// Pre-encrypted v2 bearers (clients are other machines in production).
fn bearers(key: &PrivateKey, n: usize) -> anyhow::Result<Arc<Vec<String>>> {
    let now = SystemTime::now();
    let v = (0..n)
        .map(|_| encrypt_v2(key.public_key(), SESSION, now).map(|b| format!("Bearer {b}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(v))
}

struct Results {
    raw: f64,
    exchanges: f64,
    ratio_median: f64,
    rounds: Vec<(f64, f64)>,
    lat: Latency,
}

/// `ROUNDS` × (raw decryption loop for a slice, exchange run for a slice),
/// then the latency run at half of the measured exchange rate.
async fn run_rounds(key: &PrivateKey, window: Duration, threads: usize) -> anyhow::Result<Results> {
    let server = bench_server(
        key,
        Config {
            max_connections_per_ip: Config::default().max_connections_per_ip,
            ..unlimited(threads)
        },
    )?;
    let running = server.clone().bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}/token", running.local_addr());
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(CLIENTS)
        .timeout(Duration::from_secs(30))
        .build()?;

    let slice = window.div_f64(ROUNDS as f64).max(Duration::from_secs(1));
    let mut rounds = Vec::new();
    let (mut raw_sum, mut ex_sum) = (0.0, 0.0);
    for round in 0..ROUNDS {
        let k = key.clone();
        let cpu0 = process_cpu_seconds();
        let raw = tokio::task::spawn_blocking(move || raw_decrypt_rate(&k, threads, slice)).await?;
        // Bearers for this round, encrypted before the clock starts (the
        // clients are other machines in production).
        let budget = 500 + (raw * (slice.as_secs_f64() + 0.3) * 1.5) as usize;
        let pool = bearers(key, budget)?;
        let cpu1 = process_cpu_seconds();
        let ex = closed_loop(pool, &http, &url, slice).await?;
        let cpu2 = process_cpu_seconds();
        eprintln!(
            "bench: round {round}: process CPU per raw decrypt {:.3} ms, per exchange {:.3} ms (server + clients)",
            (cpu1 - cpu0) * 1000.0 / (raw * slice.as_secs_f64()),
            (cpu2 - cpu1) * 1000.0 / (ex * slice.as_secs_f64()),
        );
        let (sum, count) = decrypt_totals(&server);
        eprintln!(
            "bench: round {round}: raw {raw:.1}/s ({:.3} ms/decrypt/thread), exchanges {ex:.1}/s, ratio {:.3}; server decrypt mean so far {:.3} ms",
            threads as f64 * 1000.0 / raw,
            ex / raw,
            sum * 1000.0 / count.max(1.0)
        );
        raw_sum += raw;
        ex_sum += ex;
        rounds.push((raw, ex));
    }
    let mut ratios: Vec<f64> = rounds.iter().map(|(r, e)| e / r).collect();
    ratios.sort_by(f64::total_cmp);
    let ratio_median = ratios[ratios.len() / 2];
    let exchanges = ex_sum / ROUNDS as f64;
    let lat = open_loop(&|n| bearers(key, n), &http, &url, window, exchanges / 2.0).await?;
    running.shutdown().await?;
    Ok(Results {
        raw: raw_sum / ROUNDS as f64,
        exchanges,
        ratio_median,
        rounds,
        lat,
    })
}

/// User + system CPU seconds of this process so far (Linux `/proc`).
fn process_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 12th and 13th of them, in clock ticks (100 Hz on Linux).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// (sum, count) of the server's decrypt-duration histogram.
fn decrypt_totals(server: &TokenServer) -> (f64, f64) {
    let text = server.metrics().encode();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("ambient_token_server_decrypt_duration_seconds_sum "),
        value("ambient_token_server_decrypt_duration_seconds_count "),
    )
}

/// Exchanges/s of 16 closed-loop clients over `window` (after a short warm-up).
async fn closed_loop(
    pool: Arc<Vec<String>>,
    http: &reqwest::Client,
    url: &str,
    window: Duration,
) -> anyhow::Result<f64> {
    let warmup = Duration::from_millis(300);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let measure_to = measure_from + window;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (http, url, pool, next, done, errors) = (
            http.clone(),
            url.to_owned(),
            pool.clone(),
            next.clone(),
            done.clone(),
            errors.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < measure_to {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(bearer) = pool.get(i) else { break };
                let ok = match http.get(&url).header("authorization", bearer).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let now = Instant::now();
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                } else if now >= measure_from && now < measure_to {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    if next.load(Ordering::Relaxed) >= pool.len() {
        eprintln!("bench: warning: the bearer pool ran out before the window ended");
    }
    let errs = errors.load(Ordering::Relaxed);
    if errs > 0 {
        anyhow::bail!("{errs} exchanges failed during the throughput run");
    }
    Ok(done.load(Ordering::Relaxed) as f64 / window.as_secs_f64())
}

/// p50/p99 of 16 open-loop clients offering `rate` requests/s in total.
async fn open_loop(
    pool_of: &dyn Fn(usize) -> anyhow::Result<Arc<Vec<String>>>,
    http: &reqwest::Client,
    url: &str,
    window: Duration,
    rate: f64,
) -> anyhow::Result<Latency> {
    let rate = rate.max(1.0);
    let per_client = Duration::from_secs_f64(CLIENTS as f64 / rate);
    let n_per_client = ((window.as_secs_f64() * rate) / CLIENTS as f64).ceil() as usize;
    let pool = pool_of(n_per_client * CLIENTS)?;
    let t0 = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, pool) = (http.clone(), url.to_owned(), pool.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n_per_client);
            let offset = per_client.mul_f64(c as f64 / CLIENTS as f64);
            for j in 0..n_per_client {
                let due = t0 + offset + per_client.mul_f64(j as f64);
                tokio::time::sleep_until(due.into()).await;
                let Some(bearer) = pool.get(c * n_per_client + j) else {
                    break;
                };
                let sent = Instant::now();
                let ok = match http.get(&url).header("authorization", bearer).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(sent.elapsed());
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            all.extend(l);
        }
    }
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let idx = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[idx].as_secs_f64() * 1000.0
    };
    Ok(Latency {
        rate,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        samples: all.len(),
    })
}

/// Valid client IPs of the flood phase (127.0.0.10 …), each below its per-IP limit.
const FLOOD_VALID_IPS: usize = 8;
/// Requests/s each valid IP offers (the default per-IP limit is 10/s).
const FLOOD_VALID_RATE: f64 = 8.0;

struct Flood {
    unloaded: f64,
    loaded: f64,
    garbage_rate: f64,
    garbage_429_share: f64,
}

/// quality.md's flood figure, with the production rate limit on: the valid
/// throughput of `FLOOD_VALID_IPS` clients alone, then again while one IP
/// sends garbage bearers as fast as 32 connections can.
async fn flood_phase(key: &PrivateKey, window: Duration) -> anyhow::Result<Flood> {
    let server = bench_server(key, Config::default())?;
    let running = server.bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}/token", running.local_addr());
    let slice = window.div_f64(2.0).max(Duration::from_secs(2));
    let per_ip = (FLOOD_VALID_RATE * slice.as_secs_f64()).ceil() as usize;
    let valid = |pool: Arc<Vec<String>>| {
        let url = url.clone();
        async move {
            let mut tasks = Vec::new();
            for c in 0..FLOOD_VALID_IPS {
                let ip: std::net::IpAddr = format!("127.0.0.{}", 10 + c).parse()?;
                let http = reqwest::Client::builder()
                    .no_proxy()
                    .local_address(ip)
                    .build()?;
                let (url, pool) = (url.clone(), pool.clone());
                tasks.push(tokio::spawn(async move {
                    let start = Instant::now();
                    let mut ok = 0u64;
                    for j in 0..per_ip {
                        let due = start + Duration::from_secs_f64(j as f64 / FLOOD_VALID_RATE);
                        tokio::time::sleep_until(due.into()).await;
                        let Some(bearer) = pool.get(c * per_ip + j) else {
                            break;
                        };
                        if let Ok(r) = http.get(&url).header("authorization", bearer).send().await
                            && r.status().is_success()
                        {
                            ok += 1;
                        }
                    }
                    ok
                }));
            }
            let mut ok = 0u64;
            for t in tasks {
                ok += t.await.unwrap_or(0);
            }
            Ok::<f64, anyhow::Error>(ok as f64 / slice.as_secs_f64())
        }
    };
    let unloaded = valid(bearers(key, FLOOD_VALID_IPS * per_ip)?).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, limited) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let flooder = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>()?)
        .pool_max_idle_per_host(32)
        .build()?;
    let garbage = format!("Bearer {}", "QUJD".repeat(171));
    let mut flood = Vec::new();
    for _ in 0..32 {
        let (http, url, stop, sent, limited, garbage) = (
            flooder.clone(),
            url.clone(),
            stop.clone(),
            sent.clone(),
            limited.clone(),
            garbage.clone(),
        );
        flood.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(r) = http
                    .get(&url)
                    .header("authorization", &garbage)
                    .send()
                    .await
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                    if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        limited.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let flood_start = Instant::now();
    let loaded = valid(bearers(key, FLOOD_VALID_IPS * per_ip)?).await?;
    stop.store(true, Ordering::Relaxed);
    let flood_secs = flood_start.elapsed().as_secs_f64();
    for t in flood {
        let _ = t.await;
    }
    running.shutdown().await?;
    let sent = sent.load(Ordering::Relaxed) as f64;
    Ok(Flood {
        unloaded,
        loaded,
        garbage_rate: sent / flood_secs,
        garbage_429_share: limited.load(Ordering::Relaxed) as f64 / sent.max(1.0),
    })
}

/// A token server with one key and one live session, handing out session
/// tokens (the default identity; the session's token comes from the cache
/// after the first exchange, as a client's refresh does).
fn bench_server(key: &PrivateKey, config: Config) -> anyhow::Result<TokenServer> {
    let keys = KeySet::new(vec![key.clone()]).ok_or_else(|| anyhow::anyhow!("no key"))?;
    let dir = StaticDirectory::new();
    dir.set(SESSION, "bench-project", "Running");
    let ring = KeyRing::new(SigningKey::generate()?);
    let tokens = SessionTokens::new(ring, DEFAULT_LIFETIME)?;
    Ok(TokenServer::new(
        keys,
        Arc::new(dir),
        Identity::SessionTokens(Arc::new(tokens)),
        config,
    ))
}

// The concurrency series (issue 30): exchanges/s and latency against the
// number of concurrent clients, beside the raw decrypt rate of the same run.

/// Concurrent closed-loop clients of the series.
const SERIES_CLIENTS: &[usize] = &[1, 4, 16, 64];

/// One point of a series: `clients` closed-loop clients for a window.
struct ClientsPoint {
    clients: usize,
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests not answered with a token: shed by the server (503 with
    /// its key queue full, connections over the per-IP cap) or timed out.
    refused: u64,
}

/// A named series of the clients charts. Each exchange protocol measured is
/// one entry: the charts draw every entry of the list on the same axes.
struct ClientsSeries {
    name: &'static str,
    points: Vec<ClientsPoint>,
}

/// A server measured for what it can do: no rate limit, `threads` key
/// operations at once, and the per-IP connection cap raised (the clients
/// stand for pods on as many IPs: all of them share 127.0.0.1 here, whose
/// production cap is 32 connections).
fn unlimited(threads: usize) -> Config {
    Config {
        rate_limit: RateLimit {
            per_second: 0.0,
            burst: 0,
            ..RateLimit::default()
        },
        max_key_ops: threads,
        max_connections_per_ip: 1024,
        ..Config::default()
    }
}

/// The v2 series against a fresh server (no per-IP limit, as the
/// throughput rounds): for each client count, `slice` of closed-loop
/// exchanges, each client sending its next request when the last answered.
async fn v2_clients_series(
    key: &PrivateKey,
    slice: Duration,
    threads: usize,
    raw: f64,
) -> anyhow::Result<ClientsSeries> {
    let server = bench_server(key, unlimited(threads))?;
    let running = server.bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}/token", running.local_addr());
    let mut points = Vec::new();
    for &clients in SERIES_CLIENTS {
        // Enough bearers for the raw rate over the window, encrypted first.
        let pool = bearers(
            key,
            200 + (raw * (slice.as_secs_f64() + 0.3) * 1.5) as usize,
        )?;
        let point = clients_point(pool, "authorization", &url, clients, slice).await?;
        eprintln!(
            "bench: v2, {clients} clients: {:.1} exchanges/s, p50 {:.2} ms, p99 {:.2} ms, {} refused",
            point.per_sec, point.p50_ms, point.p99_ms, point.refused
        );
        points.push(point);
    }
    running.shutdown().await?;
    Ok(ClientsSeries { name: "v2", points })
}

/// `clients` closed-loop clients sending `header: <pool entry>` to `url`
/// (each entry once) for `window` after a short warm-up: exchanges/s and
/// the latency of every request answered with a token within the window;
/// the others are counted (a saturated server sheds load by design).
async fn clients_point(
    pool: Arc<Vec<String>>,
    header: &'static str,
    url: &str,
    clients: usize,
    window: Duration,
) -> anyhow::Result<ClientsPoint> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(30))
        .build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let measure_from = Instant::now() + Duration::from_millis(300);
    let measure_to = measure_from + window;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (http, url, pool, next) = (http.clone(), url.to_owned(), pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < measure_to {
                let Some(value) = pool.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let sent = Instant::now();
                let ok = match http.get(&url).header(header, value).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let now = Instant::now();
                if !ok {
                    errors += 1;
                } else if now >= measure_from && now < measure_to {
                    // Answered within the window: counted, and its latency.
                    lat.push(now - sent);
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (lat, errs) = t.await?;
        all.extend(lat);
        errors += errs;
    }
    if all.is_empty() {
        anyhow::bail!("no exchange succeeded with {clients} clients ({errors} refused)");
    }
    if next.load(Ordering::Relaxed) >= pool.len() {
        eprintln!("bench: warning: the bearer pool ran out before the window ended");
    }
    all.sort();
    let pct = |p: f64| match all.len() {
        0 => f64::NAN,
        n => all[((n as f64 * p).ceil() as usize).clamp(1, n) - 1].as_secs_f64() * 1e3,
    };
    Ok(ClientsPoint {
        clients,
        per_sec: all.len() as f64 / window.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        refused: errors,
    })
}

/// The two line charts of the series (`plots` of the report, drawn by
/// `cargo xtask bench all`): throughput with the raw decrypt rate as its
/// limit line, and p99 latency with its target.
fn clients_plots(series: &[ClientsSeries], raw: f64) -> serde_json::Value {
    let lines = |y: fn(&ClientsPoint) -> f64| -> Vec<serde_json::Value> {
        series
            .iter()
            .map(|s| {
                let points: Vec<_> = s
                    .points
                    .iter()
                    .map(|p| serde_json::json!([p.clients, y(p)]))
                    .collect();
                serde_json::json!({"name": s.name, "points": points})
            })
            .collect()
    };
    let clients = serde_json::json!({"label": "concurrent clients", "unit": "", "log": true});
    serde_json::json!([
        {
            "id": "token-exchange-throughput",
            "title": "token exchange: throughput vs concurrent clients",
            "x": clients,
            // Log: v3 refreshes run tens of times faster than v2 exchanges.
            "y": {"label": "exchanges per second", "unit": "1/s", "log": true},
            "series": lines(|p| p.per_sec),
            "levels": [{"name": "raw RSA-4096 decrypts/s (v1/v2 limit)", "value": raw}],
        },
        {
            "id": "token-exchange-p99",
            "title": "token exchange: p99 latency vs concurrent clients",
            "x": clients,
            "y": {"label": "p99 latency", "unit": "ms", "log": true},
            "series": lines(|p| p.p99_ms),
            "levels": [
                {"name": "target p99 (v2)", "value": 25.0},
                {"name": "target p99 (v3)", "value": 5.0},
            ],
        },
    ])
}

/// The series as plain numbers, for the report's detail.
fn clients_detail(series: &[ClientsSeries]) -> serde_json::Value {
    series
        .iter()
        .map(|s| {
            let points: Vec<_> = s
                .points
                .iter()
                .map(|p| serde_json::json!({"clients": p.clients, "exchanges_per_sec": p.per_sec, "p50_ms": p.p50_ms, "p99_ms": p.p99_ms, "refused": p.refused}))
                .collect();
            (s.name.to_owned(), serde_json::Value::from(points))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
