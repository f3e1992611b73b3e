//! The store's own thread: the only user of the connection. Operations are
//! queued to it; it takes every one waiting (up to [`MAX_BATCH`]), runs
//! them in one transaction, and commits once. The reads run first and are
//! answered at once: they see only committed data, and the operations of a
//! batch were all in flight together, so any order among them is one a
//! caller could have seen. The writes then run each inside its own
//! savepoint (a failed one is rolled back alone); after the commit their
//! events are published in the order they ran, and only then are they
//! answered.
//!
//! One thread wake-up and one commit per batch instead of a blocking-pool
//! hand-off, a contended mutex and a commit per operation: under load the
//! devserver spent more time switching threads than in SQLite.

use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender};

use rusqlite::Connection;

use super::memo::Memo;
use super::{StoreError, Tx};
use crate::events::Hub;

/// The most operations one transaction holds: bounds an operation's wait
/// for the ones queued before it, and the events published at once (well
/// under the hub's buffer).
pub(super) const MAX_BATCH: usize = 64;

/// Answers an operation once its batch is committed (`Ok`) or failed to
/// commit (`Err`: nothing of the batch was written).
pub(super) type Reply = Box<dyn FnOnce(Result<(), &StoreError>) + Send>;

/// An operation queued to the store thread.
pub(super) trait Job: Send {
    /// True when the job only reads (it is handed no way to write).
    fn read_only(&self) -> bool;
    /// Runs against the batch's transaction: its answer for after the
    /// commit, or `None` when it failed (it answered already, and what it
    /// wrote is rolled back).
    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> Option<Reply>;
    /// Answers without running: the batch's transaction could not begin.
    fn abort(self: Box<Self>, error: &StoreError);
}

/// Starts the thread owning `conn`; it ends when every sender is dropped.
pub(super) fn spawn(conn: Connection, hub: Hub) -> Result<Sender<Box<dyn Job>>, StoreError> {
    let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn Job>>();
    std::thread::Builder::new()
        .name("devserver-store".into())
        .spawn(move || run(conn, &hub, &queue))
        .map_err(|e| StoreError::Task(format!("cannot start the storage thread: {e}")))?;
    Ok(jobs)
}

fn run(mut conn: Connection, hub: &Hub, queue: &Receiver<Box<dyn Job>>) {
    let memo = RefCell::new(Memo::default());
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        batch.extend(queue.try_iter().take(MAX_BATCH - 1));
        run_batch(&mut conn, hub, &memo, batch);
    }
}

/// Runs `statement` (a savepoint step) on the transaction.
fn step(conn: &Connection, statement: &str) -> Result<(), StoreError> {
    conn.prepare_cached(statement)?.execute([])?;
    Ok(())
}

fn run_batch(conn: &mut Connection, hub: &Hub, memo: &RefCell<Memo>, batch: Vec<Box<dyn Job>>) {
    let txn = match conn.transaction() {
        Ok(t) => t,
        Err(e) => {
            let error = StoreError::from(e);
            tracing::error!(error = %error, "cannot begin a transaction");
            for job in batch {
                job.abort(&error);
            }
            return;
        }
    };
    let mut tx = Tx {
        conn: &txn,
        events: Vec::new(),
        memo,
    };
    let (reads, writes): (Vec<_>, Vec<_>) = batch.into_iter().partition(|j| j.read_only());
    for job in reads {
        // A panic drops the job's answer channel: the caller gets an error.
        match std::panic::catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))) {
            Ok(Some(reply)) => reply(Ok(())),
            Ok(None) => {}
            Err(_) => memo.borrow_mut().clear(),
        }
    }
    let mut replies = Vec::with_capacity(writes.len());
    let mut failed = None;
    let mut jobs = writes.into_iter();
    for job in jobs.by_ref() {
        if let Err(e) = step(tx.conn, "SAVEPOINT job") {
            job.abort(&e);
            failed = Some(e);
            break;
        }
        let events = tx.events.len();
        let changes = memo.borrow().changes();
        // A panic drops the job's answer channel: the caller gets an error.
        let (reply, panicked) =
            match std::panic::catch_unwind(AssertUnwindSafe(|| job.run(&mut tx))) {
                Ok(reply) => (reply, false),
                Err(_) => (None, true),
            };
        let stepped = match reply {
            Some(reply) => {
                replies.push(reply);
                step(tx.conn, "RELEASE job")
            }
            None => {
                tx.events.truncate(events);
                if panicked || memo.borrow().changes() != changes {
                    memo.borrow_mut().clear();
                }
                step(tx.conn, "ROLLBACK TO job").and_then(|()| step(tx.conn, "RELEASE job"))
            }
        };
        if let Err(e) = stepped {
            failed = Some(e);
            break;
        }
    }
    let events = std::mem::take(&mut tx.events);
    let committed = match failed {
        None => txn.commit().map_err(StoreError::from),
        Some(e) => {
            // Dropping the transaction rolls the whole batch back.
            drop(txn);
            for rest in jobs {
                rest.abort(&e);
            }
            Err(e)
        }
    };
    match committed {
        Ok(()) => {
            for event in events {
                hub.publish(event);
            }
            for reply in replies {
                reply(Ok(()));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "a write batch failed; nothing of it was written");
            memo.borrow_mut().clear();
            for reply in replies {
                reply(Err(&e));
            }
        }
    }
}
