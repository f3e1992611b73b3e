//! The real third-party MCP servers of the credential sidecars, pinned,
//! for the real-server interop tests: installed once under
//! `target/interop-servers/` (like the interop virtualenv) and named to
//! the tests by `AMBIENT_TEST_SERVERS`.
//!
//! - `jira/`: a virtualenv with `xtask/interop-requirements-jira.txt`
//!   (mcp-atlassian, mcp-proxy);
//! - `google/`: one with `xtask/interop-requirements-google.txt`
//!   (workspace-mcp, mcp-proxy) — each needs `mcp<2`, the client
//!   virtualenv has `mcp` 2, and the two servers pin different stacks;
//! - `npm/`: `npm ci` of `xtask/interop-npm` (kubernetes-mcp-server's
//!   Linux binary, `@modelcontextprotocol/server-github`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{root, run};

/// The variable naming the directory to the tests.
pub const VAR: &str = "AMBIENT_TEST_SERVERS";

/// kubernetes-mcp-server's binary, under the directory [`prepare`] returns.
pub const KUBERNETES_MCP_SERVER: &str =
    "npm/node_modules/kubernetes-mcp-server-linux-amd64/bin/kubernetes-mcp-server-linux-amd64";

/// Installs what is missing or changed; returns `target/interop-servers`.
pub fn prepare() -> Result<PathBuf> {
    let root = root();
    let dir = root.join("target/interop-servers");
    for name in ["jira", "google"] {
        crate::suite::venv(
            &dir.join(name),
            &root.join(format!("xtask/interop-requirements-{name}.txt")),
        )?;
    }
    npm(&root.join("xtask/interop-npm"), &dir.join("npm"))?;
    Ok(dir)
}

/// `npm ci` of `source`'s package.json and lockfile in `dir`, again only
/// when either changed.
fn npm(source: &Path, dir: &Path) -> Result<()> {
    let mut wanted = String::new();
    for file in ["package.json", "package-lock.json"] {
        let text = std::fs::read_to_string(source.join(file))
            .with_context(|| format!("reading {}", source.join(file).display()))?;
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(file), &text)?;
        wanted.push_str(&text);
    }
    let stamp = dir.join(".installed");
    if dir.join("node_modules").exists()
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str())
    {
        return Ok(());
    }
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel", "error"])
        .current_dir(dir))
    .context("installing the npm interop servers (needs node and npm)")?;
    std::fs::write(&stamp, wanted)?;
    Ok(())
}
