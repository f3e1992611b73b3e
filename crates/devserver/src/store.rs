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
use crate::search::{Expr, Op, Order, like_to_glob};

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
    /// The blocking storage task failed.
    #[error("storage task failed: {0}")]
    Task(String),
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
            let tx = Tx {
                conn: &txn,
                events: Vec::new(),
            };
            crate::schema::upgrade(&tx, version)?;
            txn.pragma_update(None, "user_version", crate::schema::VERSION)?;
            txn.commit()?;
        }
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

/// The searchable columns of `r` as a JSON object: strings and numbers as
/// they are, booleans as `"true"`/`"false"` (so `built_in = 'true'` works),
/// absent and null fields left out (they compare as the empty string).
fn index_json<R: Stored>(r: &R) -> String {
    use serde_json::Value as J;
    let serde_json::Value::Object(all) = r.json() else {
        return "{}".to_owned();
    };
    let map: serde_json::Map<String, J> = all
        .into_iter()
        .filter(|(k, _)| R::COLUMNS.contains(&k.as_str()))
        .filter_map(|(k, v)| match v {
            J::String(_) | J::Number(_) => Some((k, v)),
            J::Bool(b) => Some((k, J::String(b.to_string()))),
            _ => None,
        })
        .collect();
    J::Object(map).to_string()
}

/// Appends the SQL of `e` to `sql`, binding every path and value in `args`.
fn filter_sql(e: &Expr, sql: &mut String, args: &mut Vec<Value>) {
    fn column(field: &str, sql: &mut String, args: &mut Vec<Value>) {
        args.push(Value::Text(format!("$.{field}")));
        sql.push_str(&format!(
            "coalesce(CAST(json_extract(idx, ?{}) AS TEXT), '')",
            args.len()
        ));
    }
    match e {
        Expr::Cmp { field, op, value } => {
            column(field, sql, args);
            let (op, value) = match op {
                Op::Eq => ("=", value.clone()),
                Op::Ne => ("!=", value.clone()),
                Op::Like => ("GLOB", like_to_glob(value)),
                Op::NotLike => ("NOT GLOB", like_to_glob(value)),
            };
            args.push(Value::Text(value));
            sql.push_str(&format!(" {op} ?{}", args.len()));
        }
        Expr::In {
            field,
            values,
            negated,
        } => {
            column(field, sql, args);
            sql.push_str(if *negated { " NOT IN (" } else { " IN (" });
            for (i, v) in values.iter().enumerate() {
                args.push(Value::Text(v.clone()));
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", args.len()));
            }
            sql.push(')');
        }
        Expr::And(a, b) | Expr::Or(a, b) => {
            let op = if matches!(e, Expr::And(..)) {
                "AND"
            } else {
                "OR"
            };
            sql.push('(');
            filter_sql(a, sql, args);
            sql.push_str(&format!(" {op} "));
            filter_sql(b, sql, args);
            sql.push(')');
        }
        Expr::Not(inner) => {
            sql.push_str("NOT (");
            filter_sql(inner, sql, args);
            sql.push(')');
        }
    }
}

/// The rows of one kind (`?1`), to which a filter may be appended.
const OF_KIND: &str = " FROM resources WHERE kind = ?1";

/// The page query over `from_where`: sorted by `order`, then creation
/// order; pushes the arguments it adds to `args`.
fn page_sql(
    mut from_where: String,
    order: &[Order],
    args: &mut Vec<Value>,
    offset: i64,
    limit: i64,
) -> String {
    from_where.push_str(" ORDER BY ");
    for o in order {
        args.push(Value::Text(format!("$.{}", o.field)));
        let dir = if o.desc { "DESC" } else { "ASC" };
        from_where.push_str(&format!("json_extract(idx, ?{}) {dir}, ", args.len()));
    }
    args.push(Value::Integer(limit));
    args.push(Value::Integer(offset));
    let n = args.len();
    format!(
        "SELECT id, body{from_where}ord LIMIT ?{} OFFSET ?{n}",
        n - 1
    )
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

    /// One page of the objects of kind `R` matching `filter`, sorted by
    /// `order` then creation order, and the total number of matches. Fields
    /// must be in `R::COLUMNS` (the search parser guarantees it).
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
        let total: i64 = self
            .conn
            .prepare_cached(&format!("SELECT count(*){sql}"))?
            .query_row(params_from_iter(args.iter()), |row| row.get(0))?;
        let page = page_sql(sql, order, &mut args, offset, limit);
        let mut stmt = self.conn.prepare_cached(&page)?;
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
    pub fn reindex<R: Stored>(&self) -> Result<(), StoreError> {
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
    pub fn delete_messages(&self, session_id: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM messages WHERE session_id = ?1")?
            .execute([session_id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plan SQLite picks for `sql`, one step per line.
    fn plan(store: &Store, sql: &str, args: &[Value]) -> Result<String, StoreError> {
        let conn = Store::lock(&store.conn);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
        let steps = stmt.query_map(params_from_iter(args.iter()), |row| row.get::<_, String>(3))?;
        Ok(steps.collect::<Result<Vec<_>, _>>()?.join("\n"))
    }

    #[test]
    fn a_page_in_creation_order_needs_no_sort_of_the_whole_kind() -> Result<(), StoreError> {
        let store = Store::open(None, Hub::new())?;
        let mut args = vec![Value::Text("session".into())];
        let page = page_sql(OF_KIND.into(), &[], &mut args, 1000, 500);
        let plan = plan(&store, &page, &args)?;
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        assert!(plan.contains("resources_kind_ord"), "{plan}");
        Ok(())
    }
}
