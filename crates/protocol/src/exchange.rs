//! The token exchange of wire.md §3: what a client encrypts and what the
//! server accepts.
//!
//! Client side: [`encrypt_v1`] / [`encrypt_v2`] produce the bearer value.
//! Server side: [`decode_bearer`] → [`KeySet::decrypt`] → [`check_plaintext`]
//! (or all three through [`Verifier::verify`]) yield a [`SessionClaim`] or a
//! typed [`Rejection`] that maps to 401/403. Nothing here echoes a token, a
//! ciphertext or a plaintext in an error.
//!
//! ```
//! use std::time::SystemTime;
//! use ambient_protocol::exchange::{encrypt_v2, KeySet, Protocol, Rejection, Verifier};
//! use ambient_protocol::keys::PrivateKey;
//!
//! let key = PrivateKey::generate()?;
//! let bearer = encrypt_v2(key.public_key(), "session-0001", SystemTime::now())?;
//! let header = format!("Bearer {bearer}");
//!
//! let verifier = Verifier::new(KeySet::new(vec![key]).ok_or("no key")?, true);
//! let claim = verifier.verify(Some(header.as_bytes()), SystemTime::now())?;
//! assert_eq!((claim.session_id.as_str(), claim.protocol), ("session-0001", Protocol::V2));
//! // The same bearer a second time is a replay.
//! let replay = verifier.verify(Some(header.as_bytes()), SystemTime::now());
//! assert_eq!(replay.map_err(Rejection::status), Err(401));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::keys::{KeyError, PrivateKey, PublicKey};
use crate::secret::Secret;

pub mod v3;

/// Minimum length of a session ID (v1 rule 4).
pub const MIN_SESSION_ID_LEN: usize = 8;
/// Allowed clock skew for a v2 `iat`.
pub const V2_SKEW: Duration = Duration::from_secs(60);
/// Minimum decoded length of a v2 nonce.
pub const MIN_NONCE_BYTES: usize = 16;
/// Default bound on remembered v2 nonces (~16 MiB at most). Each entry costs
/// the sender one RSA-4096 decryption, so filling it inside the 60 s window
/// takes more than 4 000 decryptions/s — beyond what the server's bounded key
/// operations give on small nodes; a full cache fails closed (503).
pub const DEFAULT_NONCE_CAPACITY: usize = 262_144;

/// Which plaintext form a client spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Bare session ID (the reference protocol).
    V1,
    /// JSON `{"v":2,"sid","iat","nonce"}` (replay-resistant).
    V2,
    /// `Ambient-HMAC` proof of a per-session key ([`v3`]).
    V3,
}

impl Protocol {
    /// `"v1"` / `"v2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
            Protocol::V3 => "v3",
        }
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" | "1" => Ok(Protocol::V1),
            "v2" | "2" => Ok(Protocol::V2),
            "v3" | "3" => Ok(Protocol::V3),
            other => Err(format!(
                "unknown exchange protocol {other:?} (expected v1, v2 or v3)"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified request for a session's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaim {
    pub session_id: String,
    pub protocol: Protocol,
}

/// Why an exchange was refused. `Display` is the short text sent in the
/// response body and never contains request material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Rejection {
    #[error("missing bearer token")]
    MissingBearer,
    #[error("more than one Authorization header")]
    AmbiguousBearer,
    #[error("invalid bearer encoding")]
    BadBase64,
    #[error("bearer does not decrypt")]
    Decrypt,
    #[error("v1 exchange refused: this server requires v2")]
    V1Refused,
    #[error("malformed v2 request")]
    MalformedV2,
    #[error("v1/v2 exchange refused: this server requires v3")]
    V3Required,
    #[error("malformed v3 request")]
    MalformedV3,
    #[error("unknown v3 key id")]
    UnknownKeyId,
    #[error("v3 proof does not verify")]
    BadMac,
    #[error("request is stale")]
    StaleIat,
    #[error("request is from the future")]
    FutureIat,
    #[error("nonce already used")]
    ReplayedNonce,
    #[error("server busy")]
    NonceCacheFull,
    #[error("invalid session id")]
    BadSessionId,
    #[error("session is not live")]
    SessionNotLive,
    #[error("not the session's current pod generation")]
    StaleGeneration,
}

impl Rejection {
    /// The HTTP status of wire.md §3.
    pub fn status(self) -> u16 {
        match self {
            Rejection::MissingBearer
            | Rejection::AmbiguousBearer
            | Rejection::BadBase64
            | Rejection::Decrypt
            | Rejection::V1Refused
            | Rejection::MalformedV2
            | Rejection::V3Required
            | Rejection::MalformedV3
            | Rejection::UnknownKeyId
            | Rejection::BadMac
            | Rejection::StaleIat
            | Rejection::FutureIat
            | Rejection::ReplayedNonce => 401,
            Rejection::BadSessionId | Rejection::SessionNotLive | Rejection::StaleGeneration => 403,
            Rejection::NonceCacheFull => 503,
        }
    }

    /// A stable snake_case name for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::MissingBearer => "missing_bearer",
            Rejection::AmbiguousBearer => "ambiguous_bearer",
            Rejection::BadBase64 => "bad_base64",
            Rejection::Decrypt => "decrypt",
            Rejection::V1Refused => "v1_refused",
            Rejection::MalformedV2 => "malformed_v2",
            Rejection::V3Required => "v3_required",
            Rejection::MalformedV3 => "malformed_v3",
            Rejection::UnknownKeyId => "unknown_key_id",
            Rejection::BadMac => "bad_mac",
            Rejection::StaleIat => "stale_iat",
            Rejection::FutureIat => "future_iat",
            Rejection::ReplayedNonce => "replayed_nonce",
            Rejection::NonceCacheFull => "nonce_cache_full",
            Rejection::BadSessionId => "bad_session_id",
            Rejection::SessionNotLive => "session_not_live",
            Rejection::StaleGeneration => "stale_generation",
        }
    }
}

/// The JSON body of a successful exchange.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TokenResponse {
    pub token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

// ---------------------------------------------------------------- client side

/// The v2 plaintext.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct V2Plaintext {
    v: u8,
    sid: String,
    iat: i64,
    nonce: String,
}

/// Errors of the client-side encryption.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptError {
    #[error("plaintext of {len} bytes does not fit one OAEP block ({max} bytes)")]
    TooLong { len: usize, max: usize },
    #[error("system random generator failed")]
    Random,
    #[error("exchange v3 needs the session key file, not the public key")]
    NeedsSessionKey,
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// The v1 bearer: base64(OAEP(session_id)).
pub fn encrypt_v1(key: &PublicKey, session_id: &str) -> Result<String, EncryptError> {
    encrypt_plaintext(key, session_id.as_bytes())
}

/// The v2 bearer for `now`, with a fresh 18-byte random nonce.
pub fn encrypt_v2(
    key: &PublicKey,
    session_id: &str,
    now: SystemTime,
) -> Result<String, EncryptError> {
    let mut nonce = [0u8; 18];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| EncryptError::Random)?;
    let plaintext = V2Plaintext {
        v: 2,
        sid: session_id.to_owned(),
        iat: unix_seconds(now),
        nonce: STANDARD.encode(nonce),
    };
    let json = serde_json::to_vec(&plaintext).unwrap_or_default();
    encrypt_plaintext(key, &json)
}

/// The bearer for `protocol`.
pub fn encrypt(
    key: &PublicKey,
    protocol: Protocol,
    session_id: &str,
) -> Result<String, EncryptError> {
    match protocol {
        Protocol::V1 => encrypt_v1(key, session_id),
        Protocol::V2 => encrypt_v2(key, session_id, SystemTime::now()),
        Protocol::V3 => Err(EncryptError::NeedsSessionKey),
    }
}

/// base64(OAEP(plaintext)) for an arbitrary plaintext (tests and tools).
pub fn encrypt_plaintext(key: &PublicKey, plaintext: &[u8]) -> Result<String, EncryptError> {
    let max = key.max_plaintext_len();
    if plaintext.len() > max {
        return Err(EncryptError::TooLong {
            len: plaintext.len(),
            max,
        });
    }
    Ok(STANDARD.encode(key.encrypt(plaintext)?))
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

// ---------------------------------------------------------------- server side

/// Extracts and base64-decodes the bearer of an `Authorization` header value.
/// Only standard, padded base64 is accepted (wire.md §3).
pub fn decode_bearer(header: Option<&[u8]>) -> Result<Vec<u8>, Rejection> {
    let header = header.ok_or(Rejection::MissingBearer)?;
    let b64 = header
        .strip_prefix(b"Bearer ")
        .ok_or(Rejection::MissingBearer)?;
    if b64.is_empty() {
        return Err(Rejection::MissingBearer);
    }
    STANDARD.decode(b64).map_err(|_| Rejection::BadBase64)
}

/// The private keys a server decrypts with: the first is current (its public
/// half is published); the others are kept during a rotation.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<PrivateKey>,
}

impl KeySet {
    /// A key set; `keys` must not be empty.
    pub fn new(keys: Vec<PrivateKey>) -> Option<Self> {
        (!keys.is_empty()).then_some(Self { keys })
    }

    /// The current key.
    pub fn current(&self) -> &PrivateKey {
        &self.keys[0]
    }

    /// All keys, current first.
    pub fn keys(&self) -> &[PrivateKey] {
        &self.keys
    }

    /// Decrypts with each key in turn. The plaintext buffer is wiped on drop.
    pub fn decrypt(&self, ciphertext: &[u8]) -> Result<Plaintext, Rejection> {
        for key in &self.keys {
            if ciphertext.len() != key.ciphertext_len() {
                continue;
            }
            let mut buf = vec![0u8; key.ciphertext_len()];
            if let Some(n) = key.decrypt(ciphertext, &mut buf) {
                buf.truncate(n);
                return Ok(Plaintext(buf));
            }
            wipe(&mut buf);
        }
        Err(Rejection::Decrypt)
    }
}

/// A decrypted plaintext; never printed, wiped on drop.
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

fn wipe(buf: &mut [u8]) {
    buf.fill(0);
    // Keeps the stores observable so the wipe is not optimised away.
    std::hint::black_box(buf);
}

/// Bounded memory of v2 nonces seen inside the skew window.
#[derive(Debug)]
pub struct NonceCache {
    inner: Mutex<NonceInner>,
    capacity: usize,
    window: Duration,
}

#[derive(Debug, Default)]
struct NonceInner {
    /// nonce digest → unix second after which it may be forgotten
    seen: HashMap<[u8; 16], i64>,
    order: VecDeque<([u8; 16], i64)>,
}

impl NonceCache {
    /// A cache remembering at most `capacity` nonces for `window`.
    pub fn new(capacity: usize, window: Duration) -> Self {
        Self {
            inner: Mutex::new(NonceInner::default()),
            capacity: capacity.max(1),
            window,
        }
    }

    /// Records `nonce` (issued at `iat`); `Err` when it was already seen or
    /// when the cache is full of unexpired nonces (fail closed).
    pub fn insert(&self, nonce: &[u8], iat: i64, now: i64) -> Result<(), Rejection> {
        let digest = nonce_digest(nonce);
        // Forget a nonce only once its iat can no longer pass the window check.
        let expires = iat.saturating_add(self.window.as_secs() as i64).max(now);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((d, exp)) = inner.order.front().copied() {
            if exp >= now {
                break;
            }
            inner.order.pop_front();
            if inner.seen.get(&d) == Some(&exp) {
                inner.seen.remove(&d);
            }
        }
        if inner.seen.contains_key(&digest) {
            return Err(Rejection::ReplayedNonce);
        }
        if inner.seen.len() >= self.capacity {
            return Err(Rejection::NonceCacheFull);
        }
        inner.seen.insert(digest, expires);
        // Keep `order` sorted by expiry: entries arrive nearly sorted, insert in place.
        let pos = inner.order.partition_point(|(_, e)| *e <= expires);
        inner.order.insert(pos, (digest, expires));
        Ok(())
    }

    /// How long a nonce is remembered past its timestamp (the skew window).
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Number of remembered nonces.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.seen.len()).unwrap_or(0)
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn nonce_digest(nonce: &[u8]) -> [u8; 16] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, nonce);
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    out
}

/// Applies the plaintext rules (v1 rule 4; v2 shape, window and nonce) to a
/// decrypted plaintext. The session check (rule 5) is the caller's.
pub fn check_plaintext(
    plaintext: &[u8],
    now: SystemTime,
    nonces: &NonceCache,
    require_v2: bool,
) -> Result<SessionClaim, Rejection> {
    if plaintext.first() == Some(&b'{') {
        let parsed: V2Plaintext =
            serde_json::from_slice(plaintext).map_err(|_| Rejection::MalformedV2)?;
        if parsed.v != 2 {
            return Err(Rejection::MalformedV2);
        }
        let nonce = STANDARD
            .decode(parsed.nonce.as_bytes())
            .map_err(|_| Rejection::MalformedV2)?;
        if nonce.len() < MIN_NONCE_BYTES {
            return Err(Rejection::MalformedV2);
        }
        let now = unix_seconds(now);
        let skew = nonces.window.as_secs() as i64;
        if parsed.iat < now.saturating_sub(skew) {
            return Err(Rejection::StaleIat);
        }
        if parsed.iat > now.saturating_add(skew) {
            return Err(Rejection::FutureIat);
        }
        nonces.insert(&nonce, parsed.iat, now)?;
        check_session_id(&parsed.sid)?;
        Ok(SessionClaim {
            session_id: parsed.sid,
            protocol: Protocol::V2,
        })
    } else {
        if require_v2 {
            return Err(Rejection::V1Refused);
        }
        let id = std::str::from_utf8(plaintext).map_err(|_| Rejection::BadSessionId)?;
        check_session_id(id)?;
        Ok(SessionClaim {
            session_id: id.to_owned(),
            protocol: Protocol::V1,
        })
    }
}

/// v1 rule 4: at least 8 bytes, no space, tab, CR or LF.
pub fn check_session_id(id: &str) -> Result<(), Rejection> {
    if id.len() < MIN_SESSION_ID_LEN
        || id
            .bytes()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
    {
        return Err(Rejection::BadSessionId);
    }
    Ok(())
}

/// Server-side verification of an `Authorization` header: rules 2–4 of v1 and
/// the v2 rules. The caller applies method (1) and session (5) checks.
#[derive(Debug)]
pub struct Verifier {
    keys: KeySet,
    nonces: NonceCache,
    require_v2: bool,
}

impl Verifier {
    /// A verifier with the default skew window and nonce capacity.
    pub fn new(keys: KeySet, require_v2: bool) -> Self {
        Self::with_nonces(
            keys,
            require_v2,
            NonceCache::new(DEFAULT_NONCE_CAPACITY, V2_SKEW),
        )
    }

    /// A verifier with an explicit nonce cache.
    pub fn with_nonces(keys: KeySet, require_v2: bool, nonces: NonceCache) -> Self {
        Self {
            keys,
            nonces,
            require_v2,
        }
    }

    /// The key set.
    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// Verifies a raw `Authorization` header value at `now`.
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<SessionClaim, Rejection> {
        let ciphertext = decode_bearer(header)?;
        let plaintext = self.keys.decrypt(&ciphertext)?;
        check_plaintext(plaintext.as_bytes(), now, &self.nonces, self.require_v2)
    }
}

#[cfg(test)]
mod tests;
