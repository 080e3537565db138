//! Kubeconfigs: rewriting the one k3s writes (server `https://<api host>:<port>`,
//! never 0.0.0.0; cluster, context and user named `topgun-<name>`), merging it
//! into the user's file atomically with mode 0600, and removing it again.

use std::fmt;
use std::fs::OpenOptions;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_norway::{Mapping, Value};
use topgun_tls::KeyPem;
use topgun_tls::write::{FileMode, write_file_with_mode};

use crate::error::KubeconfigProblem;
use crate::{Error, Result};

/// A kubeconfig as YAML text. It holds a client key: `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct KubeconfigYaml(String);

impl KubeconfigYaml {
    /// Wraps YAML text.
    pub fn new(yaml: String) -> Self {
        KubeconfigYaml(yaml)
    }

    /// The YAML. Handle with care: it holds a client key.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Writes the kubeconfig to `path` with mode 0600 (an existing file is
    /// replaced and gets mode 0600 too). The error is `std::io::Error`, which
    /// `?` turns into [`Error::StdIo`].
    pub fn write(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(self.0.as_bytes())?;
        file.sync_all()
    }
}

impl fmt::Debug for KubeconfigYaml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KubeconfigYaml(<redacted>)")
    }
}

/// The name of a cluster's cluster, context and user entries.
pub fn entry_name(cluster: &str) -> String {
    format!("topgun-{cluster}")
}

/// The kubeconfig kubectl reads: the first path in `$KUBECONFIG`, else
/// `~/.kube/config`.
pub(crate) fn default_path() -> Result<PathBuf> {
    Ok(topgun_tls::kubeconfig::Kubeconfig::default_path()?)
}

fn parse(yaml: &str, what: &str) -> Result<Mapping> {
    if yaml.trim().is_empty() {
        return Ok(Mapping::new());
    }
    match serde_norway::from_str::<Value>(yaml) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err(Error::kubeconfig(
            what,
            KubeconfigProblem::NotAMapping {
                entry: "the document".to_owned(),
            },
        )),
        Err(e) => Err(Error::kubeconfig(what, KubeconfigProblem::Yaml(e))),
    }
}

/// The error for the file `path` (k3s's kubeconfig) whose bytes are not
/// UTF-8.
pub(crate) fn not_text(path: &str, e: std::string::FromUtf8Error) -> Error {
    Error::kubeconfig(
        path,
        KubeconfigProblem::NotText {
            field: "its text".to_owned(),
            source: e.utf8_error(),
        },
    )
}

/// Reads kubeconfig YAML with topgun-tls's reader, the one that decides
/// what kubectl would connect with; `what` names it in errors.
fn read(yaml: &KubeconfigYaml, what: &str) -> Result<topgun_tls::Kubeconfig> {
    topgun_tls::Kubeconfig::from_yaml(yaml.expose())
        .map_err(|e| Error::kubeconfig(what, KubeconfigProblem::Read(Box::new(e))))
}

/// The first cluster entry's settings, if any.
fn first_cluster(k: &topgun_tls::Kubeconfig) -> Option<&topgun_tls::kubeconfig::Cluster> {
    k.clusters.first().map(|c| &c.cluster)
}

fn list_mut<'a>(doc: &'a mut Mapping, key: &str) -> &'a mut Vec<Value> {
    let entry = doc
        .entry(Value::from(key))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if !entry.is_sequence() {
        *entry = Value::Sequence(Vec::new());
    }
    entry.as_sequence_mut().expect("a sequence")
}

fn name_of(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

/// Rewrites the kubeconfig k3s wrote: every cluster's server becomes
/// `server_url`, and the (single) cluster, context and user are renamed to
/// `topgun-<cluster>`, which becomes the current context.
pub(crate) fn rewrite(k3s_yaml: &str, cluster: &str, server_url: &str) -> Result<KubeconfigYaml> {
    const WHAT: &str = "the kubeconfig k3s wrote";
    if server_url.contains("0.0.0.0") || server_url.contains("[::]") {
        return Err(Error::kubeconfig(
            WHAT,
            KubeconfigProblem::Server {
                url: server_url.to_owned(),
                problem: "is the unspecified address, which clients cannot dial; refusing to \
                          write it into a kubeconfig",
            },
        ));
    }
    let mut doc = parse(k3s_yaml, WHAT)?;
    let name = entry_name(cluster);
    let mut renamed = std::collections::HashMap::new();
    for key in ["clusters", "users"] {
        let list = list_mut(&mut doc, key);
        if list.len() != 1 {
            return Err(Error::kubeconfig(
                WHAT,
                KubeconfigProblem::Count {
                    list: key,
                    found: list.len(),
                    expected: 1,
                },
            ));
        }
        let entry = list[0].as_mapping_mut().ok_or_else(|| {
            Error::kubeconfig(
                WHAT,
                KubeconfigProblem::NotAMapping {
                    entry: format!("{key}[0]"),
                },
            )
        })?;
        if let Some(old) = entry.get("name").and_then(Value::as_str) {
            renamed.insert((key, old.to_owned()), name.clone());
        }
        entry.insert(Value::from("name"), Value::from(name.as_str()));
        if key == "clusters" {
            let c = entry
                .get_mut("cluster")
                .and_then(Value::as_mapping_mut)
                .ok_or_else(|| {
                    Error::kubeconfig(
                        WHAT,
                        KubeconfigProblem::Missing {
                            entry: "clusters[0]".to_owned(),
                            field: "cluster",
                        },
                    )
                })?;
            c.insert(Value::from("server"), Value::from(server_url));
        }
    }
    let contexts = list_mut(&mut doc, "contexts");
    if contexts.is_empty() {
        let mut ctx = Mapping::new();
        ctx.insert("cluster".into(), name.as_str().into());
        ctx.insert("user".into(), name.as_str().into());
        let mut entry = Mapping::new();
        entry.insert("context".into(), Value::Mapping(ctx));
        entry.insert("name".into(), name.as_str().into());
        contexts.push(Value::Mapping(entry));
    }
    contexts.truncate(1);
    let entry = contexts[0].as_mapping_mut().ok_or_else(|| {
        Error::kubeconfig(
            WHAT,
            KubeconfigProblem::NotAMapping {
                entry: "contexts[0]".to_owned(),
            },
        )
    })?;
    entry.insert("name".into(), name.as_str().into());
    if let Some(ctx) = entry.get_mut("context").and_then(Value::as_mapping_mut) {
        ctx.insert("cluster".into(), name.as_str().into());
        ctx.insert("user".into(), name.as_str().into());
    }
    doc.insert("current-context".into(), name.as_str().into());
    // Mark every entry as topgun's, for this cluster and CA, so that a
    // delete removes only what topgun wrote.
    let ca_data = first_ca_data(&doc);
    for (list, inner) in LISTS {
        for entry in list_mut(&mut doc, list) {
            if let Some(inner) = entry.get_mut(inner).and_then(Value::as_mapping_mut) {
                inner.insert("extensions".into(), marker(cluster, &ca_data));
            }
        }
    }
    let yaml = serde_norway::to_string(&doc)
        .map_err(|e| Error::kubeconfig(WHAT, KubeconfigProblem::Write(e)))?;
    Ok(KubeconfigYaml(yaml))
}

/// The server URL of the first cluster in a kubeconfig.
pub(crate) fn server_of(yaml: &KubeconfigYaml) -> Result<String> {
    const WHAT: &str = "the cluster's kubeconfig";
    first_cluster(&read(yaml, WHAT)?)
        .and_then(|c| c.server.clone())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::kubeconfig(
                WHAT,
                KubeconfigProblem::Missing {
                    entry: "clusters[0].cluster".to_owned(),
                    field: "server",
                },
            )
        })
}

/// The API address of a kubeconfig whose first cluster's server is
/// `https://IP:PORT`, as topgun writes it; with the server URL.
pub(crate) fn api_address_of(yaml: &KubeconfigYaml) -> Result<(String, std::net::SocketAddr)> {
    let server = server_of(yaml)?;
    match server.strip_prefix("https://").and_then(|a| a.parse().ok()) {
        Some(addr) => Ok((server, addr)),
        None => Err(Error::kubeconfig(
            "the cluster's kubeconfig",
            KubeconfigProblem::Server {
                url: server,
                problem: "is not https://IP:PORT",
            },
        )),
    }
}

/// The CA and client identity a kubeconfig's first cluster and user carry
/// (the `*-data` fields, as k3s writes them).
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// The cluster CA, PEM.
    pub ca_pem: String,
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// The client key, PEM.
    pub key_pem: KeyPem,
}

/// Extracts [`Credentials`] from kubeconfig YAML: the first cluster's CA
/// data and the first user's client certificate and key data.
pub(crate) fn credentials(yaml: &KubeconfigYaml) -> Result<Credentials> {
    const WHAT: &str = "the cluster's kubeconfig";
    let k = read(yaml, WHAT)?;
    let user = k.users.first().map(|u| &u.user);
    let field = |value: Option<&str>, entry: &str, field: &'static str| -> Result<String> {
        let b64 = value.ok_or_else(|| {
            Error::kubeconfig(
                WHAT,
                KubeconfigProblem::Missing {
                    entry: entry.to_owned(),
                    field,
                },
            )
        })?;
        let compact: String = b64.split_whitespace().collect();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|source| {
                Error::kubeconfig(WHAT, KubeconfigProblem::Base64 { field, source })
            })?;
        String::from_utf8(bytes).map_err(|e| {
            Error::kubeconfig(
                WHAT,
                KubeconfigProblem::NotText {
                    field: field.to_owned(),
                    source: e.utf8_error(),
                },
            )
        })
    };
    Ok(Credentials {
        ca_pem: field(
            first_cluster(&k).and_then(|c| c.certificate_authority_data.as_deref()),
            "clusters[0].cluster",
            "certificate-authority-data",
        )?,
        cert_pem: field(
            user.and_then(|u| u.client_certificate_data.as_deref()),
            "users[0].user",
            "client-certificate-data",
        )?,
        key_pem: KeyPem::new(field(
            user.and_then(|u| u.client_key_data.as_ref())
                .map(topgun_tls::kubeconfig::Secret::expose),
            "users[0].user",
            "client-key-data",
        )?),
    })
}

/// Holds `<path>.lock` (created exclusively, as kubectl does) while alive.
struct FileLock(PathBuf);

impl FileLock {
    fn acquire(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("cannot create directory", dir, e))?;
        }
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        let lock = PathBuf::from(lock);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&lock) {
                Ok(_) => return Ok(FileLock(lock)),
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::kubeconfig(
                        path.display().to_string(),
                        KubeconfigProblem::Locked { lock },
                    ));
                }
                Err(e) => return Err(Error::io("cannot lock", &lock, e)),
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn read_existing(path: &Path) -> Result<Mapping> {
    if !path.exists() {
        return Ok(Mapping::new());
    }
    let text = topgun_tls::read::bounded_text(path, topgun_tls::read::MAX_KUBECONFIG)?;
    parse(&text, &path.display().to_string())
}

/// The file a write to `path` must change: `path`, or the file its chain
/// of symbolic links ends at (as kubectl follows links when it writes).
fn resolve_links(path: &Path) -> PathBuf {
    let mut current = path.to_owned();
    for _ in 0..40 {
        match std::fs::read_link(&current) {
            Ok(target) if target.is_absolute() => current = target,
            Ok(target) => current = current.parent().map(|d| d.join(&target)).unwrap_or(target),
            Err(_) => break,
        }
    }
    current
}

/// Writes `doc` to `path` (through its links) atomically; an existing file
/// keeps its mode, a new one gets 0600.
fn write_doc(path: &Path, doc: &Mapping) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let target = resolve_links(path);
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))?;
    }
    let mode = std::fs::metadata(&target)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(FileMode::Secret.bits());
    let yaml = serde_norway::to_string(doc)
        .map_err(|e| Error::kubeconfig(path.display().to_string(), KubeconfigProblem::Write(e)))?;
    write_file_with_mode(&target, yaml.as_bytes(), mode)?;
    Ok(())
}

/// The marker topgun puts on the entries it writes (a kubeconfig extension,
/// kept by kubectl): which cluster, and the SHA-256 of its CA data.
pub(crate) const MARKER: &str = "dev.topgun";

/// The SHA-256 (hex) of a kubeconfig's CA data, as the marker holds it.
pub(crate) fn ca_fingerprint(ca_data: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(ca_data.trim().as_bytes()))
}

fn marker(cluster: &str, ca_data: &str) -> Value {
    let mut ext = Mapping::new();
    ext.insert("cluster".into(), cluster.into());
    ext.insert("ca-sha256".into(), ca_fingerprint(ca_data).into());
    let mut named = Mapping::new();
    named.insert("name".into(), MARKER.into());
    named.insert("extension".into(), Value::Mapping(ext));
    Value::Sequence(vec![Value::Mapping(named)])
}

/// Whether `entry` (a cluster, context or user) carries topgun's marker for
/// `cluster` with the CA fingerprint `ca_sha256`.
fn is_marked(entry: &Value, inner: &str, cluster: &str, ca_sha256: &str) -> bool {
    entry
        .get(inner)
        .and_then(|i| i.get("extensions"))
        .and_then(Value::as_sequence)
        .is_some_and(|list| {
            list.iter().any(|e| {
                e.get("name").and_then(Value::as_str) == Some(MARKER)
                    && e.get("extension").is_some_and(|x| {
                        x.get("cluster").and_then(Value::as_str) == Some(cluster)
                            && x.get("ca-sha256").and_then(Value::as_str) == Some(ca_sha256)
                    })
            })
        })
}

/// The inner key of an entry of each list.
const LISTS: [(&str, &str); 3] = [
    ("clusters", "cluster"),
    ("contexts", "context"),
    ("users", "user"),
];

/// The kubeconfig files kubectl reads, in order: every path of
/// `$KUBECONFIG`, else `~/.kube/config`.
pub fn default_files() -> Result<Vec<PathBuf>> {
    if let Some(list) = std::env::var_os("KUBECONFIG") {
        let files: Vec<PathBuf> = list
            .to_string_lossy()
            .split(':')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    Ok(vec![default_path()?])
}

/// `https://HOST:PORT` (IPv6 in brackets).
pub(crate) fn server_url(host: IpAddr, port: u16) -> String {
    format!("https://{}", SocketAddr::new(host, port))
}

/// The server a kubeconfig names: `https://NAME:PORT` when the API has a
/// host name (a remote engine host's, as the user gave it), else the
/// address.
pub(crate) fn kubeconfig_server(name: Option<&str>, host: IpAddr, port: u16) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(n) => match n.parse::<IpAddr>() {
            Ok(ip) => server_url(ip, port),
            Err(_) => format!("https://{n}:{port}"),
        },
        None => server_url(host, port),
    }
}

/// Merges the entries of `kubeconfig` (as topgun makes it) into the
/// single file at `path`; see [`merge_into`].
#[cfg(test)]
pub(crate) fn merge(path: &Path, kubeconfig: &KubeconfigYaml, switch_context: bool) -> Result<()> {
    merge_into(&[path.to_owned()], kubeconfig, switch_context).map(drop)
}

/// Merges the entries of `kubeconfig` (as topgun makes it) into the
/// kubeconfig made of `files`, as kubectl writes it: an entry of the same
/// name is replaced in the file that holds it, new entries go to the first
/// file. The current context changes only with `switch_context`, in the
/// first file that sets one (else the first file). Each file is written
/// atomically under a `<file>.lock` as kubectl uses, through its symbolic
/// links, keeping its mode (0600 when new). Returns the file the cluster
/// entry went to.
pub fn merge_into(
    files: &[PathBuf],
    kubeconfig: &KubeconfigYaml,
    switch_context: bool,
) -> Result<PathBuf> {
    let first = files
        .first()
        .ok_or_else(|| Error::kubeconfig("merge", KubeconfigProblem::NoFile))?;
    let new = parse(kubeconfig.expose(), "the new kubeconfig")?;
    let docs: Vec<Mapping> = files
        .iter()
        .map(|f| read_existing(f))
        .collect::<Result<_>>()?;
    // Where each entry goes, and where the current context goes.
    let mut changes: Vec<(usize, &str, Value)> = Vec::new();
    for (list, _) in LISTS {
        for entry in new
            .get(list)
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let name = name_of(entry);
            let home = docs
                .iter()
                .position(|d| {
                    d.get(list)
                        .and_then(Value::as_sequence)
                        .is_some_and(|l| l.iter().any(|e| name_of(e) == name))
                })
                .unwrap_or(0);
            changes.push((home, list, entry.clone()));
        }
    }
    let current_home = docs
        .iter()
        .position(|d| {
            d.get("current-context")
                .and_then(Value::as_str)
                .is_some_and(|c| !c.is_empty())
        })
        .unwrap_or(0);
    let mut cluster_file = first.clone();
    for (i, file) in files.iter().enumerate() {
        let mine: Vec<&(usize, &str, Value)> = changes.iter().filter(|c| c.0 == i).collect();
        let set_current = switch_context && i == current_home;
        if mine.is_empty() && !set_current {
            continue;
        }
        let _lock = FileLock::acquire(&resolve_links(file))?;
        let mut doc = read_existing(file)?;
        doc.entry("apiVersion".into())
            .or_insert_with(|| "v1".into());
        doc.entry("kind".into()).or_insert_with(|| "Config".into());
        doc.entry("preferences".into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        for (_, list, entry) in mine {
            let name = name_of(entry).map(str::to_owned);
            let l = list_mut(&mut doc, list);
            match l.iter().position(|e| name_of(e) == name.as_deref()) {
                Some(at) => l[at] = entry.clone(),
                None => l.push(entry.clone()),
            }
            if *list == "clusters" {
                cluster_file = file.clone();
            }
        }
        if set_current && let Some(ctx) = new.get("current-context").cloned() {
            doc.insert("current-context".into(), ctx);
        }
        write_doc(file, &doc)?;
    }
    Ok(cluster_file)
}

/// Removes the entries topgun wrote for `cluster` from the kubeconfig made
/// of `files`: only cluster, context and user entries named
/// `topgun-<cluster>` that carry topgun's marker for this cluster and the
/// CA whose data is `ca_data`. An entry a person wrote under the same name
/// stays. Unsets the current context where it named a removed context.
/// Returns the files that changed (missing files change nothing).
pub(crate) fn remove_from(files: &[PathBuf], cluster: &str, ca_data: &str) -> Result<Vec<PathBuf>> {
    let name = entry_name(cluster);
    let fingerprint = ca_fingerprint(ca_data);
    let mut changed = Vec::new();
    for file in files {
        if !file.exists() {
            continue;
        }
        let _lock = FileLock::acquire(&resolve_links(file))?;
        let mut doc = read_existing(file)?;
        let mut removed_context = false;
        let mut removed = false;
        for (list, inner) in LISTS {
            if let Some(l) = doc.get_mut(list).and_then(Value::as_sequence_mut) {
                let before = l.len();
                l.retain(|e| {
                    !(name_of(e) == Some(name.as_str())
                        && is_marked(e, inner, cluster, &fingerprint))
                });
                if l.len() != before {
                    removed = true;
                    removed_context |= list == "contexts";
                }
            }
        }
        if removed_context
            && doc.get("current-context").and_then(Value::as_str) == Some(name.as_str())
        {
            doc.insert("current-context".into(), "".into());
        }
        if removed {
            write_doc(file, &doc)?;
            changed.push(file.clone());
        }
    }
    Ok(changed)
}

/// The server URL and CA data of the cluster entry `topgun-<cluster>`, from
/// the first of `files` that defines it (as kubectl reads), with that file;
/// `None` when none does.
pub(crate) fn merged_entry(
    files: &[PathBuf],
    cluster: &str,
) -> Result<Option<(PathBuf, String, String)>> {
    let name = entry_name(cluster);
    for file in files {
        if !file.exists() {
            continue;
        }
        let k = topgun_tls::Kubeconfig::from_path(file)?;
        let Some(entry) = k.clusters.iter().find(|c| c.name == name) else {
            continue;
        };
        let field = |v: &Option<String>| v.as_deref().unwrap_or_default().trim().to_owned();
        return Ok(Some((
            file.clone(),
            field(&entry.cluster.server),
            field(&entry.cluster.certificate_authority_data),
        )));
    }
    Ok(None)
}

/// The CA data (base64) of a kubeconfig's first cluster (empty if none).
pub(crate) fn ca_data_of(yaml: &KubeconfigYaml) -> Result<String> {
    Ok(first_cluster(&read(yaml, "the cluster's kubeconfig")?)
        .and_then(|c| c.certificate_authority_data.as_deref())
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// The CA data of the first cluster of a parsed kubeconfig (empty if none).
fn first_ca_data(doc: &Mapping) -> String {
    doc.get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|l| l.first())
        .and_then(|c| c.get("cluster"))
        .and_then(|c| c.get("certificate-authority-data"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
";

    #[test]
    fn rewrite_sets_server_and_names() {
        let k = rewrite(K3S, "demo", "https://127.0.0.1:6550").unwrap();
        let text = k.expose();
        assert!(text.contains("server: https://127.0.0.1:6550"), "{text}");
        assert!(!text.contains("default"), "{text}");
        assert!(text.contains("current-context: topgun-demo"), "{text}");
        assert_eq!(server_of(&k).unwrap(), "https://127.0.0.1:6550");
        let c = credentials(&k).unwrap();
        assert_eq!(
            (c.ca_pem.as_str(), c.cert_pem.as_str(), c.key_pem.expose()),
            ("CA", "CERT", "KEY")
        );
        assert!(!format!("{k:?}").contains("S0VZ"));
        let err = rewrite(K3S, "demo", "https://0.0.0.0:6550")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unspecified"), "{err}");
    }

    /// The source of an [`Error::Kubeconfig`].
    fn problem(e: &Error) -> &KubeconfigProblem {
        let source = std::error::Error::source(e).expect("a source");
        source
            .downcast_ref::<KubeconfigProblem>()
            .unwrap_or_else(|| panic!("not a KubeconfigProblem: {source:?}"))
    }

    const KEY_TEXT: &str = "c2VjcmV0LWtleS10ZXh0LXRoYXQtbXVzdC1ub3Qtc2hvdw";

    #[test]
    fn problems_are_typed_sources_and_never_show_keys() {
        // Not YAML, with a key in the way: the parser's error is kept,
        // its text is not shown.
        let yaml = format!(
            "users:\n- name: u\n  user:\n    client-key-data: [\"-----BEGIN PRIVATE KEY-----\\n{KEY_TEXT}\\n-----END PRIVATE KEY-----\"\n"
        );
        let err = rewrite(&yaml, "demo", "https://127.0.0.1:6550").unwrap_err();
        assert!(
            matches!(problem(&err), KubeconfigProblem::Yaml(_)),
            "{err:?}"
        );
        assert!(problem(&err).yaml_error().is_some());
        assert!(err.to_string().contains("not valid YAML"), "{err}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(KEY_TEXT), "{shown}");
        }
        assert_eq!(err.kind(), crate::ErrorKind::Failed);

        // Key data that is not base64: the decoder's error is the cause.
        let bad = K3S.replace("S0VZ", &format!("{KEY_TEXT}!"));
        let k = rewrite(&bad, "demo", "https://127.0.0.1:6550").unwrap();
        let err = credentials(&k).unwrap_err();
        let KubeconfigProblem::Base64 { field, .. } = problem(&err) else {
            panic!("{err:?}");
        };
        assert_eq!(*field, "client-key-data");
        let cause = std::error::Error::source(problem(&err)).unwrap();
        assert!(cause.is::<base64::DecodeError>(), "{cause:?}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains(KEY_TEXT), "{shown}");
        }

        // A missing field names the entry.
        let k = KubeconfigYaml::new(K3S.replace("    client-key-data: S0VZ\n", ""));
        let err = credentials(&k).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubeconfig: the cluster's kubeconfig: users[0].user has no client-key-data"
        );

        // What topgun-tls's reader refuses is its error.
        let err = server_of(&KubeconfigYaml::new("- a\n- b\n".to_owned())).unwrap_err();
        let KubeconfigProblem::Read(tls) = problem(&err) else {
            panic!("{err:?}");
        };
        assert!(tls.to_string().contains("not a kubeconfig"), "{tls}");
        assert_eq!(err.kind(), crate::ErrorKind::Failed);

        // Servers topgun does not dial.
        let err = rewrite(K3S, "demo", "https://0.0.0.0:6550").unwrap_err();
        assert!(matches!(problem(&err), KubeconfigProblem::Server { .. }));
        let k = rewrite(K3S, "demo", "https://api.example:6550").unwrap();
        let err = api_address_of(&k).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kubeconfig: the cluster's kubeconfig: the server https://api.example:6550 is not \
             https://IP:PORT"
        );
        let k = rewrite(K3S, "demo", "https://127.0.0.1:6550").unwrap();
        assert_eq!(
            api_address_of(&k).unwrap().1,
            "127.0.0.1:6550".parse().unwrap()
        );

        // Text that is not UTF-8.
        let err = not_text(
            "/k3s.yaml",
            String::from_utf8(vec![b'a', 0xff]).unwrap_err(),
        );
        assert!(
            err.to_string()
                .starts_with("kubeconfig: /k3s.yaml: its text is not text (not UTF-8)"),
            "{err}"
        );
        let cause = std::error::Error::source(problem(&err)).unwrap();
        assert!(cause.is::<std::str::Utf8Error>());
    }

    #[test]
    fn a_merged_entry_is_read_back_from_the_file_that_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let demo = rewrite(K3S, "demo", "https://127.0.0.1:6550").unwrap();
        merge(&path, &demo, false).unwrap();
        let missing = dir.path().join("missing");
        let (file, server, ca) = merged_entry(&[missing.clone(), path.clone()], "demo")
            .unwrap()
            .expect("the entry");
        assert_eq!(
            (file, server.as_str(), ca.as_str()),
            (path.clone(), "https://127.0.0.1:6550", "Q0E=")
        );
        assert_eq!(ca, ca_data_of(&demo).unwrap());
        assert!(
            merged_entry(std::slice::from_ref(&path), "other")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn the_result_is_a_kubeconfig_topgun_tls_reads() {
        let k = rewrite(K3S, "demo", "https://192.168.1.28:6550").unwrap();
        let parsed = topgun_tls::kubeconfig::Kubeconfig::from_yaml(k.expose()).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("topgun-demo"));
        assert_eq!(
            parsed.clusters[0].cluster.server.as_deref(),
            Some("https://192.168.1.28:6550")
        );
    }

    #[test]
    fn merge_and_remove_keep_other_entries_and_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config");
        let other = rewrite(K3S, "other", "https://127.0.0.1:7000").unwrap();
        merge(&path, &other, false).unwrap();
        let demo = rewrite(K3S, "demo", "https://127.0.0.1:6550").unwrap();
        merge(&path, &demo, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("current-context: topgun"),
            "no switch: {text}"
        );
        let demo2 = rewrite(K3S, "demo", "https://127.0.0.1:6551").unwrap();
        merge(&path, &demo2, true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("current-context: topgun-demo"), "{text}");
        assert!(!text.contains("6550"), "replaced, not duplicated: {text}");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let files = [path.clone()];
        // Another CA's entries are not this cluster's.
        assert!(remove_from(&files, "demo", "T1RIRVI=").unwrap().is_empty());
        assert_eq!(remove_from(&files, "demo", "Q0E=").unwrap(), files);
        assert!(
            remove_from(&files, "demo", "Q0E=").unwrap().is_empty(),
            "idempotent"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("topgun-demo"), "{text}");
        assert!(text.contains("topgun-other"), "{text}");
        assert!(!path.with_file_name("config.lock").exists());
        assert!(
            remove_from(&[dir.path().join("missing")], "demo", "Q0E=")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn entries_a_person_wrote_under_topgun_names_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        let hand = "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://10.0.0.1:6443\n  name: topgun-other\ncontexts:\n- context:\n    cluster: topgun-other\n    user: topgun-other\n  name: topgun-other\ncurrent-context: topgun-other\nusers:\n- name: topgun-other\n  user:\n    token: hand-written\n";
        std::fs::write(&path, hand).unwrap();
        assert!(
            remove_from(std::slice::from_ref(&path), "other", "Q0E=")
                .unwrap()
                .is_empty()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), hand);
    }

    #[test]
    fn a_symlinked_kubeconfig_is_updated_through_its_link_and_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real/config");
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(&real, "apiVersion: v1\nkind: Config\n").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
        let link = dir.path().join("config");
        std::os::unix::fs::symlink("real/config", &link).unwrap();
        merge(
            &link,
            &rewrite(K3S, "demo", "https://127.0.0.1:6550").unwrap(),
            false,
        )
        .unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            std::fs::read_to_string(&real)
                .unwrap()
                .contains("topgun-demo")
        );
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn several_files_are_written_as_kubectl_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        std::fs::write(
            &b,
            "apiVersion: v1\nkind: Config\ncurrent-context: theirs\n",
        )
        .unwrap();
        let files = [a.clone(), b.clone()];
        let demo = rewrite(K3S, "demo", "https://127.0.0.1:6550").unwrap();
        // New entries go to the first file; no context switch.
        assert_eq!(merge_into(&files, &demo, false).unwrap(), a);
        let ta = std::fs::read_to_string(&a).unwrap();
        assert!(
            ta.contains("topgun-demo") && !ta.contains("current-context: topgun"),
            "{ta}"
        );
        assert!(
            std::fs::read_to_string(&b)
                .unwrap()
                .contains("current-context: theirs")
        );
        // The switch goes to the first file that sets a current context.
        merge_into(&files, &demo, true).unwrap();
        assert!(
            std::fs::read_to_string(&b)
                .unwrap()
                .contains("current-context: topgun-demo")
        );
        // An entry is rewritten in the file that holds it.
        let moved = rewrite(K3S, "demo", "https://127.0.0.1:7777").unwrap();
        merge_into(&[b.clone(), a.clone()], &moved, false).unwrap();
        assert!(std::fs::read_to_string(&a).unwrap().contains("7777"));
        assert!(!std::fs::read_to_string(&b).unwrap().contains("7777"));

        // kubectl itself reads the result so (the test needs Debian's kubectl,
        // which `cargo xtask test` provides as TOPGUN_KUBECTL).
        let Some(kubectl) = std::env::var_os("TOPGUN_KUBECTL") else {
            return;
        };
        let list = format!("{}:{}", a.display(), b.display());
        let out = std::process::Command::new(&kubectl)
            .args(["config", "view", "-o", "jsonpath={.current-context} {.clusters[?(@.name==\"topgun-demo\")].cluster.server}"])
            .env("KUBECONFIG", &list)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "topgun-demo https://127.0.0.1:7777"
        );
    }
}
