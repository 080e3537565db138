//! Waiting for the API: haproxy's view of its backends, and what to say
//! when the API never answers.

use std::time::Duration;

use tokio::time::Instant;

use super::{Run, logs};
use crate::docker as dockerx;
use crate::plan::{self, ClusterPlan};
use crate::{Error, api};

impl Run<'_> {
    /// Turns a failed wait for the API into the error that explains it: the
    /// API's container exited, or it runs but did not answer in time.
    pub(super) async fn explain_api_failure(
        &self,
        plan: &ClusterPlan,
        error: Error,
        timeout: Duration,
    ) -> Error {
        let container = &plan.api.container;
        let running = dockerx::inspect(self.docker, container)
            .await
            .ok()
            .and_then(|i| i.state)
            .and_then(|s| s.running)
            == Some(true);
        let last_logs = logs::last_lines(self.docker, container, logs::TAIL_LINES).await;
        if !running {
            return Error::NodeFailed {
                node: container.clone(),
                reason: logs::exit_reason(self.docker, container).await,
                last_logs,
            };
        }
        let reason = match error {
            Error::Api { url, reason, .. } => format!("{url} did not answer ok: {reason}"),
            other => other.to_string(),
        };
        Error::Timeout {
            node: container.clone(),
            waiting_for: reason,
            after: timeout,
            last_logs,
        }
    }
}

/// How many API backends [`wait_api_backends`] waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backends {
    /// One: the load balancer routes the API.
    Any,
    /// Every server.
    All,
}

/// Polls haproxy's stats page until `wanted` API backends are UP by a passed
/// check; `Err` at `deadline` with those that are not (server, status, last
/// check), or with why the stats page did not answer.
pub(crate) async fn wait_api_backends(
    port: u16,
    deadline: Instant,
    wanted: Backends,
) -> std::result::Result<(), String> {
    loop {
        let last = match api::haproxy_backends(port).await {
            Ok(backends) => {
                let api: Vec<_> = backends
                    .iter()
                    .filter(|b| b.backend == plan::loadbalancer::API_BACKEND)
                    .collect();
                let up = api.iter().filter(|b| b.checked_up()).count();
                if match wanted {
                    Backends::Any => up > 0,
                    Backends::All => up == api.len(),
                } {
                    return Ok(());
                }
                let not_up: Vec<String> = api
                    .iter()
                    .filter(|b| !b.checked_up())
                    .map(|b| format!("{} ({} {})", b.server, b.status, b.check))
                    .collect();
                not_up.join(", ")
            }
            Err(e) => format!("its stats page does not answer: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(last);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
