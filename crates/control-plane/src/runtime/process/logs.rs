//! `ambient-control-plane logs SESSION [CONTAINER]`: the output of a
//! session's containers under the process runtime (kept after they end,
//! removed with the session).

use std::io::BufRead as _;
use std::path::PathBuf;

use clap::Args;

use super::state::{Layout, valid_session_id};

/// `logs` arguments.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// The session ID.
    pub session: String,
    /// One container (ambient-code-runner, ambient-mcp, credential-<provider>);
    /// every container, each line prefixed with its name, when omitted.
    pub container: Option<String>,
}

/// Prints the logs to `out`; an error names what is missing.
pub fn print(
    state_dir: PathBuf,
    args: &LogsArgs,
    out: &mut impl std::io::Write,
) -> Result<(), String> {
    if !valid_session_id(&args.session) {
        return Err(format!("{:?} is not a session ID", args.session));
    }
    let layout = Layout::new(state_dir);
    let dir = layout.logs(&args.session);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| {
            format!(
                "no logs for session {} in {}: {e}",
                args.session,
                dir.display()
            )
        })?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".log")
                .map(str::to_owned)
        })
        .collect();
    names.sort();
    let write = |e: std::io::Error| format!("cannot write: {e}");
    match &args.container {
        Some(c) => {
            if !names.contains(c) {
                return Err(format!(
                    "session {} has no container {c:?} (it has: {})",
                    args.session,
                    names.join(", ")
                ));
            }
            let mut file = std::fs::File::open(layout.log(&args.session, c))
                .map_err(|e| format!("cannot read the log of {c}: {e}"))?;
            std::io::copy(&mut file, out).map_err(write)?;
        }
        None => {
            for c in &names {
                let file = std::fs::File::open(layout.log(&args.session, c))
                    .map_err(|e| format!("cannot read the log of {c}: {e}"))?;
                for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                    writeln!(out, "[{c}] {line}").map_err(write)?;
                }
            }
        }
    }
    Ok(())
}
