//! A daemon's environment, variable by variable, against the rules of
//! [`super`]: a test lists every variable its parser reads ([`Row`]) and
//! [`check`] parses each cell, comparing the result with the same setting
//! given on the command line.

use std::fmt::Debug;

use ambient_protocol::env::ALIASES;

/// How one variable reads.
#[derive(Debug, Clone, Copy)]
pub enum Reading {
    /// A value: empty reads as unset.
    Text,
    /// A value, `sample` being a valid non-default one: empty reads as
    /// unset, `sample` as `--flag=sample` (and from an alias, if any).
    Value(&'static str),
    /// A boolean read by the rule (see [`super::is_true`] and friends):
    /// empty reads as unset, anything else as the rule says.
    Bool(fn(&str) -> bool),
}

/// One variable of the table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub name: &'static str,
    pub reading: Reading,
}

/// A [`Row`] of kind [`Reading::Text`].
pub const fn text(name: &'static str) -> Row {
    Row {
        name,
        reading: Reading::Text,
    }
}

/// A [`Row`] of kind [`Reading::Value`].
pub const fn value(name: &'static str, sample: &'static str) -> Row {
    Row {
        name,
        reading: Reading::Value(sample),
    }
}

/// A [`Row`] of kind [`Reading::Bool`].
pub const fn boolean(name: &'static str, rule: fn(&str) -> bool) -> Row {
    Row {
        name,
        reading: Reading::Bool(rule),
    }
}

/// Values every boolean is tried with.
const BOOL_VALUES: [&str; 9] = ["true", "TRUE", "1", "yes", " Yes ", "false", "0", "no", "x"];

/// Checks `C` (parsed from `argv` plus its environment, as daemons parse)
/// against `rows`: the rows name exactly the variables `C` reads; each set
/// to `""` parses as unset; each boolean reads [`BOOL_VALUES`] by its rule;
/// each sample reads as on the command line, and from an alias too.
/// Returns one line per failed cell.
///
/// # Safety
///
/// Sets and removes environment variables: no other thread may read or
/// write the environment while it runs (a test binary with one test).
#[allow(unsafe_code)]
pub unsafe fn check<C: clap::Parser + Debug>(argv: &[&str], rows: &[Row]) -> Vec<String> {
    let mut failures = names_match::<C>(rows);
    for name in rows.iter().map(|r| r.name).chain(ALIASES.map(|(_, a)| a)) {
        // SAFETY: the caller guarantees no concurrent access to the environment.
        unsafe { std::env::remove_var(name) };
    }
    // Flags go right after the program name, before any subcommand.
    let parse = |extra: &[String]| {
        let argv = argv
            .iter()
            .take(1)
            .map(|s| s.to_string())
            .chain(extra.iter().cloned())
            .chain(argv.iter().skip(1).map(|s| s.to_string()));
        match super::try_parse_from::<C, _, _>(argv) {
            Ok(c) => format!("{c:?}"),
            Err(e) => format!("error: {}", e.to_string().lines().next().unwrap_or("")),
        }
    };
    let with = |pairs: &[(&str, &str)], extra: &[String]| {
        for (k, v) in pairs {
            // SAFETY: as above.
            unsafe { std::env::set_var(k, v) };
        }
        let got = parse(extra);
        for (k, _) in pairs {
            // SAFETY: as above.
            unsafe { std::env::remove_var(k) };
        }
        got
    };
    let unset = parse(&[]);
    if unset.starts_with("error") {
        failures.push(format!("the baseline does not parse: {unset}"));
    }
    for row in rows {
        if with(&[(row.name, "")], &[]) != unset {
            failures.push(format!("{}=\"\" does not read as unset", row.name));
        }
        let flag = long_of::<C>(row.name);
        match (row.reading, &flag) {
            (Reading::Text, _) => {}
            (_, None) => failures.push(format!("{} has no flag to compare with", row.name)),
            (Reading::Value(sample), Some(flag)) => {
                let want = parse(&[format!("--{flag}={sample}")]);
                if want == unset {
                    failures.push(format!(
                        "{}: the sample {sample:?} is the default",
                        row.name
                    ));
                }
                let mut cells = vec![(vec![(row.name, sample)], row.name.to_owned())];
                for (_, alias) in ALIASES.iter().filter(|(n, _)| *n == row.name) {
                    cells.push((vec![(*alias, sample)], (*alias).to_owned()));
                    cells.push((
                        vec![(row.name, ""), (*alias, sample)],
                        format!("{alias} beside an empty {}", row.name),
                    ));
                }
                for (pairs, label) in cells {
                    if with(&pairs, &[]) != want {
                        failures.push(format!("{label}={sample:?} does not read as --{flag}"));
                    }
                }
            }
            (Reading::Bool(rule), Some(flag)) => {
                for v in BOOL_VALUES {
                    let want = parse(&[format!("--{flag}={}", rule(v))]);
                    if with(&[(row.name, v)], &[]) != want {
                        failures.push(format!("{}={v:?} does not read as {}", row.name, rule(v)));
                    }
                }
            }
        }
    }
    failures
}

/// Every variable `C` reads, once.
pub fn variables<C: clap::CommandFactory>() -> Vec<String> {
    fn walk(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(name) = arg.get_env() {
                let name = name.to_string_lossy().into_owned();
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut out = Vec::new();
    walk(&C::command(), &mut out);
    out
}

fn names_match<C: clap::CommandFactory>(rows: &[Row]) -> Vec<String> {
    let read = variables::<C>();
    let listed: Vec<&str> = rows.iter().map(|r| r.name).collect();
    let mut failures: Vec<String> = read
        .iter()
        .filter(|n| !listed.contains(&n.as_str()))
        .map(|n| format!("{n} is read but not in the table"))
        .collect();
    failures.extend(
        listed
            .iter()
            .filter(|n| !read.iter().any(|r| r == *n))
            .map(|n| format!("{n} is in the table but not read")),
    );
    failures
}

/// The long flag of the argument reading `name`.
fn long_of<C: clap::CommandFactory>(name: &str) -> Option<String> {
    C::command()
        .get_arguments()
        .find(|a| a.get_env().is_some_and(|e| e == name))
        .and_then(|a| a.get_long().map(str::to_owned))
}
