//! gRPC over TLS: the control plane trusts the API server through
//! AMBIENT_GRPC_CA_CERT_FILE (a self-signed certificate made here).

mod support;

use integration_tests::TempDir;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_talks_tls_to_the_api_server() {
    let dir = TempDir::new("cp-tls");
    let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    let cert = rcgen::generate_simple_self_signed(names).unwrap_or_else(|e| panic!("{e}"));
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert_file, cert.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
    let (cert_arg, key_arg) = (
        cert_file.display().to_string(),
        key_file.display().to_string(),
    );
    let tls = [
        "--tls-cert-file",
        cert_arg.as_str(),
        "--tls-key-file",
        key_arg.as_str(),
    ];
    let dev = DevServer::start_full(None, None, &tls);

    let kube = FakeKube::start().await;
    let auth = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("AMBIENT_GRPC_USE_TLS", "true"),
        ("AMBIENT_GRPC_CA_CERT_FILE", cert_arg.as_str()),
    ];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &auth);
    let project = dev.project("proj-tls").await;
    let id = dev.new_session(&project, "over-tls").await;
    wait_phase(&dev, &id, "Creating").await;
}
