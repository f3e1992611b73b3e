//! `credential-entrypoint`: the entrypoint of a credential sidecar
//! (daemons.md, wire.md §5).
//!
//! It exchanges the session's token, fetches one third-party credential,
//! hands it to the command it wraps, keeps it fresh and supervises it:
//!
//! - [`cli`]: `credential-entrypoint [options] <command> [args...]`, every
//!   option with an environment variable;
//! - [`config`]: fail-closed validation into [`config::Settings`];
//! - [`fetch`]: the credential fetch (token fatal, metadata non-fatal, 10 s,
//!   1 MiB streaming limit, one retry after a 401);
//! - [`mapping`]: provider → environment variables and files;
//! - [`files`]: the private 0700 directory and atomic 0600 writes;
//! - [`child`]: the child in its own process group, its environment, its
//!   exit code;
//! - [`rotate`] and [`supervise`]: the refresh loop, graceful restarts,
//!   signal forwarding.
//!
//! Everything before the child starts fails closed: any error ends the
//! entrypoint with one line on stderr and a non-zero code, and the child
//! never runs.

pub mod bridge;
pub mod child;
pub mod cli;
pub mod config;
pub mod fetch;
pub mod files;
pub mod mapping;
pub mod rotate;
pub mod supervise;

use std::ffi::OsString;

use ambient_protocol::TokenExchanger;
use ambient_protocol::exchanger::ExchangeError;
use ambient_protocol::provider::Provider;

use crate::child::{BaseEnv, Child};
use crate::config::Settings;
use crate::fetch::{CredentialSource, FetchError};
use crate::files::WriteError;
use crate::mapping::Paths;
use crate::rotate::{RefreshError, Rotation};
use crate::supervise::{Policy, Supervisor};

/// Deny-Namespace config for the Kubernetes MCP server in MPP mode.
pub const MPP_CONFIG: &str =
    "[[denied_resources]]\ngroup = \"\"\nversion = \"v1\"\nkind = \"Namespace\"\n";

/// Why the child was not started. One line, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("token exchange failed: {0}")]
    Exchange(#[from] ExchangeError),
    #[error("{0}")]
    Refresh(#[from] RefreshError),
    #[error("{0}")]
    Write(#[from] WriteError),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot serve MCP on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

impl From<FetchError> for StartError {
    fn from(e: FetchError) -> Self {
        StartError::Refresh(RefreshError::Fetch(e))
    }
}

/// Runs the entrypoint: everything up to the child's start fails closed;
/// then the child is supervised and its exit code returned.
pub async fn run(settings: Settings) -> Result<i32, StartError> {
    let exchanger = TokenExchanger::new(settings.exchanger.clone())?;
    exchanger.start().await?;
    let rotation = Rotation {
        source: CredentialSource::new(
            &settings.api_url,
            &settings.credential_id,
            settings.provider,
        )?,
        exchanger,
        provider: settings.provider,
        paths: Paths {
            kubeconfig: settings.kubeconfig_path.clone(),
            private_dir: settings.files_dir.clone(),
        },
    };
    let delivery = match rotation.fetch().await {
        Ok(d) => d,
        Err(e) => {
            rotation.exchanger.stop().await;
            return Err(e.into());
        }
    };
    rotate::write_files(&rotation.paths, None, &delivery)?;
    let command = command_line(&settings)?;
    let incoming = supervise::signals().map_err(StartError::Signals)?;
    let base = BaseEnv::capture();
    if let Some(listen) = settings.serve_mcp {
        listen.log_meaning("--serve-mcp");
        let addr = listen.addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        let (publish, delivery) = tokio::sync::watch::channel(delivery);
        let upstreams = bridge::Upstreams {
            command,
            base,
            delivery,
            grace_period: settings.grace_period,
            restart_on_rotate: settings.on_rotate == cli::OnRotate::Restart,
        };
        tracing::info!(provider = %settings.provider, "credential delivered; serving MCP");
        return bridge::serve(
            listener,
            settings.mcp,
            upstreams,
            publish,
            rotation,
            settings.refresh_interval,
            incoming,
        )
        .await
        .map_err(|source| StartError::Listen { addr, source });
    }
    let child =
        Child::spawn(&command, &base.with(&delivery)).map_err(|source| StartError::Spawn {
            program: command
                .first()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source,
        })?;
    tracing::info!(
        provider = %settings.provider,
        pid = child.id(),
        "credential delivered; child started"
    );
    let supervisor = Supervisor {
        child,
        command,
        base,
        current: delivery,
        rotation,
        policy: Policy {
            refresh_interval: settings.refresh_interval,
            on_rotate: settings.on_rotate,
            grace_period: settings.grace_period,
        },
    };
    Ok(supervisor.run(incoming).await)
}

/// The child's command line: in MPP mode with the kubeconfig provider, the
/// deny-Namespace config is written and `--config <path>` inserted right
/// after the command name.
fn command_line(settings: &Settings) -> Result<Vec<OsString>, WriteError> {
    let mut command = settings.command.clone();
    if settings.mpp && settings.provider == Provider::Kubeconfig {
        files::write_atomic(&settings.mpp_config_path, MPP_CONFIG.as_bytes())?;
        tracing::info!(
            path = %settings.mpp_config_path.display(),
            "MPP mode: the Kubernetes MCP server gets the deny-Namespace config"
        );
        command.splice(
            1..1,
            [
                OsString::from("--config"),
                settings.mpp_config_path.clone().into_os_string(),
            ],
        );
    }
    Ok(command)
}
