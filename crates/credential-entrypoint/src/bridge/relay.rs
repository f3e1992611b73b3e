//! One request carried across the bridge, either way (runner → child for
//! `tools/call`, `completion/complete`, `resources/subscribe`...; child →
//! runner for sampling, roots, elicitation), keeping what MCP ties to the
//! request intact:
//!
//! - **progress**: rmcp gives every outgoing request a progress token of
//!   its own, so the caller's token is recorded against ours in
//!   [`Routes`] while the request is in flight; a progress notification
//!   from the far side is translated back ([`Routes::caller_token`]) and
//!   one for a request no longer in flight is dropped, as MCP requires;
//! - **cancellation**: when the caller cancels (rmcp cancels the handler's
//!   token), `notifications/cancelled` goes to the far side for our ID; the
//!   caller gets no answer (rmcp drops it for a cancelled request).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::ErrorData as McpError;
use rmcp::model::{ProgressToken, RequestMetaObject};
use rmcp::service::{Peer, PeerRequestOptions, ServiceError, ServiceRole};
use tokio_util::sync::CancellationToken;

/// Progress tokens of requests in flight across the bridge: ours (on the
/// relayed request) → the caller's.
#[derive(Debug, Clone, Default)]
pub struct Routes(Arc<Mutex<HashMap<ProgressToken, ProgressToken>>>);

impl Routes {
    /// The caller's token for a progress notification about `ours`, while
    /// that request is in flight.
    pub fn caller_token(&self, ours: &ProgressToken) -> Option<ProgressToken> {
        self.0.lock().ok()?.get(ours).cloned()
    }

    fn add(&self, ours: ProgressToken, caller: ProgressToken) -> Route {
        if let Ok(mut map) = self.0.lock() {
            map.insert(ours.clone(), caller);
        }
        Route {
            routes: self.clone(),
            ours,
        }
    }
}

/// A progress route, removed when the request ends (however it ends).
struct Route {
    routes: Routes,
    ours: ProgressToken,
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
    let _route = caller_token.map(|t| routes.add(handle.progress_token.clone(), t));
    let answer = tokio::select! {
        answer = &mut handle.rx => Some(answer),
        () = caller.cancelled.cancelled() => None,
    };
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

    #[test]
    fn a_progress_route_lives_as_long_as_its_request() {
        let routes = Routes::default();
        let ours = ProgressToken(NumberOrString::Number(3));
        let caller = ProgressToken(NumberOrString::String("runner-tok".into()));
        let route = routes.add(ours.clone(), caller.clone());
        assert_eq!(routes.caller_token(&ours), Some(caller));
        assert_eq!(
            routes.caller_token(&ProgressToken(NumberOrString::Number(4))),
            None
        );
        drop(route);
        assert_eq!(routes.caller_token(&ours), None);
    }
}
