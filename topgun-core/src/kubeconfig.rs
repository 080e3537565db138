//! Kubeconfigs: rewriting the one k3s writes (server `https://<api host>:<port>`,
//! never 0.0.0.0; cluster, context and user named `topgun-<name>`), merging it
//! into the user's file atomically with mode 0600, and removing it again.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_norway::{Mapping, Value};
use topgun_tls::KeyPem;
use topgun_tls::write::{FileMode, write_file};

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
pub fn default_path() -> Result<PathBuf> {
    Ok(topgun_tls::kubeconfig::Kubeconfig::default_path()?)
}

fn parse(yaml: &str, what: &str) -> Result<Mapping> {
    if yaml.trim().is_empty() {
        return Ok(Mapping::new());
    }
    match serde_norway::from_str::<Value>(yaml) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err(Error::Kubeconfig(format!("{what} is not a YAML mapping"))),
        Err(e) => Err(Error::Kubeconfig(format!(
            "{what} is not valid YAML: {}",
            topgun_tls::redact::parser_message(&e.to_string())
        ))),
    }
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
pub fn rewrite(k3s_yaml: &str, cluster: &str, server_url: &str) -> Result<KubeconfigYaml> {
    if server_url.contains("0.0.0.0") || server_url.contains("[::]") {
        return Err(Error::Kubeconfig(format!(
            "refusing to write the unspecified address into a kubeconfig: {server_url}"
        )));
    }
    let mut doc = parse(k3s_yaml, "the kubeconfig k3s wrote")?;
    let name = entry_name(cluster);
    let mut renamed = std::collections::HashMap::new();
    for key in ["clusters", "users"] {
        let list = list_mut(&mut doc, key);
        if list.len() != 1 {
            return Err(Error::Kubeconfig(format!(
                "the kubeconfig k3s wrote has {} {key}, expected one",
                list.len()
            )));
        }
        let entry = list[0]
            .as_mapping_mut()
            .ok_or_else(|| Error::Kubeconfig(format!("{key}[0] is not a mapping")))?;
        if let Some(old) = entry.get("name").and_then(Value::as_str) {
            renamed.insert((key, old.to_owned()), name.clone());
        }
        entry.insert(Value::from("name"), Value::from(name.as_str()));
        if key == "clusters" {
            let c = entry
                .get_mut("cluster")
                .and_then(Value::as_mapping_mut)
                .ok_or_else(|| Error::Kubeconfig("clusters[0] has no cluster".to_owned()))?;
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
    let entry = contexts[0]
        .as_mapping_mut()
        .ok_or_else(|| Error::Kubeconfig("contexts[0] is not a mapping".to_owned()))?;
    entry.insert("name".into(), name.as_str().into());
    if let Some(ctx) = entry.get_mut("context").and_then(Value::as_mapping_mut) {
        ctx.insert("cluster".into(), name.as_str().into());
        ctx.insert("user".into(), name.as_str().into());
    }
    doc.insert("current-context".into(), name.as_str().into());
    let yaml = serde_norway::to_string(&doc)
        .map_err(|e| Error::Kubeconfig(format!("cannot write YAML: {e}")))?;
    Ok(KubeconfigYaml(yaml))
}

/// The server URL of the first cluster in a kubeconfig.
pub fn server_of(yaml: &KubeconfigYaml) -> Result<String> {
    let doc = parse(yaml.expose(), "the kubeconfig")?;
    doc.get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|l| l.first())
        .and_then(|c| c.get("cluster"))
        .and_then(|c| c.get("server"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| Error::Kubeconfig("it has no cluster server".to_owned()))
}

/// The CA and client identity a kubeconfig's first cluster and user carry
/// (the `*-data` fields, as k3s writes them).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The cluster CA, PEM.
    pub ca_pem: String,
    /// The client certificate, PEM.
    pub cert_pem: String,
    /// The client key, PEM.
    pub key_pem: KeyPem,
}

/// Extracts [`Credentials`] from kubeconfig YAML.
pub fn credentials(yaml: &KubeconfigYaml) -> Result<Credentials> {
    let doc = parse(yaml.expose(), "the kubeconfig")?;
    let first = |list: &str, inner: &str, field: &str| -> Result<String> {
        let b64 = doc
            .get(list)
            .and_then(Value::as_sequence)
            .and_then(|l| l.first())
            .and_then(|c| c.get(inner))
            .and_then(|c| c.get(field))
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Kubeconfig(format!("{list}[0].{inner} has no {field}")))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| Error::Kubeconfig(format!("{field} is not base64: {e}")))?;
        String::from_utf8(bytes).map_err(|_| Error::Kubeconfig(format!("{field} is not PEM text")))
    };
    Ok(Credentials {
        ca_pem: first("clusters", "cluster", "certificate-authority-data")?,
        cert_pem: first("users", "user", "client-certificate-data")?,
        key_pem: KeyPem::new(first("users", "user", "client-key-data")?),
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
                    return Err(Error::Kubeconfig(format!(
                        "{} is locked by another program; if none is running, remove {}",
                        path.display(),
                        lock.display()
                    )));
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
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Mapping::new()),
        Err(e) => Err(Error::io("cannot read", path, e)),
    }
}

fn write_doc(path: &Path, doc: &Mapping) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))?;
    }
    let yaml = serde_norway::to_string(doc)
        .map_err(|e| Error::Kubeconfig(format!("cannot write YAML: {e}")))?;
    write_file(path, yaml.as_bytes(), FileMode::Secret, true)?;
    Ok(())
}

fn remove_named(doc: &mut Mapping, name: &str) -> bool {
    let mut removed = false;
    for key in ["clusters", "contexts", "users"] {
        if let Some(list) = doc.get_mut(key).and_then(Value::as_sequence_mut) {
            let before = list.len();
            list.retain(|v| name_of(v) != Some(name));
            removed |= list.len() != before;
        }
    }
    removed
}

/// Merges the entries of `kubeconfig` (as made by [`rewrite`]) into the
/// file at `path`, replacing entries of the same names. The current context
/// becomes the new one when `switch_context` is set or none is set. The file
/// is written atomically (temporary file, then rename) with mode 0600, under
/// a `<path>.lock` as kubectl uses.
pub fn merge(path: &Path, kubeconfig: &KubeconfigYaml, switch_context: bool) -> Result<()> {
    let new = parse(kubeconfig.expose(), "the new kubeconfig")?;
    let _lock = FileLock::acquire(path)?;
    let mut doc = read_existing(path)?;
    doc.entry("apiVersion".into())
        .or_insert_with(|| "v1".into());
    doc.entry("kind".into()).or_insert_with(|| "Config".into());
    doc.entry("preferences".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    for key in ["clusters", "contexts", "users"] {
        let entries: Vec<Value> = new
            .get(key)
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for entry in &entries {
            if let Some(name) = name_of(entry) {
                let name = name.to_owned();
                list_mut(&mut doc, key).retain(|v| name_of(v) != Some(name.as_str()));
            }
        }
        list_mut(&mut doc, key).extend(entries);
    }
    let current = doc
        .get("current-context")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if (switch_context || current.is_empty())
        && let Some(ctx) = new.get("current-context").cloned()
    {
        doc.insert("current-context".into(), ctx);
    }
    write_doc(path, &doc)
}

/// Removes the entries of `cluster` from the file at `path`; unsets the
/// current context if it was the cluster's. Returns whether anything was
/// removed (a missing file removes nothing).
pub fn remove(path: &Path, cluster: &str) -> Result<bool> {
    if !path.exists() {
        return Ok(false);
    }
    let name = entry_name(cluster);
    let _lock = FileLock::acquire(path)?;
    let mut doc = read_existing(path)?;
    let mut removed = remove_named(&mut doc, &name);
    if doc.get("current-context").and_then(Value::as_str) == Some(name.as_str()) {
        doc.insert("current-context".into(), "".into());
        removed = true;
    }
    if removed {
        write_doc(path, &doc)?;
    }
    Ok(removed)
}

/// The server URL and CA data (base64, as written) of the cluster entry
/// `topgun-<cluster>` in the file at `path`; `None` when the file or the
/// entry is missing.
pub fn merged_entry(path: &Path, cluster: &str) -> Result<Option<(String, String)>> {
    let doc = read_existing(path)?;
    let name = entry_name(cluster);
    let Some(entry) = doc
        .get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|l| l.iter().find(|c| name_of(c) == Some(name.as_str())))
        .and_then(|c| c.get("cluster"))
    else {
        return Ok(None);
    };
    let field = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    Ok(Some((field("server"), field("certificate-authority-data"))))
}

/// The CA data (base64) of a kubeconfig's first cluster.
pub fn ca_data_of(yaml: &KubeconfigYaml) -> Result<String> {
    let doc = parse(yaml.expose(), "the kubeconfig")?;
    Ok(doc
        .get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|l| l.first())
        .and_then(|c| c.get("cluster"))
        .and_then(|c| c.get("certificate-authority-data"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// The names of clusters whose entries topgun merged into `path`.
pub fn merged_clusters(path: &Path) -> Result<Vec<String>> {
    let doc = read_existing(path)?;
    Ok(doc
        .get("contexts")
        .and_then(Value::as_sequence)
        .map(|l| {
            l.iter()
                .filter_map(name_of)
                .filter_map(|n| n.strip_prefix("topgun-"))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
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
            text.contains("current-context: topgun-other"),
            "no switch: {text}"
        );
        let demo2 = rewrite(K3S, "demo", "https://127.0.0.1:6551").unwrap();
        merge(&path, &demo2, true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("current-context: topgun-demo"), "{text}");
        assert!(!text.contains("6550"), "replaced, not duplicated: {text}");
        assert_eq!(merged_clusters(&path).unwrap(), ["other", "demo"]);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        assert!(remove(&path, "demo").unwrap());
        assert!(!remove(&path, "demo").unwrap(), "idempotent");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("topgun-demo"), "{text}");
        assert!(text.contains("topgun-other"), "{text}");
        assert!(!path.with_file_name("config.lock").exists());
        assert!(!remove(&dir.path().join("missing"), "demo").unwrap());
    }
}
