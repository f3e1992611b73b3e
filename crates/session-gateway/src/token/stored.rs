//! The signing keys in the control plane's keypair Secret, beside the
//! exchange key (`private.pem`, `public.pem`):
//!
//! - `session-signing-<kid>.pem`: a private signing key (PKCS#8 PEM), one
//!   per current and next key;
//! - `session-signing.json`: the index telling them apart,
//!   `{"current":"<kid>","next":"<kid>","retired":[{"kid","n","e","until"}]}`
//!   (`next` absent when there is none; a retired key keeps only its public
//!   half, `until` in Unix seconds).
//!
//! A data key not named by the index is ignored (a key being written by
//! another replica, or one left behind).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ambient_protocol::Secret;
use ambient_protocol::keys::KeyError;
use serde::{Deserialize, Serialize};

use super::jwt::unix_secs;
use super::keys::{SigningKey, VerifyingKey};
use super::ring::KeyRing;

/// Data key of the index.
pub const INDEX_KEY: &str = "session-signing.json";

/// Data key of the private signing key named `kid`.
pub fn key_name(kid: &str) -> String {
    format!("session-signing-{kid}.pem")
}

/// The stored keys could not be read. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{INDEX_KEY} is missing")]
    NoIndex,
    #[error("{INDEX_KEY} is not the expected JSON")]
    BadIndex,
    #[error("the signing key {0} named by {INDEX_KEY} is missing")]
    MissingKey(String),
    #[error("the signing key {name} does not parse: {error}")]
    BadKey { name: String, error: KeyError },
    #[error("the signing key {0} does not have the kid its name says")]
    WrongKid(String),
}

#[derive(Serialize, Deserialize)]
struct Index {
    current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(default)]
    retired: Vec<RetiredEntry>,
}

#[derive(Serialize, Deserialize)]
struct RetiredEntry {
    kid: String,
    n: String,
    e: String,
    until: u64,
}

impl KeyRing {
    /// The ring as keypair-Secret data: the index and one PEM per key that
    /// signs or will sign.
    pub fn to_secret_data(&self) -> Result<BTreeMap<String, Secret>, KeyError> {
        let mut data = BTreeMap::new();
        for key in std::iter::once(self.current()).chain(self.next()) {
            data.insert(key_name(key.kid()), Secret::new(key.to_pem()?));
        }
        let retired = self
            .retired()
            .iter()
            .map(|r| {
                let jwk = r.key.jwk();
                let member = |m: &str| jwk[m].as_str().unwrap_or_default().to_owned();
                RetiredEntry {
                    kid: r.key.kid().to_owned(),
                    n: member("n"),
                    e: member("e"),
                    until: unix_secs(r.until),
                }
            })
            .collect();
        let index = Index {
            current: self.current().kid().to_owned(),
            next: self.next().map(|k| k.kid().to_owned()),
            retired,
        };
        let index =
            serde_json::to_string(&index).map_err(|_| KeyError::Rejected("index".into()))?;
        data.insert(INDEX_KEY.to_owned(), Secret::new(index));
        Ok(data)
    }

    /// Reads a ring back from keypair-Secret data. Retired keys whose time
    /// has passed at `now` are left out.
    pub fn from_secret_data(
        data: &BTreeMap<String, Secret>,
        now: SystemTime,
    ) -> Result<Self, StoreError> {
        let index = data.get(INDEX_KEY).ok_or(StoreError::NoIndex)?;
        let index: Index =
            serde_json::from_str(index.expose()).map_err(|_| StoreError::BadIndex)?;
        let load = |kid: &str| {
            let name = key_name(kid);
            let pem = data
                .get(&name)
                .ok_or_else(|| StoreError::MissingKey(name.clone()))?;
            let key = SigningKey::from_pem(pem.expose()).map_err(|error| StoreError::BadKey {
                name: name.clone(),
                error,
            })?;
            if key.kid() == kid {
                Ok(key)
            } else {
                Err(StoreError::WrongKid(name))
            }
        };
        let mut ring = KeyRing::new(load(&index.current)?);
        if let Some(next) = &index.next {
            ring.set_next(load(next)?);
        }
        for r in index.retired {
            let jwk = serde_json::json!({"kty": "RSA", "n": r.n, "e": r.e});
            let key = VerifyingKey::from_jwk(&jwk).map_err(|error| StoreError::BadKey {
                name: format!("retired {}", r.kid),
                error,
            })?;
            let until = SystemTime::UNIX_EPOCH + Duration::from_secs(r.until);
            ring = ring.with_retired(key, until);
        }
        ring.retire_expired(now);
        Ok(ring)
    }
}
