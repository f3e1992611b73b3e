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
channel = grpc.insecure_channel(addr)
stub = rpc.SessionServiceStub(channel)
out = {}

# No token: UNAUTHENTICATED.
try:
    stub.ListSessions(pb.ListSessionsRequest(page=1, size=10))
    out["anonymous"] = "accepted"
except grpc.RpcError as e:
    out["anonymous"] = e.code().name

created = stub.CreateSession(pb.CreateSessionRequest(name="py-one", project_id="py", llm_max_tokens=42), metadata=md)
out["created"] = {"id": created.metadata.id, "kind": created.metadata.kind, "name": created.name,
                  "has_phase": created.HasField("phase"), "llm_max_tokens": created.llm_max_tokens}

watch = stub.WatchSessions(pb.WatchSessionsRequest(), metadata=md)
watch.initial_metadata()  # the server has subscribed once headers arrive
created2 = stub.CreateSession(pb.CreateSessionRequest(name="py-two"), metadata=md)
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

stub.UpdateSessionStatus(pb.UpdateSessionStatusRequest(id=created.metadata.id, phase="Running"), metadata=md)
got = stub.GetSession(pb.GetSessionRequest(id=created.metadata.id), metadata=md)
out["phase"] = got.phase

for i in range(3):
    stub.PushSessionMessage(pb.PushSessionMessageRequest(session_id=created.metadata.id, event_type="user", payload=f"m{i}"), metadata=md)
msgs = stub.WatchSessionMessages(pb.WatchSessionMessagesRequest(session_id=created.metadata.id, after_seq=1), metadata=md)
seqs = []
for m in msgs:
    seqs.append([m.seq, m.payload])
    if len(seqs) == 2:
        break
msgs.cancel()
out["messages"] = seqs

listed = stub.ListSessions(pb.ListSessionsRequest(page=1, size=2), metadata=md)
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

    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
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
