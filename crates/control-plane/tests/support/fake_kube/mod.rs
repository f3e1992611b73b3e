//! A FAKE Kubernetes API server for tests — not a real one. There is no
//! API server on the machines the suite runs on, so everything the control
//! plane does with Kubernetes is tested against this fake: it aims to be as
//! strict as a real one where the control plane depends on it, and says
//! here (and in each module's doc) what it leaves out.
//!
//! Over HTTP on a loopback port, JSON only, it serves:
//! - GET; LIST with label and field selectors, `limit` and `continue`
//!   (`lists`: 400 for a selector it does not understand, 410 for a
//!   continue token older than a compaction); WATCH (`watch`: JSON lines
//!   replaying events newer than `resourceVersion`, then live; 410 when
//!   compacted; bookmarks; `timeoutSeconds`);
//! - POST (409 AlreadyExists), PUT (409 on a stale resourceVersion),
//!   PATCH: server-side apply and merge/strategic patches (`ssa`: lists
//!   merged by their merge keys, fields a manager stopped applying
//!   removed, field ownership recorded for every write, 409 conflicts
//!   without `force`; a `resourceVersion` in a patch is a precondition,
//!   409 when stale), the `status` subresource (`apply`: a main-resource
//!   write never changes `status`, a `/status` write nothing else);
//! - DELETE (`deletion`): finalizers, `propagationPolicy`, graceful pod
//!   termination, a namespace Terminating until emptied (refusing new
//!   objects with 403), asynchronous garbage collection of owned objects;
//! - admission (`admission`): names and labels validated (422), defaults
//!   filled in, PodSecurity `restricted` on pods, injectable webhook
//!   denials (403); a Pod's spec is immutable (422); objects in a missing
//!   namespace are 404;
//! - authorisation (`rbac`): every request against
//!   `crates/control-plane/rbac.yaml` (verb, group, resource, subresource,
//!   scope, resourceNames, `bind` for granted ClusterRoles), 403 otherwise
//!   and listed by `denied`; what it allowed is recorded for the suite-wide
//!   comparison with rbac.yaml.
//!
//! A kubelet stand-in (`kubelet`) moves a pod's containers through the
//! states a node reports. Tests can inject failures per object
//! (`fail_next`), per namespace (`fail_next_in`) or per verb
//! (`fail_next_verb`, [`HANG`]), compact the event log, break every watch,
//! and read every request made (each recorded once, with its status).
//!
//! Every request is authorised against `crates/control-plane/rbac.yaml`
//! (see `rbac`); a SelfSubjectAccessReview is answered from the same rules,
//! and `revoke` takes a verb away (a cluster granting less).
//!
//! Not modelled: protobuf, authentication (every bearer is the control
//! plane's service account; bearers are recorded), API discovery beyond the
//! kinds listed in `addressing::kind_of`, `managedFields` in responses,
//! schema validation beyond names and labels, quotas and LimitRanges,
//! dry runs, the snapshot consistency of paged lists, controllers other
//! than the garbage collector (no Deployments, no Services' endpoints),
//! real time (grace periods and back-offs are short or states).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::broadcast;

mod addressing;
mod admission;
mod apply;
mod deletion;
mod kubelet;
mod lists;
mod rbac;
mod serve;
mod ssa;
mod watch;

use addressing::matches_selector;
use addressing::{Target, kind_of, status};
pub use kubelet::Container;
use rbac::Rbac;

/// (plural, namespace, name); namespace is "" for cluster-scoped objects.
pub type ObjKey = (String, String, String);

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub plural: String,
    pub kind: &'static str,
    pub object: Value,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub plural: String,
    pub namespace: String,
    pub name: String,
    /// For PATCH/POST: whether the object existed before.
    pub existed: bool,
    pub status: u16,
}

struct StoreState {
    /// (plural, bearer token or "") of every request, in order.
    bearers: Vec<(String, String)>,
    objects: BTreeMap<ObjKey, Value>,
    /// Field owners per object (manager → its fields), see `ssa`.
    owners: HashMap<ObjKey, ssa::Owners>,
    /// Injected admission webhook denials, by plural (`deny_next`).
    denials: HashMap<String, VecDeque<admission::Denial>>,
    /// The PodSecurity level of namespaces without an `enforce` label.
    pod_security_default: String,
    rv: u64,
    uid: u64,
    log: Vec<WatchEvent>,
    faults: HashMap<(String, String), VecDeque<u16>>,
    /// (verb, plural) → codes the next such requests answer.
    verb_faults: HashMap<(String, String), VecDeque<u16>>,
    requests: Vec<Request>,
    /// Events up to this resourceVersion were compacted away.
    compacted: u64,
    /// How long a deleted pod stays Terminating.
    pod_grace: std::time::Duration,
    /// Terminating pods and namespaces still in their grace period.
    in_grace: std::collections::HashSet<ObjKey>,
    /// What the control plane is granted (rbac.yaml).
    rbac: Rbac,
    /// Every request refused by `rbac`, as the API server words it.
    denied: Vec<String>,
    /// Every (group, resource, verb) `rbac` allowed so far.
    used: std::collections::BTreeSet<(String, String, String)>,
    /// Whether the requests are the control plane's (recorded for the
    /// suite-wide comparison with rbac.yaml); off for tests of the fake.
    records_access: bool,
}

/// A fault "code" for [`FakeKube::fail_next_verb`]: the request is read and
/// recorded (with status 0) but never answered; the connection stays open.
pub const HANG: u16 = 0;

#[derive(Clone)]
pub struct FakeKube {
    pub addr: SocketAddr,
    state: Arc<Mutex<StoreState>>,
    events: broadcast::Sender<WatchEvent>,
    /// Bumped to end every open watch.
    epoch: Arc<tokio::sync::watch::Sender<u64>>,
}

impl FakeKube {
    pub async fn start() -> FakeKube {
        let state = Arc::new(Mutex::new(StoreState {
            bearers: Vec::new(),
            objects: BTreeMap::new(),
            owners: HashMap::new(),
            denials: HashMap::new(),
            pod_security_default: "restricted".into(),
            rv: 0,
            uid: 0,
            log: Vec::new(),
            faults: HashMap::new(),
            verb_faults: HashMap::new(),
            requests: Vec::new(),
            compacted: 0,
            pod_grace: std::time::Duration::from_millis(300),
            in_grace: Default::default(),
            rbac: Rbac::of_the_control_plane(),
            denied: Vec::new(),
            used: Default::default(),
            records_access: true,
        }));
        let (events, _) = broadcast::channel(4096);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let fake = FakeKube {
            addr,
            state,
            events,
            epoch: Arc::new(tokio::sync::watch::channel(0).0),
        };
        // Like a real cluster: the control plane's namespace and `default` exist.
        for ns in ["ambient-code", "default"] {
            fake.put("namespaces", "", json!({"metadata": {"name": ns}}));
        }
        let app = axum::Router::new()
            .fallback(serve::handle)
            .with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A kubeconfig pointing at this fake (default namespace `ambient-code`).
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: ambient-code\ncurrent-context: fake\n",
            self.addr
        );
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    /// (plural, bearer token or "") of every request so far.
    pub fn bearers(&self) -> Vec<(String, String)> {
        self.lock().bearers.clone()
    }

    pub fn get(&self, plural: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(plural.into(), ns.into(), name.into()))
            .cloned()
    }

    /// Names of every `plural` object (namespace/name), optionally filtered by label selector.
    pub fn names(&self, plural: &str, selector: &str) -> Vec<String> {
        self.lock()
            .objects
            .iter()
            .filter(|((p, _, _), o)| p == plural && matches_selector(o, selector))
            .map(|((_, ns, name), _)| {
                if ns.is_empty() {
                    name.clone()
                } else {
                    format!("{ns}/{name}")
                }
            })
            .collect()
    }

    /// Every request so far (each recorded once, with its answer's status).
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// A fake whose clients are tests, not the control plane: what it
    /// allows is not counted as the control plane's use of rbac.yaml.
    pub async fn start_for_tests_of_the_fake() -> FakeKube {
        let fake = FakeKube::start().await;
        fake.lock().records_access = false;
        fake
    }

    /// From now on, `verb` on `resource` of API group `group` is not
    /// granted (requests and SelfSubjectAccessReviews alike).
    pub fn revoke(&self, verb: &str, group: &str, resource: &str) {
        let mut s = self.lock();
        s.rbac = s.rbac.clone().without(verb, group, resource);
    }

    /// Grants exactly rbac.yaml again.
    pub fn restore_rbac(&self) {
        self.lock().rbac = Rbac::of_the_control_plane();
    }

    /// The SelfSubjectAccessReviews answered so far.
    pub fn reviews(&self) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.plural == "selfsubjectaccessreviews" && r.status == 201)
            .count()
    }

    /// Every request rbac.yaml does not allow (answered 403), described.
    pub fn denied(&self) -> Vec<String> {
        self.lock().denied.clone()
    }

    /// The next requests on any `plural` object in namespace `ns` answer `codes`.
    pub fn fail_next_in(&self, plural: &str, ns: &str, codes: &[u16]) {
        self.lock()
            .faults
            .entry((plural.into(), format!("ns:{ns}")))
            .or_default()
            .extend(codes.iter().copied());
    }

    /// The next requests on `plural/name` (any verb but list/watch) answer `codes`.
    pub fn fail_next(&self, plural: &str, name: &str, codes: &[u16]) {
        self.lock()
            .faults
            .entry((plural.into(), name.into()))
            .or_default()
            .extend(codes.iter().copied());
    }

    /// The next `verb` requests (`GET`, `LIST`, `WATCH`, `POST`, `PUT`,
    /// `APPLY`, `PATCH`, `DELETE`) on `plural` answer `codes` (504 = a timeout
    /// the server reports; [`HANG`] = no answer at all, ever).
    pub fn fail_next_verb(&self, verb: &str, plural: &str, codes: &[u16]) {
        self.lock()
            .verb_faults
            .entry((verb.into(), plural.into()))
            .or_default()
            .extend(codes.iter().copied());
    }

    /// Compacts the event log: a watch from an older resourceVersion gets
    /// 410 Gone and must relist.
    pub fn compact(&self) {
        let mut s = self.lock();
        s.compacted = s.rv;
        s.log.clear();
    }

    /// Ends every open watch (a dropped connection, an API server restart).
    pub fn break_watches(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// Sets a pod's whole `status` (container and init container statuses).
    pub fn set_pod_status(&self, ns: &str, pod: &str, status: Value) -> bool {
        self.update(("pods".into(), ns.into(), pod.into()), |o| {
            o["status"] = status.clone();
        })
    }

    /// Sets the runner container state of a pod (`json!({"running": {}})`, ...).
    pub fn set_runner_state(&self, ns: &str, pod: &str, state: Value) -> bool {
        // The kubelet gives a running pod an IP: the tests' loopback, where
        // their token exchanges come from.
        let status = json!({"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "containerStatuses": [
            {"name": "ambient-code-runner", "ready": true, "restartCount": 0, "image": "runner", "imageID": "",
             "state": state}
        ]});
        self.update(("pods".into(), ns.into(), pod.into()), |o| {
            o["status"] = status.clone();
        })
    }

    /// Deletes an object directly (a node lost, an admin's kubectl).
    pub fn delete_object(&self, plural: &str, ns: &str, name: &str) -> bool {
        self.delete(&(plural.into(), ns.into(), name.into()))
            .is_some()
    }

    /// Creates or replaces an object directly (test setup).
    pub fn put(&self, plural: &str, ns: &str, obj: Value) {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let key = (plural.to_owned(), ns.to_owned(), name);
        let mut s = self.lock();
        let exists = s.objects.contains_key(&key);
        let obj = self.stamp(&mut s, obj, &key, exists);
        s.objects.insert(key, obj.clone());
        drop(s);
        self.emit(plural, if exists { "MODIFIED" } else { "ADDED" }, obj);
    }

    fn update(&self, key: ObjKey, f: impl FnOnce(&mut Value)) -> bool {
        let mut s = self.lock();
        let Some(mut obj) = s.objects.get(&key).cloned() else {
            return false;
        };
        f(&mut obj);
        s.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        s.objects.insert(key.clone(), obj.clone());
        drop(s);
        self.emit(&key.0, "MODIFIED", obj);
        true
    }

    fn stamp(&self, s: &mut StoreState, mut obj: Value, key: &ObjKey, exists: bool) -> Value {
        s.rv += 1;
        let (kind, api_version) = kind_of(&key.0);
        obj["kind"] = json!(kind);
        obj["apiVersion"] = json!(api_version);
        if !exists {
            s.uid += 1;
            obj["metadata"]["uid"] = json!(format!("uid-{}", s.uid));
            // A test may give an object its age (one that predates others).
            if obj.pointer("/metadata/creationTimestamp").is_none() {
                obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            }
        }
        if !key.1.is_empty() {
            obj["metadata"]["namespace"] = json!(key.1);
        }
        obj["metadata"]["name"] = json!(key.2);
        obj["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        obj
    }

    fn emit(&self, plural: &str, kind: &'static str, object: Value) {
        let rv = object
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let ev = WatchEvent {
            rv,
            plural: plural.into(),
            kind,
            object,
        };
        self.lock().log.push(ev.clone());
        let _ = self.events.send(ev);
    }

    fn record(&self, req: Request) {
        self.lock().requests.push(req);
    }

    fn take_verb_fault(&self, verb: &str, plural: &str) -> Option<u16> {
        self.lock()
            .verb_faults
            .get_mut(&(verb.into(), plural.into()))
            .and_then(VecDeque::pop_front)
    }

    /// Why `ns` cannot take a new object now (404 missing, 403 terminating).
    fn refuse_in(&self, ns: &str) -> Option<Response> {
        if ns.is_empty() {
            return None;
        }
        match self.get("namespaces", "", ns) {
            None => Some(status(
                404,
                "NotFound",
                &format!("namespaces {ns:?} not found"),
            )),
            Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Some(status(
                403,
                "Forbidden",
                &format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => None,
        }
    }

    fn take_fault(&self, plural: &str, name: &str) -> Option<u16> {
        self.lock()
            .faults
            .get_mut(&(plural.into(), name.into()))
            .and_then(VecDeque::pop_front)
    }
}
