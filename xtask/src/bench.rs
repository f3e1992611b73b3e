//! `cargo xtask bench <name>`: one release-built benchmark, and `bench all`
//! (`all`). Every benchmark runs on the same build: the whole workspace's
//! binaries and examples in release, built once by [`release_build`], then
//! started from `target/release/` directly. Building per package (or
//! `cargo run -p`) would resolve the dependency features anew each time and
//! rebuild half the tree between two benchmarks. The per-session sidecars
//! (ambient-mcp, credential-entrypoint) are measured as their images ship
//! them: built in the sidecar profile ([`crate::images::profile`]).

mod all;
mod chart;
mod figure;
mod line_chart;
mod plot;
mod relist;

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

pub use all::all;

use crate::{USAGE, cargo, root, run};

/// Set to a directory of already built binaries and examples (e.g.
/// `target/debug`), the benchmarks run those instead of building in release:
/// a smoke run of the benchmarks' plumbing on a machine too busy for a
/// release build. Its figures say nothing about the release binaries.
const BIN_DIR_ENV: &str = "AMBIENT_BENCH_BIN_DIR";

fn prebuilt() -> Option<PathBuf> {
    std::env::var_os(BIN_DIR_ENV).map(PathBuf::from)
}

/// Builds every binary and example of the workspace in release, once per
/// invocation of cargo (a no-op when nothing changed), and returns the
/// directory they are in ([`BIN_DIR_ENV`] instead when set).
pub fn release_build() -> Result<PathBuf> {
    if let Some(dir) = prebuilt() {
        eprintln!(
            "xtask: {BIN_DIR_ENV}: running the binaries of {} (no release build)",
            dir.display()
        );
        return Ok(dir);
    }
    run(cargo().args([
        "build",
        "--release",
        "--quiet",
        "--workspace",
        "--bins",
        "--examples",
    ]))?;
    Ok(crate::demo::target_dir().join("release"))
}

/// `cargo xtask bench <name> [SECONDS|SESSIONS]` (`relist` alone or with
/// `--full`: the relist series, [`relist`]).
pub fn bench(extra: &[String]) -> Result<()> {
    let Some(name) = extra.first() else {
        bail!("bench needs a name\n\n{USAGE}");
    };
    let number = |default: &str, what: &str| -> Result<String> {
        let value = extra.get(1).map_or(default, String::as_str);
        value
            .parse::<u64>()
            .with_context(|| format!("{what} must be a number, got {value:?}"))?;
        Ok(value.to_owned())
    };
    let out = root().join("target/bench").join(format!("{name}.json"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let example = |release: &PathBuf, name: &str| {
        let mut cmd = Command::new(release.join("examples").join(name));
        cmd.current_dir(root());
        cmd
    };
    match name.as_str() {
        "token-exchange" => {
            let seconds = number("10", "SECONDS")?;
            let release = release_build()?;
            run(example(&release, "token_exchange_bench")
                .args(["--seconds", &seconds, "--out"])
                .arg(&out))
        }
        "session-tokens" => {
            let seconds = number("5", "SECONDS")?;
            let release = release_build()?;
            run(example(&release, "session_token_bench")
                .args(["--seconds", &seconds, "--out"])
                .arg(&out))
        }
        "relist" if extra.len() == 1 || extra[1] == "--full" => {
            relist::run_series(&out, extra.get(1).is_some())
        }
        "relist" => {
            let sessions = number("10000", "SESSIONS")?;
            let release = release_build()?;
            run(example(&release, "relist_bench")
                .args(["--sessions", &sessions, "--devserver"])
                .arg(release.join("ambient-devserver"))
                .arg("--out")
                .arg(&out))
        }
        "reconcile" => crate::reconcile_bench::run(&out, &extra[1..]),
        "runner-messages" => {
            let seconds = number("10", "SECONDS")?;
            let release = release_build()?;
            run(example(&release, "runner_messages_bench")
                .arg("--devserver")
                .arg(release.join("ambient-devserver"))
                .args(["--seconds", &seconds, "--out"])
                .arg(&out))
        }
        "gateway" => {
            let seconds = number("5", "SECONDS")?;
            let release = release_build()?;
            run(example(&release, "gateway_bench")
                .arg("--devserver")
                .arg(release.join("ambient-devserver"))
                .args(["--seconds", &seconds, "--out"])
                .arg(&out))
        }
        "mcp-sidecar" | "mcp" => {
            let release = release_build()?;
            let sidecars = match prebuilt() {
                Some(dir) => dir,
                None => crate::images::build_sidecars()?,
            };
            let out = root().join("target/bench/mcp-sidecar.json");
            run(example(&release, "mcp_bench")
                .arg("--bin-dir")
                .arg(&release)
                .arg("--sidecar")
                .arg(sidecars.join("ambient-mcp"))
                .arg("--out")
                .arg(&out))
        }
        "credential-bridge" => {
            let release = release_build()?;
            let sidecars = match prebuilt() {
                Some(dir) => dir,
                None => crate::images::build_sidecars()?,
            };
            let mcp_proxy = bench_mcp_proxy()?;
            let mut cmd = example(&release, "bridge_bench");
            if let Some(kib) = ambient_mcp_idle_rss_kib() {
                cmd.args(["--ambient-mcp-rss-kib", &kib.to_string()]);
            }
            run(cmd
                .arg("--bin-dir")
                .arg(&release)
                .arg("--sidecar")
                .arg(sidecars.join("credential-entrypoint"))
                .arg("--mcp-proxy")
                .arg(&mcp_proxy)
                .arg("--out")
                .arg(&out))
        }
        other => bail!(
            "unknown benchmark {other:?} (known: token-exchange, session-tokens, relist, runner-messages, gateway, mcp-sidecar, credential-bridge, reconcile, all)"
        ),
    }
}

/// The PyPI `mcp-proxy` release compared with: pinned, so that a new
/// release does not move the comparison between two runs.
const MCP_PROXY: &str = "mcp-proxy==0.13.0";

/// ambient-mcp's idle RSS from the last `bench mcp-sidecar` (`bench all` runs
/// it first), for the per-session memory of `bench credential-bridge`.
fn ambient_mcp_idle_rss_kib() -> Option<u64> {
    let text = std::fs::read_to_string(root().join("target/bench/mcp-sidecar.json")).ok()?;
    let report: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mib = report["figures"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == "idle RSS")?["value"]
        .as_f64()?;
    Some((mib * 1024.0).round() as u64)
}

/// PyPI `mcp-proxy` ([`MCP_PROXY`]), the reference images' bridge, in a
/// virtualenv of its own under `target/` (created once per pinned version)
/// for `bench credential-bridge` to compare with.
fn bench_mcp_proxy() -> Result<PathBuf> {
    let venv = root().join(format!(
        "target/bench-venv-{}",
        MCP_PROXY.replace("==", "-")
    ));
    let proxy = venv.join("bin/mcp-proxy");
    if !proxy.exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(Command::new(&python).args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/python")).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            MCP_PROXY,
        ]))
        .context("installing mcp-proxy from PyPI")?;
    }
    Ok(proxy)
}
