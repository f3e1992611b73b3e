//! The scope rules of [`crate::allow::Scope`]: what each one checks before a
//! call goes upstream, and what it asks of the answer.

use axum::body::Bytes;
use axum::response::Response;
use serde_json::Value;

use super::forward::{self, Answer};
use crate::SessionIdentity;
use crate::allow::{Params, Rule, Scope};
use crate::gateway::Inner;

/// How a list answer is narrowed to the session's project.
#[derive(Debug, Clone, Copy)]
pub struct Narrow {
    /// The item field naming the project.
    pub key: &'static str,
    /// `total` and `size` are always those of the kept items (else only
    /// when items were dropped): a page past the end would otherwise count
    /// what the caller's search matched elsewhere.
    pub recount: bool,
}

/// The caller's `search` ANDed with `field = 'own'`.
fn scoped_search(caller: Option<&str>, field: &str, own: &str) -> String {
    match caller {
        Some(s) => format!("({s}) and {field} = '{own}'"),
        None => format!("{field} = '{own}'"),
    }
}

/// What the scope decided.
#[derive(Debug)]
pub enum Plan {
    /// Forward with this body and `search`; narrow a list answer when
    /// `filter` says so.
    Forward {
        body: Bytes,
        filter: Option<Narrow>,
        search: Option<String>,
    },
    /// Answer with what a lookup already fetched.
    Answer(Response),
    /// Refuse, saying why.
    Deny(&'static str),
}

fn forward(body: Bytes) -> Plan {
    Plan::Forward {
        body,
        filter: None,
        search: None,
    }
}

/// Applies `rule`'s scope for `who`.
pub async fn check(
    gw: &Inner,
    who: &SessionIdentity,
    method: &str,
    rule: &Rule,
    params: &Params<'_>,
    caller_search: Option<String>,
    body: Bytes,
) -> Plan {
    let own = who.project.as_str();
    if params.project.is_some_and(|p| p != own) {
        return Plan::Deny("another project");
    }
    match rule.scope {
        Scope::ProjectQuery => match body_project(&body, own, method == "POST") {
            Err(why) => Plan::Deny(why),
            Ok(body) if method == "GET" => Plan::Forward {
                body,
                filter: Some(Narrow {
                    key: "project_id",
                    recount: false,
                }),
                search: caller_search
                    .as_deref()
                    .map(|s| scoped_search(Some(s), "project_id", own)),
            },
            Ok(body) => forward(body),
        },
        Scope::ProjectList => Plan::Forward {
            body,
            filter: Some(Narrow {
                key: "id",
                recount: true,
            }),
            search: Some(scoped_search(caller_search.as_deref(), "id", own)),
        },
        Scope::Project => match body_project(&body, own, method == "POST") {
            Err(why) => Plan::Deny(why),
            Ok(body) => forward(body),
        },
        Scope::OwnSession => match params.session {
            Some(s) if s == who.session_id => forward(body),
            _ => Plan::Deny("another session"),
        },
        Scope::SessionInProject => {
            let id = params.session.unwrap_or_default();
            match gw.session_project(who, id).await {
                Ok(Some(p)) if p == own => forward(body),
                Ok(_) => Plan::Deny("a session outside the session's project"),
                Err(resp) => Plan::Answer(resp),
            }
        }
        Scope::AgentInProject => {
            let path = params.upstream_path(rule);
            match gw.lookup(&path, own).await {
                Answer::Object(a) if a.get("project_id").and_then(Value::as_str) == Some(own) => {
                    match (method, body_project(&body, own, false)) {
                        ("GET", _) => Plan::Answer(forward::json(&a)),
                        (_, Ok(body)) => forward(body),
                        (_, Err(why)) => Plan::Deny(why),
                    }
                }
                Answer::Object(_) => Plan::Deny("an agent of another project"),
                Answer::Refused(resp) => Plan::Answer(resp),
                Answer::Failed(resp) => Plan::Answer(resp),
            }
        }
        Scope::DeliveredCredential => {
            let id = params.credential.unwrap_or_default();
            if gw.facts.delivered_credentials(&who.session_id).contains(id) {
                forward(body)
            } else {
                Plan::Deny("a credential not delivered to this session")
            }
        }
    }
}

/// A JSON body's `project_id` must be the session's project; with `fill`,
/// an object without one gets it. An empty body passes unchanged.
fn body_project(body: &Bytes, own: &str, fill: bool) -> Result<Bytes, &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(body.clone());
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        // Not JSON: the API refuses it, and it names no project.
        return Ok(body.clone());
    };
    let Some(object) = value.as_object_mut() else {
        return Ok(body.clone());
    };
    match object.get("project_id") {
        Some(Value::String(p)) if p == own => Ok(body.clone()),
        Some(Value::Null) | None if !fill => Ok(body.clone()),
        Some(Value::Null) | None => {
            object.insert("project_id".into(), Value::from(own));
            Ok(Bytes::from(serde_json::to_vec(&value).unwrap_or_default()))
        }
        Some(_) => Err("a body naming another project"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_projects() {
        let b = |s: &str| Bytes::from(s.to_owned());
        assert!(body_project(&b(r#"{"project_id":"p"}"#), "p", false).is_ok());
        assert!(body_project(&b(r#"{"project_id":"q"}"#), "p", false).is_err());
        assert!(body_project(&b(r#"{"project_id":7}"#), "p", false).is_err());
        assert!(body_project(&b(""), "p", true).is_ok());
        let filled = body_project(&b(r#"{"name":"a"}"#), "p", true).unwrap_or_default();
        let v: Value = serde_json::from_slice(&filled).unwrap_or_default();
        assert_eq!(v["project_id"], "p");
    }
}
