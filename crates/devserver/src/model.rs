//! Stored resources that have no `ambient.v1` message of their own (REST only),
//! and the extra REST-only fields of projects.

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
    /// LLM model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_model: Option<String>,
    /// LLM temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_temperature: Option<f64>,
    /// LLM max tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_max_tokens: Option<i32>,
    /// Labels (JSON object as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Annotations (JSON object as string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<String>,
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
    /// A provider wire string ([`ambient_protocol::provider::Provider`]).
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

mod stored {
    use ambient_protocol::v1::{ProjectSettings, Session};
    use prost::Message as _;

    use super::{Agent, Credential, ProjectRecord, StoredCredential};
    use crate::store::{StoreError, Stored, decode_json, decode_prost, encode_json};

    fn meta_id(m: Option<&ambient_protocol::v1::ObjectReference>) -> &str {
        m.map(|m| m.id.as_str()).unwrap_or_default()
    }

    impl Stored for Session {
        const KIND: &'static str = "Session";
        const SEARCH_FIELDS: &'static [&'static str] =
            &["id", "name", "project_id", "phase", "agent_id"];
        fn id(&self) -> &str {
            meta_id(self.metadata.as_ref())
        }
        fn encode(&self) -> Result<Vec<u8>, StoreError> {
            Ok(self.encode_to_vec())
        }
        fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
            decode_prost(Self::KIND, id, bytes)
        }
        fn field(&self, name: &str) -> String {
            match name {
                "id" => self.id().to_owned(),
                "name" => self.name.clone(),
                "project_id" => self.project_id.clone().unwrap_or_default(),
                "phase" => self.phase.clone().unwrap_or_default(),
                "agent_id" => self.agent_id.clone().unwrap_or_default(),
                _ => String::new(),
            }
        }
    }

    impl Stored for ProjectRecord {
        const KIND: &'static str = "Project";
        const SEARCH_FIELDS: &'static [&'static str] = &["id", "name"];
        fn id(&self) -> &str {
            meta_id(self.project.as_ref().and_then(|p| p.metadata.as_ref()))
        }
        fn encode(&self) -> Result<Vec<u8>, StoreError> {
            Ok(self.encode_to_vec())
        }
        fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
            decode_prost(Self::KIND, id, bytes)
        }
        fn field(&self, name: &str) -> String {
            match name {
                "id" => self.id().to_owned(),
                "name" => self
                    .project
                    .as_ref()
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            }
        }
    }

    impl Stored for ProjectSettings {
        const KIND: &'static str = "ProjectSettings";
        const SEARCH_FIELDS: &'static [&'static str] = &["id", "project_id"];
        fn id(&self) -> &str {
            meta_id(self.metadata.as_ref())
        }
        fn encode(&self) -> Result<Vec<u8>, StoreError> {
            Ok(self.encode_to_vec())
        }
        fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
            decode_prost(Self::KIND, id, bytes)
        }
        fn field(&self, name: &str) -> String {
            match name {
                "id" => self.id().to_owned(),
                "project_id" => self.project_id.clone(),
                _ => String::new(),
            }
        }
    }

    impl Stored for Agent {
        const KIND: &'static str = "Agent";
        const SEARCH_FIELDS: &'static [&'static str] = &["id", "name", "project_id"];
        fn id(&self) -> &str {
            &self.id
        }
        fn encode(&self) -> Result<Vec<u8>, StoreError> {
            encode_json(Self::KIND, &self.id, self)
        }
        fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
            decode_json(Self::KIND, id, bytes)
        }
        fn field(&self, name: &str) -> String {
            match name {
                "id" => self.id.clone(),
                "name" => self.name.clone(),
                "project_id" => self.project_id.clone(),
                _ => String::new(),
            }
        }
    }

    impl Stored for Credential {
        const KIND: &'static str = "Credential";
        const SEARCH_FIELDS: &'static [&'static str] = &["id", "name", "provider"];
        fn id(&self) -> &str {
            &self.id
        }
        fn encode(&self) -> Result<Vec<u8>, StoreError> {
            let stored = StoredCredential {
                meta: self.clone(),
                token: self.token.clone(),
            };
            encode_json(Self::KIND, &self.id, &stored)
        }
        fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
            let stored: StoredCredential = decode_json(Self::KIND, id, bytes)?;
            Ok(Credential {
                token: stored.token,
                ..stored.meta
            })
        }
        fn field(&self, name: &str) -> String {
            match name {
                "id" => self.id.clone(),
                "name" => self.name.clone(),
                "provider" => self.provider.clone(),
                _ => String::new(),
            }
        }
    }
}

/// Writable fields of an agent, as given on REST create or patch (all optional;
/// unknown JSON fields are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AgentFields {
    /// Project (must match the path's project).
    pub project_id: Option<String>,
    /// Name (required on create).
    pub name: Option<String>,
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
    /// Labels (JSON object as string; merge patch on update).
    pub labels: Option<String>,
    /// Annotations (JSON object as string; merge patch on update).
    pub annotations: Option<String>,
}

/// Writable fields of a credential, as given on REST create or patch.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CredentialFields {
    /// Name (required on create).
    pub name: Option<String>,
    /// Provider (required on create; a [`ambient_protocol::provider::Provider`] string).
    pub provider: Option<String>,
    /// The secret (write-only).
    pub token: Option<Secret>,
    /// Service URL.
    pub url: Option<String>,
    /// Account e-mail.
    pub email: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Labels (JSON object as string; merge patch on update).
    pub labels: Option<String>,
    /// Annotations (JSON object as string; merge patch on update).
    pub annotations: Option<String>,
}
