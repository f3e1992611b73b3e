//! Session-token signing keys: RSA-2048 (PKCS#1 v1.5, SHA-256 — JWS `RS256`),
//! distinct from the RSA-4096 OAEP key of the exchange
//! (`ambient_protocol::keys`), whose PEM reading this reuses.
//!
//! A key is named by its `kid`: the RFC 7638 JWK thumbprint (base64url
//! SHA-256 of `{"e":…,"kty":"RSA","n":…}`) of its public half.

use std::fmt;
use std::sync::Arc;

use ambient_protocol::keys::{KeyError, pem_decode, pem_encode};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    KeyPair as _, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Size of the signing keys we generate. Smaller than the exchange's
/// 4096-bit key on purpose: a session token is signed on every cache miss
/// and RSA-2048 signs ~7× faster; the reference API server verifies RSA
/// (`RS256`) keys only, so RSA it is.
pub const SIGNING_KEY_BITS: usize = 2048;
/// Smallest modulus a loaded signing key may have.
pub const MIN_SIGNING_KEY_BITS: usize = 2048;
/// Largest modulus a loaded signing key may have (signing cost grows fast).
pub const MAX_SIGNING_KEY_BITS: usize = 4096;

/// The public half of a signing key: what the JWKS publishes and the
/// verifier checks signatures with.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Arc<str>,
    n: Arc<[u8]>,
    e: Arc<[u8]>,
    parsed: Arc<ParsedPublicKey>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("bits", &(self.n.len() * 8))
            .finish_non_exhaustive()
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n && self.e == other.e
    }
}

impl VerifyingKey {
    /// A key from its big-endian modulus and exponent (no leading zeros).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<Self, KeyError> {
        let parsed = RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            kid: thumbprint(n, e).into(),
            n: n.into(),
            e: e.into(),
            parsed: Arc::new(parsed),
        })
    }

    /// A key from its JWK (`kty` `RSA`, base64url `n` and `e`). The `kid`
    /// is recomputed, never taken from the input.
    pub fn from_jwk(jwk: &serde_json::Value) -> Result<Self, KeyError> {
        let field = |name: &'static str| {
            jwk.get(name)
                .and_then(serde_json::Value::as_str)
                .ok_or(KeyError::BadDer("JWK lacks a string member"))
        };
        if field("kty")? != "RSA" {
            return Err(KeyError::BadDer("JWK is not an RSA key"));
        }
        let decode = |name| {
            URL_SAFE_NO_PAD
                .decode(field(name)?)
                .map_err(|_| KeyError::BadDer("JWK member is not base64url"))
        };
        Self::from_components(&decode("n")?, &decode("e")?)
    }

    /// The RFC 7638 thumbprint naming this key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.n.len() * 8
    }

    /// Whether `signature` is an RS256 signature of `message` under this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }

    /// The JWK of this key (`kty`, `use`, `alg`, `kid`, `n`, `e`).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": &*self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }
}

/// An RSA private key that signs session tokens (`RS256`).
#[derive(Clone)]
pub struct SigningKey {
    pair: Arc<RsaKeyPair>,
    public: VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("bits", &self.public.bits())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh RSA-2048 signing key.
    pub fn generate() -> Result<Self, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        Self::from_pair(pair)
    }

    /// Parses a `PRIVATE KEY` (PKCS#8) or `RSA PRIVATE KEY` (PKCS#1) PEM
    /// holding an RSA key of 2048 to 4096 bits.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        const EXPECTED: &str = "RSA PRIVATE KEY or PRIVATE KEY";
        let (label, der) = pem_decode(pem, EXPECTED)?;
        let pair = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            _ => {
                return Err(KeyError::WrongLabel {
                    found: "(another label)",
                    expected: EXPECTED,
                });
            }
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: RsaKeyPair) -> Result<Self, KeyError> {
        let bits = pair.public_modulus_len() * 8;
        if !(MIN_SIGNING_KEY_BITS..=MAX_SIGNING_KEY_BITS).contains(&bits) {
            return Err(KeyError::Rejected(format!(
                "a session signing key must have {MIN_SIGNING_KEY_BITS} to {MAX_SIGNING_KEY_BITS} bits, not {bits}"
            )));
        }
        let public = pair.public_key();
        let public = VerifyingKey::from_components(
            public.modulus().big_endian_without_leading_zero(),
            public.exponent().big_endian_without_leading_zero(),
        )?;
        Ok(Self {
            pair: Arc::new(pair),
            public,
        })
    }

    /// The PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), for the keypair Secret.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let der: Pkcs8V1Der<'static> = self
            .pair
            .as_der()
            .map_err(|_| KeyError::Rejected("cannot encode the key".into()))?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// The public half.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// The RS256 signature of `message`. One RSA private-key operation.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
            .map_err(|_| KeyError::Rejected("signing failed".into()))?;
        Ok(sig)
    }
}

/// RFC 7638 thumbprint of an RSA key: base64url(SHA-256 of the canonical
/// JWK `{"e":…,"kty":"RSA","n":…}`, members in lexicographic order, no
/// whitespace).
pub fn thumbprint(n: &[u8], e: &[u8]) -> String {
    let canonical = format!(
        r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(e),
        URL_SAFE_NO_PAD.encode(n)
    );
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::test_keys;

    #[test]
    fn generated_key_is_2048_bits_and_pem_round_trips() {
        let key = &test_keys()[0];
        assert_eq!(key.verifying_key().bits(), SIGNING_KEY_BITS);
        let pem = key.to_pem().unwrap_or_default();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let parsed = SigningKey::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.kid(), key.kid());
        let sig = parsed.sign(b"message").unwrap_or_default();
        assert!(key.verifying_key().verify(b"message", &sig));
        assert!(!key.verifying_key().verify(b"messagE", &sig));
    }

    #[test]
    fn exchange_key_of_4096_bits_loads_but_small_keys_do_not() {
        // The exchange's PKCS#1 PEM form is accepted too.
        let big = ambient_protocol::keys::PrivateKey::generate()
            .and_then(|k| k.to_pkcs1_pem())
            .unwrap_or_default();
        let key = SigningKey::from_pem(&big).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.verifying_key().bits(), 4096);
        let small = RsaKeyPair::generate(KeySize::Rsa3072)
            .ok()
            .and_then(|k| SigningKey::from_pair(k).ok());
        assert!(small.is_some(), "3072 is within bounds");
        assert!(matches!(
            SigningKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(KeyError::WrongLabel { .. })
        ));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 §3.1: the example key and its thumbprint.
        let n = URL_SAFE_NO_PAD
            .decode(concat!(
                "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP",
                "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY",
                "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f",
                "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
            ))
            .unwrap_or_default();
        let e = URL_SAFE_NO_PAD.decode("AQAB").unwrap_or_default();
        assert_eq!(
            thumbprint(&n, &e),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
