//! Project automation (`cargo xtask <command>`), in Rust so nothing rots in shell.
//!
//! - `test`: the one test command (see `suite`).
//! - `lint`: formatting and clippy over every target, interop tests included.
//! - `fuzz [SECONDS]`: a short bounded run of every fuzz target (needs
//!   `cargo install cargo-fuzz`; libFuzzer's `-Z` flags run on the stable
//!   toolchain through `RUSTC_BOOTSTRAP=1`, set here for that build only).
//! - `bench <name>`: a release-built benchmark; prints one line per figure
//!   and writes `target/bench/<name>.json`. `token-exchange`: the token
//!   server's v2 exchanges/s vs raw RSA-OAEP decryptions/s, and latency.
//!   `session-tokens`: session tokens signed/s (cache bypassed), served
//!   from the cache/s and verified/s.
//!   `runner-messages`: push → watch delivery latency and messages/s of one
//!   session through a release devserver.
//!   `gateway`: push → watch latency through the session gateway and its
//!   overhead on a REST GET, each beside the same call made directly.
//!   `mcp-sidecar`: ambient-mcp's cold start, idle RSS and tool-call
//!   overhead vs a direct REST GET. `credential-bridge`: idle RSS of
//!   `credential-entrypoint --serve-mcp` vs PyPI `mcp-proxy`, and the time
//!   from a credential change in the API to the child seeing it.
//!   `all`: every one of them plus the image sizes, PASS/MISS per figure,
//!   a summary and charts (`bench`).
//! - `build-images`, `test-images`: OCI images without a container engine
//!   (`images`); `check-chart`: the Helm chart checked by real Helm (`chart`).

mod bench;
mod chart;
mod demo;
mod images;
mod reconcile_bench;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

mod servers;
mod suite;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  demo [--keep] [--real-servers]
                  run the whole system on this machine (devserver, control plane with the
                  process runtime, a session of the demo runner) and clean up; --keep leaves it running;
                  --real-servers adds a kubeconfig sidecar running the real kubernetes-mcp-server
  test            prepare the interop virtualenv and the real MCP servers (once) and run every test,
                  then scan every daemon log the suite captured for its secrets
  lint            cargo fmt --check and clippy -D warnings, interop tests included
  fuzz [SECONDS]  run each fuzz target for SECONDS (default 30); needs cargo-fuzz
  bench <name> [SECONDS]
                  run a benchmark (release build) for SECONDS per phase (default 10);
                  names: token-exchange, session-tokens, relist (SECONDS is the session count there;
                  without it the 1 000 / 10 000 series, --full adds 100 000),
                  runner-messages, gateway (push → watch and REST GET overhead through the session gateway),
                  mcp-sidecar (cold start, idle RSS, tool-call overhead),
                  credential-bridge (idle RSS vs PyPI mcp-proxy, rotation latency),
                  reconcile [SESSIONS] [RATE]: REST create → pod create request seen by the
                  process runtime, at RATE sessions/s (0: one at a time); without
                  arguments the series at 1, 5 (200 sessions: the figures), 20 and 50/s
  bench all [--record] [--full] [--redraw]
                  every benchmark and the image sizes: PASS/MISS per figure,
                  target/bench/summary.json, an SVG chart per benchmark and a
                  line chart per series (--full: relist at 100 000 sessions too;
                  --redraw: run nothing, draw from the last runs' JSON;
                  --record: also BENCHMARKS.md and docs/bench/)
  build-images [--out DIR] [--push [http://]REGISTRY[/NS]] [--tag T] [--only NAME]... [--base LAYOUT [--provider P]]
                  release-build each daemon and write one OCI image per daemon
                  (layout DIR/NAME/ and archive DIR/NAME.tar; DIR defaults to target/images);
                  --provider P: the credential image's default command for P (--serve-mcp on its port)
  test-images     build the images twice (same digests?), run them in podman, push to a local registry
  check-chart     render deploy/helm with real Helm, lint, validate objects, values and RBAC";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "test" => suite::test(&rest),
        "demo" => demo::demo(&rest),
        "lint" => suite::lint(),
        "fuzz" => fuzz(&rest),
        "bench" if rest.first().is_some_and(|n| n == "all") => bench::all(&rest[1..]),
        "bench" => bench::bench(&rest),
        "build-images" => images::build_images(&rest),
        "test-images" => images::test_images(&rest),
        "check-chart" => chart::check_chart(&rest),
        "" | "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn fuzz(extra: &[String]) -> Result<()> {
    let seconds: u64 = match extra.first() {
        Some(s) => s
            .parse()
            .with_context(|| format!("SECONDS must be a number, got {s:?}"))?,
        None => 30,
    };
    let fuzz_dir = root().join("fuzz");
    if !fuzz_dir.exists() {
        bail!("no fuzz/ directory");
    }
    // libFuzzer instrumentation needs `-Z` flags; the stable compiler takes
    // them with RUSTC_BOOTSTRAP=1 (only for this build, never the workspace's).
    let list = cargo()
        .args(["fuzz", "list"])
        .env("RUSTC_BOOTSTRAP", "1")
        .output()
        .context("cargo fuzz is not installed (cargo install cargo-fuzz)")?;
    if !list.status.success() {
        bail!("`cargo fuzz list` failed; is cargo-fuzz installed (cargo install cargo-fuzz)?");
    }
    for target in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        // New inputs go to fuzz/corpus/<target> (git-ignored); the checked-in
        // seeds in fuzz/seeds/<target> are read too.
        let corpus = fuzz_dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)?;
        let mut cmd = cargo();
        cmd.env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", target])
            .arg(&corpus);
        let seeds = fuzz_dir.join("seeds").join(target);
        if seeds.is_dir() {
            cmd.arg(&seeds);
        }
        cmd.args(["--", &format!("-max_total_time={seconds}")]);
        run(&mut cmd)?;
    }
    Ok(())
}
