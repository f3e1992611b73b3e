//! Versions of the stored data (`PRAGMA user_version`) and the upgrade of a
//! data directory written by an older devserver.
//!
//! - 0: project IDs were random; only a few columns were searchable.
//! - 2: the project ID is its name; every column of every resource is
//!   indexed for `search` and `orderBy`.
//!
//! Upgrading re-indexes every resource. A version-0 directory that holds a
//! project whose ID is not its name cannot be carried over without rewriting
//! the sessions, agents and settings that point at it, so the devserver
//! refuses to start on it rather than mix the two ID schemes.

use ambient_protocol::v1::{InboxMessage, ProjectSettings, Session};

use crate::model::{Agent, Credential, ProjectRecord, Role, RoleBinding};
use crate::store::{StoreError, Stored, Tx};

/// The version this devserver writes.
pub const VERSION: i64 = 2;

/// Brings a database at version `from` to [`VERSION`], or refuses.
pub(crate) fn upgrade(tx: &mut Tx<'_>, from: i64) -> Result<(), StoreError> {
    if from > VERSION {
        return Err(StoreError::Incompatible(format!(
            "the database was written by a newer ambient-devserver (data version {from}, this one reads up to {VERSION})"
        )));
    }
    let random = tx
        .rows::<ProjectRecord>()?
        .iter()
        .filter(|(id, r)| {
            r.project.as_ref().map(|p| p.name.as_str()) != Some(id.as_str()) || r.id() != id
        })
        .count();
    if random > 0 {
        return Err(StoreError::Incompatible(format!(
            "the data directory holds {random} project(s) with random IDs from an older ambient-devserver; project IDs are now their names and there is no automatic migration: move the data directory away (or delete it) and start again"
        )));
    }
    tx.reindex::<Session>()?;
    tx.reindex::<ProjectRecord>()?;
    tx.reindex::<ProjectSettings>()?;
    tx.reindex::<Agent>()?;
    tx.reindex::<Credential>()?;
    tx.reindex::<Role>()?;
    tx.reindex::<RoleBinding>()?;
    tx.reindex::<InboxMessage>()?;
    Ok(())
}
