//! Session tokens: minting, verification, JWKS and key rotation.
//!
//! A session token is a JWT signed `RS256` by the control plane's own
//! RSA-2048 signing key ([`keys`]), bound to one session, its project and
//! its pod generation ([`jwt`]). The signing keys rotate through a
//! [`KeyRing`] ([`ring`]) kept in the keypair Secret ([`stored`]);
//! [`SessionTokens`] ([`mint`]) mints them, caching one per session, and
//! verifies them for the gateway.

pub mod jwt;
pub mod keys;
pub mod mint;
pub mod ring;
pub mod stored;

pub use jwt::{Claims, LEEWAY, MAX_LIFETIME, Refusal, SUBJECT_PREFIX};
pub use keys::{SIGNING_KEY_BITS, SigningKey, VerifyingKey};
pub use mint::{DEFAULT_LIFETIME, Minted, SessionTokens, TokenError};
pub use ring::{KeyRing, Retired};
pub use stored::{INDEX_KEY, StoreError, key_name};

#[cfg(test)]
mod tests;

/// Three signing keys, generated once per test binary.
#[cfg(test)]
pub(crate) fn test_keys() -> &'static [SigningKey; 3] {
    static KEYS: std::sync::OnceLock<[SigningKey; 3]> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let key = || SigningKey::generate().unwrap_or_else(|e| panic!("keygen: {e}"));
        [key(), key(), key()]
    })
}
