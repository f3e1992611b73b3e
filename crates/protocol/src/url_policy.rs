//! Which URLs our clients will talk to.
//!
//! - [`token_url`]: the control plane's token endpoint must be `http`/`https`,
//!   have a host and carry no userinfo (wire.md §3).
//! - [`cluster_local`]: credentials are only fetched from a cluster-local
//!   host: `localhost`, `127.0.0.1`, `::1`, or a lowercase DNS name ending in
//!   `.svc` or `.svc.cluster.local` with only non-empty labels (daemons.md).
//! - [`oidc_token_url`]: an OIDC token endpoint, `https` unless plain `http`
//!   is explicitly allowed.
//!
//! The decision is made on the host the URL parser yields — the one the
//! HTTP client connects to — and that host must read exactly as written in
//! the raw text. A URL is refused before parsing unless it starts with
//! exactly `http://` or `https://` and holds no whitespace, control
//! character or backslash: those are the inputs where a parser and a human
//! (or a naive check) disagree about the host, such as
//! `http:evil.com/://x.svc/` or `http:\\evil.com\://x.svc/`.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a URL was refused. Never echoes the raw URL (it may hold userinfo).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not a valid URL")]
    Invalid,
    #[error("URL contains whitespace, a control character or a backslash")]
    Character,
    #[error("URL must start with exactly http:// or https://")]
    Prefix,
    #[error("scheme {0:?} is not http or https")]
    Scheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("URL must not carry user credentials")]
    Userinfo,
    #[error(
        "the host as written is not the host the URL parser reads (write it in canonical form)"
    )]
    HostMismatch,
    #[error(
        "host {0:?} is not cluster-local (localhost, 127.0.0.1, ::1, *.svc or *.svc.cluster.local)"
    )]
    NotClusterLocal(String),
    #[error("plain http is refused for the OIDC token URL (use https, or allow it explicitly)")]
    Insecure,
}

const PREFIXES: [&str; 2] = ["http://", "https://"];

/// Validates a token URL: exactly `http://` or `https://`, no whitespace,
/// control character or backslash, no userinfo, and a non-empty host that
/// the parser reads exactly as written.
pub fn token_url(raw: &str) -> Result<Url, UrlError> {
    if raw.is_empty() {
        return Err(UrlError::Invalid);
    }
    if raw
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return Err(UrlError::Character);
    }
    let Some(rest) = PREFIXES.iter().find_map(|p| raw.strip_prefix(p)) else {
        return Err(match Url::parse(raw) {
            Ok(u) if !matches!(u.scheme(), "http" | "https") => {
                UrlError::Scheme(u.scheme().to_owned())
            }
            _ => UrlError::Prefix,
        });
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(UrlError::Userinfo);
    }
    let written = written_host(authority);
    if written.is_empty() {
        return Err(UrlError::NoHost);
    }
    let url = Url::parse(raw).map_err(|_| UrlError::Invalid)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Userinfo);
    }
    match url.host_str() {
        Some(parsed) if parsed == written => Ok(url),
        Some(_) => Err(UrlError::HostMismatch),
        None => Err(UrlError::NoHost),
    }
}

/// Validates an OIDC token endpoint: a [`token_url`] that is `https`, or
/// plain `http` only when `allow_insecure` (the client secret would
/// otherwise cross the network in the clear).
pub fn oidc_token_url(raw: &str, allow_insecure: bool) -> Result<Url, UrlError> {
    let url = token_url(raw)?;
    if url.scheme() == "http" && !allow_insecure {
        return Err(UrlError::Insecure);
    }
    Ok(url)
}

/// Validates a URL for credential fetches: a [`token_url`] whose parsed host
/// (domain, IPv4 or IPv6 — what the client connects to) is cluster-local.
pub fn cluster_local(raw: &str) -> Result<Url, UrlError> {
    let url = token_url(raw)?;
    let local = match url.host() {
        Some(Host::Domain(name)) => name == "localhost" || is_service_name(name),
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        None => false,
    };
    if local {
        Ok(url)
    } else {
        Err(UrlError::NotClusterLocal(
            url.host_str().unwrap_or_default().to_owned(),
        ))
    }
}

/// The host rule on its own, applied to a host exactly as written (no
/// normalisation: uppercase, trailing dots and other IPs are refused).
pub fn is_cluster_local_host(host: &str) -> bool {
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") || is_service_name(host)
}

/// `<labels>.svc` or `<labels>.svc.cluster.local`, lowercase, no empty label.
fn is_service_name(host: &str) -> bool {
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

/// The host of an authority (no userinfo) as written, without the port;
/// an IPv6 literal keeps its brackets, as `Url::host_str` gives it.
fn written_host(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split_once(':').map_or(authority, |(h, _)| h)
}

#[cfg(test)]
mod tests;
