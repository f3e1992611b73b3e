//! Stored resources that have no `ambient.v1` message of their own (REST
//! only: agents, credentials, roles, role bindings), the extra REST-only
//! fields of projects, and the writable fields of REST create/patch bodies.

use ambient_protocol::Secret;
use ambient_protocol::v1::Project;
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};

/// A project as stored: the `ambient.v1` message plus the REST-only `prompt`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProjectRecord {
    /// The wire message (gRPC answers with exactly this).
    #[prost(message, optional, tag = "1")]
    pub project: Option<Project>,
    /// REST-only: the project's default prompt.
    #[prost(string, optional, tag = "2")]
    pub prompt: Option<String>,
}

/// A project agent (REST `/projects/{pid}/agents`). Its serde form is its
/// REST JSON (plus `kind` and `href`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    /// ID.
    pub id: String,
    /// Creation time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub created_at: Timestamp,
    /// Last update time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub updated_at: Timestamp,
    /// The project this agent belongs to.
    pub project_id: String,
    /// The agent this one was derived from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_agent_id: Option<String>,
    /// Who created it (the caller's identity).
    #[serde(default)]
    pub owner_user_id: String,
    /// Name.
    pub name: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The agent's prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Repository URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo_url: Option<String>,
    /// Workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// LLM model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_model: Option<String>,
    /// LLM temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_temperature: Option<f64>,
    /// LLM max tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_max_tokens: Option<i32>,
    /// Bot account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_account_name: Option<String>,
    /// Resource overrides (JSON as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_overrides: Option<String>,
    /// Environment variables (JSON object as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<String>,
    /// Labels (JSON object as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Annotations (JSON object as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<String>,
    /// The session this agent currently runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_session_id: Option<String>,
}

/// A credential's metadata. The token is kept apart ([`Credential::token`] is
/// not serialised), so the REST form of a credential can never carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    /// ID.
    pub id: String,
    /// Creation time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub created_at: Timestamp,
    /// Last update time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub updated_at: Timestamp,
    /// Name.
    pub name: String,
    /// The provider, any string (the reference does not validate it;
    /// [`ambient_protocol::provider::Provider`] lists those the platform uses).
    pub provider: String,
    /// Service URL (GitLab host, Jira URL, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Account e-mail (Jira).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Labels (JSON object as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Annotations (JSON object as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<String>,
    /// The secret itself: write-only on the REST wire, read back only through
    /// `GET /credentials/{id}/token`.
    #[serde(skip)]
    pub token: Secret,
}

/// The stored form of a credential: metadata plus token.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredCredential {
    #[serde(flatten)]
    pub(crate) meta: Credential,
    pub(crate) token: Secret,
}

mod stored;

/// Writable fields of an agent, as given on REST create or patch (all optional;
/// unknown JSON fields, `project_id` and `owner_user_id` among them, are
/// ignored: the project comes from the path, the owner from the caller).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AgentFields {
    /// Name (required on create).
    pub name: Option<String>,
    /// Parent agent.
    pub parent_agent_id: Option<String>,
    /// Workflow.
    pub workflow_id: Option<String>,
    /// Bot account.
    pub bot_account_name: Option<String>,
    /// Resource overrides.
    pub resource_overrides: Option<String>,
    /// Environment variables.
    pub environment_variables: Option<String>,
    /// The session this agent currently runs.
    pub current_session_id: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Prompt.
    pub prompt: Option<String>,
    /// Repository URL.
    pub repo_url: Option<String>,
    /// LLM model.
    pub llm_model: Option<String>,
    /// LLM temperature.
    pub llm_temperature: Option<f64>,
    /// LLM max tokens.
    pub llm_max_tokens: Option<i32>,
    /// Labels (JSON object as string; replaces the stored value on update).
    pub labels: Option<String>,
    /// Annotations (JSON object as string; replaces the stored value on update).
    pub annotations: Option<String>,
}

/// Writable fields of a credential, as given on REST create or patch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CredentialFields {
    /// Name (required on create).
    pub name: Option<String>,
    /// Provider (required on create; any non-empty string).
    pub provider: Option<String>,
    /// The secret (write-only).
    pub token: Option<Secret>,
    /// Service URL.
    pub url: Option<String>,
    /// Account e-mail.
    pub email: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Labels (JSON object as string; replaces the stored value on update).
    pub labels: Option<String>,
    /// Annotations (JSON object as string; replaces the stored value on update).
    pub annotations: Option<String>,
}

/// Scopes a role binding may have.
pub const SCOPES: &[&str] = &["global", "project", "agent", "session", "credential"];

/// A role (REST `/roles`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// ID.
    pub id: String,
    /// Creation time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub created_at: Timestamp,
    /// Last update time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub updated_at: Timestamp,
    /// Unique name, e.g. `credential:token-reader`.
    pub name: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Permissions (a JSON array serialised as a string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    /// Seeded by the server.
    #[serde(default)]
    pub built_in: bool,
}

/// Writable fields of a role.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoleFields {
    /// Name (required, unique).
    pub name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Permissions.
    pub permissions: Option<String>,
}

/// A role binding (REST `/role_bindings`): who holds which role where.
/// Not enforced by the devserver; kept and searched so clients that read
/// them (the control plane's credential resolution) run against real data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleBinding {
    /// ID.
    pub id: String,
    /// Creation time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub created_at: Timestamp,
    /// Last update time.
    #[serde(with = "crate::time::serde_rfc3339")]
    pub updated_at: Timestamp,
    /// The role, by ID (or, as the reference CLI writes it, by name).
    pub role_id: String,
    /// One of [`SCOPES`].
    pub scope: String,
    /// User.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
}

/// Writable fields of a role binding.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoleBindingFields {
    /// Role (required on create).
    pub role_id: Option<String>,
    /// Scope (required on create).
    pub scope: Option<String>,
    /// User.
    pub user_id: Option<String>,
    /// Project.
    pub project_id: Option<String>,
    /// Agent.
    pub agent_id: Option<String>,
    /// Session.
    pub session_id: Option<String>,
    /// Credential.
    pub credential_id: Option<String>,
}

/// A REST inbox POST body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InboxFields {
    /// Sender agent.
    pub from_agent_id: Option<String>,
    /// Sender's display name.
    pub from_name: Option<String>,
    /// The text (required).
    pub body: Option<String>,
}
