//! `ambient-demo-runner`: a session runner for the demo and the end-to-end
//! tests (see `ambient_demo::runner`). Configured like every runner, by the
//! session pod's environment; `--help` lists the variables.

use std::process::ExitCode;

use clap::Parser;

/// A demo session runner: fetches its token, pushes messages, calls the
/// platform tools and every credential sidecar, then exits 0.
#[derive(Debug, Parser)]
#[command(name = "ambient-demo-runner", version)]
struct Cli {
    #[command(flatten)]
    config: ambient_runner_client::config::Config,
}

fn main() -> ExitCode {
    ambient_daemon::ignore_missing_ca_paths("ambient-demo-runner");
    ambient_daemon::install_panic_hook();
    let cli = Cli::try_parse()
        .unwrap_or_else(|e| ambient_daemon::exit_on_parse_error("ambient-demo-runner", &e));
    let format = match cli.config.log_format {
        ambient_runner_client::config::LogFormat::Json => ambient_daemon::LogFormat::Json,
        ambient_runner_client::config::LogFormat::Text => ambient_daemon::LogFormat::Text,
    };
    if let Err(e) = ambient_daemon::init_tracing(format, &cli.config.log_level) {
        eprintln!("ambient-demo-runner: {e}");
        return ExitCode::from(2);
    }
    let runtime = match ambient_daemon::async_runtime(ambient_daemon::Threads::Workers(2)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ambient-demo-runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ambient_demo::runner::run(cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambient-demo-runner: {e:#}");
            ExitCode::FAILURE
        }
    }
}
