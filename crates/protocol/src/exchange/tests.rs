use super::*;
use crate::test_key;

fn verifier(require_v2: bool) -> Verifier {
    Verifier::new(
        KeySet::new(vec![test_key().clone()]).unwrap_or_else(|| unreachable!()),
        require_v2,
    )
}

fn header(b64: &str) -> Vec<u8> {
    format!("Bearer {b64}").into_bytes()
}

fn v2_plaintext(sid: &str, iat: i64, nonce: &[u8]) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"v": 2, "sid": sid, "iat": iat, "nonce": STANDARD.encode(nonce)}),
    )
    .unwrap_or_default()
}

fn bearer_of(plaintext: &[u8]) -> Vec<u8> {
    header(&encrypt_plaintext(test_key().public_key(), plaintext).unwrap_or_default())
}

fn now() -> SystemTime {
    SystemTime::now()
}

#[test]
fn v1_round_trip() {
    let v = verifier(false);
    let b = encrypt_v1(test_key().public_key(), "session-abc123").unwrap_or_default();
    let claim = v.verify(Some(&header(&b)), now());
    assert_eq!(
        claim,
        Ok(SessionClaim {
            session_id: "session-abc123".into(),
            protocol: Protocol::V1
        })
    );
}

#[test]
fn v2_round_trip_and_replay() {
    let v = verifier(true);
    let b = encrypt_v2(test_key().public_key(), "session-abc123", now()).unwrap_or_default();
    let h = header(&b);
    assert_eq!(
        v.verify(Some(&h), now()),
        Ok(SessionClaim {
            session_id: "session-abc123".into(),
            protocol: Protocol::V2
        })
    );
    assert_eq!(v.verify(Some(&h), now()), Err(Rejection::ReplayedNonce));
}

#[test]
fn each_encryption_is_fresh() {
    let k = test_key().public_key();
    assert_ne!(encrypt_v1(k, "session-1"), encrypt_v1(k, "session-1"));
}

#[test]
fn header_and_base64_rejections() {
    let v = verifier(false);
    let good = encrypt_v1(test_key().public_key(), "session-abc123").unwrap_or_default();
    let cases: Vec<(Option<Vec<u8>>, Rejection)> = vec![
        (None, Rejection::MissingBearer),
        (Some(b"".to_vec()), Rejection::MissingBearer),
        (Some(b"Bearer ".to_vec()), Rejection::MissingBearer),
        (Some(b"Basic abc".to_vec()), Rejection::MissingBearer),
        (
            Some(format!("bearer {good}").into_bytes()),
            Rejection::MissingBearer,
        ),
        (Some(header("not base64!")), Rejection::BadBase64),
        // URL-safe alphabet is not standard base64.
        (
            Some(header(&good.replace('+', "-").replace('/', "_"))),
            Rejection::BadBase64,
        ),
        // unpadded
        (
            Some(header(good.trim_end_matches('='))),
            Rejection::BadBase64,
        ),
    ];
    for (h, want) in cases {
        assert_eq!(
            v.verify(h.as_deref(), now()),
            Err(want),
            "header {:?}",
            h.map(|h| h.len())
        );
    }
}

#[test]
fn url_safe_ciphertext_is_refused() {
    // Find a ciphertext whose standard encoding contains + or / so the URL-safe
    // variant differs from it.
    let v = verifier(false);
    for _ in 0..50 {
        let good = encrypt_v1(test_key().public_key(), "session-abc123").unwrap_or_default();
        if good.contains('+') || good.contains('/') {
            let url = good.replace('+', "-").replace('/', "_");
            assert_eq!(
                v.verify(Some(&header(&url)), now()),
                Err(Rejection::BadBase64)
            );
            return;
        }
    }
    panic!("no ciphertext with + or / in 50 tries");
}

#[test]
fn wrong_key_and_truncated_ciphertext_do_not_decrypt() {
    let v = verifier(false);
    let other = PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let b = encrypt_v1(other.public_key(), "session-abc123").unwrap_or_default();
    assert_eq!(v.verify(Some(&header(&b)), now()), Err(Rejection::Decrypt));

    let good = encrypt_v1(test_key().public_key(), "session-abc123").unwrap_or_default();
    let raw = STANDARD.decode(&good).unwrap_or_default();
    let truncated = STANDARD.encode(&raw[..raw.len() - 1]);
    assert_eq!(
        v.verify(Some(&header(&truncated)), now()),
        Err(Rejection::Decrypt)
    );
    let mut flipped = raw.clone();
    flipped[100] ^= 1;
    assert_eq!(
        v.verify(Some(&header(&STANDARD.encode(&flipped))), now()),
        Err(Rejection::Decrypt)
    );
    assert_eq!(
        v.verify(Some(&header("AAAA")), now()),
        Err(Rejection::Decrypt)
    );
}

#[test]
fn key_rotation_decrypts_with_any_key() {
    let old = PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let set = KeySet::new(vec![test_key().clone(), old.clone()]).unwrap_or_else(|| unreachable!());
    let v = Verifier::new(set, false);
    for key in [test_key(), &old] {
        let b = encrypt_v1(key.public_key(), "session-rotated").unwrap_or_default();
        assert!(v.verify(Some(&header(&b)), now()).is_ok());
    }
}

#[test]
fn session_id_rules() {
    let v = verifier(false);
    for (id, want) in [
        ("1234567", Err(Rejection::BadSessionId)),
        ("", Err(Rejection::BadSessionId)),
        ("abcd efgh", Err(Rejection::BadSessionId)),
        ("abcd\tefgh", Err(Rejection::BadSessionId)),
        ("abcdefgh\n", Err(Rejection::BadSessionId)),
        ("abcd\refgh", Err(Rejection::BadSessionId)),
        ("12345678", Ok(())),
    ] {
        let got = v.verify(Some(&bearer_of(id.as_bytes())), now()).map(|_| ());
        assert_eq!(got, want, "id {id:?}");
    }
    // invalid UTF-8 is not a session ID
    assert_eq!(
        v.verify(Some(&bearer_of(&[0xff; 10])), now()),
        Err(Rejection::BadSessionId)
    );
    // v2 with a short sid: 403 after the v2 checks pass
    let t = unix_seconds(now());
    assert_eq!(
        v.verify(Some(&bearer_of(&v2_plaintext("short", t, &[1; 16]))), now()),
        Err(Rejection::BadSessionId)
    );
}

#[test]
fn v2_window_and_shape_rejections() {
    let v = verifier(false);
    // One fixed "now" for building and checking: no second can tick between.
    let at = now();
    let t = unix_seconds(at);
    let cases: Vec<(Vec<u8>, Rejection)> = vec![
        (v2_plaintext("session-abc123", t - 61, &[2; 16]), Rejection::StaleIat),
        (v2_plaintext("session-abc123", t + 61, &[3; 16]), Rejection::FutureIat),
        (v2_plaintext("session-abc123", t, &[4; 15]), Rejection::MalformedV2),
        (b"{not json".to_vec(), Rejection::MalformedV2),
        (br#"{"v":3,"sid":"session-abc123","iat":0,"nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}"#.to_vec(), Rejection::MalformedV2),
        (br#"{"v":2,"sid":"session-abc123","nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}"#.to_vec(), Rejection::MalformedV2),
        (format!(r#"{{"v":2,"sid":"session-abc123","iat":{t},"nonce":"AAAAAAAAAAAAAAAAAAAAAA==","x":1}}"#).into_bytes(), Rejection::MalformedV2),
        (format!(r#"{{"v":2,"sid":"session-abc123","iat":"{t}","nonce":"AAAAAAAAAAAAAAAAAAAAAA=="}}"#).into_bytes(), Rejection::MalformedV2),
        (format!(r#"{{"v":2,"sid":"session-abc123","iat":{t},"nonce":"%%%"}}"#).into_bytes(), Rejection::MalformedV2),
    ];
    for (pt, want) in cases {
        assert_eq!(
            v.verify(Some(&bearer_of(&pt)), at),
            Err(want),
            "{}",
            String::from_utf8_lossy(&pt)
        );
    }
    // Exactly at both edges (|now - iat| = 60 s) is inside the window.
    for (iat, n) in [(t - 60, 5u8), (t + 60, 6)] {
        let got = v.verify(
            Some(&bearer_of(&v2_plaintext("session-abc123", iat, &[n; 16]))),
            at,
        );
        assert!(got.is_ok(), "iat now{:+}: {got:?}", iat - t);
    }
}

#[test]
fn require_v2_refuses_v1() {
    let v = verifier(true);
    let b = encrypt_v1(test_key().public_key(), "session-abc123").unwrap_or_default();
    assert_eq!(
        v.verify(Some(&header(&b)), now()),
        Err(Rejection::V1Refused)
    );
    assert_eq!(Rejection::V1Refused.status(), 401);
}

#[test]
fn statuses_follow_the_wire_table() {
    for r in [
        Rejection::MissingBearer,
        Rejection::BadBase64,
        Rejection::Decrypt,
        Rejection::MalformedV2,
        Rejection::StaleIat,
        Rejection::FutureIat,
        Rejection::ReplayedNonce,
    ] {
        assert_eq!(r.status(), 401, "{r:?}");
    }
    for r in [Rejection::BadSessionId, Rejection::SessionNotLive] {
        assert_eq!(r.status(), 403, "{r:?}");
    }
}

#[test]
fn plaintext_must_fit_one_block() {
    let k = test_key().public_key();
    assert!(encrypt_plaintext(k, &[b'a'; 446]).is_ok());
    assert_eq!(
        encrypt_plaintext(k, &[b'a'; 447]),
        Err(EncryptError::TooLong { len: 447, max: 446 })
    );
}

#[test]
fn nonce_cache_is_bounded_and_forgets_expired() {
    let c = NonceCache::new(3, Duration::from_secs(60));
    for n in 0u8..3 {
        assert_eq!(c.insert(&[n; 16], 1000, 1000), Ok(()));
    }
    assert_eq!(
        c.insert(&[0; 16], 1000, 1000),
        Err(Rejection::ReplayedNonce)
    );
    assert_eq!(
        c.insert(&[9; 16], 1000, 1000),
        Err(Rejection::NonceCacheFull)
    );
    // 61 s later the old entries have expired and are evicted.
    assert_eq!(c.insert(&[9; 16], 1061, 1061), Ok(()));
    assert_eq!(c.len(), 1);
    // A nonce seen at the end of its window is still remembered until it could no longer pass.
    assert_eq!(
        c.insert(&[9; 16], 1061, 1100),
        Err(Rejection::ReplayedNonce)
    );
}

#[test]
fn rejections_never_contain_request_material() {
    // Real refusals of requests that carry recognisable material: the
    // errors (Display and Debug) must not repeat any of it.
    const MARK: &str = "session-MATERIAL";
    let v = verifier(false);
    let v2_only = verifier(true);
    let pk = test_key().public_key();
    let at = now();
    let t = unix_seconds(at);
    let other = PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let mark_b64 = STANDARD.encode(MARK);
    let mut refused = vec![
        v.verify(Some(format!("Basic {MARK}").as_bytes()), at),
        v.verify(Some(format!("Bearer {MARK}!").as_bytes()), at),
        v.verify(Some(&header(&mark_b64)), at),
        v.verify(
            Some(&header(
                &encrypt_v1(other.public_key(), MARK).unwrap_or_default(),
            )),
            at,
        ),
        v.verify(Some(&bearer_of(format!("{MARK} x").as_bytes())), at),
        v.verify(Some(&bearer_of(format!("{{{MARK}").as_bytes())), at),
        v.verify(Some(&bearer_of(&v2_plaintext(MARK, t - 600, &[1; 16]))), at),
        v.verify(Some(&bearer_of(&v2_plaintext(MARK, t + 600, &[1; 16]))), at),
        v.verify(
            Some(&bearer_of(&v2_plaintext(&format!("{MARK} x"), t, &[2; 16]))),
            at,
        ),
        v2_only.verify(Some(&header(&encrypt_v1(pk, MARK).unwrap_or_default())), at),
    ];
    let replayed = bearer_of(&v2_plaintext(MARK, t, &[3; 16]));
    assert!(v.verify(Some(&replayed), at).is_ok());
    refused.push(v.verify(Some(&replayed), at));
    let mut seen = std::collections::HashSet::new();
    for r in refused {
        let r = r
            .err()
            .unwrap_or_else(|| panic!("a request with {MARK} was accepted"));
        seen.insert(r);
        let text = format!("{r} {r:?}");
        assert!(
            !text.contains("MATERIAL") && !text.contains(&mark_b64),
            "{text}"
        );
        assert!(r.to_string().len() < 60, "{text}");
    }
    // Every kind of refusal a request can cause was looked at.
    assert!(seen.len() >= 9, "{seen:?}");
}

#[test]
fn token_response_wire_shape() {
    let r = TokenResponse {
        token: Secret::new("t0k"),
        expires_at: None,
    };
    assert_eq!(
        serde_json::to_string(&r).ok().as_deref(),
        Some(r#"{"token":"t0k"}"#)
    );
    let parsed: Result<TokenResponse, _> =
        serde_json::from_str(r#"{"token":"a","expires_at":"2026-01-01T00:00:00Z"}"#);
    assert_eq!(
        parsed.ok().and_then(|r| r.expires_at).as_deref(),
        Some("2026-01-01T00:00:00Z")
    );
    assert!(!format!("{r:?}").contains("t0k"));
}
