use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn nonces() -> NonceCache {
    NonceCache::new(64, Duration::from_secs(60))
}

fn root() -> RootKey {
    RootKey::from_bytes(&[7u8; KEY_LEN]).unwrap_or_else(|| panic!("32 bytes"))
}

fn server() -> RootKeys {
    RootKeys::new("install-a", vec![root()]).unwrap_or_else(|| panic!("one root"))
}

const NOW: u64 = 1_800_000_000;

fn header(file: &SessionKeyFile, now: u64) -> String {
    file.authorization("GET", "/token", at(now))
        .unwrap_or_else(|e| panic!("{e:?}"))
}

#[test]
fn a_key_file_holder_is_admitted_once() {
    let file = server().key_file("session-0001", "uid-1");
    let h = header(&file, NOW);
    let claim = server()
        .verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &nonces())
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(claim.session_id, "session-0001");
    assert_eq!(claim.generation, "uid-1");
    assert_eq!(claim.kid, root().kid());
    let cache = nonces();
    let s = server();
    assert!(
        s.verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &cache)
            .is_ok()
    );
    assert_eq!(
        s.verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &cache),
        Err(Rejection::ReplayedNonce)
    );
}

#[test]
fn the_derivation_separates_installation_session_and_generation() {
    let r = root();
    let base = r.derive("install-a", "session-0001", "1");
    assert_ne!(base, r.derive("install-b", "session-0001", "1"));
    assert_ne!(base, r.derive("install-a", "session-0002", "1"));
    assert_ne!(base, r.derive("install-a", "session-0001", "2"));
    // Shifting a boundary between parts changes the key.
    assert_ne!(
        r.derive("install-a", "session-00011", "2"),
        r.derive("install-a", "session-0001", "12")
    );
    let other = RootKey::from_bytes(&[8u8; KEY_LEN]).unwrap_or_else(|| panic!("32 bytes"));
    assert_ne!(base, other.derive("install-a", "session-0001", "1"));
    assert_ne!(r.kid(), other.kid());
}

#[test]
fn a_key_for_one_session_does_not_prove_another() {
    // A session holding its own key claims another session's ID: the server
    // derives the other session's key, and the MAC does not match.
    let mine = server().key_file("session-mine-1", "g1");
    let forged = SessionKeyFile {
        session_id: "session-theirs".into(),
        ..mine.clone()
    };
    let h = header(&forged, NOW);
    assert_eq!(
        server().verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &nonces()),
        Err(Rejection::BadMac)
    );
    // Same for another generation of the own session.
    let forged = SessionKeyFile {
        generation: "g2".into(),
        ..mine
    };
    let h = header(&forged, NOW);
    assert_eq!(
        server().verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &nonces()),
        Err(Rejection::BadMac)
    );
}

#[test]
fn wrong_key_other_installation_method_or_path_fail_the_mac() {
    let s = server();
    let wrong_root = RootKey::from_bytes(&[9u8; KEY_LEN]).unwrap_or_else(|| panic!("32 bytes"));
    // The kid of the server's root but another key.
    let mut file = SessionKeyFile::derive(&wrong_root, "install-a", "session-0001", "g");
    file.kid = root().kid().to_owned();
    let h = header(&file, NOW);
    assert_eq!(
        s.verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &nonces()),
        Err(Rejection::BadMac)
    );
    let other_install = SessionKeyFile::derive(&root(), "install-b", "session-0001", "g");
    let h = header(&other_install, NOW);
    assert_eq!(
        s.verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &nonces()),
        Err(Rejection::BadMac)
    );
    let good = s.key_file("session-0001", "g");
    let h = header(&good, NOW);
    assert_eq!(
        s.verify(Some(h.as_bytes()), "POST", "/token", at(NOW), &nonces()),
        Err(Rejection::BadMac)
    );
    assert_eq!(
        s.verify(Some(h.as_bytes()), "GET", "/other", at(NOW), &nonces()),
        Err(Rejection::BadMac)
    );
    // A refused MAC uses up no nonce memory.
    let cache = nonces();
    let _ = s.verify(Some(h.as_bytes()), "POST", "/token", at(NOW), &cache);
    assert!(cache.is_empty());
}

#[test]
fn an_unknown_kid_is_refused_and_a_retired_root_still_verifies() {
    let old = root();
    let new = RootKey::from_bytes(&[3u8; KEY_LEN]).unwrap_or_else(|| panic!("32 bytes"));
    let file = SessionKeyFile::derive(&old, "install-a", "session-0001", "g");
    let h = header(&file, NOW);
    let only_new = RootKeys::new("install-a", vec![new.clone()]).unwrap_or_else(|| panic!("root"));
    assert_eq!(
        only_new.verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &nonces()),
        Err(Rejection::UnknownKeyId)
    );
    let both = RootKeys::new("install-a", vec![new, old]).unwrap_or_else(|| panic!("roots"));
    assert!(
        both.verify(Some(h.as_bytes()), "GET", "/token", at(NOW), &nonces())
            .is_ok()
    );
}

#[test]
fn the_time_window_is_sixty_seconds_either_way() {
    let s = server();
    let file = s.key_file("session-0001", "g");
    for (sent, now, expected) in [
        (NOW - 60, NOW, Ok(())),
        (NOW + 60, NOW, Ok(())),
        (NOW - 61, NOW, Err(Rejection::StaleIat)),
        (NOW + 61, NOW, Err(Rejection::FutureIat)),
    ] {
        let h = header(&file, sent);
        let got = s
            .verify(Some(h.as_bytes()), "GET", "/token", at(now), &nonces())
            .map(|_| ());
        assert_eq!(got, expected, "sent at {sent}, checked at {now}");
    }
}

#[test]
fn a_full_nonce_cache_fails_closed() {
    let s = server();
    let file = s.key_file("session-0001", "g");
    let cache = NonceCache::new(1, Duration::from_secs(60));
    let first = header(&file, NOW);
    assert!(
        s.verify(Some(first.as_bytes()), "GET", "/token", at(NOW), &cache)
            .is_ok()
    );
    let second = header(&file, NOW);
    assert_eq!(
        s.verify(Some(second.as_bytes()), "GET", "/token", at(NOW), &cache),
        Err(Rejection::NonceCacheFull)
    );
}

#[test]
fn the_key_file_round_trips_and_never_prints_its_key() {
    let file = server().key_file("session-0001", "uid-1");
    let json = file.to_json();
    let back = SessionKeyFile::parse(json.expose().as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(back, file);
    let key_b64 = STANDARD.encode(file.key.0);
    assert!(json.expose().contains(&key_b64));
    for shown in [
        format!("{file:?}"),
        format!("{:?}", file.key),
        format!("{:?}", root()),
    ] {
        assert!(!shown.contains(&key_b64), "{shown}");
        assert!(!shown.contains("7, 7, 7"), "{shown}");
    }
    assert!(!format!("{json:?}").contains(&key_b64));
}

#[test]
fn malformed_key_files_are_refused_without_echoing_them() {
    let good = server().key_file("session-0001", "uid-1").to_json();
    let good: serde_json::Value =
        serde_json::from_str(good.expose()).unwrap_or_else(|e| panic!("{e:?}"));
    let with = |field: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[field] = value;
        serde_json::to_vec(&v).unwrap_or_else(|e| panic!("{e:?}"))
    };
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        with("v", 2.into()),
        with("kid", "".into()),
        with("gen", "a b".into()),
        with("sid", "short".into()),
        with("sid", "session,0001".into()),
        with("key", "AAAA".into()),
        with("extra", "x".into()),
    ];
    for case in cases {
        let err = SessionKeyFile::parse(&case)
            .err()
            .unwrap_or_else(|| panic!("malformed"));
        assert!(!err.to_string().contains("uid-1"), "{err}");
    }
}

#[test]
fn headers_are_parsed_strictly() {
    let file = server().key_file("session-0001", "g");
    let good = header(&file, NOW);
    let parsed = parse_header(good.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(parsed.session_id, "session-0001");
    assert!(is_v3(good.as_bytes()));
    assert!(!is_v3(b"Bearer abc"));
    assert!(!is_v3(b"Ambient-HMACkid=x"));

    let params = good
        .strip_prefix("Ambient-HMAC ")
        .unwrap_or_else(|| panic!("scheme"));
    // Any order, spaces after commas.
    let mut parts: Vec<&str> = params.split(',').collect();
    parts.reverse();
    let reordered = format!("Ambient-HMAC {}", parts.join(", "));
    assert_eq!(parse_header(reordered.as_bytes()), Ok(parsed.clone()));

    let bad = [
        String::new(),
        "Ambient-HMAC".into(),
        format!("ambient-hmac {params}"),
        format!("Bearer {params}"),
        format!("Ambient-HMAC {params},kid=x"),
        format!("Ambient-HMAC {params},extra=1"),
        format!("Ambient-HMAC {params},"),
        good.replace("ts=", "ts=+"),
        good.replace("ts=", "ts=-"),
        good.replace("ts=", "ts=0"),
        good.replace("gen=g", "gen="),
        good.replace("gen=g", "gen=g h"),
        good.replace("sid=session-0001", "sid=s"),
        good.replace("mac=", "mac=AA"),
        good.replace("nonce=", "nonce=!"),
        format!("Ambient-HMAC {}", "kid=x,".repeat(200)),
    ];
    for case in bad {
        assert_eq!(
            parse_header(case.as_bytes()),
            Err(Rejection::MalformedV3),
            "{case}"
        );
    }
    let short_nonce = format!(
        "Ambient-HMAC kid=r1,sid=session-0001,gen=g,ts=1,nonce={},mac={}",
        STANDARD.encode([0u8; 15]),
        STANDARD.encode([0u8; 32])
    );
    assert_eq!(
        parse_header(short_nonce.as_bytes()),
        Err(Rejection::MalformedV3)
    );
    assert_eq!(parse_header(&[0xff, 0xfe]), Err(Rejection::MalformedV3));
}

#[test]
fn root_keys_round_trip_through_base64() {
    let r = RootKey::generate().unwrap_or_else(|e| panic!("{e:?}"));
    let back = RootKey::from_base64(r.to_base64().expose()).unwrap_or_else(|| panic!("parses"));
    assert_eq!(back, r);
    assert_eq!(back.kid(), r.kid());
    assert!(RootKey::from_base64("AAAA").is_none());
    assert!(RootKey::from_bytes(&[0u8; 31]).is_none());
}
