//! Writing certificates and secrets to disk, with the right modes.
//!
//! Private keys (and anything else secret, such as kubeconfigs) are written
//! with mode 0600; certificates with 0644. Files are written to a temporary
//! sibling and renamed into place, so a reader never sees half a file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::generate::CertifiedKey;
use crate::{Error, Result};

/// Who may read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// Mode 0600: private keys, kubeconfigs, tokens.
    Secret,
    /// Mode 0644: certificates and other public material.
    Public,
}

impl FileMode {
    /// The Unix permission bits.
    pub fn bits(self) -> u32 {
        match self {
            FileMode::Secret => 0o600,
            FileMode::Public => 0o644,
        }
    }
}

/// Writes `contents` to `path` atomically (temporary file, then rename) with
/// `mode`. Refuses to replace an existing file unless `overwrite` is set.
pub fn write_file(path: &Path, contents: &[u8], mode: FileMode, overwrite: bool) -> Result<()> {
    write_atomically(path, contents, mode.bits(), overwrite)
}

/// Replaces `path` atomically with `contents`, giving it the permission
/// bits `mode` (to keep an existing file's mode).
pub fn write_file_with_mode(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_atomically(path, contents, mode, true)
}

fn write_atomically(path: &Path, contents: &[u8], mode: u32, overwrite: bool) -> Result<()> {
    if !overwrite && path.exists() {
        return Err(Error::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| {
        Error::io(
            "cannot write",
            path,
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode: set it exactly.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        drop(file);
        if overwrite {
            fs::rename(&tmp, path)
        } else {
            // Hard-link then unlink: fails if `path` appeared meanwhile.
            fs::hard_link(&tmp, path)?;
            fs::remove_file(&tmp)
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::AlreadyExists {
                path: path.to_owned(),
            }
        } else {
            Error::io("cannot write", path, e)
        }
    })
}

/// Writes `<dir>/<name>.crt` (0644) and `<dir>/<name>.key` (0600), creating
/// `dir` if needed. Returns the two paths.
pub fn write_certified_key(
    dir: &Path,
    name: &str,
    certified: &CertifiedKey,
    overwrite: bool,
) -> Result<(PathBuf, PathBuf)> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))?;
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    if !overwrite {
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(Error::AlreadyExists { path: path.clone() });
            }
        }
    }
    write_file(
        &key_path,
        certified.key_pem.expose().as_bytes(),
        FileMode::Secret,
        overwrite,
    )?;
    write_file(
        &cert_path,
        certified.cert_pem.as_bytes(),
        FileMode::Public,
        overwrite,
    )?;
    Ok((cert_path, key_path))
}
