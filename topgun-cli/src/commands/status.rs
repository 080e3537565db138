//! `topgun status NAME`: nodes, load balancer backends, etcd verdict, API
//! readiness and certificate coverage. Exit 0 when all is well, 1 otherwise.

use std::process::ExitCode;

use serde::Serialize;
use topgun_core::{ApiStatus, BackendState, Cluster, ClusterStatus, KubeconfigStatus, NodeStatus};

use super::create::docker;
use super::list::table;
use super::{EXIT_FAILURE, EXIT_SUCCESS};
use crate::cli::cluster::StatusArgs;
use crate::cli::{GlobalArgs, OutputFormat};
use crate::output;

/// `topgun status -o json` (see docs/json-output.md).
#[derive(Serialize)]
struct StatusJson<'a> {
    name: &'a str,
    state: &'a str,
    healthy: bool,
    datastore: Option<&'a str>,
    nodes: &'a [NodeStatus],
    loadbalancer: Option<LoadBalancerJson<'a>>,
    etcd: Option<EtcdJson<'a>>,
    api: &'a ApiStatus,
    kubeconfig: Option<&'a KubeconfigStatus>,
}

#[derive(Serialize)]
struct LoadBalancerJson<'a> {
    backends: &'a [BackendState],
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct EtcdJson<'a> {
    verdict: Option<topgun_etcd::Verdict>,
    reason: Option<&'a str>,
    leader: Option<&'a str>,
    members: Vec<EtcdMemberJson<'a>>,
    error: Option<&'a str>,
}

#[derive(Serialize)]
struct EtcdMemberJson<'a> {
    name: &'a str,
    endpoint: &'a str,
    reachable: bool,
    leader: bool,
    error: Option<&'a str>,
}

fn to_json(s: &ClusterStatus) -> StatusJson<'_> {
    StatusJson {
        name: &s.name,
        state: s.state,
        healthy: s.healthy,
        datastore: s.datastore.as_deref(),
        nodes: &s.nodes,
        loadbalancer: s.loadbalancer.as_ref().map(|b| LoadBalancerJson {
            backends: b,
            error: s.loadbalancer_error.as_deref(),
        }),
        etcd: s.etcd.as_ref().map(|e| EtcdJson {
            verdict: e.health.as_ref().map(|h| h.verdict),
            reason: e.health.as_ref().map(|h| h.reason.as_str()),
            leader: e.leader.as_deref(),
            members: e
                .members
                .iter()
                .zip(&e.names)
                .map(|(m, name)| EtcdMemberJson {
                    name,
                    endpoint: &m.endpoint,
                    reachable: m.reachable,
                    leader: m.is_leader(),
                    error: m.error.as_deref(),
                })
                .collect(),
            error: e.error.as_deref(),
        }),
        api: &s.api,
        kubeconfig: s.kubeconfig.as_ref(),
    }
}

fn render(s: &ClusterStatus) -> String {
    let mut out = format!(
        "cluster {}: {}\n\n",
        s.name,
        match (s.healthy, s.state) {
            (true, _) => "healthy",
            (false, "stopped") => "stopped",
            (false, _) => "NOT healthy",
        }
    );
    let mut rows = vec![[
        "NODE".to_owned(),
        "ROLE".to_owned(),
        "STATE".to_owned(),
        "IP".to_owned(),
        "RESTARTS".to_owned(),
    ]];
    for n in &s.nodes {
        rows.push([
            n.name.clone(),
            n.role.to_string(),
            n.state.clone(),
            n.ip.clone().unwrap_or_else(|| "-".to_owned()),
            n.restarts.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    out.push('\n');
    if let Some(backends) = &s.loadbalancer {
        out.push_str("\nload balancer: ");
        match &s.loadbalancer_error {
            Some(e) => out.push_str(&format!("cannot read its backends: {e}\n")),
            None => {
                let list: Vec<String> = backends
                    .iter()
                    .map(|b| format!("{} {} ({})", b.server, b.status, b.check))
                    .collect();
                out.push_str(&list.join(", "));
                out.push('\n');
            }
        }
    }
    if let Some(etcd) = &s.etcd {
        out.push_str("etcd: ");
        match (&etcd.health, &etcd.error) {
            (Some(h), _) => {
                out.push_str(&h.to_string());
                if let Some(leader) = &etcd.leader {
                    out.push_str(&format!(" (leader {leader})"));
                }
            }
            (None, Some(e)) => out.push_str(&format!("cannot check: {e}")),
            (None, None) => out.push_str("not checked"),
        }
        out.push('\n');
    }
    let api = &s.api;
    out.push_str(&format!(
        "API: {} {}{}\n",
        api.server.as_deref().unwrap_or("not published"),
        if api.ready { "ready" } else { "NOT ready" },
        if api.detail.is_empty() || api.ready {
            String::new()
        } else {
            format!(" ({})", api.detail)
        }
    ));
    match (api.host_covered, &api.coverage_detail) {
        (Some(true), _) => out.push_str("certificate: covers the kubeconfig's host\n"),
        (Some(false), detail) => out.push_str(&format!(
            "certificate: does NOT cover the kubeconfig's host{}\n",
            detail
                .as_deref()
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )),
        (None, Some(detail)) => out.push_str(&format!("certificate: not checked: {detail}\n")),
        (None, None) => {}
    }
    if let Some(k) = &s.kubeconfig {
        match (&k.drift, k.merged) {
            (Some(drift), _) => out.push_str(&format!("kubeconfig: DRIFT: {drift}\n")),
            (None, true) => out.push_str(&format!(
                "kubeconfig: {} in {} matches the cluster\n",
                topgun_core::kubeconfig_entry_name(&s.name),
                k.path.display()
            )),
            (None, false) => out.push_str(&format!(
                "kubeconfig: not merged into {} (`topgun kubeconfig merge {}`)\n",
                k.path.display(),
                s.name
            )),
        }
    }
    out.trim_end().to_owned()
}

/// Runs `topgun status`.
pub async fn run(args: StatusArgs, _global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let docker = docker().await?;
    let status = Cluster::named(docker, &args.name).status().await?;
    match args.output {
        OutputFormat::Json => output::json(&to_json(&status))?,
        OutputFormat::Text => output::result(&render(&status)),
    }
    Ok(ExitCode::from(if status.healthy {
        EXIT_SUCCESS
    } else {
        EXIT_FAILURE
    }))
}
