//! The signing key ring: the *current* key signs; a *next* key is published
//! in the JWKS before it is used (so verifiers that cache the JWKS know it
//! when its first token arrives); a *retired* key stays published until the
//! last token it signed has expired, then is dropped.
//!
//! Rotation: `with_next(new)` → publish for at least the JWKS cache time of
//! your verifiers → `promote_next(now)` → `retire_expired(now)` from time to
//! time (harmless to call often).

use std::time::{Duration, SystemTime};

use super::jwt::{LEEWAY, MAX_LIFETIME};
use super::keys::{SigningKey, VerifyingKey};

/// A key that no longer signs, published until `until`.
#[derive(Debug, Clone)]
pub struct Retired {
    pub key: VerifyingKey,
    /// When every token it signed has expired (leeway included).
    pub until: SystemTime,
}

/// Current, next and retired signing keys.
#[derive(Debug, Clone)]
pub struct KeyRing {
    current: SigningKey,
    next: Option<SigningKey>,
    retired: Vec<Retired>,
}

impl KeyRing {
    /// A ring whose only key is `current`.
    pub fn new(current: SigningKey) -> Self {
        Self {
            current,
            next: None,
            retired: Vec::new(),
        }
    }

    /// Publishes `next` (not yet signing). Replaces a previous next key;
    /// ignored when `next` is the current key.
    pub fn with_next(mut self, next: SigningKey) -> Self {
        self.set_next(next);
        self
    }

    /// [`KeyRing::with_next`] in place.
    pub fn set_next(&mut self, next: SigningKey) {
        if next.kid() != self.current.kid() {
            self.next = Some(next);
        }
    }

    /// Publishes `key` as retired until `until` (e.g. a previous current
    /// key read back from storage).
    pub fn with_retired(mut self, key: VerifyingKey, until: SystemTime) -> Self {
        if key.kid() != self.current.kid() && self.find(key.kid()).is_none() {
            self.retired.push(Retired { key, until });
        }
        self
    }

    /// Makes the next key current; the old current key is retired until
    /// every token it may have signed (≤ [`MAX_LIFETIME`]) has expired,
    /// leeway included. `false` when there was no next key.
    pub fn promote_next(&mut self, now: SystemTime) -> bool {
        let Some(next) = self.next.take() else {
            return false;
        };
        let old = std::mem::replace(&mut self.current, next);
        self.retired.push(Retired {
            key: old.verifying_key().clone(),
            until: now + MAX_LIFETIME + LEEWAY + Duration::from_secs(1),
        });
        true
    }

    /// Drops the retired keys whose tokens have all expired at `now`;
    /// returns how many.
    pub fn retire_expired(&mut self, now: SystemTime) -> usize {
        let before = self.retired.len();
        self.retired.retain(|r| r.until > now);
        before - self.retired.len()
    }

    /// The key that signs.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// The key published to sign next, if any.
    pub fn next(&self) -> Option<&SigningKey> {
        self.next.as_ref()
    }

    /// The retired keys still published.
    pub fn retired(&self) -> &[Retired] {
        &self.retired
    }

    /// Every published key: current, next, retired.
    pub fn published(&self) -> impl Iterator<Item = &VerifyingKey> {
        std::iter::once(self.current.verifying_key())
            .chain(self.next.iter().map(SigningKey::verifying_key))
            .chain(self.retired.iter().map(|r| &r.key))
    }

    /// The published key named `kid`.
    pub fn find(&self, kid: &str) -> Option<&VerifyingKey> {
        self.published().find(|k| k.kid() == kid)
    }

    /// The JWKS document: `{"keys":[…]}`, current key first.
    pub fn jwks(&self) -> String {
        let keys: Vec<_> = self.published().map(VerifyingKey::jwk).collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}
