//! Random identifiers: URL-safe, lowercase alphanumeric.

use crate::store::StoreError;

/// Length of every generated ID.
pub const ID_LEN: usize = 24;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A fresh random ID of [`ID_LEN`] characters from `[0-9a-z]` (≈124 bits),
/// drawn without modulo bias from the system CSPRNG.
pub fn new_id() -> Result<String, StoreError> {
    let mut out = String::with_capacity(ID_LEN);
    while out.len() < ID_LEN {
        let mut buf = [0u8; 32];
        aws_lc_rs::rand::fill(&mut buf).map_err(|_| StoreError::Random)?;
        // 252 = 7 * 36: bytes at or above it would bias the first letters.
        for b in buf.into_iter().filter(|b| *b < 252) {
            if out.len() == ID_LEN {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 36)]));
        }
    }
    Ok(out)
}

/// A random opaque token: 32 bytes, base64url without padding.
pub fn new_token() -> Result<String, StoreError> {
    use base64::Engine as _;
    let mut buf = [0u8; 32];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| StoreError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_alphanumeric_and_distinct() {
        let a = new_id().unwrap_or_else(|e| panic!("{e}"));
        let b = new_id().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.len(), ID_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase())
        );
        assert_ne!(a, b);
        let t = new_token().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.len(), 43);
    }
}
