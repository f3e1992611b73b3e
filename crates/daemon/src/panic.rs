//! What a panic prints: one line on stderr (thread, location, message) in
//! which the value of every secret-bearing environment variable the process
//! started with is replaced by `***`. Secrets held in `Secret` already print
//! as `***`; this covers a message that was formatted from a raw value.
//! [`crate::init_tracing`] installs it; a binary that sets up its own
//! logging calls [`install_panic_hook`].

use std::ffi::OsString;

/// Values shorter than this are not redacted (`true`, `8080`, ...): they
/// would blank innocent words, and are no secret worth the name.
const MIN_SECRET_LEN: usize = 8;

/// Whether an environment variable's name says its value is a secret (or
/// may be one: the rule leans towards redacting too much).
fn names_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PRIVATE",
        "KEY",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// The secret values among `vars`, longest first (so that a secret that
/// contains another is replaced whole).
pub(crate) fn secret_values(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<String> {
    let mut out: Vec<String> = vars
        .into_iter()
        .filter(|(k, _)| k.to_str().is_some_and(names_secret))
        .filter_map(|(_, v)| v.into_string().ok())
        .flat_map(|v| {
            // A PEM or a multi-line value: each line is a secret of its own.
            let lines: Vec<String> = v.lines().map(|l| l.trim().to_owned()).collect();
            std::iter::once(v).chain(lines)
        })
        .filter(|v| v.len() >= MIN_SECRET_LEN)
        .collect();
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// `message` with every secret replaced by `***`, on one line.
pub(crate) fn redact(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_owned();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out.replace(['\n', '\r'], " ")
}

/// Replaces the panic hook with the redacting one-line report.
pub fn install_panic_hook() {
    let secrets = secret_values(std::env::vars_os());
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info
            .location()
            .map(|l| format!(" at {}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        eprintln!(
            "panic in thread '{name}'{location}: {}",
            redact(message, &secrets)
        );
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn secret_variables_are_found_and_short_values_skipped() {
        let found = secret_values(vars(&[
            ("AMBIENT_API_TOKEN", "tok-1234567890"),
            ("OIDC_CLIENT_SECRET", "oidc-secret-value"),
            ("BOT_TOKEN", "short"),
            ("ANTHROPIC_API_KEY", "sk-ant-xyz-123"),
            ("PATH", "/usr/bin:/bin-long-enough"),
            (
                "AMBIENT_CP_TOKEN_PUBLIC_KEY",
                "-----BEGIN-----\nAAAABBBBCCCC\n-----END-----",
            ),
        ]));
        assert!(found.contains(&"tok-1234567890".to_owned()));
        assert!(found.contains(&"oidc-secret-value".to_owned()));
        assert!(found.contains(&"sk-ant-xyz-123".to_owned()));
        assert!(found.contains(&"AAAABBBBCCCC".to_owned()), "each PEM line");
        assert!(!found.iter().any(|v| v == "short" || v.contains("/usr/bin")));
    }

    #[test]
    fn redaction_replaces_every_occurrence_longest_first_on_one_line() {
        let secrets = secret_values(vars(&[
            ("A_TOKEN", "abcdefgh"),
            ("B_TOKEN", "abcdefgh-ijkl"),
        ]));
        let out = redact("x abcdefgh-ijkl y\nabcdefgh z", &secrets);
        assert_eq!(out, "x *** y *** z");
    }
}
