//! Interop with a gRPC client written independently of our generated code:
//! Python `grpcio`, with stubs generated at test time by `grpcio-tools` from
//! `proto/`. The interpreter comes from the virtualenv `cargo xtask test`
//! prepares (`AMBIENT_TEST_PYTHON`).
//!
//! Python creates sessions, watches them (seeing a session Rust creates over
//! REST while the watch is open), pushes and watches messages, and checks that
//! a call without a token is `UNAUTHENTICATED`.

mod common;

use std::process::Command;

use common::{Rest, TOKEN, s};
use integration_tests::TempDir;
use reqwest::StatusCode;
use serde_json::{Value, json};

const PY: &str = r#"
import json, os, sys, threading
from grpc_tools import protoc
import grpc

proto_root, out_dir, addr, token, rest_trigger = sys.argv[1:6]
files = [os.path.join("ambient", "v1", f) for f in ("common.proto", "sessions.proto")]
import grpc_tools
well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={out_dir}",
                  f"--grpc_python_out={out_dir}", *files])
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, out_dir)
from ambient.v1 import sessions_pb2 as pb, sessions_pb2_grpc as rpc, common_pb2

md = [("authorization", f"Bearer {token}")]
DEADLINE = 60  # seconds, per call and per stream: nothing here may hang
channel = grpc.insecure_channel(addr)
stub = rpc.SessionServiceStub(channel)
out = {}

# No token: UNAUTHENTICATED.
try:
    stub.ListSessions(pb.ListSessionsRequest(page=1, size=10), timeout=DEADLINE)
    out["anonymous"] = "accepted"
except grpc.RpcError as e:
    out["anonymous"] = e.code().name

created = stub.CreateSession(pb.CreateSessionRequest(name="py-one", project_id="py", llm_max_tokens=42), metadata=md, timeout=DEADLINE)
out["created"] = {"id": created.metadata.id, "kind": created.metadata.kind, "name": created.name,
                  "has_phase": created.HasField("phase"), "llm_max_tokens": created.llm_max_tokens}

watch = stub.WatchSessions(pb.WatchSessionsRequest(), metadata=md, timeout=DEADLINE)
watch.initial_metadata()  # the server has subscribed once headers arrive
created2 = stub.CreateSession(pb.CreateSessionRequest(name="py-two"), metadata=md, timeout=DEADLINE)
# Ask the Rust side to create one over REST while the watch is open.
with open(rest_trigger, "w") as f:
    f.write("go")
events = []
for ev in watch:
    events.append({"type": common_pb2.EventType.Name(ev.type), "id": ev.resource_id, "name": ev.session.name})
    if len(events) == 2:
        break
watch.cancel()
out["events"] = events

stub.UpdateSessionStatus(pb.UpdateSessionStatusRequest(id=created.metadata.id, phase="Running"), metadata=md, timeout=DEADLINE)
got = stub.GetSession(pb.GetSessionRequest(id=created.metadata.id), metadata=md, timeout=DEADLINE)
out["phase"] = got.phase

try:
    stub.PushSessionMessage(pb.PushSessionMessageRequest(session_id=created.metadata.id, event_type="user", payload="as the user"), metadata=md, timeout=DEADLINE)
    out["user_push"] = "accepted"
except grpc.RpcError as e:
    out["user_push"] = e.code().name
for i in range(3):
    stub.PushSessionMessage(pb.PushSessionMessageRequest(session_id=created.metadata.id, event_type="assistant", payload=f"m{i}"), metadata=md, timeout=DEADLINE)
msgs = stub.WatchSessionMessages(pb.WatchSessionMessagesRequest(session_id=created.metadata.id, after_seq=1), metadata=md, timeout=DEADLINE)
seqs = []
for m in msgs:
    seqs.append([m.seq, m.payload])
    if len(seqs) == 2:
        break
msgs.cancel()
out["messages"] = seqs

listed = stub.ListSessions(pb.ListSessionsRequest(page=1, size=2), metadata=md, timeout=DEADLINE)
out["list"] = {"items": len(listed.items), "total": listed.metadata.total, "page": listed.metadata.page}
print(json.dumps(out))
"#;

fn python() -> String {
    std::env::var("AMBIENT_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("AMBIENT_TEST_PYTHON is not set: run the interop tests through `cargo xtask test`")
    })
}

#[tokio::test]
async fn python_grpcio_creates_and_watches_sessions() {
    let d = common::start(&[]);
    let rest = Rest::new(&d);
    let tmp = TempDir::new("devserver-interop");
    let trigger = tmp.path().join("trigger");
    let proto_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");

    let mut child = Command::new(python())
        .arg("-c")
        .arg(PY)
        .arg(proto_root)
        .arg(tmp.path())
        .arg(d.addr("grpc").to_string())
        .arg(TOKEN)
        .arg(&trigger)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python: {e}"));

    // When Python's watch is open, create a session over REST.
    let rest_id = common::guard("python watch to open", async {
        loop {
            if trigger.exists() {
                let s = rest.create_session(json!({"name": "rest-three"})).await;
                break common::s(&s, "id").to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                }
                panic!("python exited early ({status}): {err}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    let out = tokio::task::spawn_blocking(move || {
        integration_tests::output_within(child, common::CHILD_DEADLINE, "python grpcio client")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    assert_eq!(v["anonymous"], "UNAUTHENTICATED");
    assert_eq!(v["user_push"], "PERMISSION_DENIED");
    assert_eq!(v["created"]["kind"], "Session");
    assert_eq!(v["created"]["name"], "py-one");
    assert_eq!(v["created"]["has_phase"], false);
    assert_eq!(v["created"]["llm_max_tokens"], 42);
    let events: Vec<(String, String)> = v["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| (s(e, "type").to_owned(), s(e, "name").to_owned()))
        .collect();
    assert_eq!(
        events,
        [
            ("EVENT_TYPE_CREATED".to_owned(), "py-two".to_owned()),
            ("EVENT_TYPE_CREATED".to_owned(), "rest-three".to_owned()),
        ]
    );
    assert_eq!(v["events"][1]["id"], rest_id.as_str());
    assert_eq!(v["phase"], "Running");
    assert_eq!(v["messages"], json!([[2, "m1"], [3, "m2"]]));
    assert_eq!(v["list"], json!({"items": 2, "total": 3, "page": 1}));

    // What Python made is visible over REST.
    let (st, got) = rest
        .get(&format!("sessions/{}", s(&v["created"], "id")))
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(got["phase"], "Running");
    assert_eq!(got["project_id"], "py");
}

/// The reference SDK's way of working, from wire.md §1–§2 alone: `httpx`
/// REST calls with `X-Ambient-Project`, and `grpcio` stubs generated now.
const PY_SDK: &str = r#"
import json, os, sys
from grpc_tools import protoc
import grpc, grpc_tools, httpx

proto_root, out_dir, addr, base, token = sys.argv[1:6]
files = [os.path.join("ambient", "v1", f"{n}.proto") for n in ("common", "sessions", "projects", "project_settings")]
well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{well_known}", f"--python_out={out_dir}",
                  f"--grpc_python_out={out_dir}", *files])
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, out_dir)
from ambient.v1 import sessions_pb2 as spb, sessions_pb2_grpc as srpc
from ambient.v1 import projects_pb2 as ppb, projects_pb2_grpc as prpc
from ambient.v1 import project_settings_pb2 as xpb, project_settings_pb2_grpc as xrpc
from ambient.v1 import common_pb2

DEADLINE = 60
md = [("authorization", f"Bearer {token}")]
channel = grpc.insecure_channel(addr)
sessions, projects, settings = srpc.SessionServiceStub(channel), prpc.ProjectServiceStub(channel), xrpc.ProjectSettingsServiceStub(channel)
api = httpx.Client(base_url=f"{base}/api/ambient/v1", timeout=DEADLINE,
                   headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
scoped = {"X-Ambient-Project": "py-proj"}
out = {}

r = api.post("/projects", json={"name": "py-proj", "description": "from python"})
out["project"] = [r.status_code, r.json()["id"]]
out["duplicate"] = api.post("/projects", json={"name": "py-proj"}).status_code
out["bad_name"] = api.post("/projects", json={"name": "Py_Proj"}).status_code
out["grpc_project"] = projects.GetProject(ppb.GetProjectRequest(id="py-proj"), metadata=md, timeout=DEADLINE).name

watch = sessions.WatchSessions(spb.WatchSessionsRequest(), metadata=md, timeout=DEADLINE)
watch.initial_metadata()
r = api.post("/sessions", json={"name": "py-scoped", "labels": json.dumps({"a": "1", "b": "2"})}, headers=scoped)
s = r.json()
out["scoped_create"] = [r.status_code, s.get("project_id"), s.get("created_by_user_id")]
sessions.CreateSession(spb.CreateSessionRequest(name="elsewhere", project_id="other"), metadata=md, timeout=DEADLINE)
out["scoped_list"] = [i["name"] for i in api.get("/sessions", headers=scoped).json()["items"]]
out["query_list"] = [i["name"] for i in api.get("/sessions", params={"project_id": "other"}).json()["items"]]

# Remove label "a" the reference way: GET, merge locally, PATCH the whole object.
cur = api.get(f"/sessions/{s['id']}").json()
labels = json.loads(cur["labels"])
labels.pop("a")
labels["c"] = "3"
api.patch(f"/sessions/{s['id']}", json={"labels": json.dumps(labels, separators=(",", ":"), sort_keys=True)})
out["labels_rest"] = api.get(f"/sessions/{s['id']}").json()["labels"]
out["labels_grpc"] = sessions.GetSession(spb.GetSessionRequest(id=s["id"]), metadata=md, timeout=DEADLINE).labels

# ProjectSettings over gRPC with the reference field numbers, read back over REST.
ps = settings.CreateProjectSettings(xpb.CreateProjectSettingsRequest(project_id="py-proj", repositories='["r1"]'), metadata=md, timeout=DEADLINE)
settings.UpdateProjectSettings(xpb.UpdateProjectSettingsRequest(id=ps.metadata.id, repositories='["r2"]', group_access="[]"), metadata=md, timeout=DEADLINE)
got = api.get(f"/project_settings/{ps.metadata.id}").json()
out["settings"] = [got.get("project_id"), got.get("repositories"), got.get("group_access")]

roles = api.get("/roles", params={"search": "name = 'credential:token-reader'"}).json()
out["role"] = [roles["total"], roles["items"][0]["built_in"]]
b = api.post("/role_bindings", json={"role_id": roles["items"][0]["id"], "scope": "credential",
                                     "credential_id": "c1", "session_id": s["id"]})
out["binding_status"] = b.status_code
found = api.get("/role_bindings", params={"search": f"scope = 'credential' and session_id = '{s['id']}'"}).json()
out["binding_found"] = [found["total"], found["items"][0]["id"] == b.json()["id"]]
out["bad_search"] = api.get("/role_bindings", params={"search": "session_id = 'x' or"}).status_code

out["delete"] = api.delete(f"/sessions/{s['id']}").status_code
events = []
for ev in watch:
    events.append([common_pb2.EventType.Name(ev.type), ev.resource_id == s["id"], ev.HasField("session")])
    if common_pb2.EventType.Name(ev.type) == "EVENT_TYPE_DELETED":
        break
watch.cancel()
out["events"] = events
print(json.dumps(out))
"#;

#[tokio::test]
async fn python_sdk_style_rest_and_grpc_follow_the_reference_semantics() {
    let d = common::start(&[]);
    let tmp = TempDir::new("devserver-interop-sdk");
    let proto_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let child = Command::new(python())
        .arg("-c")
        .arg(PY_SDK)
        .arg(proto_root)
        .arg(tmp.path())
        .arg(d.addr("grpc").to_string())
        .arg(format!("http://{}", d.addr("http")))
        .arg(TOKEN)
        .env("NO_PROXY", "*")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start python: {e}"));
    let out = tokio::task::spawn_blocking(move || {
        integration_tests::output_within(
            child,
            common::CHILD_DEADLINE,
            "python httpx + grpcio client",
        )
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python output: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    assert_eq!(v["project"], json!([201, "py-proj"]));
    assert_eq!(v["duplicate"], 409);
    assert_eq!(v["bad_name"], 400);
    assert_eq!(v["grpc_project"], "py-proj");
    assert_eq!(v["scoped_create"], json!([201, "py-proj", "dev"]));
    assert_eq!(v["scoped_list"], json!(["py-scoped"]));
    assert_eq!(v["query_list"], json!(["elsewhere"]));
    assert_eq!(v["labels_rest"], r#"{"b":"2","c":"3"}"#);
    assert_eq!(v["labels_grpc"], r#"{"b":"2","c":"3"}"#);
    assert_eq!(v["settings"], json!(["py-proj", "[\"r2\"]", "[]"]));
    assert_eq!(v["role"], json!([1, true]));
    assert_eq!(v["binding_status"], 201);
    assert_eq!(v["binding_found"], json!([1, true]));
    assert_eq!(v["bad_search"], 400);
    assert_eq!(v["delete"], 204);
    let events = v["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        events.last(),
        Some(&json!(["EVENT_TYPE_DELETED", true, false])),
        "a DELETED event carries only the ID: {events:?}"
    );
    assert_eq!(events[0], json!(["EVENT_TYPE_CREATED", true, true]));
}
