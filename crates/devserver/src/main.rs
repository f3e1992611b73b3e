//! `ambient-devserver`: parse flags, set up logging, run.

use anyhow::Context as _;
use clap::Parser as _;

use ambient_devserver::Config;
use ambient_devserver::config::LogFormat;

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid --log-level {:?}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    }
    .map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

/// Resolves on SIGTERM or SIGINT. The handlers are installed before this
/// returns, so a signal that arrives during startup is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    init_tracing(&config)?;
    let shutdown = shutdown_signal()?;
    ambient_devserver::run(config, shutdown).await?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let config = Config::parse();
    if let Err(e) = run(config).await {
        eprintln!("ambient-devserver: {e:#}");
        std::process::exit(1);
    }
}
