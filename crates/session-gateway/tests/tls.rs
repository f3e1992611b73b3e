//! The gateway serves gRPC and REST over TLS on one listener when given a
//! certificate.

mod support;

use ambient_protocol::v1::GetSessionRequest;
use ambient_protocol::v1::session_service_client::SessionServiceClient;
use ambient_session_gateway::GatewayTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use support::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A CA (PEM) and a `localhost` leaf it signed (cert PEM, key PEM).
fn pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "gateway test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = params
        .self_signed(&ca_key)
        .unwrap_or_else(|e| panic!("{e}"));
    let issuer = Issuer::new(params, ca_key);
    let leaf_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .and_then(|p| p.signed_by(&leaf_key, &issuer))
        .unwrap_or_else(|e| panic!("{e}"));
    (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_and_rest_over_tls() {
    let (ca, cert, key) = pki();
    let tls =
        GatewayTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let w = World::start_with(Some(tls)).await;
    let port = w.gateway.port();

    let roots =
        reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::builder()
        .tls_certs_only(roots)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = http
        .get(format!(
            "https://localhost:{port}/api/ambient/v1/sessions/{}",
            w.own
        ))
        .bearer_auth(OWN_TOKEN)
        .send()
        .await
        .unwrap_or_else(|e| panic!("REST over TLS: {e}"));
    assert_eq!(resp.status(), 200);

    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap_or_else(|e| panic!("{e}"))
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&ca))
                .domain_name("localhost"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("gRPC over TLS: {e}"));
    let got = SessionServiceClient::new(channel)
        .get_session(authed(GetSessionRequest { id: w.own.clone() }, OWN_TOKEN))
        .await
        .unwrap_or_else(|e| panic!("GetSession over TLS: {e}"));
    assert_eq!(got.into_inner().metadata.map(|m| m.id), Some(w.own.clone()));
}
