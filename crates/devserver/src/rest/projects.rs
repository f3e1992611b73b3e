//! `/projects` (the ID is the name), `/project_settings`, and a project's
//! agents with their inboxes.

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::routing::{get, patch};
use serde::Deserialize;

use super::{ListQ, RawBody, Result, body, created, no_content, ok, query};
use crate::mapping::{
    ProjectBody, ProjectSettingsBody, agent_json, inbox_json, list_json, project_json,
    project_settings_json,
};
use crate::model::{AgentFields, InboxFields};
use crate::service::{Api, Caller};

async fn projects_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_projects(&query(q)?.list_query()).await?;
    Ok(ok(list_json("Project", page.map(|p| project_json(&p)))))
}

async fn projects_create(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    raw: RawBody,
) -> Result<Response> {
    let mut b: ProjectBody = body(raw)?;
    let prompt = b.prompt.take();
    let p = api.create_project(&caller, b.into_create(), prompt).await?;
    Ok(created(project_json(&p)))
}

async fn project_get(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(project_json(&api.get_project(&id).await?)))
}

async fn project_patch(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let mut b: ProjectBody = body(raw)?;
    let prompt = b.prompt.take();
    let p = api.update_project(b.into_update(&id), prompt).await?;
    Ok(ok(project_json(&p)))
}

async fn project_delete(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    api.delete_project(&id).await?;
    Ok(no_content())
}

// ----- project settings ----------------------------------------------------

async fn settings_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_project_settings(&query(q)?.list_query()).await?;
    Ok(ok(list_json(
        "ProjectSettings",
        page.map(|s| project_settings_json(&s)),
    )))
}

async fn settings_create(State(api): State<Api>, raw: RawBody) -> Result<Response> {
    let b: ProjectSettingsBody = body(raw)?;
    let s = api.create_project_settings(b.into_create()).await?;
    Ok(created(project_settings_json(&s)))
}

async fn settings_get(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(project_settings_json(
        &api.get_project_settings(&id).await?,
    )))
}

async fn settings_patch(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let b: ProjectSettingsBody = body(raw)?;
    let s = api.update_project_settings(b.into_update(&id)).await?;
    Ok(ok(project_settings_json(&s)))
}

async fn settings_delete(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    api.delete_project_settings(&id).await?;
    Ok(no_content())
}

// ----- agents --------------------------------------------------------------

async fn agents_list(
    State(api): State<Api>,
    Path(pid): Path<String>,
    q: ListQ,
) -> Result<Response> {
    let page = api.list_agents(&pid, &query(q)?.list_query()).await?;
    Ok(ok(list_json("Agent", page.map(|a| agent_json(&a)))))
}

async fn agents_create(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    Path(pid): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let f: AgentFields = body(raw)?;
    Ok(created(agent_json(
        &api.create_agent(&caller, &pid, f).await?,
    )))
}

async fn agent_get(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
) -> Result<Response> {
    Ok(ok(agent_json(&api.get_agent(&pid, &aid).await?)))
}

async fn agent_patch(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
    raw: RawBody,
) -> Result<Response> {
    let f: AgentFields = body(raw)?;
    Ok(ok(agent_json(&api.update_agent(&pid, &aid, f).await?)))
}

async fn agent_delete(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
) -> Result<Response> {
    api.delete_agent(&pid, &aid).await?;
    Ok(no_content())
}

// ----- inbox ---------------------------------------------------------------

async fn inbox_list(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
    q: ListQ,
) -> Result<Response> {
    let page = api.list_inbox(&pid, &aid, &query(q)?.list_query()).await?;
    Ok(ok(list_json("InboxMessage", page.map(|m| inbox_json(&m)))))
}

async fn inbox_post(
    State(api): State<Api>,
    Path((pid, aid)): Path<(String, String)>,
    raw: RawBody,
) -> Result<Response> {
    let f: InboxFields = body(raw)?;
    Ok(created(inbox_json(&api.post_inbox(&pid, &aid, f).await?)))
}

/// `PATCH .../inbox/{msg_id}` body: the read flag.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InboxPatch {
    read: Option<bool>,
}

async fn inbox_patch(
    State(api): State<Api>,
    Path((pid, aid, mid)): Path<(String, String, String)>,
    raw: RawBody,
) -> Result<Response> {
    let p: InboxPatch = body(raw)?;
    Ok(ok(inbox_json(
        &api.mark_inbox(&pid, &aid, &mid, p.read).await?,
    )))
}

/// The project, settings, agent and inbox routes.
pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/projects", get(projects_list).post(projects_create))
        .route(
            "/projects/{id}",
            get(project_get).patch(project_patch).delete(project_delete),
        )
        .route(
            "/project_settings",
            get(settings_list).post(settings_create),
        )
        .route(
            "/project_settings/{id}",
            get(settings_get)
                .patch(settings_patch)
                .delete(settings_delete),
        )
        .route(
            "/projects/{pid}/agents",
            get(agents_list).post(agents_create),
        )
        .route(
            "/projects/{pid}/agents/{aid}",
            get(agent_get).patch(agent_patch).delete(agent_delete),
        )
        .route(
            "/projects/{pid}/agents/{aid}/inbox",
            get(inbox_list).post(inbox_post),
        )
        .route(
            "/projects/{pid}/agents/{aid}/inbox/{mid}",
            patch(inbox_patch),
        )
}
