//! No secret in the control plane's output at full verbosity: the real
//! binary at `trace`, authenticated by OIDC against the real devserver (also
//! at `trace`), a session through its whole life and a token exchange, with
//! the logs read only after both processes have exited (nothing buffered is
//! missed). Kubernetes is the FAKE API of tests/support/fake_kube.

mod support;

use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::encrypt_v2;
use ambient_protocol::keys::PublicKey;
use base64::Engine as _;
use integration_tests::{TempDir, register_secret};
use support::*;

const OIDC_ID: &str = "cp-trace-client";
const OIDC_SECRET: &str = "cp-trace-oidc-secret-91f3c";
const ANTHROPIC_KEY: &str = "sk-ant-NEVER-PRINTED";

fn secret_data(kube: &FakeKube, key: &str) -> String {
    let secret = kube
        .get("secrets", "ambient-code", "ambient-cp-token-keypair")
        .unwrap_or_else(|| panic!("no keypair Secret"));
    let b64 = secret["data"][key].as_str().unwrap_or_default();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
    String::from_utf8_lossy(&raw).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_secret_reaches_the_logs_at_trace() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start_oidc(OIDC_ID, OIDC_SECRET, &["--log-level", "trace"]);
    let dir = TempDir::new("cp-trace");
    let token_url = format!("http://{}/oidc/token", dev.daemon.addr("http"));
    let env = [
        ("OIDC_TOKEN_URL", token_url.as_str()),
        ("OIDC_CLIENT_ID", OIDC_ID),
        ("OIDC_CLIENT_SECRET", OIDC_SECRET),
        ("OIDC_ALLOW_INSECURE", "true"),
        ("LOG_LEVEL", "trace"),
    ];
    let mut cp = control_plane_with(&dev, &kube, &dir, "cp-trace", false, &env);

    // A session through its whole life.
    let ns = dev.project("proj-trace").await;
    let id = dev.new_session(&ns, "trace").await;
    wait_phase(&dev, &id, "Creating").await;
    assert!(kube.set_runner_state(&ns, &pod_name(&id), running()));
    wait_phase(&dev, &id, "Running").await;

    // The token a pod gets is a session token (never the control plane's
    // OIDC access token).
    let private_pem = secret_data(&kube, "private.pem");
    let index: serde_json::Value =
        serde_json::from_str(&secret_data(&kube, "session-signing.json")).unwrap_or_default();
    let signing_pem = secret_data(
        &kube,
        &format!(
            "session-signing-{}.pem",
            index["current"].as_str().unwrap_or_default()
        ),
    );
    let key = PublicKey::from_pem(&secret_data(&kube, "public.pem"))
        .unwrap_or_else(|e| panic!("public key: {e}"));
    let bearer = encrypt_v2(&key, &id, SystemTime::now()).unwrap_or_else(|e| panic!("{e}"));
    let resp = reqwest::Client::new()
        .get(format!("http://{}/token", cp.addr("token server")))
        .header("authorization", format!("Bearer {bearer}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("token: {e}"));
    assert_eq!(resp.status().as_u16(), 200);
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    let issued = body["token"].as_str().unwrap_or_default().to_owned();
    assert!(issued.len() >= 16, "no token issued: {body}");

    assert!(kube.set_runner_state(&ns, &pod_name(&id), exited(0)));
    wait_phase(&dev, &id, "Completed").await;

    // Every secret of this run goes to the suite-wide scan too.
    for s in [&issued, &bearer, &private_pem, &signing_pem] {
        register_secret(s);
    }

    // Read the logs after exit: everything the processes wrote is in.
    let cp_status = cp.terminate(Duration::from_secs(20));
    assert!(cp_status.is_some_and(|s| s.success()), "{cp_status:?}");
    let mut dev = dev;
    dev.daemon.terminate(Duration::from_secs(20));
    let cp_logs = cp.logs();
    let dev_logs = dev.daemon.logs();
    assert!(
        cp_logs.lines().count() > 20 && cp_logs.contains("TRACE"),
        "the control plane did not log at trace:\n{cp_logs}"
    );
    assert!(dev_logs.contains("TRACE") || dev_logs.contains("trace"));
    let private_lines: Vec<&str> = private_pem
        .lines()
        .chain(signing_pem.lines())
        .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
        .collect();
    assert!(!private_lines.is_empty());
    for (what, logs) in [("control plane", &cp_logs), ("devserver", &dev_logs)] {
        for (name, secret) in [
            ("OIDC client secret", OIDC_SECRET),
            ("ANTHROPIC_API_KEY", ANTHROPIC_KEY),
            ("issued API token", issued.as_str()),
            ("exchange ciphertext", bearer.as_str()),
        ] {
            assert!(!logs.contains(secret), "the {what} logged the {name}");
        }
        for line in &private_lines {
            assert!(!logs.contains(line), "the {what} logged the private key");
        }
    }
}
