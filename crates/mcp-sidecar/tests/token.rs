//! The sidecar's API token: exchanged with the real ambient-token-server,
//! refreshed and retried once when the API rejects it (the devserver is
//! restarted with a new token, so the old one is revoked mid-run), and the
//! startup errors of a sidecar without a token source. No token appears in
//! any log (everything runs at trace level).

mod support;

use std::process::Command;
use std::time::Duration;

use integration_tests::{Daemon, Spec, TempDir, bin_path};
use serde_json::json;
use support::mcp::{Kind, Tools as _, connect};
use support::{Rest, assert_no_secret, devserver, s};

const OLD: &str = "mcp-it-old-token-0a1b2c";
const NEW: &str = "mcp-it-new-token-9z8y7x";

fn token_server(tmp: &TempDir, grpc: &str, token: &str, listen: &str) -> Daemon {
    let key = tmp.path().join("key.pem");
    let token_file = tmp.path().join("api-token");
    std::fs::write(&token_file, token).unwrap_or_else(|e| panic!("{e}"));
    Daemon::start(
        Spec::new("ambient-token-server")
            .args([
                "--listen",
                listen,
                "--generate-key",
                "--session-cache-ms",
                "0",
            ])
            .arg("--key-file")
            .arg(key.to_string_lossy())
            .arg("--api-token-file")
            .arg(token_file.to_string_lossy())
            .args(["--api-server-grpc", grpc])
            // The sidecar's refresh of a rotated platform token is under
            // test; session tokens and the gateway are tested elsewhere.
            .args(["--session-identity", "platform"])
            .listener("token server"),
    )
}

fn public_pem(tmp: &TempDir) -> String {
    let pem = std::fs::read_to_string(tmp.path().join("key.pem")).unwrap_or_else(|e| panic!("{e}"));
    ambient_protocol::keys::PrivateKey::from_pem(&pem)
        .unwrap_or_else(|e| panic!("{e}"))
        .public_key()
        .to_pem()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_rotation_mid_run_is_handled_by_one_refresh_and_retry() {
    let data = TempDir::new("mcp-rotation-data");
    let keys = TempDir::new("mcp-rotation-keys");
    let mut dev = devserver(&[OLD], Some(&data), None);
    let (grpc, http) = (dev.addr("grpc"), dev.addr("http"));
    let rest = Rest::new(http, OLD);
    let project = rest.project("rotation").await;
    let sid = rest.session(&project, "rotating").await;
    let mut ts = token_server(&keys, &grpc.to_string(), OLD, "127.0.0.1:0");
    let ts_addr = ts.addr("token server");
    let mut mcp = Daemon::start(
        Spec::new("ambient-mcp")
            .args([
                "--transport",
                "sse",
                "--bind",
                "127.0.0.1:0",
                "--log-level",
                "trace",
            ])
            .args(["--api-url", &format!("http://{http}")])
            .env("AMBIENT_CP_TOKEN_URL", format!("http://{ts_addr}/token"))
            .env("AMBIENT_CP_TOKEN_PUBLIC_KEY", public_pem(&keys))
            .env("SESSION_ID", &sid)
            .listener("mcp"),
    );
    let client = connect(Kind::LegacySse, mcp.addr("mcp")).await;
    let got = client
        .call("get_session", json!({"session_id": sid}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s(&got["id"]), sid);

    // Revoke: the API now accepts only NEW, and the token server hands it out.
    dev.terminate(Duration::from_secs(10));
    ts.terminate(Duration::from_secs(10));
    let dev2 = devserver(&[NEW], Some(&data), Some((grpc.port(), http.port())));
    let mut ts2 = token_server(&keys, &grpc.to_string(), NEW, &ts_addr.to_string());
    let got = client
        .call("get_session", json!({"session_id": sid}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s(&got["id"]),
        sid,
        "the 401 was answered by one refresh and retry"
    );
    let logs = mcp.logs();
    assert!(
        logs.contains("refreshing the token and retrying once"),
        "{logs}"
    );

    let status = mcp.terminate(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "exit 0 on SIGTERM");
    ts2.terminate(Duration::from_secs(10));
    for logs in [mcp.logs(), ts2.logs(), dev2.logs()] {
        assert_no_secret(&logs, &[OLD, NEW]);
    }
}

#[test]
fn missing_token_configuration_is_one_line_and_exit_1() {
    let out = Command::new(bin_path("ambient-mcp"))
        .env_remove("AMBIENT_TOKEN")
        .env_remove("AMBIENT_CP_TOKEN_URL")
        .env_remove("AMBIENT_CP_TOKEN_PUBLIC_KEY")
        .env("SESSION_ID", "sess-123456")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("AMBIENT_TOKEN") && err.contains("missing AMBIENT_CP_TOKEN_URL"),
        "{err}"
    );

    let help = Command::new(bin_path("ambient-mcp"))
        .arg("--help")
        .env("AMBIENT_TOKEN", "help-must-not-show-this")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("MCP_TRANSPORT") && text.contains("MCP_BIND_ADDR"),
        "{text}"
    );
    assert!(!text.contains("help-must-not-show-this"), "{text}");
}

#[test]
fn an_unreachable_token_server_stops_startup() {
    let key = ambient_protocol::keys::PrivateKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let out = Command::new(bin_path("ambient-mcp"))
        .env("AMBIENT_CP_TOKEN_URL", "http://127.0.0.1:9/token")
        .env("AMBIENT_CP_TOKEN_PUBLIC_KEY", key.public_key().to_pem())
        .env("SESSION_ID", "sess-123456")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("initial token fetch failed"), "{err}");
}
