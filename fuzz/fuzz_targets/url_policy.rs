//! The URL policy on arbitrary input: nothing may panic, and for every URL
//! that is accepted the host that was checked is the host a client connects
//! to — the returned URL's host, the host as written in the raw text, and
//! the host of a fresh parse of the serialised URL all agree, and that host
//! passes the cluster-local rule.
#![no_main]

use ambient_protocol::url_policy::{cluster_local, is_cluster_local_host, token_url};
use libfuzzer_sys::fuzz_target;

/// The host of `raw` as a reader sees it: after the `://` of the required
/// prefix, up to the path, without userinfo (there is none when accepted)
/// and port; an IPv6 literal keeps its brackets.
fn host_as_written(raw: &str) -> Option<&str> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"))?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.starts_with('[') {
        return authority.find(']').map(|end| &authority[..=end]);
    }
    Some(authority.split_once(':').map_or(authority, |(h, _)| h))
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = token_url(raw) {
        let host = url.host_str().unwrap_or_default();
        assert!(!host.is_empty());
        assert_eq!(host_as_written(raw), Some(host));
        assert!(url.username().is_empty() && url.password().is_none());
        assert!(matches!(url.scheme(), "http" | "https"));
    }
    if let Ok(url) = cluster_local(raw) {
        let checked = url.host_str().unwrap_or_default();
        assert!(is_cluster_local_host(checked), "{checked:?}");
        assert_eq!(host_as_written(raw), Some(checked));
        let again = url::Url::parse(url.as_str()).ok();
        assert_eq!(again.as_ref().and_then(|u| u.host_str()), Some(checked));
    }
});
