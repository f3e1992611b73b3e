//! The child's notifications reach the runner in the order the child sent
//! them. rmcp runs the handler of every incoming notification as a task of
//! its own, so two of them could reach the runner either way round (a
//! progress 95 before 80 was seen). So the child's transport is wrapped:
//! what the bridge forwards (progress of a runner request in flight,
//! logging, `resources/updated`, the three `list_changed`) is taken off as
//! it is read, in order, and one task sends it on; anything else reaches
//! rmcp as before. A progress forward is counted when it is read, so the
//! request's answer, read after it, waits for it ([`super::relay`]). The
//! queue is bounded: a child that notifies faster than the runner takes it
//! waits to be read, as on a pipe, instead of growing the sidecar.

use std::future::Future;

use rmcp::model::{JsonRpcMessage, JsonRpcNotification, ServerNotification};
use rmcp::service::{Peer, RoleClient, RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use tokio::sync::mpsc;

use super::relay::{Forward, Routes};

/// The child's transport, with the notifications the bridge forwards taken
/// off in order.
pub struct InOrder<T> {
    inner: T,
    /// Progress of runner → child requests: the bridge's token → the runner's.
    to_child: Routes,
    queue: mpsc::Sender<(ServerNotification, Option<Forward>)>,
}

/// Notifications read from the child and not yet sent to the runner.
const QUEUED: usize = 256;

/// Wraps the child's transport; the forwarding task ends with it.
pub fn wrap<T>(inner: T, runner: Peer<RoleServer>, to_child: Routes) -> InOrder<T> {
    let (queue, mut queued) = mpsc::channel::<(ServerNotification, Option<Forward>)>(QUEUED);
    tokio::spawn(async move {
        while let Some((notification, forward)) = queued.recv().await {
            let _ = runner.send_notification(notification).await;
            drop(forward);
        }
    });
    InOrder {
        inner,
        to_child,
        queue,
    }
}

/// Queues `notification` when the bridge forwards it (`None`), else gives
/// it back (fields, not `self`: the transport itself need not be `Sync`).
async fn take(
    to_child: &Routes,
    queue: &mpsc::Sender<(ServerNotification, Option<Forward>)>,
    notification: ServerNotification,
) -> Option<ServerNotification> {
    let forward = match notification {
        ServerNotification::ProgressNotification(mut n) => {
            // Only for a runner request still in flight, under the runner's token.
            let forward = to_child.forward(&n.params.progress_token)?;
            n.params.progress_token = forward.caller_token.clone();
            (ServerNotification::ProgressNotification(n), Some(forward))
        }
        n @ (ServerNotification::LoggingMessageNotification(_)
        | ServerNotification::ResourceUpdatedNotification(_)
        | ServerNotification::ResourceListChangedNotification(_)
        | ServerNotification::ToolListChangedNotification(_)
        | ServerNotification::PromptListChangedNotification(_)) => (n, None),
        other => return Some(other),
    };
    let _ = queue.send(forward).await;
    None
}

impl<T: Transport<RoleClient>> Transport<RoleClient> for InOrder<T> {
    type Error = T::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<RxJsonRpcMessage<RoleClient>> {
        loop {
            match self.inner.receive().await? {
                JsonRpcMessage::Notification(JsonRpcNotification {
                    jsonrpc,
                    notification,
                }) => {
                    if let Some(notification) =
                        take(&self.to_child, &self.queue, notification).await
                    {
                        return Some(JsonRpcMessage::Notification(JsonRpcNotification {
                            jsonrpc,
                            notification,
                        }));
                    }
                }
                other => return Some(other),
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}
