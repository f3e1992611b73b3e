//! The operations both wires share: validation, phase transitions, scoping,
//! pagination, search, watches. REST and gRPC are thin translations onto
//! [`Api`], so they cannot disagree. One submodule per resource family.

use ambient_protocol::v1::{EventType, ObjectReference};
use prost_types::Timestamp;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::events::{Event, Resource, ResourceEvent};
use crate::search::{self, Expr};
use crate::store::{Store, Stored};
use crate::time::now;

mod agents;
mod credentials;
mod messages;
mod projects;
mod rbac;
mod sessions;

pub use messages::{Speaker, USER};
pub use projects::validate_project_name;
pub use rbac::{BUILT_IN_ROLES, CREDENTIAL_OWNER, PROJECT_OWNER};
pub use sessions::is_safe_value;

/// REST path prefix; `href`s are built on it.
pub const API_PREFIX: &str = "/api/ambient/v1";
/// Page size when none (or a non-positive one) is asked for.
pub const DEFAULT_PAGE_SIZE: i64 = 100;
/// Largest page size served.
pub const MAX_PAGE_SIZE: i64 = 10_000;

/// Who is calling: the name of the token they presented (wire.md §2:
/// `created_by_user_id` and owners come from it, never from a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Page number, from 1.
    pub page: i32,
    /// Number of items on this page.
    pub size: i32,
    /// Number of matching items over all pages.
    pub total: i32,
}

impl<T> Page<T> {
    /// Maps the items, keeping the counts.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page: self.page,
            size: self.size,
            total: self.total,
        }
    }
}

/// What to list: page (from 1), size, and optional `search` and `orderBy`.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Page number (from 1; values below 1 mean 1).
    pub page: Option<i64>,
    /// Page size (values below 1 mean [`DEFAULT_PAGE_SIZE`]; capped at [`MAX_PAGE_SIZE`]).
    pub size: Option<i64>,
    /// The `search` filter (wire.md §2).
    pub search: Option<String>,
    /// The `orderBy` list (wire.md §2).
    pub order_by: Option<String>,
}

impl ListQuery {
    /// A page/size query without search (the gRPC `List*` requests).
    pub fn page(page: i32, size: i32) -> Self {
        Self {
            page: Some(page.into()),
            size: Some(size.into()),
            ..Self::default()
        }
    }

    fn bounds(&self) -> (i64, i64) {
        let page = self.page.unwrap_or(1).clamp(1, i64::from(i32::MAX));
        let size = match self.size {
            Some(s) if s >= 1 => s.min(MAX_PAGE_SIZE),
            _ => DEFAULT_PAGE_SIZE,
        };
        (page, size)
    }

    fn filter<R: Stored>(&self) -> Result<Option<Expr>, ApiError> {
        search::parse(self.search.as_deref().unwrap_or(""), R::COLUMNS)
            .map_err(|e| ApiError::invalid(e.to_string()))
    }
}

fn object_ref(kind: &str, collection: &str, id: &str, at: Timestamp) -> ObjectReference {
    ObjectReference {
        id: id.to_owned(),
        created_at: Some(at),
        updated_at: Some(at),
        kind: kind.to_owned(),
        href: format!("{API_PREFIX}/{collection}/{id}"),
    }
}

fn touch(meta: &mut Option<ObjectReference>) {
    if let Some(m) = meta.as_mut() {
        m.updated_at = Some(now());
    }
}

fn set<T>(dst: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *dst = value;
    }
}

fn required(field: &str, value: Option<String>) -> Result<String, ApiError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ApiError::invalid(format!("{field} is required"))),
    }
}

fn rename(dst: &mut String, field: &str, value: Option<String>) -> Result<(), ApiError> {
    if let Some(v) = value {
        *dst = required(field, Some(v))?;
    }
    Ok(())
}

/// Replaces `labels`/`annotations` wholesale when given (wire.md §2: no
/// server-side merge; an empty string clears the field).
fn replace_json_object(
    dst: &mut Option<String>,
    field: &str,
    value: Option<String>,
) -> Result<(), ApiError> {
    if value.is_some() {
        *dst = crate::labels::normalize(field, value)?;
    }
    Ok(())
}

fn resource_event(event_type: EventType, resource: Resource) -> Event {
    Event::Resource(ResourceEvent {
        event_type,
        resource,
    })
}

/// Waits until the shutdown flag is raised (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// The stored `R` with `id`, or NOT_FOUND.
fn existing<R: Stored>(tx: &crate::store::Tx<'_>, id: &str) -> Result<R, ApiError> {
    tx.get::<R>(id)?
        .ok_or_else(|| ApiError::not_found(R::KIND, id))
}

/// The shared operations over one [`Store`].
#[derive(Debug, Clone)]
pub struct Api {
    store: Store,
    shutdown: watch::Receiver<bool>,
}

impl Api {
    /// Operations over `store`; open watches end when `shutdown` becomes true.
    pub fn new(store: Store, shutdown: watch::Receiver<bool>) -> Self {
        Self { store, shutdown }
    }

    async fn get<R: Stored>(&self, id: &str) -> Result<R, ApiError> {
        let id = id.to_owned();
        self.store.read(move |tx| existing::<R>(tx, &id)).await
    }

    /// One page of `R` matching the query's `search` and `scope` (both),
    /// sorted by its `orderBy`.
    async fn list<R: Stored>(
        &self,
        query: &ListQuery,
        scope: Option<Expr>,
    ) -> Result<Page<R>, ApiError> {
        let filter = match (scope, query.filter::<R>()?) {
            (Some(a), Some(b)) => Some(a.and(b)),
            (a, b) => a.or(b),
        };
        let order = search::parse_order(query.order_by.as_deref().unwrap_or(""), R::COLUMNS)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let (page, size) = query.bounds();
        let offset = (page - 1).saturating_mul(size);
        let (items, total) = self
            .store
            .read(move |tx| Ok(tx.list::<R>(filter.as_ref(), &order, offset, size)?))
            .await?;
        Ok(Page {
            page: i32::try_from(page).unwrap_or(i32::MAX),
            size: i32::try_from(items.len()).unwrap_or(i32::MAX),
            total: i32::try_from(total).unwrap_or(i32::MAX),
            items,
        })
    }
}

#[cfg(test)]
mod tests;
