//! Project tools: list, get (by ID or name), and the annotation merge.

use serde_json::{Value, json};

use super::args::check_annotations;
use super::{Args, ToolError, ToolResult, paging};
use crate::api::{Api, segment};
use crate::projection::{self, PROJECT};
use crate::{merge, search};

const NOT_FOUND: &str = "PROJECT_NOT_FOUND";

fn path(id: &str) -> String {
    format!("projects/{}", segment(id))
}

/// The project `ident`: by ID, then (the reference's IDs were UUIDs) as a
/// unique name.
async fn resolve(api: &Api, ident: &str) -> Result<Value, ToolError> {
    match api.get(&path(ident), &[]).await {
        Ok(p) => return Ok(p),
        Err(e) if e.status() != Some(reqwest::StatusCode::NOT_FOUND) => {
            return Err(ToolError::api(&e, NOT_FOUND, NOT_FOUND));
        }
        Err(_) => {}
    }
    let not_found = || ToolError::new(NOT_FOUND, format!("no project with ID or name {ident:?}"));
    let Ok(name) = search::safe_value(ident) else {
        return Err(not_found());
    };
    let query = [
        ("search", search::equals("name", name)?),
        ("page", "1".to_owned()),
        ("size", "2".to_owned()),
    ];
    let found = api
        .get("projects", &query)
        .await
        .map_err(|e| ToolError::api(&e, NOT_FOUND, NOT_FOUND))?;
    match found
        .get("items")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([only]) => Ok(only.clone()),
        _ => Err(not_found()),
    }
}

pub async fn list(api: &Api, args: &Args) -> ToolResult {
    let envelope = api
        .get("projects", &paging(args)?)
        .await
        .map_err(|e| ToolError::api(&e, NOT_FOUND, "LIST_FAILED"))?;
    Ok(projection::list(&envelope, PROJECT))
}

pub async fn get(api: &Api, args: &Args) -> ToolResult {
    let ident = args.id("project_id")?;
    Ok(projection::one(&resolve(api, &ident).await?, PROJECT))
}

pub async fn patch_annotations(api: &Api, args: &Args) -> ToolResult {
    let ident = args.id("project_id")?;
    let annotations = args.map("annotations")?;
    check_annotations(&annotations)?;
    let current = resolve(api, &ident).await?;
    let id = current
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or(&ident)
        .to_owned();
    let merged = merge::merged(current.get("annotations"), &annotations);
    let updated = api
        .patch(&path(&id), &json!({ "annotations": merged }))
        .await
        .map_err(|e| ToolError::api(&e, NOT_FOUND, "PATCH_FAILED"))?;
    Ok(projection::one(&updated, PROJECT))
}
