use std::process::ExitCode;

use ambient_control_plane::config::Config;
use ambient_control_plane::render::{self, RenderArgs};
use clap::{Parser, Subcommand};

/// The ambient control plane: reconciles sessions into pods and serves the
/// session token exchange.
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
    /// cluster and no API server.
    Render(RenderArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Render(args)) => {
            let result = cli
                .config
                .pod_config()
                .map_err(|e| e.to_string())
                .and_then(|cfg| render::render(&cfg, &args).map_err(|e| e.to_string()));
            match result {
                Ok(yaml) => {
                    print!("{yaml}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ambient-control-plane: {e}");
                    ExitCode::from(2)
                }
            }
        }
        None => {
            eprintln!("ambient-control-plane: run mode not built yet");
            ExitCode::from(2)
        }
    }
}
