//! What the exchange hands out (issue 25, wire.md §3 "Session tokens").

use std::sync::Arc;

use ambient_session_gateway::SessionTokens;

use crate::provider::TokenProvider;

/// The identity a session gets from the exchange.
#[derive(Clone)]
pub enum Identity {
    /// A session token: a short-lived JWT bound to the session, its project
    /// and its pod generation, verifiable under the JWKS served at
    /// `/.well-known/jwks.json`. The default.
    SessionTokens(Arc<SessionTokens>),
    /// The platform's own API token, as the reference does: every session
    /// acts as the control plane. Only for installations that cannot route
    /// session pods to the session gateway.
    Platform(Arc<dyn TokenProvider>),
}

impl Identity {
    /// The session-token minter, when that is the identity.
    pub fn session_tokens(&self) -> Option<&Arc<SessionTokens>> {
        match self {
            Identity::SessionTokens(t) => Some(t),
            Identity::Platform(_) => None,
        }
    }

    /// `session-tokens` or `platform`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Identity::SessionTokens(_) => "session-tokens",
            Identity::Platform(_) => "platform",
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::SessionTokens(t) => f.debug_tuple("SessionTokens").field(t).finish(),
            Identity::Platform(_) => f.write_str("Platform(..)"),
        }
    }
}
