//! `ambient-session-gateway`: session tokens and the session gateway
//! (wire.md §3 "Session tokens and the session gateway").
//!
//! The token exchange answers a session's container with a *session token*,
//! a short-lived RS256 JWT bound to one session, never with the control
//! plane's own API token. A session pod is given one API endpoint, this
//! gateway, which accepts only session tokens and forwards, with the control
//! plane's identity, the calls its allow-list permits for that session.
//!
//! The control plane and the standalone token server embed it.

pub mod token;

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
