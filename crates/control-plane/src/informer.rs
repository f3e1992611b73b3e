//! Informer: a local cache of API objects kept true by list + watch.
//!
//! On every (re)connect it opens the watch first, then lists every page and
//! diffs the list against its store, synthesising the creates, updates and
//! deletes it missed; then it applies watch events as they come. A periodic
//! resync re-enqueues every object. The watch backoff resets after a stream
//! that stayed healthy for a while.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ambient_protocol::backoff::Backoff;
use ambient_protocol::v1::{
    EventType, ObjectReference, Project, ProjectSettings, ProjectSettingsWatchEvent,
    ProjectWatchEvent, Session, SessionWatchEvent,
};
use futures::StreamExt;
use tonic::Streaming;

use crate::api::{Api, ApiError, Page};
use crate::metrics::Metrics;

/// Page size of the initial and re-lists.
pub const LIST_PAGE_SIZE: i32 = 500;
/// A watch that stayed up this long resets the reconnect backoff.
const HEALTHY_STREAM: Duration = Duration::from_secs(30);
/// Deleted objects remembered for their reconcile (bounded).
const TOMBSTONES: usize = 10_000;

/// An API object kind the informer can cache.
pub trait Kind: Clone + PartialEq + Send + Sync + 'static {
    /// Name for logs and metrics.
    const NAME: &'static str;
    /// The watch event message.
    type Event: Send + 'static;
    /// The object's metadata.
    fn metadata(&self) -> Option<&ObjectReference>;
    /// The object's ID.
    fn id(&self) -> &str {
        self.metadata().map(|m| m.id.as_str()).unwrap_or_default()
    }
    /// `updated_at` as (seconds, nanos), to refuse stale watch events.
    fn updated_at(&self) -> Option<(i64, i32)> {
        self.metadata()
            .and_then(|m| m.updated_at.as_ref())
            .map(|t| (t.seconds, t.nanos))
    }
    fn list(
        api: &Api,
        page: i32,
        size: i32,
    ) -> impl Future<Output = Result<Page<Self>, ApiError>> + Send;
    /// One object, fresh from the API (`NOT_FOUND` when deleted).
    fn get(api: &Api, id: &str) -> impl Future<Output = Result<Self, ApiError>> + Send;
    fn watch(api: &Api) -> impl Future<Output = Result<Streaming<Self::Event>, ApiError>> + Send;
    /// `(type, resource id, object)` of an event.
    fn split(event: Self::Event) -> (i32, String, Option<Self>);
}

/// Implements [`Kind`] for a message with a `metadata` field.
macro_rules! kind {
    ($ty:ty, $name:literal, $event:ty, $field:ident, $list:ident, $get:ident, $watch:ident) => {
        impl Kind for $ty {
            const NAME: &'static str = $name;
            type Event = $event;
            fn metadata(&self) -> Option<&ObjectReference> {
                self.metadata.as_ref()
            }
            async fn list(api: &Api, page: i32, size: i32) -> Result<Page<Self>, ApiError> {
                api.$list(page, size).await
            }
            async fn get(api: &Api, id: &str) -> Result<Self, ApiError> {
                api.$get(id).await
            }
            async fn watch(api: &Api) -> Result<Streaming<Self::Event>, ApiError> {
                api.$watch().await
            }
            fn split(e: Self::Event) -> (i32, String, Option<Self>) {
                (e.r#type, e.resource_id, e.$field)
            }
        }
    };
}

kind!(
    Session,
    "session",
    SessionWatchEvent,
    session,
    list_sessions,
    get_session,
    watch_sessions
);
kind!(
    Project,
    "project",
    ProjectWatchEvent,
    project,
    list_projects,
    get_project,
    watch_projects
);
kind!(
    ProjectSettings,
    "project_settings",
    ProjectSettingsWatchEvent,
    project_settings,
    list_project_settings,
    get_project_settings,
    watch_project_settings
);

/// The cache of one kind. Shared by the informer (writer), the reconcilers
/// and the token server's session directory (readers).
///
/// A deletion is final: API IDs are never reused, so once an ID was deleted
/// (a watch event, or a relist whose absence the API confirmed) no later
/// upsert brings it back, whatever its timestamps — an API reply that
/// arrives after the delete event must not resurrect a ghost.
#[derive(Debug)]
pub struct Store<K> {
    inner: RwLock<Inner<K>>,
    synced: AtomicBool,
}

#[derive(Debug)]
struct Inner<K> {
    objects: HashMap<String, K>,
    /// Last state of deleted objects, until their cleanup is done.
    tombstones: HashMap<String, K>,
    /// IDs deleted recently (bounded): never cached again.
    deleted: HashSet<String>,
    deleted_order: VecDeque<String>,
}

impl<K: Kind> Default for Store<K> {
    fn default() -> Self {
        Self {
            inner: RwLock::new(Inner {
                objects: HashMap::new(),
                tombstones: HashMap::new(),
                deleted: HashSet::new(),
                deleted_order: VecDeque::new(),
            }),
            synced: AtomicBool::new(false),
        }
    }
}

impl<K> Inner<K> {
    fn remove(&mut self, id: &str) -> bool {
        let Some(old) = self.objects.remove(id) else {
            return false;
        };
        self.tombstones.insert(id.to_owned(), old);
        if self.deleted.insert(id.to_owned()) {
            self.deleted_order.push_back(id.to_owned());
        }
        while self.deleted_order.len() > TOMBSTONES {
            if let Some(oldest) = self.deleted_order.pop_front() {
                self.deleted.remove(&oldest);
                self.tombstones.remove(&oldest);
            }
        }
        true
    }
}

impl<K: Kind> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<K>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<K>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached object.
    pub fn get(&self, id: &str) -> Option<K> {
        self.read().objects.get(id).cloned()
    }

    /// Every cached object.
    pub fn list(&self) -> Vec<K> {
        self.read().objects.values().cloned().collect()
    }

    /// How many cached objects satisfy `f` (no cloning).
    pub fn count_where(&self, f: impl Fn(&K) -> bool) -> usize {
        self.read().objects.values().filter(|o| f(o)).count()
    }

    /// The first cached object satisfying `f`.
    pub fn find(&self, f: impl Fn(&K) -> bool) -> Option<K> {
        self.read().objects.values().find(|o| f(o)).cloned()
    }

    /// Every cached ID.
    pub fn ids(&self) -> Vec<String> {
        self.read().objects.keys().cloned().collect()
    }

    /// Number of cached objects.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last state of a deleted object (kept for its cleanup), if known.
    pub fn tombstone(&self, id: &str) -> Option<K> {
        self.read().tombstones.get(id).cloned()
    }

    /// True when `id` was deleted (recently enough to be remembered).
    pub fn is_deleted(&self, id: &str) -> bool {
        self.read().deleted.contains(id)
    }

    /// Forgets a tombstone once its cleanup is done (the ID stays deleted).
    pub fn forget_tombstone(&self, id: &str) {
        self.write().tombstones.remove(id);
    }

    /// True once the first full list has been loaded.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Inserts or updates; refuses an object older than the cached one and
    /// any object whose ID was deleted. Returns true when the cache changed.
    pub fn upsert(&self, obj: K) -> bool {
        let mut inner = self.write();
        let id = obj.id().to_owned();
        if inner.deleted.contains(&id) {
            return false;
        }
        if let Some(old) = inner.objects.get(&id) {
            if old == &obj {
                return false;
            }
            if let (Some(old_t), Some(new_t)) = (old.updated_at(), obj.updated_at())
                && new_t < old_t
            {
                return false;
            }
        }
        inner.objects.insert(id, obj);
        true
    }

    /// Removes; returns true when the object was cached.
    pub fn remove(&self, id: &str) -> bool {
        self.write().remove(id)
    }

    /// IDs cached but absent from `listed`: deletes a relist would synthesise.
    fn missing_from(&self, listed: &HashMap<String, K>) -> Vec<String> {
        self.read()
            .objects
            .keys()
            .filter(|id| !listed.contains_key(id.as_str()))
            .cloned()
            .collect()
    }

    /// Replaces the whole cache by a fresh list; returns the IDs that were
    /// created, changed or deleted meanwhile. Deleted IDs stay deleted.
    pub fn replace_all(&self, items: Vec<K>) -> Vec<String> {
        self.replace_with(items.into_iter().map(|o| (o.id().to_owned(), o)).collect())
    }

    /// [`Store::replace_all`] with the list keyed by ID. The first list of
    /// an empty cache becomes the cache as it is: at 100 000 sessions a
    /// second copy of every object would double the peak memory.
    fn replace_with(&self, mut fresh: HashMap<String, K>) -> Vec<String> {
        let mut inner = self.write();
        if inner.objects.is_empty() {
            if !inner.deleted.is_empty() {
                fresh.retain(|id, _| !inner.deleted.contains(id));
            }
            let changed = fresh.keys().cloned().collect();
            inner.objects = fresh;
            drop(inner);
            self.synced.store(true, Ordering::Release);
            return changed;
        }
        let gone: Vec<String> = inner
            .objects
            .keys()
            .filter(|id| !fresh.contains_key(*id))
            .cloned()
            .collect();
        let mut changed = Vec::new();
        for id in gone {
            if inner.remove(&id) {
                changed.push(id);
            }
        }
        for (id, obj) in fresh {
            if inner.deleted.contains(&id) {
                continue;
            }
            if inner.objects.get(&id) != Some(&obj) {
                inner.objects.insert(id.clone(), obj);
                changed.push(id);
            }
        }
        drop(inner);
        self.synced.store(true, Ordering::Release);
        changed
    }
}

/// The most entries a list reserves ahead of receiving them.
const MAX_RESERVE: usize = 1 << 17;

/// One pass over every page, keyed by ID, and whether it was consistent:
/// every page reported the same total and the pass saw exactly that many
/// objects. Offset paging skips or repeats an object when something is
/// created or deleted between two pages; such a pass is not consistent.
struct Listing<K> {
    items: HashMap<String, K>,
    consistent: bool,
}

async fn list_pass<K: Kind>(api: &Api, page_size: i32) -> Result<Listing<K>, ApiError> {
    let mut items: HashMap<String, K> = HashMap::new();
    let mut totals = HashSet::new();
    let mut repeated = false;
    let mut page = 1;
    loop {
        let p = K::list(api, page, page_size).await?;
        let n = p.items.len();
        let total = usize::try_from(p.total).unwrap_or(0);
        // Room for the whole list at once (no rehash copies at 100 000
        // objects), but never more than a bounded guess: `total` is the
        // server's word, and a wrong one must not abort the process.
        if totals.insert(total) {
            items.reserve(total.saturating_sub(items.len()).min(MAX_RESERVE));
        }
        let mut fresh = 0;
        for item in p.items {
            match items.entry(item.id().to_owned()) {
                Entry::Vacant(v) => {
                    v.insert(item);
                    fresh += 1;
                }
                Entry::Occupied(_) => repeated = true,
            }
        }
        // A short page only ends the list when the server gives no total: a
        // server may cap the page size below ours. A page of nothing new
        // (a server ignoring `page`) ends it too.
        let done = n == 0
            || fresh == 0
            || (total > 0 && items.len() >= total)
            || (total == 0 && n < usize::try_from(page_size).unwrap_or(0));
        if done {
            let consistent = !repeated && totals.len() == 1 && (total == 0 || items.len() == total);
            return Ok(Listing { items, consistent });
        }
        page += 1;
    }
}

/// Lists every page of `page_size` objects (one pass).
pub async fn list_all<K: Kind>(api: &Api, page_size: i32) -> Result<Vec<K>, ApiError> {
    Ok(list_pass(api, page_size)
        .await?
        .items
        .into_values()
        .collect())
}

/// Passes tried before a relist settles for an inconsistent one (whose
/// missing objects are then confirmed one by one anyway).
const LIST_PASSES: usize = 3;
/// Concurrent `Get`s confirming synthesised deletes.
const CONFIRMS_IN_FLIGHT: usize = 16;

/// Lists (until a pass is consistent, at most [`LIST_PASSES`]) and
/// replaces `store` with the result; returns the changed IDs.
///
/// A delete is only synthesised for an object the API confirms gone
/// (`NOT_FOUND` on a fresh `Get`): an object a page skipped is kept (and
/// refreshed), never removed with its pods.
pub async fn relist<K: Kind>(
    api: &Api,
    store: &Store<K>,
    page_size: i32,
) -> Result<Vec<String>, ApiError> {
    let mut listing = list_pass::<K>(api, page_size).await?;
    for _ in 1..LIST_PASSES {
        if listing.consistent {
            break;
        }
        tracing::info!(kind = K::NAME, "list changed while paging; listing again");
        listing = list_pass::<K>(api, page_size).await?;
    }
    let mut items = listing.items;
    let missing = store.missing_from(&items);
    let confirms = futures::stream::iter(missing)
        .map(|id| async move { (K::get(api, &id).await, id) })
        .buffer_unordered(CONFIRMS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    for (answer, id) in confirms {
        match answer {
            Ok(obj) => {
                tracing::info!(kind = K::NAME, id = %id, "missing from the list but not deleted; kept");
                items.insert(id, obj);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(store.replace_with(items))
}

/// Keeps `store` true forever; calls `notify(id)` for every changed object
/// and, every `resync`, for every cached object.
pub async fn run<K: Kind>(
    api: Api,
    store: Arc<Store<K>>,
    resync: Duration,
    metrics: Metrics,
    notify: impl Fn(&str) + Send + Sync + 'static,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut next_resync = tokio::time::Instant::now() + resync;
    loop {
        match connect::<K>(&api, &store, &notify).await {
            Err(e) => {
                tracing::warn!(kind = K::NAME, error = %e, "list/watch failed");
            }
            Ok(mut stream) => {
                let opened = Instant::now();
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(next_resync) => {
                            next_resync = tokio::time::Instant::now() + resync;
                            for id in store.ids() {
                                notify(&id);
                            }
                        }
                        event = stream.next() => match event {
                            Some(Ok(event)) => apply::<K>(&store, event, &notify),
                            Some(Err(status)) => {
                                tracing::warn!(kind = K::NAME, code = ?status.code(), "watch stream failed");
                                break;
                            }
                            None => {
                                tracing::info!(kind = K::NAME, "watch stream ended");
                                break;
                            }
                        }
                    }
                }
                if opened.elapsed() >= HEALTHY_STREAM {
                    backoff.reset();
                }
            }
        }
        metrics.watch_reconnect(K::NAME);
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Opens the watch, then relists and diffs, so nothing between the two is lost.
async fn connect<K: Kind>(
    api: &Api,
    store: &Store<K>,
    notify: &(impl Fn(&str) + Send + Sync),
) -> Result<Streaming<K::Event>, ApiError> {
    let stream = K::watch(api).await?;
    let changed = relist::<K>(api, store, LIST_PAGE_SIZE).await?;
    let total = store.len();
    tracing::info!(
        kind = K::NAME,
        objects = total,
        changed = changed.len(),
        "listed"
    );
    for id in changed {
        notify(&id);
    }
    Ok(stream)
}

fn apply<K: Kind>(store: &Store<K>, event: K::Event, notify: &(impl Fn(&str) + Send + Sync)) {
    let (kind, resource_id, obj) = K::split(event);
    let changed = match EventType::try_from(kind) {
        Ok(EventType::Deleted) => {
            // The reference sends only `resource_id` on a deletion (wire.md §1);
            // the object, when some server adds it, is a fallback.
            let id = if resource_id.is_empty() {
                obj.as_ref().map(|o| o.id().to_owned()).unwrap_or_default()
            } else {
                resource_id
            };
            (!id.is_empty() && store.remove(&id)).then_some(id)
        }
        Ok(EventType::Created | EventType::Updated) => match obj {
            Some(o) if !o.id().is_empty() => {
                let id = o.id().to_owned();
                store.upsert(o).then_some(id)
            }
            _ => None,
        },
        _ => None,
    };
    if let Some(id) = changed {
        notify(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ambient_protocol::v1::ObjectReference;

    fn session(id: &str, secs: i64, phase: &str) -> Session {
        Session {
            metadata: Some(ObjectReference {
                id: id.into(),
                updated_at: Some(prost_types::Timestamp {
                    seconds: secs,
                    nanos: 0,
                }),
                ..ObjectReference::default()
            }),
            phase: Some(phase.into()),
            ..Session::default()
        }
    }

    #[test]
    fn relist_synthesises_creates_updates_and_deletes() {
        let store = Store::<Session>::default();
        assert!(!store.is_synced());
        let mut changed =
            store.replace_all(vec![session("a", 1, "Pending"), session("b", 1, "Pending")]);
        changed.sort();
        assert_eq!(changed, vec!["a", "b"]);
        assert!(store.is_synced());
        // b deleted, a updated, c created while we were away
        let mut changed =
            store.replace_all(vec![session("a", 2, "Running"), session("c", 2, "Pending")]);
        changed.sort();
        assert_eq!(changed, vec!["a", "b", "c"]);
        assert!(store.get("b").is_none());
        assert_eq!(
            store.tombstone("b").and_then(|s| s.phase).as_deref(),
            Some("Pending")
        );
        // unchanged relist changes nothing
        assert!(store.replace_all(store.list()).is_empty());
    }

    #[test]
    fn the_first_list_of_an_emptied_cache_does_not_bring_back_deleted_ids() {
        let store = Store::<Session>::default();
        assert!(store.upsert(session("gone", 1, "Running")));
        assert!(store.remove("gone"));
        assert!(store.is_empty());
        // The cache is empty again: a list still answering the deleted ID
        // (older than its delete event) must not resurrect it.
        let changed = store.replace_all(vec![
            session("gone", 1, "Running"),
            session("b", 1, "Pending"),
        ]);
        assert_eq!(changed, vec!["b"]);
        assert!(store.get("gone").is_none());
        assert_eq!(store.len(), 1);
        assert!(store.is_synced());
    }

    #[test]
    fn a_deletion_carrying_only_the_resource_id_removes_and_tombstones() {
        let store = Store::<Session>::default();
        assert!(store.upsert(session("a", 1, "Running")));
        let notified = std::sync::Mutex::new(Vec::new());
        let deleted = SessionWatchEvent {
            r#type: EventType::Deleted.into(),
            session: None,
            resource_id: "a".into(),
        };
        apply(&store, deleted, &|id: &str| {
            if let Ok(mut n) = notified.lock() {
                n.push(id.to_owned());
            }
        });
        assert_eq!(
            notified.into_inner().unwrap_or_default(),
            ["a"],
            "the reconcile is told"
        );
        assert!(store.get("a").is_none());
        assert_eq!(
            store.tombstone("a").and_then(|s| s.phase).as_deref(),
            Some("Running"),
            "the reconcile still finds what was deleted"
        );
    }

    #[test]
    fn stale_events_do_not_overwrite_newer_state() {
        let store = Store::<Session>::default();
        assert!(store.upsert(session("a", 5, "Running")));
        assert!(!store.upsert(session("a", 4, "Creating")));
        assert_eq!(
            store.get("a").and_then(|s| s.phase).as_deref(),
            Some("Running")
        );
        assert!(!store.upsert(session("a", 5, "Running")));
        assert!(store.upsert(session("a", 6, "Stopping")));
        assert!(store.remove("a"));
        assert!(!store.remove("a"));
        store.forget_tombstone("a");
        assert!(store.tombstone("a").is_none());
    }
}
