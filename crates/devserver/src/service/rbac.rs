//! Roles and role bindings. The devserver keeps and searches them (the
//! control plane resolves a session's credentials from them) but does not
//! enforce them: every valid token may do everything.

use super::{Api, ListQuery, Page, existing, required, set};
use crate::error::ApiError;
use crate::ids::new_id;
use crate::model::{Role, RoleBinding, RoleBindingFields, RoleFields, SCOPES};
use crate::search::Expr;
use crate::store::{Stored, Tx};
use crate::time::now;

/// The role a credential's creator gets.
pub const CREDENTIAL_OWNER: &str = "credential:owner";
/// The role a project's creator gets.
pub const PROJECT_OWNER: &str = "project:owner";

/// Roles every devserver has: `(name, description)`.
pub const BUILT_IN_ROLES: &[(&str, &str)] = &[
    (CREDENTIAL_OWNER, "Manages a credential and reads its token"),
    (
        "credential:token-reader",
        "Reads a credential's token (GET /credentials/{id}/token)",
    ),
    (
        "credential:viewer",
        "Sees a credential; bound to a project, injects it into the project's sessions",
    ),
    (PROJECT_OWNER, "Owns a project"),
];

fn role_named(tx: &Tx<'_>, name: &str) -> Result<Option<Role>, ApiError> {
    Ok(tx
        .all::<Role>(Some(&Expr::eq("name", name)))?
        .into_iter()
        .next())
}

fn check_scope(scope: &str) -> Result<(), ApiError> {
    if SCOPES.contains(&scope) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "scope must be one of {}",
            SCOPES.join(", ")
        )))
    }
}

fn put_binding(tx: &mut Tx<'_>, f: RoleBindingFields) -> Result<RoleBinding, ApiError> {
    let role_id = required("role_id", f.role_id)?;
    let scope = required("scope", f.scope)?;
    check_scope(&scope)?;
    let at = now();
    let binding = RoleBinding {
        id: new_id()?,
        created_at: at,
        updated_at: at,
        role_id,
        scope,
        user_id: f.user_id,
        project_id: f.project_id,
        agent_id: f.agent_id,
        session_id: f.session_id,
        credential_id: f.credential_id,
    };
    tx.put(&binding)?;
    Ok(binding)
}

/// Binds `user` to the built-in role `role` (by its ID) with the scope and
/// target in `target`, as the reference does for whoever creates a project
/// or a credential.
pub(super) fn owner_binding(
    tx: &mut Tx<'_>,
    role: &str,
    user: &str,
    target: RoleBindingFields,
) -> Result<(), ApiError> {
    let role = role_named(tx, role)?.ok_or_else(|| ApiError::not_found(Role::KIND, role))?;
    put_binding(
        tx,
        RoleBindingFields {
            role_id: Some(role.id),
            user_id: Some(user.to_owned()),
            ..target
        },
    )?;
    Ok(())
}

impl Api {
    /// Creates the [`BUILT_IN_ROLES`] that do not exist yet.
    pub async fn seed_roles(&self) -> Result<(), ApiError> {
        self.store
            .write(|tx| {
                for (name, description) in BUILT_IN_ROLES {
                    if role_named(tx, name)?.is_none() {
                        let at = now();
                        tx.put(&Role {
                            id: new_id()?,
                            created_at: at,
                            updated_at: at,
                            name: (*name).to_owned(),
                            display_name: None,
                            description: Some((*description).to_owned()),
                            permissions: None,
                            built_in: true,
                        })?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// Creates a role; its name must be unique.
    pub async fn create_role(&self, f: RoleFields) -> Result<Role, ApiError> {
        let name = required("name", f.name)?;
        self.store
            .write(move |tx| {
                if role_named(tx, &name)?.is_some() {
                    return Err(ApiError::Conflict(format!("role {name:?} already exists")));
                }
                let at = now();
                let role = Role {
                    id: new_id()?,
                    created_at: at,
                    updated_at: at,
                    name,
                    display_name: f.display_name,
                    description: f.description,
                    permissions: f.permissions,
                    built_in: false,
                };
                tx.put(&role)?;
                Ok(role)
            })
            .await
    }

    /// A role by ID.
    pub async fn get_role(&self, id: &str) -> Result<Role, ApiError> {
        self.get(id).await
    }

    /// Lists roles.
    pub async fn list_roles(&self, query: &ListQuery) -> Result<Page<Role>, ApiError> {
        self.list(query, None).await
    }

    /// Creates a role binding (`role_id` and a known `scope` required).
    pub async fn create_role_binding(&self, f: RoleBindingFields) -> Result<RoleBinding, ApiError> {
        self.store.write(move |tx| put_binding(tx, f)).await
    }

    /// A role binding by ID.
    pub async fn get_role_binding(&self, id: &str) -> Result<RoleBinding, ApiError> {
        self.get(id).await
    }

    /// Lists role bindings (searchable on every field).
    pub async fn list_role_bindings(
        &self,
        query: &ListQuery,
    ) -> Result<Page<RoleBinding>, ApiError> {
        self.list(query, None).await
    }

    /// Updates the fields given.
    pub async fn update_role_binding(
        &self,
        id: &str,
        f: RoleBindingFields,
    ) -> Result<RoleBinding, ApiError> {
        if let Some(scope) = f.scope.as_deref() {
            check_scope(scope)?;
        }
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let mut b: RoleBinding = existing(tx, &id)?;
                if let Some(role_id) = f.role_id {
                    b.role_id = required("role_id", Some(role_id))?;
                }
                if let Some(scope) = f.scope {
                    b.scope = scope;
                }
                set(&mut b.user_id, f.user_id);
                set(&mut b.project_id, f.project_id);
                set(&mut b.agent_id, f.agent_id);
                set(&mut b.session_id, f.session_id);
                set(&mut b.credential_id, f.credential_id);
                b.updated_at = now();
                tx.put(&b)?;
                Ok(b)
            })
            .await
    }

    /// Deletes a role binding.
    pub async fn delete_role_binding(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                if !tx.delete::<RoleBinding>(&id)? {
                    return Err(ApiError::not_found(RoleBinding::KIND, id));
                }
                Ok(())
            })
            .await
    }
}
