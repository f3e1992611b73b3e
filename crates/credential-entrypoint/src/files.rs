//! Credential files: a private 0700 directory, and atomic 0600 writes (a
//! new file beside the target, synced, then renamed over it), so a reader
//! sees the old content or the new, never a torn one, and a failure leaves
//! the old file in place.

use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A file write that failed. Names the path, never the content.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", path.display())]
pub struct WriteError {
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Creates `dir` with mode 0700, or accepts an existing directory that is
/// ours and no symlink (tightening it to 0700).
pub fn private_dir(dir: &Path) -> Result<(), WriteError> {
    let fail = |source| WriteError {
        path: dir.to_owned(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir).map_err(fail)?;
            let uid = rustix::process::getuid().as_raw();
            if !meta.file_type().is_dir() || meta.uid() != uid {
                return Err(fail(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    "exists and is not a directory owned by this user",
                )));
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)
        }
        Err(e) => Err(fail(e)),
    }
}

/// Replaces `path` with `content`, mode 0600, atomically.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<(), WriteError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let fail = |source| WriteError {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .ok_or_else(|| fail(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(content)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ce-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn atomic_write_replaces_with_mode_0600_and_leaves_no_temp() {
        let dir = scratch("atomic");
        private_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .ok()
        };
        assert_eq!(mode(&dir), Some(0o700));
        let f = dir.join("cred");
        write_atomic(&f, b"one").unwrap_or_else(|e| panic!("{e}"));
        write_atomic(&f, b"two").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(std::fs::read(&f).ok().as_deref(), Some(&b"two"[..]));
        assert_eq!(mode(&f), Some(0o600));
        let entries = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(entries, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn existing_dir_is_tightened_and_a_symlink_refused() {
        let dir = scratch("tighten");
        std::fs::create_dir_all(&dir).ok();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).ok();
        private_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
        let mode = std::fs::metadata(&dir)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o700));
        let link = scratch("link");
        std::os::unix::fs::symlink(&dir, &link).ok();
        assert!(private_dir(&link).is_err());
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_names_the_path_only() {
        let err = write_atomic(Path::new("/nonexistent-dir-ce/kube"), b"s3cret")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("/nonexistent-dir-ce/kube") && !err.contains("s3cret"),
            "{err}"
        );
    }
}
