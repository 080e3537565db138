//! Key listing: the keys under a prefix, and how many lie under each
//! sub-prefix (`topgun etcd keys`).

use std::collections::BTreeMap;

use etcd_client::GetOptions;
use serde::Serialize;

use crate::client::MemberClient;
use crate::health::Checker;
use crate::{Error, Result};

impl Checker {
    /// Lists keys under `prefix` (all keys for `""`), at most `limit` of
    /// them, and counts every key under each prefix of `depth` path
    /// segments. Uses the first member that answers.
    pub async fn list_keys(&self, prefix: &str, limit: usize, depth: usize) -> Result<KeyListing> {
        let mut failures = Vec::new();
        for member in self.member_clients() {
            match list_keys_through(member, prefix, limit, depth).await {
                Ok(listing) => return Ok(listing),
                Err(e) => failures.push(e),
            }
        }
        Err(Error::no_member_answered("range", failures))
    }
}

/// Keys found under a prefix, and how many lie under each sub-prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyListing {
    /// The prefix asked for.
    pub prefix: String,
    /// How many keys there are under it.
    pub total: u64,
    /// The first keys, in byte order (at most the limit asked for).
    pub keys: Vec<String>,
    /// Whether more keys exist than were listed.
    pub truncated: bool,
    /// Key counts by prefix of the requested depth, in order.
    pub prefixes: Vec<PrefixCount>,
    /// The member that answered.
    pub endpoint: String,
}

/// How many keys lie under one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixCount {
    /// The prefix, e.g. `/registry/pods`.
    pub prefix: String,
    /// The number of keys under it.
    pub count: u64,
}

/// Keys are fetched in pages of this many.
const KEY_PAGE: i64 = 1000;

async fn list_keys_through(
    m: &MemberClient,
    prefix: &str,
    limit: usize,
    depth: usize,
) -> Result<KeyListing> {
    let mut kv = m.client.kv_client();
    let range_end = prefix_end(prefix.as_bytes());
    // All keys: from "\0" to "\0" (etcd's "from key" range).
    let mut start: Vec<u8> = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    };
    let mut keys = Vec::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0u64;
    let mut revision = 0i64;
    loop {
        let mut opts = GetOptions::new()
            .with_range(range_end.clone())
            .with_keys_only()
            .with_limit(KEY_PAGE);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let resp = m.call("range", kv.get(start.clone(), Some(opts))).await?;
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        let kvs = resp.kvs();
        for item in kvs {
            let key = String::from_utf8_lossy(item.key()).into_owned();
            total += 1;
            *counts.entry(key_prefix(&key, depth)).or_default() += 1;
            if keys.len() < limit {
                keys.push(key);
            }
        }
        match (resp.more(), kvs.last()) {
            (true, Some(last)) => {
                start = last.key().to_vec();
                start.push(0);
            }
            _ => break,
        }
    }
    Ok(KeyListing {
        prefix: prefix.to_owned(),
        total,
        truncated: (total as usize) > keys.len(),
        keys,
        prefixes: counts
            .into_iter()
            .map(|(prefix, count)| PrefixCount { prefix, count })
            .collect(),
        endpoint: m.endpoint.clone(),
    })
}

/// The end of the range of keys that start with `prefix` (`\0` = all keys).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The first `depth` `/`-separated segments of `key`: `/registry/pods/a/b`
/// at depth 2 is `/registry/pods`. Keys without a leading `/` count too.
pub fn key_prefix(key: &str, depth: usize) -> String {
    let leading = key.starts_with('/');
    let segments: Vec<&str> = key
        .trim_start_matches('/')
        .split('/')
        .take(depth.max(1))
        .collect();
    format!("{}{}", if leading { "/" } else { "" }, segments.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefixes() {
        assert_eq!(key_prefix("/registry/pods/default/x", 2), "/registry/pods");
        assert_eq!(key_prefix("/registry/pods/default/x", 1), "/registry");
        assert_eq!(key_prefix("/registry/health", 3), "/registry/health");
        assert_eq!(key_prefix("/bootstrap/abc", 2), "/bootstrap/abc");
        assert_eq!(key_prefix("plain", 2), "plain");
        assert_eq!(key_prefix("a/b/c", 2), "a/b");
        assert_eq!(key_prefix("/x", 0), "/x");
        assert_eq!(prefix_end(b"/registry/"), b"/registry0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b""), vec![0]);
    }
}
