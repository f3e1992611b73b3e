//! How each resource is kept in the `resources` table: its encoding, and the
//! columns `search` and `orderBy` may name (every field of its REST form).

use ambient_protocol::v1::{InboxMessage, ProjectSettings, Session};
use prost::Message as _;

use super::{Agent, Credential, ProjectRecord, Role, RoleBinding, StoredCredential};
use crate::mapping;
use crate::store::{StoreError, Stored, decode_json, decode_prost, encode_json};

fn meta_id(m: Option<&ambient_protocol::v1::ObjectReference>) -> &str {
    m.map(|m| m.id.as_str()).unwrap_or_default()
}

/// A prost message stored as its encoding.
macro_rules! prost_stored {
    ($ty:ty, $kind:literal, $columns:expr, |$s:ident| $id:expr, $json:path) => {
        impl Stored for $ty {
            const KIND: &'static str = $kind;
            const COLUMNS: &'static [&'static str] = $columns;
            fn id(&self) -> &str {
                let $s = self;
                $id
            }
            fn encode(&self) -> Result<Vec<u8>, StoreError> {
                Ok(self.encode_to_vec())
            }
            fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
                decode_prost(Self::KIND, id, bytes)
            }
            fn json(&self) -> serde_json::Value {
                $json(self)
            }
        }
    };
}

/// A serde struct with an `id` field stored as JSON.
macro_rules! json_stored {
    ($ty:ty, $kind:literal, $columns:expr) => {
        impl Stored for $ty {
            const KIND: &'static str = $kind;
            const COLUMNS: &'static [&'static str] = $columns;
            fn id(&self) -> &str {
                &self.id
            }
            fn encode(&self) -> Result<Vec<u8>, StoreError> {
                encode_json(Self::KIND, &self.id, self)
            }
            fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
                decode_json(Self::KIND, id, bytes)
            }
            fn json(&self) -> serde_json::Value {
                serde_json::to_value(self).unwrap_or_default()
            }
        }
    };
}

prost_stored!(
    Session,
    "Session",
    &[
        "id",
        "created_at",
        "updated_at",
        "name",
        "repo_url",
        "prompt",
        "created_by_user_id",
        "assigned_user_id",
        "workflow_id",
        "repos",
        "timeout",
        "llm_model",
        "llm_temperature",
        "llm_max_tokens",
        "parent_session_id",
        "bot_account_name",
        "resource_overrides",
        "environment_variables",
        "labels",
        "annotations",
        "project_id",
        "phase",
        "start_time",
        "completion_time",
        "sdk_session_id",
        "sdk_restart_count",
        "conditions",
        "reconciled_repos",
        "reconciled_workflow",
        "kube_cr_name",
        "kube_cr_uid",
        "kube_namespace",
        "agent_id",
    ],
    |s| meta_id(s.metadata.as_ref()),
    mapping::session_json
);

prost_stored!(
    ProjectRecord,
    "Project",
    &[
        "id",
        "created_at",
        "updated_at",
        "name",
        "display_name",
        "description",
        "labels",
        "annotations",
        "status",
        "prompt",
    ],
    |r| meta_id(r.project.as_ref().and_then(|p| p.metadata.as_ref())),
    mapping::project_json
);

prost_stored!(
    ProjectSettings,
    "ProjectSettings",
    &[
        "id",
        "created_at",
        "updated_at",
        "project_id",
        "group_access",
        "repositories",
    ],
    |s| meta_id(s.metadata.as_ref()),
    mapping::project_settings_json
);

prost_stored!(
    InboxMessage,
    "InboxMessage",
    &[
        "id",
        "created_at",
        "updated_at",
        "agent_id",
        "from_agent_id",
        "from_name",
        "body",
        "read",
    ],
    |m| m.id.as_str(),
    mapping::inbox_json
);

json_stored!(
    Agent,
    "Agent",
    &[
        "id",
        "created_at",
        "updated_at",
        "project_id",
        "parent_agent_id",
        "owner_user_id",
        "name",
        "display_name",
        "description",
        "prompt",
        "repo_url",
        "workflow_id",
        "llm_model",
        "llm_temperature",
        "llm_max_tokens",
        "bot_account_name",
        "resource_overrides",
        "environment_variables",
        "labels",
        "annotations",
        "current_session_id",
    ]
);

json_stored!(
    Role,
    "Role",
    &[
        "id",
        "created_at",
        "updated_at",
        "name",
        "display_name",
        "description",
        "permissions",
        "built_in",
    ]
);

json_stored!(
    RoleBinding,
    "RoleBinding",
    &[
        "id",
        "created_at",
        "updated_at",
        "role_id",
        "scope",
        "user_id",
        "project_id",
        "agent_id",
        "session_id",
        "credential_id",
    ]
);

impl Stored for Credential {
    const KIND: &'static str = "Credential";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "created_at",
        "updated_at",
        "name",
        "provider",
        "url",
        "email",
        "description",
        "labels",
        "annotations",
    ];
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
    /// Metadata only: the token is never indexed.
    fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
