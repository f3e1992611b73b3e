//! A command line that does not parse: help and version go to stdout with
//! exit 0; anything else is one line on stderr and exit 2 (clap's own
//! message is several lines, with usage and hints). A secret given as a
//! command-line value is refused the same way: every local user can read a
//! process's argv, so secrets come from the environment or a file.

use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// Parses the process's command line into `C`, its environment read by the
/// daemons' rules ([`crate::env_rules`]), exiting as
/// [`exit_on_parse_error`] does on a parse error, and with one line and exit
/// 2 when an argument whose ID is in `secret_ids` got its value from the
/// command line rather than from its environment variable.
pub fn parse_refusing_secret_args<C: clap::Parser>(prefix: &str, secret_ids: &[&str]) -> C {
    let cmd = crate::env_rules::apply(C::command());
    let matches = match cmd.clone().try_get_matches() {
        Ok(m) => m,
        Err(e) => exit_on_parse_error(prefix, &e),
    };
    if let Some(line) = secret_on_command_line(&cmd, &matches, secret_ids) {
        print_line(prefix, &line);
        std::process::exit(2);
    }
    match C::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => exit_on_parse_error(prefix, &e),
    }
}

/// The refusal for the first of `secret_ids` given on the command line.
fn secret_on_command_line(cmd: &Command, m: &ArgMatches, secret_ids: &[&str]) -> Option<String> {
    let id = secret_ids
        .iter()
        .find(|id| m.value_source(id) == Some(ValueSource::CommandLine))?;
    let arg = cmd.get_arguments().find(|a| a.get_id() == *id)?;
    let flag = arg.get_long().unwrap_or(id);
    let env = arg
        .get_env()
        .map(|e| format!("set {} instead", e.to_string_lossy()))
        .unwrap_or_else(|| "use its file form instead".to_owned());
    Some(format!(
        "error: --{flag} takes no value on the command line (any local user can read it there): {env}"
    ))
}

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
    print_line(prefix, first_line(&msg));
    std::process::exit(2);
}

fn print_line(prefix: &str, line: &str) {
    if prefix.is_empty() {
        eprintln!("{line}");
    } else {
        eprintln!("{prefix}: {line}");
    }
}

fn first_line(msg: &str) -> &str {
    msg.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
}

#[cfg(test)]
mod tests {
    use super::{first_line, secret_on_command_line};
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("t")
            .arg(
                Arg::new("token")
                    .long("api-token")
                    .env("T_TEST_TOKEN_UNSET"),
            )
            .arg(Arg::new("level").long("log-level"))
    }

    #[test]
    fn a_secret_value_on_the_command_line_is_refused_by_name() {
        let c = cmd();
        let m = c
            .clone()
            .try_get_matches_from(["t", "--api-token", "s3cret-value"])
            .unwrap_or_else(|e| panic!("{e}"));
        let line = secret_on_command_line(&c, &m, &["token"]).unwrap_or_default();
        assert!(line.contains("--api-token"), "{line}");
        assert!(line.contains("T_TEST_TOKEN_UNSET"), "{line}");
        assert!(!line.contains("s3cret-value"), "{line}");
        // Other flags, and no secret at all, pass.
        let m = c
            .clone()
            .try_get_matches_from(["t", "--log-level", "debug"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(secret_on_command_line(&c, &m, &["token"]), None);
    }

    #[test]
    fn one_line_from_a_multi_line_message() {
        assert_eq!(
            first_line("error: unexpected argument '--x' found\n\nUsage: t\n"),
            "error: unexpected argument '--x' found"
        );
        assert_eq!(first_line("\n"), "invalid arguments");
    }
}
