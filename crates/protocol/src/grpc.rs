//! Channels to the API server's gRPC side, plain or TLS, built one way for
//! every daemon.
//!
//! An address is `host:port` (scheme chosen by `use_tls`) or a URL
//! (`http://` or `https://`). TLS trusts the system roots plus, when given,
//! a CA file (e.g. the OpenShift service CA at
//! `/etc/pki/ca-trust/extracted/pem/service-ca.crt`).
//!
//! No silent downgrade: `use_tls` with an explicit `http://` address is
//! refused, not quietly served in plain text. Errors never echo the address
//! (it may carry credentials).

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A gRPC target could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    #[error("invalid gRPC address (expected host:port, http://host:port or https://host:port)")]
    Address,
    #[error("gRPC TLS is on but the address says http://: refusing to connect without TLS")]
    Downgrade,
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("TLS settings refused: {0}")]
    Tls(String),
}

/// `host:port` → `http(s)://host:port`; URLs are kept.
pub fn uri(addr: &str, use_tls: bool) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else if use_tls {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// An endpoint for `addr`: TLS when `use_tls` or the address says `https://`,
/// trusting the system roots and `ca_file`. Connection keepalive is on so a
/// dead peer is noticed by long-lived watches.
pub fn endpoint(addr: &str, use_tls: bool, ca_file: Option<&Path>) -> Result<Endpoint, GrpcError> {
    if addr.starts_with("http://") && use_tls {
        return Err(GrpcError::Downgrade);
    }
    if addr.contains("://") && !addr.starts_with("http://") && !addr.starts_with("https://") {
        return Err(GrpcError::Address);
    }
    if addr.contains('@') || addr.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(GrpcError::Address);
    }
    let uri = uri(addr, use_tls);
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|_| GrpcError::Address)?
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    if uri.starts_with("https://") {
        let mut tls = ClientTlsConfig::new().with_native_roots();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| GrpcError::CaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| GrpcError::Tls(e.to_string()))?;
    }
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_follows_the_tls_flag_unless_given() {
        assert_eq!(uri("api:9000", false), "http://api:9000");
        assert_eq!(uri("api:9000", true), "https://api:9000");
        assert_eq!(uri("https://api:9000", false), "https://api:9000");
        assert!(endpoint("api:9000", false, None).is_ok());
        assert!(endpoint("https://api:9000", true, None).is_ok());
        assert!(endpoint("http://api:9000", false, None).is_ok());
        assert_eq!(
            endpoint("not a uri", false, None).err(),
            Some(GrpcError::Address)
        );
        assert_eq!(
            endpoint("ftp://api:9000", false, None).err(),
            Some(GrpcError::Address)
        );
        assert!(matches!(
            endpoint("api:9000", true, Some(Path::new("/nonexistent/ca.crt"))),
            Err(GrpcError::CaFile { .. })
        ));
    }

    #[test]
    fn tls_with_an_explicit_http_address_is_refused() {
        assert_eq!(
            endpoint("http://api:9000", true, None).err(),
            Some(GrpcError::Downgrade)
        );
    }

    #[test]
    fn errors_never_echo_the_address() {
        for addr in [
            "http://user:s3cret@api:9000",
            "https://user:s3cret@api:9000",
            "user:s3cret@api:9000",
            "gopher://s3cret:9000",
            "s3cret api:9000",
            "http://s3cret-host:9000",
        ] {
            let err = endpoint(addr, true, None)
                .err()
                .unwrap_or_else(|| panic!("{addr} accepted"));
            let text = format!("{err} {err:?}");
            assert!(!text.contains("s3cret"), "{text}");
        }
    }
}
