//! Who is calling: a session token, verified, and admitted only while the
//! control plane says its session is live on the pod generation it was
//! minted for. Also the signal that ends a caller's open streams.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use crate::facts::{SessionFacts, SessionState};
use crate::{SessionIdentity, VerifyToken};

/// Why a bearer is not admitted. Both answer `401` / `UNAUTHENTICATED`:
/// the token no longer proves a live session, and a client that refreshes
/// it either gets a valid one (a new pod) or is refused by the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer`, or not a valid session token.
    BadToken,
    /// A valid token whose session is unknown, terminal, of another
    /// project, or on another pod generation.
    SessionEnded,
}

impl Refusal {
    /// The short reason given to the caller (never the token).
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::BadToken => "a valid session token is required",
            Refusal::SessionEnded => "the session of this token has ended or moved to a new pod",
        }
    }
}

/// The bearer of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The session state admits a token minted for `who`.
pub fn admits(state: Option<&SessionState>, who: &SessionIdentity) -> bool {
    state.is_some_and(|s| {
        s.live && s.project == who.project && s.generation.as_deref() == Some(&who.generation)
    })
}

/// Verifies `header` and checks the session's live facts.
pub fn authenticate(
    verify: &dyn VerifyToken,
    facts: &dyn SessionFacts,
    header: Option<&str>,
) -> Result<SessionIdentity, Refusal> {
    let who = bearer(header)
        .and_then(|t| verify.verify(t))
        .ok_or(Refusal::BadToken)?;
    if admits(facts.session(&who.session_id).as_ref(), &who) {
        Ok(who)
    } else {
        Err(Refusal::SessionEnded)
    }
}

/// Resolves when `who`'s session stops admitting its token (terminal,
/// deleted, new pod generation), driven by [`SessionFacts::subscribe`]:
/// the end of every stream the caller holds.
pub async fn ended(facts: Arc<dyn SessionFacts>, who: SessionIdentity) {
    let mut changes = facts.subscribe();
    loop {
        if !admits(facts.session(&who.session_id).as_ref(), &who) {
            return;
        }
        loop {
            match changes.recv().await {
                Ok(id) if id == who.session_id => break,
                Ok(_) => continue,
                Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> SessionIdentity {
        SessionIdentity {
            session_id: "s1".into(),
            project: "p".into(),
            generation: "g1".into(),
        }
    }

    fn state(live: bool, project: &str, generation: Option<&str>) -> SessionState {
        SessionState {
            project: project.into(),
            live,
            generation: generation.map(str::to_owned),
        }
    }

    #[test]
    fn only_a_live_session_on_the_minted_generation_is_admitted() {
        assert!(admits(Some(&state(true, "p", Some("g1"))), &who()));
        assert!(!admits(None, &who()));
        assert!(!admits(Some(&state(false, "p", Some("g1"))), &who()));
        assert!(!admits(Some(&state(true, "q", Some("g1"))), &who()));
        assert!(!admits(Some(&state(true, "p", Some("g2"))), &who()));
        assert!(!admits(Some(&state(true, "p", None)), &who()));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(None), None);
    }
}
