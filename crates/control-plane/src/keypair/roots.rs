//! The exchange-v3 root keys (`K_root`, wire.md §3 "v3") beside the RSA key
//! in the keypair Secret: `session-root-<kid>` (standard base64 of the 32
//! bytes) per key and `session-root-index` naming the current key, the next
//! one (published to every replica's verifier half a rotation period before
//! session key files are derived from it) and the retired ones (verified
//! until `until`: one session-token lifetime after they stopped deriving,
//! time for every live session's key file to be rewritten and reach its
//! containers). The same data is a file in the process runtime.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ambient_protocol::Secret;
use ambient_protocol::exchange::v3::{RootKey, RootKeys};

/// Data-key prefix of a root key.
pub const KEY_PREFIX: &str = "session-root-";
/// Data key of the index.
pub const INDEX_KEY: &str = "session-root-index";
/// How long a root verifies after it stopped deriving: one session-token
/// lifetime (the previous root stays valid that long after a rotation).
pub const RETIRED_FOR: Duration = Duration::from_secs(600);

/// Why stored roots cannot be used (never shows a key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootsError {
    #[error("{INDEX_KEY} is not the expected JSON")]
    BadIndex,
    #[error("root key {0} is missing")]
    Missing(String),
    #[error("root key {0} is not 32 bytes of base64, or its kid does not match")]
    BadKey(String),
}

/// The roots: current (derives key files), next (verifies only), retired
/// (verify until their time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootRing {
    current: RootKey,
    next: Option<RootKey>,
    retired: Vec<(RootKey, SystemTime)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    current: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(default)]
    retired: Vec<Retired>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Retired {
    kid: String,
    until: u64,
}

/// What a rotation step did (kids are public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootStep {
    Published { next: String },
    Promoted { current: String, retired: String },
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl RootRing {
    /// A ring of one fresh root.
    pub fn generate() -> Result<Self, ambient_protocol::exchange::EncryptError> {
        Ok(Self::new(RootKey::generate()?))
    }

    /// A ring whose current root is `current`.
    pub fn new(current: RootKey) -> Self {
        Self {
            current,
            next: None,
            retired: Vec::new(),
        }
    }

    pub fn current(&self) -> &RootKey {
        &self.current
    }

    pub fn next(&self) -> Option<&RootKey> {
        self.next.as_ref()
    }

    /// The retired roots and until when they verify.
    pub fn retired(&self) -> &[(RootKey, SystemTime)] {
        &self.retired
    }

    /// What the token server verifies with and key files are derived
    /// from: current first, then next, then the retired.
    pub fn keys(&self, installation: &str) -> Option<RootKeys> {
        let roots = std::iter::once(&self.current)
            .chain(self.next.iter())
            .chain(self.retired.iter().map(|(k, _)| k))
            .cloned()
            .collect();
        RootKeys::new(installation, roots)
    }

    /// One rotation step at `now`: publish `fresh` as next when there is
    /// none, else promote next and retire the current root for
    /// [`RETIRED_FOR`]. Expired retired roots are dropped either way.
    pub fn step(&mut self, now: SystemTime, fresh: Option<RootKey>) -> Option<RootStep> {
        self.retire_expired(now);
        if let Some(next) = self.next.take() {
            let old = std::mem::replace(&mut self.current, next);
            let retired = old.kid().to_owned();
            self.retired.insert(0, (old, now + RETIRED_FOR));
            return Some(RootStep::Promoted {
                current: self.current.kid().to_owned(),
                retired,
            });
        }
        let fresh = fresh?;
        let next = fresh.kid().to_owned();
        self.next = Some(fresh);
        Some(RootStep::Published { next })
    }

    /// Drops the retired roots whose time has passed; how many.
    pub fn retire_expired(&mut self, now: SystemTime) -> usize {
        let before = self.retired.len();
        self.retired.retain(|(_, until)| *until > now);
        before - self.retired.len()
    }

    /// The ring as keypair-Secret data (keys and index).
    pub fn to_data(&self) -> BTreeMap<String, Secret> {
        let mut data = BTreeMap::new();
        for key in std::iter::once(&self.current)
            .chain(self.next.iter())
            .chain(self.retired.iter().map(|(k, _)| k))
        {
            data.insert(format!("{KEY_PREFIX}{}", key.kid()), key.to_base64());
        }
        let index = Index {
            current: self.current.kid().to_owned(),
            next: self.next.as_ref().map(|k| k.kid().to_owned()),
            retired: self
                .retired
                .iter()
                .map(|(k, until)| Retired {
                    kid: k.kid().to_owned(),
                    until: unix(*until),
                })
                .collect(),
        };
        data.insert(
            INDEX_KEY.to_owned(),
            Secret::new(serde_json::to_string(&index).unwrap_or_default()),
        );
        data
    }

    /// The ring in keypair-Secret data; `Ok(None)` when it holds none yet.
    /// Retired roots whose time has passed at `now` are left out.
    pub fn from_data(
        data: &BTreeMap<String, Secret>,
        now: SystemTime,
    ) -> Result<Option<Self>, RootsError> {
        let Some(index) = data.get(INDEX_KEY) else {
            return Ok(None);
        };
        let index: Index =
            serde_json::from_str(index.expose()).map_err(|_| RootsError::BadIndex)?;
        let load = |kid: &str| {
            let name = format!("{KEY_PREFIX}{kid}");
            let text = data
                .get(&name)
                .ok_or_else(|| RootsError::Missing(name.clone()))?;
            RootKey::from_base64(text.expose())
                .filter(|k| k.kid() == kid)
                .ok_or(RootsError::BadKey(name))
        };
        let mut ring = RootRing::new(load(&index.current)?);
        if let Some(next) = &index.next {
            ring.next = Some(load(next)?);
        }
        for r in &index.retired {
            let until = SystemTime::UNIX_EPOCH + Duration::from_secs(r.until);
            if until > now {
                ring.retired.push((load(&r.kid)?, until));
            }
        }
        Ok(Some(ring))
    }

    /// `data` with this ring written into it (other roots removed, other
    /// keys kept).
    pub fn write_into(&self, data: &mut BTreeMap<String, k8s_openapi::ByteString>) {
        data.retain(|k, _| !k.starts_with(KEY_PREFIX));
        for (k, v) in self.to_data() {
            data.insert(k, k8s_openapi::ByteString(v.expose().as_bytes().to_vec()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> RootKey {
        RootKey::generate().unwrap_or_else(|e| panic!("{e}"))
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    #[test]
    fn a_ring_survives_its_secret_data_and_an_expired_root_is_left_out() {
        let (a, b, c, gone) = (root(), root(), root(), root());
        let mut ring = RootRing::new(a.clone());
        ring.next = Some(b.clone());
        ring.retired = vec![(c.clone(), t0() + RETIRED_FOR), (gone.clone(), t0())];
        let back = RootRing::from_data(&ring.to_data(), t0()).unwrap_or_else(|e| panic!("{e}"));
        let back = back.unwrap_or_else(|| panic!("no ring"));
        assert_eq!(back.current(), &a);
        assert_eq!(back.next(), Some(&b));
        assert_eq!(back.retired(), &[(c.clone(), t0() + RETIRED_FOR)]);
        let keys = back.keys("inst").unwrap_or_else(|| panic!("no keys"));
        let kids: Vec<_> = keys.roots().iter().map(|k| k.kid().to_owned()).collect();
        assert_eq!(kids, [a.kid(), b.kid(), c.kid()], "current first");
        assert_eq!(RootRing::from_data(&BTreeMap::new(), t0()), Ok(None));
    }

    #[test]
    fn tampered_or_missing_roots_are_refused() {
        let ring = RootRing::new(root());
        let mut data = ring.to_data();
        let name = format!("{KEY_PREFIX}{}", ring.current().kid());
        data.insert(name.clone(), root().to_base64());
        assert_eq!(
            RootRing::from_data(&data, t0()),
            Err(RootsError::BadKey(name.clone()))
        );
        data.remove(&name);
        assert_eq!(
            RootRing::from_data(&data, t0()),
            Err(RootsError::Missing(name))
        );
        data.insert(INDEX_KEY.into(), Secret::new("{"));
        assert_eq!(RootRing::from_data(&data, t0()), Err(RootsError::BadIndex));
    }

    #[test]
    fn a_step_publishes_then_promotes_and_the_old_root_verifies_one_token_lifetime() {
        let (a, b) = (root(), root());
        let mut ring = RootRing::new(a.clone());
        assert_eq!(ring.step(t0(), None), None, "nothing to publish");
        assert_eq!(
            ring.step(t0(), Some(b.clone())),
            Some(RootStep::Published {
                next: b.kid().to_owned()
            })
        );
        assert_eq!(ring.current(), &a, "the next root does not derive yet");
        let later = t0() + Duration::from_secs(3600);
        assert_eq!(
            ring.step(later, Some(root())),
            Some(RootStep::Promoted {
                current: b.kid().to_owned(),
                retired: a.kid().to_owned()
            })
        );
        assert_eq!(ring.current(), &b);
        assert_eq!(ring.next(), None);
        assert_eq!(ring.retired(), &[(a.clone(), later + RETIRED_FOR)]);
        assert_eq!(ring.retire_expired(later + RETIRED_FOR), 1);
        assert!(ring.retired().is_empty());
    }
}
