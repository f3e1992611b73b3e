use ambient_protocol::v1::{EventType, ObjectReference, Session};

use super::*;
use crate::events::{Resource, ResourceEvent};

fn session(id: &str, phase: &str) -> Session {
    Session {
        metadata: Some(ObjectReference {
            id: id.to_owned(),
            ..ObjectReference::default()
        }),
        name: id.to_owned(),
        phase: Some(phase.to_owned()),
        ..Session::default()
    }
}

fn ids(items: &[Session]) -> Vec<String> {
    items.iter().map(|s| s.id().to_owned()).collect()
}

fn failed(e: StoreError) -> ApiError {
    ApiError::Store(e)
}

/// The plan SQLite picks for `sql`, one step per line.
async fn plan(store: &Store, sql: String, args: Vec<Value>) -> Result<String, ApiError> {
    store
        .read(move |tx| {
            let mut stmt = tx
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .map_err(StoreError::from)?;
            let steps = stmt
                .query_map(params_from_iter(args.iter()), |row| row.get::<_, String>(3))
                .map_err(StoreError::from)?;
            let steps = steps
                .collect::<Result<Vec<_>, _>>()
                .map_err(StoreError::from)?;
            Ok(steps.join("\n"))
        })
        .await
}

#[tokio::test]
async fn a_page_in_creation_order_needs_no_sort_of_the_whole_kind() -> Result<(), ApiError> {
    let store = Store::open(None, Hub::new())?;
    let mut args = vec![Value::Text("session".into())];
    let page = page_sql(OF_KIND.into(), &[], &mut args, 1000, 500);
    let plan = plan(&store, page, args).await?;
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    assert!(plan.contains("resources_kind_ord"), "{plan}");
    Ok(())
}

#[tokio::test]
async fn the_page_after_a_known_end_is_a_range_of_the_index() -> Result<(), ApiError> {
    let store = Store::open(None, Hub::new())?;
    let mut args = vec![Value::Text("session".into())];
    let page = after_sql(OF_KIND.into(), &mut args, 1000, 500);
    let plan = plan(&store, page, args).await?;
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    assert!(
        plan.contains("resources_kind_ord (kind=? AND ord>?)"),
        "{plan}"
    );
    Ok(())
}

/// What a page and the total are without anything remembered: `count(*)`
/// and `LIMIT ... OFFSET` as they are.
fn fresh_page(
    tx: &Tx<'_>,
    filter: Option<&Expr>,
    offset: i64,
    limit: i64,
) -> Result<(Vec<Session>, i64), ApiError> {
    let scratch = RefCell::new(Memo::default());
    let fresh = Tx {
        conn: tx.conn,
        events: Vec::new(),
        memo: &scratch,
    };
    Ok(fresh.list::<Session>(filter, &[], offset, limit)?)
}

/// Pages through `filter` while `change(step)` writes between two pages;
/// every page and total must be the ones a fresh query gives then.
async fn page_while_changing(
    store: &Store,
    filter: Option<Expr>,
    change: impl Fn(&mut Tx<'_>, i64) -> Result<(), StoreError> + Send + Sync + Clone + 'static,
) -> Result<usize, ApiError> {
    let mut offset = 0;
    let mut pages = 0;
    loop {
        let filter = filter.clone();
        let change = change.clone();
        let (n, same) = store
            .write(move |tx| {
                let (items, total) = tx.list::<Session>(filter.as_ref(), &[], offset, 7)?;
                let (expected, expected_total) = fresh_page(tx, filter.as_ref(), offset, 7)?;
                let same = ids(&items) == ids(&expected) && total == expected_total;
                change(tx, offset)?;
                Ok((items.len(), same))
            })
            .await?;
        assert!(same, "page at offset {offset} differs from a fresh query");
        if n == 0 {
            return Ok(pages);
        }
        pages += 1;
        offset += 7;
    }
}

#[tokio::test]
async fn pages_and_totals_stay_those_of_offset_paging_while_sessions_change() -> Result<(), ApiError>
{
    let store = Store::open(None, Hub::new())?;
    store
        .write(|tx| {
            for i in 0..100 {
                let phase = if i % 3 == 0 { "Running" } else { "Pending" };
                tx.put(&session(&format!("s{i:03}"), phase))?;
            }
            Ok(())
        })
        .await?;
    // Between two pages: a new session, a phase change, and every third
    // page a delete before the current offset.
    let change = |tx: &mut Tx<'_>, offset: i64| {
        let step = offset / 7;
        tx.put(&session(&format!("new{step:03}"), "Running"))?;
        tx.put(&session(&format!("s{:03}", (step * 13) % 100), "Running"))?;
        if step % 3 == 2 {
            tx.delete::<Session>(&format!("s{:03}", step * 2))?;
        }
        Ok(())
    };
    let running = crate::search::parse("phase = 'Running'", Session::COLUMNS)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    assert!(page_while_changing(&store, None, change).await? > 10);
    assert!(page_while_changing(&store, running, change).await? > 3);
    Ok(())
}

#[tokio::test]
async fn a_failed_operation_in_a_batch_changes_nothing_and_the_others_commit()
-> Result<(), ApiError> {
    let store = Store::open(None, Hub::new())?;
    let mut events = store
        .hub()
        .subscribe_resources(crate::events::Kind::Session);
    let mut writes = Vec::new();
    for i in 0..200 {
        let store = store.clone();
        writes.push(tokio::spawn(async move {
            store
                .write(move |tx| {
                    let s = session(&format!("s{i:03}"), "Pending");
                    tx.put(&s)?;
                    tx.publish(Event::Resource(ResourceEvent {
                        event_type: EventType::Created,
                        resource: Resource::Session(Box::new(s)),
                    }));
                    if i % 10 == 0 {
                        return Err(ApiError::invalid("refused"));
                    }
                    Ok(i)
                })
                .await
        }));
    }
    let mut answered = 0;
    for (i, w) in writes.into_iter().enumerate() {
        match w
            .await
            .map_err(|e| failed(StoreError::Task(e.to_string())))?
        {
            Ok(n) => assert_eq!(n, i),
            Err(ApiError::Invalid(_)) => assert_eq!(i % 10, 0),
            Err(e) => return Err(e),
        }
        answered += 1;
    }
    assert_eq!(answered, 200);
    let (stored, total) = store
        .read(|tx| Ok(tx.list::<Session>(None, &[], 0, 1000)?))
        .await?;
    assert_eq!(total, 180);
    let mut stored = ids(&stored);
    stored.sort();
    let committed: Vec<String> = (0..200)
        .filter(|i| i % 10 != 0)
        .map(|i| format!("s{i:03}"))
        .collect();
    assert_eq!(stored, committed);
    // Exactly one event per committed write, none for a refused one.
    let mut published = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let Resource::Session(s) = e.resource {
            published.push(s.id().to_owned());
        }
    }
    published.sort();
    assert_eq!(published, committed);
    Ok(())
}

#[tokio::test]
async fn a_panicking_operation_is_an_error_and_the_store_goes_on() -> Result<(), ApiError> {
    let store = Store::open(None, Hub::new())?;
    let panicked = store
        .write(|tx| -> Result<(), ApiError> {
            tx.put(&session("half", "Pending"))?;
            panic!("an operation's bug");
        })
        .await;
    assert!(matches!(
        panicked,
        Err(ApiError::Store(StoreError::Task(_)))
    ));
    store
        .write(|tx| Ok(tx.put(&session("whole", "Pending"))?))
        .await?;
    let (items, total) = store
        .read(|tx| Ok(tx.list::<Session>(None, &[], 0, 10)?))
        .await?;
    assert_eq!((ids(&items), total), (vec!["whole".to_owned()], 1));
    Ok(())
}
