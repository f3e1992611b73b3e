//! `cargo xtask build-images`: one OCI image per daemon, without a container
//! engine. Each daemon is release-built, then its binary, the shared
//! libraries it links (found with the loader, never listed by hand), the CA
//! bundle, `/etc/passwd`/`/etc/group` with the non-root user and a writable
//! `/tmp` become one deterministic layer. Output per image: an OCI layout
//! `<out>/<name>/` and an archive `<out>/<name>.tar` for `podman load` /
//! `docker load`; `--push` uploads over the OCI distribution API.

mod http;
mod layer;
mod oci;
mod podman;
pub mod profile;
mod push;
mod registry;
mod serve;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root};
use layer::NONROOT;
use oci::{Image, Spec};
use profile::Profile;

pub use podman::test_images;

/// A daemon we ship: its image name, the workspace package and binary that
/// make it, the ports it serves, and environment the image sets.
#[derive(Debug)]
pub struct Daemon {
    pub name: &'static str,
    pub package: &'static str,
    pub binary: &'static str,
    pub ports: &'static [u16],
    pub env: &'static [&'static str],
    /// Layered onto the third-party image given with `--base`.
    pub wraps_base: bool,
    /// How its binary is built: once per cluster or once per session.
    pub profile: &'static Profile,
}

/// Every daemon image (wire.md §4 for the ports).
pub const DAEMONS: &[Daemon] = &[
    Daemon {
        name: "ambient-control-plane",
        package: "ambient-control-plane",
        binary: "ambient-control-plane",
        ports: &[8080, 8081],
        env: &[],
        wraps_base: false,
        profile: &profile::DAEMON,
    },
    Daemon {
        name: "ambient-token-server",
        package: "ambient-token-server",
        binary: "ambient-token-server",
        ports: &[8080],
        env: &["TOKEN_SERVER_LISTEN=0.0.0.0:8080"],
        wraps_base: false,
        profile: &profile::DAEMON,
    },
    Daemon {
        name: "ambient-mcp",
        package: "ambient-mcp",
        binary: "ambient-mcp",
        ports: &[8090],
        env: &[],
        wraps_base: false,
        profile: &profile::SIDECAR,
    },
    Daemon {
        name: "credential-entrypoint",
        package: "credential-entrypoint",
        binary: "credential-entrypoint",
        ports: &[],
        env: &[],
        wraps_base: true,
        profile: &profile::SIDECAR,
    },
    Daemon {
        name: "ambient-runner-client",
        package: "ambient-runner-client",
        binary: "ambient-runner-client",
        ports: &[],
        env: &[],
        wraps_base: false,
        profile: &profile::DAEMON,
    },
    Daemon {
        name: "ambient-devserver",
        package: "ambient-devserver",
        binary: "ambient-devserver",
        ports: &[8000, 9000],
        env: &[
            "AMBIENT_DEVSERVER_HTTP_LISTEN=0.0.0.0:8000",
            "AMBIENT_DEVSERVER_GRPC_LISTEN=0.0.0.0:9000",
        ],
        wraps_base: false,
        profile: &profile::DAEMON,
    },
];

/// Options of `build-images`.
#[derive(Debug, Default)]
pub struct Options {
    pub out: Option<PathBuf>,
    pub push: Option<String>,
    pub tag: Option<String>,
    pub only: Vec<String>,
    pub base: Option<PathBuf>,
    /// The credential provider a `--base` image serves (its default command).
    pub provider: Option<String>,
}

impl Options {
    pub fn parse(args: &[String]) -> Result<Self> {
        let mut o = Self::default();
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .with_context(|| format!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--out" => o.out = Some(value()?.into()),
                "--push" => o.push = Some(value()?),
                "--tag" => o.tag = Some(value()?),
                "--only" => o.only.push(value()?),
                "--base" => o.base = Some(value()?.into()),
                "--provider" => {
                    let p = value()?;
                    provider_command(&p)?;
                    o.provider = Some(p);
                }
                other => bail!("build-images: unknown option {other:?}"),
            }
        }
        for name in &o.only {
            if !DAEMONS.iter().any(|d| d.name == name) {
                let known: Vec<_> = DAEMONS.iter().map(|d| d.name).collect();
                bail!(
                    "--only {name:?}: not a daemon (known: {})",
                    known.join(", ")
                );
            }
        }
        Ok(o)
    }
}

/// What `--provider P` makes a credential image's default command: our
/// bridge (`--serve-mcp` on P's sidecar port, wire.md §4) in front of the
/// base image's entrypoint, so the runner finds `/sse` whatever the
/// server's own HTTP transports are; for kubeconfig also the server's
/// arguments (kubernetes-mcp-server in its stdio mode, on the kubeconfig
/// the entrypoint writes; its `--port` listener serves no `/sse` from
/// 0.0.67 on). Returns the entrypoint's arguments, the port and the `Cmd`.
pub fn provider_command(provider: &str) -> Result<(Vec<String>, u16, Option<Vec<String>>)> {
    let port = match provider {
        "github" => 8091,
        "jira" => 8092,
        "kubeconfig" => 8093,
        "google" => 8094,
        "gitlab" => 8095,
        other => bail!("--provider {other:?}: expected github, jira, kubeconfig, google or gitlab"),
    };
    let cmd = (provider == "kubeconfig").then(|| {
        [
            "--disable-multi-cluster",
            "--kubeconfig",
            "/tmp/.ambient_kubeconfig",
        ]
        .map(String::from)
        .to_vec()
    });
    Ok((vec!["--serve-mcp".into(), format!(":{port}")], port, cmd))
}

/// One built image, as `build-images` reports and `test-images` uses it.
#[derive(Debug)]
pub struct Built {
    pub name: &'static str,
    pub binary: &'static str,
    pub layout: PathBuf,
    pub archive: PathBuf,
    pub repo_tag: String,
    pub manifest_digest: String,
    /// Every layer's compressed size: what a pull downloads.
    pub compressed_bytes: usize,
}

/// `cargo xtask build-images`.
pub fn build_images(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let built = build(&opts)?;
    if let Some(registry) = &opts.push {
        let tag = tag(&opts)?;
        let out = out_dir(&opts);
        for b in &built {
            let image = Image::read_layout(&out.join(b.name))?;
            let reference = push::push(&image, registry, b.name, &tag)?;
            println!("{:<24} pushed {reference}", b.name);
        }
    }
    Ok(())
}

fn out_dir(opts: &Options) -> PathBuf {
    opts.out
        .clone()
        .unwrap_or_else(|| root().join("target/images"))
}

fn tag(opts: &Options) -> Result<String> {
    match &opts.tag {
        Some(t) => Ok(t.clone()),
        None => Ok(workspace()?.version),
    }
}

/// Builds and assembles the selected images into `--out`.
pub fn build(opts: &Options) -> Result<Vec<Built>> {
    let ws = workspace()?;
    let out = out_dir(opts);
    std::fs::create_dir_all(&out)?;
    let tag = tag(opts)?;
    let selected = select(opts, &ws)?;
    if selected.is_empty() {
        return Ok(Vec::new());
    }
    // Only the profiles of the selected daemons (a sidecar build is minutes).
    for profile in [&profile::DAEMON, &profile::SIDECAR] {
        if selected.iter().any(|d| d.profile.name == profile.name) {
            build_profile(profile, &ws)?;
        }
    }
    let base = match &opts.base {
        Some(dir) => Some(
            Image::read_layout(dir)
                .with_context(|| format!("reading the base layout {}", dir.display()))?,
        ),
        None => None,
    };
    let labels = labels(&ws);
    let mut built = Vec::new();
    for d in selected {
        let binary = d.profile.dir(&ws.target_dir).join(d.binary);
        let mut spec = Spec {
            env: d.env.iter().map(|e| e.to_string()).collect(),
            ports: d.ports.to_vec(),
            labels: labels.clone(),
            created: ws.commit_time.clone(),
            ..Spec::default()
        };
        spec.labels
            .insert("org.opencontainers.image.title".into(), d.name.into());
        let image = if d.wraps_base {
            let (tree, mut command) = layer::private_rootfs(&binary, d.binary)?;
            if let Some(p) = &opts.provider {
                let (args, port, cmd) = provider_command(p)?;
                command.extend(args);
                spec.ports = vec![port];
                spec.env.push(format!("CREDENTIAL_PROVIDER={p}"));
                spec.cmd = cmd;
            }
            spec.entrypoint = command;
            Image::assemble(&spec, &tree, base.as_ref())?
        } else {
            let tree = layer::daemon_rootfs(&binary, d.binary)?;
            spec.entrypoint = vec![format!("/usr/local/bin/{}", d.binary)];
            spec.user = Some(format!("{NONROOT}:{NONROOT}"));
            spec.env.insert(0, "PATH=/usr/local/bin".into());
            spec.env.push(format!("SSL_CERT_FILE={}", layer::CA_BUNDLE));
            spec.env.push("HOME=/home/nonroot".into());
            Image::assemble(&spec, &tree, None)?
        };
        built.push(write(d, &image, &out, &tag)?);
    }
    Ok(built)
}

/// Builds every daemon of `profile` in one build, whatever is selected:
/// features are unified over the packages built together, so building
/// fewer could change the code they share, and so a binary and its digest.
/// Returns the directory of the binaries.
fn build_profile(profile: &Profile, ws: &Workspace) -> Result<PathBuf> {
    profile.build(
        DAEMONS
            .iter()
            .filter(|d| d.profile.name == profile.name && ws.binaries.contains_key(d.package))
            .map(|d| d.package),
    )?;
    Ok(profile.dir(&ws.target_dir))
}

/// The per-session sidecars exactly as their images ship them (for the
/// benchmarks that measure them); returns the directory of the binaries.
pub fn build_sidecars() -> Result<PathBuf> {
    build_profile(&profile::SIDECAR, &workspace()?)
}

/// The daemons to build: those asked for whose package is in the workspace.
fn select(opts: &Options, ws: &Workspace) -> Result<Vec<&'static Daemon>> {
    let mut selected = Vec::new();
    for d in DAEMONS {
        if !opts.only.is_empty() && !opts.only.iter().any(|n| n == d.name) {
            continue;
        }
        match ws.binaries.get(d.package) {
            None => println!(
                "{:<24} skipped: package {} is not in this workspace",
                d.name, d.package
            ),
            Some(bins) if !bins.iter().any(|b| b == d.binary) => {
                bail!(
                    "package {} has no binary {} (it has {bins:?})",
                    d.package,
                    d.binary
                )
            }
            Some(_) if d.wraps_base && opts.base.is_none() => println!(
                "{:<24} skipped: needs --base LAYOUT (the third-party image it wraps)",
                d.name
            ),
            Some(_) => selected.push(d),
        }
    }
    Ok(selected)
}

/// Writes the layout (read back and verified) and the archive; one line.
fn write(d: &'static Daemon, image: &Image, out: &Path, tag: &str) -> Result<Built> {
    let layout = out.join(d.name);
    image.write_layout(&layout, tag)?;
    let verified = Image::read_layout(&layout)?;
    if verified.manifest.digest != image.manifest.digest {
        bail!(
            "{}: layout reads back as {}",
            d.name,
            verified.manifest.digest
        );
    }
    let repo_tag = format!("localhost/{}:{tag}", d.name);
    let archive = out.join(format!("{}.tar", d.name));
    image.write_archive(&archive, &repo_tag)?;
    let ours = image.layers.last().map_or(0, |l| l.bytes.len());
    let total: usize = image.layers.iter().map(|l| l.bytes.len()).sum();
    let base_note = if image.layers.len() > 1 {
        format!(" ({} ours)", mib(ours))
    } else {
        String::new()
    };
    println!(
        "{:<24} {repo_tag}  {}  {} compressed{base_note}",
        d.name,
        image.manifest.digest,
        mib(total),
    );
    Ok(Built {
        name: d.name,
        binary: d.binary,
        layout,
        archive,
        repo_tag,
        manifest_digest: image.manifest.digest.clone(),
        compressed_bytes: total,
    })
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What `cargo metadata` and git say about the workspace.
#[derive(Debug)]
struct Workspace {
    binaries: BTreeMap<String, Vec<String>>,
    target_dir: PathBuf,
    version: String,
    repository: Option<String>,
    revision: String,
    commit_time: String,
}

fn workspace() -> Result<Workspace> {
    let out = cargo()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut binaries = BTreeMap::new();
    let mut version = None;
    let mut repository = None;
    for p in meta["packages"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default().to_owned();
        let bins = p["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "bin"))
            })
            .filter_map(|t| t["name"].as_str().map(String::from))
            .collect();
        if name == "xtask" {
            version = p["version"].as_str().map(String::from);
            repository = p["repository"].as_str().map(String::from);
        }
        binaries.insert(name, bins);
    }
    let target_dir = meta["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata names no target directory")?;
    let git = |args: &[&str]| -> Option<String> {
        let o = Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let revision = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    Ok(Workspace {
        binaries,
        target_dir,
        version: version.unwrap_or_else(|| "0.0.0".into()),
        repository: repository.or_else(|| git(&["remote", "get-url", "origin"])),
        revision: if dirty {
            format!("{revision}-dirty")
        } else {
            revision
        },
        commit_time: git(&["log", "-1", "--format=%cI"])
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into()),
    })
}

fn labels(ws: &Workspace) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "org.opencontainers.image.revision".to_owned(),
            ws.revision.clone(),
        ),
        (
            "org.opencontainers.image.version".to_owned(),
            ws.version.clone(),
        ),
        (
            "org.opencontainers.image.created".to_owned(),
            ws.commit_time.clone(),
        ),
        (
            "org.opencontainers.image.licenses".to_owned(),
            "Apache-2.0".to_owned(),
        ),
    ]);
    let source = std::env::var("AMBIENT_IMAGE_SOURCE")
        .ok()
        .or_else(|| ws.repository.clone());
    match source {
        Some(s) => {
            labels.insert("org.opencontainers.image.source".into(), s);
        }
        None => eprintln!(
            "xtask: no repository URL (Cargo.toml `repository`, git remote `origin` or AMBIENT_IMAGE_SOURCE): images carry no source label"
        ),
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The package names `[package] name = ...` of every crate under crates/.
    fn packages() -> Result<Vec<String>> {
        let mut names = Vec::new();
        for dir in std::fs::read_dir(root().join("crates"))? {
            let manifest = std::fs::read_to_string(dir?.path().join("Cargo.toml"))?;
            let package = manifest.split("\n[").next().unwrap_or_default();
            if let Some(name) = package.lines().find_map(|l| l.strip_prefix("name = ")) {
                names.push(name.trim_matches('"').to_owned());
            }
        }
        Ok(names)
    }

    #[test]
    fn every_daemon_image_names_a_workspace_package() -> Result<()> {
        let packages = packages()?;
        for d in DAEMONS {
            assert!(
                packages.iter().any(|p| p == d.package),
                "{}: no package {} in {packages:?}",
                d.name,
                d.package
            );
        }
        Ok(())
    }

    #[test]
    fn a_provider_image_bridges_its_server_on_the_sidecar_port() -> Result<()> {
        let (args, port, cmd) = provider_command("kubeconfig")?;
        assert_eq!(
            (args, port),
            (vec!["--serve-mcp".into(), ":8093".into()], 8093)
        );
        assert_eq!(
            cmd,
            Some(
                [
                    "--disable-multi-cluster",
                    "--kubeconfig",
                    "/tmp/.ambient_kubeconfig"
                ]
                .map(String::from)
                .to_vec()
            ),
            "kubernetes-mcp-server in its stdio mode"
        );
        let (_, port, cmd) = provider_command("jira")?;
        assert_eq!((port, cmd), (8092, None), "the base image's own Cmd");
        assert!(provider_command("vertex").is_err());
        assert!(Options::parse(&["--provider".into(), "nope".into()]).is_err());
        Ok(())
    }
}
