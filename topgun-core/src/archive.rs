//! Files into and out of containers through Docker's archive API, as tar
//! streams built and parsed with the `tar` crate (never by cutting bytes).

use bollard::Docker;
use bollard::query_parameters::{DownloadFromContainerOptions, UploadToContainerOptions};
use bytes::Bytes;
use futures_util::StreamExt;
use topgun_etcd::plan::PlannedFile;

use crate::{Error, Result};

/// The largest file topgun reads out of a container (kubeconfigs and
/// certificates are a few KiB).
pub(crate) const MAX_READ: usize = 1024 * 1024;

/// Builds an in-memory tar holding `dirs` (mode 0755) and `files` (with
/// their modes, owned by root), with paths relative to `/`.
pub(crate) fn build_tar(files: &[PlannedFile], dirs: &[String]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut made: Vec<String> = Vec::new();
    let mut add_dir = |builder: &mut tar::Builder<Vec<u8>>, dir: &str| -> Result<()> {
        // Parents first, each once.
        let rel = dir.trim_matches('/');
        let mut path = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            if made.contains(&path) {
                continue;
            }
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            builder
                .append_data(&mut header, format!("{path}/"), std::io::empty())
                .map_err(|e| Error::io("cannot build tar entry", path.as_str(), e))?;
            made.push(path.clone());
        }
        Ok(())
    };
    for dir in dirs {
        add_dir(&mut builder, dir)?;
    }
    for file in files {
        let rel = file.path.trim_start_matches('/');
        if let Some((parent, _)) = rel.rsplit_once('/') {
            add_dir(&mut builder, parent)?;
        }
        let data = file.contents.expose();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(file.mode);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, rel, data)
            .map_err(|e| Error::io("cannot build tar entry", rel, e))?;
    }
    builder
        .into_inner()
        .map_err(|e| Error::io("cannot build tar", "<memory>", e))
}

/// Uploads `files` and `dirs` into `container` (created, not necessarily
/// started) in one archive request.
pub(crate) async fn upload(
    docker: &Docker,
    container: &str,
    files: &[PlannedFile],
    dirs: &[String],
) -> Result<()> {
    if files.is_empty() && dirs.is_empty() {
        return Ok(());
    }
    let tar = build_tar(files, dirs)?;
    docker
        .upload_to_container(
            container,
            Some(UploadToContainerOptions {
                path: "/".to_owned(),
                ..Default::default()
            }),
            bollard::body_full(Bytes::from(tar)),
        )
        .await
        .map_err(|e| Error::docker(format!("upload files to {container}"), e))
}

/// Reads one regular file out of `container` (running or stopped) by parsing
/// the tar stream the archive API returns.
pub(crate) async fn read_file(docker: &Docker, container: &str, path: &str) -> Result<Vec<u8>> {
    let mut stream = docker.download_from_container(
        container,
        Some(DownloadFromContainerOptions {
            path: path.to_owned(),
        }),
    );
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::docker(format!("read {path} from {container}"), e))?;
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_READ + 64 * 1024 {
            return Err(Error::io(
                "refusing to read more than 1 MiB of",
                path,
                std::io::ErrorKind::FileTooLarge.into(),
            ));
        }
    }
    file_from_tar(&buf, path)
}

/// Extracts the regular file named like the last part of `path` from a tar.
pub(crate) fn file_from_tar(tar_bytes: &[u8], path: &str) -> Result<Vec<u8>> {
    let want = path.rsplit('/').next().unwrap_or(path);
    let mut archive = tar::Archive::new(tar_bytes);
    let entries = archive
        .entries()
        .map_err(|e| Error::io("cannot read the tar stream of", path, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("cannot read the tar stream of", path, e))?;
        let name = entry
            .path()
            .map_err(|e| Error::io("cannot read the tar stream of", path, e))?
            .to_string_lossy()
            .into_owned();
        let is_file = entry.header().entry_type().is_file();
        if is_file && name.trim_end_matches('/').rsplit('/').next() == Some(want) {
            let mut out = Vec::with_capacity(entry.size() as usize);
            std::io::Read::read_to_end(&mut entry, &mut out)
                .map_err(|e| Error::io("cannot read the tar stream of", path, e))?;
            return Ok(out);
        }
    }
    Err(Error::io(
        "the archive holds no regular file",
        path,
        std::io::ErrorKind::NotFound.into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use topgun_etcd::plan::FileContents;
    use topgun_tls::KeyPem;

    #[test]
    fn tar_round_trip_keeps_paths_modes_and_parents() {
        let files = vec![
            PlannedFile {
                path: "/etc/topgun/datastore/ca.crt".to_owned(),
                mode: 0o644,
                contents: FileContents::Public("CA".to_owned()),
            },
            PlannedFile {
                path: "/etc/topgun/datastore/client.key".to_owned(),
                mode: 0o600,
                contents: FileContents::Secret(KeyPem::new("KEY".to_owned())),
            },
        ];
        let tar = build_tar(&files, &["/output".to_owned()]).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32, bool)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                    e.header().entry_type().is_dir(),
                )
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("output/".to_owned(), 0o755, true),
                ("etc/".to_owned(), 0o755, true),
                ("etc/topgun/".to_owned(), 0o755, true),
                ("etc/topgun/datastore/".to_owned(), 0o755, true),
                ("etc/topgun/datastore/ca.crt".to_owned(), 0o644, false),
                ("etc/topgun/datastore/client.key".to_owned(), 0o600, false),
            ]
        );
        assert_eq!(
            file_from_tar(&tar, "/etc/topgun/datastore/client.key").unwrap(),
            b"KEY"
        );
        assert!(file_from_tar(&tar, "/nope").is_err());
    }

    /// A file longer than one tar block, as Docker sends it: the whole file
    /// comes back, not the first 512 bytes.
    #[test]
    fn long_files_are_read_whole() {
        let text = "x".repeat(5000);
        let files = vec![PlannedFile {
            path: "/output/kubeconfig.yaml".to_owned(),
            mode: 0o600,
            contents: FileContents::Public(text.clone()),
        }];
        let tar = build_tar(&files, &[]).unwrap();
        assert_eq!(
            file_from_tar(&tar, "/output/kubeconfig.yaml").unwrap(),
            text.as_bytes()
        );
    }
}
