//! `cargo xtask test-images`: proof that the images run. Builds every image
//! twice (the second time into another directory) and checks the digests are
//! equal, then loads each archive into Debian's daemonless `podman` and runs
//! it with `runc` and host networking (daemons.md): every binary's `--help`
//! exits 0 as uid 65532, and the devserver image serves `/api/ambient/v1/
//! projects` to its token (not without it) and stops cleanly on SIGTERM.
//! Then the devserver image is pushed to a local registry and pulled back,
//! and the devserver binary is layered onto another image (`--base`
//! placement) and run through its private loader.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::layer::private_rootfs;
use super::oci::{Image, Spec};
use super::registry::LocalRegistry;
use super::{Built, Options, build, push};
use crate::root;

const RUN_FLAGS: [&str; 9] = [
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
const DEV_TOKEN_ENV: &str = "AMBIENT_DEVSERVER_TOKEN";

pub fn test_images(args: &[String]) -> Result<()> {
    if !args.is_empty() {
        bail!("test-images takes no arguments");
    }
    let podman = Command::new("podman").arg("--version").output();
    if !podman.is_ok_and(|o| o.status.success()) {
        bail!("podman cannot run here: the image test needs it (apt-get install podman runc)");
    }
    let dir = root().join("target/images-test");
    let first = build(&Options {
        out: Some(dir.join("a")),
        tag: Some("test".into()),
        ..Options::default()
    })?;
    let second = build(&Options {
        out: Some(dir.join("b")),
        tag: Some("test".into()),
        ..Options::default()
    })?;
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
    for image in &first {
        let _loaded = Loaded::load(image)?;
        help_exits_zero(image)?;
        if image.name == "ambient-devserver" {
            devserver_serves(image)?;
        }
    }
    let devserver = first.iter().find(|b| b.name == "ambient-devserver");
    let base = first.iter().find(|b| b.name == "ambient-token-server");
    if let (Some(devserver), Some(base)) = (devserver, base) {
        push_and_pull(devserver, &dir)?;
        wrapped_onto_base(devserver, base, &dir)?;
    }
    if !first.iter().any(|b| b.name == "ambient-mcp") {
        println!("ambient-mcp              not tested: the package is not in this workspace");
    }
    Ok(())
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

fn podman(args: &[&str]) -> Result<Output> {
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

fn help_exits_zero(image: &Built) -> Result<()> {
    let mut args = RUN_FLAGS.to_vec();
    args.extend(["--rm", &image.repo_tag, "--help"]);
    let out = podman(&args)?;
    let help = String::from_utf8_lossy(&out.stdout);
    if !help.contains("Usage") {
        bail!("{} --help printed no usage: {help}", image.binary);
    }
    println!("{:<24} --help exits 0 in podman", image.name);
    Ok(())
}

/// A container removed on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.0])
            .output();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

fn devserver_serves(image: &Built) -> Result<()> {
    let name = format!("xtask-devserver-{}", std::process::id());
    let (http, grpc) = (free_port()?, free_port()?);
    let token = format!("test-{}", std::process::id());
    let http_env = format!("AMBIENT_DEVSERVER_HTTP_LISTEN=127.0.0.1:{http}");
    let grpc_env = format!("AMBIENT_DEVSERVER_GRPC_LISTEN=127.0.0.1:{grpc}");
    let mut args = RUN_FLAGS.to_vec();
    // The token reaches the container from podman's environment, not argv.
    args.extend([
        "-d",
        "--name",
        &name,
        "-e",
        &http_env,
        "-e",
        &grpc_env,
        "-e",
        DEV_TOKEN_ENV,
    ]);
    args.extend([image.repo_tag.as_str(), "--in-memory"]);
    let started = Command::new("podman")
        .args(&args)
        .env(DEV_TOKEN_ENV, &token)
        .output()
        .context("running podman")?;
    let container = Container(name);
    if !started.status.success() {
        bail!(
            "podman run failed: {}",
            String::from_utf8_lossy(&started.stderr).trim()
        );
    }
    let path = "/api/ambient/v1/projects";
    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, body) = loop {
        match get(http, path, Some(&token)) {
            Ok(answer) => break answer,
            Err(e) if Instant::now() > deadline => {
                let logs = podman(&["logs", &container.0])
                    .map(|o| o.stderr)
                    .unwrap_or_default();
                bail!(
                    "devserver image did not answer: {e}\n{}",
                    String::from_utf8_lossy(&logs)
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    if status != 200 || !body.contains("\"items\"") {
        bail!("GET {path} with the token answered {status}: {body}");
    }
    let (anonymous, _) = get(http, path, None)?;
    if anonymous != 401 {
        bail!("GET {path} without a token answered {anonymous}, want 401");
    }
    let pid = podman(&["inspect", "--format", "{{.State.Pid}}", &container.0])?;
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_owned();
    let status_file = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let uid = status_file
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|u| u.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    if uid.iter().any(|u| *u != "65532") {
        bail!("the devserver runs as uid {uid:?}, want 65532");
    }
    podman(&["stop", "-t", "10", &container.0])?;
    let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &container.0])?;
    let code = String::from_utf8_lossy(&code.stdout).trim().to_owned();
    if code != "0" {
        bail!("the devserver exited {code} on SIGTERM, want 0");
    }
    println!(
        "{:<24} serves {path} to its token (401 without), runs as uid 65532, exits 0 on SIGTERM",
        image.name
    );
    Ok(())
}

/// A plain HTTP/1.1 GET on loopback: (status, body).
fn get(port: u16, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP answer: {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
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

/// The `--base` placement: our binary, its libraries and loader under
/// /opt/ambient on top of another image, run through its private loader
/// (the command `--base` puts in front of the base image's entrypoint).
fn wrapped_onto_base(ours: &Built, base: &Built, dir: &std::path::Path) -> Result<()> {
    let binary = crate::images::binary_path(ours.binary)?;
    let (tree, command) = private_rootfs(&binary, ours.binary)?;
    let spec = Spec {
        entrypoint: command.clone(),
        created: "1970-01-01T00:00:00Z".into(),
        ..Spec::default()
    };
    let image = Image::assemble(&spec, &tree, Some(&Image::read_layout(&base.layout)?))?;
    let repo_tag = "localhost/xtask-wrapped:test".to_owned();
    let archive = dir.join("wrapped.tar");
    image.write_archive(&archive, &repo_tag)?;
    let wrapped = Built {
        name: "wrapped",
        binary: ours.binary,
        layout: dir.join("wrapped"),
        archive,
        repo_tag,
        manifest_digest: image.manifest.digest.clone(),
    };
    let _loaded = Loaded::load(&wrapped)?;
    let mut entrypoint = command;
    entrypoint.push("--help".into());
    let entrypoint = serde_json::to_string(&entrypoint)?;
    let mut args = RUN_FLAGS.to_vec();
    args.extend(["--rm", "--entrypoint", &entrypoint, &wrapped.repo_tag]);
    let out = podman(&args)?;
    if !String::from_utf8_lossy(&out.stdout).contains("Usage") {
        bail!("{} on a base image printed no usage", ours.binary);
    }
    println!(
        "{:<24} runs from /opt/ambient on top of the {} image (the --base placement)",
        ours.name, base.name
    );
    Ok(())
}
