//! The etcd gate of a create: members healthy by topgun-etcd's verdict.

use std::time::Duration;

use tokio::time::Instant;

use futures_util::future::try_join_all;
use topgun_etcd::{Checker, ClientConfig};

use super::{Run, logs, node};
use crate::plan::{ClusterPlan, NodePlan, Phase};
use crate::progress::Event;
use crate::{Error, Result};

impl Run<'_> {
    /// Waits until topgun-etcd says the members started at `t` are healthy.
    pub(super) async fn etcd_healthy(
        &self,
        plan: &ClusterPlan,
        phase: &Phase,
        line: &str,
        wait: Duration,
        t: Instant,
    ) -> Result<()> {
        let members: Vec<&NodePlan> = phase.nodes.iter().map(|n| node(plan, n)).collect();
        let timeout = self.spec.timeouts.etcd;
        let etcd = plan
            .etcd
            .as_ref()
            .ok_or_else(|| Error::bug("the plan", "an etcd gate without an etcd plan"))?;
        let client_port = etcd.members[0].ports.client;
        let ports = try_join_all(
            members
                .iter()
                .map(|m| self.published_port(&m.name, client_port)),
        )
        .await?;
        let endpoints: Vec<String> = ports
            .iter()
            .map(|p| {
                format!(
                    "https://{}",
                    std::net::SocketAddr::new(self.ctx.control_host, *p)
                )
            })
            .collect();
        let tls = etcd.topgun_client_tls().ok_or_else(|| {
            Error::bug(
                "the etcd plan",
                "it has no TLS, but topgun always runs etcd with mutual TLS",
            )
        })?;
        let deadline = std::time::Instant::now() + timeout;
        let watch_deadline = Instant::now() + timeout + Duration::from_secs(5);
        // Every member logs when it serves clients (after the first leader
        // election): waiting for that line, rather than dialling members that
        // do not listen yet, avoids the client's reconnect backoff. Should the
        // line never come (another etcd version), the health check decides.
        let soft = Instant::now() + wait;
        try_join_all(
            members
                .iter()
                .map(|m| logs::wait_for_line(self.docker, &m.name, Some(line), soft, timeout)),
        )
        .await
        .or_else(|e| match e {
            Error::Timeout { .. } => Ok(Vec::new()),
            e => Err(e),
        })?;
        let checker = Checker::connect(&endpoints, &ClientConfig::with_tls(tls)).await?;
        let watchers = try_join_all(
            members
                .iter()
                .map(|m| logs::wait_for_line(self.docker, &m.name, None, watch_deadline, timeout)),
        );
        let outcome: Result<()> = tokio::select! {
            r = checker.wait_healthy(deadline) => match r {
                Ok(_) => Ok(()),
                Err(topgun_etcd::Error::NotHealthy { last, .. }) => {
                    let mut last_logs = Vec::new();
                    for m in &members {
                        for line in logs::last_lines(self.docker, &m.name, 5).await {
                            last_logs.push(format!("{}: {line}", m.name));
                        }
                    }
                    Err(Error::Timeout {
                        node: format!("etcd ({})", phase.nodes.join(", ")),
                        waiting_for: format!("not healthy; last verdict: {last}"),
                        after: timeout,
                        last_logs,
                    })
                }
                Err(e) => Err(e.into()),
            },
            r = watchers => r.map(drop),
        };
        outcome?;
        for m in &members {
            self.emit(Event::NodeReady {
                node: m.name.clone(),
                elapsed: t.elapsed(),
            });
        }
        Ok(())
    }
}
