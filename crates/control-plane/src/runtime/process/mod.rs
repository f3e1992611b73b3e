//! `ProcessRuntime`: a session's Pod as local child processes (daemons.md,
//! Runtimes) — the embedded default for a laptop and for end-to-end tests.
//!
//! It interprets the [`SessionObjects`] the Kubernetes runtime would apply
//! ([`plan`]): each container becomes a process with the environment the
//! pod would give it, on free loopback ports, the pod's volumes as
//! directories. Each process runs under a [`shim`] (this binary) that
//! records its pid, start time and exit in the [`state`] directory, which
//! is the only truth about what runs: a control plane restarted, even
//! after `kill -9`, adopts what its predecessor started (or cleans it up
//! for deleted sessions) and never signals a recycled pid. The runner's
//! exit is reported as an [`Observation`] like a pod's container status,
//! so phase sync is the reconciler's one code path. Stop and delete send
//! SIGTERM to everything the containers started, then SIGKILL after the
//! pod's grace period. Namespaces and group access do not exist here.

pub mod logs;
pub mod plan;
pub mod settings;
pub mod shim;
pub mod state;

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ambient_protocol::keys::PrivateKey;
use rustix::process::Signal;
use tokio::sync::mpsc::UnboundedSender;

use super::{BoxFuture, GroupBinding, Observation, RuntimeError, SessionRuntime};
use crate::names;
use crate::objects::SessionObjects;
pub use settings::{ProcessSettings, RuntimeArgs, RuntimeKind};
use state::{ExitRecord, Layout, PidRecord, PodRecord, SessionRecord, now_ms};

/// How often an adopted process (not our child) is checked for its exit.
const ADOPTED_POLL: Duration = Duration::from_millis(200);
/// A runner without a pid record this long after its pod was written never started.
const START_TIMEOUT_MS: u64 = 30_000;
/// How long a delete waits at most for SIGTERM to work before SIGKILL.
const DELETE_GRACE: Duration = Duration::from_secs(10);

/// Sessions as local processes.
#[derive(Clone)]
pub struct ProcessRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ProcessSettings,
    layout: Layout,
    changed: Mutex<Option<UnboundedSender<String>>>,
    /// (session, container) pairs with a task waiting for their exit.
    watched: Mutex<HashSet<(String, String)>>,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    /// Set by [`ProcessRuntime::shutdown`]: nothing new starts.
    closing: std::sync::atomic::AtomicBool,
    /// Held while we run: one control plane per state directory.
    _lock: std::fs::File,
}

impl std::fmt::Debug for ProcessRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessRuntime")
            .field("state_dir", &self.inner.layout.root())
            .finish_non_exhaustive()
    }
}

/// The token URL sessions use to reach the embedded token server bound at `addr`.
pub fn local_token_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    format!(
        "http://{}/token",
        std::net::SocketAddr::new(ip, addr.port())
    )
}

fn io(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Transient(format!("{what}: {e}"))
}

fn session_id_of(objects: &SessionObjects) -> Result<String, RuntimeError> {
    let id = objects
        .pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(names::LABEL_SESSION_ID))
        .cloned()
        .unwrap_or_default();
    if !state::valid_session_id(&id) {
        return Err(RuntimeError::Permanent(format!(
            "session ID {id:?} cannot name a local directory"
        )));
    }
    Ok(id)
}

impl ProcessRuntime {
    /// Opens (creating) the state directory, takes its lock and adopts the
    /// processes a previous control plane left running. Call inside a Tokio
    /// runtime.
    pub fn open(settings: ProcessSettings) -> anyhow::Result<ProcessRuntime> {
        use anyhow::Context as _;
        let layout = Layout::new(settings.state_dir.clone());
        state::private_dir(&layout.sessions())
            .with_context(|| format!("cannot create {}", layout.sessions().display()))?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(layout.lock())
            .with_context(|| format!("cannot open {}", layout.lock().display()))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(
                "{} is in use by another control plane",
                layout.root().display()
            );
        }
        let runtime = ProcessRuntime {
            inner: Arc::new(Inner {
                settings,
                layout,
                changed: Mutex::default(),
                watched: Mutex::default(),
                tasks: Mutex::default(),
                closing: Default::default(),
                _lock: lock,
            }),
        };
        runtime.adopt()?;
        Ok(runtime)
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &ProcessSettings {
        &self.inner.settings
    }

    /// The token-exchange key in the state directory, generated (0600) the first time.
    pub async fn keypair(&self) -> anyhow::Result<PrivateKey> {
        use anyhow::Context as _;
        let path = self.inner.layout.keypair();
        match std::fs::read_to_string(&path) {
            Ok(pem) => {
                return PrivateKey::from_pem(&pem)
                    .with_context(|| format!("{} holds no usable key", path.display()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let key = tokio::task::spawn_blocking(PrivateKey::generate)
            .await
            .context("key generation")?
            .context("key generation")?;
        state::write_atomic(&path, key.to_pkcs8_pem().as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(key)
    }

    /// Stops every session's processes when configured to, and the watchers.
    pub async fn shutdown(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if self.inner.settings.stop_sessions_on_exit {
            let ids = self.inner.layout.session_ids().unwrap_or_default();
            for id in &ids {
                self.inner.terminate(id, DELETE_GRACE).await;
                let _ = std::fs::remove_dir_all(self.inner.layout.pod(id));
            }
        }
        let tasks = std::mem::take(&mut *self.lock_tasks());
        drop(tasks);
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, tokio::task::JoinSet<()>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches every live process of every pod in the state directory and
    /// resumes the stop of pods that were stopping.
    fn adopt(&self) -> anyhow::Result<()> {
        let layout = &self.inner.layout;
        for id in layout.session_ids()? {
            let Ok(Some(pod)) = state::read_json::<PodRecord>(&layout.pod_record(&id)) else {
                continue;
            };
            let mut adopted = 0;
            for c in &pod.containers {
                if let Ok(Some(pid)) = state::read_json::<PidRecord>(&layout.pid(&id, &c.name))
                    && pid.alive()
                {
                    self.watch_adopted(&id, &c.name, pid);
                    adopted += 1;
                }
            }
            if adopted > 0 {
                tracing::info!(session = %id, processes = adopted, "adopted running session processes");
            }
            if let Some(since) = pod.stopping_since_ms {
                let elapsed = Duration::from_millis(now_ms().saturating_sub(since));
                let left = Duration::from_secs(pod.grace_seconds).saturating_sub(elapsed);
                self.escalate_after(&id, left);
            }
        }
        Ok(())
    }

    fn spawn_task(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.lock_tasks().spawn(task);
    }

    /// Claims the watch of (session, container); false when already watched.
    fn claim(&self, id: &str, container: &str) -> bool {
        self.inner
            .watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((id.to_owned(), container.to_owned()))
    }

    fn watch_adopted(&self, id: &str, container: &str, pid: PidRecord) {
        if !self.claim(id, container) {
            return;
        }
        let (inner, id, container) = (self.inner.clone(), id.to_owned(), container.to_owned());
        self.spawn_task(async move {
            while pid.alive() {
                tokio::time::sleep(ADOPTED_POLL).await;
            }
            inner.exited(&id, &container);
        });
    }

    fn watch_child(&self, id: &str, container: &str, mut child: tokio::process::Child) {
        self.claim(id, container);
        let (inner, id, container) = (self.inner.clone(), id.to_owned(), container.to_owned());
        self.spawn_task(async move {
            let status = child.wait().await;
            let exit_file = inner.layout.exit(&id, &container);
            // A shim killed by a signal recorded nothing: record that.
            if let Ok(s) = status
                && !exit_file.exists()
                && inner.layout.pod(&id).exists()
            {
                use std::os::unix::process::ExitStatusExt as _;
                let code = s.code().or(s.signal().map(|sig| 128 + sig)).unwrap_or(1);
                let _ = state::write_json(&exit_file, &ExitRecord { code });
            }
            inner.exited(&id, &container);
        });
    }

    /// SIGKILL for whatever still runs in `id`'s pod after `delay`.
    fn escalate_after(&self, id: &str, delay: Duration) {
        let (inner, id) = (self.inner.clone(), id.to_owned());
        self.spawn_task(async move {
            tokio::time::sleep(delay).await;
            let killed = inner.signal_pod(&id, Signal::KILL);
            if killed > 0 {
                tracing::warn!(session = %id, processes = killed, "grace period over: killed");
            }
            inner.notify(&id);
        });
    }

    /// Starts every container of the pod.
    fn start_pod(&self, id: &str, objects: &SessionObjects) -> Result<(), RuntimeError> {
        let layout = &self.inner.layout;
        let planned = plan::plan(
            &self.inner.settings,
            objects,
            |v| layout.volume(id, v),
            plan::free_port,
        )
        .map_err(|e| RuntimeError::Permanent(e.to_string()))?;
        for dir in planned
            .iter()
            .flat_map(|p| p.dirs.iter().chain([&p.cwd]))
            .chain([&layout.logs(id)])
        {
            state::private_dir(dir).map_err(|e| io(&format!("mkdir {}", dir.display()), e))?;
        }
        let grace = objects
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(30);
        let record = PodRecord {
            containers: planned
                .iter()
                .map(|p| state::ContainerRecord {
                    name: p.name.clone(),
                    ports: p.ports.clone(),
                })
                .collect(),
            grace_seconds: grace,
            stopping_since_ms: None,
        };
        state::write_json(&layout.pod_record(id), &record)
            .map_err(|e| io("cannot write the pod record", e))?;
        for p in planned {
            self.start_container(id, &p);
        }
        tracing::info!(session = %id, "session processes started");
        Ok(())
    }

    fn start_container(&self, id: &str, p: &plan::Planned) {
        let layout = &self.inner.layout;
        let log_path = layout.log(id, &p.name);
        let exit_file = layout.exit(id, &p.name);
        let pid_file = layout.pid(id, &p.name);
        let spawned = open_log(&log_path).and_then(|log| {
            let err = log.try_clone()?;
            tokio::process::Command::new(&self.inner.settings.shim)
                .arg(shim::SHIM_ARG)
                .arg(&pid_file)
                .arg(&exit_file)
                .arg("--")
                .args(&p.argv)
                .env_clear()
                .envs(&p.env)
                .current_dir(&p.cwd)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .kill_on_drop(false)
                .spawn()
        });
        match spawned {
            Ok(child) => {
                // The shim records itself too; this closes the window
                // before it does, so a restart never misses it.
                if let Some(record) = child
                    .id()
                    .and_then(|pid| i32::try_from(pid).ok())
                    .and_then(PidRecord::of)
                {
                    let _ = state::write_json(&pid_file, &record);
                }
                self.watch_child(id, &p.name, child);
            }
            Err(e) => {
                tracing::warn!(session = %id, container = %p.name, error = %e, "cannot start the container");
                let _ = state::write_json(&exit_file, &ExitRecord { code: 127 });
                self.inner.notify(id);
            }
        }
    }
}

fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// A container's state from its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    NotStarted,
    Running(PidRecord),
    Exited(i32),
    /// Its shim is gone without a record.
    Lost,
}

impl Inner {
    fn notify(&self, id: &str) {
        if let Some(tx) = self
            .changed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(id.to_owned());
        }
    }

    fn exited(&self, id: &str, container: &str) {
        self.watched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(id.to_owned(), container.to_owned()));
        self.notify(id);
    }

    fn pod(&self, id: &str) -> Result<Option<PodRecord>, RuntimeError> {
        state::read_json(&self.layout.pod_record(id)).map_err(|e| io("pod record", e))
    }

    fn status(&self, id: &str, container: &str) -> Status {
        if let Ok(Some(exit)) = state::read_json::<ExitRecord>(&self.layout.exit(id, container)) {
            return Status::Exited(exit.code);
        }
        match state::read_json::<PidRecord>(&self.layout.pid(id, container)) {
            Ok(Some(pid)) if pid.alive() => Status::Running(pid),
            Ok(Some(_)) => {
                // It may have recorded its exit since we looked.
                match state::read_json::<ExitRecord>(&self.layout.exit(id, container)) {
                    Ok(Some(exit)) => Status::Exited(exit.code),
                    _ => Status::Lost,
                }
            }
            _ => Status::NotStarted,
        }
    }

    /// Every live process of the pod (containers and what they started).
    fn live_processes(&self, id: &str, pod: &PodRecord) -> usize {
        pod.containers
            .iter()
            .filter_map(|c| state::read_json::<PidRecord>(&self.layout.pid(id, &c.name)).ok()?)
            .map(|pid| pid.session_members().len())
            .sum()
    }

    fn signal_pod(&self, id: &str, signal: Signal) -> usize {
        let Ok(Some(pod)) = self.pod(id) else {
            return 0;
        };
        pod.containers
            .iter()
            .filter_map(|c| state::read_json::<PidRecord>(&self.layout.pid(id, &c.name)).ok()?)
            .map(|pid| pid.signal_session(signal))
            .sum()
    }

    /// SIGTERM, up to `grace` for everything to exit, then SIGKILL.
    async fn terminate(&self, id: &str, grace: Duration) {
        let Ok(Some(pod)) = self.pod(id) else {
            return;
        };
        self.signal_pod(id, Signal::TERM);
        let deadline = tokio::time::Instant::now() + grace;
        while self.live_processes(id, &pod) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.signal_pod(id, Signal::KILL) > 0 {
            tracing::warn!(session = %id, "processes outlived SIGTERM: killed");
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            while self.live_processes(id, &pod) > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl ProcessRuntime {
    fn observe_now(&self, id: &str) -> Result<Observation, RuntimeError> {
        let inner = &self.inner;
        let Some(pod) = inner.pod(id)? else {
            return Ok(Observation::Absent);
        };
        if pod.stopping_since_ms.is_some() {
            return Ok(Observation::Terminating);
        }
        Ok(match inner.status(id, names::RUNNER_CONTAINER) {
            Status::Running(_) => Observation::Running,
            Status::Exited(code) => Observation::Exited(code),
            Status::Lost => Observation::Failed(
                "the runner process ended without an exit status (killed with its shim)".into(),
            ),
            Status::NotStarted => {
                let written = std::fs::metadata(inner.layout.pod_record(id))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .map_or(0, |d| d.as_millis() as u64);
                if written > START_TIMEOUT_MS {
                    Observation::Failed("the runner process never started".into())
                } else {
                    Observation::Starting
                }
            }
        })
    }

    /// Stops the pod: `Ok(true)` once nothing of it runs and it is gone.
    fn stop_now(&self, id: &str) -> Result<bool, RuntimeError> {
        let inner = &self.inner;
        let Some(mut pod) = inner.pod(id)? else {
            return Ok(true);
        };
        if inner.live_processes(id, &pod) == 0 {
            let dir = inner.layout.pod(id);
            std::fs::remove_dir_all(&dir)
                .or_else(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => Ok(()),
                    _ => Err(e),
                })
                .map_err(|e| io(&format!("cannot remove {}", dir.display()), e))?;
            tracing::info!(session = %id, "session processes gone");
            return Ok(true);
        }
        match pod.stopping_since_ms {
            None => {
                pod.stopping_since_ms = Some(now_ms());
                state::write_json(&inner.layout.pod_record(id), &pod)
                    .map_err(|e| io("cannot write the pod record", e))?;
                let signalled = inner.signal_pod(id, Signal::TERM);
                tracing::info!(session = %id, processes = signalled, "stopping session processes");
                self.escalate_after(id, Duration::from_secs(pod.grace_seconds));
            }
            Some(since) if now_ms().saturating_sub(since) > pod.grace_seconds * 1000 => {
                inner.signal_pod(id, Signal::KILL);
            }
            Some(_) => {}
        }
        Ok(false)
    }
}

impl SessionRuntime for ProcessRuntime {
    fn provision<'a>(
        &'a self,
        objects: &'a SessionObjects,
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            let id = session_id_of(objects)?;
            let layout = &self.inner.layout;
            state::private_dir(&layout.session(&id)).map_err(|e| io("mkdir", e))?;
            let reprovisions = objects
                .service_account
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(names::ANNOTATION_REPROVISIONS))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let record = SessionRecord {
                namespace: objects.namespace_name.clone(),
                reprovisions,
            };
            state::write_json(&layout.session_record(&id), &record)
                .map_err(|e| io("cannot write the session record", e))?;
            // A pod is immutable: start one only when there is none.
            if self.inner.pod(&id)?.is_some() {
                return Ok(());
            }
            if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(RuntimeError::Transient(
                    "the control plane is stopping".into(),
                ));
            }
            self.start_pod(&id, objects)
        })
    }

    fn observe<'a>(
        &'a self,
        session_id: &'a str,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<Observation, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(Observation::Absent);
            }
            self.observe_now(session_id)
        })
    }

    fn reprovisions<'a>(
        &'a self,
        session_id: &'a str,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<u32, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(0);
            }
            let record: Option<SessionRecord> =
                state::read_json(&self.inner.layout.session_record(session_id))
                    .map_err(|e| io("session record", e))?;
            Ok(record.map_or(0, |r| r.reprovisions))
        })
    }

    fn stop<'a>(
        &'a self,
        session_id: &'a str,
        _namespace: &'a str,
    ) -> BoxFuture<'a, Result<bool, RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(true);
            }
            self.stop_now(session_id)
        })
    }

    fn cleanup<'a>(&'a self, session_id: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async move {
            if !state::valid_session_id(session_id) {
                return Ok(());
            }
            let dir = self.inner.layout.session(session_id);
            if !dir.exists() {
                return Ok(());
            }
            self.inner.terminate(session_id, DELETE_GRACE).await;
            if let Some(pod) = self.inner.pod(session_id)?
                && self.inner.live_processes(session_id, &pod) > 0
            {
                return Err(RuntimeError::Transient(
                    "session processes survived SIGKILL".into(),
                ));
            }
            std::fs::remove_dir_all(&dir)
                .map_err(|e| io(&format!("cannot remove {}", dir.display()), e))?;
            tracing::info!(session = %session_id, "session processes and files removed");
            Ok(())
        })
    }

    fn sessions(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async move {
            self.inner
                .layout
                .session_ids()
                .map_err(|e| io("state directory", e))
        })
    }

    fn projects(&self) -> BoxFuture<'_, Result<Vec<String>, RuntimeError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn remove_project<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn sync_group_access<'a>(
        &'a self,
        _: &'a str,
        _: &'a [GroupBinding],
    ) -> BoxFuture<'a, Result<(), RuntimeError>> {
        Box::pin(async { Ok(()) })
    }

    fn watch(&self, changed: UnboundedSender<String>) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // Whatever changed while nobody listened is looked at again.
            for id in self.inner.layout.session_ids().unwrap_or_default() {
                let _ = changed.send(id);
            }
            *self.inner.changed.lock().unwrap_or_else(|p| p.into_inner()) = Some(changed);
            std::future::pending::<()>().await;
        })
    }
}

#[cfg(test)]
mod tests;
