//! `SSL_CERT_FILE` / `SSL_CERT_DIR` naming a path that does not exist.
//!
//! Session pods set `SSL_CERT_FILE` (and friends) to the service-CA file of
//! an *optional* ConfigMap volume, as the reference does: on a cluster
//! without that ConfigMap the file is simply absent. Python and Go clients
//! then fall back to their default roots; rustls' native-certs loader
//! instead fails, and with it every HTTP client of the process. A missing
//! path therefore counts as unset, with one warning on stderr.

/// The variables rustls' native-certs loader reads.
const CA_VARS: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Removes `SSL_CERT_FILE`/`SSL_CERT_DIR` from the environment when they
/// name a path that does not exist, printing one warning line per variable.
/// Call it first thing in `main`, before any thread (or runtime) starts.
pub fn ignore_missing_ca_paths(prefix: &str) {
    for var in missing_ca_vars(|k| std::env::var_os(k)) {
        eprintln!("{prefix}: warning: {var} names no file; using the system roots");
        remove(var);
    }
}

/// The CA variables that are set but name nothing on disk.
fn missing_ca_vars(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Vec<&'static str> {
    CA_VARS
        .into_iter()
        .filter(|var| get(var).is_some_and(|p| !p.is_empty() && !std::path::Path::new(&p).exists()))
        .collect()
}

#[allow(unsafe_code)]
fn remove(var: &str) {
    // SAFETY: called at the start of `main`, before the process starts any
    // thread, so nothing can read the environment concurrently.
    unsafe { std::env::remove_var(var) }
}

#[cfg(test)]
mod tests {
    use super::missing_ca_vars;
    use std::ffi::OsString;

    #[test]
    fn only_set_paths_that_do_not_exist_count_as_missing() {
        let existing = std::env::temp_dir();
        let env = |k: &str| match k {
            "SSL_CERT_FILE" => Some(OsString::from("/no/such/service-ca.crt")),
            "SSL_CERT_DIR" => Some(existing.clone().into_os_string()),
            _ => None,
        };
        assert_eq!(missing_ca_vars(env), vec!["SSL_CERT_FILE"]);
        assert!(missing_ca_vars(|_| None).is_empty());
        assert!(missing_ca_vars(|_| Some(OsString::new())).is_empty());
    }
}
