//! `ambient-session-gateway`: session tokens and the session gateway
//! (wire.md §3 "Session tokens and the session gateway").
//!
//! The token exchange answers a session's container with a *session token*,
//! a short-lived RS256 JWT bound to one session, never with the control
//! plane's own API token. A session pod is given one API endpoint, this
//! gateway, which accepts only session tokens and forwards, with the control
//! plane's identity, the calls its allow-list ([`allow`]) permits for that
//! session.
//!
//! The control plane and the standalone token server embed it:
//! ```text
//! let upstream = Upstream::new(&api_url, http_client, grpc_channel, Arc::new(cp_identity));
//! let gateway = Gateway::new(Arc::new(verifier), Arc::new(session_facts), upstream);
//! let tls = Some(GatewayTls::from_pem(&cert_pem, &key_pem)?);      // or None
//! gateway.serve(listener, tls, shutdown).await?;   // or mount gateway.router()
//! ```

pub mod access;
pub mod allow;
pub mod facts;
mod gateway;
mod grpc;
pub mod rest;
mod tls;
pub mod token;
mod upstream;

pub use facts::{SessionFacts, SessionState};
pub use gateway::Gateway;
pub use tls::{GatewayTls, TlsError};
pub use upstream::{Upstream, UpstreamAuth};

pub use token::{KeyRing, Minted, SessionTokens, SigningKey};

/// Whom a verified session token speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionIdentity {
    /// The session's ID (`sid` claim).
    pub session_id: String,
    /// The session's project (`project` claim).
    pub project: String,
    /// The pod generation the token was minted for (`gen` claim).
    pub generation: String,
}

/// Checks a bearer token's signature and lifetime and says whom it speaks
/// for. Implemented by [`token`]'s verifier; the gateway is generic over it
/// so its tests can use a stand-in.
pub trait VerifyToken: Send + Sync + 'static {
    /// The identity of a valid, unexpired session token; `None` for anything else.
    fn verify(&self, bearer: &str) -> Option<SessionIdentity>;
}
