//! The `Ambient-HMAC` header of exchange v3 on arbitrary input: the parser
//! and the verification around it. Nothing may panic; whatever parses obeys
//! the field rules and reads back the same from its canonical form; random
//! input never verifies, and the scheme test agrees with the parser.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::v3::{
    KEY_LEN, MAX_HEADER_LEN, RootKey, RootKeys, is_v3, parse_header,
};
use ambient_protocol::exchange::{NonceCache, V2_SKEW};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;

fn roots() -> &'static RootKeys {
    static ROOTS: OnceLock<RootKeys> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let root = RootKey::from_bytes(&[7u8; KEY_LEN]).expect("32 bytes");
        RootKeys::new("install-fuzz", vec![root]).expect("one root")
    })
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_header(data);
    if let Ok(h) = &parsed {
        assert!(is_v3(data), "parsed without the scheme");
        assert!(data.len() <= MAX_HEADER_LEN);
        for name in [&h.kid, &h.generation] {
            assert!(!name.is_empty() && name.len() <= 128);
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b)));
        }
        assert!(
            h.session_id
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=')
        );
        assert!(h.ts >= 0);
        // The canonical form reads back the same.
        let canonical = format!(
            "Ambient-HMAC kid={},sid={},gen={},ts={},nonce={},mac={}",
            h.kid,
            h.session_id,
            h.generation,
            h.ts,
            h.nonce,
            STANDARD.encode(h.mac)
        );
        assert_eq!(parse_header(canonical.as_bytes()).as_ref(), Ok(h));
    }
    // The server's checks: never a panic, never a pass for random bytes
    // (a MAC of 256 bits is not guessed), at a "now" a mutated seed's ts
    // may be near.
    let nonces = NonceCache::new(16, V2_SKEW);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let verified = roots().verify(Some(data), "GET", "/token", now, &nonces);
    if let Err(r) = verified {
        assert!(matches!(r.status(), 401 | 403 | 503));
    } else {
        panic!("random input verified");
    }
});
