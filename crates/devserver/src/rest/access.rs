//! `/credentials` (the token is write-only), `/roles`, `/role_bindings`.
//! The credential routes are also served under `/projects/{pid}`, as the
//! reference serves them (the reference runner fetches
//! `/projects/{p}/credentials/{id}/token`); the project segment selects
//! nothing there, credentials being bound to projects by role bindings.

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::get;

use serde::Deserialize;

use super::{ListQ, RawBody, Result, body, created, no_content, ok, query};
use crate::mapping::{credential_json, list_json, role_binding_json, role_json};
use crate::model::{CredentialFields, RoleBindingFields, RoleFields};
use crate::service::{Api, Caller};

/// The credential of a path, with or without a `/projects/{pid}` before it.
#[derive(Debug, Deserialize)]
struct CredentialPath {
    id: String,
}

async fn credentials_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_credentials(&query(q)?.list_query()).await?;
    Ok(ok(list_json(
        "Credential",
        page.map(|c| credential_json(&c)),
    )))
}

async fn credentials_create(
    State(api): State<Api>,
    Extension(caller): Extension<Caller>,
    raw: RawBody,
) -> Result<Response> {
    let f: CredentialFields = body(raw)?;
    Ok(created(credential_json(
        &api.create_credential(&caller, f).await?,
    )))
}

async fn credential_get(
    State(api): State<Api>,
    Path(CredentialPath { id }): Path<CredentialPath>,
) -> Result<Response> {
    Ok(ok(credential_json(&api.get_credential(&id).await?)))
}

async fn credential_patch(
    State(api): State<Api>,
    Path(CredentialPath { id }): Path<CredentialPath>,
    raw: RawBody,
) -> Result<Response> {
    let f: CredentialFields = body(raw)?;
    Ok(ok(credential_json(&api.update_credential(&id, f).await?)))
}

async fn credential_delete(
    State(api): State<Api>,
    Path(CredentialPath { id }): Path<CredentialPath>,
) -> Result<Response> {
    api.delete_credential(&id).await?;
    Ok(no_content())
}

async fn credential_token(
    State(api): State<Api>,
    Path(CredentialPath { id }): Path<CredentialPath>,
) -> Result<Response> {
    let (provider, token) = api.credential_token(&id).await?;
    let mut resp = ok(serde_json::json!({
        "credential_id": id,
        "provider": provider,
        "token": token.expose(),
    }));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

// ----- roles -----------------------------------------------------------------

async fn roles_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_roles(&query(q)?.list_query()).await?;
    Ok(ok(list_json("Role", page.map(|r| role_json(&r)))))
}

async fn roles_create(State(api): State<Api>, raw: RawBody) -> Result<Response> {
    let f: RoleFields = body(raw)?;
    Ok(created(role_json(&api.create_role(f).await?)))
}

async fn role_get(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(role_json(&api.get_role(&id).await?)))
}

// ----- role bindings -----------------------------------------------------------

async fn bindings_list(State(api): State<Api>, q: ListQ) -> Result<Response> {
    let page = api.list_role_bindings(&query(q)?.list_query()).await?;
    Ok(ok(list_json(
        "RoleBinding",
        page.map(|b| role_binding_json(&b)),
    )))
}

async fn bindings_create(State(api): State<Api>, raw: RawBody) -> Result<Response> {
    let f: RoleBindingFields = body(raw)?;
    Ok(created(role_binding_json(
        &api.create_role_binding(f).await?,
    )))
}

async fn binding_get(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    Ok(ok(role_binding_json(&api.get_role_binding(&id).await?)))
}

async fn binding_patch(
    State(api): State<Api>,
    Path(id): Path<String>,
    raw: RawBody,
) -> Result<Response> {
    let f: RoleBindingFields = body(raw)?;
    Ok(ok(role_binding_json(
        &api.update_role_binding(&id, f).await?,
    )))
}

async fn binding_delete(State(api): State<Api>, Path(id): Path<String>) -> Result<Response> {
    api.delete_role_binding(&id).await?;
    Ok(no_content())
}

/// The credential, role and role binding routes.
pub(super) fn routes() -> Router<Api> {
    let mut router = Router::new();
    for prefix in ["", "/projects/{pid}"] {
        router = router
            .route(
                &format!("{prefix}/credentials"),
                get(credentials_list).post(credentials_create),
            )
            .route(
                &format!("{prefix}/credentials/{{id}}"),
                get(credential_get)
                    .patch(credential_patch)
                    .delete(credential_delete),
            )
            .route(
                &format!("{prefix}/credentials/{{id}}/token"),
                get(credential_token),
            );
    }
    router
        .route("/roles", get(roles_list).post(roles_create))
        .route("/roles/{id}", get(role_get))
        .route("/role_bindings", get(bindings_list).post(bindings_create))
        .route(
            "/role_bindings/{id}",
            get(binding_get).patch(binding_patch).delete(binding_delete),
        )
}
