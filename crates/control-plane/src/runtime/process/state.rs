//! The process runtime's state directory, the one source of truth about
//! what runs (so a restarted control plane knows exactly what its
//! predecessor started):
//!
//! ```text
//! <state>/lock                                held by the running control plane
//! <state>/keypair.pem                         the token-exchange key (0600)
//! <state>/sessions/<id>/session.json          namespace, re-provision count ("the ServiceAccount"),
//!                                             when the runtime received its pod's create request
//! <state>/sessions/<id>/logs/<container>.log  container output, kept after the pod ends
//! <state>/sessions/<id>/pod/pod.json          the "pod": its containers and local ports
//! <state>/sessions/<id>/pod/<container>.pid   written by the shim: its pid and start time
//! <state>/sessions/<id>/pod/<container>.exit  written by the shim: the container's exit
//! <state>/sessions/<id>/pod/volumes/<name>/   the pod's volumes (the workspace among them)
//! ```
//!
//! A process is ours only when its pid *and* its start time (field 22 of
//! `/proc/<pid>/stat`) match the record: a recycled pid is never signalled.
//!
//! Records are replaced atomically (rename) but not synced to disk: they
//! describe processes, which a machine crash ends too, and a control plane
//! killed mid-write leaves the old record or the new one, never a mix. An
//! empty record — what a power loss can leave of an unsynced new file —
//! reads as absent. Only the keypair, which must outlive a reboot, is synced.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the shim records about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: i32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

/// How a container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit code (128 + signal when killed by one).
    pub code: i32,
}

/// One container of the "pod".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    /// Pod port → local port.
    pub ports: BTreeMap<u16, u16>,
}

/// The "pod" of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    pub containers: Vec<ContainerRecord>,
    /// Seconds between SIGTERM and SIGKILL.
    pub grace_seconds: u64,
    /// Unix milliseconds of the stop request, once stopping.
    #[serde(default)]
    pub stopping_since_ms: Option<u64>,
    /// The main processes that got SIGTERM in this stop (one that started
    /// after the stop began gets its own at the next look).
    #[serde(default)]
    pub terminated: Vec<i32>,
}

/// What outlives the pod ("the ServiceAccount").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub namespace: String,
    pub reprovisions: u32,
    /// When the runtime received the create request of the session's
    /// current pod (RFC 3339, UTC): what the reconcile latency of
    /// quality.md measures up to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_requested_at: Option<String>,
    /// The credential IDs the current pod was given (what its session may
    /// fetch through the session gateway).
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub credentials: std::collections::BTreeSet<String>,
}

/// Whether a write is synced to disk before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives the writer's death (rename), not necessarily a power loss.
    Process,
    /// Synced: survives a power loss too.
    Disk,
}

/// Writes `bytes` to `path` atomically (a private 0600 temporary file
/// beside it, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durability == Durability::Disk {
            f.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

/// Creates `dir` and its missing parents, private (0700).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Reads a JSON record; `Ok(None)` when absent or empty.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.is_empty() => Ok(None),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes a JSON record atomically (not synced: see the module docs).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &bytes, Durability::Process)
}

/// True when `id` is safe as a directory name (API IDs are).
pub fn valid_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Paths of the state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn signing_keys(&self) -> PathBuf {
        self.root.join("signing-keys.json")
    }
    /// The exchange-v3 root keys (the keypair Secret's `session-root-*` data).
    pub fn session_roots(&self) -> PathBuf {
        self.root.join("session-roots.json")
    }
    pub fn keypair(&self) -> PathBuf {
        self.root.join("keypair.pem")
    }
    pub fn sessions(&self) -> PathBuf {
        self.root.join("sessions")
    }
    pub fn session(&self, id: &str) -> PathBuf {
        self.sessions().join(id)
    }
    pub fn session_record(&self, id: &str) -> PathBuf {
        self.session(id).join("session.json")
    }
    pub fn logs(&self, id: &str) -> PathBuf {
        self.session(id).join("logs")
    }
    pub fn log(&self, id: &str, container: &str) -> PathBuf {
        self.logs(id).join(format!("{container}.log"))
    }
    pub fn pod(&self, id: &str) -> PathBuf {
        self.session(id).join("pod")
    }
    pub fn pod_record(&self, id: &str) -> PathBuf {
        self.pod(id).join("pod.json")
    }
    pub fn pid(&self, id: &str, container: &str) -> PathBuf {
        self.pod(id).join(format!("{container}.pid"))
    }
    pub fn exit(&self, id: &str, container: &str) -> PathBuf {
        self.pod(id).join(format!("{container}.exit"))
    }
    pub fn volume(&self, id: &str, volume: &str) -> PathBuf {
        self.pod(id).join("volumes").join(volume)
    }

    /// IDs of the sessions that have a directory.
    pub fn session_ids(&self) -> std::io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(self.sessions()) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().filter(|id| valid_session_id(id)) {
                out.push(id.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub ppid: i32,
    pub session: i32,
    pub start: u64,
}

/// Parses `/proc/<pid>/stat` (the command name may hold spaces and parentheses).
pub fn parse_stat(raw: &str) -> Option<ProcStat> {
    let rest = &raw[raw.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); field n is fields[n - 3].
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The stat of a live process (zombies count as gone).
pub fn stat(pid: i32) -> Option<ProcStat> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&raw).filter(|s| s.state != 'Z' && s.state != 'X')
}

impl PidRecord {
    /// The record of a running process, if it runs.
    pub fn of(pid: i32) -> Option<PidRecord> {
        stat(pid).map(|s| PidRecord {
            pid,
            start: s.start,
        })
    }

    /// True while the recorded process runs (same pid, same start time).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start)
    }

    /// False when the pid now belongs to a process started at another
    /// time: a session ID only stays in use while its leader's pid cannot
    /// be recycled, so the session at that pid is not ours.
    fn leads_our_session(&self) -> bool {
        stat(self.pid).is_none_or(|s| s.start == self.start)
    }
}

/// Every live process in the sessions the recorded processes lead (each
/// shim calls `setsid`, so its session holds the container and everything
/// it started, process groups of their own included), in one pass over
/// `/proc`. A recorded pid that now belongs to someone else leads nothing
/// of ours.
pub fn session_members(leaders: &[PidRecord]) -> Vec<i32> {
    let ours: Vec<i32> = leaders
        .iter()
        .filter(|l| l.leads_our_session())
        .map(|l| l.pid)
        .collect();
    if ours.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|s| ours.contains(&s.session)))
        .collect()
}

/// The main process of each container, as the kubelet signals it first:
/// the live children of the shims (a shim runs one). A container whose
/// shim is gone has no known main process: every process of its session
/// counts then. One pass over `/proc`.
pub fn main_processes(leaders: &[PidRecord]) -> Vec<i32> {
    let ours: Vec<(i32, bool)> = leaders
        .iter()
        .filter(|l| l.leads_our_session())
        .map(|l| (l.pid, l.alive()))
        .collect();
    if ours.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            stat(*pid).is_some_and(|s| {
                ours.iter().any(|(leader, alive)| {
                    s.session == *leader && *pid != *leader && (!alive || s.ppid == *leader)
                })
            })
        })
        .collect()
}

/// Sends `signal` to every process of the sessions `leaders` lead; how many got it.
pub fn signal_sessions(leaders: &[PidRecord], signal: rustix::process::Signal) -> usize {
    self::signal(&session_members(leaders), signal)
}

/// Sends `signal` to each of `pids`; how many got it.
pub fn signal(pids: &[i32], signal: rustix::process::Signal) -> usize {
    pids.iter()
        .filter_map(|pid| rustix::process::Pid::from_raw(*pid))
        .filter(|pid| rustix::process::kill_process(*pid, signal).is_ok())
        .count()
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names() {
        let raw = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(
            parse_stat(raw),
            Some(ProcStat {
                state: 'S',
                ppid: 1,
                session: 1234,
                start: 98765
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = PidRecord::of(std::process::id() as i32);
        assert!(me.is_some_and(|r| r.alive()));
        let recycled = me.map(|r| PidRecord {
            start: r.start + 1,
            ..r
        });
        assert!(recycled.is_some_and(|r| !r.alive()));
        assert_eq!(recycled.map(|r| session_members(&[r])), Some(Vec::new()));
    }

    #[test]
    fn an_empty_record_reads_as_absent_and_a_garbled_one_is_an_error() {
        let dir =
            std::env::temp_dir().join(format!("state-read-{}-{}", std::process::id(), now_ms()));
        private_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("r.json");
        std::fs::write(&path, "").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_json::<ExitRecord>(&path).ok(), Some(None));
        std::fs::write(&path, "{\"co").unwrap_or_else(|e| panic!("{e}"));
        assert!(read_json::<ExitRecord>(&path).is_err());
        write_json(&path, &ExitRecord { code: 3 }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read_json(&path).ok(), Some(Some(ExitRecord { code: 3 })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn session_ids_are_plain_names() {
        assert!(valid_session_id("2abcDEF_-9"));
        for bad in ["", "..", "a/b", "a b", &"x".repeat(129)] {
            assert!(!valid_session_id(bad), "{bad}");
        }
    }
}
