//! The container shim: this binary, started as
//! `ambient-control-plane __container-shim PID_FILE EXIT_FILE -- ARGV...`,
//! is the parent of one container process. It starts a new session (so the
//! container and everything it starts can be found and signalled, process
//! groups of their own included), records its pid and start time, runs the
//! container, survives the SIGTERM meant for it, and records the exit code
//! (128 + signal when killed) before exiting with it. The record outlives
//! the control plane: a restarted one learns how a runner ended while it
//! was down.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use super::state::{ExitRecord, PidRecord, write_json};

/// The first argument that selects the shim.
pub const SHIM_ARG: &str = "__container-shim";

/// Runs the shim when the command line asks for it.
pub fn dispatch() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_none_or(|a| a != SHIM_ARG) {
        return None;
    }
    let (Some(pid_file), Some(exit_file), Some(sep)) = (args.get(2), args.get(3), args.get(4))
    else {
        eprintln!("container shim: usage: {SHIM_ARG} PID_FILE EXIT_FILE -- COMMAND...");
        return Some(ExitCode::from(2));
    };
    let argv = &args[5..];
    if sep != "--" || argv.is_empty() {
        eprintln!("container shim: usage: {SHIM_ARG} PID_FILE EXIT_FILE -- COMMAND...");
        return Some(ExitCode::from(2));
    }
    let code = run(PathBuf::from(pid_file), PathBuf::from(exit_file), argv);
    Some(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
}

fn run(pid_file: PathBuf, exit_file: PathBuf, argv: &[OsString]) -> i32 {
    // The container's secrets are in our environment: no process of the same
    // user (the container's own, after its execve) may read it. Our
    // /proc/PID/stat, which adoption reads, stays readable.
    if let Err(e) = ambient_daemon::make_non_dumpable() {
        eprintln!("container shim: cannot make the process non-dumpable: {e}");
        return finish(&exit_file, 1);
    }
    // Fails only for a group leader; the control plane never makes us one.
    let _ = rustix::process::setsid();
    let me = std::process::id() as i32;
    if let Some(record) = PidRecord::of(me)
        && let Err(e) = write_json(&pid_file, &record)
    {
        eprintln!("container shim: cannot write {}: {e}", pid_file.display());
    }
    let runtime = match ambient_daemon::async_runtime(ambient_daemon::Threads::One) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("container shim: {e}");
            return finish(&exit_file, 1);
        }
    };
    let code = runtime.block_on(supervise(argv));
    finish(&exit_file, code)
}

fn finish(exit_file: &std::path::Path, code: i32) -> i32 {
    if let Err(e) = write_json(exit_file, &ExitRecord { code }) {
        eprintln!("container shim: cannot write {}: {e}", exit_file.display());
    }
    code
}

async fn supervise(argv: &[OsString]) -> i32 {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers (not SIG_IGN, which the container would inherit): the stop
    // signal is for the container; we only wait for it.
    let mut ignored = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ] {
        match signal(kind) {
            Ok(s) => ignored.push(s),
            Err(e) => eprintln!("container shim: cannot handle a signal: {e}"),
        }
    }
    let (program, args) = match argv.split_first() {
        Some(split) => split,
        None => return 2,
    };
    let mut child = match tokio::process::Command::new(program).args(args).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "container shim: cannot start {}: {e}",
                program.to_string_lossy()
            );
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
        }
    };
    let drain = async {
        loop {
            let pending: Vec<_> = ignored.iter_mut().map(|s| Box::pin(s.recv())).collect();
            if pending.is_empty() {
                std::future::pending::<()>().await;
            }
            futures::future::select_all(pending).await;
        }
    };
    let status = tokio::select! {
        s = child.wait() => s,
        () = drain => unreachable_exit(),
    };
    match status {
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt as _;
            s.code()
                .or_else(|| s.signal().map(|sig| 128 + sig))
                .unwrap_or(1)
        }
        Err(e) => {
            eprintln!("container shim: waiting for the container: {e}");
            1
        }
    }
}

/// `drain` never ends; this only gives the select arm a type.
fn unreachable_exit() -> std::io::Result<std::process::ExitStatus> {
    Err(std::io::Error::other("signal loop ended"))
}
