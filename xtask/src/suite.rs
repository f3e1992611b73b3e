//! `cargo xtask test` and `cargo xtask lint`: the one test command and the
//! lints, over the same feature set.
//!
//! `test` prepares the interop virtualenv under `target/` (once), builds every
//! workspace binary (the black-box tests start them), runs the suite with the
//! interop tests on (nextest, whose `.config/nextest.toml` gives every test a
//! deadline), the doc tests once, and finally scans every daemon log the suite
//! captured for every secret the tests created (`integration_tests::scan_logs`)
//! and compares the Kubernetes API calls the fake API server allowed over the
//! whole suite with the control plane's rbac.yaml.

use std::collections::BTreeSet;
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
    let scan = scan_for_secrets(&artifacts, extra.is_empty());
    let rbac = if extra.is_empty() {
        rbac_matches_what_the_suite_used(&artifacts)
    } else {
        Ok(())
    };
    outcome?;
    scan?;
    rbac
}

/// rbac.yaml as (group, resource, verb) lines (`core` for the core group),
/// resourceNames aside.
fn rbac_yaml_accesses() -> Result<BTreeSet<String>> {
    let path = root().join("crates/control-plane/rbac.yaml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    };
    let mut out = BTreeSet::new();
    for scope in ["cluster", "namespace"] {
        for rule in doc[scope].as_array().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                let group = if group.is_empty() {
                    "core".to_owned()
                } else {
                    group
                };
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.insert(format!("{group} {resource} {verb}"));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The fake Kubernetes API authorises every request against rbac.yaml and
/// records each (group, resource, verb) it allowed: over the whole suite,
/// that must be exactly rbac.yaml. A grant no test needs is a grant the
/// control plane may not need either; a call no rule covers fails its test
/// already (403).
fn rbac_matches_what_the_suite_used(artifacts: &std::path::Path) -> Result<()> {
    let used = integration_tests::kube_accesses(artifacts)
        .with_context(|| format!("reading {}", artifacts.display()))?;
    let listed = rbac_yaml_accesses()?;
    let unused: Vec<&String> = listed.difference(&used).collect();
    let unlisted: Vec<&String> = used.difference(&listed).collect();
    eprintln!(
        "xtask: the suite used {} of the {} (group, resource, verb) grants of rbac.yaml",
        used.intersection(&listed).count(),
        listed.len()
    );
    if unused.is_empty() && unlisted.is_empty() {
        return Ok(());
    }
    for u in &unused {
        eprintln!("xtask: rbac.yaml grants {u}, which no test used");
    }
    for u in &unlisted {
        eprintln!("xtask: the suite used {u}, which rbac.yaml does not grant");
    }
    bail!("rbac.yaml and what the suite used differ")
}

/// The leak scan. A whole-suite run (`whole`: no test filter) that left no
/// log or recorded no secret scanned nothing: the recording broke, and a
/// scan of nothing must not pass.
fn scan_for_secrets(artifacts: &std::path::Path, whole: bool) -> Result<()> {
    let (logs, secrets, leaks) = integration_tests::scan_logs(artifacts)
        .with_context(|| format!("scanning {}", artifacts.display()))?;
    eprintln!("xtask: scanned {logs} daemon logs for {secrets} secrets the suite created");
    check_scanned(logs, secrets, whole)?;
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

/// Fails a whole-suite scan of no log or no secret (a filtered run may
/// start no daemon).
fn check_scanned(logs: usize, secrets: usize, whole: bool) -> Result<()> {
    if !whole {
        return Ok(());
    }
    if logs == 0 {
        bail!(
            "the leak scan found no log: the suite recorded none (is AMBIENT_TEST_ARTIFACTS passed on?)"
        );
    }
    if secrets == 0 {
        bail!("the leak scan found no secret to look for: the suite registered none");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_scanned;

    #[test]
    fn a_whole_suite_scan_of_nothing_fails() {
        assert!(check_scanned(0, 5, true).is_err());
        assert!(check_scanned(5, 0, true).is_err());
        assert!(check_scanned(5, 5, true).is_ok());
        assert!(check_scanned(0, 0, false).is_ok());
    }
}
