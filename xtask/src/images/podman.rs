//! `cargo xtask test-images`: proof that the images run. Builds every image
//! twice (the second time into another directory) and checks the digests are
//! equal; `credential-entrypoint` is layered onto our runner-client image as
//! the third-party base (the `--base` placement). Then it loads each archive
//! into Debian's daemonless `podman` and runs it with `runc` and host
//! networking (daemons.md): every binary's `--help` exits 0 as uid 65532;
//! the devserver, token server and ambient-mcp images serve together
//! (`serve`); the devserver image is pushed to a local registry and pulled
//! back by digest.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

use super::oci::Image;
use super::registry::LocalRegistry;
use super::{Built, Options, build, push, serve};
use crate::root;

pub const RUN_FLAGS: [&str; 9] = [
    "--runtime",
    "runc",
    "run",
    "--cgroup-manager=cgroupfs",
    "--network=host",
    "--ulimit",
    "nofile=4096:4096",
    "--ulimit",
    "nproc=1000:1000",
];

/// The non-root user every image runs as (its config's `User`).
const USER: &str = "65532:65532";

pub fn test_images(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("test-images takes no arguments");
    }
    podman_works()?;
    let dir = root().join("target/images-test");
    let first = build_all(&dir.join("a"))?;
    let second = build_all(&dir.join("b"))?;
    for (a, b) in first.iter().zip(&second) {
        if a.manifest_digest != b.manifest_digest {
            bail!(
                "{} is not reproducible: {} then {}",
                a.name,
                a.manifest_digest,
                b.manifest_digest
            );
        }
    }
    println!(
        "reproducible: {} images, same digests on a second assembly",
        first.len()
    );
    let mut loaded = Vec::new();
    for image in &first {
        loaded.push(Loaded::load(image)?);
        help_exits_zero(image)?;
    }
    let find = |name: &str| {
        first
            .iter()
            .find(|b| b.name == name)
            .with_context(|| format!("no {name} image was built"))
    };
    serve::devserver_serves(find("ambient-devserver")?)?;
    serve::mcp_answers(
        find("ambient-mcp")?,
        find("ambient-token-server")?,
        find("ambient-devserver")?,
        &dir,
    )?;
    push_and_pull(find("ambient-devserver")?, &dir)?;
    println!("images (compressed, what a pull downloads):");
    for image in &first {
        println!(
            "  {:<24} {:>8.1} MiB",
            image.name,
            image.compressed_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}

/// Fails with one clear line when podman is missing or cannot run a container.
fn podman_works() -> Result<()> {
    let version = Command::new("podman").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("podman cannot run here: the image test needs it (apt-get install podman runc)");
    }
    let runc = Command::new("runc").arg("--version").output();
    if !runc.is_ok_and(|o| o.status.success()) {
        bail!("runc cannot run here: the image test needs it (apt-get install runc)");
    }
    Ok(())
}

/// Every image into `out`: first the five daemons, then credential-entrypoint
/// on top of the runner-client image standing in for a third-party MCP server.
fn build_all(out: &Path) -> Result<Vec<Built>> {
    let mut built = build(&Options {
        out: Some(out.to_path_buf()),
        tag: Some("test".into()),
        ..Options::default()
    })?;
    let base = built
        .iter()
        .find(|b| b.name == "ambient-runner-client")
        .context("no ambient-runner-client image to use as a base")?
        .layout
        .clone();
    built.extend(build(&Options {
        out: Some(out.to_path_buf()),
        tag: Some("test".into()),
        only: vec!["credential-entrypoint".into()],
        base: Some(base),
        ..Options::default()
    })?);
    // Every daemon or nothing: an image skipped here would go untested.
    let missing: Vec<&str> = super::DAEMONS
        .iter()
        .map(|d| d.name)
        .filter(|n| !built.iter().any(|b| b.name == *n))
        .collect();
    if !missing.is_empty() {
        bail!("not built, so not tested: {}", missing.join(", "));
    }
    Ok(built)
}

/// An image loaded into podman's store, removed again on drop.
struct Loaded<'a>(&'a Built);

impl<'a> Loaded<'a> {
    fn load(image: &'a Built) -> Result<Self> {
        let out = podman(&["load", "-i", &image.archive.display().to_string()])?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !text.contains(&image.repo_tag) {
            bail!("podman load did not report {}: {text}", image.repo_tag);
        }
        Ok(Self(image))
    }
}

impl Drop for Loaded<'_> {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rmi", "-f", &self.0.repo_tag])
            .output();
    }
}

pub fn podman(args: &[&str]) -> Result<Output> {
    let out = Command::new("podman")
        .args(args)
        .output()
        .with_context(|| format!("running podman {args:?}"))?;
    if !out.status.success() {
        bail!(
            "podman {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `--help` exits 0 and prints usage, run as the image's user, which must be
/// 65532. An image on a base runs our binary without the base's command.
fn help_exits_zero(image: &Built) -> Result<()> {
    let config: serde_json::Value =
        serde_json::from_slice(&Image::read_layout(&image.layout)?.config.bytes)?;
    let user = config["config"]["User"].as_str().unwrap_or("root");
    if user != USER {
        bail!("{} runs as user {user:?}, want {USER}", image.name);
    }
    let entrypoint = ours_only(image, &config)?;
    let mut args = RUN_FLAGS.to_vec();
    args.extend([
        "--rm",
        "--entrypoint",
        &entrypoint,
        &image.repo_tag,
        "--help",
    ]);
    let out = podman(&args)?;
    let help = String::from_utf8_lossy(&out.stdout);
    if !help.contains("Usage") {
        bail!("{} --help printed no usage: {help}", image.binary);
    }
    println!("{:<24} --help exits 0 in podman as uid 65532", image.name);
    Ok(())
}

/// The image's entrypoint (JSON) up to and including our binary: for an
/// image on a base, the base's own command follows it and is left out.
fn ours_only(image: &Built, config: &serde_json::Value) -> Result<String> {
    let entrypoint: Vec<&str> = config["config"]["Entrypoint"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let end = entrypoint
        .iter()
        .position(|e| e.ends_with(&format!("/{}", image.binary)))
        .with_context(|| format!("{} is not in the entrypoint {entrypoint:?}", image.binary))?;
    Ok(serde_json::to_string(&entrypoint[..=end])?)
}

/// A detached container, removed on drop.
pub struct Container(pub String);

impl Container {
    /// `podman run -d` of `image` with `args`; each environment variable
    /// reaches the container from podman's own environment (`-e NAME`), so
    /// no value (tokens, keys) shows in podman's argv.
    pub fn start(
        image: &Built,
        role: &str,
        env: &[(&str, &str)],
        extra: &[&str],
        args: &[&str],
    ) -> Result<Self> {
        let name = format!("xtask-{role}-{}", std::process::id());
        let mut argv = RUN_FLAGS.to_vec();
        argv.extend(["-d", "--name", &name]);
        for (k, _) in env {
            argv.extend(["-e", k]);
        }
        argv.extend(extra);
        argv.push(&image.repo_tag);
        argv.extend(args);
        let started = Command::new("podman")
            .args(&argv)
            .envs(env.iter().copied())
            .output()
            .context("running podman")?;
        let container = Self(name);
        if !started.status.success() {
            bail!(
                "podman run of {} failed: {}",
                image.name,
                String::from_utf8_lossy(&started.stderr).trim()
            );
        }
        Ok(container)
    }

    /// What the container wrote to stderr so far (its log).
    pub fn logs(&self) -> String {
        podman(&["logs", &self.0])
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.0])
            .output();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// `--push` to a real registry, then podman pulls it back by digest.
fn push_and_pull(image: &Built, dir: &std::path::Path) -> Result<()> {
    let registry = LocalRegistry::start(dir.join("registry"))?;
    let layout = Image::read_layout(&image.layout)?;
    let base = format!("http://127.0.0.1:{}/test", registry.port);
    let pushed = push::push(&layout, &base, image.name, "pushed")?;
    let by_digest = format!(
        "127.0.0.1:{}/test/{}@{}",
        registry.port, image.name, image.manifest_digest
    );
    podman(&["pull", "--quiet", "--tls-verify=false", &by_digest])?;
    let pulled = Pulled(by_digest);
    let mut args = RUN_FLAGS.to_vec();
    args.extend(["--rm", &pulled.0, "--help"]);
    podman(&args)?;
    println!(
        "{:<24} pushed to a local registry ({pushed}), pulled back by digest, runs",
        image.name
    );
    Ok(())
}

struct Pulled(String);

impl Drop for Pulled {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}
