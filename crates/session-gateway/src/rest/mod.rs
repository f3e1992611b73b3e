//! REST `/api/ambient/v1` for session pods: the caller admitted by its
//! session token, the call matched against [`crate::allow::TABLE`], its
//! scope checked, then forwarded with the control plane's identity.

mod body;
mod forward;
pub mod refuse;
mod scope;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::Response;

use crate::access;
use crate::allow::{self, API_PREFIX};
use crate::gateway::Inner;
use scope::Plan;

pub(crate) use forward::{Answer, MAX_REQUEST_BODY, lookup};

/// The REST router: one handler for every path.
pub(crate) fn router(gw: Arc<Inner>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(gw)
}

/// Query parameters the gateway reads: `project_id` (must be the session's
/// project) and the caller's `search` (at most one, its parentheses and
/// quotes balanced, so that ANDing it with the scope cannot escape).
fn query_scope(query: Option<&str>, own: &str) -> Result<Option<String>, &'static str> {
    let mut search = None;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "project_id" if v != own => return Err("a project_id of another project"),
            "search" if search.is_some() => return Err("more than one search"),
            "search" if !balanced(&v) => return Err("a search with unbalanced parentheses"),
            "search" => search = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(search)
}

/// Parentheses outside quoted values never close more than they opened and
/// all close; every `'` value is closed (`''` is a quote inside one).
fn balanced(search: &str) -> bool {
    let mut depth = 0usize;
    let mut quoted = false;
    for c in search.chars() {
        match (quoted, c) {
            (_, '\'') => quoted = !quoted,
            (false, '(') => depth += 1,
            (false, ')') if depth == 0 => return false,
            (false, ')') => depth -= 1,
            _ => {}
        }
    }
    depth == 0 && !quoted
}

async fn handle(State(gw): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let method = parts.method.as_str();
    let route = parts.uri.path();
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let who = match access::authenticate(&*gw.verify, &*gw.facts, authorization) {
        Ok(who) => who,
        Err(refusal) => return refuse::unauthenticated(refusal, method, route),
    };
    let deny = |why: &str| refuse::forbidden(&who.session_id, method, route, why);
    // Outside the API (e.g. the reference backend's legacy
    // `/projects/{p}/agentic-sessions/...` paths, which the reference runner
    // tries and the API server does not serve): 404, as the API would
    // answer. A 401/403 there is fatal to the reference runner.
    let Some(api_path) = route.strip_prefix(API_PREFIX) else {
        return refuse::not_served(&who.session_id, method, route);
    };
    let Some((rule, params)) = allow::find(method, api_path) else {
        return deny("not on the allow-list");
    };
    let query = parts.uri.query();
    let caller_search = match query_scope(query, &who.project) {
        Ok(s) => s,
        Err(why) => return deny(why),
    };
    if parts
        .headers
        .get(forward::PROJECT_HEADER)
        .is_some_and(|v| v.as_bytes() != who.project.as_bytes())
    {
        return deny("an X-Ambient-Project of another project");
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_REQUEST_BODY).await else {
        return refuse::error(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    };
    let body = match body::confined(rule.fields, &body) {
        Ok(b) => b,
        Err(why) => return deny(&why),
    };
    let (body, filter, search) =
        match scope::check(&gw, &who, method, rule, &params, caller_search, body).await {
            Plan::Forward {
                body,
                filter,
                search,
            } => (body, filter, search),
            Plan::Answer(resp) => return resp,
            Plan::Deny(why) => return deny(why),
        };
    let target = target(params.upstream_path(rule), query, search.as_deref());
    let resp = match forward::send(
        &gw.upstream,
        parts.method.clone(),
        &target,
        &parts.headers,
        body,
        &who.project,
    )
    .await
    {
        Ok(r) => r,
        Err(r) => return r,
    };
    match filter {
        Some(narrow) => forward::narrowed(resp, narrow, &who.project).await,
        None => forward::relay(resp, access::ended(gw.facts.clone(), who)),
    }
}

/// The upstream path and query: the caller's query minus its `search`,
/// plus the scope's `search` (which includes the caller's) when it has one.
fn target(mut path: String, query: Option<&str>, search: Option<&str>) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if k != "search" {
            out.append_pair(&k, &v);
        }
    }
    if let Some(s) = search {
        out.append_pair("search", s);
    }
    let query = out.finish();
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_cannot_escape_its_parentheses() {
        assert!(balanced("name = 'a' and (id = 'b' or id = ')(')"));
        assert!(balanced("name = 'it''s'"));
        assert!(!balanced("name = 'a') or (id != ''"));
        assert!(!balanced("name = 'a"));
        assert!(!balanced("(name = 'a'"));
    }

    #[test]
    fn targets_keep_the_query_and_add_the_search() {
        assert_eq!(target("/p".into(), None, None), "/p");
        assert_eq!(target("/p".into(), Some("a=1"), None), "/p?a=1");
        assert_eq!(
            target("/p".into(), None, Some("id = 'x'")),
            "/p?search=id+%3D+%27x%27"
        );
        assert_eq!(
            target("/p".into(), Some("a=1&search=x"), Some("s")),
            "/p?a=1&search=s"
        );
        assert_eq!(target("/p".into(), Some("search=x"), None), "/p");
    }

    #[test]
    fn project_id_queries_must_name_the_session_project() {
        assert_eq!(query_scope(None, "p"), Ok(None));
        assert_eq!(
            query_scope(Some("project_id=p&search=x"), "p"),
            Ok(Some("x".into()))
        );
        assert!(query_scope(Some("search=a&search=b"), "p").is_err());
        assert!(query_scope(Some("project_id=q"), "p").is_err());
        assert!(query_scope(Some("page=1&project_id=p&project_id=q"), "p").is_err());
    }
}
