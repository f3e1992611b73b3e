//! Exchange v3 in the process runtime: the root keys in the state
//! directory (0600, the keypair Secret's `session-root-*` data as JSON) and
//! each pod's session key file, a 0600 file in the session's directory
//! (`pod/volumes/session-key/session-key.json`, the local path of the
//! pod's key mount), written before the pod's processes start and
//! rewritten after a root rotation.

use std::collections::BTreeMap;
use std::time::SystemTime;

use ambient_protocol::exchange::v3::{RootKeys, SessionKeyFile};
use anyhow::Context as _;

use super::state::{self, Durability, SessionRecord};
use super::{ProcessRuntime, RuntimeError, io};
use crate::keypair::roots::RootRing;
use crate::names;
use crate::session_keys::{self, V3Roots};

impl ProcessRuntime {
    /// Derives session key files from `roots` from now on.
    pub fn set_session_keys(&self, roots: V3Roots) {
        *self
            .inner
            .session_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(roots);
    }

    fn session_keys(&self) -> Option<V3Roots> {
        self.inner
            .session_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The root keys stored in the state directory (`None`: none yet).
    pub fn session_roots(&self) -> anyhow::Result<Option<RootRing>> {
        let path = self.inner.layout.session_roots();
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let data: BTreeMap<String, String> = serde_json::from_slice(&raw)
            .with_context(|| format!("{} is not the expected JSON", path.display()))?;
        let data = data
            .into_iter()
            .map(|(k, v)| (k, ambient_protocol::Secret::new(v)))
            .collect();
        RootRing::from_data(&data, SystemTime::now())
            .with_context(|| format!("{} holds no usable root keys", path.display()))
    }

    /// Writes the root keys to the state directory (0600, atomically).
    pub fn save_session_roots(&self, roots: &RootRing) -> anyhow::Result<()> {
        let path = self.inner.layout.session_roots();
        let data: BTreeMap<String, String> = roots
            .to_data()
            .into_iter()
            .map(|(k, v)| (k, v.expose().to_owned()))
            .collect();
        state::write_atomic(&path, &serde_json::to_vec(&data)?, Durability::Disk)
            .with_context(|| format!("cannot write {}", path.display()))
    }

    fn key_path(&self, id: &str) -> std::path::PathBuf {
        self.inner
            .layout
            .volume(id, names::SESSION_KEY_VOLUME)
            .join(names::SESSION_KEY_FILE)
    }

    /// Writes session `id`'s key file for pod `generation` (0600).
    pub(super) fn write_session_key(&self, id: &str, generation: &str) -> Result<(), RuntimeError> {
        let key = self
            .session_keys()
            .and_then(|r| session_keys::key_file(&r, id, generation))
            .ok_or_else(|| RuntimeError::Transient("no exchange-v3 root keys loaded yet".into()))?;
        let path = self.key_path(id);
        if let Some(dir) = path.parent() {
            state::private_dir(dir).map_err(|e| io("mkdir", e))?;
        }
        state::write_atomic(&path, key.expose().as_bytes(), Durability::Process)
            .map_err(|e| io("cannot write the session key file", e))
    }

    /// Rewrites the key file of every session pod that has one, when it
    /// holds that pod's generation under an older root (a pod started
    /// meanwhile has written its own key: left as it is).
    pub(super) fn rewrite_keys_now(&self, roots: &RootKeys) -> Result<usize, RuntimeError> {
        let layout = &self.inner.layout;
        let mut rewritten = 0;
        for id in layout.session_ids().map_err(|e| io("sessions", e))? {
            let path = self.key_path(&id);
            if !path.exists() {
                continue;
            }
            let record: Option<SessionRecord> = state::read_json(&layout.session_record(&id))
                .map_err(|e| io("session record", e))?;
            let Some(generation) = record.and_then(|r| r.pod_requested_at) else {
                continue;
            };
            match SessionKeyFile::read(&path) {
                Ok(f) if f.generation() != generation || f.kid() == roots.current().kid() => {
                    continue;
                }
                _ => {}
            }
            let key = roots.key_file(&id, &generation).to_json();
            state::write_atomic(&path, key.expose().as_bytes(), Durability::Process)
                .map_err(|e| io("cannot rewrite the session key file", e))?;
            rewritten += 1;
        }
        Ok(rewritten)
    }
}
