//! One request carried across the bridge, either way (runner → child for
//! `tools/call`, `completion/complete`, `resources/subscribe`...; child →
//! runner for sampling, roots, elicitation), keeping what MCP ties to the
//! request intact:
//!
//! - **progress**: rmcp gives every outgoing request a progress token of
//!   its own, so the caller's token is recorded against ours in
//!   [`Routes`] while the request is in flight; a progress notification
//!   from the far side is translated back ([`Routes::forward`]) and
//!   one for a request no longer in flight is dropped, as MCP requires.
//!   The far side sends its progress before its answer, and so must we:
//!   rmcp hands notifications and answers to the transport by different
//!   channels, so an answer could overtake the last progress, which then
//!   arrives after the request has ended (on Streamable HTTP, on another
//!   stream). So the answer waits until the progress forwards that began
//!   before it have been handed to the transport ([`PROGRESS_DRAIN`] at
//!   most);
//! - **cancellation**: when the caller cancels (rmcp cancels the handler's
//!   token), `notifications/cancelled` goes to the far side for our ID; the
//!   caller gets no answer (rmcp drops it for a cancelled request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambient_mcp_http::backlog::Backlog;
use rmcp::ErrorData as McpError;
use rmcp::model::{ProgressToken, RequestMetaObject};
use rmcp::service::{Peer, PeerRequestOptions, ServiceError, ServiceRole};
use tokio_util::sync::CancellationToken;

/// Longest an answer waits for the progress forwarded before it.
pub const PROGRESS_DRAIN: Duration = Duration::from_secs(2);

/// Progress tokens of requests in flight across the bridge: ours (on the
/// relayed request) → the caller's, with the forwards under way.
#[derive(Debug, Clone, Default)]
pub struct Routes(Arc<Mutex<HashMap<ProgressToken, Entry>>>);

/// The caller's token, and the progress forwards under way.
#[derive(Debug)]
struct Entry {
    caller: ProgressToken,
    in_flight: Arc<Backlog>,
}

/// One progress notification being forwarded under the caller's token;
/// the request's answer waits for it (drop it once it is sent).
#[derive(Debug)]
pub struct Forward {
    pub caller_token: ProgressToken,
    in_flight: Arc<Backlog>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.in_flight.done();
    }
}

impl Routes {
    /// A forward of a progress notification about `ours` under the
    /// caller's token, while that request is in flight.
    pub fn forward(&self, ours: &ProgressToken) -> Option<Forward> {
        let map = self.0.lock().ok()?;
        let entry = map.get(ours)?;
        entry.in_flight.add();
        Some(Forward {
            caller_token: entry.caller.clone(),
            in_flight: entry.in_flight.clone(),
        })
    }

    fn add(&self, ours: ProgressToken, caller: ProgressToken) -> Route {
        let in_flight = Arc::new(Backlog::default());
        if let Ok(mut map) = self.0.lock() {
            let in_flight = in_flight.clone();
            map.insert(ours.clone(), Entry { caller, in_flight });
        }
        Route {
            routes: self.clone(),
            ours,
            in_flight,
        }
    }
}

/// A progress route, removed when the request ends (however it ends).
struct Route {
    routes: Routes,
    ours: ProgressToken,
    in_flight: Arc<Backlog>,
}

impl Route {
    /// Waits (bounded) for the progress forwards already under way.
    async fn drained(&self) {
        let _ = tokio::time::timeout(PROGRESS_DRAIN, self.in_flight.at_most(0)).await;
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Ok(mut map) = self.routes.0.lock() {
            map.remove(&self.ours);
        }
    }
}

/// The caller's side of a relayed request: its `_meta` (progress token
/// included) and its cancellation.
pub struct Caller<'a> {
    pub meta: &'a RequestMetaObject,
    pub cancelled: &'a CancellationToken,
}

/// Why a relayed request has no answer for the caller.
pub fn relay_error(e: ServiceError) -> McpError {
    match e {
        ServiceError::McpError(e) => e,
        other => McpError::internal_error(format!("relayed request failed: {other}"), None),
    }
}

/// Sends `request` to `peer` on behalf of `caller` and waits for the
/// answer; see the module documentation for progress and cancellation.
pub async fn relay<R: ServiceRole>(
    peer: &Peer<R>,
    request: R::Req,
    caller: Caller<'_>,
    routes: &Routes,
) -> Result<R::PeerResp, McpError> {
    let caller_token = caller.meta.get_progress_token();
    // rmcp replaces the progress token in this `_meta` with its own.
    let options = PeerRequestOptions::no_options().with_meta(caller.meta.clone());
    let mut handle = peer
        .send_request_with_option(request, options)
        .await
        .map_err(relay_error)?;
    let route = caller_token.map(|t| routes.add(handle.progress_token.clone(), t));
    let answer = tokio::select! {
        answer = &mut handle.rx => Some(answer),
        () = caller.cancelled.cancelled() => None,
    };
    if let (Some(route), Some(_)) = (&route, &answer) {
        // The progress sent before the answer goes out before it.
        route.drained().await;
    }
    match answer {
        Some(Ok(result)) => result.map_err(relay_error),
        Some(Err(_)) => Err(relay_error(ServiceError::TransportClosed)),
        None => {
            let _ = handle
                .cancel(Some("cancelled by the client".to_owned()))
                .await;
            Err(McpError::internal_error("request cancelled", None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::NumberOrString;

    fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    fn token(routes: &Routes, ours: &ProgressToken) -> Option<ProgressToken> {
        routes.forward(ours).map(|f| f.caller_token.clone())
    }

    #[test]
    fn a_progress_route_lives_as_long_as_its_request() {
        let routes = Routes::default();
        let ours = ProgressToken(NumberOrString::Number(3));
        let caller = ProgressToken(NumberOrString::String("runner-tok".into()));
        let route = routes.add(ours.clone(), caller.clone());
        assert_eq!(token(&routes, &ours), Some(caller));
        assert_eq!(
            token(&routes, &ProgressToken(NumberOrString::Number(4))),
            None
        );
        drop(route);
        assert_eq!(token(&routes, &ours), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_waits_for_progress_forwards_under_way_and_no_longer() {
        let routes = Routes::default();
        let ours = ProgressToken(NumberOrString::Number(7));
        let route = routes.add(ours.clone(), ProgressToken(NumberOrString::Number(1)));
        // Nothing under way: no wait at all.
        tokio::time::timeout(Duration::from_millis(1), route.drained())
            .await
            .unwrap_or_else(|_| panic!("waited with no forward under way"));
        // Two forwards under way: the wait ends when the last one ends.
        let (first, second) = (routes.forward(&ours), routes.forward(&ours));
        let waiting = tokio::time::timeout(Duration::from_millis(50), route.drained());
        tokio::pin!(waiting);
        assert!(poll_once(waiting.as_mut()).is_pending());
        drop(first);
        assert!(poll_once(waiting.as_mut()).is_pending());
        drop(second);
        assert!(matches!(
            poll_once(waiting.as_mut()),
            std::task::Poll::Ready(Ok(()))
        ));
        // A forward that never ends holds the answer back PROGRESS_DRAIN at most.
        let stuck = routes.forward(&ours);
        let t0 = tokio::time::Instant::now();
        route.drained().await;
        assert_eq!(t0.elapsed(), PROGRESS_DRAIN);
        drop(stuck);
    }
}
