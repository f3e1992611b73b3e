//! Races and failures, in one process and deterministic: the real informer,
//! queue and reconcilers against a FAKE API server (tests/support/fake_api.rs)
//! that changes things exactly between two calls, and a scripted runtime
//! (tests/support/test_runtime.rs). Not the devserver, not a cluster.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ambient_control_plane::api::Api;
use ambient_control_plane::config::Config;
use ambient_control_plane::daemon::Caches;
use ambient_control_plane::informer::{self, Store};
use ambient_control_plane::metrics::Metrics;
use ambient_control_plane::queue::WorkQueue;
use ambient_control_plane::reconcile::{Controller, Key};
use ambient_control_plane::runtime::{GroupBinding, Observation, Role};
use ambient_protocol::Secret;
use ambient_protocol::v1::Session;
use ambient_token_server::StaticToken;
use clap::Parser;
use support::eventually;
use support::fake_api::FakeApi;
use support::test_runtime::TestRuntime;
use tokio::sync::watch;

fn client(api: &FakeApi) -> Api {
    let provider = Arc::new(StaticToken::new(Secret::new("fake-api-token")));
    Api::new(&api.grpc(), false, None, provider).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Parser)]
struct Defaults {
    #[command(flatten)]
    config: Config,
}

/// Informers and a controller over `api` and `rt` (the workers not started).
struct Plane {
    sessions: Arc<Store<Session>>,
    controller: Arc<Controller>,
    /// Aborted when dropped.
    _informers: tokio::task::JoinSet<()>,
}

fn plane(api: &FakeApi, rt: &Arc<TestRuntime>) -> Plane {
    let client = client(api);
    let queue: WorkQueue<Key> = WorkQueue::new();
    let metrics = Metrics::new();
    let mut informers = tokio::task::JoinSet::new();
    let caches = Caches::informed(
        &client,
        Duration::from_secs(3600),
        &metrics,
        &queue,
        &mut informers,
    );
    let pod_config = Defaults::parse_from(["races"])
        .config
        .pod_config()
        .unwrap_or_else(|e| panic!("{e}"));
    let controller = Arc::new(Controller::new(
        client,
        caches.sessions.clone(),
        caches.projects,
        caches.settings,
        rt.clone(),
        pod_config,
        None,
        queue,
        metrics,
    ));
    Plane {
        sessions: caches.sessions,
        controller,
        _informers: informers,
    }
}

/// Starts the workers as a leader would; send `true` to stop them.
fn lead(p: &Plane) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    (tx, tokio::spawn(p.controller.clone().run(2, rx)))
}

const LIMIT: Duration = Duration::from_secs(20);

/// Item 1: a relist whose offset paging skips a live object (because
/// another one was deleted between two pages) must not synthesise its
/// delete. Every pass is disturbed, so only the confirming `Get` saves it.
#[tokio::test(flavor = "multi_thread")]
async fn relist_never_deletes_an_object_a_page_skipped() {
    let api = FakeApi::start().await;
    api.set_page_cap(2);
    for i in 0..6 {
        api.add_session(&format!("s{i}"), "p", "Running");
    }
    let client = client(&api);
    let store = Store::<Session>::default();
    informer::relist(&client, &store, 500)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(store.len(), 6);
    // Each pass: page 1 served, then a session of page 1 is deleted, so
    // page 2 starts one further and skips a live session.
    for gone in ["s0", "s1", "s2"] {
        api.after_page("session", 1, move |api| {
            api.delete_session(gone);
        });
    }
    // The last pass lists s2 (deleted right after its page: the watch
    // will say so) and skips s4, which only the confirming Get keeps.
    let mut changed = informer::relist(&client, &store, 500)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    changed.sort();
    let mut cached = store.ids();
    cached.sort();
    assert_eq!(
        cached,
        vec!["s2", "s3", "s4", "s5"],
        "a skipped live session was dropped"
    );
    assert_eq!(changed, vec!["s0", "s1"]);
}

/// Item 2: workers aborted mid-reconcile (Lease lost) must not leave their
/// key "active": after leadership returns, the session is reconciled.
#[tokio::test(flavor = "multi_thread")]
async fn keys_reconcile_again_after_losing_and_regaining_the_lease() {
    let api = FakeApi::start().await;
    api.add_project("p");
    api.add_session("s1", "p", "");
    let rt = Arc::new(TestRuntime::default());
    rt.hang_provisions(1);
    let p = plane(&api, &rt);
    let (stop, task) = lead(&p);
    eventually("s1 provisioning hangs", LIMIT, || async {
        rt.called("provision s1")
    })
    .await;
    // Lose the Lease: the workers are stopped mid-reconcile.
    let _ = stop.send(true);
    let _ = task.await;
    assert_eq!(api.phase("s1"), "");
    // Regain it.
    let (_stop, _task) = lead(&p);
    eventually("s1 reconciled after regaining the lease", LIMIT, || async {
        api.phase("s1") == "Creating"
    })
    .await;
}

/// Item 3: a user's Stop written while the session is being provisioned
/// is not overwritten by the Creating computed from the older snapshot.
#[tokio::test(flavor = "multi_thread")]
async fn a_stop_during_provisioning_is_never_overwritten() {
    let api = FakeApi::start().await;
    api.add_project("p");
    api.add_session("s1", "p", "");
    let rt = Arc::new(TestRuntime::default());
    let user = api.clone();
    rt.on_provision(move |id| {
        user.set_phase(id, "Stopping");
    });
    let p = plane(&api, &rt);
    let (_stop, _task) = lead(&p);
    eventually("the stopped session is Stopped", LIMIT, || async {
        api.phase("s1") == "Stopped"
    })
    .await;
    assert!(rt.called("stop s1"));
    assert!(!rt.has_pod("s1"));
}

/// Item 7: a terminal session's pod is deleted (sidecars would run
/// forever); a live one's is kept.
#[tokio::test(flavor = "multi_thread")]
async fn terminal_sessions_lose_their_pod() {
    let api = FakeApi::start().await;
    api.add_project("p");
    for (id, phase) in [("done", "Completed"), ("bad", "Failed"), ("off", "Stopped")] {
        api.add_session(id, "p", phase);
    }
    api.add_session("live", "p", "Running");
    let rt = Arc::new(TestRuntime::default());
    for id in ["done", "bad", "off", "live"] {
        rt.add_pod(id, "p");
    }
    rt.set_observation("live", Observation::Running);
    let p = plane(&api, &rt);
    let (_stop, _task) = lead(&p);
    eventually("terminal sessions' pods deleted", LIMIT, || async {
        ["done", "bad", "off"].iter().all(|id| !rt.has_pod(id))
    })
    .await;
    assert!(rt.has_pod("live"));
    assert!(!rt.called("stop live"));
    assert_eq!(api.phase("live"), "Running");
}

/// Item 5: no provisioning for a project the API does not know, nor in a
/// reserved namespace (the session fails with a reason instead).
#[tokio::test(flavor = "multi_thread")]
async fn sessions_of_unknown_projects_or_reserved_namespaces_fail() {
    let api = FakeApi::start().await;
    api.add_project("kube-system");
    api.add_project("ambient-code");
    api.add_session("orphan", "no-such-project", "");
    api.add_session("sneaky", "kube-system", "");
    api.add_session("own", "ambient-code", "");
    let rt = Arc::new(TestRuntime::default());
    let p = plane(&api, &rt);
    let (_stop, _task) = lead(&p);
    for id in ["orphan", "sneaky", "own"] {
        eventually(&format!("{id} failed"), LIMIT, || async {
            api.phase(id) == "Failed"
        })
        .await;
        assert!(!rt.called(&format!("provision {id}")), "{id} provisioned");
    }
    let why = api
        .session("orphan")
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(why.contains("does not exist"), "{why}");
}

/// Item 6: a project deleted while the control plane was down loses its
/// namespace and group access; a project whose settings were deleted
/// meanwhile loses its group access and keeps its namespace.
#[tokio::test(flavor = "multi_thread")]
async fn projects_and_settings_deleted_while_down_are_cleaned() {
    let api = FakeApi::start().await;
    api.add_project("kept");
    let devs = GroupBinding {
        group: "devs".into(),
        role: Role::Edit,
    };
    let rt = Arc::new(TestRuntime::default());
    rt.add_project_objects("gone", vec![devs.clone()]);
    rt.add_project_objects("kept", vec![devs.clone()]);
    let p = plane(&api, &rt);
    let (_stop, _task) = lead(&p);
    eventually("the deleted project's namespace removed", LIMIT, || async {
        rt.called("remove_project gone")
    })
    .await;
    eventually("group access revoked", LIMIT, || async {
        rt.access("gone").is_empty() && rt.access("kept").is_empty()
    })
    .await;
    assert!(!rt.called("remove_project kept"));
}

/// Item 6 (second half): group access of a project the API does not know
/// is never granted (its namespace would come back).
#[tokio::test(flavor = "multi_thread")]
async fn settings_of_a_deleted_project_grant_nothing() {
    let api = FakeApi::start().await;
    api.add_settings("st1", "gone", r#"[{"groupName":"devs","role":"edit"}]"#);
    api.add_project("kept");
    api.add_settings("st2", "kept", r#"[{"groupName":"ops","role":"view"}]"#);
    let rt = Arc::new(TestRuntime::default());
    let p = plane(&api, &rt);
    let (_stop, _task) = lead(&p);
    eventually("kept's access granted", LIMIT, || async {
        rt.access("kept").len() == 1
    })
    .await;
    eventually("gone's access reconciled", LIMIT, || async {
        rt.called("access gone 0")
    })
    .await;
    assert!(!rt.called("access gone 1"), "{:?}", rt.calls());
}

/// Item 4: an API reply that arrives after the delete event does not
/// bring the session back into the cache (no ghost gets tokens or pods).
#[tokio::test(flavor = "multi_thread")]
async fn a_late_reply_never_resurrects_a_deleted_session() {
    let api = FakeApi::start().await;
    api.add_project("p");
    api.add_session("s1", "p", "");
    let rt = Arc::new(TestRuntime::default());
    let p = plane(&api, &rt);
    eventually("cached", LIMIT, || async { p.sessions.get("s1").is_some() }).await;
    let reply = api.set_phase("s1", "Creating");
    eventually("update seen", LIMIT, || async {
        p.sessions.get("s1").and_then(|s| s.phase).as_deref() == Some("Creating")
    })
    .await;
    api.delete_session("s1");
    eventually("delete seen", LIMIT, || async {
        p.sessions.get("s1").is_none()
    })
    .await;
    // The reply of a status write made just before the delete lands now.
    let mut late = reply.unwrap_or_default();
    if let Some(m) = &mut late.metadata
        && let Some(t) = &mut m.updated_at
    {
        t.seconds += 100;
    }
    assert!(!p.sessions.upsert(late));
    assert!(p.sessions.get("s1").is_none(), "a ghost session is cached");
}

/// Item 10: a hung API call has a deadline.
#[tokio::test(flavor = "multi_thread")]
async fn a_hung_api_call_ends_with_deadline_exceeded() {
    let api = FakeApi::start().await;
    api.add_session("s1", "p", "");
    api.hang_next("GetSession", 1);
    let client = client(&api).with_timeout(Duration::from_millis(300));
    let answer = tokio::time::timeout(LIMIT, client.get_session("s1")).await;
    let Ok(Err(e)) = answer else {
        panic!("the hung call did not end with an error: {answer:?}");
    };
    assert!(e.to_string().contains("DeadlineExceeded"), "{e}");
    // The next call is answered.
    assert!(client.get_session("s1").await.is_ok());
}

/// Item 11: the re-provision memory lives with the session's objects: a
/// control plane that restarted (empty memory) still fails a session whose
/// pod vanished after its one re-provision.
#[tokio::test(flavor = "multi_thread")]
async fn the_reprovision_memory_survives_a_restart() {
    let api = FakeApi::start().await;
    api.add_project("p");
    api.add_session("again", "p", "Running");
    api.add_session("first", "p", "Running");
    api.add_session("restarted", "p", "");
    let rt = Arc::new(TestRuntime::default());
    // A previous control plane re-provisioned "again" once; both pods are
    // gone now. "restarted" was re-provisioned in its last run, then restarted.
    rt.set_reprovisions("again", 1);
    rt.set_reprovisions("restarted", 1);
    let p = plane(&api, &rt);
    let (_stop, _task) = lead(&p);
    eventually("again failed", LIMIT, || async {
        api.phase("again") == "Failed"
    })
    .await;
    assert!(!rt.called("provision again"), "{:?}", rt.calls());
    eventually("first re-provisioned", LIMIT, || async {
        rt.called("provision first")
    })
    .await;
    assert_eq!(api.phase("first"), "Running");
    assert_eq!(rt.reprovisions_of("first"), Some(1));
    // A (re)started session starts counting again.
    eventually("restarted provisioned", LIMIT, || async {
        api.phase("restarted") == "Creating"
    })
    .await;
    assert_eq!(rt.reprovisions_of("restarted"), Some(0));
}
