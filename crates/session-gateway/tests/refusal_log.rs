//! A refusal is logged with the session ID and the route, and no log line
//! of the gateway ever holds a token.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::Method;
use support::*;

/// Everything logged, in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_session_and_route_never_a_token() {
    let captured = Captured::default();
    // Also into the suite's logs, for the suite-wide leak scan.
    integration_tests::register_secret(OWN_TOKEN);
    let sink = integration_tests::TeeLog::new("session-gateway", captured.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_global_default(subscriber);
    let w = World::start().await;
    let route = format!("/api/ambient/v1/sessions/{}", w.foreign);
    let (code, _) =
        w.gw.call(
            OWN_TOKEN,
            Method::GET,
            &format!("/sessions/{}", w.foreign),
            None,
            &[],
        )
        .await;
    assert_eq!(code, 403);
    let (code, _) =
        w.gw.call(
            CP_TOKEN,
            Method::GET,
            &format!("/sessions/{}", w.own),
            None,
            &[],
        )
        .await;
    assert_eq!(code, 401);
    let ok =
        w.gw.call(
            OWN_TOKEN,
            Method::GET,
            &format!("/sessions/{}", w.own),
            None,
            &[],
        )
        .await;
    assert_eq!(ok.0, 200);
    let logs = captured.text();
    let refusal = logs
        .lines()
        .find(|l| l.contains("call refused") && l.contains(&route))
        .unwrap_or_else(|| panic!("no refusal logged with its route:\n{logs}"));
    assert!(
        refusal.contains(&w.own),
        "the refusal must name the session: {refusal}"
    );
    for token in [OWN_TOKEN, CP_TOKEN] {
        assert!(!logs.contains(token), "a token was logged:\n{logs}");
    }
}
