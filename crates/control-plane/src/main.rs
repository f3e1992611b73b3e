use std::process::ExitCode;

use ambient_control_plane::config::Config;
use ambient_control_plane::daemon;
use ambient_control_plane::render::{self, RenderArgs};
use clap::{Parser, Subcommand};

/// The ambient control plane: reconciles sessions in the API server into
/// pods, keeps both true under failure, and serves the session token
/// exchange (every replica; only the Lease holder reconciles).
#[derive(Debug, Parser)]
#[command(name = "ambient-control-plane", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every object the Kubernetes runtime would apply for one session
    /// (multi-document YAML), with the current configuration. Needs no
    /// cluster and no API server. Secret values print as <redacted>.
    Render(RenderArgs),
    /// Print the output of a session's containers under the process runtime
    /// (from --state-dir).
    Logs(ambient_control_plane::runtime::process::logs::LogsArgs),
}

fn main() -> ExitCode {
    if let Some(code) = ambient_control_plane::runtime::process::shim::dispatch() {
        return code;
    }
    // Secrets come from the environment or a file: any local user can read argv.
    let cli: Cli = ambient_daemon::parse_refusing_secret_args(
        "ambient-control-plane",
        &["api_token", "oidc_client_secret", "anthropic_api_key"],
    );
    if let Some(Command::Logs(args)) = &cli.command {
        let printed = cli
            .config
            .runtime
            .state_dir()
            .map_err(|e| e.to_string())
            .and_then(|dir| {
                ambient_control_plane::runtime::process::logs::print(
                    dir,
                    args,
                    &mut std::io::stdout(),
                )
            });
        if let Err(e) = printed {
            eprintln!("ambient-control-plane: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    if let Some(Command::Render(args)) = &cli.command {
        return match cli
            .config
            .pod_config()
            .map_err(|e| e.to_string())
            .and_then(|cfg| render::render(&cfg, args).map_err(|e| e.to_string()))
        {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ambient-control-plane: {e}");
                ExitCode::from(2)
            }
        };
    }
    let settings = match cli.config.validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ambient-control-plane: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ambient_daemon::init_tracing(cli.config.log_format, &cli.config.log_level) {
        eprintln!("ambient-control-plane: {e}");
        return ExitCode::from(2);
    }
    let runtime = match ambient_daemon::async_runtime(ambient_daemon::Threads::PerCore) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ambient-control-plane: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = match runtime.block_on(async { ambient_daemon::shutdown_signal() }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ambient-control-plane: cannot install the signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(cli.config, settings, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambient-control-plane: {e:#}");
            ExitCode::FAILURE
        }
    }
}
