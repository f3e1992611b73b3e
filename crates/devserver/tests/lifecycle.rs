//! The process as a whole: persistence across a restart, OIDC tokens that
//! expire, token files, `--help` without secrets, bad configuration, SIGTERM.

mod common;

use std::process::Command;
use std::time::Duration;

use ambient_protocol::v1::{ListSessionsRequest, PushSessionMessageRequest};
use common::{Rest, TOKEN, s};
use integration_tests::TempDir;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_ambient-devserver");

#[tokio::test]
async fn data_and_message_seq_survive_a_restart() {
    let dir = TempDir::new("devserver-persist");
    let data_dir = dir.path().to_string_lossy().into_owned();
    let mut d = common::start(&["--data-dir", &data_dir]);
    let rest = Rest::new(&d);
    let session = rest
        .create_session(json!({"name": "durable", "prompt": "one", "labels": "{\"k\":\"v\"}"}))
        .await;
    let id = s(&session, "id").to_owned();
    let (st, _) = rest.post_empty(&format!("sessions/{id}/start")).await;
    assert_eq!(st, StatusCode::OK);
    for p in ["two", "three"] {
        let (st, _) = rest
            .post(&format!("sessions/{id}/messages"), json!({"payload": p}))
            .await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let (st, project) = rest
        .post("projects", json!({"name": "kept", "prompt": "pp"}))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, cred) = rest
        .post(
            "credentials",
            json!({"name": "c", "provider": "jira", "token": "jira-tok"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (_, before) = rest.get(&format!("sessions/{id}")).await;

    // A hard kill: only what was committed counts.
    d.kill();
    drop(d);

    let d = common::start(&["--data-dir", &data_dir]);
    let rest = Rest::new(&d);
    let (st, after) = rest.get(&format!("sessions/{id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(after, before);
    assert_eq!(after["phase"], "Pending");
    let (_, msgs) = rest.get(&format!("sessions/{id}/messages")).await;
    let got: Vec<(i64, String)> = msgs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap_or(-1),
                m["payload"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(1, "one".into()), (2, "two".into()), (3, "three".into())]
    );
    let mut c = common::sessions(&d).await;
    let next = c
        .push_session_message(PushSessionMessageRequest {
            session_id: id.clone(),
            event_type: "assistant".into(),
            payload: "four".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(next.seq, 4, "seq continues after the restart");
    let (_, p) = rest.get(&format!("projects/{}", s(&project, "id"))).await;
    assert_eq!(p["prompt"], "pp");
    let (_, t) = rest
        .get(&format!("credentials/{}/token", s(&cred, "id")))
        .await;
    assert_eq!(t["token"], "jira-tok");
    let list = c
        .list_sessions(ListSessionsRequest { page: 1, size: 10 })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(list.metadata.unwrap_or_default().total, 1);
}

async fn oidc_token(rest: &Rest, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let anon = Rest {
        token: None,
        ..rest.clone()
    };
    anon.send(
        anon.request(reqwest::Method::POST, "/oidc/token")
            .form(form),
    )
    .await
}

const OIDC_CLIENT: [&str; 2] = ["--oidc-client-id", "control-plane"];
const OIDC_SECRET: (&str, &str) = ("AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET", "cp-secret-value");

async fn fresh_oidc_token(rest: &Rest) -> String {
    let (st, body) = oidc_token(
        rest,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "control-plane"),
            ("client_secret", "cp-secret-value"),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    integration_tests::register_secret(s(&body, "access_token"));
    s(&body, "access_token").to_owned()
}

#[tokio::test]
async fn oidc_tokens_are_accepted_on_both_wires_as_their_client() {
    // A lifetime no loaded machine can outlast: this test is about acceptance.
    let mut args = OIDC_CLIENT.to_vec();
    args.extend(["--oidc-token-ttl", "3600"]);
    let d = common::start_with_env(&args, &[OIDC_SECRET]);
    let rest = Rest::new(&d);

    for (form, want, error) in [
        (
            vec![
                ("grant_type", "password"),
                ("client_id", "control-plane"),
                ("client_secret", "cp-secret-value"),
            ],
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "control-plane"),
                ("client_secret", "nope"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "someone"),
                ("client_secret", "cp-secret-value"),
            ],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            vec![("grant_type", "client_credentials")],
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
    ] {
        let (st, body) = oidc_token(&rest, &form).await;
        assert_eq!(
            (st, body["error"].as_str()),
            (want, Some(error)),
            "{form:?}"
        );
    }

    let (st, body) = oidc_token(
        &rest,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "control-plane"),
            ("client_secret", "cp-secret-value"),
        ],
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = s(&body, "access_token").to_owned();
    assert_ne!(token, TOKEN);

    let issued = Rest::with_token(&d, Some(&token));
    let made = issued.create_session(json!({"name": "by-cp"})).await;
    assert_eq!(
        made["created_by_user_id"], "control-plane",
        "an issued token's caller is its client"
    );
    let mut c = common::sessions_with(&d, Some(&token)).await;
    c.list_sessions(ListSessionsRequest::default())
        .await
        .unwrap_or_else(|e| panic!("OIDC token refused over gRPC: {e}"));

    // HTTP Basic client authentication works too.
    let anon = Rest {
        token: None,
        ..rest.clone()
    };
    let (st, body) = anon
        .send(
            anon.request(reqwest::Method::POST, "/oidc/token")
                .basic_auth("control-plane", Some("cp-secret-value"))
                .form(&[("grant_type", "client_credentials")]),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    let logs = d.logs();
    assert!(!logs.contains("cp-secret-value"), "client secret in logs");
    assert!(!logs.contains(&token), "issued token in logs");
    assert!(!logs.contains(TOKEN), "static token in logs");
}

#[tokio::test]
async fn expired_oidc_tokens_are_refused_on_both_wires() {
    let mut args = OIDC_CLIENT.to_vec();
    args.extend(["--oidc-token-ttl", "1"]);
    let d = common::start_with_env(&args, &[OIDC_SECRET]);
    let token = fresh_oidc_token(&Rest::new(&d)).await;
    // Past `expires_in`; waiting longer than needed cannot make this flaky.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, body) = Rest::with_token(&d, Some(&token)).get("sessions").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    common::assert_error_body(&body);
    let mut c = common::sessions_with(&d, Some(&token)).await;
    let err = c
        .list_sessions(ListSessionsRequest::default())
        .await
        .err()
        .unwrap_or_else(|| panic!("expired OIDC token accepted over gRPC"));
    assert_eq!(err.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn tokens_from_a_file() {
    let dir = TempDir::new("devserver-tokens");
    let file = dir.path().join("tokens");
    std::fs::write(
        &file,
        "# comment\nfile-token-a\n\n  file-token-b  \nalice=file-token-c\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let env_tokens = format!("{TOKEN},bob=env-token-d");
    let d = common::start_with_env(
        &["--token-file", &file.to_string_lossy()],
        &[("AMBIENT_DEVSERVER_TOKEN", &env_tokens)],
    );
    for (t, caller) in [
        ("file-token-a", "dev"),
        ("file-token-b", "dev"),
        ("file-token-c", "alice"),
        ("env-token-d", "bob"),
        (TOKEN, "dev"),
    ] {
        let rest = Rest::with_token(&d, Some(t));
        let (st, _) = rest.get("sessions").await;
        assert_eq!(st, StatusCode::OK, "token {t}");
        let made = rest.create_session(json!({"name": "who"})).await;
        assert_eq!(made["created_by_user_id"], caller, "token {t}");
    }
    let (st, _) = Rest::with_token(&d, Some("alice=file-token-c"))
        .get("sessions")
        .await;
    assert_eq!(
        st,
        StatusCode::UNAUTHORIZED,
        "the name is not part of the token"
    );
    let (st, _) = Rest::with_token(&d, Some("# comment"))
        .get("sessions")
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[test]
fn help_documents_env_vars_but_never_secret_values() {
    let out = Command::new(BIN)
        .arg("--help")
        .env("AMBIENT_DEVSERVER_TOKEN", "env-secret-token-xyz")
        .env(
            "AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET",
            "env-oidc-secret-xyz",
        )
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--grpc-listen",
        "AMBIENT_DEVSERVER_GRPC_LISTEN",
        "--http-listen",
        "--token",
        "AMBIENT_DEVSERVER_TOKEN",
        "--token-file",
        "--data-dir",
        "--in-memory",
        "--oidc-client-id",
        "--oidc-client-secret",
        "AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET",
        "--oidc-token-ttl",
        "--log-format",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}");
    }
    assert!(!help.contains("env-secret-token-xyz"));
    assert!(!help.contains("env-oidc-secret-xyz"));
}

/// Runs the binary with `args` and returns its stderr, asserting it failed,
/// announced nothing on stdout and said exactly one line.
fn fails_with_one_line(args: &[&str]) -> String {
    fails_with_one_line_env(args, &[])
}

/// [`fails_with_one_line`] with environment variables.
fn fails_with_one_line_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = common::run_to_exit(
        Command::new(BIN)
            .args(args)
            .env_remove("AMBIENT_DEVSERVER_TOKEN")
            .env_remove("AMBIENT_DEVSERVER_TOKEN_FILE")
            .env_remove("AMBIENT_DEVSERVER_DATA_DIR")
            .envs(env.iter().copied()),
        "ambient-devserver with bad configuration",
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} started: {err}");
    assert!(
        out.stdout.is_empty(),
        "announced listeners despite bad config"
    );
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?}: expected one line on stderr, got:\n{err}"
    );
    assert!(err.ends_with('\n'));
    err
}

#[test]
fn bad_configuration_fails_with_one_clear_line() {
    let ports = [
        "--grpc-listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
    ];
    let mut args = vec!["--in-memory"];
    args.extend(ports);
    let err = fails_with_one_line(&args);
    assert!(err.contains("no token configured"), "{err}");

    let err = fails_with_one_line(&["--in-memory", "--token-file", "/nonexistent/tokens"]);
    assert!(err.contains("/nonexistent/tokens"), "{err}");

    let mut args = vec!["--in-memory", "--log-level", "[bad"];
    args.extend(ports);
    let err = fails_with_one_line_env(&args, &[("AMBIENT_DEVSERVER_TOKEN", "t")]);
    assert!(err.contains("--log-level"), "{err}");

    // Secret values on the command line: refused, the value never echoed.
    for (flag, var, with) in [
        ("--token", "AMBIENT_DEVSERVER_TOKEN", &[][..]),
        (
            "--oidc-client-secret",
            "AMBIENT_DEVSERVER_OIDC_CLIENT_SECRET",
            &["--oidc-client-id", "c"][..],
        ),
    ] {
        let mut args = vec!["--in-memory", flag, "argv-secret-9f"];
        args.extend(with);
        args.extend(ports);
        let err = fails_with_one_line(&args);
        assert!(err.contains(flag) && err.contains(var), "{err}");
        assert!(!err.contains("argv-secret-9f"), "{err}");
    }
}

#[test]
fn sigterm_stops_gracefully_with_exit_zero() {
    let mut d = common::start(&[]);
    let status = d
        .terminate(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("did not exit after SIGTERM:\n{}", d.logs()));
    assert_eq!(status.code(), Some(0), "{}", d.logs());
}

#[tokio::test]
async fn sigterm_with_open_watches_still_exits_zero() {
    let mut d = common::start(&[]);
    let rest = Rest::new(&d);
    let session = rest.create_session(json!({"name": "w"})).await;
    let mut c = common::sessions(&d).await;
    let _sessions = c
        .watch_sessions(ambient_protocol::v1::WatchSessionsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let mut messages = c
        .watch_session_messages(ambient_protocol::v1::WatchSessionMessagesRequest {
            session_id: s(&session, "id").to_owned(),
            after_seq: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    let mut sse = rest
        .request(
            reqwest::Method::GET,
            &format!("sessions/{}/messages", s(&session, "id")),
        )
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(sse.status(), StatusCode::OK);

    let status = tokio::task::spawn_blocking(move || {
        let st = d.terminate(Duration::from_secs(30));
        (st, d.logs())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status.0.and_then(|s| s.code()), Some(0), "{}", status.1);
    // The streams ended (cleanly or with an error), they did not hang.
    let _ = common::guard("message watch end", messages.message()).await;
    let _ = common::guard("sse end", sse.chunk()).await;
}
