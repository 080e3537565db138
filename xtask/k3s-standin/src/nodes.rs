//! Kubernetes Node objects: built from a node's heartbeat, judged Ready or
//! not by the age of its last heartbeat, and listed as kubectl expects
//! (a `NodeList`, or a `Table` when kubectl asks for one).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::VERSION;

/// How often nodes send heartbeats, in seconds.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 2;
/// A node whose last heartbeat is older than this is NotReady.
pub const GRACE_SECS: i64 = 10;

/// What a node reports about itself on every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The node name.
    pub name: String,
    /// The hostname.
    pub hostname: String,
    /// Node IPs; the first is the InternalIP.
    pub addresses: Vec<IpAddr>,
    /// Whether the node is a server (control-plane, master).
    pub server: bool,
    /// Whether the node runs the embedded etcd (etcd role).
    pub etcd: bool,
    /// The images in the node's container runtime, as the kubelet reports
    /// them (`status.images`).
    #[serde(default)]
    pub images: Vec<NodeImage>,
}

/// One entry of a Node's `status.images`, as the kubelet reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeImage {
    /// Repo digests, then repo tags (at most five).
    pub names: Vec<String>,
    /// The image's size in bytes.
    #[serde(rename = "sizeBytes")]
    pub size_bytes: u64,
}

/// The RFC 3339 form Kubernetes uses (seconds precision, UTC).
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_time(v: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(v.as_str()?, &Rfc3339).ok()
}

fn random_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The Node object after a heartbeat at `now`, keeping identity (uid,
/// creation time) and the Ready transition time from `previous`.
pub fn heartbeat(report: &NodeReport, previous: Option<&Value>, now: OffsetDateTime) -> Value {
    let now_s = timestamp(now);
    let uid = previous
        .and_then(|p| p.pointer("/metadata/uid"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(random_uid);
    let created = previous
        .and_then(|p| p.pointer("/metadata/creationTimestamp"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| now_s.clone());
    let was_ready = previous.is_some_and(|p| ready_status(p, now) == "True");
    let transition = match previous
        .and_then(|p| ready_condition(p))
        .and_then(|c| c.get("lastTransitionTime"))
    {
        Some(t) if was_ready => t.as_str().unwrap_or(&now_s).to_owned(),
        _ => now_s.clone(),
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut labels = serde_json::Map::new();
    for (k, v) in [
        ("beta.kubernetes.io/arch", arch),
        ("beta.kubernetes.io/instance-type", "k3s"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", arch),
        ("kubernetes.io/hostname", report.hostname.as_str()),
        ("kubernetes.io/os", "linux"),
        ("node.kubernetes.io/instance-type", "k3s"),
    ] {
        labels.insert(k.into(), json!(v));
    }
    if report.server {
        labels.insert(
            "node-role.kubernetes.io/control-plane".into(),
            json!("true"),
        );
        labels.insert("node-role.kubernetes.io/master".into(), json!("true"));
    }
    if report.etcd {
        labels.insert("node-role.kubernetes.io/etcd".into(), json!("true"));
    }
    let mut addresses: Vec<Value> = report
        .addresses
        .iter()
        .take(1)
        .map(|ip| json!({"type": "InternalIP", "address": ip.to_string()}))
        .collect();
    addresses.push(json!({"type": "Hostname", "address": report.hostname}));
    let internal_ips: Vec<String> = report.addresses.iter().map(|ip| ip.to_string()).collect();
    let mut node = json!({
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": report.name,
            "uid": uid,
            "creationTimestamp": created,
            "labels": labels,
            "annotations": {
                "k3s.io/hostname": report.hostname,
                "k3s.io/internal-ip": internal_ips.join(","),
                "node.alpha.kubernetes.io/ttl": "0",
            },
        },
        "spec": {
            "providerID": format!("k3s://{}", report.name),
        },
        "status": {
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "lastHeartbeatTime": now_s,
                "lastTransitionTime": transition,
                "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
            }],
            "addresses": addresses,
            "nodeInfo": {
                "architecture": arch,
                "containerRuntimeVersion": format!("k3s-standin://{}", env!("CARGO_PKG_VERSION")),
                "kernelVersion": kernel_version(),
                "kubeProxyVersion": VERSION,
                "kubeletVersion": VERSION,
                "operatingSystem": "linux",
                "osImage": "k3s stand-in (topgun test double)",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    });
    // Like the kubelet: `images` is left out when there are none.
    if !report.images.is_empty() {
        node["status"]["images"] = json!(report.images);
    }
    node
}

/// Whether two Node objects differ at most in their heartbeat times.
pub fn same_but_heartbeat(a: &Value, b: &Value) -> bool {
    fn strip(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(conds) = v
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            for c in conds.iter_mut().filter_map(Value::as_object_mut) {
                c.remove("lastHeartbeatTime");
            }
        }
        v
    }
    strip(a) == strip(b)
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn ready_condition(node: &Value) -> Option<&Value> {
    node.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
}

/// The Ready status at `now`: `True` while heartbeats are fresh, `Unknown`
/// once the last one is older than [`GRACE_SECS`].
pub fn ready_status(node: &Value, now: OffsetDateTime) -> &'static str {
    let Some(cond) = ready_condition(node) else {
        return "Unknown";
    };
    let fresh = cond
        .get("lastHeartbeatTime")
        .and_then(parse_time)
        .is_some_and(|t| (now - t).whole_seconds() <= GRACE_SECS);
    if fresh && cond.get("status").and_then(Value::as_str) == Some("True") {
        "True"
    } else {
        "Unknown"
    }
}

/// Rewrites the Ready condition the way the node controller does when a
/// node stops posting status.
pub fn observe(mut node: Value, now: OffsetDateTime) -> Value {
    if ready_status(&node, now) == "True" {
        return node;
    }
    let last = ready_condition(&node)
        .and_then(|c| c.get("lastHeartbeatTime"))
        .and_then(parse_time)
        .unwrap_or(now);
    let transition = timestamp(last + time::Duration::seconds(GRACE_SECS));
    if let Some(conds) = node
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        for c in conds.iter_mut() {
            if c.get("type").and_then(Value::as_str) == Some("Ready") {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
                c["lastTransitionTime"] = json!(transition);
            }
        }
    }
    node
}

/// A `NodeList`.
pub fn node_list(nodes: Vec<Value>, resource_version: &str) -> Value {
    json!({
        "kind": "NodeList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": resource_version},
        "items": nodes,
    })
}

/// Roles from `node-role.kubernetes.io/*` labels, sorted, as kubectl shows.
pub fn roles(node: &Value) -> String {
    let mut roles: Vec<&str> = node
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .collect()
        })
        .unwrap_or_default();
    roles.sort_unstable();
    if roles.is_empty() {
        "<none>".into()
    } else {
        roles.join(",")
    }
}

/// Kubernetes' human duration (`5s`, `3m12s`, `4h`, `2d3h`, ...).
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

/// A `meta.k8s.io/v1` Table of nodes, with the columns `kubectl get nodes`
/// (and `-o wide`) prints.
pub fn node_table(nodes: &[Value], resource_version: &str, now: OffsetDateTime) -> Value {
    let col = |name: &str, ty: &str, format: &str, priority: u8, description: &str| json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority});
    let columns = vec![
        col(
            "Name",
            "string",
            "name",
            0,
            "Name must be unique within a namespace.",
        ),
        col("Status", "string", "", 0, "The status of the node"),
        col("Roles", "string", "", 0, "The roles of the node"),
        col("Age", "string", "", 0, "CreationTimestamp of the node"),
        col(
            "Version",
            "string",
            "",
            0,
            "Kubelet Version reported by the node.",
        ),
        col("Internal-IP", "string", "", 1, "List of internal IPs."),
        col("External-IP", "string", "", 1, "List of external IPs."),
        col("OS-Image", "string", "", 1, "OS image."),
        col("Kernel-Version", "string", "", 1, "Kernel version."),
        col("Container-Runtime", "string", "", 1, "Container runtime."),
    ];
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let s = |p: &str| {
                n.pointer(p)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let status = if ready_status(n, now) == "True" {
                "Ready"
            } else {
                "NotReady"
            };
            let age = n
                .pointer("/metadata/creationTimestamp")
                .and_then(parse_time)
                .map(|t| human_duration((now - t).whole_seconds()))
                .unwrap_or_else(|| "<unknown>".into());
            let addr = |ty: &str| {
                n.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter()
                            .find(|x| x.get("type").and_then(Value::as_str) == Some(ty))
                    })
                    .and_then(|x| x.get("address"))
                    .and_then(Value::as_str)
                    .unwrap_or("<none>")
                    .to_owned()
            };
            json!({
                "cells": [
                    s("/metadata/name"),
                    status,
                    roles(n),
                    age,
                    s("/status/nodeInfo/kubeletVersion"),
                    addr("InternalIP"),
                    addr("ExternalIP"),
                    s("/status/nodeInfo/osImage"),
                    s("/status/nodeInfo/kernelVersion"),
                    s("/status/nodeInfo/containerRuntimeVersion"),
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": n.get("metadata").cloned().unwrap_or(Value::Null),
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn report(server: bool) -> NodeReport {
        NodeReport {
            name: "server-0".into(),
            hostname: "server-0".into(),
            addresses: vec!["172.18.0.3".parse().unwrap()],
            server,
            etcd: false,
            images: vec![],
        }
    }

    #[test]
    fn ready_while_heartbeating() {
        let t0 = datetime!(2024-05-01 10:00:00 UTC);
        let node = heartbeat(&report(true), None, t0);
        assert_eq!(ready_status(&node, t0 + time::Duration::seconds(5)), "True");
        assert_eq!(
            ready_status(&node, t0 + time::Duration::seconds(11)),
            "Unknown"
        );
        let stale = observe(node.clone(), t0 + time::Duration::seconds(30));
        assert_eq!(
            stale.pointer("/status/conditions/0/reason").unwrap(),
            "NodeStatusUnknown"
        );
        // A later heartbeat keeps identity and makes it Ready again.
        let t1 = t0 + time::Duration::seconds(60);
        let again = heartbeat(&report(true), Some(&node), t1);
        assert_eq!(
            again.pointer("/metadata/uid"),
            node.pointer("/metadata/uid")
        );
        assert_eq!(
            again.pointer("/metadata/creationTimestamp").unwrap(),
            "2024-05-01T10:00:00Z"
        );
        assert_eq!(
            again
                .pointer("/status/conditions/0/lastTransitionTime")
                .unwrap(),
            "2024-05-01T10:01:00Z"
        );
        assert_eq!(ready_status(&again, t1), "True");
    }

    #[test]
    fn images_in_status_and_heartbeat_only_changes() {
        let t0 = datetime!(2024-05-01 10:00:00 UTC);
        let plain = heartbeat(&report(false), None, t0);
        assert!(plain.pointer("/status/images").is_none());
        let later = heartbeat(
            &report(false),
            Some(&plain),
            t0 + time::Duration::seconds(2),
        );
        assert!(same_but_heartbeat(&plain, &later));
        let mut with_images = report(false);
        with_images.images = vec![NodeImage {
            names: vec![
                "docker.io/library/busybox@sha256:ab".into(),
                "docker.io/library/busybox:latest".into(),
            ],
            size_bytes: 2048,
        }];
        let node = heartbeat(&with_images, Some(&plain), t0 + time::Duration::seconds(4));
        assert_eq!(
            node.pointer("/status/images/0/names/1").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(node.pointer("/status/images/0/sizeBytes").unwrap(), 2048);
        assert!(!same_but_heartbeat(&plain, &node));
    }

    #[test]
    fn roles_and_table() {
        let t0 = datetime!(2024-05-01 10:00:00 UTC);
        let server = heartbeat(&report(true), None, t0);
        assert_eq!(roles(&server), "control-plane,master");
        let mut agent_report = report(false);
        agent_report.name = "agent-0".into();
        let agent = heartbeat(&agent_report, None, t0);
        assert_eq!(roles(&agent), "<none>");
        let table = node_table(&[server, agent], "7", t0 + time::Duration::seconds(200));
        let cells = table.pointer("/rows/0/cells").unwrap();
        assert_eq!(cells[0], "server-0");
        assert_eq!(cells[1], "NotReady");
        assert_eq!(cells[3], "3m20s");
        assert_eq!(cells[5], "172.18.0.3");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600), "60m");
        assert_eq!(human_duration(4 * 3600 + 60), "4h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
    }
}
