//! `ambient-runner-client`: parse the runner environment, init logging, run
//! one command.

use std::process::ExitCode;

use ambient_runner_client::cli::{self, Cli};
use ambient_runner_client::config::LogFormat;

fn init_tracing(level: &str, format: LogFormat) {
    ambient_daemon::install_panic_hook();
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn main() -> ExitCode {
    // Before any secret is read: the agent runs as the same user.
    ambient_daemon::make_non_dumpable_or_exit("ambient-runner-client");
    ambient_daemon::ignore_missing_ca_paths("ambient-runner-client");
    let cli: Cli =
        ambient_daemon::parse_refusing_secret_args("ambient-runner-client", &["bot_token"]);
    let settings = match cli.config.validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ambient-runner-client: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&cli.config.log_level, cli.config.log_format);
    let runtime = match ambient_daemon::async_runtime(ambient_daemon::Threads::Workers(2)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ambient-runner-client: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command, settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambient-runner-client: {e:#}");
            ExitCode::FAILURE
        }
    }
}
