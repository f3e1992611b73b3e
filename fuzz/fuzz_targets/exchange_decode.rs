//! The server side of the token exchange on arbitrary input: the
//! `Authorization` header decoder and the plaintext rules (v1 ID, v2 JSON,
//! window, nonce cache). Nothing may panic, and whatever is accepted must
//! satisfy the rules.
#![no_main]

use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::{
    NonceCache, Protocol, Rejection, V2_SKEW, check_plaintext, check_session_id, decode_bearer,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The header as sent, and with the scheme already right.
    let _ = decode_bearer(Some(data));
    let mut header = b"Bearer ".to_vec();
    header.extend_from_slice(data);
    if let Ok(decoded) = decode_bearer(Some(&header)) {
        assert!(!decoded.is_empty() || data.is_empty());
    }

    // The plaintext rules, both modes, at a fixed "now" near the iat a
    // mutated seed is likely to carry.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let nonces = NonceCache::new(16, V2_SKEW);
    for require_v2 in [false, true] {
        match check_plaintext(data, now, &nonces, require_v2) {
            Ok(claim) => {
                assert!(check_session_id(&claim.session_id).is_ok());
                match claim.protocol {
                    Protocol::V1 => {
                        assert!(!require_v2);
                        assert_eq!(claim.session_id.as_bytes(), data);
                    }
                    Protocol::V2 => assert_eq!(data.first(), Some(&b'{')),
                    Protocol::V3 => panic!("a decrypted plaintext is never v3"),
                }
                // The same v2 plaintext twice is a replay.
                if claim.protocol == Protocol::V2 {
                    assert_eq!(
                        check_plaintext(data, now, &nonces, require_v2),
                        Err(Rejection::ReplayedNonce)
                    );
                }
            }
            Err(r) => assert!(matches!(r.status(), 401 | 403 | 503)),
        }
    }
});
