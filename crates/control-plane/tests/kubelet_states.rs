//! Issue 29 item 6: every state a kubelet reports for a session's pod,
//! driven per container by the fake's kubelet stand-in
//! (tests/support/fake_kube/kubelet.rs) and seen by the real control
//! plane through its pod watch, ends in the session phase and reason it
//! should.

mod support;

use integration_tests::TempDir;
use support::*;

const RUNNER: &str = "ambient-code-runner";
const MCP: &str = "ambient-mcp";

async fn conditions(dev: &DevServer, id: &str) -> String {
    dev.session(id).await["conditions"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kubelet_state_reaches_the_session_through_the_watch() {
    let kube = FakeKube::start().await;
    let dev = DevServer::start();
    let dir = TempDir::new("cp-kubelet");
    let _cp = control_plane(&dev, &kube, &dir, "cp-a", false);
    let ns = &dev.project("proj-kubelet").await;

    // Pending → ContainerCreating → Running → the runner exits 0.
    let ok = dev.new_session(ns, "ok").await;
    wait_phase(&dev, &ok, "Creating").await;
    let kubelet = kube.kubelet(ns, &pod_name(&ok));
    assert!(kubelet.schedule());
    assert!(kubelet.set(RUNNER, Container::Running));
    // The MCP sidecar still creating: the runner runs, so does the session.
    wait_phase(&dev, &ok, "Running").await;
    assert!(kubelet.run_all());
    assert!(kubelet.set(RUNNER, Container::Exited(0)));
    wait_phase(&dev, &ok, "Completed").await;

    // Each way a container cannot run fails its session with the reason.
    let cases = [
        (
            "pull",
            RUNNER,
            Container::ImagePullBackOff,
            "ImagePullBackOff",
        ),
        ("oom", RUNNER, Container::OomKilled, "OOMKilled"),
        ("exit", RUNNER, Container::Exited(3), ""),
        (
            "crash",
            MCP,
            Container::CrashLoopBackOff(2),
            "CrashLoopBackOff",
        ),
        (
            "sidecar-pull",
            MCP,
            Container::ImagePullBackOff,
            "ImagePullBackOff",
        ),
    ];
    for (name, container, state, reason) in cases {
        let id = dev.new_session(ns, name).await;
        wait_phase(&dev, &id, "Creating").await;
        let kubelet = kube.kubelet(ns, &pod_name(&id));
        assert!(kubelet.schedule(), "{name}");
        if container == MCP || matches!(state, Container::OomKilled | Container::Exited(_)) {
            assert!(kubelet.run_all(), "{name}");
            wait_phase(&dev, &id, "Running").await;
        }
        assert!(kubelet.set(container, state.clone()), "{name}");
        wait_phase(&dev, &id, "Failed").await;
        let why = conditions(&dev, &id).await;
        assert!(why.contains(reason), "{name}: {why}");
        if container == MCP {
            assert!(why.contains(MCP), "{name}: {why}");
        }
    }
}
