//! Credentials: metadata plus a write-only token.

use ambient_protocol::Secret;

use super::rbac::{CREDENTIAL_OWNER, owner_binding};
use super::{Api, Caller, ListQuery, Page, existing, rename, replace_json_object, required, set};
use crate::error::ApiError;
use crate::ids::new_id;
use crate::labels;
use crate::model::{Credential, CredentialFields, RoleBindingFields};
use crate::store::Stored;
use crate::time::now;

impl Api {
    /// Creates a credential (`name` and `provider` required; the provider
    /// is any string, as on the reference) and the caller's
    /// `credential:owner` binding.
    pub async fn create_credential(
        &self,
        caller: &Caller,
        f: CredentialFields,
    ) -> Result<Credential, ApiError> {
        let name = required("name", f.name)?;
        let provider = required("provider", f.provider)?;
        let owner = caller.0.clone();
        let labels = labels::normalize("labels", f.labels)?;
        let annotations = labels::normalize("annotations", f.annotations)?;
        self.store
            .write(move |tx| {
                let at = now();
                let credential = Credential {
                    id: new_id()?,
                    created_at: at,
                    updated_at: at,
                    name,
                    provider,
                    url: f.url,
                    email: f.email,
                    description: f.description,
                    labels,
                    annotations,
                    token: f.token.unwrap_or_default(),
                };
                tx.put(&credential)?;
                owner_binding(
                    tx,
                    CREDENTIAL_OWNER,
                    &owner,
                    RoleBindingFields {
                        scope: Some("credential".into()),
                        credential_id: Some(credential.id.clone()),
                        ..RoleBindingFields::default()
                    },
                )?;
                Ok(credential)
            })
            .await
    }

    /// A credential (its token is only in [`Credential::token`], never serialised).
    pub async fn get_credential(&self, id: &str) -> Result<Credential, ApiError> {
        self.get(id).await
    }

    /// Lists credentials.
    pub async fn list_credentials(&self, query: &ListQuery) -> Result<Page<Credential>, ApiError> {
        self.list(query, None).await
    }

    /// Updates the fields given (a new `token` rotates the secret).
    pub async fn update_credential(
        &self,
        id: &str,
        f: CredentialFields,
    ) -> Result<Credential, ApiError> {
        let provider = f
            .provider
            .map(|p| required("provider", Some(p)))
            .transpose()?;
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                let mut c: Credential = existing::<Credential>(tx, &id)?;
                rename(&mut c.name, "name", f.name)?;
                if let Some(p) = provider {
                    c.provider = p;
                }
                if let Some(t) = f.token {
                    c.token = t;
                }
                set(&mut c.url, f.url);
                set(&mut c.email, f.email);
                set(&mut c.description, f.description);
                replace_json_object(&mut c.labels, "labels", f.labels)?;
                replace_json_object(&mut c.annotations, "annotations", f.annotations)?;
                c.updated_at = now();
                tx.put(&c)?;
                Ok(c)
            })
            .await
    }

    /// Deletes a credential.
    pub async fn delete_credential(&self, id: &str) -> Result<(), ApiError> {
        let id = id.to_owned();
        self.store
            .write(move |tx| {
                if !tx.delete::<Credential>(&id)? {
                    return Err(ApiError::not_found(Credential::KIND, id));
                }
                Ok(())
            })
            .await
    }

    /// The token of a credential, with its provider.
    pub async fn credential_token(&self, id: &str) -> Result<(String, Secret), ApiError> {
        let c = self.get_credential(id).await?;
        Ok((c.provider, c.token))
    }
}
