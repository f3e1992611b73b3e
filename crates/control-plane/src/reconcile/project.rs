//! The project and project-settings reconcilers: a project the API knows
//! has its objects (`objects::project`: namespace, runner Secret,
//! project-manager Role and binding, creator's admin binding,
//! ProjectSettings) kept converged; a deleted project's namespace and group
//! access go (also when it was deleted while the control plane was down),
//! taking those objects with it; a project's group access is exactly what
//! its settings say — nothing for a project the API no longer knows.

use ambient_protocol::phase::Phase;
use ambient_protocol::v1::Project;

use super::{Controller, Done, PROJECT_WAIT, ReconcileError};
use crate::objects::build_project;
use crate::runtime::{GroupBinding, Role, RuntimeError};

impl Controller {
    /// A cached project is converged; one that is not: when the API
    /// confirms it gone (or we saw it deleted), its group access is revoked
    /// and its namespace removed once none of its sessions still runs.
    pub(super) async fn reconcile_project(&self, id: &str) -> Result<Done, ReconcileError> {
        if let Some(project) = self.projects.get(id) {
            return self.converge_project(&project).await;
        }
        if !self.projects.is_deleted(id) {
            // Found by the orphan sweep: only the API can say it is gone.
            match self.api.get_project(id).await {
                Ok(p) => {
                    self.projects.upsert(p);
                    return Ok(Done::Converged);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        // A live session would only bring the namespace back: wait until the
        // project's sessions have ended or are gone.
        let live = self.sessions.count_where(|s| {
            s.project_id.as_deref() == Some(id)
                && Phase::of_session(s.phase.as_deref()).is_ok_and(|p| !p.is_terminal())
        });
        if live > 0 {
            tracing::info!(project = %id, "project deleted; keeping its namespace while sessions still run");
            return Ok(Done::After(PROJECT_WAIT));
        }
        self.runtime.sync_group_access(id, &[]).await?;
        self.runtime.remove_project(id).await?;
        self.projects.forget_tombstone(id);
        Ok(Done::Converged)
    }

    /// A known project: its objects, then its group access. A namespace
    /// that is not ours (reserved, or someone else's) gets nothing, and
    /// retrying will not change that.
    async fn converge_project(&self, project: &Project) -> Result<Done, ReconcileError> {
        let id = crate::objects::project::project_id(project);
        let settings = self.settings.find(|s| s.project_id == id);
        let objects = build_project(&self.pod_config, project, settings.as_ref(), &self.manager);
        match self.runtime.provision_project(&objects).await {
            Ok(()) => {}
            Err(RuntimeError::Permanent(why)) => {
                tracing::warn!(project = %id, reason = %why, "project objects refused");
            }
            Err(e) => return Err(e.into()),
        }
        self.reconcile_access(id).await
    }

    /// Project settings changed or were deleted: their project's objects
    /// (its ProjectSettings) and access.
    pub(super) async fn reconcile_settings(&self, id: &str) -> Result<Done, ReconcileError> {
        let Some(settings) = self
            .settings
            .get(id)
            .or_else(|| self.settings.tombstone(id))
        else {
            return Ok(Done::Converged);
        };
        let done = if self.projects.get(&settings.project_id).is_some() {
            self.reconcile_project(&settings.project_id).await?
        } else {
            self.reconcile_access(&settings.project_id).await?
        };
        self.settings.forget_tombstone(id);
        Ok(done)
    }

    /// Makes a project's group RoleBindings exactly what its cached settings
    /// say; none when the project is not known to exist (so a deleted
    /// project's namespace is never created again for its bindings).
    pub(super) async fn reconcile_access(&self, project_id: &str) -> Result<Done, ReconcileError> {
        let wanted = self
            .settings
            .find(|s| s.project_id == project_id)
            .map(|s| group_bindings(s.group_access.as_deref().unwrap_or("")))
            .unwrap_or_default();
        let bindings = if wanted.is_empty() || self.known_project(project_id).await?.is_none() {
            Vec::new()
        } else {
            wanted
        };
        match self.runtime.sync_group_access(project_id, &bindings).await {
            // A namespace that is not ours (reserved, or someone else's):
            // no binding there, and retrying will not change that.
            Err(RuntimeError::Permanent(why)) => {
                tracing::warn!(project = %project_id, reason = %why, "group access refused");
                Ok(Done::Converged)
            }
            other => other.map(|()| Done::Converged).map_err(Into::into),
        }
    }
}

/// `group_access` (a JSON array of `{groupName, role}`) as bindings; invalid
/// entries are skipped with a warning.
pub fn group_bindings(group_access: &str) -> Vec<GroupBinding> {
    if group_access.trim().is_empty() {
        return Vec::new();
    }
    let Ok(serde_json::Value::Array(items)) = serde_json::from_str(group_access) else {
        tracing::warn!("group_access is not a JSON array; granting nothing");
        return Vec::new();
    };
    let mut out: Vec<GroupBinding> = items
        .iter()
        .filter_map(|item| {
            let group = item.get("groupName")?.as_str()?.trim();
            if group.is_empty() {
                tracing::warn!("skipping a group access entry without groupName");
                return None;
            }
            let role = item.get("role").and_then(|r| r.as_str()).unwrap_or("");
            Some(GroupBinding {
                group: group.to_owned(),
                role: Role::parse(role),
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_access_parsing() {
        let b = group_bindings(
            r#"[{"groupName":"devs","role":"Edit"},{"groupName":"ops","role":"ADMIN"},
                {"groupName":"x","role":"root"},{"role":"view"},{"groupName":"devs","role":"edit"},
                {"groupName":"y"}]"#,
        );
        let want = |group: &str, role| GroupBinding {
            group: group.into(),
            role,
        };
        assert_eq!(
            b,
            vec![
                want("devs", Role::Edit),
                want("ops", Role::Admin),
                // Unknown or missing roles get view, as the reference.
                want("x", Role::View),
                want("y", Role::View),
            ]
        );
        assert!(group_bindings("not json").is_empty());
        assert!(group_bindings("").is_empty());
    }
}
