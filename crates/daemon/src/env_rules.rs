//! How every daemon reads its environment: the rule of
//! [`ambient_protocol::env::reads_as`] (an empty value is unset; an old name
//! is read when the current one is unset) applied to a clap command before
//! it parses. Booleans read as the reference reads them through the value
//! parsers [`is_true`], [`is_one_or_true`] and [`is_truthy`].
//!
//! [`table`] checks a daemon's whole environment against these rules.

use std::convert::Infallible;

use ambient_protocol::env;
use clap::Command;

pub mod table;

/// `cmd` (and its subcommands) reading the process environment by the
/// daemons' rule: an argument whose variable is set but empty reads as
/// unset (its default applies), and one whose variable is unset reads its
/// alias, if any.
pub fn apply(cmd: Command) -> Command {
    cmd.mut_args(|arg| {
        let Some(name) = arg.get_env().map(|n| n.to_string_lossy().into_owned()) else {
            return arg;
        };
        match env::reads_as(&name, |k| std::env::var_os(k)) {
            Some(read) if read == name => arg,
            Some(read) => match env::ALIASES.iter().find(|(_, alias)| *alias == read) {
                Some((_, alias)) => arg.env(*alias),
                None => arg,
            },
            None if std::env::var_os(&name).is_some() => arg.env(None::<&'static str>),
            None => arg,
        }
    })
    .mut_subcommands(apply)
}

/// Parses `argv` into `C` with the environment read by [`apply`].
pub fn try_parse_from<C, I, T>(argv: I) -> Result<C, clap::Error>
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = apply(C::command()).try_get_matches_from(argv)?;
    C::from_arg_matches(&matches)
}

/// Value parser: the reference control plane's boolean ([`env::is_true`]).
pub fn is_true(value: &str) -> Result<bool, Infallible> {
    Ok(env::is_true(value))
}

/// Value parser: the reference's `USE_VERTEX` ([`env::is_one_or_true`]).
pub fn is_one_or_true(value: &str) -> Result<bool, Infallible> {
    Ok(env::is_one_or_true(value))
}

/// Value parser: the reference runner's boolean ([`env::is_truthy`]).
pub fn is_truthy(value: &str) -> Result<bool, Infallible> {
    Ok(env::is_truthy(value))
}
