//! The data directory: private modes before SQLite opens anything, and the
//! upgrade (or clear refusal) of a directory an older devserver wrote.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::{Rest, s};
use integration_tests::TempDir;
use reqwest::{Method, StatusCode};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ambient-devserver");
const DB: &str = "devserver.sqlite3";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn data_dir_is_0700_and_database_0600() {
    let tmp = TempDir::new("devserver-modes");
    let dir = tmp.path().join("nested/data");
    let d = common::start(&["--data-dir", &dir.to_string_lossy()]);
    Rest::new(&d)
        .post(
            "credentials",
            json!({"name": "c", "provider": "github", "token": "t"}),
        )
        .await;
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(
        mode(&tmp.path().join("nested")),
        0o700,
        "created parents too"
    );
    for f in [DB, "devserver.sqlite3-wal", "devserver.sqlite3-shm"] {
        let p = dir.join(f);
        if f == DB || p.exists() {
            assert_eq!(mode(&p), 0o600, "{f}");
        }
    }
    drop(d);

    // An existing database file with a wider mode is tightened before use.
    let file = dir.join(DB);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("{e}"));
    let d = common::start(&["--data-dir", &dir.to_string_lossy()]);
    let (st, _) = Rest::new(&d).get("sessions").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(mode(&file), 0o600);
}

/// Rewrites the database as an older devserver left it: data version 0.
fn downgrade(dir: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(dir.join(DB)).unwrap_or_else(|e| panic!("{e}"));
    conn.execute_batch(sql).unwrap_or_else(|e| panic!("{e}"));
    conn.pragma_update(None, "user_version", 0)
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_old_data_dir_is_reindexed_or_refused_in_one_line() {
    let tmp = TempDir::new("devserver-upgrade");
    let dir = tmp.path().to_string_lossy().into_owned();
    let mut d = common::start(&["--data-dir", &dir]);
    let rest = Rest::new(&d);
    let session = rest
        .create_session(json!({"name": "kept", "llm_model": "m9"}))
        .await;
    rest.post("projects", json!({"name": "named"})).await;
    d.kill();
    drop(d);

    // Version 0 with a narrow index but name-shaped project IDs: upgraded,
    // every column searchable again.
    downgrade(tmp.path(), "UPDATE resources SET idx = '{}'");
    let mut d = common::start(&["--data-dir", &dir]);
    let rest = Rest::new(&d);
    let (st, v) = rest
        .send(
            rest.request(Method::GET, "sessions")
                .query(&[("search", "llm_model = 'm9'")]),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["items"][0]["id"], s(&session, "id"), "{v}");
    d.kill();
    drop(d);

    // Version 0 with a random project ID: refused, one line, data untouched.
    downgrade(
        tmp.path(),
        "UPDATE resources SET id = '0a1b2c3d4e5f6g7h8i9j0k1l' WHERE kind = 'Project'",
    );
    let out = common::run_to_exit(
        Command::new(BIN)
            .args(["--data-dir", &dir])
            .env("AMBIENT_DEVSERVER_TOKEN", "t")
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ]),
        "ambient-devserver on a data directory with random project IDs",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started on mixed IDs: {err}");
    assert!(out.stdout.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("random IDs") && err.contains("move the data directory away"),
        "{err}"
    );
    let conn = rusqlite::Connection::open(tmp.path().join(DB)).unwrap_or_else(|e| panic!("{e}"));
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(version, 0, "a refused upgrade wrote nothing");
}
