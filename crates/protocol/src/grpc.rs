//! Channels to the API server's gRPC side, plain or TLS, built one way for
//! every daemon.
//!
//! An address is `host:port` (scheme chosen by `use_tls`) or a URL
//! (`http://` or `https://`). TLS trusts the system roots plus, when given,
//! a CA file (e.g. the OpenShift service CA at
//! `/etc/pki/ca-trust/extracted/pem/service-ca.crt`).

use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// A gRPC target could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrpcError {
    #[error("invalid gRPC address {0:?}")]
    Address(String),
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
    let uri = uri(addr, use_tls);
    let mut endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|_| GrpcError::Address(addr.to_owned()))?
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
        assert!(endpoint("not a uri", false, None).is_err());
        assert!(matches!(
            endpoint("api:9000", true, Some(Path::new("/nonexistent/ca.crt"))),
            Err(GrpcError::CaFile { .. })
        ));
    }
}
