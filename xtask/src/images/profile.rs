//! The two cargo profiles images are built with, defined here rather than in
//! `Cargo.toml` so that `cargo build --release` stays what developers and
//! benchmarks expect:
//!
//! - **daemon** (`target/image/`): release without debug info, for the
//!   daemons that run once per cluster (control plane, token server,
//!   devserver);
//! - **sidecar** (`target/sidecar/`): for the binaries that run once per
//!   session pod (ambient-mcp, credential-entrypoint), where every MiB of
//!   resident memory is paid by every session: whole-program (fat) LTO in a
//!   single codegen unit, optimised for size. aws-lc keeps full optimisation
//!   for its C code (RSA and the random generator). On glibc Linux they are
//!   linked with packed relative relocations (DT_RELR, glibc ≥ 2.36): the
//!   ~31 000 relative relocations of a position-independent binary take a
//!   few KiB instead of 750 KiB that the loader reads at every start and
//!   that stay resident. The images carry the build host's glibc (the
//!   credential entrypoint its own private copy and loader), so the
//!   requirement is met wherever they run. Slower to build (a few minutes),
//!   so only these binaries use it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::{cargo, run};

/// A build profile: its name (and so its directory under `target/`) and
/// its settings on top of `release`.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    settings: &'static [&'static str],
    /// Linker arguments on glibc Linux (the host is the target).
    gnu_link_args: &'static [&'static str],
}

/// Per-cluster daemons.
pub const DAEMON: Profile = Profile {
    name: "image",
    settings: &["debug=false", "strip=\"debuginfo\""],
    gnu_link_args: &[],
};

/// Per-session sidecars.
pub const SIDECAR: Profile = Profile {
    name: "sidecar",
    settings: &[
        "debug=false",
        "strip=\"debuginfo\"",
        "lto=\"fat\"",
        "codegen-units=1",
        "opt-level=\"s\"",
        "package.aws-lc-sys.opt-level=3",
    ],
    gnu_link_args: &["-Wl,-z,pack-relative-relocs"],
};

impl Profile {
    /// `cargo build --locked --bins` in this profile for `packages`, all in
    /// one build: features are unified over the packages built together, so
    /// building fewer could change the shared code and so an image digest.
    pub fn build<'a>(&self, packages: impl IntoIterator<Item = &'a str>) -> Result<()> {
        let mut build = cargo();
        build.args(["build", "--locked", "--bins"]);
        self.apply(&mut build);
        for p in packages {
            build.args(["-p", p]);
        }
        run(&mut build)
    }

    fn apply(&self, cmd: &mut Command) {
        cmd.arg("--config")
            .arg(format!("profile.{}.inherits=\"release\"", self.name));
        for s in self.settings {
            cmd.arg("--config")
                .arg(format!("profile.{}.{s}", self.name));
        }
        if cfg!(all(target_os = "linux", target_env = "gnu")) && !self.gnu_link_args.is_empty() {
            let flags: Vec<String> = self
                .gnu_link_args
                .iter()
                .map(|a| format!("\"-Clink-arg={a}\""))
                .collect();
            cmd.arg("--config")
                .arg(format!("build.rustflags=[{}]", flags.join(",")));
        }
        cmd.args(["--profile", self.name]);
    }

    /// Where this profile's binaries are, below the target directory.
    pub fn dir(&self, target_dir: &Path) -> PathBuf {
        target_dir.join(self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_scoped_to_the_profile_and_link_args_to_glibc() {
        for p in [&DAEMON, &SIDECAR] {
            let mut cmd = Command::new("cargo");
            p.apply(&mut cmd);
            let args: Vec<String> = cmd
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let configs: Vec<&String> = args
                .iter()
                .zip(args.iter().skip(1))
                .filter(|(flag, _)| *flag == "--config")
                .map(|(_, value)| value)
                .collect();
            let prefix = format!("profile.{}.", p.name);
            let scoped = configs.iter().filter(|c| c.starts_with(&prefix)).count();
            assert_eq!(scoped, p.settings.len() + 1, "{args:?}");
            let others: Vec<_> = configs.iter().filter(|c| !c.starts_with(&prefix)).collect();
            if p.gnu_link_args.is_empty() || !cfg!(all(target_os = "linux", target_env = "gnu")) {
                assert!(others.is_empty(), "{args:?}");
            } else {
                assert_eq!(others.len(), 1, "{args:?}");
                assert!(
                    others[0].starts_with("build.rustflags=[\"-Clink-arg="),
                    "{args:?}"
                );
            }
            assert_eq!(args[args.len() - 2..], ["--profile", p.name]);
        }
        assert_ne!(DAEMON.name, SIDECAR.name);
    }
}
