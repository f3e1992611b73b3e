//! The minter and verifier of session tokens: one signing key ring, a
//! per-(session, project, generation) cache so that a client's refresh
//! rarely costs a signature, and counters for `/metrics`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use ambient_protocol::Secret;
use ambient_protocol::keys::KeyError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::jwt::{self, Claims, MAX_LIFETIME, Refusal, unix_secs};
use super::ring::KeyRing;
use crate::{SessionIdentity, VerifyToken};

/// Default session token lifetime (the longest allowed).
pub const DEFAULT_LIFETIME: Duration = MAX_LIFETIME;
/// Default bound on cached tokens.
pub const DEFAULT_CACHE_CAPACITY: usize = 65_536;

/// A minted session token and its expiry.
#[derive(Debug, Clone, PartialEq)]
pub struct Minted {
    pub token: Secret,
    pub expires_at: SystemTime,
}

/// A setting or key operation that failed. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("session token lifetime must be between 1 s and {} s", MAX_LIFETIME.as_secs())]
    Lifetime,
    #[error("cannot sign a session token: {0}")]
    Key(#[from] KeyError),
    #[error("randomness unavailable")]
    Random,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    session_id: String,
    project: String,
    generation: String,
}

/// Mints and verifies session tokens. Share it in an `Arc`.
pub struct SessionTokens {
    ring: RwLock<KeyRing>,
    lifetime: Duration,
    capacity: usize,
    cache: Mutex<HashMap<CacheKey, Minted>>,
    signed: AtomicU64,
    hits: AtomicU64,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("current_kid", &self.ring().current().kid())
            .field("lifetime", &self.lifetime)
            .field("cached", &self.cached_len())
            .field("signatures", &self.signatures())
            .finish_non_exhaustive()
    }
}

impl SessionTokens {
    /// A minter signing with `ring`'s current key, tokens valid `lifetime`
    /// (whole seconds, 1 s to 10 min).
    pub fn new(ring: KeyRing, lifetime: Duration) -> Result<Self, TokenError> {
        if lifetime < Duration::from_secs(1) || lifetime > MAX_LIFETIME {
            return Err(TokenError::Lifetime);
        }
        Ok(Self {
            ring: RwLock::new(ring),
            lifetime: Duration::from_secs(lifetime.as_secs()),
            capacity: DEFAULT_CACHE_CAPACITY,
            cache: Mutex::new(HashMap::new()),
            signed: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        })
    }

    /// Bounds the cache to `capacity` tokens (at least 1).
    pub fn with_cache_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity.max(1);
        self
    }

    /// The lifetime of the tokens minted.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The token for this session, project and pod generation: the cached
    /// one while at least a third of its lifetime remains at `now`, else a
    /// freshly signed one (cached in its place).
    pub fn mint(
        &self,
        session_id: &str,
        project: &str,
        generation: &str,
        now: SystemTime,
    ) -> Result<Minted, TokenError> {
        if let Some(hit) = self.cached(session_id, project, generation, now) {
            return Ok(hit);
        }
        let minted = self.sign(session_id, project, generation, now)?;
        self.remember(
            CacheKey {
                session_id: session_id.to_owned(),
                project: project.to_owned(),
                generation: generation.to_owned(),
            },
            minted.clone(),
            now,
        );
        Ok(minted)
    }

    /// The cached token, if it is still good for reuse at `now` (counted as
    /// a cache hit). Never signs: callers on an async runtime try this on
    /// the reactor and run [`SessionTokens::mint`] on the blocking pool
    /// only when it says `None`.
    pub fn cached(
        &self,
        session_id: &str,
        project: &str,
        generation: &str,
        now: SystemTime,
    ) -> Option<Minted> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let key = CacheKey {
            session_id: session_id.to_owned(),
            project: project.to_owned(),
            generation: generation.to_owned(),
        };
        let hit = cache.get(&key).filter(|m| self.reusable(m, now)).cloned()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(hit)
    }

    /// A freshly signed token, bypassing the cache (one RSA signature).
    pub fn sign(
        &self,
        session_id: &str,
        project: &str,
        generation: &str,
        now: SystemTime,
    ) -> Result<Minted, TokenError> {
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).map_err(|_| TokenError::Random)?;
        let iat = unix_secs(now);
        let claims = Claims::new(
            session_id,
            project,
            generation,
            iat,
            self.lifetime,
            URL_SAFE_NO_PAD.encode(jti),
        );
        let key = self
            .ring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current()
            .clone();
        let token = jwt::encode(&key, &claims)?;
        self.signed.fetch_add(1, Ordering::Relaxed);
        Ok(Minted {
            token: Secret::new(token),
            expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(claims.exp),
        })
    }

    fn reusable(&self, minted: &Minted, now: SystemTime) -> bool {
        minted
            .expires_at
            .duration_since(now)
            .is_ok_and(|left| left >= self.lifetime / 3)
    }

    fn remember(&self, key: CacheKey, minted: Minted, now: SystemTime) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.capacity && !cache.contains_key(&key) {
            cache.retain(|_, m| self.reusable(m, now));
            if cache.len() >= self.capacity {
                cache.clear();
            }
        }
        cache.insert(key, minted);
    }

    /// Tokens cached now (reusable or not).
    pub fn cached_len(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Signatures made so far.
    pub fn signatures(&self) -> u64 {
        self.signed.load(Ordering::Relaxed)
    }

    /// Tokens served from the cache so far.
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// A snapshot of the key ring.
    pub fn ring(&self) -> KeyRing {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes the key ring in place (rotation: `set_next`, `promote_next`,
    /// `retire_expired`). When the current key changes, the cached tokens
    /// are forgotten so that the new key signs from now on; tokens already
    /// handed out stay valid (their key stays published as retired until
    /// they expire).
    pub fn update_ring<R>(&self, change: impl FnOnce(&mut KeyRing) -> R) -> R {
        let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
        let before = ring.current().kid().to_owned();
        let result = change(&mut ring);
        if ring.current().kid() != before {
            self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        result
    }

    /// The JWKS document of the published keys.
    pub fn jwks(&self) -> String {
        self.ring.read().unwrap_or_else(|p| p.into_inner()).jwks()
    }

    /// Verifies `bearer` as a session token at `now`: RS256 under a
    /// published key (by `kid`), `exp` not past and `iat` not ahead (30 s
    /// leeway each), subject consistent with `sid`.
    pub fn verify_at(&self, bearer: &str, now: SystemTime) -> Result<SessionIdentity, Refusal> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let claims = jwt::decode(bearer, |kid| ring.find(kid), now)?;
        Ok(SessionIdentity {
            session_id: claims.sid,
            project: claims.project,
            generation: claims.generation,
        })
    }
}

impl VerifyToken for SessionTokens {
    fn verify(&self, bearer: &str) -> Option<SessionIdentity> {
        self.verify_at(bearer, SystemTime::now()).ok()
    }
}
