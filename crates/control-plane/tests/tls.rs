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

/// A CA (PEM) and a `localhost`/`127.0.0.1` leaf it signed (cert PEM, key PEM).
fn pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = params
        .self_signed(&ca_key)
        .unwrap_or_else(|e| panic!("{e}"));
    let issuer = Issuer::new(params, ca_key);
    let leaf_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .and_then(|p| p.signed_by(&leaf_key, &issuer))
        .unwrap_or_else(|e| panic!("{e}"));
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

/// Terminates TLS (`cert`/`key`) on a loopback port and relays each
/// connection to `to` in plain text: the devserver's REST side over TLS.
async fn tls_front(to: std::net::SocketAddr, cert: &str, key: &str) -> std::net::SocketAddr {
    use std::sync::Arc;
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .unwrap_or_else(|e| panic!("{e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(to).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// Issue 27: the OpenShift service CA (the ServiceAccount directory's
/// `service-ca.crt`; its path moved here by a hidden setting) is trusted
/// by the REST client too: a session is provisioned only after REST calls
/// (its project's prompt) to an API server whose certificate only that CA
/// signed. Before, the REST client trusted the system roots alone and the
/// session never left Pending.
#[tokio::test(flavor = "multi_thread")]
async fn the_rest_client_trusts_the_service_ca() {
    let dir = TempDir::new("cp-service-ca");
    let (ca, cert, key) = pki();
    let ca_file = dir.path().join("service-ca.crt");
    std::fs::write(&ca_file, &ca).unwrap_or_else(|e| panic!("{e}"));
    let dev = DevServer::start();
    let front = tls_front(dev.daemon.addr("http"), &cert, &key).await;
    let kube = FakeKube::start().await;
    let url = format!("https://localhost:{}", front.port());
    let ca_arg = ca_file.display().to_string();
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("AMBIENT_API_SERVER_URL", url.as_str()),
        ("CP_SERVICE_CA_FILE", ca_arg.as_str()),
    ];
    let _cp = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);
    let project = dev.project("proj-service-ca").await;
    let id = dev.new_session(&project, "over-tls").await;
    wait_phase(&dev, &id, "Creating").await;
}
