//! `cargo xtask test` and `cargo xtask lint`: the one test command and the
//! lints, over the same feature set.
//!
//! `test` prepares the interop virtualenv under `target/` (once), builds every
//! workspace binary (the black-box tests start them), runs the suite with the
//! interop tests on (nextest, whose `.config/nextest.toml` gives every test a
//! deadline), the doc tests once, and finally scans every daemon log the suite
//! captured for every secret the tests created (`integration_tests::scan_logs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

/// The virtualenv: created once under `target/`, reused while its pinned
/// requirements are unchanged.
pub(crate) fn interop_python() -> Result<PathBuf> {
    let root = root();
    venv(
        &root.join("target/interop-venv"),
        &root.join("xtask/interop-requirements.txt"),
    )
}

/// A virtualenv at `dir` holding exactly the pinned `requirements`:
/// created once, reinstalled when the file changes. Returns its python.
pub(crate) fn venv(dir: &Path, requirements: &Path) -> Result<PathBuf> {
    let python = dir.join("bin/python");
    let wanted = std::fs::read_to_string(requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = dir.join(".requirements");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if !python.exists() {
        run(Command::new(&system_python).args(["-m", "venv"]).arg(dir))
            .context("creating a virtualenv (needs python3 with venv and ensurepip)")?;
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(requirements))
    .with_context(|| format!("installing {}", requirements.display()))?;
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `pkg/interop` for every workspace package that has an `interop` feature,
/// read from `cargo metadata` so a new crate's interop tests join by
/// declaring the feature.
fn interop_features() -> Result<String> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    let mut features: Vec<String> = meta["packages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|p| p["features"].get("interop").is_some())
        .filter_map(|p| p["name"].as_str())
        .map(|name| format!("{name}/interop"))
        .collect();
    features.sort();
    Ok(features.join(","))
}

pub fn lint() -> Result<()> {
    let features = interop_features()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo()
        .args(["clippy", "--workspace", "--all-targets", "--locked"])
        .args(["--features", &features, "--", "-D", "warnings"]))
}

pub fn test(extra: &[String]) -> Result<()> {
    let python = interop_python()?;
    let servers = crate::servers::prepare()?;
    let features = interop_features()?;
    // Black-box tests start the real binaries: build them all first. Every
    // target, with the test build's features: the same feature resolution as
    // the test run, so no dependency is compiled twice.
    run(cargo().args([
        "build",
        "--workspace",
        "--all-targets",
        "--features",
        &features,
    ]))?;

    let artifacts = root().join("target/test-artifacts");
    if artifacts.exists() {
        std::fs::remove_dir_all(&artifacts)
            .with_context(|| format!("clearing {}", artifacts.display()))?;
    }
    std::fs::create_dir_all(&artifacts)?;

    let mut suite = cargo();
    let nextest = has_nextest();
    if nextest {
        suite.args(["nextest", "run", "--workspace"]);
    } else {
        eprintln!("xtask: cargo-nextest not found; running cargo test, without per-test deadlines");
        suite.args(["test", "--workspace"]);
    }
    suite
        .args(["--features", &features, "--no-fail-fast"])
        .args(extra)
        .env("AMBIENT_TEST_PYTHON", &python)
        .env(crate::servers::VAR, &servers)
        .env(integration_tests::ARTIFACTS_VAR, &artifacts);
    let outcome = run(&mut suite);
    // `cargo test` ran the doc tests already; nextest does not run them.
    let outcome = outcome.and_then(|()| {
        if nextest {
            run(cargo().args(["test", "--workspace", "--doc", "--features", &features]))
        } else {
            Ok(())
        }
    });
    // The leak scan runs whatever the outcome: a failed test's logs count too.
    let scan = scan_for_secrets(&artifacts);
    outcome?;
    scan
}

fn scan_for_secrets(artifacts: &std::path::Path) -> Result<()> {
    let (logs, secrets, leaks) = integration_tests::scan_logs(artifacts)
        .with_context(|| format!("scanning {}", artifacts.display()))?;
    eprintln!("xtask: scanned {logs} daemon logs for {secrets} secrets the suite created");
    if leaks.is_empty() {
        return Ok(());
    }
    for leak in &leaks {
        eprintln!("xtask: LEAK {leak}");
    }
    bail!(
        "{} log lines contain a secret the tests created",
        leaks.len()
    )
}
