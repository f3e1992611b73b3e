use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ambient_protocol::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::{SessionIdentity, VerifyToken};

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn minter(ring: KeyRing) -> SessionTokens {
    SessionTokens::new(ring, DEFAULT_LIFETIME).unwrap_or_else(|e| panic!("{e}"))
}

fn mint(tokens: &SessionTokens, sid: &str, at: SystemTime) -> String {
    tokens
        .mint(sid, "proj-a", "7", at)
        .unwrap_or_else(|e| panic!("{e}"))
        .token
        .expose()
        .to_owned()
}

fn part(token: &str, i: usize) -> serde_json::Value {
    let raw = token.split('.').nth(i).unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD.decode(raw).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

fn with_part(token: &str, i: usize, value: &serde_json::Value) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[i] = URL_SAFE_NO_PAD.encode(value.to_string());
    parts.join(".")
}

#[test]
fn minted_token_round_trips_with_the_wire_claims() {
    let key = &test_keys()[0];
    let tokens = minter(KeyRing::new(key.clone()));
    let minted = tokens
        .mint("sess-0001", "proj-a", "7", t0())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(minted.expires_at, t0() + secs(600));
    let token = minted.token.expose();
    let header = part(token, 0);
    assert_eq!(
        header,
        serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": key.kid()})
    );
    let claims = part(token, 1);
    for name in ["sub", "username", "preferred_username"] {
        assert_eq!(claims[name], "ambient-session-sess-0001", "{name}");
    }
    assert_eq!(claims["sid"], "sess-0001");
    assert_eq!(claims["project"], "proj-a");
    assert_eq!(claims["gen"], "7");
    assert_eq!(claims["iat"], 1_800_000_000u64);
    assert_eq!(claims["exp"], 1_800_000_600u64);
    let jti = URL_SAFE_NO_PAD
        .decode(claims["jti"].as_str().unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(jti.len(), 16);
    assert_eq!(
        tokens.verify_at(token, t0() + secs(599)),
        Ok(SessionIdentity {
            session_id: "sess-0001".into(),
            project: "proj-a".into(),
            generation: "7".into(),
        })
    );
    // The trait's verify uses the real clock: a token minted now verifies.
    let now = mint(&tokens, "sess-0002", SystemTime::now());
    assert_eq!(
        tokens.verify(&now).map(|i| i.session_id),
        Some("sess-0002".into())
    );
    assert_eq!(tokens.verify(token), None, "minted for 2027: not valid now");
}

#[test]
fn tampered_tokens_are_refused() {
    let tokens = minter(KeyRing::new(test_keys()[0].clone()));
    let token = mint(&tokens, "sess-0001", t0());
    let mut claims = part(&token, 1);
    claims["project"] = "proj-b".into();
    let forged = with_part(&token, 1, &claims);
    assert_eq!(tokens.verify_at(&forged, t0()), Err(Refusal::Signature));

    let mut sig = URL_SAFE_NO_PAD
        .decode(token.rsplit('.').next().unwrap_or_default())
        .unwrap_or_default();
    sig[10] ^= 1;
    let mut parts: Vec<&str> = token.split('.').collect();
    let sig = URL_SAFE_NO_PAD.encode(sig);
    parts[2] = &sig;
    assert_eq!(
        tokens.verify_at(&parts.join("."), t0()),
        Err(Refusal::Signature)
    );
    for junk in ["", "a.b", "a.b.c.d", &format!("{token}."), "..."] {
        assert_eq!(
            tokens.verify_at(junk, t0()),
            Err(Refusal::Malformed),
            "{junk}"
        );
    }
    let huge = format!("{token}{}", "A".repeat(jwt::MAX_TOKEN_LEN));
    assert_eq!(tokens.verify_at(&huge, t0()), Err(Refusal::Malformed));
}

#[test]
fn other_algorithms_are_refused() {
    let key = &test_keys()[0];
    let tokens = minter(KeyRing::new(key.clone()));
    let token = mint(&tokens, "sess-0001", t0());
    let payload = token.split('.').nth(1).unwrap_or_default();
    let header = |alg: &str| {
        URL_SAFE_NO_PAD
            .encode(serde_json::json!({"alg": alg, "typ": "JWT", "kid": key.kid()}).to_string())
    };
    // alg none, no signature.
    let none = format!("{}.{payload}.", header("none"));
    assert_eq!(tokens.verify_at(&none, t0()), Err(Refusal::Algorithm));
    // HS256 keyed with the public JWK (the classic confusion attack).
    let signing_input = format!("{}.{payload}", header("HS256"));
    let hmac_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        key.verifying_key().jwk().to_string().as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&hmac_key, signing_input.as_bytes());
    let hs = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
    assert_eq!(tokens.verify_at(&hs, t0()), Err(Refusal::Algorithm));
    // RS256 spelled differently, or a PS256 header on our signature.
    for alg in ["rs256", "PS256", "RS512"] {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[0] = header(alg);
        assert_eq!(
            tokens.verify_at(&parts.join("."), t0()),
            Err(Refusal::Algorithm),
            "{alg}"
        );
    }
}

#[test]
fn unknown_or_missing_kid_is_refused() {
    let ours = minter(KeyRing::new(test_keys()[0].clone()));
    let theirs = minter(KeyRing::new(test_keys()[1].clone()));
    let token = mint(&theirs, "sess-0001", t0());
    assert_eq!(ours.verify_at(&token, t0()), Err(Refusal::UnknownKey));
    // Their token under our kid: the signature does not verify.
    let mut header = part(&token, 0);
    header["kid"] = test_keys()[0].kid().into();
    let relabeled = with_part(&token, 0, &header);
    assert_eq!(ours.verify_at(&relabeled, t0()), Err(Refusal::Signature));
    let no_kid = with_part(&token, 0, &serde_json::json!({"alg": "RS256"}));
    assert_eq!(ours.verify_at(&no_kid, t0()), Err(Refusal::UnknownKey));
}

#[test]
fn expiry_and_issue_time_are_checked_with_leeway() {
    let tokens = minter(KeyRing::new(test_keys()[0].clone()));
    let token = mint(&tokens, "sess-0001", t0());
    let exp = t0() + secs(600);
    assert!(tokens.verify_at(&token, exp + LEEWAY - secs(1)).is_ok());
    assert_eq!(
        tokens.verify_at(&token, exp + LEEWAY),
        Err(Refusal::Expired)
    );
    assert!(tokens.verify_at(&token, t0() - LEEWAY).is_ok());
    assert_eq!(
        tokens.verify_at(&token, t0() - LEEWAY - secs(1)),
        Err(Refusal::NotYetValid)
    );
}

#[test]
fn inconsistent_claims_are_refused_even_when_signed() {
    let key = &test_keys()[0];
    let tokens = minter(KeyRing::new(key.clone()));
    let good = Claims::new(
        "sess-0001",
        "proj-a",
        "1",
        1_800_000_000,
        secs(600),
        "j".into(),
    );
    let sign = |c: &Claims| jwt::encode(key, c).unwrap_or_default();
    assert!(tokens.verify_at(&sign(&good), t0()).is_ok());
    let cases = [
        Claims {
            sub: "ambient-session-sess-0002".into(),
            ..good.clone()
        },
        Claims {
            preferred_username: "admin".into(),
            ..good.clone()
        },
        Claims {
            project: String::new(),
            ..good.clone()
        },
        Claims {
            exp: good.iat + 601,
            ..good.clone()
        },
        Claims {
            exp: good.iat,
            ..good.clone()
        },
    ];
    for c in &cases {
        assert_eq!(
            tokens.verify_at(&sign(c), t0()),
            Err(Refusal::Claims),
            "{c:?}"
        );
    }
}

#[test]
fn rotation_publishes_next_before_use_and_keeps_retired_until_expiry() {
    let [k0, k1, _] = test_keys();
    let tokens = minter(KeyRing::new(k0.clone()));
    let kids = |t: &SessionTokens| -> Vec<String> {
        let jwks: serde_json::Value = serde_json::from_str(&t.jwks()).unwrap_or_default();
        jwks["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(kids(&tokens), [k0.kid()]);
    tokens.update_ring(|r| r.set_next(k1.clone()));
    // Published, not yet signing.
    assert_eq!(kids(&tokens), [k0.kid(), k1.kid()]);
    let old = mint(&tokens, "sess-0001", t0());
    assert_eq!(part(&old, 0)["kid"], k0.kid());
    let promoted_at = t0() + secs(60);
    assert!(tokens.update_ring(|r| r.promote_next(promoted_at)));
    assert!(
        !tokens.update_ring(|r| r.promote_next(promoted_at)),
        "no next key"
    );
    let new = mint(&tokens, "sess-0002", promoted_at);
    assert_eq!(part(&new, 0)["kid"], k1.kid());
    assert_eq!(kids(&tokens), [k1.kid(), k0.kid()]);
    // The old key's token verifies until its own expiry.
    assert!(tokens.verify_at(&old, t0() + secs(600)).is_ok());
    // Retirement keeps k0 while any token it signed may be valid.
    let last_exp = promoted_at + MAX_LIFETIME + LEEWAY;
    assert_eq!(tokens.update_ring(|r| r.retire_expired(last_exp)), 0);
    assert_eq!(kids(&tokens), [k1.kid(), k0.kid()]);
    assert_eq!(
        tokens.update_ring(|r| r.retire_expired(last_exp + secs(1))),
        1
    );
    assert_eq!(kids(&tokens), [k1.kid()]);
    assert_eq!(
        tokens.verify_at(&old, t0() + secs(100)),
        Err(Refusal::UnknownKey)
    );
    assert!(tokens.verify_at(&new, promoted_at).is_ok());
}

#[test]
fn a_new_current_key_signs_at_once_cached_tokens_notwithstanding() {
    let [k0, k1, k2] = test_keys();
    let tokens = minter(KeyRing::new(k0.clone()).with_next(k1.clone()));
    let old = mint(&tokens, "sess-0001", t0());
    // Publishing a next key changes nothing for the cache.
    tokens.update_ring(|r| r.set_next(k2.clone()));
    assert_eq!(mint(&tokens, "sess-0001", t0() + secs(1)), old);
    // A new current key: the cached token is not handed out again.
    tokens.update_ring(|r| {
        *r = KeyRing::new(k1.clone())
            .with_retired(k0.verifying_key().clone(), t0() + MAX_LIFETIME + LEEWAY)
    });
    let new = mint(&tokens, "sess-0001", t0() + secs(2));
    assert_eq!(part(&new, 0)["kid"], k1.kid());
    // The old token still verifies with the retired key.
    assert!(tokens.verify_at(&old, t0() + secs(2)).is_ok());
}

#[test]
fn cache_reuses_a_token_until_a_third_of_its_life_remains() {
    let tokens = minter(KeyRing::new(test_keys()[0].clone()));
    let first = mint(&tokens, "sess-0001", t0());
    assert_eq!((tokens.signatures(), tokens.cache_hits()), (1, 0));
    // 400 s into 600: 200 s (a third) left, still reused.
    assert_eq!(mint(&tokens, "sess-0001", t0() + secs(400)), first);
    assert_eq!((tokens.signatures(), tokens.cache_hits()), (1, 1));
    // Another generation or project is another token.
    let regen = tokens
        .mint("sess-0001", "proj-a", "8", t0())
        .map(|m| m.token)
        .unwrap_or_default();
    assert_ne!(regen.expose(), first);
    assert_eq!(tokens.signatures(), 2);
    // Less than a third left: re-minted, and the new one is cached.
    let second = mint(&tokens, "sess-0001", t0() + secs(401));
    assert_ne!(second, first);
    assert_eq!(tokens.signatures(), 3);
    assert_eq!(mint(&tokens, "sess-0001", t0() + secs(402)), second);
    assert_eq!((tokens.signatures(), tokens.cache_hits()), (3, 2));
    // sign() never uses the cache.
    let _ = tokens.sign("sess-0001", "proj-a", "7", t0() + secs(402));
    assert_eq!(tokens.signatures(), 4);
}

#[test]
fn cache_stays_bounded() {
    let tokens = minter(KeyRing::new(test_keys()[0].clone())).with_cache_capacity(2);
    for sid in ["sess-0001", "sess-0002", "sess-0003", "sess-0004"] {
        mint(&tokens, sid, t0());
        assert!(tokens.cached_len() <= 2);
    }
    // Stale entries are swept before the cache is cleared.
    mint(&tokens, "sess-0005", t0() + secs(500));
    assert_eq!(tokens.cached_len(), 1);
}

#[test]
fn lifetime_is_bounded_to_ten_minutes() {
    let ring = || KeyRing::new(test_keys()[0].clone());
    for bad in [Duration::ZERO, secs(601), Duration::from_millis(999)] {
        assert_eq!(
            SessionTokens::new(ring(), bad).err(),
            Some(TokenError::Lifetime),
            "{bad:?}"
        );
    }
    let short = SessionTokens::new(ring(), secs(60)).unwrap_or_else(|e| panic!("{e}"));
    let minted = short.mint("sess-0001", "p", "0", t0()).ok();
    assert_eq!(minted.map(|m| m.expires_at), Some(t0() + secs(60)));
}

#[test]
fn jwks_keys_parse_back_to_the_same_keys() {
    let [k0, k1, _] = test_keys();
    let ring = KeyRing::new(k0.clone()).with_next(k1.clone());
    let jwks: serde_json::Value = serde_json::from_str(&ring.jwks()).unwrap_or_default();
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2);
    for (jwk, key) in keys.iter().zip([k0, k1]) {
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["e"], "AQAB");
        let parsed = VerifyingKey::from_jwk(jwk).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.kid(), key.kid());
        assert_eq!(jwk["kid"], key.kid());
        let sig = key.sign(b"m").unwrap_or_default();
        assert!(parsed.verify(b"m", &sig));
    }
}

#[test]
fn ring_round_trips_through_secret_data() {
    let [k0, k1, k2] = test_keys();
    let mut ring = KeyRing::new(k0.clone()).with_next(k1.clone());
    assert!(ring.promote_next(t0()));
    ring.set_next(k2.clone());
    let data = ring.to_secret_data().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = data.keys().map(String::as_str).collect();
    let mut expected = vec![INDEX_KEY.to_owned(), key_name(k1.kid()), key_name(k2.kid())];
    expected.sort();
    assert_eq!(names, expected, "retired keys keep no private half");
    // Secret data never prints a key.
    assert!(!format!("{data:?}").contains("PRIVATE"));
    let back = KeyRing::from_secret_data(&data, t0()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.current().kid(), k1.kid());
    assert_eq!(back.next().map(SigningKey::kid), Some(k2.kid()));
    assert_eq!(back.jwks(), ring.jwks());
    // Past the retired key's time, it is left out.
    let later =
        KeyRing::from_secret_data(&data, t0() + secs(3600)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(later.retired().len(), 0);

    let mut missing = data.clone();
    missing.remove(&key_name(k2.kid()));
    assert_eq!(
        KeyRing::from_secret_data(&missing, t0()).err(),
        Some(StoreError::MissingKey(key_name(k2.kid())))
    );
    let mut swapped = data.clone();
    swapped.insert(key_name(k2.kid()), data[&key_name(k1.kid())].clone());
    assert_eq!(
        KeyRing::from_secret_data(&swapped, t0()).err(),
        Some(StoreError::WrongKid(key_name(k2.kid())))
    );
    let mut bad = BTreeMap::new();
    bad.insert(INDEX_KEY.to_owned(), Secret::new("{"));
    assert_eq!(
        KeyRing::from_secret_data(&bad, t0()).err(),
        Some(StoreError::BadIndex)
    );
    assert_eq!(
        KeyRing::from_secret_data(&BTreeMap::new(), t0()).err(),
        Some(StoreError::NoIndex)
    );
}
