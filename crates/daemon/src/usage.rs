//! A command line that does not parse: help and version go to stdout with
//! exit 0; anything else is one line on stderr and exit 2 (clap's own
//! message is several lines, with usage and hints).

/// Exits the process for `err`, a failed clap parse. `prefix` (e.g. the
/// binary's name) is put before the line when not empty.
pub fn exit_on_parse_error(prefix: &str, err: &clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = err.print();
        std::process::exit(0);
    }
    let msg = err.to_string();
    let line = first_line(&msg);
    if prefix.is_empty() {
        eprintln!("{line}");
    } else {
        eprintln!("{prefix}: {line}");
    }
    std::process::exit(2);
}

fn first_line(msg: &str) -> &str {
    msg.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn one_line_from_a_multi_line_message() {
        assert_eq!(
            first_line("error: unexpected argument '--x' found\n\nUsage: t\n"),
            "error: unexpected argument '--x' found"
        );
        assert_eq!(first_line("\n"), "invalid arguments");
    }
}
