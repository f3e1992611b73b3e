//! REST JSON ↔ `ambient.v1` messages: one function per resource.
//!
//! The REST form of a resource is its proto message with snake_case field
//! names, the `ObjectReference` metadata lifted to the top level (`id`,
//! `kind`, `href`, `created_at`, `updated_at`), timestamps as RFC 3339
//! strings, and absent optional fields omitted. gRPC answers with the message
//! itself and REST with the output of these functions, so the two wires
//! cannot disagree.

use ambient_protocol::v1::{
    CreateProjectRequest, CreateProjectSettingsRequest, CreateSessionRequest, InboxMessage,
    ObjectReference, ProjectSettings, Session, SessionMessage, UpdateProjectRequest,
    UpdateProjectSettingsRequest, UpdateSessionRequest, UpdateSessionStatusRequest,
};
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::model::{Agent, Credential, ProjectRecord, Role, RoleBinding};
use crate::service::{API_PREFIX, Page};
use crate::time::{parse_rfc3339, rfc3339};

/// Builds a JSON object, skipping absent optional fields.
struct Obj(Map<String, Value>);

impl Obj {
    fn meta(meta: Option<&ObjectReference>) -> Obj {
        let mut o = Obj(Map::new());
        let m = meta.cloned().unwrap_or_default();
        o.put("id", m.id);
        o.put("kind", m.kind);
        o.put("href", m.href);
        o.ts("created_at", m.created_at.as_ref());
        o.ts("updated_at", m.updated_at.as_ref());
        o
    }
    fn put(&mut self, key: &str, value: impl Serialize) {
        self.0.insert(
            key.to_owned(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
    }
    fn opt<T: Serialize>(&mut self, key: &str, value: &Option<T>) {
        if let Some(v) = value {
            self.put(key, v);
        }
    }
    fn ts(&mut self, key: &str, value: Option<&Timestamp>) {
        if let Some(t) = value {
            self.put(key, rfc3339(t));
        }
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// The REST form of a session.
pub fn session_json(s: &Session) -> Value {
    let mut o = Obj::meta(s.metadata.as_ref());
    o.put("name", &s.name);
    o.opt("repo_url", &s.repo_url);
    o.opt("prompt", &s.prompt);
    o.opt("created_by_user_id", &s.created_by_user_id);
    o.opt("assigned_user_id", &s.assigned_user_id);
    o.opt("workflow_id", &s.workflow_id);
    o.opt("repos", &s.repos);
    o.opt("timeout", &s.timeout);
    o.opt("llm_model", &s.llm_model);
    o.opt("llm_temperature", &s.llm_temperature);
    o.opt("llm_max_tokens", &s.llm_max_tokens);
    o.opt("parent_session_id", &s.parent_session_id);
    o.opt("bot_account_name", &s.bot_account_name);
    o.opt("resource_overrides", &s.resource_overrides);
    o.opt("environment_variables", &s.environment_variables);
    o.opt("labels", &s.labels);
    o.opt("annotations", &s.annotations);
    o.opt("project_id", &s.project_id);
    o.opt("phase", &s.phase);
    o.ts("start_time", s.start_time.as_ref());
    o.ts("completion_time", s.completion_time.as_ref());
    o.opt("sdk_session_id", &s.sdk_session_id);
    o.opt("sdk_restart_count", &s.sdk_restart_count);
    o.opt("conditions", &s.conditions);
    o.opt("reconciled_repos", &s.reconciled_repos);
    o.opt("reconciled_workflow", &s.reconciled_workflow);
    o.opt("kube_cr_name", &s.kube_cr_name);
    o.opt("kube_cr_uid", &s.kube_cr_uid);
    o.opt("kube_namespace", &s.kube_namespace);
    o.opt("agent_id", &s.agent_id);
    o.done()
}

/// The REST form of a project (the proto fields plus the REST-only `prompt`).
pub fn project_json(r: &ProjectRecord) -> Value {
    let p = r.project.clone().unwrap_or_default();
    let mut o = Obj::meta(p.metadata.as_ref());
    o.put("name", &p.name);
    o.opt("display_name", &p.display_name);
    o.opt("description", &p.description);
    o.opt("labels", &p.labels);
    o.opt("annotations", &p.annotations);
    o.opt("status", &p.status);
    o.opt("prompt", &r.prompt);
    o.done()
}

/// The REST form of project settings.
pub fn project_settings_json(s: &ProjectSettings) -> Value {
    let mut o = Obj::meta(s.metadata.as_ref());
    o.put("project_id", &s.project_id);
    o.opt("group_access", &s.group_access);
    o.opt("repositories", &s.repositories);
    o.done()
}

/// The REST form of a session message.
pub fn message_json(m: &SessionMessage) -> Value {
    let mut o = Obj(Map::new());
    o.put("id", &m.id);
    o.put("session_id", &m.session_id);
    o.put("seq", m.seq);
    o.put("event_type", &m.event_type);
    o.put("payload", &m.payload);
    o.ts("created_at", m.created_at.as_ref());
    o.done()
}

/// The REST form of an inbox message.
pub fn inbox_json(m: &InboxMessage) -> Value {
    let mut o = Obj(Map::new());
    o.put("id", &m.id);
    o.put("kind", "InboxMessage");
    o.put("agent_id", &m.agent_id);
    o.opt("from_agent_id", &m.from_agent_id);
    o.opt("from_name", &m.from_name);
    o.put("body", &m.body);
    o.opt("read", &m.read);
    o.ts("created_at", m.created_at.as_ref());
    o.ts("updated_at", m.updated_at.as_ref());
    o.done()
}

fn with_kind(value: Value, kind: &str, href: String) -> Value {
    match value {
        Value::Object(mut map) => {
            map.insert("kind".into(), Value::String(kind.into()));
            map.insert("href".into(), Value::String(href));
            Value::Object(map)
        }
        other => other,
    }
}

/// The REST form of an agent.
pub fn agent_json(a: &Agent) -> Value {
    let href = format!("{API_PREFIX}/projects/{}/agents/{}", a.project_id, a.id);
    with_kind(
        serde_json::to_value(a).unwrap_or(Value::Null),
        "Agent",
        href,
    )
}

/// The REST form of a credential: metadata only, never the token.
pub fn credential_json(c: &Credential) -> Value {
    let href = format!("{API_PREFIX}/credentials/{}", c.id);
    with_kind(
        serde_json::to_value(c).unwrap_or(Value::Null),
        "Credential",
        href,
    )
}

/// The REST form of a role.
pub fn role_json(r: &Role) -> Value {
    let href = format!("{API_PREFIX}/roles/{}", r.id);
    with_kind(serde_json::to_value(r).unwrap_or(Value::Null), "Role", href)
}

/// The REST form of a role binding.
pub fn role_binding_json(b: &RoleBinding) -> Value {
    let href = format!("{API_PREFIX}/role_bindings/{}", b.id);
    with_kind(
        serde_json::to_value(b).unwrap_or(Value::Null),
        "RoleBinding",
        href,
    )
}

/// The list envelope `{"kind": "<Kind>List", "page", "size", "total", "items"}`.
pub fn list_json(kind: &str, page: Page<Value>) -> Value {
    serde_json::json!({
        "kind": format!("{kind}List"),
        "page": page.page,
        "size": page.size,
        "total": page.total,
        "items": page.items,
    })
}

/// Writable session fields of a REST create or patch body (unknown fields ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SessionBody {
    name: Option<String>,
    repo_url: Option<String>,
    prompt: Option<String>,
    assigned_user_id: Option<String>,
    workflow_id: Option<String>,
    repos: Option<String>,
    timeout: Option<i32>,
    llm_model: Option<String>,
    llm_temperature: Option<f64>,
    llm_max_tokens: Option<i32>,
    parent_session_id: Option<String>,
    bot_account_name: Option<String>,
    resource_overrides: Option<String>,
    environment_variables: Option<String>,
    labels: Option<String>,
    annotations: Option<String>,
    project_id: Option<String>,
    /// REST-only on create: the agent this session runs.
    pub agent_id: Option<String>,
}

impl SessionBody {
    /// The create request (a missing `name` becomes empty and is refused later).
    pub fn into_create(self) -> CreateSessionRequest {
        CreateSessionRequest {
            name: self.name.unwrap_or_default(),
            repo_url: self.repo_url,
            prompt: self.prompt,
            // The caller's identity, set by the service.
            created_by_user_id: None,
            assigned_user_id: self.assigned_user_id,
            workflow_id: self.workflow_id,
            repos: self.repos,
            timeout: self.timeout,
            llm_model: self.llm_model,
            llm_temperature: self.llm_temperature,
            llm_max_tokens: self.llm_max_tokens,
            parent_session_id: self.parent_session_id,
            bot_account_name: self.bot_account_name,
            resource_overrides: self.resource_overrides,
            environment_variables: self.environment_variables,
            labels: self.labels,
            annotations: self.annotations,
            project_id: self.project_id,
        }
    }

    /// The update request for session `id` (a REST PATCH ignores `project_id`).
    pub fn into_update(self, id: &str) -> UpdateSessionRequest {
        UpdateSessionRequest {
            id: id.to_owned(),
            name: self.name,
            repo_url: self.repo_url,
            prompt: self.prompt,
            assigned_user_id: self.assigned_user_id,
            workflow_id: self.workflow_id,
            repos: self.repos,
            timeout: self.timeout,
            llm_model: self.llm_model,
            llm_temperature: self.llm_temperature,
            llm_max_tokens: self.llm_max_tokens,
            parent_session_id: self.parent_session_id,
            bot_account_name: self.bot_account_name,
            resource_overrides: self.resource_overrides,
            environment_variables: self.environment_variables,
            labels: self.labels,
            annotations: self.annotations,
            project_id: None,
        }
    }
}

/// The status subset of `PATCH /sessions/{id}/status`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StatusBody {
    phase: Option<String>,
    start_time: Option<String>,
    completion_time: Option<String>,
    sdk_session_id: Option<String>,
    sdk_restart_count: Option<i32>,
    conditions: Option<String>,
    reconciled_repos: Option<String>,
    reconciled_workflow: Option<String>,
    kube_cr_uid: Option<String>,
    kube_namespace: Option<String>,
}

fn timestamp(field: &str, value: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    value
        .map(|s| {
            parse_rfc3339(&s)
                .ok_or_else(|| ApiError::invalid(format!("{field} must be an RFC 3339 date-time")))
        })
        .transpose()
}

impl StatusBody {
    /// The status update request for session `id`.
    pub fn into_request(self, id: &str) -> Result<UpdateSessionStatusRequest, ApiError> {
        Ok(UpdateSessionStatusRequest {
            id: id.to_owned(),
            phase: self.phase,
            start_time: timestamp("start_time", self.start_time)?,
            completion_time: timestamp("completion_time", self.completion_time)?,
            sdk_session_id: self.sdk_session_id,
            sdk_restart_count: self.sdk_restart_count,
            conditions: self.conditions,
            reconciled_repos: self.reconciled_repos,
            reconciled_workflow: self.reconciled_workflow,
            kube_cr_uid: self.kube_cr_uid,
            kube_namespace: self.kube_namespace,
        })
    }
}

/// A project create or patch body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProjectBody {
    name: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    labels: Option<String>,
    annotations: Option<String>,
    status: Option<String>,
    /// REST-only: the project's prompt.
    pub prompt: Option<String>,
}

impl ProjectBody {
    /// The create request.
    pub fn into_create(self) -> CreateProjectRequest {
        CreateProjectRequest {
            name: self.name.unwrap_or_default(),
            display_name: self.display_name,
            description: self.description,
            labels: self.labels,
            annotations: self.annotations,
        }
    }

    /// The update request for project `id`.
    pub fn into_update(self, id: &str) -> UpdateProjectRequest {
        UpdateProjectRequest {
            id: id.to_owned(),
            name: self.name,
            display_name: self.display_name,
            description: self.description,
            labels: self.labels,
            annotations: self.annotations,
            status: self.status,
        }
    }
}

/// A session message POST body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MessageBody {
    /// The event type: absent or `user`.
    pub event_type: Option<String>,
    /// The payload.
    pub payload: String,
}

/// A project settings create or patch body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProjectSettingsBody {
    project_id: Option<String>,
    group_access: Option<String>,
    repositories: Option<String>,
}

impl ProjectSettingsBody {
    /// The create request.
    pub fn into_create(self) -> CreateProjectSettingsRequest {
        CreateProjectSettingsRequest {
            project_id: self.project_id.unwrap_or_default(),
            group_access: self.group_access,
            repositories: self.repositories,
        }
    }

    /// The update request for settings `id`.
    pub fn into_update(self, id: &str) -> UpdateProjectSettingsRequest {
        UpdateProjectSettingsRequest {
            id: id.to_owned(),
            project_id: self.project_id,
            group_access: self.group_access,
            repositories: self.repositories,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_json_lifts_metadata_and_covers_every_field() {
        let at = Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        let s = Session {
            metadata: Some(ObjectReference {
                id: "abc".into(),
                created_at: Some(at),
                updated_at: Some(at),
                kind: "Session".into(),
                href: "/api/ambient/v1/sessions/abc".into(),
            }),
            name: "n".into(),
            repo_url: Some("r".into()),
            prompt: Some("p".into()),
            created_by_user_id: Some("u".into()),
            assigned_user_id: Some("u".into()),
            workflow_id: Some("w".into()),
            repos: Some("[]".into()),
            timeout: Some(1),
            llm_model: Some("m".into()),
            llm_temperature: Some(0.5),
            llm_max_tokens: Some(2),
            parent_session_id: Some("x".into()),
            bot_account_name: Some("b".into()),
            resource_overrides: Some("{}".into()),
            environment_variables: Some("{}".into()),
            labels: Some("{}".into()),
            annotations: Some("{}".into()),
            project_id: Some("p".into()),
            phase: Some("Running".into()),
            start_time: Some(at),
            completion_time: Some(at),
            sdk_session_id: Some("s".into()),
            sdk_restart_count: Some(3),
            conditions: Some("[]".into()),
            reconciled_repos: Some("[]".into()),
            reconciled_workflow: Some("{}".into()),
            kube_cr_name: Some("k".into()),
            kube_cr_uid: Some("k".into()),
            kube_namespace: Some("k".into()),
            agent_id: Some("a".into()),
        };
        let v = session_json(&s);
        let obj = v.as_object().unwrap_or_else(|| panic!("not an object"));
        // 30 proto fields besides metadata (2..=32 without the reserved 9) + 5 lifted ones.
        assert_eq!(obj.len(), 35, "{v}");
        assert_eq!(v["id"], "abc");
        assert_eq!(v["kind"], "Session");
        assert_eq!(v["created_at"], "2023-11-14T22:13:20Z");
        assert_eq!(v["llm_temperature"], 0.5);
        assert_eq!(v["sdk_restart_count"], 3);
        assert!(v.get("metadata").is_none());

        let empty = session_json(&Session::default());
        assert!(empty.get("phase").is_none(), "absent optionals are omitted");
    }

    #[test]
    fn credential_json_never_has_the_token() {
        let c = Credential {
            id: "c1".into(),
            created_at: Timestamp::default(),
            updated_at: Timestamp::default(),
            name: "gh".into(),
            provider: "github".into(),
            url: None,
            email: None,
            description: None,
            labels: None,
            annotations: None,
            token: "ghp_secret".into(),
        };
        let v = credential_json(&c);
        assert!(!v.to_string().contains("ghp_secret"));
        assert_eq!(v["kind"], "Credential");
        assert_eq!(v["href"], "/api/ambient/v1/credentials/c1");
    }
}
