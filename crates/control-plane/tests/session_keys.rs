//! Exchange v3 on Kubernetes, with a FAKE Kubernetes API
//! (tests/support/fake_kube — not a cluster): the root keys in the keypair
//! Secret (one winner between two replicas), each pod's session key file in
//! its session Secret before the pod exists, mounted read-only (0444) into the
//! containers that exchange (never a pod spec value), a v3 exchange bound to
//! the pod's generation, and the key files rewritten after a root rotation
//! while the old root still verifies.

mod support;

use std::time::{Duration, SystemTime};

use ambient_protocol::exchange::v3::SessionKeyFile;
use base64::Engine as _;
use integration_tests::TempDir;
use serde_json::Value;
use support::exchange::*;
use support::*;

const KEY_FILE: &str = "session-key.json";
const MOUNT: &str = "/var/run/ambient/session-key";
const GENERATION: &str = "ambient-code.io/generation";

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn secret_name(id: &str) -> String {
    format!("session-{}-secrets", safe(id))
}

/// The session's key file as its Secret holds it (raw JSON and parsed).
fn key_file(kube: &FakeKube, ns: &str, id: &str) -> Option<(String, SessionKeyFile)> {
    let secret = kube.get("secrets", ns, &secret_name(id))?;
    let raw = String::from_utf8(b64(secret["data"][KEY_FILE].as_str()?)).ok()?;
    let file = SessionKeyFile::parse(raw.as_bytes()).ok()?;
    Some((raw, file))
}

/// The `key` of a key file's JSON.
fn key_of(raw: &str) -> String {
    let json: Value = serde_json::from_str(raw).unwrap_or_default();
    json["key"].as_str().unwrap_or_default().to_owned()
}

/// A v3 exchange with `file` at the token server `addr`.
async fn exchange_v3(addr: std::net::SocketAddr, file: &SessionKeyFile) -> (u16, Value) {
    let header = file
        .authorization("GET", "/token", SystemTime::now())
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}/token"))
        .header("authorization", header)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn root_index(kube: &FakeKube) -> Value {
    let secret = kube
        .get("secrets", "ambient-code", "ambient-cp-token-keypair")
        .unwrap_or_default();
    let raw = secret["data"]["session-root-index"]
        .as_str()
        .unwrap_or_default();
    serde_json::from_slice(&b64(raw)).unwrap_or_default()
}

/// Writes into the keypair Secret what a leader that promoted a fresh
/// root leaves (`retired` verifies 600 s more); returns the new root.
fn promote_root(kube: &FakeKube, retired: &str) -> ambient_protocol::exchange::v3::RootKey {
    let root =
        ambient_protocol::exchange::v3::RootKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let mut keypair = kube
        .get("secrets", "ambient-code", "ambient-cp-token-keypair")
        .unwrap_or_else(|| panic!("no keypair Secret"));
    let until = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 600;
    let index =
        serde_json::json!({"current": root.kid(), "retired": [{"kid": retired, "until": until}]});
    let b64e = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    keypair["data"][format!("session-root-{}", root.kid())] =
        b64e(root.to_base64().expose()).into();
    keypair["data"]["session-root-index"] = b64e(&index.to_string()).into();
    keypair["metadata"]
        .as_object_mut()
        .map(|m| m.remove("resourceVersion"));
    kube.put("secrets", "ambient-code", keypair);
    root
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pods_key_file_is_in_its_secret_before_it_starts_and_exchanges_v3_at_every_replica() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-session-keys");
    // Two replicas bootstrap the keypair Secret at once: one root wins.
    let a = control_plane(&dev, &kube, &dir, "cp-a", true);
    let b = control_plane(&dev, &kube, &dir, "cp-b", true);
    let ns = &dev.project("proj-v3").await;
    let id = dev.new_session(ns, "v3").await;
    wait_phase(&dev, &id, "Creating").await;

    let (raw, file) = key_file(&kube, ns, &id).unwrap_or_else(|| panic!("no key file"));
    let key = key_of(&raw);
    assert!(key.len() > 40);
    let pod = kube
        .get("pods", ns, &pod_name(&id))
        .unwrap_or_else(|| panic!("no pod"));
    let generation = pod["metadata"]["annotations"][GENERATION]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(file.session_id(), id);
    assert_eq!(
        file.generation(),
        generation,
        "derived for the pod's generation"
    );
    assert_ne!(
        Some(generation.as_str()),
        pod["metadata"]["uid"].as_str(),
        "the generation is the control plane's, not the UID"
    );
    assert_eq!(
        file.kid(),
        root_index(&kube)["current"].as_str().unwrap_or_default()
    );
    // The Secret was written before the pod was created.
    let requests = kube.requests();
    let first = |plural: &str, name: &str| {
        requests
            .iter()
            .position(|r| r.plural == plural && r.name == name && r.method != "GET")
            .unwrap_or_else(|| panic!("no write of {plural}/{name}"))
    };
    assert!(first("secrets", &secret_name(&id)) < first("pods", &pod_name(&id)));

    // The mount: the key alone, read-only, 0444, a directory (no subPath),
    // in every container (runner and ambient-mcp here), the path in the
    // environment; the key itself nowhere in the pod.
    assert!(!pod.to_string().contains(&key), "K_s in the pod spec");
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let volume = volumes
        .iter()
        .find(|v| v["name"] == "session-key")
        .unwrap_or_else(|| panic!("no session-key volume: {volumes:?}"));
    assert_eq!(volume["secret"]["secretName"], secret_name(&id).as_str());
    assert_eq!(volume["secret"]["defaultMode"], 0o444);
    assert_eq!(
        volume["secret"]["items"],
        serde_json::json!([{"key": KEY_FILE, "path": KEY_FILE, "mode": 0o444}])
    );
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<_> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["ambient-code-runner", "ambient-mcp"]);
    for c in &containers {
        let mounts = c["volumeMounts"].as_array().cloned().unwrap_or_default();
        let m = mounts
            .iter()
            .find(|m| m["name"] == "session-key")
            .unwrap_or_else(|| panic!("{}: no key mount", c["name"]));
        assert_eq!(m["mountPath"], MOUNT);
        assert_eq!(m["readOnly"], true);
        assert!(m.get("subPath").is_none(), "a subPath mount never updates");
        let env = c["env"].as_array().cloned().unwrap_or_default();
        let path = env
            .iter()
            .find(|e| e["name"] == "AMBIENT_SESSION_KEY_FILE")
            .and_then(|e| e["value"].as_str());
        assert_eq!(path, Some(format!("{MOUNT}/{KEY_FILE}").as_str()));
    }

    // A v3 exchange from the pod: a session token of this generation, at
    // the leader and at the follower alike (both hold the winning root).
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    wait_phase(&dev, &id, "Running").await;
    for cp in [&a, &b] {
        let (code, body) = exchange_v3(cp.addr("token server"), &file).await;
        assert_eq!(code, 200, "{body}");
        let claims = claims(body["token"].as_str().unwrap_or_default());
        assert_eq!(claims["sid"], id.as_str(), "{claims}");
        assert_eq!(claims["gen"], generation.as_str(), "{claims}");
    }
    // Not from the pod: refused.
    run_pod_at(&kube, ns, &id, "10.9.9.9");
    let (code, _) = exchange_v3(a.addr("token server"), &file).await;
    assert_eq!(code, 403);
    for cp in [&a, &b] {
        assert!(!cp.logs().contains(&key), "K_s in a control plane's log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_root_rotation_rewrites_live_key_files_and_the_old_root_still_verifies() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-session-key-rotation");
    // A step every 5 s: publish, then promote.
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("CP_SESSION_KEY_ROTATION_SECONDS", "10"),
        ("CP_SESSION_KEY_RELOAD_SECONDS", "1"),
    ];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", true, &env);
    let ns = &dev.project("proj-v3-rot").await;
    let id = dev.new_session(ns, "rotation").await;
    wait_phase(&dev, &id, "Creating").await;
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let (_, old) = key_file(&kube, ns, &id).unwrap_or_else(|| panic!("no key file"));
    let old_kid = old.kid().to_owned();

    // The next root is published (in the Secret's index) before any key
    // file is derived from it; then the live key file is rewritten.
    let mut published_first = false;
    eventually(
        "the key file to be rewritten",
        Duration::from_secs(60),
        || {
            let index = root_index(&kube);
            let rewritten = key_file(&kube, ns, &id).map(|(_, f)| f.kid().to_owned());
            if index["next"].is_string() && rewritten.as_deref() == Some(old_kid.as_str()) {
                published_first = true;
            }
            let done = rewritten.is_some_and(|k| k != old_kid);
            async move { done }
        },
    )
    .await;
    assert!(published_first, "a root derived before it was published");
    let (_, new) = key_file(&kube, ns, &id).unwrap_or_else(|| panic!("no key file"));
    assert_eq!(
        new.generation(),
        old.generation(),
        "same pod, same generation"
    );
    let index = root_index(&kube);
    assert_eq!(index["current"], new.kid());
    assert_eq!(index["retired"][0]["kid"], old_kid.as_str(), "{index}");

    let token_server = cp.addr("token server");
    let (code, body) = exchange_v3(token_server, &new).await;
    assert_eq!(code, 200, "the rewritten key file: {body}");
    let (code, body) = exchange_v3(token_server, &old).await;
    assert_eq!(
        code, 200,
        "the old root verifies for a token lifetime: {body}"
    );
}

/// A rewrite after a promotion that fails (the API server refuses the
/// session Secret's patch more often than a pass tries) is tried again
/// until the key file derives from the new root. Before, three failed
/// tries were logged and the file kept the old root, which stops verifying
/// one token lifetime later.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_key_file_rewrite_is_retried_until_it_converges() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-session-key-retry");
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        // A step every 8 s: the next promotion (which rewrites anew) is
        // far behind the retries of the first one, 1 s apart.
        ("CP_SESSION_KEY_ROTATION_SECONDS", "16"),
        ("CP_SESSION_KEY_RELOAD_SECONDS", "1"),
    ];
    let cp = control_plane_with(&dev, &kube, &dir, "cp-a", true, &env);
    let ns = &dev.project("proj-v3-retry").await;
    let id = dev.new_session(ns, "retry").await;
    wait_phase(&dev, &id, "Creating").await;
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let (_, old) = key_file(&kube, ns, &id).unwrap_or_else(|| panic!("no key file"));
    // Once the next root is published, the Secret's next writes fail.
    eventually("the next root", Duration::from_secs(30), || {
        let published = root_index(&kube)["next"].is_string();
        async move { published }
    })
    .await;
    // More failures than the three quick tries a pass once made.
    kube.fail_next("secrets", &secret_name(&id), &[500; 4]);
    eventually(
        "the key file to be rewritten",
        Duration::from_secs(60),
        || {
            let kid = key_file(&kube, ns, &id).map(|(_, f)| f.kid().to_owned());
            let done = kid.is_some_and(|k| k != old.kid());
            async move { done }
        },
    )
    .await;
    let refused = kube
        .requests()
        .iter()
        .filter(|r| r.plural == "secrets" && r.name == secret_name(&id) && r.status == 500)
        .count();
    assert_eq!(refused, 4, "every injected failure was met first");
    let (_, new) = key_file(&kube, ns, &id).unwrap_or_else(|| panic!("no key file"));
    let index = root_index(&kube);
    assert_eq!(index["current"], new.kid());
    assert_eq!(
        index["retired"][0]["kid"],
        old.kid(),
        "rewritten after the first promotion, not by a later one: {index}"
    );
    let (code, body) = exchange_v3(cp.addr("token server"), &new).await;
    assert_eq!(code, 200, "the rewritten key file: {body}");
}

/// A new leader rewrites the live key files once: its predecessor may have
/// promoted a root and died before rewriting them. And the rewrite writes
/// no key for a pod that only looks like a session's (our labels, another
/// namespace, another name, or another project's namespace with that
/// project's label): such a pod can be made by anyone who may create pods,
/// and would otherwise get a key, or overwrite the session's.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_rewrites_stale_key_files_but_never_for_look_alike_pods() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-session-key-leader");
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("CP_SESSION_KEY_ROTATION_SECONDS", "3600"),
        ("CP_SESSION_KEY_RELOAD_SECONDS", "1"),
    ];
    let ns = &dev.project("proj-v3-leader").await;
    // A project whose admin may create pods and Secrets in its namespace.
    let tenant = &dev.project("proj-v3-tenant").await;
    let id;
    let old;
    {
        let _first = control_plane_with(&dev, &kube, &dir, "cp-a", false, &env);
        id = dev.new_session(ns, "leader").await;
        wait_phase(&dev, &id, "Creating").await;
        run_pod_at(&kube, ns, &id, "127.0.0.1");
        old = key_file(&kube, ns, &id)
            .unwrap_or_else(|| panic!("no key file"))
            .1;
    }
    // What a leader that promoted a new root and died before rewriting
    // leaves: the keypair Secret names the new root current.
    let root = promote_root(&kube, old.kid());
    // Two look-alikes of the session's pod: its labels and key volume, one
    // in another namespace, one beside it under another name (with a
    // generation of its own).
    let pod = kube
        .get("pods", ns, &pod_name(&id))
        .unwrap_or_else(|| panic!("no pod"));
    let look_alike = |ns: &str, name: &str| {
        let mut p = pod.clone();
        let meta = &mut p["metadata"];
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "ownerReferences",
        ] {
            meta.as_object_mut().map(|m| m.remove(field));
        }
        meta["namespace"] = ns.into();
        meta["name"] = name.into();
        meta["annotations"][GENERATION] = "intruder-generation".into();
        p
    };
    kube.put("pods", "intruder", look_alike("intruder", &pod_name(&id)));
    kube.put("pods", ns, look_alike(ns, "not-the-session-pod"));
    // The tenant's look-alike is consistent in itself (its own project's
    // label, in that project's namespace, named as the session's pod) and
    // has a Secret of the session's name to receive the key: the session
    // is not the tenant project's, so nothing is written there.
    let mut in_tenant = look_alike(tenant, &pod_name(&id));
    in_tenant["metadata"]["labels"]["ambient-code.io/project-id"] = tenant.as_str().into();
    kube.put("pods", tenant, in_tenant);
    kube.put(
        "secrets",
        tenant,
        serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": secret_name(&id), "namespace": tenant}}),
    );

    let second = control_plane_with(&dev, &kube, &dir, "cp-b", false, &env);
    eventually(
        "the new leader to rewrite the key file",
        Duration::from_secs(30),
        || {
            let kid = key_file(&kube, ns, &id).map(|(_, f)| f.kid().to_owned());
            let done = kid.as_deref() == Some(root.kid());
            async move { done }
        },
    )
    .await;
    let (_, new) = key_file(&kube, ns, &id).unwrap_or_else(|| panic!("no key file"));
    assert_eq!(
        new.generation(),
        old.generation(),
        "the session pod's generation"
    );
    assert!(
        kube.get("secrets", "intruder", &secret_name(&id)).is_none(),
        "a key written for a pod in another namespace"
    );
    assert!(
        key_file(&kube, tenant, &id).is_none(),
        "the session's key written for the tenant's look-alike"
    );
    let logs = second.logs();
    assert!(
        logs.contains("outside its session's place"),
        "the look-alikes were not noticed: {logs}"
    );
    let (code, body) = exchange_v3(second.addr("token server"), &new).await;
    assert_eq!(code, 200, "{body}");
}

/// A follower that becomes leader rewrites with the roots the keypair
/// Secret holds then, not with what it last reloaded: its predecessor may
/// have promoted a root since. It rewrote every key file under the root
/// just retired before (seen failing: the file kept the old root).
#[tokio::test(flavor = "multi_thread")]
async fn a_follower_taking_the_lead_rewrites_with_the_roots_of_the_secret_now() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-session-key-handover");
    // Neither replica re-reads the keys by itself during the test.
    let env = [
        ("AMBIENT_API_TOKEN", TOKEN),
        ("CP_SESSION_KEY_ROTATION_SECONDS", "36000"),
        ("CP_SESSION_KEY_RELOAD_SECONDS", "3600"),
    ];
    let a = control_plane_with(&dev, &kube, &dir, "cp-a", true, &env);
    let b = control_plane_with(&dev, &kube, &dir, "cp-b", true, &env);
    let leading = |logs: &str| logs.contains("leading: starting reconcile workers");
    eventually("one leader", Duration::from_secs(20), || async {
        leading(&a.logs()) || leading(&b.logs())
    })
    .await;
    let (mut leader, follower) = if leading(&a.logs()) { (a, b) } else { (b, a) };
    let ns = &dev.project("proj-v3-handover").await;
    let id = dev.new_session(ns, "handover").await;
    wait_phase(&dev, &id, "Creating").await;
    run_pod_at(&kube, ns, &id, "127.0.0.1");
    let (_, old) = key_file(&kube, ns, &id).unwrap_or_else(|| panic!("no key file"));
    let root = promote_root(&kube, old.kid());
    let status = leader.terminate(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    eventually("the follower leads", Duration::from_secs(30), || async {
        leading(&follower.logs())
    })
    .await;
    eventually(
        "the key file under the Secret's current root",
        Duration::from_secs(20),
        || {
            let kid = key_file(&kube, ns, &id).map(|(_, f)| f.kid().to_owned());
            let done = kid.as_deref() == Some(root.kid());
            async move { done }
        },
    )
    .await;
}

/// The rewrite itself, in process against the fake: a Secret holding the
/// key of another generation of the session's pod (a newer pod, written by
/// its provisioning while the pass listed the old one) is left alone; one
/// holding this pod's generation under an older root is rewritten, once
/// (a second pass writes nothing). Before, the pass wrote over whatever
/// the Secret held.
#[tokio::test(flavor = "multi_thread")]
async fn a_rewrite_leaves_another_generations_key_and_writes_a_stale_one_once() {
    use ambient_control_plane::config::PlatformMode;
    use ambient_control_plane::informer::Store;
    use ambient_control_plane::names;
    use ambient_control_plane::runtime::SessionRuntime as _;
    use ambient_control_plane::runtime::kube::KubeRuntime;
    use ambient_protocol::exchange::v3::{RootKey, RootKeys};
    use ambient_protocol::v1::{ObjectReference, Project, Session};
    use std::sync::Arc;

    let kube = FakeKube::start().await;
    let dir = TempDir::new("cp-rewrite-generations");
    let kubeconfig = kube::config::Kubeconfig::read_from(kube.kubeconfig(dir.path()))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}"));
    let (project, id, installation) = ("proj-gen", "kc0gq8ow0k4y6i7tjq2tjx3e", "inst-gen");
    let meta = |id: &str| {
        Some(ObjectReference {
            id: id.into(),
            ..Default::default()
        })
    };
    let projects = Arc::new(Store::<Project>::default());
    projects.upsert(Project {
        metadata: meta(project),
        ..Default::default()
    });
    let sessions = Arc::new(Store::<Session>::default());
    sessions.upsert(Session {
        metadata: meta(id),
        project_id: Some(project.into()),
        ..Default::default()
    });
    let runtime = KubeRuntime::new(client.clone(), PlatformMode::Standard, installation)
        .knowing(projects, sessions);
    let ns = names::namespace(PlatformMode::Standard, project);
    let labels = names::session_labels(id, project, installation);
    kube.put(
        "pods",
        &ns,
        serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": names::pod_name(id), "namespace": ns, "labels": labels,
                "annotations": {names::ANNOTATION_GENERATION: "gen-old"}},
            "spec": {"containers": [{"name": "ambient-code-runner", "image": "runner"}],
                "volumes": [{"name": names::SESSION_KEY_VOLUME,
                    "secret": {"secretName": names::secret_name(id)}}]}}),
    );
    let old_root = RootKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let old =
        RootKeys::new(installation, vec![old_root.clone()]).unwrap_or_else(|| panic!("roots"));
    let put_key = |generation: &str| {
        let file = old.key_file(id, generation).to_json();
        kube.put(
            "secrets",
            &ns,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": names::secret_name(id), "namespace": ns},
                "data": {KEY_FILE: base64::engine::general_purpose::STANDARD.encode(file.expose())}}),
        );
    };
    let new_root = RootKey::generate().unwrap_or_else(|e| panic!("{e}"));
    let new = RootKeys::new(installation, vec![new_root.clone(), old_root.clone()])
        .unwrap_or_else(|| panic!("roots"));
    let held = || {
        let (_, f) = key_file(&kube, &ns, id).unwrap_or_else(|| panic!("no key file"));
        (f.generation().to_owned(), f.kid().to_owned())
    };

    put_key("gen-newer");
    let n = runtime
        .rewrite_session_keys(&new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 0);
    assert_eq!(held(), ("gen-newer".to_owned(), old_root.kid().to_owned()));

    put_key("gen-old");
    let n = runtime
        .rewrite_session_keys(&new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n, 1);
    assert_eq!(held(), ("gen-old".to_owned(), new_root.kid().to_owned()));
    let patches = || {
        kube.requests()
            .iter()
            .filter(|r| r.plural == "secrets" && r.method == "PATCH")
            .count()
    };
    let before = patches();
    let n = runtime
        .rewrite_session_keys(&new)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (n, patches()),
        (0, before),
        "a current key is written again"
    );

    // The precondition the rewrite's patch carries: a Secret changed since
    // it was read (another resourceVersion) is not written.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client, &ns);
    let stale = serde_json::json!({"metadata": {"resourceVersion": "1"}, "data": {}});
    let refused = secrets
        .patch(
            &names::secret_name(id),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&stale),
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 409),
        "{refused:?}"
    );
    assert_eq!(held(), ("gen-old".to_owned(), new_root.kid().to_owned()));
}
