//! RSA keys of the token exchange (wire.md §3): generation, PEM parse and emit.
//!
//! Private keys are emitted as PKCS#1 (`RSA PRIVATE KEY`) and public keys as
//! SPKI (`PUBLIC KEY`); readers accept PKCS#1 and PKCS#8 private keys and SPKI
//! and PKCS#1 public keys. All cryptography is `aws-lc-rs`; the PKCS#1 ↔
//! PKCS#8/SPKI wrapping is a few lines of DER done here.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Size of the keys we generate.
pub const KEY_BITS: usize = 4096;

/// A key could not be generated, parsed or encoded. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no PEM block found (expected {expected})")]
    NoPem { expected: &'static str },
    #[error("PEM block is malformed: {0}")]
    BadPem(&'static str),
    /// `found` names a well-known label; any other is not repeated.
    #[error("PEM label {found} is not one of {expected}")]
    WrongLabel {
        found: &'static str,
        expected: &'static str,
    },
    #[error("encrypted PEM keys are not supported")]
    Encrypted,
    #[error("DER structure is malformed: {0}")]
    BadDer(&'static str),
    #[error("the key was rejected: {0}")]
    Rejected(String),
    #[error("key generation failed")]
    Generate,
}

/// An RSA private key for OAEP decryption (constant-time, `aws-lc-rs`).
#[derive(Clone)]
pub struct PrivateKey {
    oaep: Arc<OaepPrivateDecryptingKey>,
    public: PublicKey,
    pkcs8: Arc<Vec<u8>>,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("bits", &self.bits())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Generates a fresh RSA-4096 key.
    pub fn generate() -> Result<Self, KeyError> {
        let key =
            PrivateDecryptingKey::generate(KeySize::Rsa4096).map_err(|_| KeyError::Generate)?;
        let der: Pkcs8V1Der<'static> = key.as_der().map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8_der(der.as_ref())
    }

    /// Parses a `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY` (PKCS#8) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        const EXPECTED: &str = "RSA PRIVATE KEY or PRIVATE KEY";
        let (label, der) = pem_decode(pem, EXPECTED)?;
        match label.as_str() {
            "RSA PRIVATE KEY" => Self::from_pkcs8_der(&der::pkcs1_private_to_pkcs8(&der)),
            "PRIVATE KEY" => Self::from_pkcs8_der(&der),
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Encrypted),
            _ => Err(KeyError::WrongLabel {
                found: known_label(&label),
                expected: EXPECTED,
            }),
        }
    }

    fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Self, KeyError> {
        let key = PrivateDecryptingKey::from_pkcs8(pkcs8)
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let public = PublicKey::from_aws(key.public_key())?;
        let oaep =
            OaepPrivateDecryptingKey::new(key).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            oaep: Arc::new(oaep),
            public,
            pkcs8: Arc::new(pkcs8.to_vec()),
        })
    }

    /// The PKCS#1 PEM (`-----BEGIN RSA PRIVATE KEY-----`).
    pub fn to_pkcs1_pem(&self) -> Result<String, KeyError> {
        let pkcs1 = der::pkcs8_to_pkcs1_private(&self.pkcs8)?;
        Ok(pem_encode("RSA PRIVATE KEY", pkcs1))
    }

    /// The PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn to_pkcs8_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The matching public key.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.oaep.key_size_bits()
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) decryption into `out`,
    /// which must hold at least [`PrivateKey::ciphertext_len`] bytes. Returns the
    /// plaintext length, or `None` when the ciphertext does not decrypt.
    /// Constant-time in the key (aws-lc).
    pub fn decrypt(&self, ciphertext: &[u8], out: &mut [u8]) -> Option<usize> {
        self.oaep
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, out, None)
            .map(|pt| pt.len())
            .ok()
    }

    /// Ciphertext (and scratch buffer) length for this key.
    pub fn ciphertext_len(&self) -> usize {
        self.oaep.key_size_bytes()
    }
}

/// An RSA public key for OAEP encryption.
#[derive(Clone)]
pub struct PublicKey {
    oaep: Arc<OaepPublicEncryptingKey>,
    spki: Arc<Vec<u8>>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &(self.oaep.key_size_bits()))
            .finish_non_exhaustive()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.spki == other.spki
    }
}

impl PublicKey {
    fn from_aws(key: PublicEncryptingKey) -> Result<Self, KeyError> {
        let spki: PublicKeyX509Der<'static> = key
            .as_der()
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let spki = spki.as_ref().to_vec();
        let oaep =
            OaepPublicEncryptingKey::new(key).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self {
            oaep: Arc::new(oaep),
            spki: Arc::new(spki),
        })
    }

    /// Parses a `PUBLIC KEY` (SPKI) or `RSA PUBLIC KEY` (PKCS#1) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        const EXPECTED: &str = "PUBLIC KEY or RSA PUBLIC KEY";
        let (label, der) = pem_decode(pem, EXPECTED)?;
        let spki = match label.as_str() {
            "PUBLIC KEY" => der,
            "RSA PUBLIC KEY" => der::pkcs1_public_to_spki(&der),
            _ => {
                return Err(KeyError::WrongLabel {
                    found: known_label(&label),
                    expected: EXPECTED,
                });
            }
        };
        let key =
            PublicEncryptingKey::from_der(&spki).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Self::from_aws(key)
    }

    /// The SPKI PEM (`-----BEGIN PUBLIC KEY-----`), as published to sessions.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki)
    }

    /// The SPKI DER bytes.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// Largest plaintext one OAEP-SHA-256 block holds (446 bytes at 4096 bits).
    pub fn max_plaintext_len(&self) -> usize {
        self.oaep.max_plaintext_size(&OAEP_SHA256_MGF1SHA256)
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256, empty label) encryption.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut out = vec![0u8; self.oaep.ciphertext_size()];
        let written = self
            .oaep
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
            .map_err(|_| KeyError::Rejected("plaintext does not fit one OAEP block".into()))?
            .len();
        out.truncate(written);
        Ok(out)
    }
}

/// Encodes DER as PEM with 64-column lines and a trailing newline.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A label worth naming in an error (a well-known one), else a placeholder:
/// the label is input, and input is not echoed.
fn known_label(label: &str) -> &'static str {
    const KNOWN: [&str; 10] = [
        "CERTIFICATE",
        "CERTIFICATE REQUEST",
        "X509 CRL",
        "PUBLIC KEY",
        "RSA PUBLIC KEY",
        "PRIVATE KEY",
        "RSA PRIVATE KEY",
        "EC PRIVATE KEY",
        "OPENSSH PRIVATE KEY",
        "ENCRYPTED PRIVATE KEY",
    ];
    KNOWN
        .into_iter()
        .find(|k| *k == label)
        .unwrap_or("(another label)")
}

/// Decodes the first PEM block: its label and DER bytes.
pub fn pem_decode(pem: &str, expected: &'static str) -> Result<(String, Vec<u8>), KeyError> {
    let start = pem
        .find("-----BEGIN ")
        .ok_or(KeyError::NoPem { expected })?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest
        .find("-----")
        .ok_or(KeyError::BadPem("unterminated BEGIN line"))?;
    let label = rest[..label_end].to_owned();
    let body_and_rest = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end = body_and_rest
        .find(&end_marker)
        .ok_or(KeyError::BadPem("missing END line"))?;
    let body = &body_and_rest[..body_end];
    if body.contains(':') {
        // RFC 1421 headers (Proc-Type, DEK-Info) mean an encrypted legacy key.
        return Err(KeyError::Encrypted);
    }
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD
        .decode(compact)
        .map_err(|_| KeyError::BadPem("body is not base64"))?;
    Ok((label, der))
}

/// Minimal DER for the RSA key containers (PKCS#8 `PrivateKeyInfo`, SPKI).
mod der {
    use super::KeyError;

    /// `AlgorithmIdentifier { rsaEncryption, NULL }`.
    const RSA_ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes = len.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
        out.extend_from_slice(content);
        out
    }

    /// Splits one TLV off the front: `(tag, content, rest)`.
    fn read(input: &[u8]) -> Result<(u8, &[u8], &[u8]), KeyError> {
        let [tag, first, rest @ ..] = input else {
            return Err(KeyError::BadDer("truncated header"));
        };
        let (len, rest) = if *first < 0x80 {
            (*first as usize, rest)
        } else {
            let n = (*first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return Err(KeyError::BadDer("bad length"));
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(KeyError::BadDer("truncated content"));
        }
        Ok((*tag, &rest[..len], &rest[len..]))
    }

    /// PKCS#1 `RSAPrivateKey` → PKCS#8 `PrivateKeyInfo` (version 0).
    pub(super) fn pkcs1_private_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
        let mut body = vec![0x02, 0x01, 0x00];
        body.extend_from_slice(&RSA_ALGORITHM);
        body.extend(tlv(0x04, pkcs1));
        tlv(0x30, &body)
    }

    /// PKCS#8 `PrivateKeyInfo` → the PKCS#1 `RSAPrivateKey` inside it.
    pub(super) fn pkcs8_to_pkcs1_private(pkcs8: &[u8]) -> Result<&[u8], KeyError> {
        let (tag, body, _) = read(pkcs8)?;
        if tag != 0x30 {
            return Err(KeyError::BadDer("PrivateKeyInfo is not a SEQUENCE"));
        }
        let (tag, _version, rest) = read(body)?;
        if tag != 0x02 {
            return Err(KeyError::BadDer("missing version"));
        }
        let (tag, algorithm, rest) = read(rest)?;
        if tag != 0x30 || algorithm != &RSA_ALGORITHM[2..] {
            return Err(KeyError::BadDer("not an rsaEncryption key"));
        }
        let (tag, key, _) = read(rest)?;
        if tag != 0x04 {
            return Err(KeyError::BadDer("missing privateKey OCTET STRING"));
        }
        Ok(key)
    }

    /// PKCS#1 `RSAPublicKey` → `SubjectPublicKeyInfo`.
    pub(super) fn pkcs1_public_to_spki(pkcs1: &[u8]) -> Vec<u8> {
        let mut bits = vec![0x00];
        bits.extend_from_slice(pkcs1);
        let mut body = RSA_ALGORITHM.to_vec();
        body.extend(tlv(0x03, &bits));
        tlv(0x30, &body)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn long_lengths_round_trip() {
            for len in [0usize, 1, 127, 128, 255, 256, 4000, 70000] {
                let content = vec![7u8; len];
                let enc = tlv(0x04, &content);
                let (tag, body, rest) = read(&enc).unwrap_or((0, &[], &[1]));
                assert_eq!((tag, body.len(), rest.len()), (0x04, len, 0));
            }
        }

        #[test]
        fn truncated_input_is_an_error() {
            assert!(read(&[0x30]).is_err());
            assert!(read(&[0x30, 0x82, 0x01]).is_err());
            assert!(read(&[0x30, 0x05, 0x00]).is_err());
            assert!(pkcs8_to_pkcs1_private(&[0x02, 0x01, 0x00]).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_key;

    fn roundtrip(private: &PrivateKey, public: &PublicKey) {
        let ct = public.encrypt(b"session-123").unwrap_or_default();
        let mut out = vec![0u8; private.ciphertext_len()];
        let n = private.decrypt(&ct, &mut out).unwrap_or(0);
        assert_eq!(&out[..n], b"session-123");
    }

    #[test]
    fn generated_key_is_4096_bits_and_446_byte_plaintexts() {
        let key = test_key();
        assert_eq!(key.bits(), KEY_BITS);
        assert_eq!(key.public_key().max_plaintext_len(), 446);
    }

    #[test]
    fn pkcs1_private_pem_round_trips() {
        let key = test_key();
        let pem = key.to_pkcs1_pem().unwrap_or_default();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        assert!(pem.ends_with("-----END RSA PRIVATE KEY-----\n"));
        assert!(pem.lines().all(|l| l.len() <= 64));
        let parsed = PrivateKey::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.public_key(), key.public_key());
        assert_eq!(parsed.to_pkcs1_pem().ok(), Some(pem));
        roundtrip(&parsed, key.public_key());
    }

    #[test]
    fn pkcs8_private_pem_round_trips() {
        let key = test_key();
        let pem = key.to_pkcs8_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let parsed = PrivateKey::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.public_key(), key.public_key());
        roundtrip(&parsed, key.public_key());
    }

    #[test]
    fn public_pem_spki_and_pkcs1_parse() {
        let key = test_key();
        let pem = key.public_key().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let parsed = PublicKey::from_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&parsed, key.public_key());
        // PKCS#1 public = the BIT STRING content of the SPKI.
        let spki = key.public_key().spki_der();
        let pkcs1 = &spki[spki.len() - 526..];
        assert_eq!(der::pkcs1_public_to_spki(pkcs1), spki);
        let pkcs1_pem = pem_encode("RSA PUBLIC KEY", pkcs1);
        let parsed = PublicKey::from_pem(&pkcs1_pem).unwrap_or_else(|e| panic!("{e}"));
        roundtrip(key, &parsed);
    }

    #[test]
    fn bad_pems_are_refused_without_echoing_input() {
        // The body of a real private key under the wrong labels, junk, and
        // marked text: no error may repeat any of it.
        let secret_der = test_key().to_pkcs8_pem();
        let secret_body: Vec<&str> = secret_der
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let marked = "SECRETMARK";
        let cases = [
            (format!("{marked} nothing"), "no PEM"),
            (secret_der.replace("PRIVATE KEY", "CERTIFICATE"), "label"),
            (
                secret_der.replace("PRIVATE KEY", &format!("{marked} KEY")),
                "label",
            ),
            (pem_encode("RSA PRIVATE KEY", marked.as_bytes()), "DER"),
            (
                format!(
                    "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n{marked}\n-----END RSA PRIVATE KEY-----\n"
                ),
                "encrypted",
            ),
            (
                format!("-----BEGIN PRIVATE KEY-----\n{marked}!!\n-----END PRIVATE KEY-----\n"),
                "base64",
            ),
            (secret_der.replace("-----END PRIVATE KEY-----", ""), "END"),
        ];
        for (input, what) in &cases {
            let err = PrivateKey::from_pem(input)
                .err()
                .unwrap_or_else(|| panic!("{what}: accepted"));
            let text = format!("{err} {err:?}");
            assert!(!text.contains(marked), "{what}: {text}");
            for line in &secret_body {
                assert!(
                    !text.contains(&line[..16]),
                    "{what}: key material in {text}"
                );
            }
        }
        assert!(matches!(
            PrivateKey::from_pem("nothing"),
            Err(KeyError::NoPem { .. })
        ));
        let wrong = pem_encode("CERTIFICATE", b"abc");
        assert!(matches!(
            PrivateKey::from_pem(&wrong),
            Err(KeyError::WrongLabel { .. })
        ));
        let enc = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(PrivateKey::from_pem(enc).err(), Some(KeyError::Encrypted));
        let bad_b64 = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(bad_b64),
            Err(KeyError::BadPem(_))
        ));
        assert!(PublicKey::from_pem(&key_pem_crlf()).is_ok());
    }

    fn key_pem_crlf() -> String {
        test_key().public_key().to_pem().replace('\n', "\r\n")
    }
}
