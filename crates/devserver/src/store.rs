//! SQLite persistence (`rusqlite`, bundled SQLite).
//!
//! One connection behind a mutex, used from `spawn_blocking`, so the async
//! runtime never waits on disk. Every write runs in a transaction; the events
//! it produced are published to the [`Hub`] after the commit *while the lock
//! is still held*, so watchers see changes in commit order and a reader that
//! subscribed before reading can never miss one.
//!
//! Schema: one `resources` table for every kind (`kind`, `id`, the encoded
//! object in `body`, and the searchable fields as a JSON object in `idx`,
//! queried with `json_extract`), and a `messages` table keyed by
//! `(session_id, seq)`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ambient_protocol::v1::SessionMessage;
use prost_types::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::error::ApiError;
use crate::events::{Event, Hub};
use crate::search::{Clause, Op, like_to_glob};

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
    /// The system random generator failed.
    #[error("system random generator failed")]
    Random,
    /// The blocking storage task failed.
    #[error("storage task failed: {0}")]
    Task(String),
}

/// An object kept in the `resources` table.
pub trait Stored: Sized + Send + 'static {
    /// The kind, as in `ObjectReference.kind` (`Session`, `Project`, ...).
    const KIND: &'static str;
    /// Fields the `search` parameter may name (also indexed in `idx`).
    const SEARCH_FIELDS: &'static [&'static str];
    /// The object's ID.
    fn id(&self) -> &str;
    /// Encoded form for `body`.
    fn encode(&self) -> Result<Vec<u8>, StoreError>;
    /// Decodes `body`.
    fn decode(id: &str, bytes: &[u8]) -> Result<Self, StoreError>;
    /// The value of a searchable field (absent = empty string).
    fn field(&self, name: &str) -> String;
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

/// The store: the database plus the hub its commits are published to.
#[derive(Debug, Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
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
        let conn = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                    path: dir.to_owned(),
                    source,
                })?;
                let conn = Connection::open(dir.join(DB_FILE))?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                conn
            }
            None => Connection::open_in_memory()?,
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            hub,
        })
    }

    /// The hub commits are published to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
        // A panic inside a closure aborted its transaction; the connection is fine.
        conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in a write transaction. On success the transaction commits and
    /// the events `f` recorded are published (under the lock); on error
    /// nothing is written and nothing is published.
    pub async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = Self::lock(&conn);
            let txn = guard.transaction().map_err(StoreError::from)?;
            let (out, events) = {
                let mut tx = Tx {
                    conn: &txn,
                    events: Vec::new(),
                };
                let out = f(&mut tx)?;
                (out, tx.events)
            };
            txn.commit().map_err(StoreError::from)?;
            for event in events {
                hub.publish(event);
            }
            Ok(out)
        })
        .await
        .map_err(|e| ApiError::Store(StoreError::Task(e.to_string())))?
    }

    /// Runs `f` with read access (consistent: writers are excluded meanwhile).
    pub async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Tx<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let guard = Self::lock(&conn);
            let tx = Tx {
                conn: &guard,
                events: Vec::new(),
            };
            f(&tx)
        })
        .await
        .map_err(|e| ApiError::Store(StoreError::Task(e.to_string())))?
    }
}

/// Access to the database inside [`Store::write`] / [`Store::read`].
#[derive(Debug)]
pub struct Tx<'c> {
    conn: &'c Connection,
    events: Vec<Event>,
}

fn index_json<R: Stored>(r: &R) -> String {
    let map: serde_json::Map<String, serde_json::Value> = R::SEARCH_FIELDS
        .iter()
        .copied()
        .map(|f| (f.to_owned(), serde_json::Value::String(r.field(f))))
        .collect();
    serde_json::Value::Object(map).to_string()
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
    pub fn put<R: Stored>(&self, r: &R) -> Result<(), StoreError> {
        let body = r.encode()?;
        self.conn
            .prepare_cached(
                "INSERT INTO resources (kind, id, idx, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (kind, id) DO UPDATE SET idx = excluded.idx, body = excluded.body",
            )?
            .execute(params![R::KIND, r.id(), index_json(r), body])?;
        Ok(())
    }

    /// Deletes an object; false if there was none.
    pub fn delete<R: Stored>(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .prepare_cached("DELETE FROM resources WHERE kind = ?1 AND id = ?2")?
            .execute(params![R::KIND, id])?;
        Ok(n > 0)
    }

    /// One page of the objects of kind `R` matching every clause, in creation
    /// order, and the total number of matches. Clause fields must be in
    /// `R::SEARCH_FIELDS` (the search parser guarantees it).
    pub fn list<R: Stored>(
        &self,
        filter: &[Clause],
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<R>, i64), StoreError> {
        let mut sql = String::from(" FROM resources WHERE kind = ?1");
        let mut args: Vec<Value> = vec![Value::Text(R::KIND.to_owned())];
        for clause in filter {
            args.push(Value::Text(format!("$.{}", clause.field)));
            let path = args.len();
            let (op, value) = match clause.op {
                Op::Eq => ("=", clause.value.clone()),
                Op::Like => ("GLOB", like_to_glob(&clause.value)),
            };
            args.push(Value::Text(value));
            sql.push_str(&format!(
                " AND json_extract(idx, ?{path}) {op} ?{}",
                args.len()
            ));
        }
        let total: i64 = self
            .conn
            .prepare_cached(&format!("SELECT count(*){sql}"))?
            .query_row(params_from_iter(args.iter()), |row| row.get(0))?;
        args.push(Value::Integer(limit));
        args.push(Value::Integer(offset));
        let n = args.len();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, body{sql} ORDER BY ord LIMIT ?{} OFFSET ?{n}",
            n - 1
        ))?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })?;
        let mut items = Vec::new();
        for row in rows {
            let (id, body) = row?;
            items.push(R::decode(&id, &body)?);
        }
        Ok((items, total))
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
    pub fn delete_messages(&self, session_id: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM messages WHERE session_id = ?1")?
            .execute([session_id])?;
        Ok(())
    }
}
