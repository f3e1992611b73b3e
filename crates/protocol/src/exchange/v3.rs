//! Exchange v3 (wire.md §3, ours): proof of possession of a per-session key,
//! verified with two HMACs instead of a private-key operation.
//!
//! - The server holds one or more [`RootKey`]s (`K_root`, named by a `kid`).
//! - Each session's containers get `K_s = HMAC(K_root, "ambient-v3" ‖
//!   installation ‖ sid ‖ generation)` as a [`SessionKeyFile`], a read-only
//!   file named by `AMBIENT_SESSION_KEY_FILE`, never an environment value.
//! - A request carries `Authorization: Ambient-HMAC kid=…,sid=…,gen=…,ts=…,
//!   nonce=…,mac=…` ([`SessionKeyFile::authorization`]); the server parses it
//!   ([`parse_header`]), re-derives `K_s` and checks the MAC in constant time,
//!   the time window and the nonce ([`RootKeys::verify`]). Liveness of the
//!   session and its current generation are the caller's checks.
//!
//! The parts of the derivation and of the MAC are joined with `\n`: none of
//! them may contain one (installation IDs are label values, session IDs are
//! refused with whitespace, the others are checked here), so no two inputs
//! share an encoding.
//!
//! ```
//! use std::time::SystemTime;
//! use ambient_protocol::exchange::NonceCache;
//! use ambient_protocol::exchange::v3::{RootKey, RootKeys, SessionKeyFile};
//!
//! let root = RootKey::generate()?;
//! let file = SessionKeyFile::derive(&root, "install-1", "session-0001", "gen-7");
//! let now = SystemTime::now();
//! let header = file.authorization("GET", "/token", now)?;
//!
//! let server = RootKeys::new("install-1", vec![root]).ok_or("no root")?;
//! let nonces = NonceCache::new(1024, std::time::Duration::from_secs(60));
//! let claim = server.verify(Some(header.as_bytes()), "GET", "/token", now, &nonces)?;
//! assert_eq!((claim.session_id.as_str(), claim.generation.as_str()), ("session-0001", "gen-7"));
//! // The same header again is a replay.
//! assert!(server.verify(Some(header.as_bytes()), "GET", "/token", now, &nonces).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fmt::Write as _;
use std::time::SystemTime;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{EncryptError, MIN_NONCE_BYTES, NonceCache, Rejection, check_session_id, unix_seconds};
use crate::secret::Secret;

/// The `Authorization` scheme of a v3 request.
pub const SCHEME: &str = "Ambient-HMAC";
/// The domain separator of the session-key derivation.
pub const DOMAIN: &str = "ambient-v3";
/// Length of a root key and of a session key, in bytes.
pub const KEY_LEN: usize = 32;
/// Longest `Authorization` value accepted (a valid one is ~250 bytes).
pub const MAX_HEADER_LEN: usize = 1024;
/// Longest `kid` and `gen` accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Longest session ID accepted in a v3 header.
pub const MAX_SESSION_ID_LEN: usize = 256;
/// Longest decoded nonce accepted.
pub const MAX_NONCE_BYTES: usize = 64;
/// Bytes of fresh randomness in a client's nonce.
const CLIENT_NONCE_BYTES: usize = 18;

/// `K_root`: a 32-byte random key, named by a `kid` derived from it (the kid
/// reveals nothing of the key). Never printed.
#[derive(Clone)]
pub struct RootKey {
    kid: String,
    key: hmac::Key,
    bytes: [u8; KEY_LEN],
}

impl RootKey {
    /// A fresh random root key.
    pub fn generate() -> Result<Self, EncryptError> {
        let mut bytes = [0u8; KEY_LEN];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| EncryptError::Random)?;
        Ok(Self::from_array(bytes))
    }

    /// A root key from its 32 bytes (as stored); `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self::from_array(bytes))
    }

    /// A root key from its standard-base64 text (as stored in a Secret).
    pub fn from_base64(text: &str) -> Option<Self> {
        Self::from_bytes(&STANDARD.decode(text.trim()).ok()?)
    }

    /// The key as standard base64, for storage.
    pub fn to_base64(&self) -> Secret {
        Secret::new(STANDARD.encode(self.bytes))
    }

    /// The key's name: `r` and 16 hex digits of a hash of the key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `K_s` of one session's pod generation.
    pub fn derive(&self, installation: &str, session_id: &str, generation: &str) -> SessionKey {
        let message = join(&[DOMAIN, installation, session_id, generation]);
        let tag = hmac::sign(&self.key, message.as_bytes());
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(tag.as_ref());
        SessionKey(bytes)
    }

    fn from_array(bytes: [u8; KEY_LEN]) -> Self {
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &[b"ambient-v3-kid\n".as_slice(), &bytes].concat(),
        );
        let mut kid = String::from("r");
        for b in &digest.as_ref()[..8] {
            let _ = write!(kid, "{b:02x}");
        }
        Self {
            kid,
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
            bytes,
        }
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootKey({})", self.kid)
    }
}

impl PartialEq for RootKey {
    fn eq(&self, other: &Self) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.bytes, &other.bytes).is_ok()
    }
}

impl Eq for RootKey {}

impl Drop for RootKey {
    fn drop(&mut self) {
        self.bytes.fill(0);
        std::hint::black_box(&mut self.bytes);
    }
}

/// `K_s`: one session generation's key. Never printed, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; KEY_LEN]);

impl SessionKey {
    /// The MAC of a request: `HMAC(K_s, method ‖ path ‖ sid ‖ gen ‖ ts ‖ nonce)`,
    /// `nonce` as sent (base64 text).
    pub fn mac(
        &self,
        method: &str,
        path: &str,
        session_id: &str,
        generation: &str,
        ts: i64,
        nonce: &str,
    ) -> [u8; KEY_LEN] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.0);
        let message = join(&[method, path, session_id, generation, &ts.to_string(), nonce]);
        let tag = hmac::sign(&key, message.as_bytes());
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(***)")
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.0.fill(0);
        std::hint::black_box(&mut self.0);
    }
}

/// What a session's containers hold: the key and the names the server needs
/// to re-derive it. Stored as JSON
/// `{"v":3,"kid":…,"sid":…,"gen":…,"key":"<base64>"}`.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKeyFile {
    kid: String,
    session_id: String,
    generation: String,
    key: SessionKey,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileJson {
    v: u8,
    kid: String,
    sid: String,
    #[serde(rename = "gen")]
    generation: String,
    key: String,
}

/// Why a session key file cannot be used. Never shows the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read the session key file: {0}")]
    Read(String),
    #[error("the session key file is not a v3 session key ({0})")]
    Malformed(&'static str),
}

impl SessionKeyFile {
    /// The key file of one session's pod generation under `root`.
    pub fn derive(root: &RootKey, installation: &str, session_id: &str, generation: &str) -> Self {
        Self {
            kid: root.kid().to_owned(),
            session_id: session_id.to_owned(),
            generation: generation.to_owned(),
            key: root.derive(installation, session_id, generation),
        }
    }

    /// The file's content (JSON, carries the key).
    pub fn to_json(&self) -> Secret {
        let json = KeyFileJson {
            v: 3,
            kid: self.kid.clone(),
            sid: self.session_id.clone(),
            generation: self.generation.clone(),
            key: STANDARD.encode(self.key.0),
        };
        Secret::new(serde_json::to_string(&json).unwrap_or_default())
    }

    /// Parses a file's content.
    pub fn parse(content: &[u8]) -> Result<Self, KeyFileError> {
        let json: KeyFileJson = serde_json::from_slice(content)
            .map_err(|_| KeyFileError::Malformed("not JSON of the v3 shape"))?;
        if json.v != 3 {
            return Err(KeyFileError::Malformed("version is not 3"));
        }
        if !is_name(&json.kid) {
            return Err(KeyFileError::Malformed("bad kid"));
        }
        if !is_name(&json.generation) {
            return Err(KeyFileError::Malformed("bad generation"));
        }
        if !is_session_id(&json.sid) {
            return Err(KeyFileError::Malformed("bad session id"));
        }
        let key: [u8; KEY_LEN] = STANDARD
            .decode(json.key.as_bytes())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or(KeyFileError::Malformed("bad key"))?;
        Ok(Self {
            kid: json.kid,
            session_id: json.sid,
            generation: json.generation,
            key: SessionKey(key),
        })
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, KeyFileError> {
        let content = std::fs::read(path).map_err(|e| KeyFileError::Read(e.kind().to_string()))?;
        Self::parse(&content)
    }

    /// The root key's name.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The session the key belongs to.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The pod generation the key belongs to.
    pub fn generation(&self) -> &str {
        &self.generation
    }

    /// The `Authorization` value of one request at `now`, with a fresh nonce.
    pub fn authorization(
        &self,
        method: &str,
        path: &str,
        now: SystemTime,
    ) -> Result<String, EncryptError> {
        let mut nonce = [0u8; CLIENT_NONCE_BYTES];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| EncryptError::Random)?;
        let nonce = STANDARD.encode(nonce);
        let ts = unix_seconds(now);
        let mac = self
            .key
            .mac(method, path, &self.session_id, &self.generation, ts, &nonce);
        Ok(format!(
            "{SCHEME} kid={},sid={},gen={},ts={ts},nonce={nonce},mac={}",
            self.kid,
            self.session_id,
            self.generation,
            STANDARD.encode(mac)
        ))
    }
}

impl fmt::Debug for SessionKeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeyFile")
            .field("kid", &self.kid)
            .field("session_id", &self.session_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// A parsed v3 `Authorization` value (not yet verified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Header {
    pub kid: String,
    pub session_id: String,
    pub generation: String,
    pub ts: i64,
    /// As sent (base64 text): the MAC covers this text.
    pub nonce: String,
    pub mac: [u8; KEY_LEN],
}

/// True when an `Authorization` value uses the v3 scheme (so a server can
/// tell v3 from a v1/v2 `Bearer`).
pub fn is_v3(header: &[u8]) -> bool {
    header
        .strip_prefix(SCHEME.as_bytes())
        .is_some_and(|rest| rest.first() == Some(&b' '))
}

/// Parses `Ambient-HMAC kid=…,sid=…,gen=…,ts=…,nonce=…,mac=…`: every field
/// exactly once, in any order, optional spaces after commas; anything else
/// is [`Rejection::MalformedV3`].
pub fn parse_header(header: &[u8]) -> Result<V3Header, Rejection> {
    use Rejection::MalformedV3 as Bad;
    if header.len() > MAX_HEADER_LEN {
        return Err(Bad);
    }
    let text = std::str::from_utf8(header).map_err(|_| Bad)?;
    let params = text
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(Bad)?;
    let mut fields: [Option<&str>; 6] = [None; 6];
    const NAMES: [&str; 6] = ["kid", "sid", "gen", "ts", "nonce", "mac"];
    for part in params.split(',') {
        let (name, value) = part.trim_start_matches(' ').split_once('=').ok_or(Bad)?;
        let slot = NAMES.iter().position(|n| *n == name).ok_or(Bad)?;
        if fields[slot].replace(value).is_some() || value.is_empty() {
            return Err(Bad);
        }
    }
    let [
        Some(kid),
        Some(sid),
        Some(generation),
        Some(ts),
        Some(nonce),
        Some(mac),
    ] = fields
    else {
        return Err(Bad);
    };
    if !is_name(kid) || !is_name(generation) || !is_session_id(sid) {
        return Err(Bad);
    }
    // Canonical decimal only: the MAC covers the number, so one request has
    // one header text (no leading zeros).
    if ts.len() > 19
        || !ts.bytes().all(|b| b.is_ascii_digit())
        || (ts.len() > 1 && ts.starts_with('0'))
    {
        return Err(Bad);
    }
    let ts: i64 = ts.parse().map_err(|_| Bad)?;
    let nonce_len = STANDARD.decode(nonce.as_bytes()).map_err(|_| Bad)?.len();
    if !(MIN_NONCE_BYTES..=MAX_NONCE_BYTES).contains(&nonce_len) {
        return Err(Bad);
    }
    let mac: [u8; KEY_LEN] = STANDARD
        .decode(mac.as_bytes())
        .ok()
        .and_then(|m| m.try_into().ok())
        .ok_or(Bad)?;
    Ok(V3Header {
        kid: kid.to_owned(),
        session_id: sid.to_owned(),
        generation: generation.to_owned(),
        ts,
        nonce: nonce.to_owned(),
        mac,
    })
}

/// A verified v3 request: the session and pod generation it proved a key for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3Claim {
    pub session_id: String,
    pub generation: String,
    pub kid: String,
}

/// The server's root keys (current first; the others are kept for one token
/// lifetime after a rotation) and the installation they derive for.
#[derive(Debug, Clone)]
pub struct RootKeys {
    installation: String,
    roots: Vec<RootKey>,
}

impl RootKeys {
    /// `roots` must not be empty.
    pub fn new(installation: impl Into<String>, roots: Vec<RootKey>) -> Option<Self> {
        (!roots.is_empty()).then(|| Self {
            installation: installation.into(),
            roots,
        })
    }

    /// The current root.
    pub fn current(&self) -> &RootKey {
        &self.roots[0]
    }

    /// Every root, current first.
    pub fn roots(&self) -> &[RootKey] {
        &self.roots
    }

    /// The installation the keys derive for.
    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// The key file of a session's pod generation under the current root.
    pub fn key_file(&self, session_id: &str, generation: &str) -> SessionKeyFile {
        SessionKeyFile::derive(self.current(), &self.installation, session_id, generation)
    }

    /// Verifies a raw `Authorization` value of a `method` request to `path`:
    /// the MAC (constant time) under the named root, then the time window,
    /// then the nonce — in that order, so that only a key holder can use up
    /// nonce memory. Liveness and generation are the caller's checks.
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        method: &str,
        path: &str,
        now: SystemTime,
        nonces: &NonceCache,
    ) -> Result<V3Claim, Rejection> {
        let parsed = parse_header(header.ok_or(Rejection::MissingBearer)?)?;
        let root = self
            .roots
            .iter()
            .find(|r| r.kid() == parsed.kid)
            .ok_or(Rejection::UnknownKeyId)?;
        let key = root.derive(&self.installation, &parsed.session_id, &parsed.generation);
        let expected = key.mac(
            method,
            path,
            &parsed.session_id,
            &parsed.generation,
            parsed.ts,
            &parsed.nonce,
        );
        aws_lc_rs::constant_time::verify_slices_are_equal(&expected, &parsed.mac)
            .map_err(|_| Rejection::BadMac)?;
        let now = unix_seconds(now);
        let skew = nonces.window().as_secs() as i64;
        if parsed.ts < now.saturating_sub(skew) {
            return Err(Rejection::StaleIat);
        }
        if parsed.ts > now.saturating_add(skew) {
            return Err(Rejection::FutureIat);
        }
        let nonce = STANDARD
            .decode(parsed.nonce.as_bytes())
            .map_err(|_| Rejection::MalformedV3)?;
        nonces.insert(&nonce, parsed.ts, now)?;
        Ok(V3Claim {
            session_id: parsed.session_id,
            generation: parsed.generation,
            kid: parsed.kid,
        })
    }
}

fn join(parts: &[&str]) -> String {
    parts.join("\n")
}

/// A `kid` or generation: 1–128 of `A-Z a-z 0-9 . _ : -`.
fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A session ID usable in a v3 header: the v1 rule, printable ASCII, no `,`
/// or `=` (the header's separators), at most 256 bytes.
fn is_session_id(s: &str) -> bool {
    check_session_id(s).is_ok()
        && s.len() <= MAX_SESSION_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=')
}

#[cfg(test)]
mod tests;
