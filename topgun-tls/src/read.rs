//! Reading the files topgun is pointed at, bounded: a device (`/dev/zero`),
//! a FIFO or a huge file is refused at once, in constant memory, instead of
//! being read until memory runs out.

use std::io::Read;
use std::path::Path;

use crate::{Error, Result};

/// The most of a PEM or DER file topgun reads.
pub const MAX_PEM: u64 = 1024 * 1024;
/// The most of a kubeconfig topgun reads.
pub const MAX_KUBECONFIG: u64 = 4 * 1024 * 1024;
/// The most of a YAML config file topgun reads.
pub const MAX_CONFIG: u64 = 1024 * 1024;

/// Reads the regular file at `path`, of at most `max` bytes. Anything else
/// (a device, FIFO, socket or directory) is refused without reading, and a
/// larger file after reading `max + 1` bytes.
pub fn bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    let refuse = |message: String| {
        Error::io(
            "cannot read",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        )
    };
    // Opening a FIFO for reading blocks until a writer comes: look first.
    let meta = std::fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
    if !meta.is_file() {
        return Err(refuse(
            "it is not a regular file (a device, FIFO, socket or directory)".to_owned(),
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("cannot read", path, e))?;
    if bytes.len() as u64 > max {
        return Err(refuse(format!(
            "it is larger than {} KiB, more than such a file ever is",
            max / 1024
        )));
    }
    Ok(bytes)
}

/// [`bounded`], as UTF-8 text.
pub fn bounded_text(path: &Path, max: u64) -> Result<String> {
    String::from_utf8(bounded(path, max)?).map_err(|_| {
        Error::io(
            "cannot read",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_big_files_are_refused_at_once() {
        let started = std::time::Instant::now();
        let err = bounded(Path::new("/dev/zero"), MAX_PEM)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let err = bounded(&fifo, MAX_PEM).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let big = dir.path().join("big.pem");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(3 * 1024 * 1024 * 1024)
            .unwrap();
        let err = bounded(&big, MAX_PEM).unwrap_err().to_string();
        assert!(err.contains("larger than 1024 KiB"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        std::fs::write(&big, "small").unwrap();
        assert_eq!(bounded_text(&big, MAX_PEM).unwrap(), "small");
    }
}
