//! Session tools: list, get, create (+ start), push a message (with
//! `@mention` delegation), and the label/annotation merges.

use std::collections::BTreeMap;

use ambient_protocol::phase::Phase;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::args::check_annotations;
use super::{Args, ToolError, ToolResult, agents, paging};
use crate::api::{Api, segment};
use crate::projection::{self, MESSAGE, SESSION};
use crate::{mention, merge, search};

const NOT_FOUND: &str = "SESSION_NOT_FOUND";

fn path(id: &str) -> String {
    format!("sessions/{}", segment(id))
}

/// `GET /sessions/{id}` as the raw API object.
pub async fn fetch(api: &Api, id: &str) -> Result<Value, ToolError> {
    api.get(&path(id), &[])
        .await
        .map_err(|e| ToolError::api(&e, NOT_FOUND, NOT_FOUND))
}

pub async fn list(api: &Api, args: &Args) -> ToolResult {
    let mut filters = Vec::new();
    if let Some(project) = args.opt_str("project_id")? {
        filters.push(search::equals("project_id", &project)?);
    }
    if let Some(phase) = args.opt_str("phase")? {
        if !["Pending", "Running", "Completed", "Failed"].contains(&phase.as_str()) {
            return Err(ToolError::invalid(
                "phase must be one of Pending, Running, Completed, Failed",
            ));
        }
        filters.push(search::equals("phase", &phase)?);
    }
    let mut query = paging(args)?;
    if !filters.is_empty() {
        query.push(("search", filters.join(" and ")));
    }
    let envelope = api
        .get("sessions", &query)
        .await
        .map_err(|e| ToolError::api(&e, NOT_FOUND, "SESSION_LIST_FAILED"))?;
    Ok(projection::list(&envelope, SESSION))
}

pub async fn get(api: &Api, args: &Args) -> ToolResult {
    let id = args.id("session_id")?;
    Ok(projection::one(&fetch(api, &id).await?, SESSION))
}

/// The fields of a new session.
struct NewSession {
    name: String,
    project_id: String,
    prompt: String,
    agent_id: Option<String>,
    llm_model: Option<String>,
    parent_session_id: Option<String>,
}

/// Creates then starts a session. If the start fails, the created session
/// stays, as the reference leaves it (it can be started again), and the
/// error names it. `failed` and `start_failed` are the error codes of the
/// two steps.
async fn create_and_start(
    api: &Api,
    new: NewSession,
    failed: &'static str,
    start_failed: &'static str,
) -> ToolResult {
    let mut body = json!({
        "name": new.name,
        "project_id": new.project_id,
        "prompt": new.prompt,
    });
    for (key, value) in [
        ("agent_id", new.agent_id),
        ("llm_model", new.llm_model),
        ("parent_session_id", new.parent_session_id),
    ] {
        if let Some(v) = value {
            body[key] = Value::from(v);
        }
    }
    let created = api
        .post("sessions", &body)
        .await
        .map_err(|e| ToolError::api(&e, "PROJECT_NOT_FOUND", failed))?;
    let id = created
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::new("INTERNAL", "the API created a session without an id"))?
        .to_owned();
    match api
        .post(&format!("{}/start", path(&id)), &Value::Null)
        .await
    {
        Ok(started) => Ok(projection::one(&started, SESSION)),
        Err(e) => {
            let mut err = ToolError::api(&e, NOT_FOUND, start_failed);
            err.reason = format!(
                "session {id} was created, but its start failed: {}",
                err.reason
            );
            Err(err)
        }
    }
}

pub async fn create(api: &Api, args: &Args) -> ToolResult {
    let project_id = args.str("project_id")?;
    let prompt = args.str("prompt")?;
    let name = match args.opt_str("name")? {
        Some(n) => n,
        None => mention::slug(&prompt),
    };
    let new = NewSession {
        name,
        project_id,
        prompt,
        agent_id: args.opt_str("agent_id")?,
        llm_model: args.opt_str("model")?,
        parent_session_id: args.opt_str("parent_session_id")?,
    };
    create_and_start(api, new, "CREATE_FAILED", "START_FAILED").await
}

/// Pushes a user message. Every distinct `@mention` is resolved first (an
/// unresolved or ambiguous one refuses the whole call before anything is
/// written); then the message is pushed and one child session started per
/// mentioned agent, with the text minus that mention.
pub async fn push_message(api: &Api, args: &Args) -> ToolResult {
    let session_id = args.id("session_id")?;
    let text = args.str("text")?;
    let caller = fetch(api, &session_id).await?;
    let phase = caller.get("phase").and_then(Value::as_str);
    if Phase::of_session(phase).is_ok_and(Phase::is_terminal) {
        return Err(ToolError::new(
            "SESSION_NOT_RUNNING",
            format!(
                "session {session_id} has ended ({})",
                phase.unwrap_or_default()
            ),
        ));
    }
    let project = caller
        .get("project_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut targets = Vec::new();
    for ident in mention::extract(&text) {
        let agent = agents::resolve(api, &project, &ident)
            .await
            .map_err(|e| match e.code {
                "AGENT_NOT_FOUND" => ToolError::new("MENTION_NOT_RESOLVED", e.reason),
                _ => e,
            })?;
        targets.push((ident, agent));
    }
    let pushed = api
        .post(
            &format!("{}/messages", path(&session_id)),
            &json!({"payload": text, "event_type": "user"}),
        )
        .await
        .map_err(|e| match e.status() {
            Some(StatusCode::CONFLICT) => ToolError::new("SESSION_NOT_RUNNING", e.to_string()),
            _ => ToolError::api(&e, NOT_FOUND, "PUSH_FAILED"),
        })?;
    let mut delegated = Vec::new();
    for (ident, agent) in targets {
        let prompt = mention::strip(&text, &ident);
        let agent_id = agent.get("id").and_then(Value::as_str).map(str::to_owned);
        let new = NewSession {
            name: mention::slug(&format!("{ident} {prompt}")),
            project_id: project.clone(),
            prompt,
            agent_id,
            llm_model: None,
            parent_session_id: Some(session_id.clone()),
        };
        delegated.push(
            create_and_start(api, new, "DELEGATION_FAILED", "DELEGATION_START_FAILED").await?,
        );
    }
    let mut result = json!({
        "message": projection::one(&pushed, MESSAGE),
        "delegated_session": delegated.first().cloned().unwrap_or(Value::Null),
    });
    if delegated.len() > 1 {
        result["delegated_sessions"] = Value::Array(delegated);
    }
    Ok(result)
}

/// GET, merge `patch` into `field`, PATCH the whole field back.
async fn merge_field(
    api: &Api,
    session_id: &str,
    field: &str,
    patch: &BTreeMap<String, String>,
) -> ToolResult {
    let current = fetch(api, session_id).await?;
    let merged = merge::merged(current.get(field), patch);
    let updated = api
        .patch(&path(session_id), &json!({ field: merged }))
        .await
        .map_err(|e| ToolError::api(&e, NOT_FOUND, "PATCH_FAILED"))?;
    Ok(projection::one(&updated, SESSION))
}

pub async fn patch_labels(api: &Api, args: &Args) -> ToolResult {
    let id = args.id("session_id")?;
    let labels = args.map("labels")?;
    merge_field(api, &id, "labels", &labels).await
}

pub async fn patch_annotations(api: &Api, args: &Args) -> ToolResult {
    let id = args.id("session_id")?;
    let annotations = args.map("annotations")?;
    check_annotations(&annotations)?;
    merge_field(api, &id, "annotations", &annotations).await
}
