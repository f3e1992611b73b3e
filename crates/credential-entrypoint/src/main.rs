//! `credential-entrypoint [options] <command> [args...]`: parse, validate,
//! set up logging, run, exit with the child's code.

use credential_entrypoint::cli;
use credential_entrypoint::config::Settings;

fn main() {
    // Before any secret is read: the child (same user) must not read our
    // environment (the exchange inputs withheld from it) or memory.
    ambient_daemon::make_non_dumpable_or_exit("credential-entrypoint");
    ambient_daemon::ignore_missing_ca_paths("credential-entrypoint");
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let inv = match cli::parse(&argv) {
        Ok(inv) => inv,
        Err(e) => ambient_daemon::exit_on_parse_error("credential-entrypoint", &e),
    };
    if let Err(e) = ambient_daemon::init_tracing(inv.cli.log_format, &inv.cli.log_level) {
        eprintln!("credential-entrypoint: {e}");
        std::process::exit(2);
    }
    let settings = match Settings::from_invocation(inv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("credential-entrypoint: {e}");
            std::process::exit(1);
        }
    };
    let runtime = match ambient_daemon::async_runtime(ambient_daemon::Threads::One) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("credential-entrypoint: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(credential_entrypoint::run(settings)) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("credential-entrypoint: {e}");
            std::process::exit(1);
        }
    }
}
