//! Push and watch against the real ambient-devserver: in order, exactly
//! once, through server restarts, and the CLI's JSON lines.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ambient_runner_client::{PushError, SessionMessages, WatchError};
use futures::StreamExt as _;
use support::*;

#[tokio::test(flavor = "multi_thread")]
async fn push_then_watch_in_order_and_resume_after_a_seq() {
    let dev = tokio::task::block_in_place(|| DevServer::start(&[]));
    let api = api(&dev.grpc(), TOKEN);
    let id = new_session(&api, "push-watch").await;
    let messages = SessionMessages::new(api.clone(), &id);
    let mut seqs = Vec::new();
    for (i, ty) in ["assistant", "tool_use", "assistant"].iter().enumerate() {
        let m = messages
            .push(ty, format!("payload-{i}"))
            .await
            .unwrap_or_else(|e| panic!("push: {e}"));
        assert_eq!(m.session_id, id);
        assert_eq!(m.event_type, *ty);
        seqs.push(m.seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    let all = stored(&api, &id, seqs[2]).await;
    assert_eq!(
        all,
        vec![
            (seqs[0], "payload-0".to_owned()),
            (seqs[1], "payload-1".to_owned()),
            (seqs[2], "payload-2".to_owned()),
        ]
    );
    // After seq N: only what follows, then live messages.
    let mut watch = Box::pin(messages.watch(seqs[1]));
    assert_eq!(next_message(&mut watch).await.seq, seqs[2]);
    let live = messages
        .push("assistant", "live")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let m = next_message(&mut watch).await;
    assert_eq!((m.seq, m.payload.as_str()), (live.seq, "live"));
}

async fn next_message<S>(watch: &mut S) -> ambient_protocol::v1::SessionMessage
where
    S: futures::Stream<Item = Result<ambient_protocol::v1::SessionMessage, WatchError>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
        Ok(Some(Ok(m))) => m,
        other => panic!("watch: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_push_is_refused_before_any_call_and_unknown_session_ends_the_watch() {
    let dev = tokio::task::block_in_place(|| DevServer::start(&[]));
    let api = api(&dev.grpc(), TOKEN);
    let id = new_session(&api, "refusals").await;
    let messages = SessionMessages::new(api.clone(), &id);
    assert!(matches!(
        messages.push("user", "hello").await,
        Err(PushError::UserEventType)
    ));
    let marker = messages
        .push("assistant", "only")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Nothing but the marker is stored: the refused push made no call.
    assert_eq!(
        stored(&api, &id, marker.seq).await,
        vec![(marker.seq, "only".to_owned())]
    );

    // The CLI says why and exits non-zero.
    let grpc = dev.grpc();
    let out = run_client(
        &[
            "push",
            "--event-type",
            "user",
            "--payload",
            "hi",
            "--session",
            &id,
        ],
        &[("AMBIENT_GRPC_URL", &grpc), ("BOT_TOKEN", TOKEN)],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"user\" is refused"), "{err}");

    // A session that does not exist: the watch ends with NOT_FOUND.
    let gone = SessionMessages::new(api.clone(), "no-such-session-0000");
    let mut watch = Box::pin(gone.watch(0));
    match tokio::time::timeout(Duration::from_secs(30), watch.next()).await {
        Ok(Some(Err(WatchError::Refused(s)))) => assert_eq!(s.code(), tonic::Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
    assert!(
        watch.next().await.is_none(),
        "the watch ends after a refusal"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_push_and_watch_until_the_session_ends() {
    let dev = tokio::task::block_in_place(|| DevServer::start(&[]));
    let api = api(&dev.grpc(), TOKEN);
    let id = new_session(&api, "cli").await;
    let grpc = dev.grpc();
    let env = [
        ("AMBIENT_GRPC_URL", grpc.as_str()),
        ("BOT_TOKEN", TOKEN),
        ("SESSION_ID", id.as_str()),
    ];
    let tmp = integration_tests::TempDir::new("rc-cli");
    let file = tmp.path().join("payload.json");
    std::fs::write(&file, "{\"from\":\"file\"}").unwrap_or_else(|e| panic!("{e}"));
    let at_file = format!("@{}", file.display());
    for payload in ["literal", at_file.as_str()] {
        let out = run_client(
            &["push", "--event-type", "assistant", "--payload", payload],
            &env,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = json_lines(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["session_id"], id.as_str());
        assert_eq!(lines[0]["event_type"], "assistant");
    }
    // stdin
    let mut child = std::process::Command::new(CLIENT)
        .env_clear()
        .envs(env)
        .args(["push", "--event-type", "tool_result", "--payload", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin
            .write_all(b"from stdin\n")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = integration_tests::output_within(child, Duration::from_secs(60), "push from stdin");
    assert!(out.status.success());

    // RESUME_AFTER_SEQ=1 skips the first; the watch ends with the session.
    let mut watcher = Watcher::start(
        &["watch", "--until-phase-terminal"],
        &[
            ("AMBIENT_GRPC_URL", grpc.as_str()),
            ("BOT_TOKEN", TOKEN),
            ("SESSION_ID", id.as_str()),
            ("RESUME_AFTER_SEQ", "1"),
        ],
    );
    let lines = watcher.wait_lines(2).await;
    assert_eq!(
        lines,
        vec![
            (2, "{\"from\":\"file\"}".to_owned()),
            (3, "from stdin\n".to_owned())
        ]
    );
    set_phase(&api, &id, "Completed").await;
    let status = watcher.wait_exit().await;
    assert!(status.success(), "{}", watcher.stderr());
}

/// A watcher process (the CLI) keeps printing while this process pushes
/// and the devserver is restarted twice (SIGTERM, then SIGKILL) on the same
/// data: what it printed is exactly what the server stored, in order.
#[tokio::test(flavor = "multi_thread")]
async fn watch_survives_devserver_restarts_exactly_once_in_order() {
    let mut dev = tokio::task::block_in_place(|| DevServer::start(&[]));
    let api = api(&dev.grpc(), TOKEN);
    let id = new_session(&api, "restarts").await;
    let grpc = dev.grpc();
    let watcher = Watcher::start(
        &["watch", "--session", &id],
        &[("AMBIENT_GRPC_URL", grpc.as_str()), ("BOT_TOKEN", TOKEN)],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let messages = SessionMessages::new(api.clone(), &id);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                // A failed push is not retried with the same payload: its
                // fate is unknown, and the comparison below is against what
                // the server stored.
                match messages.push("progress", format!("p-{i}")).await {
                    Ok(m) => acked.push((m.seq, m.payload)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            acked
        })
    };

    let mut seen = watcher.wait_lines(20).await.len();
    for graceful in [true, false] {
        tokio::task::block_in_place(|| dev.restart(graceful));
        seen = watcher.wait_lines(seen + 20).await.len();
    }
    stop.store(true, Ordering::Relaxed);
    let acked = pusher.await.unwrap_or_else(|e| panic!("{e}"));
    let end = SessionMessages::new(api.clone(), &id)
        .push("progress", "end")
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let stored = stored(&api, &id, end.seq).await;
    let printed = watcher.wait_lines(stored.len()).await;
    assert_eq!(
        printed, stored,
        "the watcher printed exactly what is stored"
    );
    for m in &acked {
        assert!(stored.contains(m), "acknowledged push {m:?} is missing");
    }
    assert!(
        watcher.stderr().contains("reconnecting"),
        "the watch did reconnect:\n{}",
        watcher.stderr()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_watch_until_phase_terminal_ends_when_the_session_is_deleted() {
    let dev = tokio::task::block_in_place(|| DevServer::start(&[]));
    let api = api(&dev.grpc(), TOKEN);
    let id = new_session(&api, "deleted").await;
    SessionMessages::new(api.clone(), &id)
        .push("assistant", "before delete")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let grpc = dev.grpc();
    let mut watcher = Watcher::start(
        &["watch", "--session", &id, "--until-phase-terminal"],
        &[("AMBIENT_GRPC_URL", grpc.as_str()), ("BOT_TOKEN", TOKEN)],
    );
    watcher.wait_lines(1).await;
    let req = ambient_protocol::v1::DeleteSessionRequest { id: id.clone() };
    api.unary(req, |ch, req| async move {
        ambient_protocol::v1::session_service_client::SessionServiceClient::new(ch)
            .delete_session(req)
            .await
    })
    .await
    .unwrap_or_else(|e| panic!("delete: {e}"));
    let status = watcher.wait_exit().await;
    assert!(status.success(), "{status:?}\n{}", watcher.stderr());
}
