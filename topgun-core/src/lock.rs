//! One create or delete of a cluster at a time, on this host.
//!
//! A `create` holds an exclusive lock on a per-engine, per-name lock file
//! from before its first Docker call until it has succeeded or rolled back;
//! a `delete` removes what it finds (which makes an in-flight create fail
//! and roll back), then takes the same lock, which waits for that create to
//! exit, and removes again. So when a create and a delete of one name race,
//! nothing of that name is left once both have exited. The lock file holds
//! nothing: the kernel releases the lock when the process ends, however it
//! ends, so no stale lock can remain.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::{Error, Result};

/// A held cluster lock; released on drop.
#[derive(Debug)]
pub(crate) struct ClusterLock {
    _file: File,
}

/// The lock file of cluster `name` on the engine at `engine`: in
/// `$XDG_RUNTIME_DIR/topgun`, else `<temp dir>/topgun-locks` (sticky and
/// world-writable, like /tmp, so users sharing an engine share its locks).
fn lock_path(engine: &str, name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("topgun"),
        None => std::env::temp_dir().join("topgun-locks"),
    };
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("cannot create", &dir, e))?;
        if dir.starts_with(std::env::temp_dir()) {
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777));
        }
    }
    let key = hex::encode(&sha2::Sha256::digest(format!("{engine}\0{name}"))[..12]);
    Ok(dir.join(format!("{key}.lock")))
}

fn open(engine: &str, name: &str) -> Result<(File, PathBuf)> {
    let path = lock_path(engine, name)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .or_else(|_| File::open(&path))
        .map_err(|e| Error::io("cannot open the lock file", &path, e))?;
    Ok((file, path))
}

impl ClusterLock {
    /// Takes the lock of cluster `name` for a create: at once, or an error
    /// saying another command holds it.
    pub(crate) fn for_create(engine: &str, name: &str) -> Result<Self> {
        let (file, path) = open(engine, name)?;
        match file.try_lock() {
            Ok(()) => Ok(ClusterLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::invalid(
                format!("cluster {name:?}"),
                format!(
                    "is being created or deleted by another topgun command on this host (it \
                     holds {})",
                    path.display()
                ),
                "wait for that command to finish",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path, e)),
        }
    }

    /// Takes the lock of cluster `name` for a delete, waiting up to `wait`
    /// for a create that holds it to finish (or roll back).
    pub(crate) async fn for_delete(engine: &str, name: &str, wait: Duration) -> Result<Self> {
        let (file, path) = open(engine, name)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(ClusterLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::invalid(
                        format!("cluster {name:?}"),
                        format!(
                            "is still being created by another topgun command after {}s (it \
                             holds {})",
                            wait.as_secs(),
                            path.display()
                        ),
                        "run the delete again once that command has finished",
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io("cannot lock", &path, e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_create_excludes_another_and_a_delete_waits_for_it() {
        let engine = format!("unix:///test-{}", std::process::id());
        let held = ClusterLock::for_create(&engine, "demo").unwrap();
        let err = ClusterLock::for_create(&engine, "demo")
            .unwrap_err()
            .to_string();
        assert!(err.contains("another topgun command"), "{err}");
        // Another name is free.
        drop(ClusterLock::for_create(&engine, "other").unwrap());
        let err = ClusterLock::for_delete(&engine, "demo", Duration::from_millis(100))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("still being created"), "{err}");
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(held);
        });
        ClusterLock::for_delete(&engine, "demo", Duration::from_secs(5))
            .await
            .unwrap();
        release.await.unwrap();
    }
}
