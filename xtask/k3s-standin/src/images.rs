//! Container images, as k3s's containerd keeps them: imported from
//! `docker save` tarballs (`k3s ctr images import`, and every tarball in
//! `<data-dir>/agent/images/` at start), listed by `k3s ctr images ls`, and
//! reported in the Node's `status.images` as the kubelet reports what the
//! CRI lists.
//!
//! The stand-in reads an archive the way containerd's importer does and
//! computes the same descriptors (for a Docker archive, the Docker schema 2
//! manifest containerd writes, so the digest is containerd's), but keeps
//! only the image records: no layer is stored or unpacked. Archives are
//! streamed: each entry is hashed as it is read, and only JSON documents
//! (manifests, configs, the index) are kept in memory.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::certs;
use crate::log;
use crate::nodes::{NodeImage, timestamp};

/// The containerd namespace of Kubernetes' images (k3s's `ctr` default).
pub const K8S_NAMESPACE: &str = "k8s.io";
/// Where image records live, under the data dir (containerd's root is
/// `<data-dir>/agent/containerd`).
pub const STORE_DIR: &str = "agent/containerd/standin-images";
/// The air-gap images directory, under the data dir.
pub const IMAGES_DIR: &str = "agent/images";

/// Docker schema 2 manifest.
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const MEDIA_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker uncompressed layer.
pub const MEDIA_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker compressed layer.
pub const MEDIA_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// OCI image manifest.
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The labels k3s puts on images it imports from the images directory,
/// so that the kubelet's image garbage collection leaves them alone.
pub const PINNED_LABELS: [(&str, &str); 2] = [
    ("io.cattle.k3s.pinned", "pinned"),
    ("io.cri-containerd.pinned", "pinned"),
];

/// containerd's annotation with an image's full name.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI's annotation with a reference name (often just a tag).
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The largest JSON document read from an archive (containerd's limit).
const JSON_LIMIT: u64 = 20 << 20;
/// How many images the kubelet reports (`--node-status-max-images`).
const MAX_NODE_IMAGES: usize = 50;
/// How many names per image the kubelet reports.
const MAX_NAMES_PER_IMAGE: usize = 5;

/// An OCI content descriptor, serialised in Go's field order (so a
/// manifest made from descriptors hashes as containerd's does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Annotations (read from an OCI index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform (read from an OCI index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    fn new(media_type: &str, digest: String, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            annotations: None,
            platform: None,
        }
    }
}

/// An OCI platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant (`v7`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `os/arch[/variant]`, as containerd formats it.
    pub fn format(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", self.os, self.architecture),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// The platform the stand-in runs on, as containerd names it.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("linux/{arch}")
}

/// One image as containerd's image store holds it: a name and a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image name (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The manifest (or index) the name points at.
    pub target: Descriptor,
    /// The config digest: the image ID the CRI reports.
    #[serde(rename = "configDigest")]
    pub config_digest: String,
    /// Manifest, config and layers, in bytes (what `ctr images ls` shows).
    pub size: u64,
    /// The platforms the image has, `os/arch[/variant]`.
    pub platforms: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When the name was first recorded.
    #[serde(rename = "createdAt")]
    pub created_at: String,
    /// When the name was last imported.
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
}

// ------------------------------------------------------------ references

/// Normalises a reference as containerd's importer does (Docker's
/// `ParseDockerRef`): `busybox` -> `docker.io/library/busybox:latest`,
/// `me/app:1` -> `docker.io/me/app:1`; a digest wins over a tag.
pub fn normalize_reference(reference: &str) -> Result<String, String> {
    let bad = || format!("normalize image ref {reference:?}: invalid reference format");
    let (named, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match named.rfind(':') {
        Some(i) if !named[i + 1..].contains('/') => (&named[..i], Some(&named[i + 1..])),
        _ => (named, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((d, rest))
            if d.contains('.') || d.contains(':') || d == "localhost" || d != d.to_lowercase() =>
        {
            (d.to_owned(), rest.to_owned())
        }
        _ => ("docker.io".to_owned(), name.to_owned()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io".to_owned()
    } else {
        domain
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if domain.is_empty() || !path.split('/').all(component_ok) {
        return Err(bad());
    }
    if let Some(tag) = tag {
        let tag_ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.as_bytes()[0] != b'.'
            && tag.as_bytes()[0] != b'-'
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !tag_ok {
            return Err(bad());
        }
    }
    match digest {
        Some(d) => {
            let ok = d
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(bad());
            }
            Ok(format!("{domain}/{path}@{d}"))
        }
        None => Ok(format!("{domain}/{path}:{}", tag.unwrap_or("latest"))),
    }
}

/// Splits a normalised name into its repository and, if tagged, the tag
/// (`docker.io/library/busybox:1` -> (`docker.io/library/busybox`, `1`)).
pub(crate) fn repository(name: &str) -> (&str, Option<&str>) {
    if let Some((repo, _)) = name.split_once('@') {
        return (repo, None);
    }
    match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], Some(&name[i + 1..])),
        _ => (name, None),
    }
}

/// What `ctr images import` names an image from an OCI reference-name
/// annotation: a bare tag gets the base name in front; a full reference
/// is kept only when it starts with the base name (containerd's
/// `AddRefPrefix`). Without a base name the annotation is used as is.
fn translate_ref_name(ref_name: &str, base: Option<&str>) -> Option<String> {
    let Some(base) = base else {
        return Some(ref_name.to_owned());
    };
    if ref_name.contains(['/', ':', '@']) {
        let prefixed = ref_name
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with([':', '@']));
        return prefixed.then(|| ref_name.to_owned());
    }
    Some(format!("{base}:{ref_name}"))
}

// --------------------------------------------------------------- archive

/// One regular file of an archive.
#[derive(Debug)]
struct Blob {
    digest: String,
    size: u64,
    /// The first bytes (to detect compression).
    head: Vec<u8>,
    /// The contents, if they look like a JSON document.
    json: Option<Vec<u8>>,
}

/// What one pass over an archive found.
#[derive(Debug, Default)]
struct Scan {
    blobs: HashMap<String, Blob>,
    symlinks: Vec<(String, String)>,
}

impl Scan {
    fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let blob = self
            .blobs
            .get(path)
            .ok_or_else(|| format!("{path:?} not found in the archive"))?;
        let bytes = blob
            .json
            .as_deref()
            .ok_or_else(|| format!("{path:?} is not a JSON document"))?;
        serde_json::from_slice(bytes).map_err(|e| format!("parsing {path:?}: {e}"))
    }

    /// The JSON document an OCI layout stores under `digest`.
    fn json_blob<T: serde::de::DeserializeOwned>(&self, digest: &str) -> Result<T, String> {
        let (alg, hex) = digest
            .split_once(':')
            .ok_or_else(|| format!("invalid digest {digest:?}"))?;
        self.json(&format!("blobs/{alg}/{hex}"))
    }
}

/// Go's `path.Clean` for archive member names.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Reads every entry of a tar stream once: regular files are hashed (and
/// kept if they are JSON documents), symlinks remembered.
fn scan<R: Read>(reader: R) -> Result<Scan, String> {
    let mut archive = tar::Archive::new(reader);
    let mut out = Scan::default();
    let entries = archive
        .entries()
        .map_err(|e| format!("reading the archive: {e}"))?;
    let mut buf = vec![0u8; 256 * 1024];
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading the archive: {e}"))?;
        let kind = entry.header().entry_type();
        let name = entry
            .path()
            .map_err(|e| format!("reading the archive: {e}"))?
            .to_string_lossy()
            .into_owned();
        if kind.is_symlink() {
            if let Some(link) = entry
                .link_name()
                .map_err(|e| format!("reading the archive: {e}"))?
            {
                let dir = match name.rfind('/') {
                    Some(i) => &name[..i],
                    None => ".",
                };
                let target = clean(&format!("{dir}/{}", link.to_string_lossy()));
                out.symlinks.push((clean(&name), target));
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        let mut hasher = Sha256::new();
        let mut head: Vec<u8> = Vec::new();
        let mut json: Option<Vec<u8>> = None;
        let mut first = true;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| format!("reading {name:?} from the archive: {e}"))?;
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            hasher.update(chunk);
            if head.len() < 10 {
                let take = (10 - head.len()).min(n);
                head.extend_from_slice(&chunk[..take]);
            }
            if first {
                first = false;
                let starts_json = chunk
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|b| *b == b'{' || *b == b'[');
                if starts_json && size <= JSON_LIMIT {
                    json = Some(Vec::with_capacity(size as usize));
                }
            }
            if let Some(j) = json.as_mut() {
                j.extend_from_slice(chunk);
            }
        }
        out.blobs.insert(
            clean(&name),
            Blob {
                digest: format!("sha256:{}", hex::encode(hasher.finalize())),
                size,
                head,
                json,
            },
        );
    }
    Ok(out)
}

/// An image found in an archive: its name and what it points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The normalised name.
    pub name: String,
    /// The manifest (or index).
    pub target: Descriptor,
    /// The config digest.
    pub config_digest: String,
    /// Manifest, config and layers, in bytes.
    pub size: u64,
    /// `os/arch[/variant]` of each platform.
    pub platforms: Vec<String>,
}

/// `manifest.json` of a Docker archive.
#[derive(Debug, Deserialize)]
struct DockerArchiveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// The manifest containerd writes for a Docker archive, in Go's field order.
#[derive(Serialize)]
struct DockerManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
}

/// An image manifest (OCI or Docker schema 2), as read.
#[derive(Debug, Deserialize)]
pub(crate) struct ManifestDoc {
    pub(crate) config: Descriptor,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
}

/// An image index (OCI index or Docker manifest list), as read.
#[derive(Debug, Deserialize)]
pub(crate) struct IndexDoc {
    #[serde(default)]
    pub(crate) manifests: Vec<Descriptor>,
}

/// The platform in an image config, if it names one.
pub(crate) fn config_platform(config: &Value) -> Option<Platform> {
    let os = config.get("os")?.as_str()?.to_owned();
    let architecture = config.get("architecture")?.as_str()?.to_owned();
    let variant = config
        .get("variant")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Some(Platform {
        architecture,
        os,
        variant,
    })
}

/// containerd's media type for a Docker archive layer: compressed
/// (gzip or zstd magic) or not.
fn layer_media_type(head: &[u8]) -> &'static str {
    let gzip = head.starts_with(&[0x1f, 0x8b, 0x08]);
    let zstd = head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]);
    if gzip || zstd {
        MEDIA_DOCKER_LAYER_GZIP
    } else {
        MEDIA_DOCKER_LAYER
    }
}

/// Reads a `docker save` archive (Docker's `manifest.json` format, or an
/// OCI image layout with `index.json`, which Docker 25+ writes) and
/// returns the named images in it, in archive order. `base_name` is
/// `ctr images import --base-name` (for OCI reference names that are only
/// a tag).
pub fn read_archive<R: Read>(reader: R, base_name: Option<&str>) -> Result<Vec<Found>, String> {
    let mut scan = scan(reader)?;
    if scan.blobs.contains_key("oci-layout") {
        let layout: Value = scan.json("oci-layout")?;
        let version = layout
            .get("imageLayoutVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !version.is_empty() {
            if version != "1.0.0" {
                return Err(format!("unsupported OCI version {version}"));
            }
            return read_oci_layout(&scan, base_name);
        }
    }
    if !scan.blobs.contains_key("manifest.json") {
        return Err("unrecognized image format".into());
    }
    let entries: Vec<DockerArchiveEntry> = scan.json("manifest.json")?;
    for (name, target) in std::mem::take(&mut scan.symlinks) {
        let Some(blob) = scan.blobs.get(&target) else {
            return Err(format!(
                "no target for symlink layer from {name:?} to {target:?}"
            ));
        };
        let copy = Blob {
            digest: blob.digest.clone(),
            size: blob.size,
            head: blob.head.clone(),
            json: None,
        };
        scan.blobs.insert(name, copy);
    }
    let mut found = Vec::new();
    for entry in entries {
        let config_path = clean(&entry.config);
        let config_blob = scan
            .blobs
            .get(&config_path)
            .ok_or_else(|| format!("image config {:?} not found", entry.config))?;
        let config = Descriptor::new(
            MEDIA_DOCKER_CONFIG,
            config_blob.digest.clone(),
            config_blob.size,
        );
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let blob = scan
                .blobs
                .get(&clean(layer))
                .ok_or_else(|| format!("failed to resolve layers: layer {layer:?} not found"))?;
            layers.push(Descriptor::new(
                layer_media_type(&blob.head),
                blob.digest.clone(),
                blob.size,
            ));
        }
        let manifest = serde_json::to_vec(&DockerManifest {
            schema_version: 2,
            media_type: MEDIA_DOCKER_MANIFEST,
            config: &config,
            layers: &layers,
        })
        .map_err(|e| e.to_string())?;
        let target = Descriptor::new(
            MEDIA_DOCKER_MANIFEST,
            format!("sha256:{}", hex::encode(Sha256::digest(&manifest))),
            manifest.len() as u64,
        );
        let platform = scan
            .json::<Value>(&config_path)
            .ok()
            .as_ref()
            .and_then(config_platform);
        let size = target.size + config.size + layers.iter().map(|l| l.size).sum::<u64>();
        for tag in entry.repo_tags.unwrap_or_default() {
            found.push(Found {
                name: normalize_reference(&tag)?,
                target: target.clone(),
                config_digest: config.digest.clone(),
                size,
                platforms: platform.iter().map(Platform::format).collect(),
            });
        }
    }
    Ok(found)
}

fn read_oci_layout(scan: &Scan, base_name: Option<&str>) -> Result<Vec<Found>, String> {
    if !scan.blobs.contains_key("index.json") {
        return Err("missing index.json in OCI layout 1.0.0".into());
    }
    let index: IndexDoc = scan.json("index.json")?;
    let mut found = Vec::new();
    for desc in index.manifests {
        let annotations = desc.annotations.clone().unwrap_or_default();
        let name = match (
            annotations.get(ANNOTATION_IMAGE_NAME),
            annotations.get(ANNOTATION_REF_NAME),
        ) {
            (Some(n), _) if !n.is_empty() => Some(n.clone()),
            (_, Some(r)) if !r.is_empty() => translate_ref_name(r, base_name),
            _ => None,
        };
        let Some(name) = name else {
            continue;
        };
        let (size, config_digest, platforms) = describe(scan, &desc, 0)?;
        let target = Descriptor {
            annotations: None,
            platform: None,
            ..desc
        };
        found.push(Found {
            name,
            target,
            config_digest,
            size,
            platforms,
        });
    }
    Ok(found)
}

/// Size, config digest and platforms of a manifest or index in an OCI
/// layout (for an index: the platforms of its manifests, and the size of
/// the host's platform, or the first one, as `ctr images ls` counts it).
fn describe(
    scan: &Scan,
    desc: &Descriptor,
    depth: usize,
) -> Result<(u64, String, Vec<String>), String> {
    match desc.media_type.as_str() {
        MEDIA_OCI_INDEX | MEDIA_DOCKER_LIST if depth < 4 => {
            let index: IndexDoc = scan.json_blob(&desc.digest)?;
            let host = host_platform();
            let mut platforms = Vec::new();
            let mut chosen: Option<(u64, String)> = None;
            for child in &index.manifests {
                let (size, config, child_platforms) = describe(scan, child, depth + 1)?;
                let platform = child
                    .platform
                    .as_ref()
                    .map(Platform::format)
                    .or_else(|| child_platforms.first().cloned());
                let is_host = platform.as_deref() == Some(host.as_str());
                if chosen.is_none() || is_host {
                    chosen = Some((size, config));
                }
                if let Some(p) = platform
                    && !platforms.contains(&p)
                {
                    platforms.push(p);
                }
            }
            let (size, config) = chosen.ok_or_else(|| format!("index {} is empty", desc.digest))?;
            Ok((desc.size + size, config, platforms))
        }
        MEDIA_OCI_MANIFEST | MEDIA_DOCKER_MANIFEST => {
            let manifest: ManifestDoc = scan.json_blob(&desc.digest)?;
            let size = desc.size
                + manifest.config.size
                + manifest.layers.iter().map(|l| l.size).sum::<u64>();
            let platform = desc.platform.clone().or_else(|| {
                scan.json_blob::<Value>(&manifest.config.digest)
                    .ok()
                    .as_ref()
                    .and_then(config_platform)
            });
            Ok((
                size,
                manifest.config.digest,
                platform.iter().map(Platform::format).collect(),
            ))
        }
        other => Err(format!("{}: unsupported media type {other:?}", desc.digest)),
    }
}

// ----------------------------------------------------------------- store

/// The image records of one data dir, one file per name under
/// `<data-dir>/agent/containerd/standin-images/<namespace>/`, each written
/// atomically, so that `k3s ctr` (another process) and the running node
/// share them through the data dir alone.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

/// Whether `ns` is a valid containerd namespace.
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 76
        && ns.as_bytes()[0].is_ascii_alphanumeric()
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ImageStore {
    /// The store under `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        ImageStore {
            root: data_dir.join(STORE_DIR),
        }
    }

    fn dir(&self, ns: &str) -> PathBuf {
        self.root.join(ns)
    }

    fn file(&self, ns: &str, name: &str) -> PathBuf {
        self.dir(ns).join(format!(
            "{}.json",
            hex::encode(Sha256::digest(name.as_bytes()))
        ))
    }

    /// The record named `name`, if any.
    pub fn get(&self, ns: &str, name: &str) -> Option<ImageRecord> {
        let bytes = std::fs::read(self.file(ns, name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes a record (replacing one with the same name).
    pub fn put(&self, ns: &str, record: &ImageRecord) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        certs::write_atomic(&self.file(ns, &record.name), &bytes, 0o644)
    }

    /// Removes the record named `name`; false if there was none.
    pub fn remove(&self, ns: &str, name: &str) -> io::Result<bool> {
        match std::fs::remove_file(self.file(ns, name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every record, sorted by name (as containerd's store lists them).
    pub fn list(&self, ns: &str) -> io::Result<Vec<ImageRecord>> {
        let entries = match std::fs::read_dir(self.dir(ns)) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let is_record = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.'));
            if !is_record {
                continue;
            }
            // A file removed or replaced meanwhile is simply skipped.
            if let Some(record) = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<ImageRecord>(&b).ok())
            {
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Records what an archive held: new names are created, existing ones
    /// point at the new target and keep their labels (`labels` are added).
    pub fn import(
        &self,
        ns: &str,
        found: &[Found],
        labels: &BTreeMap<String, String>,
    ) -> io::Result<Vec<ImageRecord>> {
        let now = timestamp(OffsetDateTime::now_utc());
        let mut out = Vec::new();
        for image in found {
            let existing = self.get(ns, &image.name);
            let mut all_labels = existing
                .as_ref()
                .map(|e| e.labels.clone())
                .unwrap_or_default();
            all_labels.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            let record = ImageRecord {
                name: image.name.clone(),
                target: image.target.clone(),
                config_digest: image.config_digest.clone(),
                size: image.size,
                platforms: image.platforms.clone(),
                labels: all_labels,
                created_at: existing.map_or_else(|| now.clone(), |e| e.created_at),
                updated_at: now.clone(),
            };
            self.put(ns, &record)?;
            out.push(record);
        }
        Ok(out)
    }
}

// ------------------------------------------------------------ node status

/// The kubelet's `status.images` from the records of the `k8s.io`
/// namespace: one entry per image ID (config digest) with its repo
/// digests (`<repository>@<target digest>`) then its repo tags, at most
/// five names, largest images first, at most fifty.
pub fn node_images(records: &[ImageRecord]) -> Vec<NodeImage> {
    let mut by_id: BTreeMap<&str, (Vec<String>, Vec<String>, u64)> = BTreeMap::new();
    for r in records {
        let (digests, tags, size) = by_id.entry(r.config_digest.as_str()).or_default();
        let (repo, tag) = repository(&r.name);
        let repo_digest = if r.name.contains('@') {
            r.name.clone()
        } else {
            format!("{repo}@{}", r.target.digest)
        };
        if !digests.contains(&repo_digest) {
            digests.push(repo_digest);
        }
        if tag.is_some() && !tags.contains(&r.name) {
            tags.push(r.name.clone());
        }
        *size = (*size).max(r.size);
    }
    let mut images: Vec<NodeImage> = by_id
        .into_values()
        .map(|(mut names, tags, size)| {
            names.extend(tags);
            names.truncate(MAX_NAMES_PER_IMAGE);
            NodeImage {
                names,
                size_bytes: size,
            }
        })
        .collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    images.truncate(MAX_NODE_IMAGES);
    images
}

/// The node's images now, read from its data dir (cheap: a few small
/// files), for its next heartbeat.
pub fn current_node_images(data_dir: &Path) -> Vec<NodeImage> {
    ImageStore::new(data_dir)
        .list(K8S_NAMESPACE)
        .map(|records| node_images(&records))
        .unwrap_or_default()
}

// ---------------------------------------------------------------- preload

/// Go's `time.Duration` text (`12.345678ms`, `1.5s`, `2m3s`), as k3s logs
/// durations.
pub fn go_duration(d: std::time::Duration) -> String {
    fn frac(value: u128, unit: u128, digits: usize) -> String {
        let (int, rest) = (value / unit, value % unit);
        if rest == 0 {
            return int.to_string();
        }
        let rest = format!("{rest:0digits$}");
        format!("{int}.{}", rest.trim_end_matches('0'))
    }
    let ns = d.as_nanos();
    match ns {
        0 => "0s".into(),
        n if n < 1_000 => format!("{n}ns"),
        n if n < 1_000_000 => format!("{}µs", frac(n, 1_000, 3)),
        n if n < 1_000_000_000 => format!("{}ms", frac(n, 1_000_000, 6)),
        n => {
            let secs = n / 1_000_000_000;
            let (h, m) = (secs / 3600, (secs % 3600) / 60);
            let s = frac(n % 60_000_000_000, 1_000_000_000, 9);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

/// Imports one file of the images directory into the `k8s.io` namespace,
/// pinned as k3s pins what it imports.
fn preload_file(store: &ImageStore, path: &Path) -> Result<(), String> {
    let lower = path.to_string_lossy().to_lowercase();
    let compressed = [
        ".tar.lz4", ".tar.bz2", ".tbz", ".tar.gz", ".tgz", ".tar.zst", ".tzst",
    ];
    if lower.ends_with(".txt") {
        return Err(
            "pulling the images a .txt file lists is not emulated by the k3s stand-in".into(),
        );
    }
    if compressed.iter().any(|ext| lower.ends_with(ext)) {
        return Err(
            "compressed image archives are not emulated by the k3s stand-in; use a plain .tar"
                .into(),
        );
    }
    if !lower.ends_with(".tar") {
        return Err("unhandled file type".into());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    log::info(format!("Importing images from {}", path.display()));
    let found = read_archive(io::BufReader::with_capacity(1 << 20, file), None)?;
    let labels: BTreeMap<String, String> = PINNED_LABELS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let records = store
        .import(K8S_NAMESPACE, &found, &labels)
        .map_err(|e| format!("writing the image store: {e}"))?;
    for r in records {
        log::info(format!("Imported {}", r.name));
    }
    Ok(())
}

/// k3s's air-gap import at start: every file in `<data-dir>/agent/images/`
/// (in name order) is imported; a file that fails is logged, not fatal.
pub fn preload(data_dir: &Path) {
    let dir = data_dir.join(IMAGES_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            log::error(format!("Unable to read images in {}: {e}", dir.display()));
            return;
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.path())
        .collect();
    files.sort();
    let store = ImageStore::new(data_dir);
    for path in files {
        let start = Instant::now();
        match preload_file(&store, &path) {
            Ok(()) => log::info(format!(
                "Imported images from {} in {}",
                path.display(),
                go_duration(start.elapsed())
            )),
            Err(e) => log::error(format!(
                "Error encountered while importing {}: {e}",
                path.display()
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A one-file layer tar.
    pub fn layer_tar(file: &str, contents: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(contents.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, file, contents).unwrap();
        b.into_inner().unwrap()
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    }

    fn sha(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    /// A Docker archive as `docker save` (before Docker 25) writes one:
    /// `<id>/layer.tar`, `<config id>.json`, `manifest.json`.
    pub fn docker_archive(tags: &[&str], layer: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
        }))
        .unwrap();
        let config_name = format!("{}.json", &sha(&config)[7..]);
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": config_name,
            "RepoTags": tags,
            "Layers": ["0123abcd/layer.tar"],
        }]))
        .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "0123abcd/layer.tar", layer);
        add(&mut b, "0123abcd/VERSION", b"1.0");
        add(&mut b, &config_name, &config);
        add(&mut b, "manifest.json", &manifest);
        (b.into_inner().unwrap(), config)
    }

    #[test]
    fn references_are_normalised_like_containerd() {
        for (raw, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("me/app:v1", "docker.io/me/app:v1"),
            ("docker.io/library/nginx:1", "docker.io/library/nginx:1"),
            ("index.docker.io/me/app", "docker.io/me/app:latest"),
            ("registry:5000/team/app:2", "registry:5000/team/app:2"),
            ("localhost/app", "localhost/app:latest"),
            ("ghcr.io/o/r/app:x", "ghcr.io/o/r/app:x"),
            (
                "app:1@sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "docker.io/library/app@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ),
        ] {
            assert_eq!(normalize_reference(raw).unwrap(), want, "{raw}");
        }
        for bad in ["Busybox", "app:", "a//b", "app@sha256:12", "app:-x"] {
            assert!(normalize_reference(bad).is_err(), "{bad}");
        }
        assert_eq!(
            repository("docker.io/library/busybox:1"),
            ("docker.io/library/busybox", Some("1"))
        );
        assert_eq!(repository("registry:5000/app"), ("registry:5000/app", None));
    }

    #[test]
    fn docker_archive_gets_containerds_manifest() {
        let layer = layer_tar("hello", b"hello world\n");
        let (tar, config) = docker_archive(&["hello:1", "me/hello"], &layer);
        let found = read_archive(&tar[..], None).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "docker.io/library/hello:1");
        assert_eq!(found[1].name, "docker.io/me/hello:latest");
        // The manifest containerd writes: Go's json.Marshal of the
        // descriptors, fields in Go's order.
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_DOCKER_MANIFEST}","config":{{"mediaType":"{MEDIA_DOCKER_CONFIG}","digest":"{}","size":{}}},"layers":[{{"mediaType":"{MEDIA_DOCKER_LAYER}","digest":"{}","size":{}}}]}}"#,
            sha(&config),
            config.len(),
            sha(&layer),
            layer.len()
        );
        assert_eq!(found[0].target.digest, sha(manifest.as_bytes()));
        assert_eq!(found[0].target.media_type, MEDIA_DOCKER_MANIFEST);
        assert_eq!(found[0].target.size, manifest.len() as u64);
        assert_eq!(found[0].config_digest, sha(&config));
        assert_eq!(
            found[0].size,
            (manifest.len() + config.len() + layer.len()) as u64
        );
        assert_eq!(found[0].platforms, ["linux/amd64"]);
        assert_eq!(found[0].target, found[1].target);
    }

    #[test]
    fn compressed_and_symlinked_layers() {
        let gz = [0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3];
        let config = br#"{"architecture":"arm","os":"linux","variant":"v7"}"#;
        let manifest =
            br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["a/layer.tar","b/layer.tar"]}]"#;
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "a/layer.tar", &gz);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "b/layer.tar", "../a/layer.tar")
            .unwrap();
        add(&mut b, "./c.json", config);
        add(&mut b, "manifest.json", manifest);
        let tar = b.into_inner().unwrap();
        let found = read_archive(&tar[..], None).unwrap();
        assert_eq!(found[0].platforms, ["linux/arm/v7"]);
        assert_eq!(
            found[0].size,
            found[0].target.size + config.len() as u64 + 2 * gz.len() as u64
        );
        // A missing layer is containerd's error.
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "c.json", config);
        add(&mut b, "manifest.json", manifest);
        let err = read_archive(&b.into_inner().unwrap()[..], None).unwrap_err();
        assert!(err.contains("layer \"a/layer.tar\" not found"), "{err}");
        assert_eq!(layer_media_type(&gz), MEDIA_DOCKER_LAYER_GZIP);
        assert_eq!(layer_media_type(b"hello"), MEDIA_DOCKER_LAYER);
    }

    #[test]
    fn oci_layout_as_docker_25_saves_it() {
        let layer = layer_tar("hello", b"hi\n");
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}"#;
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":{}}}]}}"#,
            sha(config),
            config.len(),
            sha(&layer),
            layer.len()
        );
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_OCI_INDEX}","manifests":[{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/hi:2","org.opencontainers.image.ref.name":"2"}}}},{{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"3"}}}}]}}"#,
            sha(manifest.as_bytes()),
            manifest.len(),
            sha(manifest.as_bytes()),
            manifest.len(),
        );
        let mut b = tar::Builder::new(Vec::new());
        for data in [&layer[..], &config[..], manifest.as_bytes()] {
            add(&mut b, &format!("blobs/sha256/{}", &sha(data)[7..]), data);
        }
        add(&mut b, "index.json", index.as_bytes());
        add(&mut b, "manifest.json", b"[]");
        add(&mut b, "oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#);
        let tar = b.into_inner().unwrap();
        let found = read_archive(&tar[..], Some("import-2024-05-01")).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["docker.io/library/hi:2", "import-2024-05-01:3"]);
        assert_eq!(found[0].target.digest, sha(manifest.as_bytes()));
        assert_eq!(found[0].target.media_type, MEDIA_OCI_MANIFEST);
        assert!(found[0].target.annotations.is_none());
        assert_eq!(found[0].config_digest, sha(config));
        assert_eq!(
            found[0].size,
            (manifest.len() + config.len() + layer.len()) as u64
        );
        assert_eq!(found[0].platforms, ["linux/amd64"]);
        // Not an image archive at all.
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "README", b"hello");
        assert_eq!(
            read_archive(&b.into_inner().unwrap()[..], None).unwrap_err(),
            "unrecognized image format"
        );
        assert!(read_archive(&b"not a tar at all"[..], None).is_err());
    }

    #[test]
    fn store_and_node_images() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path());
        assert!(store.list(K8S_NAMESPACE).unwrap().is_empty());
        let layer = layer_tar("hello", b"hello\n");
        let (tar, _) = docker_archive(&["hello:1", "hello:latest"], &layer);
        let found = read_archive(&tar[..], None).unwrap();
        let pinned: BTreeMap<String, String> =
            [("io.cattle.k3s.pinned".to_owned(), "pinned".to_owned())].into();
        store.import(K8S_NAMESPACE, &found, &pinned).unwrap();
        let (big, _) = docker_archive(&["big:1"], &vec![7u8; 4096]);
        store
            .import(
                K8S_NAMESPACE,
                &read_archive(&big[..], None).unwrap(),
                &BTreeMap::new(),
            )
            .unwrap();
        store.import("default", &found, &BTreeMap::new()).unwrap();
        let records = store.list(K8S_NAMESPACE).unwrap();
        let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "docker.io/library/big:1",
                "docker.io/library/hello:1",
                "docker.io/library/hello:latest"
            ]
        );
        assert_eq!(records[1].labels["io.cattle.k3s.pinned"], "pinned");
        // Re-importing keeps labels and the creation time.
        store
            .import(K8S_NAMESPACE, &found[..1], &BTreeMap::new())
            .unwrap();
        let again = store
            .get(K8S_NAMESPACE, "docker.io/library/hello:1")
            .unwrap();
        assert_eq!(again.labels, records[1].labels);
        assert_eq!(again.created_at, records[1].created_at);
        // The kubelet's view: one entry per image ID, digests then tags,
        // largest first.
        let images = node_images(&records);
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].names[1], "docker.io/library/big:1");
        assert!(images[0].size_bytes > images[1].size_bytes);
        let digest = &found[0].target.digest;
        assert_eq!(
            images[1].names,
            [
                format!("docker.io/library/hello@{digest}"),
                "docker.io/library/hello:1".to_owned(),
                "docker.io/library/hello:latest".to_owned(),
            ]
        );
        assert_eq!(current_node_images(dir.path()), images);
        assert!(
            store
                .remove(K8S_NAMESPACE, "docker.io/library/big:1")
                .unwrap()
        );
        assert!(
            !store
                .remove(K8S_NAMESPACE, "docker.io/library/big:1")
                .unwrap()
        );
        assert_eq!(current_node_images(dir.path()).len(), 1);
        assert!(valid_namespace("k8s.io") && !valid_namespace("../x") && !valid_namespace(""));
    }

    #[test]
    fn preload_imports_tars_and_logs_failures() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join(IMAGES_DIR);
        std::fs::create_dir_all(&images).unwrap();
        let (tar, _) = docker_archive(&["pre:1"], &layer_tar("a", b"a"));
        std::fs::write(images.join("pre.tar"), tar).unwrap();
        std::fs::write(images.join("broken.tar"), b"garbage").unwrap();
        std::fs::write(images.join("list.tar.gz"), b"x").unwrap();
        preload(dir.path());
        let records = ImageStore::new(dir.path()).list(K8S_NAMESPACE).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].name, "docker.io/library/pre:1");
        assert_eq!(records[0].labels["io.cri-containerd.pinned"], "pinned");
    }

    #[test]
    fn go_durations() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_nanos(12_345_678)), "12.345678ms");
        assert_eq!(go_duration(Duration::from_millis(12)), "12ms");
        assert_eq!(go_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(123)), "2m3s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn paths_are_cleaned_like_go() {
        assert_eq!(clean("./manifest.json"), "manifest.json");
        assert_eq!(clean("a/../b/./c"), "b/c");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean("/a/../../b"), "/b");
        assert_eq!(clean(""), ".");
    }
}
