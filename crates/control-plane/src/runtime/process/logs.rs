//! `ambient-control-plane logs [--follow] SESSION [CONTAINER]`: the output
//! of a session's containers under the process runtime (kept after they
//! end, removed with the session). `--follow` keeps printing what the
//! containers write until each has exited or the session's pod is gone
//! (stopped or deleted).

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::state::{Layout, valid_session_id};

/// How often a followed log is looked at again.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// `logs` arguments.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The session ID.
    pub session: String,
    /// One container (ambient-code-runner, ambient-mcp, credential-<provider>);
    /// every container, each line prefixed with its name, when omitted.
    pub container: Option<String>,
    /// Keep printing as the containers write; end once they have exited
    /// (or the session's processes are gone: stopped or deleted).
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// One container's log being read.
struct Tail {
    container: String,
    file: std::fs::File,
    /// Bytes after the last newline, kept until their line is complete.
    partial: Vec<u8>,
}

impl Tail {
    /// Prints what was written since the last call: as it is, or line by
    /// line with `[container] ` in front (an incomplete last line waits,
    /// unless `last`).
    fn drain(
        &mut self,
        prefixed: bool,
        last: bool,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        let mut fresh = Vec::new();
        self.file.read_to_end(&mut fresh)?;
        if !prefixed {
            return out.write_all(&fresh);
        }
        self.partial.extend_from_slice(&fresh);
        if last && self.partial.last().is_some_and(|b| *b != b'\n') {
            self.partial.push(b'\n');
        }
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(());
        };
        let lines: Vec<u8> = self.partial.drain(..=end).collect();
        for line in lines[..end].split(|b| *b == b'\n') {
            writeln!(
                out,
                "[{}] {}",
                self.container,
                String::from_utf8_lossy(line)
            )?;
        }
        Ok(())
    }
}

/// The containers of the session that have a log, sorted.
fn containers(layout: &Layout, session: &str) -> Result<Vec<String>, String> {
    let dir = layout.logs(session);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| format!("no logs for session {session} in {}: {e}", dir.display()))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".log")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    Ok(names)
}

/// True once nothing more comes from `containers`: each has recorded its
/// exit, or the pod is gone.
fn ended(layout: &Layout, session: &str, containers: &[String]) -> bool {
    !layout.pod_record(session).exists()
        || containers.iter().all(|c| layout.exit(session, c).exists())
}

/// Prints the logs to `out` (following them with `--follow`); an error
/// names what is missing.
pub fn print(
    state_dir: PathBuf,
    args: &LogsArgs,
    out: &mut impl std::io::Write,
) -> Result<(), String> {
    if !valid_session_id(&args.session) {
        return Err(format!("{:?} is not a session ID", args.session));
    }
    let layout = Layout::new(state_dir);
    let names = containers(&layout, &args.session)?;
    let selected = match &args.container {
        Some(c) if !names.contains(c) => {
            return Err(format!(
                "session {} has no container {c:?} (it has: {})",
                args.session,
                names.join(", ")
            ));
        }
        Some(c) => vec![c.clone()],
        None => names,
    };
    let mut tails = Vec::new();
    for c in &selected {
        let file = std::fs::File::open(layout.log(&args.session, c))
            .map_err(|e| format!("cannot read the log of {c}: {e}"))?;
        tails.push(Tail {
            container: c.clone(),
            file,
            partial: Vec::new(),
        });
    }
    let prefixed = args.container.is_none();
    let write = |e: std::io::Error| format!("cannot write: {e}");
    loop {
        // Looked at first: whatever was written before the end is printed.
        let last = !args.follow || ended(&layout, &args.session, &selected);
        for t in &mut tails {
            t.drain(prefixed, last, out).map_err(write)?;
        }
        out.flush().map_err(write)?;
        if last {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const ID: &str = "s1";
    const RUNNER: &str = "ambient-code-runner";

    /// A state directory with a running pod whose runner wrote `first`.
    fn state(tag: &str, first: &str) -> (Dir, Layout) {
        let dir = Dir(std::env::temp_dir().join(format!(
            "logs-{tag}-{}-{}",
            std::process::id(),
            super::super::state::now_ms()
        )));
        let layout = Layout::new(dir.0.clone());
        for d in [layout.logs(ID), layout.pod(ID)] {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(layout.pod_record(ID), "{}").unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(layout.log(ID, RUNNER), first).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(layout.log(ID, "ambient-mcp"), "mcp up\n").unwrap_or_else(|e| panic!("{e}"));
        (dir, layout)
    }

    fn args(container: Option<&str>, follow: bool) -> LogsArgs {
        LogsArgs {
            session: ID.into(),
            container: container.map(str::to_owned),
            follow,
        }
    }

    /// Runs `print` in a thread; its output once it returns (within 10 s).
    fn spawn_print(
        layout: &Layout,
        args: LogsArgs,
    ) -> std::sync::mpsc::Receiver<Result<String, String>> {
        let root = layout.root().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let r = print(root, &args, &mut out);
            let _ = tx.send(r.map(|()| String::from_utf8_lossy(&out).into_owned()));
        });
        rx
    }

    fn append(layout: &Layout, container: &str, text: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .open(layout.log(ID, container))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn result(rx: &std::sync::mpsc::Receiver<Result<String, String>>) -> String {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("logs did not return: {e}"))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn without_follow_what_is_there_is_printed_at_once() {
        let (_d, layout) = state("once", "one\n");
        assert_eq!(
            result(&spawn_print(&layout, args(Some(RUNNER), false))),
            "one\n"
        );
        assert_eq!(
            result(&spawn_print(&layout, args(None, false))),
            "[ambient-code-runner] one\n[ambient-mcp] mcp up\n"
        );
    }

    #[test]
    fn follow_prints_what_the_container_writes_until_it_exits() {
        let (_d, layout) = state("exit", "one\n");
        let rx = spawn_print(&layout, args(Some(RUNNER), true));
        std::thread::sleep(FOLLOW_POLL * 2);
        assert!(rx.try_recv().is_err(), "ended while the runner runs");
        append(&layout, RUNNER, "two\npar");
        std::thread::sleep(FOLLOW_POLL * 2);
        append(&layout, RUNNER, "tial\nlast words");
        std::fs::write(layout.exit(ID, RUNNER), r#"{"code":0}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(result(&rx), "one\ntwo\npartial\nlast words");
    }

    #[test]
    fn follow_of_every_container_keeps_lines_whole_and_ends_with_the_pod() {
        let (_d, layout) = state("pod", "one\n");
        let rx = spawn_print(&layout, args(None, true));
        append(&layout, RUNNER, "two, writ");
        std::thread::sleep(FOLLOW_POLL * 2);
        append(&layout, RUNNER, "ten in two parts\n");
        append(&layout, "ambient-mcp", "bye");
        // The runner exited, the sidecar still runs: not over yet.
        std::fs::write(layout.exit(ID, RUNNER), r#"{"code":0}"#).unwrap_or_else(|e| panic!("{e}"));
        std::thread::sleep(FOLLOW_POLL * 2);
        assert!(rx.try_recv().is_err(), "ended while a container runs");
        // Stopped: the pod is gone.
        std::fs::remove_dir_all(layout.pod(ID)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            result(&rx),
            "[ambient-code-runner] one\n[ambient-mcp] mcp up\n\
             [ambient-code-runner] two, written in two parts\n[ambient-mcp] bye\n"
        );
    }

    #[test]
    fn an_unknown_container_is_named() {
        let (_d, layout) = state("unknown", "");
        let err = print(
            layout.root().to_path_buf(),
            &args(Some("nope"), true),
            &mut Vec::new(),
        )
        .err()
        .unwrap_or_default();
        assert!(err.contains("no container \"nope\""), "{err}");
        assert!(err.contains("ambient-code-runner, ambient-mcp"), "{err}");
    }
}
