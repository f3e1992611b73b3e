use std::process::ExitCode;

use ambient_control_plane::config::{Config, LogFormat};
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
}

fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
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
    let cli = Cli::parse();
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
    init_tracing(&cli.config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ambient-control-plane: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(cli.config, settings, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambient-control-plane: {e:#}");
            ExitCode::FAILURE
        }
    }
}
