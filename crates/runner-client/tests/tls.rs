//! gRPC over TLS: the devserver serves a leaf certificate signed by a CA
//! made here; the client trusts that CA through AMBIENT_GRPC_CA_CERT_FILE
//! and works, and with another CA it fails with an error that says why.

mod support;

use std::path::Path;

use ambient_protocol::Secret;
use ambient_runner_client::{Api, SessionMessages, TokenSource};
use futures::StreamExt as _;
use integration_tests::TempDir;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use support::*;

/// A CA: its certificate (PEM) and the issuer to sign leaves with.
fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
    (cert.pem(), Issuer::new(params, key))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_the_right_ca_works_and_a_wrong_ca_fails_clearly() {
    let tmp = TempDir::new("rc-tls");
    let (ca_pem, issuer) = new_ca("runner-client test CA");
    let (other_pem, _) = new_ca("some other CA");
    let leaf_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .and_then(|p| p.signed_by(&leaf_key, &issuer))
        .unwrap_or_else(|e| panic!("{e}"));
    let cert = write(tmp.path(), "leaf.pem", &leaf.pem());
    let key = write(tmp.path(), "leaf.key", &leaf_key.serialize_pem());
    let ca = write(tmp.path(), "ca.pem", &ca_pem);
    let other = write(tmp.path(), "other-ca.pem", &other_pem);

    let dev = tokio::task::block_in_place(|| {
        DevServer::start(&["--tls-cert-file", &cert, "--tls-key-file", &key])
    });
    let grpc = dev.grpc();
    let admin = Api::new(
        &grpc,
        true,
        Some(Path::new(&ca)),
        TokenSource::fixed(Secret::new(TOKEN)),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let id = new_session(&admin, "tls").await;

    // The CLI with the environment a pod gets.
    let env = |ca_file: &str, use_tls: &str| {
        run_client(
            &["push", "--event-type", "assistant", "--payload", "over tls"],
            &[
                ("AMBIENT_GRPC_URL", grpc.as_str()),
                ("AMBIENT_GRPC_USE_TLS", use_tls),
                ("AMBIENT_GRPC_CA_CERT_FILE", ca_file),
                ("BOT_TOKEN", TOKEN),
                ("SESSION_ID", id.as_str()),
            ],
        )
    };
    let ok = env(&ca, "yes");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let line = json_lines(&String::from_utf8_lossy(&ok.stdout)).remove(0);
    assert_eq!(line["payload"], "over tls");

    // The library's watch over the same TLS channel.
    let mut watch = Box::pin(SessionMessages::new(admin.clone(), &id).watch(0));
    match tokio::time::timeout(std::time::Duration::from_secs(30), watch.next()).await {
        Ok(Some(Ok(m))) => assert_eq!(m.payload, "over tls"),
        other => panic!("watch over TLS: {other:?}"),
    }

    let wrong = env(&other, "true");
    assert_eq!(wrong.status.code(), Some(1));
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.to_lowercase().contains("certificate"),
        "the error names the certificate problem: {err}"
    );
    let plain = env(&ca, "false");
    assert!(!plain.status.success(), "plain gRPC to a TLS server fails");
}
