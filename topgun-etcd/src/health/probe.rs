//! Asking the members: [`Checker`] holds one client per member (a
//! multi-endpoint etcd client load-balances, which hides who answered) and
//! runs every request under a deadline; status rounds, the write probe,
//! waits and the leader watch.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::verdict::{
    ClusterHealth, MemberStatus, Verdict, assess, parse_alarm, ser_dur_ms, ser_opt_id,
};
use crate::client::{ClientConfig, MemberClient, normalize_endpoint};
use crate::{Error, Result};

/// How often [`Checker::wait_healthy`] asks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Where the write probe writes (one fresh key under it per probe).
pub const PROBE_PREFIX: &str = "/topgun/health/";

/// The statuses of one round and the verdict on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// One status per endpoint, in the order given.
    pub members: Vec<MemberStatus>,
    /// The verdict.
    pub health: ClusterHealth,
    /// How long the round took.
    #[serde(serialize_with = "ser_dur_ms", rename = "took_ms")]
    pub took: Duration,
}

/// A successful write probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteProbe {
    /// The member the probe went through.
    pub endpoint: String,
    /// The key written, read back and deleted.
    pub key: String,
    /// How long put, get and delete took together.
    #[serde(serialize_with = "ser_dur_ms", rename = "latency_ms")]
    pub latency: Duration,
}

/// A change seen by a [`HealthWatch`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthChange {
    /// The round that showed the change.
    pub report: HealthReport,
    /// The leader before the change (`None`: none agreed, or first round).
    #[serde(serialize_with = "ser_opt_id")]
    pub previous_leader: Option<u64>,
    /// The verdict before the change (`None` on the first round).
    pub previous_verdict: Option<Verdict>,
}

impl HealthChange {
    /// Whether the agreed leader differs from the one before.
    pub fn leader_changed(&self) -> bool {
        self.previous_verdict.is_some() && self.previous_leader != self.report.health.leader_id
    }
}

/// Asks etcd members for their status, one client per member.
#[derive(Clone)]
pub struct Checker {
    members: Vec<MemberClient>,
    config: ClientConfig,
}

impl fmt::Debug for Checker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checker")
            .field("endpoints", &self.endpoints())
            .field("config", &self.config)
            .finish()
    }
}

impl Checker {
    /// Checks the endpoints and TLS material and builds one client per
    /// member. Bad input fails here; dead endpoints do not (their first
    /// request does).
    pub async fn connect(endpoints: &[impl AsRef<str>], config: &ClientConfig) -> Result<Self> {
        if endpoints.is_empty() {
            return Err(Error::InvalidEndpoint {
                endpoint: String::new(),
                problem: "no endpoints were given".into(),
            });
        }
        if let Some(tls) = &config.tls {
            tls.validate()?;
        }
        let mut normalized: Vec<String> = Vec::new();
        for e in endpoints {
            let n = normalize_endpoint(e.as_ref(), config.tls.is_some())?;
            if normalized.contains(&n) {
                return Err(Error::InvalidEndpoint {
                    endpoint: e.as_ref().to_owned(),
                    problem: "given twice".into(),
                });
            }
            normalized.push(n);
        }
        let mut members = Vec::with_capacity(normalized.len());
        for e in &normalized {
            members.push(MemberClient::connect(e, config).await?);
        }
        Ok(Checker {
            members,
            config: config.clone(),
        })
    }

    /// The per-member clients, in order (for the browser's reads and writes).
    pub(crate) fn member_clients(&self) -> &[MemberClient] {
        &self.members
    }

    /// The (normalized) endpoints, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    /// Asks member `i` for its status and alarms.
    pub async fn member_status(&self, i: usize) -> MemberStatus {
        member_status(&self.members[i]).await
    }

    /// Asks every member at once.
    pub async fn statuses(&self) -> Vec<MemberStatus> {
        futures_util::future::join_all(self.members.iter().map(member_status)).await
    }

    /// One status round and its verdict.
    pub async fn check(&self) -> HealthReport {
        let started = Instant::now();
        let members = self.statuses().await;
        let health = assess(&members);
        HealthReport {
            members,
            health,
            took: started.elapsed(),
        }
    }

    /// Proves the cluster accepts writes: puts a fresh key under
    /// [`PROBE_PREFIX`], reads it back with a linearizable get, deletes it.
    /// Tries the members in order until one succeeds.
    pub async fn write_probe(&self) -> Result<WriteProbe> {
        let key = format!(
            "{PROBE_PREFIX}probe-{}",
            hex::encode(rand::random::<[u8; 8]>())
        );
        let mut failures = Vec::new();
        for member in &self.members {
            match probe_through(member, &key).await {
                Ok(probe) => return Ok(probe),
                Err(e) => failures.push(e),
            }
        }
        Err(Error::no_member_answered("the write probe", failures))
    }

    /// Waits until a round is [`Verdict::Healthy`] and the write probe
    /// succeeds, asking every [`POLL_INTERVAL`]. Fails at `deadline` with the
    /// last verdict and its reason.
    pub async fn wait_healthy(&self, deadline: Instant) -> Result<HealthReport> {
        let started = Instant::now();
        loop {
            let report = self.check().await;
            let last = if report.health.is_healthy() {
                match self.write_probe().await {
                    Ok(_) => return Ok(report),
                    Err(e) => format!("{} but {e}", report.health),
                }
            } else {
                report.health.to_string()
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::NotHealthy {
                    wanted: "healthy",
                    waited: started.elapsed(),
                    last,
                });
            }
            tracing::debug!(%last, "etcd not healthy yet");
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    /// Runs status rounds every [`POLL_INTERVAL`] until `done` accepts one,
    /// and returns it; fails at `deadline` with the last verdict.
    pub async fn wait_until(
        &self,
        deadline: Instant,
        done: impl Fn(&HealthReport) -> bool,
    ) -> Result<HealthReport> {
        let started = Instant::now();
        loop {
            let report = self.check().await;
            if done(&report) {
                return Ok(report);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::NotHealthy {
                    wanted: "the awaited state",
                    waited: started.elapsed(),
                    last: report.health.to_string(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    /// Watches the cluster: a status round every `interval`, reporting
    /// changes of verdict or leader. See [`HealthWatch::next_change`].
    pub fn watch(&self, interval: Duration) -> HealthWatch<'_> {
        HealthWatch {
            checker: self,
            interval,
            last: None,
            next_round: None,
        }
    }
}

/// Status rounds at an interval, yielding only changes. Made by
/// [`Checker::watch`].
#[derive(Debug)]
pub struct HealthWatch<'a> {
    checker: &'a Checker,
    interval: Duration,
    last: Option<(Verdict, Option<u64>)>,
    next_round: Option<tokio::time::Instant>,
}

impl HealthWatch<'_> {
    /// Waits for the next change of verdict or leader (the first call
    /// returns the current state at once).
    pub async fn next_change(&mut self) -> HealthChange {
        loop {
            if let Some(at) = self.next_round {
                tokio::time::sleep_until(at).await;
            }
            self.next_round = Some(tokio::time::Instant::now() + self.interval);
            let report = self.checker.check().await;
            let now = (report.health.verdict, report.health.leader_id);
            if self.last == Some(now) {
                continue;
            }
            let previous = self.last.replace(now);
            return HealthChange {
                report,
                previous_leader: previous.and_then(|(_, l)| l),
                previous_verdict: previous.map(|(v, _)| v),
            };
        }
    }

    /// Waits until the agreed leader differs from `old` (and a leader is
    /// agreed), or `deadline` passes.
    pub async fn new_leader(&mut self, old: u64, deadline: Instant) -> Option<HealthChange> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(remaining, async {
            loop {
                let change = self.next_change().await;
                if matches!(change.report.health.leader_id, Some(l) if l != old) {
                    return change;
                }
            }
        })
        .await
        .ok()
    }
}

async fn member_status(m: &MemberClient) -> MemberStatus {
    // Only Status: it is answered locally. (Alarm(Get) goes through raft and
    // blocks while there is no leader; Status lists alarms among its errors.)
    let mut maintenance = m.client.maintenance_client();
    let started = Instant::now();
    let status = m.call("status", maintenance.status()).await;
    let latency = started.elapsed();
    let status = match status {
        Ok(s) => s,
        Err(e) => return MemberStatus::unreachable(&m.endpoint, cause_of(&e)),
    };
    let header = status.header();
    let errors: Vec<String> = status.errors().to_vec();
    MemberStatus {
        endpoint: m.endpoint.clone(),
        reachable: true,
        latency: Some(latency),
        member_id: header.map_or(0, |h| h.member_id()),
        cluster_id: header.map_or(0, |h| h.cluster_id()),
        version: status.version().to_owned(),
        leader_id: status.leader(),
        raft_term: status.raft_term(),
        raft_index: status.raft_index(),
        raft_applied_index: status.raft_applied_index(),
        db_size: status.db_size(),
        db_size_in_use: status.raft_used_db_size(),
        alarms: errors.iter().filter_map(|e| parse_alarm(e)).collect(),
        errors,
        is_learner: status.is_learner(),
        error: None,
    }
}

/// The cause part of a request error (the endpoint is in the status already).
fn cause_of(e: &Error) -> String {
    match e {
        Error::Request { call, cause, .. } => format!("{call} failed: {cause}"),
        other => other.to_string(),
    }
}

async fn probe_through(m: &MemberClient, key: &str) -> Result<WriteProbe> {
    let started = Instant::now();
    let value = format!("{:?}", std::time::SystemTime::now());
    let mut kv = m.client.kv_client();
    let fail = |step: &'static str, e: Error| Error::Probe {
        endpoint: m.endpoint.clone(),
        step,
        cause: match &e {
            Error::Request { cause, .. } => cause.clone(),
            other => other.to_string(),
        },
        source: Some(Box::new(e)),
    };
    m.call("put", kv.put(key, value.as_str(), None))
        .await
        .map_err(|e| fail("put", e))?;
    let got = m.call("get", kv.get(key, None)).await;
    let deleted = m.call("delete", kv.delete(key, None)).await;
    let got = got.map_err(|e| fail("get", e))?;
    match got.kvs().first() {
        Some(kv) if kv.value() == value.as_bytes() => {}
        Some(_) => {
            return Err(Error::Probe {
                endpoint: m.endpoint.clone(),
                step: "get",
                cause: "read back a different value than was written".into(),
                source: None,
            });
        }
        None => {
            return Err(Error::Probe {
                endpoint: m.endpoint.clone(),
                step: "get",
                cause: "the key just written is missing".into(),
                source: None,
            });
        }
    }
    deleted.map_err(|e| fail("delete", e))?;
    Ok(WriteProbe {
        endpoint: m.endpoint.clone(),
        key: key.to_owned(),
        latency: started.elapsed(),
    })
}
