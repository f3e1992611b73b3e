//! `ambient-session-probe`: run as a session's runner, it tries the calls of
//! `PROBE_CELLS` with its session token and reports which succeeded (see
//! `ambient_demo::probe`). For the access tests; never part of an image.

use std::process::ExitCode;

use clap::Parser;

/// Tries the calls of PROBE_CELLS with the session's token and prints one
/// line per call: whether it succeeded and its status.
#[derive(Debug, Parser)]
#[command(name = "ambient-session-probe", version)]
struct Cli {
    #[command(flatten)]
    config: ambient_runner_client::config::Config,
}

fn main() -> ExitCode {
    ambient_daemon::install_panic_hook();
    let cli = Cli::try_parse()
        .unwrap_or_else(|e| ambient_daemon::exit_on_parse_error("ambient-session-probe", &e));
    let runtime = match ambient_daemon::async_runtime(ambient_daemon::Threads::One) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ambient-session-probe: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ambient_demo::probe::run(cli.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambient-session-probe: {e:#}");
            ExitCode::FAILURE
        }
    }
}
