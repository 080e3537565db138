//! The data side of `topgun etcd browse`, usable without the web UI.
//!
//! - [`Checker::tree`]: one level of the key tree under a prefix, each child
//!   with how many keys it holds and their size. Only the asked level is
//!   returned (at most a limit of children), so a store of 100k keys is
//!   never sent at once; the keys under the prefix are scanned in pages at
//!   one revision.
//! - [`decode`]: what a value is: UTF-8 text, JSON (pretty-printed, with the
//!   Kubernetes kind and name when it is an object), a Kubernetes protobuf
//!   object (the `k8s\0` envelope k3s writes) decoded to its kind, name and
//!   namespace, or else binary; the raw bytes always as hex.
//! - [`Checker::value`]: a key's value and the earlier revisions etcd
//!   still keeps.
//! - [`Checker::put`], [`Checker::delete`]: writes, for callers that allow them.
//!
//! The live verdict comes from [`Checker::check`] and [`Checker::watch`].

use std::collections::BTreeMap;

use etcd_client::GetOptions;
use serde::Serialize;

use crate::client::MemberClient;
use crate::keys::prefix_end;
use crate::{Checker, Error, Result};

/// Keys (with values) read per range request when building a tree level.
const TREE_PAGE: i64 = 500;
/// Keys (without values) read per range request when cutting the range.
const KEYS_PAGE: i64 = 10_000;
/// At most this many bytes of a value are shown as hex.
pub const MAX_HEX: usize = 16 * 1024;
/// The magic that starts a Kubernetes protobuf value.
pub const K8S_MAGIC: &[u8] = b"k8s\0";

/// One level of the key tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeLevel {
    /// The prefix asked for (`""`: all keys).
    pub prefix: String,
    /// How many keys lie under the prefix.
    pub keys: u64,
    /// Their size: key and value bytes.
    pub bytes: u64,
    /// The children, in byte order: sub-prefixes (ending in `/`) and keys.
    pub children: Vec<TreeNode>,
    /// Whether more children follow (ask again with `after` = the last path).
    pub truncated: bool,
    /// The revision the level was read at.
    pub revision: i64,
    /// The member that answered.
    pub endpoint: String,
}

/// A child in a [`TreeLevel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TreeNode {
    /// The full prefix (ending in `/`) or the full key.
    pub path: String,
    /// The part of `path` after the parent's prefix.
    pub name: String,
    /// Whether this is a key (else a prefix with keys under it).
    pub leaf: bool,
    /// How many keys: 1 for a key.
    pub keys: u64,
    /// Key and value bytes of those keys.
    pub bytes: u64,
}

/// Groups keys under a prefix into the children of one tree level: the
/// part of a key after the prefix up to and including the next `/` is a
/// sub-prefix; a key with no further `/` is a leaf. Pure.
#[derive(Debug, Clone, Default)]
pub struct TreeBuilder {
    prefix: String,
    keys: u64,
    bytes: u64,
    children: BTreeMap<(String, bool), (u64, u64)>,
}

impl TreeBuilder {
    /// A builder for the level under `prefix`.
    pub fn new(prefix: &str) -> Self {
        TreeBuilder {
            prefix: prefix.to_owned(),
            ..TreeBuilder::default()
        }
    }

    /// Counts one key (ignored unless it starts with the prefix) whose
    /// value has `value_len` bytes.
    pub fn add(&mut self, key: &str, value_len: usize) {
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else {
            return;
        };
        let size = (key.len() + value_len) as u64;
        self.keys += 1;
        self.bytes += size;
        let child = match rest.find('/') {
            Some(i) => (format!("{}{}", self.prefix, &rest[..=i]), false),
            None => (key.to_owned(), true),
        };
        let entry = self.children.entry(child).or_default();
        entry.0 += 1;
        entry.1 += size;
    }

    /// The level: at most `limit` children whose path sorts after `after`
    /// (`""`: from the first), and whether more follow.
    pub fn finish(self, after: &str, limit: usize) -> (u64, u64, Vec<TreeNode>, bool) {
        let prefix_len = self.prefix.len();
        let mut rest = self
            .children
            .into_iter()
            .filter(|((path, _), _)| after.is_empty() || path.as_str() > after)
            .peekable();
        let mut page = Vec::new();
        while page.len() < limit {
            match rest.next() {
                Some(child) => page.push(child),
                None => break,
            }
        }
        let truncated = rest.peek().is_some();
        let children = page
            .into_iter()
            .map(|((path, leaf), (keys, bytes))| TreeNode {
                name: path[prefix_len..].to_owned(),
                path,
                leaf,
                keys,
                bytes,
            })
            .collect();
        (self.keys, self.bytes, children, truncated)
    }
}

/// What a value is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Decoded {
    /// UTF-8 text (not JSON).
    Text {
        /// The text.
        text: String,
    },
    /// JSON, pretty-printed.
    Json {
        /// The JSON, indented.
        pretty: String,
        /// The Kubernetes object it describes, if it has `kind` and `metadata`.
        object: Option<ObjectRef>,
    },
    /// A Kubernetes object in protobuf (`k8s\0` + `runtime.Unknown`).
    Kubernetes {
        /// What the envelope and the object's metadata say.
        object: ObjectRef,
    },
    /// Anything else.
    Binary,
}

/// The identity of a Kubernetes object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// `apiVersion`, e.g. `v1`.
    pub api_version: String,
    /// `kind`, e.g. `Node`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (empty for cluster-scoped objects).
    pub namespace: String,
}

/// Decides what `value` is. Pure; never fails.
pub fn decode(value: &[u8]) -> Decoded {
    if let Some(object) = value.strip_prefix(K8S_MAGIC).and_then(decode_unknown) {
        return Decoded::Kubernetes { object };
    }
    if let Ok(text) = std::str::from_utf8(value) {
        let trimmed = text.trim_start();
        if (trimmed.starts_with('{') || trimmed.starts_with('['))
            && let Ok(json) = serde_json::from_str::<serde_json::Value>(text)
        {
            let object = json_object_ref(&json);
            let pretty = serde_json::to_string_pretty(&json).unwrap_or_else(|_| text.to_owned());
            return Decoded::Json { pretty, object };
        }
        if text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
        {
            return Decoded::Text {
                text: text.to_owned(),
            };
        }
    }
    Decoded::Binary
}

/// The first [`MAX_HEX`] bytes of `value` as a hex dump: offset, 16 bytes
/// in groups of 2, and the printable ASCII (others as `.`).
pub fn hex_dump(value: &[u8]) -> String {
    let shown = &value[..value.len().min(MAX_HEX)];
    let mut out = String::with_capacity(shown.len() * 4);
    for (i, line) in shown.chunks(16).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut hex = String::with_capacity(40);
        for pair in line.chunks(2) {
            hex.push(' ');
            hex.push_str(&hex::encode(pair));
        }
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x} {hex:<40}  {ascii}", i * 16));
    }
    out
}

fn json_object_ref(json: &serde_json::Value) -> Option<ObjectRef> {
    let kind = json.get("kind")?.as_str()?;
    let meta = json.get("metadata")?;
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).unwrap_or("").to_owned();
    Some(ObjectRef {
        api_version: text(json.get("apiVersion")),
        kind: kind.to_owned(),
        name: text(meta.get("name")),
        namespace: text(meta.get("namespace")),
    })
}

/// A protobuf field: its number and either a varint or bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn varint(buf: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The fields of a protobuf message, or `None` if it is malformed.
fn fields(mut buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let tag = varint(&mut buf)?;
        let number = tag >> 3;
        if number == 0 {
            return None;
        }
        let field = match tag & 7 {
            0 => Field::Varint(varint(&mut buf)?),
            1 => {
                buf = buf.get(8..)?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(varint(&mut buf)?).ok()?;
                let (bytes, rest) = (buf.get(..len)?, buf.get(len..)?);
                buf = rest;
                Field::Bytes(bytes)
            }
            5 => {
                buf = buf.get(4..)?;
                Field::Fixed
            }
            _ => return None,
        };
        out.push((number, field));
    }
    Some(out)
}

fn bytes_field<'a>(fields: &[(u64, Field<'a>)], number: u64) -> Option<&'a [u8]> {
    fields.iter().rev().find_map(|(n, f)| match f {
        Field::Bytes(b) if *n == number => Some(*b),
        _ => None,
    })
}

fn string_field(fields: &[(u64, Field<'_>)], number: u64) -> String {
    bytes_field(fields, number)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default()
}

/// `runtime.Unknown`: 1 TypeMeta {1 apiVersion, 2 kind}, 2 raw (the object,
/// whose field 1 is ObjectMeta {1 name, 3 namespace}).
fn decode_unknown(buf: &[u8]) -> Option<ObjectRef> {
    let unknown = fields(buf)?;
    let type_meta = fields(bytes_field(&unknown, 1)?)?;
    let kind = string_field(&type_meta, 2);
    if kind.is_empty() {
        return None;
    }
    let mut object = ObjectRef {
        api_version: string_field(&type_meta, 1),
        kind,
        ..ObjectRef::default()
    };
    if let Some(meta) = bytes_field(&unknown, 2)
        .and_then(fields)
        .and_then(|raw| bytes_field(&raw, 1).and_then(fields))
    {
        object.name = string_field(&meta, 1);
        object.namespace = string_field(&meta, 3);
    }
    Some(object)
}

/// One revision of a key's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRevision {
    /// The revision that wrote this value.
    pub mod_revision: i64,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The key's version (1 at creation).
    pub version: i64,
    /// The value's size in bytes.
    pub size: usize,
    /// What the value is.
    pub decoded: Decoded,
    /// The raw bytes as hex (at most [`MAX_HEX`] bytes).
    pub hex: String,
    /// Whether the hex was cut at [`MAX_HEX`] bytes.
    pub hex_truncated: bool,
}

impl KeyRevision {
    fn new(kv: &etcd_client::KeyValue) -> Self {
        let value = kv.value();
        KeyRevision {
            mod_revision: kv.mod_revision(),
            create_revision: kv.create_revision(),
            version: kv.version(),
            size: value.len(),
            decoded: decode(value),
            hex: hex_dump(value),
            hex_truncated: value.len() > MAX_HEX,
        }
    }
}

/// A key, its current value and earlier revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// The key.
    pub key: String,
    /// The current value; `None` when the key does not exist.
    pub current: Option<KeyRevision>,
    /// Earlier values, newest first, as far as etcd still keeps them.
    pub history: Vec<KeyRevision>,
    /// Why the history stops: `created` (it reaches the key's creation),
    /// `compacted` (etcd no longer keeps older revisions) or `limit`.
    pub history_end: &'static str,
    /// The store's revision when read.
    pub revision: i64,
    /// The member that answered.
    pub endpoint: String,
}

impl Checker {
    /// One level of the key tree under `prefix` (`""`: the root): at most
    /// `limit` children whose path sorts after `after` (`""`: from the
    /// first), with the counts and sizes of the whole level. Scans the keys
    /// under the prefix in pages at one revision; uses the first member
    /// that answers.
    pub async fn tree(&self, prefix: &str, after: &str, limit: usize) -> Result<TreeLevel> {
        let mut levels = self.tree_levels(&[prefix], after, limit).await?;
        Ok(levels.remove(0))
    }

    /// Several levels in one scan of the keys under `prefixes[0]`: each
    /// level as [`Checker::tree`] gives it (later prefixes outside the first
    /// come back empty). What a page needs to open `/` and `/registry/` at
    /// once. Fails when `prefixes` is empty.
    pub async fn tree_levels(
        &self,
        prefixes: &[&str],
        after: &str,
        limit: usize,
    ) -> Result<Vec<TreeLevel>> {
        if prefixes.is_empty() {
            return Err(Error::InvalidSpec {
                field: "prefixes",
                problem: "no prefix was given".into(),
            });
        }
        let mut causes = Vec::new();
        for m in self.member_clients() {
            match tree_through(m, prefixes, after, limit).await {
                Ok(levels) => return Ok(levels),
                Err(e) => causes.push(e),
            }
        }
        Err(Error::no_member_answered("range", causes))
    }

    /// `key`'s value and up to `history` earlier revisions; uses the first
    /// member that answers.
    pub async fn value(&self, key: &str, history: usize) -> Result<KeyView> {
        let mut causes = Vec::new();
        for m in self.member_clients() {
            match value_through(m, key, history).await {
                Ok(view) => return Ok(view),
                Err(e) => causes.push(e),
            }
        }
        Err(Error::no_member_answered("range", causes))
    }

    /// Writes `value` to `key`; returns the revision of the write.
    pub async fn put(&self, key: &str, value: impl Into<Vec<u8>>) -> Result<i64> {
        let value = value.into();
        let mut causes = Vec::new();
        for m in self.member_clients() {
            let mut kv = m.client.kv_client();
            match m.call("put", kv.put(key, value.clone(), None)).await {
                Ok(r) => return Ok(r.header().map_or(0, |h| h.revision())),
                Err(e) => causes.push(e),
            }
        }
        Err(Error::no_member_answered("put", causes))
    }

    /// Deletes `key`; returns how many keys were deleted (0 or 1).
    pub async fn delete(&self, key: &str) -> Result<i64> {
        let mut causes = Vec::new();
        for m in self.member_clients() {
            let mut kv = m.client.kv_client();
            match m.call("delete", kv.delete(key, None)).await {
                Ok(r) => return Ok(r.deleted()),
                Err(e) => causes.push(e),
            }
        }
        Err(Error::no_member_answered("delete", causes))
    }
}

async fn tree_through(
    m: &MemberClient,
    prefixes: &[&str],
    after: &str,
    limit: usize,
) -> Result<Vec<TreeLevel>> {
    let prefix = prefixes[0];
    let mut kv = m.client.kv_client();
    let range_end = prefix_end(prefix.as_bytes());
    let first: Vec<u8> = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    };
    // etcd's cost of a range grows with every key between its start and
    // end, whatever the limit: paging through n keys with an open end is
    // quadratic. So first walk the keys only, in big pages, to cut the
    // range into windows of TREE_PAGE keys; then read each window's values
    // with both ends bounded. Both passes read one revision.
    let mut bounds = vec![first.clone()];
    let mut revision = 0i64;
    let mut cursor = first;
    let mut seen = 0u64;
    loop {
        let mut opts = GetOptions::new()
            .with_range(range_end.clone())
            .with_keys_only()
            .with_limit(KEYS_PAGE);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp = m.call("range", kv.get(cursor.clone(), Some(opts))).await?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        for item in resp.kvs() {
            if seen > 0 && seen.is_multiple_of(TREE_PAGE as u64) {
                bounds.push(item.key().to_vec());
            }
            seen += 1;
        }
        match (resp.more(), resp.kvs().last()) {
            (true, Some(last)) => {
                cursor = last.key().to_vec();
                cursor.push(0);
            }
            _ => break,
        }
    }
    bounds.push(range_end);
    let mut builders: Vec<TreeBuilder> = prefixes.iter().map(|p| TreeBuilder::new(p)).collect();
    for window in bounds.windows(2) {
        let opts = GetOptions::new()
            .with_range(window[1].clone())
            .with_revision(revision);
        let resp = m
            .call("range", kv.get(window[0].clone(), Some(opts)))
            .await?;
        for item in resp.kvs() {
            let key = String::from_utf8_lossy(item.key());
            for builder in &mut builders {
                builder.add(&key, item.value().len());
            }
        }
    }
    Ok(prefixes
        .iter()
        .zip(builders)
        .map(|(prefix, builder)| {
            let (keys, bytes, children, truncated) = builder.finish(after, limit);
            TreeLevel {
                prefix: (*prefix).to_owned(),
                keys,
                bytes,
                children,
                truncated,
                revision,
                endpoint: m.endpoint.clone(),
            }
        })
        .collect())
}

async fn value_through(m: &MemberClient, key: &str, history: usize) -> Result<KeyView> {
    let mut kv = m.client.kv_client();
    let resp = m.call("range", kv.get(key, None)).await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut view = KeyView {
        key: key.to_owned(),
        current: resp.kvs().first().map(KeyRevision::new),
        history: Vec::new(),
        history_end: "created",
        revision,
        endpoint: m.endpoint.clone(),
    };
    let Some(current) = &view.current else {
        return Ok(view);
    };
    let (mut before, created) = (current.mod_revision - 1, current.create_revision);
    let mut version = current.version;
    while version > 1 && before >= created {
        if view.history.len() >= history {
            view.history_end = "limit";
            break;
        }
        let opts = GetOptions::new().with_revision(before);
        match m.call("range", kv.get(key, Some(opts))).await {
            Ok(resp) => match resp.kvs().first() {
                Some(item) => {
                    let rev = KeyRevision::new(item);
                    before = rev.mod_revision - 1;
                    version = rev.version;
                    view.history.push(rev);
                }
                None => break,
            },
            Err(Error::Request { cause, .. }) if cause.contains("compacted") => {
                view.history_end = "compacted";
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(number: u64, wire: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut v = (number << 3) | wire;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes(number: u64, value: &[u8]) -> Vec<u8> {
        let mut out = tag(number, 2);
        let mut v = value.len() as u64;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
        out.extend_from_slice(value);
        out
    }

    /// A Node as k3s stores it: `k8s\0` + Unknown{TypeMeta, raw Node{ObjectMeta}}.
    pub(crate) fn node_protobuf(name: &str, namespace: &str) -> Vec<u8> {
        let mut meta = bytes(1, name.as_bytes());
        if !namespace.is_empty() {
            meta.extend(bytes(3, namespace.as_bytes()));
        }
        meta.extend(tag(8, 0));
        meta.push(0x2a); // a varint field (generation) to skip
        let mut object = bytes(1, &meta);
        object.extend(bytes(2, b"spec-bytes"));
        let mut type_meta = bytes(1, b"v1");
        type_meta.extend(bytes(2, b"Node"));
        let mut unknown = bytes(1, &type_meta);
        unknown.extend(bytes(2, &object));
        unknown.extend(bytes(4, b"application/vnd.kubernetes.protobuf"));
        let mut value = K8S_MAGIC.to_vec();
        value.extend(unknown);
        value
    }

    #[test]
    fn kubernetes_protobuf_decodes_to_kind_and_name() {
        let value = node_protobuf("server-0", "");
        assert_eq!(
            decode(&value),
            Decoded::Kubernetes {
                object: ObjectRef {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: "server-0".into(),
                    namespace: String::new(),
                }
            }
        );
        let pod = node_protobuf("web", "default");
        let Decoded::Kubernetes { object } = decode(&pod) else {
            panic!()
        };
        assert_eq!(object.namespace, "default");
    }

    #[test]
    fn malformed_protobuf_is_binary() {
        let mut value = node_protobuf("x", "");
        value.truncate(value.len() - 3);
        assert_eq!(decode(&value), Decoded::Binary);
        assert_eq!(decode(b"k8s\0\xff\xff"), Decoded::Binary);
        assert_eq!(decode(b"k8s\0"), Decoded::Binary);
    }

    #[test]
    fn json_is_pretty_and_names_its_object() {
        let value = br#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"agent-0"}}"#;
        let Decoded::Json { pretty, object } = decode(value) else {
            panic!()
        };
        assert!(pretty.contains("\n  \"kind\": \"Node\""), "{pretty}");
        let object = object.unwrap();
        assert_eq!(
            (object.kind.as_str(), object.name.as_str()),
            ("Node", "agent-0")
        );
        assert!(matches!(
            decode(b"[1, 2]"),
            Decoded::Json { object: None, .. }
        ));
    }

    #[test]
    fn text_and_binary() {
        assert_eq!(
            decode(b"hello\nworld"),
            Decoded::Text {
                text: "hello\nworld".into()
            }
        );
        assert_eq!(
            decode(b"{not json"),
            Decoded::Text {
                text: "{not json".into()
            }
        );
        assert_eq!(decode(b"\x00\x01"), Decoded::Binary);
        assert_eq!(decode(b"\xff\xfe"), Decoded::Binary);
    }

    #[test]
    fn hex_is_grouped_and_bounded() {
        assert_eq!(
            hex_dump(b"k8s\0ab"),
            format!("00000000  6b38 7300 6162{}  k8s.ab", " ".repeat(25))
        );
        let two = hex_dump(b"0123456789abcdef!");
        assert_eq!(
            two,
            "00000000  3031 3233 3435 3637 3839 6162 6364 6566  0123456789abcdef\n\
             00000010  21                                       !"
        );
        let big = vec![0u8; MAX_HEX + 10];
        assert_eq!(hex_dump(&big).lines().count(), MAX_HEX / 16);
    }

    #[test]
    fn tree_groups_one_level() {
        let mut b = TreeBuilder::new("/registry/");
        b.add("/registry/minions/a", 10);
        b.add("/registry/minions/b", 20);
        b.add("/registry/pods/default/x", 5);
        b.add("/registry/health", 1);
        b.add("/other/key", 1);
        let (keys, bytes, children, truncated) = b.finish("", 10);
        assert_eq!(keys, 4);
        assert!(!truncated);
        let summary: Vec<(&str, &str, bool, u64)> = children
            .iter()
            .map(|c| (c.path.as_str(), c.name.as_str(), c.leaf, c.keys))
            .collect();
        assert_eq!(
            summary,
            [
                ("/registry/health", "health", true, 1),
                ("/registry/minions/", "minions/", false, 2),
                ("/registry/pods/", "pods/", false, 1),
            ]
        );
        assert_eq!(children[1].bytes, 19 + 10 + 19 + 20);
        assert_eq!(bytes, children.iter().map(|c| c.bytes).sum::<u64>());
    }

    #[test]
    fn tree_root_and_limit() {
        let mut b = TreeBuilder::new("");
        b.add("/registry/a", 0);
        b.add("plain", 0);
        let (_, _, children, _) = b.finish("", 10);
        assert_eq!(children[0].path, "/");
        assert_eq!(children[1].path, "plain");
        let mut b = TreeBuilder::new("/p/");
        for i in 0..5 {
            b.add(&format!("/p/{i}"), 0);
        }
        let (keys, _, children, truncated) = b.clone().finish("", 3);
        assert_eq!((keys, children.len(), truncated), (5, 3, true));
        let (_, _, children, truncated) = b.clone().finish("/p/2", 3);
        let paths: Vec<&str> = children.iter().map(|c| c.path.as_str()).collect();
        assert_eq!((paths, truncated), (vec!["/p/3", "/p/4"], false));
        let (_, _, children, truncated) = b.finish("/p/1", 3);
        assert_eq!((children.len(), truncated), (3, false));
    }
}
