//! `ambient-mcp`: parse flags, set up logging, run.

fn main() -> std::process::ExitCode {
    // Before any secret is read: no same-uid process (the agent beside it)
    // may read this process's environment or memory.
    ambient_daemon::make_non_dumpable_or_exit("ambient-mcp");
    ambient_daemon::ignore_missing_ca_paths("ambient-mcp");
    let config: ambient_mcp::config::Config =
        ambient_daemon::parse_refusing_secret_args("ambient-mcp", &["token"]);
    let settings = match config.validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ambient-mcp: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Err(e) = ambient_daemon::init_tracing(config.log_format, &config.log_level) {
        eprintln!("ambient-mcp: {e}");
        return std::process::ExitCode::FAILURE;
    }
    // One thread: the sidecar serves one agent, and its work (HTTP
    // forwarding, JSON) never blocks. A current-thread runtime wakes tasks
    // without cross-thread hand-offs (the tool-call path crosses several
    // tasks) and costs no worker stacks or malloc arenas.
    let runtime = match ambient_daemon::async_runtime(ambient_daemon::Threads::One) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ambient-mcp: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ambient_mcp::daemon::run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ambient-mcp: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
