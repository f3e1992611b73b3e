//! Agent tools: list, get (by ID or name), create, update, and the
//! annotation merge.

use serde_json::{Map, Value, json};

use super::args::check_annotations;
use super::{Args, ToolError, ToolResult, paging};
use crate::api::{Api, segment};
use crate::projection::{self, AGENT};
use crate::{merge, search};

const NOT_FOUND: &str = "AGENT_NOT_FOUND";

fn agents_path(project: &str) -> String {
    format!("projects/{}/agents", segment(project))
}

fn agent_path(project: &str, agent: &str) -> String {
    format!("{}/{}", agents_path(project), segment(agent))
}

/// The agent `ident` of `project`: by ID first, then as a unique name.
pub async fn resolve(api: &Api, project: &str, ident: &str) -> Result<Value, ToolError> {
    match api.get(&agent_path(project, ident), &[]).await {
        Ok(agent) => return Ok(agent),
        Err(e) if e.status() != Some(reqwest::StatusCode::NOT_FOUND) => {
            return Err(ToolError::api(&e, NOT_FOUND, NOT_FOUND));
        }
        Err(_) => {}
    }
    let Ok(name) = search::safe_value(ident) else {
        return Err(ToolError::new(NOT_FOUND, format!("no agent {ident:?}")));
    };
    let query = [
        ("search", search::equals("name", name)?),
        ("page", "1".to_owned()),
        ("size", "2".to_owned()),
    ];
    let found = api
        .get(&agents_path(project), &query)
        .await
        .map_err(|e| ToolError::api(&e, "PROJECT_NOT_FOUND", NOT_FOUND))?;
    let items = found
        .get("items")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = found
        .get("total")
        .and_then(Value::as_u64)
        .unwrap_or(items.len() as u64);
    match (items.as_slice(), total) {
        ([only], 1) => Ok(only.clone()),
        ([], _) | (_, 0) => Err(ToolError::new(
            NOT_FOUND,
            format!("no agent with ID or name {ident:?} in project {project:?}"),
        )),
        _ => Err(ToolError::new(
            "AMBIGUOUS_AGENT_NAME",
            format!("{total} agents in project {project:?} are named {ident:?}"),
        )),
    }
}

fn id_of(agent: &Value) -> Result<String, ToolError> {
    agent
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ToolError::new("INTERNAL", "the API returned an agent without an id"))
}

pub async fn list(api: &Api, args: &Args) -> ToolResult {
    let project = args.id("project_id")?;
    let mut query = paging(args)?;
    if let Some(raw) = args.opt_str("search")? {
        query.push(("search", search::expression(&raw)?));
    }
    let envelope = api
        .get(&agents_path(&project), &query)
        .await
        .map_err(|e| ToolError::api(&e, "PROJECT_NOT_FOUND", "LIST_FAILED"))?;
    Ok(projection::list(&envelope, AGENT))
}

pub async fn get(api: &Api, args: &Args) -> ToolResult {
    let project = args.id("project_id")?;
    let ident = args.id("agent_id")?;
    Ok(projection::one(
        &resolve(api, &project, &ident).await?,
        AGENT,
    ))
}

pub async fn create(api: &Api, args: &Args) -> ToolResult {
    let project = args.id("project_id")?;
    let body = json!({
        "project_id": project,
        "name": args.str("name")?,
        "prompt": args.str("prompt")?,
    });
    let created = api
        .post(&agents_path(&project), &body)
        .await
        .map_err(|e| ToolError::api(&e, "PROJECT_NOT_FOUND", "CREATE_FAILED"))?;
    Ok(projection::one(&created, AGENT))
}

/// Prompt replaced; labels and annotations merged into the current ones
/// (empty value deletes) and sent as the JSON strings the API stores.
pub async fn update(api: &Api, args: &Args) -> ToolResult {
    let project = args.id("project_id")?;
    let ident = args.id("agent_id")?;
    let prompt = args.opt_str("prompt")?;
    let labels = args.opt_map("labels")?;
    let annotations = args.opt_map("annotations")?;
    if prompt.is_none() && labels.is_none() && annotations.is_none() {
        return Err(ToolError::invalid(
            "at least one of prompt, labels, or annotations must be provided",
        ));
    }
    if let Some(a) = &annotations {
        check_annotations(a)?;
    }
    let current = resolve(api, &project, &ident).await?;
    let mut body = Map::new();
    if let Some(p) = prompt {
        body.insert("prompt".into(), Value::from(p));
    }
    for (field, patch) in [("labels", labels), ("annotations", annotations)] {
        if let Some(patch) = patch {
            body.insert(
                field.into(),
                Value::from(merge::merged(current.get(field), &patch)),
            );
        }
    }
    patch_agent(
        api,
        &project,
        &id_of(&current)?,
        Value::Object(body),
        "UPDATE_FAILED",
    )
    .await
}

pub async fn patch_annotations(api: &Api, args: &Args) -> ToolResult {
    let project = args.id("project_id")?;
    let ident = args.id("agent_id")?;
    let annotations = args.map("annotations")?;
    check_annotations(&annotations)?;
    let current = resolve(api, &project, &ident).await?;
    let merged = merge::merged(current.get("annotations"), &annotations);
    let body = json!({ "annotations": merged });
    patch_agent(api, &project, &id_of(&current)?, body, "PATCH_FAILED").await
}

async fn patch_agent(
    api: &Api,
    project: &str,
    id: &str,
    body: Value,
    failed: &'static str,
) -> ToolResult {
    let updated = api
        .patch(&agent_path(project, id), &body)
        .await
        .map_err(|e| ToolError::api(&e, NOT_FOUND, failed))?;
    Ok(projection::one(&updated, AGENT))
}
