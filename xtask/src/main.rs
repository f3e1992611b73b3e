//! Project automation (`cargo xtask <command>`), in Rust so nothing rots in shell.
//!
//! - `test`: the one test command. Prepares the interop virtualenv under
//!   `target/` (once), then runs the whole suite with the interop tests on,
//!   plus doc tests.
//! - `fuzz [SECONDS]`: a short bounded run of every fuzz target (needs `cargo fuzz`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  test            prepare the interop virtualenv (once) and run every test
  fuzz [SECONDS]  run each fuzz target for SECONDS (default 30); needs cargo-fuzz";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    match cmd.as_str() {
        "test" => test(&rest),
        "fuzz" => fuzz(&rest),
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

/// The interop virtualenv: created once under `target/`, reused while its
/// pinned requirements are unchanged.
fn interop_python() -> Result<PathBuf> {
    let root = root();
    let venv = root.join("target/interop-venv");
    let python = venv.join("bin/python");
    let requirements = root.join("xtask/interop-requirements.txt");
    let wanted =
        std::fs::read_to_string(&requirements).context("reading xtask/interop-requirements.txt")?;
    let stamp = venv.join(".requirements");
    if python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(python);
    }
    let system_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    if !python.exists() {
        run(Command::new(&system_python).args(["-m", "venv"]).arg(&venv))
            .context("creating the interop virtualenv (needs python3 with venv)")?;
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
        .arg(&requirements))
    .context("installing the interop requirements")?;
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

fn test(extra: &[String]) -> Result<()> {
    let python = interop_python()?;
    // Black-box tests start the real binaries: build them all first.
    run(cargo().args(["build", "--workspace", "--bins"]))?;
    let features = "ambient-protocol/interop";
    let mut suite = cargo();
    if has_nextest() {
        suite.args([
            "nextest",
            "run",
            "--workspace",
            "--features",
            features,
            "--no-fail-fast",
        ]);
    } else {
        suite.args([
            "test",
            "--workspace",
            "--features",
            features,
            "--no-fail-fast",
        ]);
    }
    suite.args(extra).env("AMBIENT_TEST_PYTHON", &python);
    run(&mut suite)?;
    run(cargo().args(["test", "--workspace", "--doc", "--features", features]))?;
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
    let list = cargo()
        .args(["fuzz", "list"])
        .output()
        .context("cargo fuzz is not installed (cargo install cargo-fuzz)")?;
    if !list.status.success() {
        bail!(
            "`cargo fuzz list` failed; is cargo-fuzz installed and a nightly toolchain available?"
        );
    }
    for target in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|l| !l.is_empty())
    {
        run(cargo().args([
            "fuzz",
            "run",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
        ]))?;
    }
    Ok(())
}
