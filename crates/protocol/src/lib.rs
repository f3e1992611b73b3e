//! `ambient-protocol`: the one place for everything two daemons must agree on.
//!
//! - [`v1`]: the generated `ambient.v1` gRPC messages, clients and servers;
//! - [`exchange`]: the token exchange (v1 and v2 plaintexts, the v3 per-session proof, server-side checks);
//! - [`exchanger`]: [`TokenExchanger`], the shared client of the exchange;
//! - [`grpc`]: plain or TLS channels to the API server;
//! - [`keys`]: RSA key generation and PEM parse/emit;
//! - [`url_policy`]: which token URLs and credential hosts are acceptable;
//! - [`env`]: environment variable names;
//! - [`phase`]: session phases;
//! - [`provider`]: credential providers and their sidecars;
//! - [`backoff`]: capped exponential backoff with jitter;
//! - [`sse`]: server-sent events framing, for every SSE consumer;
//! - [`secret`]: [`Secret`], a string that never prints itself.

pub mod backoff;
pub mod env;
pub mod exchange;
pub mod exchanger;
pub mod grpc;
pub mod keys;
pub mod phase;
pub mod provider;
pub mod secret;
pub mod sse;
pub mod url_policy;

/// Generated code of the `ambient.v1` package (wire.md §1).
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod v1 {
    tonic::include_proto!("ambient.v1");
}

pub use exchanger::TokenExchanger;
pub use secret::Secret;

/// One RSA-4096 key shared by the unit tests (generation takes a while).
#[cfg(test)]
pub(crate) fn test_key() -> &'static keys::PrivateKey {
    static KEY: std::sync::OnceLock<keys::PrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| keys::PrivateKey::generate().unwrap_or_else(|e| panic!("keygen: {e}")))
}

#[cfg(test)]
mod wire_tests {
    use crate::v1;
    use prost::Message as _;

    /// `ambient.v1.Error` has the reference's field numbers and types: each
    /// field, encoded alone, starts with the tag `(number << 3) | wire type`.
    #[test]
    fn the_error_message_has_the_reference_fields() {
        let text = |n: u8| (n << 3) | 2;
        let cells: [(v1::Error, u8); 6] = [
            (
                v1::Error {
                    id: "i".into(),
                    ..Default::default()
                },
                text(1),
            ),
            (
                v1::Error {
                    kind: "Error".into(),
                    ..Default::default()
                },
                text(2),
            ),
            (
                v1::Error {
                    href: "/h".into(),
                    ..Default::default()
                },
                text(3),
            ),
            (
                v1::Error {
                    code: 404,
                    ..Default::default()
                },
                4 << 3,
            ),
            (
                v1::Error {
                    reason: "r".into(),
                    ..Default::default()
                },
                text(5),
            ),
            (
                v1::Error {
                    operation_id: "o".into(),
                    ..Default::default()
                },
                text(6),
            ),
        ];
        for (message, tag) in cells {
            let bytes = message.encode_to_vec();
            assert_eq!(bytes.first(), Some(&tag), "{message:?}");
        }
    }
}
