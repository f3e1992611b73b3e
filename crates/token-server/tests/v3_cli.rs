//! Exchange v3 through the standalone binary: the root key file (generated
//! 0600, never printed), the installation ID, the round trip, each refusal,
//! `--require-v3`, and v1/v2 beside v3 without it.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::v3::{RootKey, SessionKeyFile};
use ambient_protocol::exchange::{encrypt_v1, encrypt_v2};
use ambient_protocol::keys::{PrivateKey, PublicKey};

const BIN: &str = env!("CARGO_BIN_EXE_ambient-token-server");
const INSTALLATION: &str = "install-cli-1";
const API_TOKEN: &str = "v3-cli-api-token-5a4b";
/// The generation every caller of the standalone server is bound to.
const GEN: &str = "0";

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!("ats-v3-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{e}"));
        Tmp(p)
    }
    fn join(&self, f: &str) -> String {
        self.0.join(f).to_string_lossy().into_owned()
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn cmd() -> Command {
    let mut c = Command::new(BIN);
    for (var, _) in std::env::vars() {
        if var.starts_with("TOKEN_SERVER_")
            || var.starts_with("OIDC_")
            || var.starts_with("AMBIENT_")
        {
            c.env_remove(var);
        }
    }
    c.env("AMBIENT_API_TOKEN", API_TOKEN);
    c
}

struct Server {
    child: Child,
    addr: String,
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Server {
    fn spawn(args: &[&str]) -> Server {
        let mut child = cmd()
            .args(args)
            .args(["--no-session-check", "--session-identity", "platform"])
            .args(["--listen", "127.0.0.1:0", "--log-level", "debug"])
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        Server {
            child,
            addr,
            rt,
            client,
        }
    }

    /// `GET /token` with `auth`: status and body.
    fn token(&self, auth: &str) -> (u16, String) {
        self.rt.block_on(async {
            let resp = self
                .client
                .get(format!("http://{}/token", self.addr))
                .header("authorization", auth)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap_or_default())
        })
    }

    fn metric(&self, name: &str) -> Option<u64> {
        let text = self.rt.block_on(async {
            self.client
                .get(format!("http://{}/metrics", self.addr))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .text()
                .await
                .unwrap_or_default()
        });
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
    }

    /// Stops the server; its stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        stderr
    }
}

fn root_of(path: &str) -> RootKey {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}"));
    RootKey::from_base64(&text).unwrap_or_else(|| panic!("not a root key"))
}

fn public_of(path: &str) -> PublicKey {
    let pem = std::fs::read_to_string(path).unwrap_or_default();
    PrivateKey::from_pem(&pem)
        .unwrap_or_else(|e| panic!("{e}"))
        .public_key()
        .clone()
}

fn header(file: &SessionKeyFile, at: SystemTime) -> String {
    file.authorization("GET", "/token", at)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_default()
}

#[test]
fn a_v3_round_trip_and_each_refusal_through_the_binary() {
    let tmp = Tmp::new("run");
    let (key, root_path) = (tmp.join("key.pem"), tmp.join("root.key"));
    let server = Server::spawn(&[
        "--key-file",
        &key,
        "--generate-key",
        "--session-root-key-file",
        &root_path,
        "--generate-session-root-key",
        "--installation-id",
        INSTALLATION,
    ]);
    assert_eq!(mode(Path::new(&root_path)), 0o600);
    let root = root_of(&root_path);
    let sid = "session-v3-cli-0001";
    let file = SessionKeyFile::derive(&root, INSTALLATION, sid, GEN);
    let now = SystemTime::now();

    let good = header(&file, now);
    let (status, body) = server.token(&good);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(API_TOKEN), "{body}");
    assert_eq!(
        server.metric("ambient_token_server_private_key_operations_total"),
        Some(0),
        "a v3 exchange costs no private-key operation"
    );

    let other_root = RootKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let wrong_key = {
        // This root's kid, another root's key.
        let theirs = SessionKeyFile::derive(&other_root, INSTALLATION, sid, GEN);
        let mut json: serde_json::Value =
            serde_json::from_str(theirs.to_json().expose()).unwrap_or_else(|e| panic!("{e}"));
        json["kid"] = root.kid().into();
        SessionKeyFile::parse(json.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    };
    let cases: Vec<(&str, String, u16)> = vec![
        ("wrong key", header(&wrong_key, now), 401),
        (
            "unknown kid",
            header(
                &SessionKeyFile::derive(&other_root, INSTALLATION, sid, GEN),
                now,
            ),
            401,
        ),
        (
            "other installation",
            header(
                &SessionKeyFile::derive(&root, "install-other", sid, GEN),
                now,
            ),
            401,
        ),
        ("replay", good.clone(), 401),
        (
            "stale ts",
            header(&file, now - Duration::from_secs(120)),
            401,
        ),
        (
            "other session's id",
            header(&file, now).replace(&format!("sid={sid},"), "sid=session-v3-cli-0002,"),
            401,
        ),
        (
            "old generation",
            header(&SessionKeyFile::derive(&root, INSTALLATION, sid, "1"), now),
            403,
        ),
    ];
    for (name, auth, want) in &cases {
        let (status, body) = server.token(auth);
        let text = if *want == 401 {
            "unauthorized\n"
        } else {
            "forbidden\n"
        };
        assert_eq!((status, body.as_str()), (*want, text), "{name}");
    }
    // v1 and v2 still work without --require-v3.
    let pk = public_of(&key);
    let v1 = encrypt_v1(&pk, sid).unwrap_or_else(|e| panic!("{e}"));
    let v2 = encrypt_v2(&pk, sid, now).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(server.token(&format!("Bearer {v1}")).0, 200);
    assert_eq!(server.token(&format!("Bearer {v2}")).0, 200);
    assert_eq!(
        server.metric("ambient_token_server_private_key_operations_total"),
        Some(2)
    );

    let stderr = server.stop();
    for reason in [
        "bad_mac",
        "unknown_key_id",
        "replayed_nonce",
        "stale_iat",
        "v3 key of another pod generation",
    ] {
        assert!(stderr.contains(reason), "{reason} not logged: {stderr}");
    }
    let root_text = std::fs::read_to_string(&root_path).unwrap_or_default();
    assert!(!stderr.contains(root_text.trim()), "root key in the log");
    assert!(stderr.contains(root.kid()), "the kid is logged at start");
    assert!(!stderr.contains(API_TOKEN), "token in the log");
}

#[test]
fn require_v3_refuses_v1_and_v2_through_the_binary() {
    let tmp = Tmp::new("req");
    let (key, root_path) = (tmp.join("key.pem"), tmp.join("root.key"));
    let server = Server::spawn(&[
        "--key-file",
        &key,
        "--generate-key",
        "--session-root-key-file",
        &root_path,
        "--generate-session-root-key",
        "--installation-id",
        INSTALLATION,
        "--require-v3",
    ]);
    let sid = "session-v3-cli-0003";
    let pk = public_of(&key);
    let now = SystemTime::now();
    let v1 = encrypt_v1(&pk, sid).unwrap_or_else(|e| panic!("{e}"));
    let v2 = encrypt_v2(&pk, sid, now).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        server.token(&format!("Bearer {v1}")),
        (401, "unauthorized\n".to_owned())
    );
    assert_eq!(server.token(&format!("Bearer {v2}")).0, 401);
    let file = SessionKeyFile::derive(&root_of(&root_path), INSTALLATION, sid, GEN);
    assert_eq!(server.token(&header(&file, now)).0, 200);
    assert_eq!(
        server.metric("ambient_token_server_private_key_operations_total"),
        Some(0),
        "v1/v2 refused before decrypting"
    );
    let stderr = server.stop();
    assert!(stderr.contains("v3_required"), "{stderr}");
}

#[test]
fn v3_flags_that_cannot_work_fail_with_one_line() {
    let tmp = Tmp::new("bad");
    let key = tmp.join("key.pem");
    let root = tmp.join("root.key");
    let bad_root = tmp.join("bad-root.key");
    std::fs::write(&bad_root, "not-a-key-SECRETISH\n").unwrap_or_else(|e| panic!("{e}"));
    let base = [
        "--key-file",
        &key,
        "--generate-key",
        "--no-session-check",
        "--session-identity",
        "platform",
    ];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--require-v3"],
            "--require-v3 needs --session-root-key-file",
        ),
        (
            vec![
                "--session-root-key-file",
                &root,
                "--generate-session-root-key",
            ],
            "needs --installation-id",
        ),
        (
            vec!["--installation-id", INSTALLATION],
            "need --session-root-key-file",
        ),
        (
            vec![
                "--session-root-key-file",
                &root,
                "--installation-id",
                "bad id",
            ],
            "--installation-id must be",
        ),
        (
            vec![
                "--session-root-key-file",
                &bad_root,
                "--installation-id",
                INSTALLATION,
            ],
            "not the base64 of 32 bytes",
        ),
        (
            vec![
                "--session-root-key-file",
                &root,
                "--installation-id",
                INSTALLATION,
            ],
            "reading --session-root-key-file",
        ),
    ];
    for (args, needle) in cases {
        let out = cmd()
            .args(base)
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        // (The first run also says it generated the RSA key.)
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("generated a new RSA-4096 key"))
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: {stderr}");
        assert!(
            lines[0].contains(needle),
            "{args:?}: {stderr} lacks {needle:?}"
        );
        assert!(!stderr.contains("SECRETISH"), "{stderr}");
    }
    // --help explains the flags.
    let out = cmd()
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--session-root-key-file",
        "--generate-session-root-key",
        "--installation-id",
        "--require-v3",
        "never printed",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
}
