use axum::http::Uri;

use super::*;

#[test]
fn token_url_table() {
    for ok in [
        "http://ambient-control-plane.ambient-code.svc:8080/token",
        "https://cp.example.com/token",
        "http://127.0.0.1:8080/token",
        "http://[::1]:8080/token",
        "http://cp:8080",
        "https://cp.example.com/token?x=1#f",
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
        ("http://cp:8080@evil.com/token", UrlError::Userinfo),
        ("not a url", UrlError::Character),
        // The parser reads host "token" here; as written there is none.
        ("http:///token", UrlError::NoHost),
        ("http://", UrlError::NoHost),
        ("http://:8080/token", UrlError::NoHost),
        ("", UrlError::Invalid),
        ("http://cp:notaport/token", UrlError::Invalid),
        ("http://cp:99999/token", UrlError::Invalid),
        ("HTTP://cp/token", UrlError::Prefix),
        ("Https://cp/token", UrlError::Prefix),
        ("http:cp/token", UrlError::Prefix),
        ("http:/cp/token", UrlError::Prefix),
        (" http://cp/token", UrlError::Character),
        ("http://cp/token ", UrlError::Character),
        ("http://cp/token\n", UrlError::Character),
        ("http://c\tp/token", UrlError::Character),
        ("http://cp\r/token", UrlError::Character),
        ("http://cp\\token", UrlError::Character),
        ("http://CP/token", UrlError::HostMismatch),
        ("http://127.1/token", UrlError::HostMismatch),
        ("http://%63p/token", UrlError::HostMismatch),
        ("http://[0:0::1]/token", UrlError::HostMismatch),
    ] {
        assert_eq!(token_url(bad).err(), Some(want), "{bad:?}");
    }
}

#[test]
fn errors_never_echo_the_url() {
    for raw in [
        "http://admin:s3cret@cp/token",
        "http:// admin:s3cret@cp/token",
        "HTTP://admin:s3cret@cp/token",
        "http://s3cret.example/x y",
    ] {
        let err = token_url(raw)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| panic!("{raw} accepted"));
        assert!(!err.contains("s3cret") && !err.contains("admin"), "{err}");
    }
}

#[test]
fn oidc_token_url_wants_https_unless_allowed() {
    assert!(oidc_token_url("https://sso.example.com/token", false).is_ok());
    assert_eq!(
        oidc_token_url("http://idp.example.com/token", false).err(),
        Some(UrlError::Insecure)
    );
    assert!(oidc_token_url("http://idp.example.com/token", true).is_ok());
    assert_eq!(
        oidc_token_url("http://u:p@idp/token", true).err(),
        Some(UrlError::Userinfo)
    );
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
        // quality.md: hosts
        "http://evil.com",
        "http://svc",
        "http://.svc",
        "http://a..svc",
        "http://x.svc.evil.com",
        "http://evil.svc.example.com",
        "http://10.0.0.1",
        "http://169.254.169.254/latest",
        "http://127.0.0.2",
        "http://127.1",
        "http://2130706433",
        "http://0x7f.0.0.1",
        "http://[::ffff:127.0.0.1]",
        "http://[0:0:0:0:0:0:0:1]",
        "http://X.SVC",
        "http://Api.ns.svc",
        "http://LOCALHOST",
        "http://x.svc.",
        "http://x.svc.cluster.local.",
        "http://localhost.",
        "http://user:pw@x.svc",
        "http://x.svc@evil.com",
        "http://svc.cluster.local",
        "http://-x.svc",
        "http://x_y.svc",
        "http://%78.svc",
        "ftp://x.svc",
        // quality.md and issue 9: URLs whose parsed host differs from a naive reading
        "http:evil.com/://x.svc/",
        "http:/evil.com/://x.svc",
        "http:\\\\evil.com\\://api.ns.svc:8000/",
        "HTTP:evil.com/://localhost",
        "http://evil.com\\@x.svc/",
        "http://evil.com\\.x.svc/",
        "http://x.svc\\@evil.com/",
        "http://x.s\tvc/",
        "http://x.svc\r\n/",
        "http://x.s\nvc/",
        " http://x.svc/",
        "http://x.svc/ ",
        "\thttp://x.svc/",
        "http:///x.svc",
        "http://evil.com#@x.svc",
        "http://evil.com?@x.svc",
    ] {
        assert!(cluster_local(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn host_rule_on_its_own() {
    assert!(is_cluster_local_host("x.svc"));
    assert!(is_cluster_local_host("::1"));
    assert!(is_cluster_local_host("[::1]"));
    assert!(!is_cluster_local_host(""));
    assert!(!is_cluster_local_host("svc.cluster.local"));
    assert!(!is_cluster_local_host("x.svc."));
}

/// The host of `raw` as a reader of the text sees it: after the `://` of
/// the required prefix, up to the path, without port.
fn host_as_written(raw: &str) -> Option<&str> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    Some(written_host(authority))
}

/// For an accepted URL, the host that was checked is the host every parser
/// on the way connects to: the URL we return, `http::Uri` (what hyper is
/// given), a re-parse of the serialised URL, and the host as written.
fn assert_checked_is_connected(raw: &str) {
    let Ok(url) = cluster_local(raw) else {
        return;
    };
    let checked = url.host_str().unwrap_or_else(|| panic!("{raw:?}: no host"));
    assert!(is_cluster_local_host(checked), "{raw:?} → {checked:?}");
    assert_eq!(host_as_written(raw), Some(checked), "{raw:?}");
    let uri: Uri = raw
        .parse()
        .unwrap_or_else(|e| panic!("{raw:?} accepted but http::Uri refuses it: {e}"));
    assert_eq!(uri.host(), Some(checked), "{raw:?}");
    let again = Url::parse(url.as_str()).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
    assert_eq!(again.host_str(), Some(checked), "{raw:?}");
    assert_eq!(url.username(), "", "{raw:?}");
}

#[test]
fn every_combination_of_tricky_parts_connects_to_the_checked_host() {
    let schemes = [
        "http://",
        "https://",
        "http:",
        "http:/",
        "HTTP://",
        "http:\\\\",
        "hTtP://",
        " http://",
        "http:///",
        "ftp://",
        "",
        "http:\\/",
    ];
    let userinfo = ["", "u@", "u:p@", "@", "x.svc@", "x.svc:80@", "evil.com@"];
    let hosts = [
        "x.svc",
        "evil.com",
        "X.SVC",
        "127.0.0.1",
        "127.1",
        "[::1]",
        "[0:0::1]",
        "localhost",
        "LOCALHOST",
        "x.svc.",
        "%78.svc",
        "evil.com\\",
        "x.svc.cluster.local",
        "a..svc",
        "0x7f.0.0.1",
        "[::ffff:127.0.0.1]",
        "x.svc\t",
        "",
        "evil.com/",
        "x.svc%2f",
    ];
    let ports = ["", ":8000", ":", ":abc", ":99999", ":80"];
    let tails = [
        "",
        "/",
        "/://x.svc/",
        "\\://x.svc",
        "?q=1",
        "#frag",
        "/a/../b",
        "@evil.com",
        "/@evil.com",
        "\\@evil.com",
        "#@evil.com",
        " ",
    ];
    let mut accepted = 0;
    let mut raw = String::new();
    for s in schemes {
        for u in userinfo {
            for h in hosts {
                for p in ports {
                    for t in tails {
                        raw.clear();
                        raw.extend([s, u, h, p, t]);
                        if cluster_local(&raw).is_ok() {
                            accepted += 1;
                        }
                        assert_checked_is_connected(&raw);
                    }
                }
            }
        }
    }
    // The table is not vacuous: plenty of combinations are fine.
    assert!(accepted > 100, "only {accepted} accepted");
}

#[test]
fn random_strings_connect_to_the_checked_host() {
    // A deterministic xorshift stream over an alphabet of URL metacharacters.
    const ALPHABET: &[&str] = &[
        "http://",
        "https://",
        "http:",
        "/",
        "\\",
        ":",
        "@",
        ".",
        "x",
        "svc",
        ".svc",
        "evil",
        ".com",
        "[",
        "]",
        "::1",
        "127.0.0.1",
        "localhost",
        "%",
        "2e",
        "?",
        "#",
        "8000",
        " ",
        "\t",
        "\n",
        "cluster",
        ".local",
        "X",
        "-",
        "0x7f",
        "1",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut raw = String::new();
    for _ in 0..200_000 {
        raw.clear();
        // Most strings start like a URL, so that many get past the prefix.
        if next() % 4 != 0 {
            raw.push_str(if next() % 2 == 0 {
                "http://"
            } else {
                "https://"
            });
        }
        let len = 1 + next() % 8;
        for _ in 0..len {
            let i = usize::try_from(next() % ALPHABET.len() as u64).unwrap_or(0);
            raw.push_str(ALPHABET[i]);
        }
        assert_checked_is_connected(&raw);
    }
}
