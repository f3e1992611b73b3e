//! The runtime's reading of its records. Starting real processes is
//! covered by `integration-tests/tests/process_runtime.rs` (it needs the
//! binaries).

use super::*;
use clap::Parser;
use state::{ExitRecord, PidRecord, now_ms};

#[derive(Parser, Debug)]
struct Probe {
    #[command(flatten)]
    args: RuntimeArgs,
}

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(tag: &str) -> Dir {
    let path = std::env::temp_dir().join(format!(
        "process-runtime-{tag}-{}-{}",
        std::process::id(),
        now_ms()
    ));
    Dir(path)
}

fn open(d: &Dir) -> anyhow::Result<ProcessRuntime> {
    let state = d.0.display().to_string();
    let args = Probe::try_parse_from(["cp", "--runtime", "process", "--state-dir", &state])?.args;
    ProcessRuntime::open(args.process()?)
}

fn write_pod(layout: &Layout, id: &str) {
    let pod = PodRecord {
        containers: vec![state::ContainerRecord {
            name: names::RUNNER_CONTAINER.into(),
            ports: Default::default(),
        }],
        grace_seconds: 1,
        stopping_since_ms: None,
        terminated: Vec::new(),
    };
    state::private_dir(&layout.pod(id)).unwrap_or_else(|e| panic!("{e}"));
    state::write_json(&layout.pod_record(id), &pod).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn one_control_plane_per_state_directory() {
    let d = dir("lock");
    let first = open(&d).unwrap_or_else(|e| panic!("{e}"));
    let second = open(&d).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        second.contains("in use by another control plane"),
        "{second}"
    );
    drop(first);
    assert!(open(&d).is_ok(), "the lock goes with the control plane");
}

#[tokio::test]
async fn the_runner_is_observed_from_its_records() {
    let d = dir("observe");
    let rt = open(&d).unwrap_or_else(|e| panic!("{e}"));
    let layout = Layout::new(d.0.clone());
    let observe = |id: &'static str| {
        let rt = rt.clone();
        async move { rt.observe(id, "ns").await }
    };
    assert_eq!(observe("none").await, Ok(Observation::Absent));

    write_pod(&layout, "starting");
    assert_eq!(observe("starting").await, Ok(Observation::Starting));

    write_pod(&layout, "running");
    let me = PidRecord::of(std::process::id() as i32).unwrap_or_else(|| panic!("no stat"));
    state::write_json(&layout.pid("running", names::RUNNER_CONTAINER), &me)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(observe("running").await, Ok(Observation::Running));

    // The same pid started at another time is someone else: lost, not running.
    write_pod(&layout, "recycled");
    let other = PidRecord {
        start: me.start + 1,
        ..me
    };
    state::write_json(&layout.pid("recycled", names::RUNNER_CONTAINER), &other)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        observe("recycled").await,
        Ok(Observation::Failed(_))
    ));

    write_pod(&layout, "exited");
    state::write_json(
        &layout.exit("exited", names::RUNNER_CONTAINER),
        &ExitRecord { code: 3 },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(observe("exited").await, Ok(Observation::Exited(3)));

    let mut ids = rt.sessions().await.unwrap_or_default();
    ids.sort();
    assert_eq!(ids, ["exited", "recycled", "running", "starting"]);
    // A stop never signals the recycled pid, and the pod without live
    // processes is simply gone.
    assert_eq!(rt.stop("recycled", "ns").await, Ok(true));
    assert_eq!(observe("recycled").await, Ok(Observation::Absent));
    assert!(me.alive());
}
