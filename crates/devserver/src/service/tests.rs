use ambient_protocol::v1::{CreateSessionRequest, UpdateSessionStatusRequest};
use futures::StreamExt;

use super::*;
use crate::events::{Hub, Kind};

fn api(capacity: usize) -> (Api, watch::Sender<bool>) {
    let store = Store::open(None, Hub::with_capacity(capacity)).unwrap_or_else(|e| panic!("{e}"));
    let (tx, rx) = watch::channel(false);
    (Api::new(store, rx), tx)
}

async fn session(api: &Api) -> String {
    let s = api
        .create_session(
            &Caller("dev".into()),
            CreateSessionRequest {
                name: "s".into(),
                ..Default::default()
            },
            None,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    s.id().to_owned()
}

#[tokio::test]
async fn a_lagging_message_watcher_recovers_from_the_database() {
    let (api, stop) = api(2);
    let id = session(&api).await;
    let stream = api
        .watch_messages(&id, 0)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Not polled yet: these overflow the live buffer of 2.
    for i in 0..10 {
        api.push_message(Speaker::User, &id, None, format!("m{i}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut stream = std::pin::pin!(stream);
    let mut seqs = Vec::new();
    while seqs.len() < 10 {
        match stream.next().await {
            Some(Ok(m)) => seqs.push(m.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    // More pushes after the replay, beyond the buffer again.
    for i in 10..15 {
        api.push_message(Speaker::User, &id, None, format!("m{i}"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    while seqs.len() < 15 {
        match stream.next().await {
            Some(Ok(m)) => seqs.push(m.seq),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seqs, (1..=15).collect::<Vec<i64>>());
    let _ = stop.send(true);
    assert!(stream.next().await.is_none(), "shutdown ends the stream");
}

#[tokio::test]
async fn a_lagging_resource_watcher_is_told_and_cut_off() {
    let (api, _stop) = api(2);
    let stream = api.watch_resources(Kind::Session);
    for _ in 0..5 {
        session(&api).await;
    }
    let items: Vec<_> = stream.collect::<Vec<_>>().await;
    assert!(
        matches!(items.last(), Some(Err(ApiError::Lagged))),
        "expected the stream to end with Lagged, got {items:?}"
    );
}

#[tokio::test]
async fn phase_transitions() {
    let (api, _stop) = api(16);
    let id = session(&api).await;
    assert!(matches!(
        api.stop_session(&id).await,
        Err(ApiError::Conflict(_))
    ));
    let s = api
        .start_session(&id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert!(matches!(
        api.start_session(&id).await,
        Err(ApiError::Conflict(_))
    ));
    for (phase, startable, stoppable) in [
        ("Creating", false, true),
        ("Running", false, true),
        ("Stopping", false, false),
        ("Stopped", true, false),
        ("Completed", true, false),
        ("Failed", true, false),
    ] {
        api.update_session_status(UpdateSessionStatusRequest {
            id: id.clone(),
            phase: Some(phase.into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let started = api.start_session(&id).await;
        assert_eq!(started.is_ok(), startable, "start from {phase}");
        if started.is_ok() {
            // Back to the phase under test.
            api.update_session_status(UpdateSessionStatusRequest {
                id: id.clone(),
                phase: Some(phase.into()),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(
            api.stop_session(&id).await.is_ok(),
            stoppable,
            "stop from {phase}"
        );
    }
}
