//! What a session's objects are built from besides the session itself,
//! read from the API's REST side when it is provisioned: its credentials
//! (wire.md §2) and the parts of its initial prompt (wire.md §5). Also the
//! session's token-reader grants: made before its pod exists, revoked when
//! it ends or is deleted.

use std::collections::BTreeMap;

use ambient_protocol::provider::Provider;
use ambient_protocol::v1::Session;
use serde_json::Value;

use super::{Controller, ReconcileError};
use crate::credentials;
use crate::objects::PromptSources;
use crate::rest::Rest;

/// What [`Controller::session_context`] read.
#[derive(Debug, Default)]
pub struct SessionContext {
    /// Provider → credential ID.
    pub credentials: BTreeMap<Provider, String>,
    pub prompt: PromptSources,
    /// See [`last_message_seq`].
    pub last_seq: Option<i64>,
}

/// A string field of a REST object.
fn field(v: &Value, name: &str) -> Option<String> {
    v.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The project prompt, the agent prompt and the agent's unread inbox
/// messages. An agent that no longer exists contributes nothing; any other
/// failure is an error (the session is retried, never started short).
pub async fn prompt_sources(
    rest: &Rest,
    session: &Session,
) -> Result<PromptSources, ReconcileError> {
    let project_id = session.project_id.as_deref().unwrap_or_default();
    let project = rest.get(&["projects", project_id]).await?;
    let mut sources = PromptSources {
        project_prompt: field(&project, "prompt"),
        ..PromptSources::default()
    };
    let Some(agent_id) = session.agent_id.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(sources);
    };
    let agent = match rest
        .get(&["projects", project_id, "agents", agent_id])
        .await
    {
        Ok(a) => a,
        Err(e) if e.is_not_found() => return Ok(sources),
        Err(e) => return Err(e.into()),
    };
    sources.agent_prompt = field(&agent, "prompt");
    let items = rest
        .list_all(&["projects", project_id, "agents", agent_id, "inbox"], "")
        .await?;
    sources.inbox = items
        .iter()
        .filter(|m| !m.get("read").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|m| field(m, "body"))
        .collect();
    Ok(sources)
}

/// The highest message seq of `session` (0 without messages), for a
/// session started again (`RESUME_AFTER_SEQ`); `None` for a first start, or
/// when the messages cannot be read (logged: the runner then gets
/// `IS_RESUME` alone, as from the reference, rather than no start at all).
pub async fn last_message_seq(rest: &Rest, session: &Session) -> Option<i64> {
    session.start_time?;
    let id = session.metadata.as_ref().map(|m| m.id.as_str())?;
    match rest.get(&["sessions", id, "messages"]).await {
        Ok(Value::Array(items)) => Some(
            items
                .iter()
                .filter_map(|m| m.get("seq").and_then(Value::as_i64))
                .max()
                .unwrap_or(0),
        ),
        Ok(_) => {
            tracing::warn!(session = %id, "the session's messages are no list; RESUME_AFTER_SEQ not set");
            None
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "cannot read the session's messages; RESUME_AFTER_SEQ not set");
            None
        }
    }
}

impl Controller {
    /// The credentials, prompt parts and last message seq of `session`
    /// (none without REST).
    pub(super) async fn session_context(
        &self,
        session: &Session,
    ) -> Result<SessionContext, ReconcileError> {
        let Some(rest) = &self.rest else {
            return Ok(SessionContext::default());
        };
        let project_id = session.project_id.as_deref().unwrap_or_default();
        // Independent reads: concurrently, so provisioning waits for the
        // slowest, not for their sum.
        let (creds, prompt, last_seq) = tokio::join!(
            credentials::resolve(rest, project_id, session.agent_id.as_deref()),
            prompt_sources(rest, session),
            last_message_seq(rest, session)
        );
        Ok(SessionContext {
            credentials: creds?,
            prompt: prompt?,
            last_seq,
        })
    }

    /// Grants the service identity read access to `delivered` for the
    /// session (no-op without a service identity).
    pub(super) async fn grant(
        &self,
        session_id: &str,
        delivered: &BTreeMap<Provider, String>,
    ) -> Result<(), ReconcileError> {
        if let (Some(rest), Some(identity)) = (&self.rest, &self.service_identity) {
            self.revoked_set().remove(session_id);
            credentials::grant(rest, identity, session_id, delivered).await?;
        }
        Ok(())
    }

    /// Revokes the session's credential bindings once (no-op without a
    /// service identity: nothing was granted then).
    pub(super) async fn revoke(&self, session_id: &str) -> Result<(), ReconcileError> {
        let (Some(rest), Some(_)) = (&self.rest, &self.service_identity) else {
            return Ok(());
        };
        if self.revoked_set().contains(session_id) {
            return Ok(());
        }
        credentials::revoke(rest, session_id).await?;
        self.revoked_set().insert(session_id.to_owned());
        Ok(())
    }

    fn revoked_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.revoked.lock().unwrap_or_else(|p| p.into_inner())
    }
}
