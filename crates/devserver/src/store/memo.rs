//! What listings remember between two pages, so that paging through a kind
//! costs the page, not the rows before it: the total of a query, and where
//! the last page served ended (the `ord` of its last row). Each answer is
//! kept with the write counts of its kind it depends on, and used only
//! while they are unchanged, so a page or a total is always the one a
//! fresh `count(*)` or `OFFSET` would give.
//!
//! Owned by the store thread; cleared when a rollback may have undone
//! writes it counted.

use std::collections::HashMap;

/// The most totals, and the most page ends, remembered (then forgotten at
/// once: the memo only saves work, it never changes an answer).
const MAX_ENTRIES: usize = 1024;

/// What a remembered answer depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Depends {
    /// The set of rows of the kind (the total of an unfiltered list):
    /// inserts and deletes.
    Members,
    /// The creation-order positions of every row of the kind: deletes (an
    /// insert gets an `ord` above every row's, so it lands after any page).
    Positions,
    /// Any write of the kind (a filter or a sort reads the row's fields).
    Everything,
}

/// Writes of one kind since the memo was last cleared.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Writes {
    inserted: u64,
    deleted: u64,
    updated: u64,
}

impl Writes {
    fn stamp(self, depends: Depends) -> Writes {
        match depends {
            Depends::Members => Writes { updated: 0, ..self },
            Depends::Positions => Writes {
                deleted: self.deleted,
                ..Writes::default()
            },
            Depends::Everything => self,
        }
    }
}

/// A remembered answer and the writes it was computed after.
#[derive(Debug, Clone, Copy)]
struct Entry {
    stamp: Writes,
    value: i64,
}

/// Keeps `value` under `key`, forgetting the whole map first when full.
fn remember<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, Entry>,
    key: K,
    stamp: Writes,
    value: i64,
) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, Entry { stamp, value });
}

/// The listing memo of one store.
#[derive(Debug, Default)]
pub(crate) struct Memo {
    writes: HashMap<&'static str, Writes>,
    /// Every write recorded, ever (never reset).
    changes: u64,
    totals: HashMap<String, Entry>,
    /// (query, offset) → `ord` of the row just before that offset.
    ends: HashMap<(String, i64), Entry>,
}

impl Memo {
    /// How many writes were recorded so far; a job that failed changed
    /// nothing the memo knows of when this did not move.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// Forgets everything remembered.
    pub(crate) fn clear(&mut self) {
        self.writes.clear();
        self.totals.clear();
        self.ends.clear();
    }

    fn record(&mut self, kind: &'static str, f: impl FnOnce(&mut Writes)) {
        f(self.writes.entry(kind).or_default());
        self.changes += 1;
    }

    /// A row of `kind` was inserted.
    pub(crate) fn inserted(&mut self, kind: &'static str) {
        self.record(kind, |w| w.inserted += 1);
    }

    /// A row of `kind` was deleted.
    pub(crate) fn deleted(&mut self, kind: &'static str) {
        self.record(kind, |w| w.deleted += 1);
    }

    /// A row of `kind` was rewritten in place.
    pub(crate) fn updated(&mut self, kind: &'static str) {
        self.record(kind, |w| w.updated += 1);
    }

    fn stamp(&self, kind: &'static str, depends: Depends) -> Writes {
        self.writes
            .get(kind)
            .copied()
            .unwrap_or_default()
            .stamp(depends)
    }

    fn valid(&self, kind: &'static str, depends: Depends, entry: Option<&Entry>) -> Option<i64> {
        entry
            .filter(|e| e.stamp == self.stamp(kind, depends))
            .map(|e| e.value)
    }

    /// The remembered total of `query` over `kind`, if still true.
    pub(crate) fn total(&self, kind: &'static str, depends: Depends, query: &str) -> Option<i64> {
        self.valid(kind, depends, self.totals.get(query))
    }

    /// Remembers the total of `query` over `kind`.
    pub(crate) fn remember_total(
        &mut self,
        kind: &'static str,
        depends: Depends,
        query: String,
        total: i64,
    ) {
        let stamp = self.stamp(kind, depends);
        remember(&mut self.totals, query, stamp, total);
    }

    /// The `ord` of the row just before `offset` in `query` over `kind`
    /// (in creation order), if a page ended there and it is still true;
    /// forgotten once asked for.
    pub(crate) fn take_end(
        &mut self,
        kind: &'static str,
        depends: Depends,
        query: String,
        offset: i64,
    ) -> Option<i64> {
        let entry = self.ends.remove(&(query, offset));
        self.valid(kind, depends, entry.as_ref())
    }

    /// Remembers that the row just before `offset` in `query` has `ord`.
    pub(crate) fn remember_end(
        &mut self,
        kind: &'static str,
        depends: Depends,
        query: String,
        offset: i64,
        ord: i64,
    ) {
        let stamp = self.stamp(kind, depends);
        remember(&mut self.ends, (query, offset), stamp, ord);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_holds_until_a_write_it_depends_on() {
        let mut memo = Memo::default();
        memo.remember_total("Session", Depends::Members, "all".into(), 3);
        memo.remember_total("Session", Depends::Everything, "running".into(), 1);
        memo.updated("Session");
        memo.inserted("Project");
        assert_eq!(memo.total("Session", Depends::Members, "all"), Some(3));
        assert_eq!(memo.total("Session", Depends::Everything, "running"), None);
        memo.inserted("Session");
        assert_eq!(memo.total("Session", Depends::Members, "all"), None);
    }

    #[test]
    fn a_page_end_survives_inserts_and_updates_but_not_deletes() {
        let mut memo = Memo::default();
        let q = || "all".to_owned();
        memo.remember_end("Session", Depends::Positions, q(), 500, 812);
        memo.inserted("Session");
        memo.updated("Session");
        assert_eq!(
            memo.take_end("Session", Depends::Positions, q(), 500),
            Some(812)
        );
        assert_eq!(memo.take_end("Session", Depends::Positions, q(), 500), None);
        memo.remember_end("Session", Depends::Positions, q(), 500, 812);
        memo.deleted("Session");
        assert_eq!(memo.take_end("Session", Depends::Positions, q(), 500), None);
    }

    #[test]
    fn the_memo_stays_bounded_and_keeps_the_latest() {
        let mut memo = Memo::default();
        for i in 0..3 * MAX_ENTRIES {
            let q = format!("query {i}");
            memo.remember_total("Session", Depends::Everything, q.clone(), 1);
            memo.remember_end("Session", Depends::Everything, q, 7, 9);
        }
        assert!(memo.totals.len() <= MAX_ENTRIES);
        assert!(memo.ends.len() <= MAX_ENTRIES);
        let last = format!("query {}", 3 * MAX_ENTRIES - 1);
        assert_eq!(memo.total("Session", Depends::Everything, &last), Some(1));
        assert_eq!(
            memo.take_end("Session", Depends::Everything, last, 7),
            Some(9)
        );
    }

    #[test]
    fn clearing_forgets_everything_but_the_change_count() {
        let mut memo = Memo::default();
        memo.remember_total("Session", Depends::Members, "all".into(), 3);
        memo.inserted("Session");
        memo.clear();
        assert_eq!(memo.total("Session", Depends::Members, "all"), None);
        assert_eq!(memo.changes(), 1);
    }
}
