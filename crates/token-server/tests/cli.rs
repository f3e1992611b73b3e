//! The binary's command line: key generation, public key printing, config
//! errors (one line, non-zero), the startup line, `--help`, SIGTERM.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use ambient_protocol::exchange::encrypt_v1;
use ambient_protocol::keys::PublicKey;
use ambient_session_gateway::token::SigningKey;

const BIN: &str = env!("CARGO_BIN_EXE_ambient-token-server");

struct Tmp(PathBuf);
impl Tmp {
    fn new(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(format!(
            "ats-cli-{tag}-{}-{}",
            std::process::id(),
            SystemTimeNanos::now()
        ));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        Tmp(p)
    }
    fn join(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
struct SystemTimeNanos;
impl SystemTimeNanos {
    fn now() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }
}

fn cmd() -> Command {
    let mut c = Command::new(BIN);
    // Nothing from the test's environment leaks into the config.
    for var in [
        "TOKEN_SERVER_LISTEN",
        "TOKEN_SERVER_KEY_FILES",
        "AMBIENT_API_TOKEN_FILE",
        "AMBIENT_API_TOKEN",
        "OIDC_TOKEN_URL",
        "OIDC_CLIENT_ID",
        "OIDC_CLIENT_SECRET_FILE",
        "OIDC_CLIENT_SECRET",
        "OIDC_ALLOW_INSECURE",
        "AMBIENT_GRPC_SERVER_ADDR",
        "AMBIENT_GRPC_USE_TLS",
        "TOKEN_SERVER_RATE_PER_IP",
        "TOKEN_SERVER_SESSION_IDENTITY",
        "TOKEN_SERVER_SIGNING_KEY_FILES",
        "TOKEN_SERVER_GENERATE_SIGNING_KEY",
        "TOKEN_SERVER_SESSION_TOKEN_TTL",
        "TOKEN_SERVER_SESSION_ROOT_KEY_FILES",
        "TOKEN_SERVER_GENERATE_SESSION_ROOT_KEY",
        "TOKEN_SERVER_INSTALLATION_ID",
        "TOKEN_SERVER_REQUIRE_V3",
        "LOG_LEVEL",
        "LOG_FORMAT",
    ] {
        c.env_remove(var);
    }
    c
}

fn output(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap_or_else(|e| panic!("run: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn generates_a_private_key_0600_and_prints_the_public_key() {
    let tmp = Tmp::new("gen");
    let key = tmp.join("key.pem");
    let (code, stdout, _) = output(
        cmd()
            .arg("--key-file")
            .arg(&key)
            .args(["--generate-key", "--print-public-key"]),
    );
    assert_eq!(code, 0);
    assert!(stdout.starts_with("-----BEGIN PUBLIC KEY-----"), "{stdout}");
    let pk = PublicKey::from_pem(&stdout).unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&key)
        .unwrap_or_else(|e| panic!("{e}"))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(&key).unwrap_or_default();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    // A second run keeps the key.
    let (code, again, _) = output(
        cmd()
            .arg("--key-file")
            .arg(&key)
            .args(["--generate-key", "--print-public-key"]),
    );
    assert_eq!(code, 0);
    assert_eq!(PublicKey::from_pem(&again).ok(), Some(pk));
}

#[test]
fn bad_configurations_fail_with_one_line() {
    let tmp = Tmp::new("bad");
    let key = tmp.join("key.pem");
    let token = tmp.join("token");
    std::fs::write(&token, "tok\n").unwrap_or_else(|e| panic!("{e}"));
    let (code, ..) = output(
        cmd()
            .arg("--key-file")
            .arg(&key)
            .args(["--generate-key", "--print-public-key"]),
    );
    assert_eq!(code, 0);
    let signing = tmp.join("signing.pem");
    let signing_pem = SigningKey::generate()
        .and_then(|k| k.to_pem())
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(&signing, signing_pem).unwrap_or_else(|e| panic!("{e}"));
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&signing, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let key = key.to_string_lossy().into_owned();
    let token = token.to_string_lossy().into_owned();
    let signing = signing.to_string_lossy().into_owned();
    let three_signing_keys = format!("{signing},{signing},{signing}");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--no-session-check",
            ],
            "--no-session-check cannot serve session tokens",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "127.0.0.1:1",
                "--session-identity",
                "platform",
                "--gateway-listen",
                "127.0.0.1:0",
                "--api-server-url",
                "http://127.0.0.1:1",
            ],
            "--gateway-listen admits session tokens only",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "127.0.0.1:1",
                "--signing-key-file",
                &signing,
                "--gateway-listen",
                "127.0.0.1:0",
            ],
            "--gateway-listen needs --api-server-url",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "127.0.0.1:1",
                "--signing-key-file",
                &signing,
                "--gateway-listen",
                "127.0.0.1:0",
                "--api-server-url",
                "ftp://127.0.0.1:1",
            ],
            "--api-server-url must be an http(s) URL",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "127.0.0.1:1",
                "--signing-key-file",
                &signing,
                "--api-server-url",
                "http://127.0.0.1:1",
            ],
            "--api-server-url is for the session gateway",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "127.0.0.1:1",
            ],
            "--signing-key-file is required",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "127.0.0.1:1",
                "--signing-key-file",
                &three_signing_keys,
            ],
            "at most two",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "127.0.0.1:1",
                "--signing-key-file",
                &token,
            ],
            "--signing-key-file",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--no-session-check",
                "--session-identity",
                "platform",
                "--signing-key-file",
                &signing,
            ],
            "does not sign",
        ),
        (vec!["--session-token-ttl", "601"], "--session-token-ttl"),
        (vec!["--session-token-ttl", "0"], "--session-token-ttl"),
        (vec!["--session-identity", "agent"], "--session-identity"),
        (
            vec!["--no-session-check", "--api-token-file", &token],
            "--key-file",
        ),
        (
            vec!["--key-file", &key, "--no-session-check"],
            "token source",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--no-session-check",
                "--api-token-file",
                &token,
                "--oidc-token-url",
                "http://idp/token",
            ],
            "contradict",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--no-session-check",
                "--oidc-token-url",
                "http://idp/token",
            ],
            "OIDC needs all",
        ),
        (
            vec!["--key-file", &key, "--api-token-file", &token],
            "--api-server-grpc",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--no-session-check",
                "--api-server-grpc",
                "127.0.0.1:1",
            ],
            "contradict",
        ),
        (
            vec!["--key-file", "/nonexistent/key.pem", "--print-public-key"],
            "/nonexistent/key.pem",
        ),
        (vec!["--key-file", &token, "--print-public-key"], "PEM"),
        (vec!["--listen", "not-an-address"], "--listen"),
        (vec!["--rate-per-ip", "1e-300"], "--rate-per-ip"),
        (vec!["--rate-per-ip", "NaN"], "--rate-per-ip"),
        (
            vec!["--session-cache-ms", "18446744073709551615"],
            "--session-cache-ms",
        ),
        (
            vec!["--max-connections-per-ip", "0"],
            "--max-connections-per-ip",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--no-session-check",
                "--oidc-token-url",
                "http://idp.example/token",
                "--oidc-client-id",
                "cp",
                "--oidc-client-secret-file",
                &token,
            ],
            "plain http",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--no-session-check",
                "--api-token-file",
                &token,
                "--api-token",
                "inline-token",
            ],
            "takes no value on the command line",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--no-session-check",
                "--oidc-client-secret=inline-token",
            ],
            "set OIDC_CLIENT_SECRET instead",
        ),
        (
            vec![
                "--key-file",
                &key,
                "--api-token-file",
                &token,
                "--api-server-grpc",
                "http://user:grpc-pw-77@127.0.0.1:1",
                "--api-server-grpc-tls",
                "--signing-key-file",
                &signing,
            ],
            "without TLS",
        ),
        (vec!["--bogus-flag"], "--bogus-flag"),
    ];
    for (args, needle) in cases {
        let (code, _, stderr) = output(cmd().args(&args));
        assert_ne!(code, 0, "{args:?} should fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: want one line, got {stderr:?}");
        assert!(
            lines[0].contains(needle),
            "{args:?}: {stderr:?} lacks {needle:?}"
        );
        for secret in ["grpc-pw-77", "inline-token"] {
            assert!(!stderr.contains(secret), "{args:?}: {stderr:?}");
        }
    }
    // A token from the environment and a token file contradict each other.
    let (code, _, stderr) = output(
        cmd()
            .env("AMBIENT_API_TOKEN", "inline-token")
            .args(["--key-file", &key, "--no-session-check"])
            .args(["--api-token-file", &token]),
    );
    assert_ne!(code, 0);
    assert!(stderr.contains("both set"), "{stderr}");
    assert!(!stderr.contains("inline-token"), "{stderr}");
}

#[test]
fn help_names_every_env_var_and_hides_secret_values() {
    let (code, stdout, _) = output(
        cmd()
            .arg("--help")
            .env("AMBIENT_API_TOKEN", "api-token-VALUE-1f2e")
            .env("OIDC_CLIENT_SECRET", "oidc-secret-VALUE-9d8c")
            .env("OIDC_CLIENT_SECRET_FILE", "/run/secret/very-private-path"),
    );
    assert_eq!(code, 0);
    for var in [
        "TOKEN_SERVER_LISTEN",
        "TOKEN_SERVER_KEY_FILES",
        "TOKEN_SERVER_GENERATE_KEY",
        "TOKEN_SERVER_PRINT_PUBLIC_KEY",
        "AMBIENT_API_TOKEN_FILE",
        "AMBIENT_API_TOKEN]",
        "OIDC_TOKEN_URL",
        "OIDC_ALLOW_INSECURE",
        "OIDC_CLIENT_ID",
        "OIDC_CLIENT_SECRET_FILE",
        "OIDC_CLIENT_SECRET]",
        "AMBIENT_GRPC_SERVER_ADDR",
        "TOKEN_SERVER_NO_SESSION_CHECK",
        "TOKEN_SERVER_REQUIRE_V2",
        "TOKEN_SERVER_MAX_CONNECTIONS",
        "TOKEN_SERVER_MAX_CONNECTIONS_PER_IP",
        "TOKEN_SERVER_SESSION_IDENTITY",
        "TOKEN_SERVER_SIGNING_KEY_FILES",
        "TOKEN_SERVER_GENERATE_SIGNING_KEY",
        "TOKEN_SERVER_SESSION_TOKEN_TTL",
        "TOKEN_SERVER_GATEWAY_LISTEN",
        "AMBIENT_API_SERVER_URL",
        "TOKEN_SERVER_SESSION_ROOT_KEY_FILES",
        "TOKEN_SERVER_GENERATE_SESSION_ROOT_KEY",
        "TOKEN_SERVER_INSTALLATION_ID",
        "TOKEN_SERVER_REQUIRE_V3",
        "LOG_FORMAT",
    ] {
        assert!(stdout.contains(var), "--help lacks {var}");
    }
    for value in ["VALUE", "very-private-path"] {
        assert!(!stdout.contains(value), "--help shows a secret value");
    }
    // Each secret given directly points to its file form.
    assert!(stdout.contains("Prefer --api-token-file"), "{stdout}");
    assert!(
        stdout.contains("Prefer --oidc-client-secret-file"),
        "{stdout}"
    );
}

/// Starts the binary with `args` (and the static API token in its
/// environment: a value on the command line is refused); returns it and its
/// address.
fn spawn(args: &[&str]) -> (std::process::Child, String) {
    let mut child = cmd()
        .args(args)
        .env("AMBIENT_API_TOKEN", "inline-api-token-v2")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = line
        .trim()
        .strip_prefix("token server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, addr)
}

fn get_body(addr: &str, path: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    })
}

fn get(addr: &str, path: &str, bearer: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    rt.block_on(async {
        let mut req = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .get(format!("http://{addr}{path}"));
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        req.send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16()
    })
}

#[test]
fn require_v2_and_readyz_through_the_binary() {
    let tmp = Tmp::new("v2");
    let key = tmp.join("key.pem");
    let key = key.to_string_lossy().into_owned();
    let (mut child, addr) = spawn(&[
        "--key-file",
        &key,
        "--generate-key",
        "--no-session-check",
        "--session-identity",
        "platform",
        "--require-v2",
        "--listen",
        "127.0.0.1:0",
    ]);
    let pem = std::fs::read_to_string(&key).unwrap_or_default();
    let pk = ambient_protocol::keys::PrivateKey::from_pem(&pem)
        .unwrap_or_else(|e| panic!("{e}"))
        .public_key()
        .clone();
    let v1 = encrypt_v1(&pk, "session-v2-only-1").unwrap_or_else(|e| panic!("{e}"));
    let v2 = ambient_protocol::exchange::encrypt_v2(
        &pk,
        "session-v2-only-1",
        std::time::SystemTime::now(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(get(&addr, "/token", Some(&v1)), 401);
    assert_eq!(get(&addr, "/token", Some(&v2)), 200);
    // No session check to wait for: ready at once.
    assert_eq!(get(&addr, "/readyz", None), 200);
    let _ = child.kill();
    let _ = child.wait();

    // A session directory that cannot be reached: alive, not ready; the
    // session-token signing key is generated (0600, PKCS#8) and its JWKS
    // served.
    let signing = tmp.join("signing.pem");
    let signing = signing.to_string_lossy().into_owned();
    let (mut child, addr) = spawn(&[
        "--key-file",
        &key,
        "--api-server-grpc",
        "127.0.0.1:1",
        "--signing-key-file",
        &signing,
        "--generate-signing-key",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(get(&addr, "/healthz", None), 200);
    assert_eq!(get(&addr, "/readyz", None), 503);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&signing)
        .map(|m| m.permissions().mode())
        .unwrap_or_default();
    assert_eq!(mode & 0o777, 0o600);
    let pem = std::fs::read_to_string(&signing).unwrap_or_default();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let kid = SigningKey::from_pem(&pem)
        .map(|k| k.kid().to_owned())
        .unwrap_or_else(|e| panic!("{e}"));
    let (status, jwks) = get_body(&addr, "/.well-known/jwks.json");
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap_or_default();
    assert_eq!(jwks["keys"][0]["kid"].as_str(), Some(kid.as_str()));
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn platform_identity_serves_the_api_token_warns_and_stops_on_sigterm() {
    let tmp = Tmp::new("run");
    let key = tmp.join("key.pem");
    let token = tmp.join("token");
    std::fs::write(&token, "cli-api-token-123\n").unwrap_or_else(|e| panic!("{e}"));
    let mut child = cmd()
        .arg("--key-file")
        .arg(&key)
        .arg("--api-token-file")
        .arg(&token)
        .args([
            "--generate-key",
            "--no-session-check",
            "--session-identity",
            "platform",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = line
        .trim()
        .strip_prefix("token server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    assert!(!addr.ends_with(":0"));

    let pem = std::fs::read_to_string(&key).unwrap_or_default();
    let pk = ambient_protocol::keys::PrivateKey::from_pem(&pem)
        .unwrap_or_else(|e| panic!("{e}"))
        .public_key()
        .clone();
    let bearer = encrypt_v1(&pk, "any-session-id-at-all").unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let body = rt.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
            .get(format!("http://{addr}/token"))
            .header("authorization", format!("Bearer {bearer}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default()
    });
    assert_eq!(body, r#"{"token":"cli-api-token-123"}"#);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(killed.success());
    let mut waited = 0;
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        waited += 1;
        assert!(waited < 300, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(stderr.contains("SESSION CHECK DISABLED"), "{stderr}");
    assert!(
        stderr.contains("SESSION IDENTITY IS THE PLATFORM'S"),
        "{stderr}"
    );
    assert!(
        stderr.contains("any-session-id-at-all"),
        "accepted ID is logged"
    );
    assert!(!stderr.contains("cli-api-token-123"), "token in logs");
    assert!(!stderr.contains(&bearer[..32]), "ciphertext in logs");
}
