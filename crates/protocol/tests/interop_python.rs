//! Interop with an independent RSA-OAEP implementation: Python's
//! `cryptography` package, from the virtualenv that `cargo xtask test` prepares
//! (its interpreter is passed in `AMBIENT_TEST_PYTHON`).
//!
//! - ciphertexts made by Python (v1 and v2 plaintexts) decrypt and verify in Rust;
//! - Rust's v1 ciphertexts decrypt in Python with OAEP(SHA-256, MGF1-SHA-256, no label),
//!   using the PKCS#1 private PEM we emit.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::{KeySet, Protocol, Verifier, encrypt_v1};
use ambient_protocol::keys::PrivateKey;

const PY: &str = r#"
import base64, json, os, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
req = json.load(sys.stdin)
pub = serialization.load_pem_public_key(req["public_pem"].encode())
priv = serialization.load_pem_private_key(req["private_pem"].encode(), password=None)
v2 = json.dumps({"v": 2, "sid": req["sid"], "iat": int(time.time()), "nonce": base64.b64encode(os.urandom(16)).decode()},
                separators=(",", ":")).encode()
out = {
    "v1": base64.b64encode(pub.encrypt(req["sid"].encode(), oaep)).decode(),
    "v2": base64.b64encode(pub.encrypt(v2, oaep)).decode(),
    "decrypted": priv.decrypt(base64.b64decode(req["rust_v1"]), oaep).decode(),
}
json.dump(out, sys.stdout)
"#;

fn python() -> String {
    std::env::var("AMBIENT_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("AMBIENT_TEST_PYTHON is not set: run the interop tests through `cargo xtask test`")
    })
}

#[test]
fn python_and_rust_agree_on_oaep_sha256() {
    let key = PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let sid = "session-interop-42";
    let rust_v1 = encrypt_v1(key.public_key(), sid).unwrap_or_else(|e| panic!("{e}"));
    let request = serde_json::json!({
        "public_pem": key.public_key().to_pem(),
        "private_pem": key.to_pkcs1_pem().unwrap_or_else(|e| panic!("{e}")),
        "sid": sid,
        "rust_v1": rust_v1,
    });
    let mut child = Command::new(python())
        .args(["-c", PY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = integration_tests::output_within(
        child,
        Duration::from_secs(60),
        "the Python OAEP interop script",
    );
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(
        answer["decrypted"], sid,
        "Python could not decrypt Rust's v1 ciphertext"
    );

    let verifier = Verifier::new(
        KeySet::new(vec![key]).unwrap_or_else(|| unreachable!()),
        false,
    );
    for (field, protocol) in [("v1", Protocol::V1), ("v2", Protocol::V2)] {
        let bearer = format!("Bearer {}", answer[field].as_str().unwrap_or_default());
        let claim = verifier
            .verify(Some(bearer.as_bytes()), SystemTime::now())
            .unwrap_or_else(|e| panic!("Python {field} ciphertext refused: {e}"));
        assert_eq!((claim.session_id.as_str(), claim.protocol), (sid, protocol));
    }
}
