//! Exchange v3 on the server (issue 26): the holder of the root keys and the
//! verification of an `Ambient-HMAC` request.
//!
//! The proof itself is `ambient_protocol::exchange::v3` (two HMACs, no
//! private-key operation); this module adds what the server owns: the
//! current [`RootKeys`], which the control plane replaces on rotation while
//! requests are being served ([`V3Roots`]), and the order of the checks
//! around the proof (the liveness of the session, the caller binding and the
//! generation are the routes' steps, shared with v1/v2).

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ambient_protocol::exchange::v3::{RootKeys, V3Claim};
use ambient_protocol::exchange::{NonceCache, Rejection};

/// The current root keys of exchange v3, shared by everything that holds a
/// clone (cheap to clone): the token server verifies with what
/// [`V3Roots::get`] returns at the time of each request, and the control
/// plane [`V3Roots::replace`]s them on rotation (current root first, the
/// previous one kept for a token lifetime).
///
/// Without roots (`V3Roots::new(None)` or [`V3Roots::default`]) every v3
/// request is refused with 401.
#[derive(Clone, Default)]
pub struct V3Roots {
    roots: Arc<RwLock<Option<Arc<RootKeys>>>>,
}

impl V3Roots {
    /// A holder of `roots` (none: v3 refused until [`V3Roots::replace`]).
    pub fn new(roots: Option<RootKeys>) -> Self {
        Self {
            roots: Arc::new(RwLock::new(roots.map(Arc::new))),
        }
    }

    /// Makes `roots` the ones every clone verifies with from now on.
    pub fn replace(&self, roots: RootKeys) {
        *self.roots.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(roots));
    }

    /// The current roots, if any.
    pub fn get(&self) -> Option<Arc<RootKeys>> {
        self.roots.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl std::fmt::Debug for V3Roots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The kids only: never a key.
        let kids: Vec<String> = self
            .get()
            .map(|r| r.roots().iter().map(|k| k.kid().to_owned()).collect())
            .unwrap_or_default();
        f.debug_struct("V3Roots").field("kids", &kids).finish()
    }
}

/// Verifies a v3 `Authorization` value of a `GET` to `path` with the current
/// roots: the MAC, the time window and the nonce. No roots → `UnknownKeyId`
/// (401).
pub(crate) fn verify(
    roots: &V3Roots,
    header: &[u8],
    path: &str,
    now: SystemTime,
    nonces: &NonceCache,
) -> Result<V3Claim, Rejection> {
    let roots = roots.get().ok_or(Rejection::UnknownKeyId)?;
    roots.verify(Some(header), "GET", path, now, nonces)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ambient_protocol::exchange::v3::RootKey;

    use super::*;

    fn root() -> RootKey {
        RootKey::generate().unwrap_or_else(|e| panic!("{e}"))
    }

    fn keys(roots: Vec<RootKey>) -> RootKeys {
        RootKeys::new("install-1", roots).unwrap_or_else(|| panic!("no root"))
    }

    fn nonces() -> NonceCache {
        NonceCache::new(64, Duration::from_secs(60))
    }

    #[test]
    fn clones_see_a_replacement_and_no_roots_refuse() {
        let holder = V3Roots::new(None);
        let clone = holder.clone();
        let old = root();
        let file = keys(vec![old.clone()]).key_file("session-0001", "g1");
        let now = SystemTime::now();
        let header = file
            .authorization("GET", "/token", now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verify(&clone, header.as_bytes(), "/token", now, &nonces()),
            Err(Rejection::UnknownKeyId)
        );

        holder.replace(keys(vec![old.clone()]));
        let claim = verify(&clone, header.as_bytes(), "/token", now, &nonces())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(claim.session_id, "session-0001");

        // Rotation: a new current root, the old one kept; then the old one dropped.
        let new = root();
        holder.replace(keys(vec![new.clone(), old.clone()]));
        let header = file
            .authorization("GET", "/token", now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(verify(&clone, header.as_bytes(), "/token", now, &nonces()).is_ok());
        holder.replace(keys(vec![new]));
        let header = file
            .authorization("GET", "/token", now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verify(&clone, header.as_bytes(), "/token", now, &nonces()),
            Err(Rejection::UnknownKeyId)
        );
    }

    #[test]
    fn the_mac_covers_the_path() {
        let holder = V3Roots::new(Some(keys(vec![root()])));
        let file = holder
            .get()
            .unwrap_or_else(|| panic!("roots"))
            .key_file("session-0001", "g1");
        let now = SystemTime::now();
        let header = file
            .authorization("GET", "/token", now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            verify(&holder, header.as_bytes(), "/other", now, &nonces()),
            Err(Rejection::BadMac)
        );
    }

    #[test]
    fn debug_shows_kids_only() {
        let r = root();
        let encoded = r.to_base64();
        let holder = V3Roots::new(Some(keys(vec![r.clone()])));
        let shown = format!("{holder:?}");
        assert!(shown.contains(r.kid()), "{shown}");
        assert!(!shown.contains(encoded.expose()), "{shown}");
    }
}
