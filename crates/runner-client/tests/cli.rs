//! The binary's contract: `--help` names every variable, bad configuration
//! is one line and exit 2, SIGTERM stops a watch with exit 0.

mod support;

use support::*;

#[test]
fn help_documents_every_variable_without_secret_values() {
    let out = run_client(&["--help"], &[("BOT_TOKEN", "secret-bot-token-value")]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for var in [
        "AMBIENT_GRPC_URL",
        "AMBIENT_GRPC_USE_TLS",
        "AMBIENT_GRPC_CA_CERT_FILE",
        "AMBIENT_SERVICE_CA_FILE",
        "AMBIENT_CP_TOKEN_URL",
        "AMBIENT_CP_TOKEN_PUBLIC_KEY",
        "AMBIENT_CP_TOKEN_PROTOCOL",
        "SESSION_ID",
        "BOT_TOKEN_FILE",
        "BOT_TOKEN",
        "LOG_LEVEL",
        "LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("env: {var}")),
            "{var} missing:\n{help}"
        );
    }
    assert!(help.contains("ambient-api-server:9000"));
    assert!(!help.contains("secret-bot-token-value"));
    let out = run_client(&["watch", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--after-seq",
        "RESUME_AFTER_SEQ",
        "--session",
        "--until-phase-terminal",
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
    let out = run_client(&["push", "--help"], &[]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--event-type", "--payload", "@FILE"] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
}

#[test]
fn bad_configuration_is_one_line_and_exit_2() {
    for (env, expect) in [
        (vec![], "no API token source"),
        // A boolean reads as the reference runner reads it (`perhaps` is
        // false); a wrong value of anything else is one line.
        (vec![("BOT_TOKEN", "t"), ("LOG_FORMAT", "xml")], "xml"),
        (
            vec![
                ("AMBIENT_CP_TOKEN_URL", "ftp://cp/token"),
                ("AMBIENT_CP_TOKEN_PUBLIC_KEY", "x"),
                ("SESSION_ID", "session-1"),
            ],
            "AMBIENT_CP_TOKEN_PUBLIC_KEY",
        ),
    ] {
        let out = run_client(&["token"], &env);
        assert_eq!(out.status.code(), Some(2), "{env:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{env:?}: {err}");
        assert!(out.stdout.is_empty());
    }
    // A push without a session says so.
    let out = run_client(
        &["push", "--event-type", "assistant", "--payload", "x"],
        &[("BOT_TOKEN", "t")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SESSION_ID"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_a_watch_with_exit_0() {
    let dev = tokio::task::block_in_place(|| DevServer::start(&[]));
    let api = api(&dev.grpc(), TOKEN);
    let id = new_session(&api, "sigterm").await;
    let grpc = dev.grpc();
    let mut watcher = Watcher::start(
        &["watch", "--session", &id],
        &[("AMBIENT_GRPC_URL", grpc.as_str()), ("BOT_TOKEN", TOKEN)],
    );
    ambient_runner_client::SessionMessages::new(api.clone(), &id)
        .push("assistant", "one")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    watcher.wait_lines(1).await;
    let status = watcher.terminate().await;
    assert!(status.success(), "{status:?}\n{}", watcher.stderr());
}
