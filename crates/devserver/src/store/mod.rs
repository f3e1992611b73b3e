//! SQLite persistence (`rusqlite`, bundled SQLite).
//!
//! One connection, owned by the store's own thread ([`worker`]), so the
//! async runtime never waits on disk. Operations are queued to it and run
//! one at a time, in batches sharing a transaction (each operation in its
//! own savepoint: one that fails changes nothing); the events a batch
//! produced are published to the [`Hub`] after its commit, before the next
//! batch runs, so watchers see changes in commit order and a reader that
//! subscribed before reading can never miss one. Answers are sent after
//! the commit: nothing is reported written that was not.
//!
//! Schema: one `resources` table for every kind (`kind`, `id`, the encoded
//! object in `body`, and the searchable fields as a JSON object in `idx`,
//! queried with `json_extract`), and a `messages` table keyed by
//! `(session_id, seq)`.

mod memo;
mod query;
mod worker;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use ambient_protocol::v1::SessionMessage;
use prost_types::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::error::ApiError;
use crate::events::{Event, Hub};
use crate::search::{Expr, Order};
use memo::{Depends, Memo};
use query::{OF_KIND, after_sql, filter_sql, index_json, page_sql};
use worker::{Job, Reply};

/// File name of the database inside `--data-dir`.
pub const DB_FILE: &str = "devserver.sqlite3";

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored object could not be decoded.
    #[error("cannot decode stored {kind} {id}: {reason}")]
    Decode {
        /// Resource kind.
        kind: &'static str,
        /// Resource ID.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database was written by an older devserver whose data cannot be
    /// carried over (see [`crate::schema`]).
    #[error("{0}")]
    Incompatible(String),
    /// The system random generator failed.
    #[error("system random generator failed")]
    Random,
    /// The storage thread failed (or the operation panicked).
    #[error("storage task failed: {0}")]
    Task(String),
    /// The transaction holding the operation failed to commit: nothing of
    /// it was written.
    #[error("commit failed: {0}")]
    Commit(String),
}

/// An object kept in the `resources` table.
pub trait Stored: Sized + Send + 'static {
    /// The kind, as in `ObjectReference.kind` (`Session`, `Project`, ...).
    const KIND: &'static str;
    /// The columns `search` and `orderBy` may name: every field of the
    /// resource's REST form (also indexed in `idx`).
    const COLUMNS: &'static [&'static str];
    /// The object's ID.
    fn id(&self) -> &str;
    /// Encoded form for `body`.
    fn encode(&self) -> Result<Vec<u8>, StoreError>;
    /// Decodes `body`.
    fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError>;
    /// The REST JSON form (an object); its [`Stored::COLUMNS`] are indexed.
    fn json(&self) -> serde_json::Value;
}

/// Decodes a prost message from `body`.
pub(crate) fn decode_prost<M: prost::Message + Default>(
    kind: &'static str,
    id: &str,
    bytes: &[u8],
) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| StoreError::Decode {
        kind,
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// Decodes a serde JSON object from `body`.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    kind: &'static str,
    id: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        kind,
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// Encodes a serde value as JSON for `body`.
pub(crate) fn encode_json<T: serde::Serialize>(
    kind: &'static str,
    id: &str,
    value: &T,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Decode {
        kind,
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

/// Creates `dir` (mode 0700) and the database file in it (mode 0600) before
/// SQLite opens it: credential tokens are stored in clear. SQLite gives its
/// `-wal` and `-shm` files the mode of the database file.
fn private_db_file(dir: &Path) -> Result<PathBuf, StoreError> {
    let data_dir = |source| StoreError::DataDir {
        path: dir.to_owned(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(data_dir)?;
    let file = dir.join(DB_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        let f = options.open(&file).map_err(data_dir)?;
        // An existing file keeps its mode on open: tighten it.
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(data_dir)?;
    }
    #[cfg(not(unix))]
    options.open(&file).map_err(data_dir)?;
    Ok(file)
}

/// The store: the database plus the hub its commits are published to.
#[derive(Debug, Clone)]
pub struct Store {
    jobs: Sender<Box<dyn Job>>,
    hub: Hub,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS resources (
    ord  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    idx  TEXT NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (kind, id)
);
-- A page of a kind in creation order walks this index: no sort of every row
-- (and no read of every body) per page, which made paging through 100 000
-- sessions quadratic.
CREATE INDEX IF NOT EXISTS resources_kind_ord ON resources (kind, ord);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    id         TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_s  INTEGER NOT NULL,
    created_n  INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
";

impl Store {
    /// Opens (creating if needed) the database in `dir`, or an in-memory one
    /// when `dir` is `None`.
    pub fn open(dir: Option<&Path>, hub: Hub) -> Result<Store, StoreError> {
        let mut conn = match dir {
            Some(dir) => {
                let file = private_db_file(dir)?;
                let conn = Connection::open(file)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != crate::schema::VERSION {
            let txn = conn.transaction()?;
            let memo = RefCell::new(Memo::default());
            let mut tx = Tx {
                conn: &txn,
                events: Vec::new(),
                memo: &memo,
            };
            crate::schema::upgrade(&mut tx, version)?;
            txn.pragma_update(None, "user_version", crate::schema::VERSION)?;
            txn.commit()?;
        }
        Ok(Store {
            jobs: worker::spawn(conn, hub.clone())?,
            hub,
        })
    }

    /// The hub commits are published to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Runs `f` in a write transaction. On success the transaction commits and
    /// the events `f` recorded are published; on error nothing is written
    /// and nothing is published. The answer comes after the commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.submit(f, false).await
    }

    /// Runs `f` with read access (consistent: nothing is written meanwhile).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        self.submit(move |tx: &mut Tx<'_>| f(tx), true).await
    }

    async fn submit<T, F>(&self, f: F, read_only: bool) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Box<dyn Job> = Box::new(Call {
            f,
            reply,
            read_only,
        });
        if self.jobs.send(job).is_err() {
            return Err(StoreError::Task("the storage thread has stopped".into()).into());
        }
        answer.await.map_err(|_| {
            ApiError::Store(StoreError::Task(
                "the operation panicked or was dropped".into(),
            ))
        })?
    }
}

/// An operation and where its answer goes.
struct Call<F, T> {
    f: F,
    reply: tokio::sync::oneshot::Sender<Result<T, ApiError>>,
    /// Set only by [`Store::read`], whose `f` gets a `&Tx` (every write
    /// needs a `&mut Tx`).
    read_only: bool,
}

impl<F, T> Job for Call<F, T>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
{
    fn read_only(&self) -> bool {
        self.read_only
    }

    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> Option<Reply> {
        let Call { f, reply, .. } = *self;
        match f(tx) {
            Ok(out) => Some(Box::new(move |committed: Result<(), &StoreError>| {
                let answer = match committed {
                    Ok(()) => Ok(out),
                    Err(e) => Err(StoreError::Commit(e.to_string()).into()),
                };
                let _ = reply.send(answer);
            })),
            Err(e) => {
                let _ = reply.send(Err(e));
                None
            }
        }
    }

    fn abort(self: Box<Self>, error: &StoreError) {
        let _ = self
            .reply
            .send(Err(StoreError::Commit(error.to_string()).into()));
    }
}

/// Access to the database inside [`Store::write`] / [`Store::read`].
#[derive(Debug)]
pub struct Tx<'c> {
    conn: &'c Connection,
    events: Vec<Event>,
    memo: &'c RefCell<Memo>,
}

impl Tx<'_> {
    /// Records an event to publish once the transaction commits.
    pub fn publish(&mut self, event: Event) {
        self.events.push(event);
    }

    /// The object of kind `R` with this ID.
    pub fn get<R: Stored>(&self, id: &str) -> Result<Option<R>, StoreError> {
        let body: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT body FROM resources WHERE kind = ?1 AND id = ?2")?
            .query_row(params![R::KIND, id], |row| row.get(0))
            .optional()?;
        body.map(|b| R::decode(id, &b)).transpose()
    }

    /// Inserts or replaces (keeping its list position) an object.
    pub fn put<R: Stored>(&mut self, r: &R) -> Result<(), StoreError> {
        let body = r.encode()?;
        let idx = index_json(r);
        let replaced = self
            .conn
            .prepare_cached("UPDATE resources SET idx = ?3, body = ?4 WHERE kind = ?1 AND id = ?2")?
            .execute(params![R::KIND, r.id(), idx, body])?;
        if replaced > 0 {
            self.memo.borrow_mut().updated(R::KIND);
            return Ok(());
        }
        self.conn
            .prepare_cached("INSERT INTO resources (kind, id, idx, body) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![R::KIND, r.id(), idx, body])?;
        self.memo.borrow_mut().inserted(R::KIND);
        Ok(())
    }

    /// Deletes an object; false if there was none.
    pub fn delete<R: Stored>(&mut self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM resources WHERE kind = ?1 AND id = ?2")?
            .execute(params![R::KIND, id])?;
        if n > 0 {
            self.memo.borrow_mut().deleted(R::KIND);
        }
        Ok(n > 0)
    }

    /// One page of the objects of kind `R` matching `filter`, sorted by
    /// `order` then creation order, and the total number of matches. Fields
    /// must be in `R::COLUMNS` (the search parser guarantees it).
    ///
    /// The total, and in creation order where the previous page ended, are
    /// remembered ([`memo`]) while no write could have changed them: paging
    /// through a kind reads each page, not every row before it.
    pub fn list<R: Stored>(
        &self,
        filter: Option<&Expr>,
        order: &[Order],
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<R>, i64), StoreError> {
        let mut sql = String::from(OF_KIND);
        let mut args: Vec<Value> = vec![Value::Text(R::KIND.to_owned())];
        if let Some(e) = filter {
            sql.push_str(" AND ");
            filter_sql(e, &mut sql, &mut args);
        }
        let query = format!("{sql}\u{0}{args:?}");
        let (members, positions) = match filter {
            None => (Depends::Members, Depends::Positions),
            Some(_) => (Depends::Everything, Depends::Everything),
        };
        let remembered = self.memo.borrow().total(R::KIND, members, &query);
        let total = match remembered {
            Some(n) => n,
            None => {
                let n: i64 = self
                    .conn
                    .prepare_cached(&format!("SELECT count(*){sql}"))?
                    .query_row(params_from_iter(args.iter()), |row| row.get(0))?;
                let mut memo = self.memo.borrow_mut();
                memo.remember_total(R::KIND, members, query.clone(), n);
                n
            }
        };
        let in_creation_order = order.is_empty();
        let end = if in_creation_order && offset > 0 {
            let mut memo = self.memo.borrow_mut();
            memo.take_end(R::KIND, positions, query.clone(), offset)
        } else {
            None
        };
        let page = match end {
            Some(ord) => after_sql(sql, &mut args, ord, limit),
            None => page_sql(sql, order, &mut args, offset, limit),
        };
        let mut stmt = self.conn.prepare_cached(&page)?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        let mut items = Vec::new();
        let mut last = None;
        for row in rows {
            let (id, body, ord) = row?;
            items.push(R::decode(&id, &body)?);
            last = Some(ord);
        }
        if let (true, Some(ord)) = (in_creation_order, last) {
            let next = offset.saturating_add(i64::try_from(items.len()).unwrap_or(i64::MAX));
            let mut memo = self.memo.borrow_mut();
            memo.remember_end(R::KIND, positions, query, next, ord);
        }
        Ok((items, total))
    }

    /// Every object of kind `R` with the ID of its row, in creation order.
    pub fn rows<R: Stored>(&self) -> Result<Vec<(String, R)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, body FROM resources WHERE kind = ?1 ORDER BY ord")?;
        let rows = stmt.query_map([R::KIND], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, body) = row?;
            let r = R::decode(&id, &body)?;
            out.push((id, r));
        }
        Ok(out)
    }

    /// Every object of kind `R` matching `filter`, in creation order.
    pub fn all<R: Stored>(&self, filter: Option<&Expr>) -> Result<Vec<R>, StoreError> {
        Ok(self.list(filter, &[], 0, i64::MAX)?.0)
    }

    /// Rewrites the index of every stored `R` (after the columns changed).
    pub fn reindex<R: Stored>(&mut self) -> Result<(), StoreError> {
        for r in self.all::<R>(None)? {
            self.put(&r)?;
        }
        Ok(())
    }

    /// Appends a message to a session with the next `seq` (1, 2, ...) and
    /// records it for publication.
    pub fn append_message(
        &mut self,
        session_id: &str,
        event_type: &str,
        payload: &str,
    ) -> Result<SessionMessage, StoreError> {
        let seq: i64 = self
            .conn
            .prepare_cached("SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE session_id = ?1")?
            .query_row([session_id], |row| row.get(0))?;
        let id = crate::ids::new_id()?;
        let created = crate::time::now();
        self.conn
            .prepare_cached(
                "INSERT INTO messages (session_id, seq, id, event_type, payload, created_s, created_n)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                session_id,
                seq,
                id,
                event_type,
                payload,
                created.seconds,
                created.nanos
            ])?;
        let msg = SessionMessage {
            id,
            session_id: session_id.to_owned(),
            seq,
            event_type: event_type.to_owned(),
            payload: payload.to_owned(),
            created_at: Some(created),
        };
        self.events.push(Event::Message(msg.clone()));
        Ok(msg)
    }

    /// Up to `limit` messages of a session with `seq > after_seq`, in order.
    pub fn messages_after(
        &self,
        session_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<SessionMessage>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, id, event_type, payload, created_s, created_n FROM messages
             WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![session_id, after_seq, limit], |row| {
            Ok(SessionMessage {
                id: row.get(1)?,
                session_id: session_id.to_owned(),
                seq: row.get(0)?,
                event_type: row.get(2)?,
                payload: row.get(3)?,
                created_at: Some(Timestamp {
                    seconds: row.get(4)?,
                    nanos: row.get(5)?,
                }),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes every message of a session.
    pub fn delete_messages(&mut self, session_id: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM messages WHERE session_id = ?1")?
            .execute([session_id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
