//! `POST /refresh` on the `--serve-mcp` listener: re-fetch the credential
//! now and apply a change as the refresh loop would (daemons.md). Loopback
//! callers only (403 otherwise, even for peers the MCP routes admit; the
//! peer and `Host`/`Origin` guard of the MCP routes applies too); at most once per [`crate::rotate::ON_DEMAND_WINDOW`]
//! (429 with `Retry-After` inside it). The refresh itself runs in the
//! bridge's loop, which answers through [`Ask`].
//!
//! Answers: 200 `{"changed": bool}`; 429; 502 when the fetch failed (the
//! last good credential stays; the text never carries a secret).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::{mpsc, oneshot};

/// What an on-demand refresh came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Fetched and applied; `true` when the credential changed.
    Done { changed: bool },
    /// Inside the window; try again after this long.
    TooSoon(Duration),
    /// The fetch or the file write failed (the reason has no secret).
    Failed(String),
}

/// A refresh asked for over HTTP, with where to send its outcome.
pub type Ask = oneshot::Sender<Outcome>;

/// The `/refresh` route; each call is handed to the loop behind `asks`.
pub fn router(asks: mpsc::Sender<Ask>, guard: ambient_mcp_http::Guard) -> Router {
    Router::new()
        .route("/refresh", post(refresh))
        .with_state(asks)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard),
            ambient_mcp_http::guard::check,
        ))
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn refresh(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(asks): State<mpsc::Sender<Ask>>,
) -> Response {
    if !peer.ip().to_canonical().is_loopback() {
        tracing::warn!(%peer, "refused a credential refresh from a non-loopback caller");
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "refresh is for loopback callers only"}),
        );
    }
    let (tx, rx) = oneshot::channel();
    let outcome = match asks.send(tx).await {
        Ok(()) => rx.await.ok(),
        Err(_) => None,
    };
    match outcome {
        Some(Outcome::Done { changed }) => {
            json(StatusCode::OK, serde_json::json!({"changed": changed}))
        }
        Some(Outcome::TooSoon(wait)) => {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut resp = json(
                StatusCode::TOO_MANY_REQUESTS,
                serde_json::json!({"error": "a refresh ran recently", "retry_after_seconds": secs}),
            );
            if let Ok(v) = header::HeaderValue::from_str(&secs.max(1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            resp
        }
        Some(Outcome::Failed(reason)) => json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({"error": format!("credential refresh failed: {reason}")}),
        ),
        None => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "the bridge is stopping"}),
        ),
    }
}
