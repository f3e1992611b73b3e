//! The session token's JWT form: compact JWS, `RS256` only.
//!
//! Header `{"alg":"RS256","typ":"JWT","kid":…}`; claims `sub` = `username` =
//! `preferred_username` = `ambient-session-<sid>` (the reference API server
//! takes the caller's name from the first of `preferred_username`,
//! `username`, `sub` that is set), `sid`, `project`, `gen`, `iat`, `exp`,
//! `jti`.

use std::time::{Duration, SystemTime};

use ambient_protocol::keys::KeyError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::keys::{SigningKey, VerifyingKey};

/// Prefix of a session token's subject: `ambient-session-<session id>`.
pub const SUBJECT_PREFIX: &str = "ambient-session-";
/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// Longest lifetime a session token may have (wire.md §3: `exp` ≤ 10 min).
pub const MAX_LIFETIME: Duration = Duration::from_secs(600);
/// Longest bearer the verifier looks at (a token is ~1 KB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The claims of a session token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    pub preferred_username: String,
    /// Session ID.
    pub sid: String,
    pub project: String,
    /// Pod generation.
    #[serde(rename = "gen")]
    pub generation: String,
    /// Issued at, Unix seconds.
    pub iat: u64,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Random token ID (128 bits, base64url).
    pub jti: String,
}

impl Claims {
    /// The claims of a token for a session, valid from `iat` for `lifetime`.
    pub fn new(
        session_id: &str,
        project: &str,
        generation: &str,
        iat: u64,
        lifetime: Duration,
        jti: String,
    ) -> Self {
        let subject = format!("{SUBJECT_PREFIX}{session_id}");
        Self {
            username: subject.clone(),
            preferred_username: subject.clone(),
            sub: subject,
            sid: session_id.to_owned(),
            project: project.to_owned(),
            generation: generation.to_owned(),
            iat,
            exp: iat.saturating_add(lifetime.as_secs()),
            jti,
        }
    }
}

/// Why a bearer is not a valid session token. Never carries token content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a compact JWS")]
    Malformed,
    #[error("algorithm is not RS256")]
    Algorithm,
    #[error("no published key has this kid")]
    UnknownKey,
    #[error("signature does not verify")]
    Signature,
    #[error("claims are missing or inconsistent")]
    Claims,
    #[error("token has expired")]
    Expired,
    #[error("token is issued in the future")]
    NotYetValid,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
}

/// Signs `claims` with `key`: `header.payload.signature`.
pub fn encode(key: &SigningKey, claims: &Claims) -> Result<String, KeyError> {
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.kid()});
    let payload =
        serde_json::to_vec(claims).map_err(|_| KeyError::Rejected("claims encoding".into()))?;
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// Checks `token`'s form, algorithm, signature (under the key `find` gives
/// for its `kid`) and lifetime at `now`, and returns its claims.
pub fn decode<'k>(
    token: &str,
    find: impl FnOnce(&str) -> Option<&'k VerifyingKey>,
    now: SystemTime,
) -> Result<Claims, Refusal> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Refusal::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let header: Header = b64_json(header_b64)?;
    if header.alg != "RS256" {
        return Err(Refusal::Algorithm);
    }
    if header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(Refusal::Malformed);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(find)
        .ok_or(Refusal::UnknownKey)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Refusal::Malformed)?;
    let signed = &token[..header_b64.len() + 1 + payload.len()];
    if !key.verify(signed.as_bytes(), &signature) {
        return Err(Refusal::Signature);
    }
    let claims: Claims = b64_json(payload).map_err(|_| Refusal::Claims)?;
    check_claims(&claims, now)?;
    Ok(claims)
}

fn b64_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, Refusal> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Refusal::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)
}

fn check_claims(claims: &Claims, now: SystemTime) -> Result<(), Refusal> {
    let subject = format!("{SUBJECT_PREFIX}{}", claims.sid);
    if claims.sid.is_empty()
        || claims.project.is_empty()
        || claims.sub != subject
        || claims.username != subject
        || claims.preferred_username != subject
        || claims.exp <= claims.iat
        || claims.exp - claims.iat > MAX_LIFETIME.as_secs()
    {
        return Err(Refusal::Claims);
    }
    let now = unix_secs(now);
    let leeway = LEEWAY.as_secs();
    if claims.exp.saturating_add(leeway) <= now {
        return Err(Refusal::Expired);
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(Refusal::NotYetValid);
    }
    Ok(())
}

/// Whole seconds since the Unix epoch (0 before it).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
