//! `ambient-devserver`: parse flags, set up logging, run.

use anyhow::Context as _;

use ambient_devserver::Config;

async fn run(config: Config) -> anyhow::Result<()> {
    ambient_daemon::init_tracing(config.log_format, &config.log_level)?;
    let shutdown = ambient_daemon::shutdown_signal().context("installing the signal handlers")?;
    ambient_devserver::run(config, shutdown).await?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let config: Config = ambient_daemon::parse_refusing_secret_args(
        "ambient-devserver",
        &["tokens", "oidc_client_secret"],
    );
    if let Err(e) = run(config).await {
        eprintln!("ambient-devserver: {e:#}");
        std::process::exit(1);
    }
}
