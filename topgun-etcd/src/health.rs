//! Health and leader checks against real members.
//!
//! [`Checker`] holds one client per member (a multi-endpoint etcd client
//! load-balances, which hides who answered) and runs every request under a
//! deadline. A status round asks every member at once for its
//! [`MemberStatus`]; [`assess`] turns the statuses into a [`ClusterHealth`]
//! verdict without any IO, so the verdict logic is tested on tables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use serde::{Serialize, Serializer};

use crate::client::{ClientConfig, MemberClient, normalize_endpoint};
use crate::{Error, Result};

pub use crate::client::ClientTls;

/// How often [`Checker::wait_healthy`] asks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Where the write probe writes (one fresh key under it per probe).
pub const PROBE_PREFIX: &str = "/topgun/health/";

/// An alarm etcd raises on a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AlarmKind {
    /// The backend quota is exhausted; etcd refuses writes.
    #[serde(rename = "NOSPACE")]
    NoSpace,
    /// The member's data is corrupt (its hash differs from its peers').
    #[serde(rename = "CORRUPT")]
    Corrupt,
}

impl fmt::Display for AlarmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AlarmKind::NoSpace => "NOSPACE",
            AlarmKind::Corrupt => "CORRUPT",
        })
    }
}

/// One raised alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Alarm {
    /// The member the alarm is raised on.
    #[serde(serialize_with = "ser_id")]
    pub member_id: u64,
    /// Which alarm.
    pub kind: AlarmKind,
}

/// What one member says about itself, or why it could not be asked.
///
/// The numbers are meaningful only when `reachable`; ids are serialized as
/// 16-digit hex strings (as etcdctl prints them), `null` when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    /// The client URL that was asked.
    pub endpoint: String,
    /// Whether the status request succeeded within the deadline.
    pub reachable: bool,
    /// Round-trip time of the status request.
    #[serde(serialize_with = "ser_ms", rename = "latency_ms")]
    pub latency: Option<Duration>,
    /// This member's id.
    #[serde(serialize_with = "ser_id")]
    pub member_id: u64,
    /// The cluster id this member belongs to.
    #[serde(serialize_with = "ser_id")]
    pub cluster_id: u64,
    /// The etcd version.
    pub version: String,
    /// The leader this member follows (0: none).
    #[serde(serialize_with = "ser_id")]
    pub leader_id: u64,
    /// The raft term.
    pub raft_term: u64,
    /// The raft index.
    pub raft_index: u64,
    /// The raft applied index.
    pub raft_applied_index: u64,
    /// The backend size, bytes.
    pub db_size: i64,
    /// The backend size in use, bytes.
    pub db_size_in_use: i64,
    /// Errors the member reports about itself.
    pub errors: Vec<String>,
    /// Whether the member is a non-voting learner.
    pub is_learner: bool,
    /// Alarms this member reports (for any member of the cluster), read
    /// from its errors.
    pub alarms: Vec<Alarm>,
    /// Why the member could not be asked; names the cause.
    pub error: Option<String>,
}

impl MemberStatus {
    /// A member that did not answer, and why.
    pub fn unreachable(endpoint: impl Into<String>, error: impl Into<String>) -> Self {
        MemberStatus {
            endpoint: endpoint.into(),
            error: Some(error.into()),
            ..MemberStatus::default()
        }
    }

    /// Whether this member answered and says it is the leader.
    pub fn is_leader(&self) -> bool {
        self.reachable && self.member_id != 0 && self.member_id == self.leader_id
    }
}

/// The verdict on a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every member answers and agrees on one leader.
    Healthy,
    /// Members are down but quorum is kept and the others agree on a leader.
    Degraded,
    /// Quorum is kept but there is no leader (an election is under way or failing).
    NoLeader,
    /// Fewer than a quorum of members answer: the cluster cannot serve writes.
    QuorumLost,
    /// Members report different leaders, cluster ids or raft terms.
    Disagreement,
    /// A NOSPACE or CORRUPT alarm is raised.
    Alarmed,
}

impl Verdict {
    /// The verdict as one lowercase word, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "healthy",
            Verdict::Degraded => "degraded",
            Verdict::NoLeader => "no_leader",
            Verdict::QuorumLost => "quorum_lost",
            Verdict::Disagreement => "disagreement",
            Verdict::Alarmed => "alarmed",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cluster's health: a verdict, its reason in words, and the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterHealth {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in one sentence.
    pub reason: String,
    /// The leader the answering members agree on, if they do.
    #[serde(serialize_with = "ser_opt_id")]
    pub leader_id: Option<u64>,
    /// The leader's endpoint, if it answered.
    pub leader_endpoint: Option<String>,
    /// How many members were asked.
    pub members_total: usize,
    /// How many answered.
    pub members_up: usize,
    /// How many are needed for quorum.
    pub quorum: usize,
}

impl ClusterHealth {
    /// Whether the verdict is [`Verdict::Healthy`].
    pub fn is_healthy(&self) -> bool {
        self.verdict == Verdict::Healthy
    }
}

impl fmt::Display for ClusterHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.verdict, self.reason)
    }
}

/// Decides the verdict from one status round, in this order: no answer or
/// different cluster ids, quorum, alarms, leader agreement, terms, leader
/// reachability, members down. Pure.
pub fn assess(statuses: &[MemberStatus]) -> ClusterHealth {
    let total = statuses.len();
    let quorum = total / 2 + 1;
    let up: Vec<&MemberStatus> = statuses.iter().filter(|s| s.reachable).collect();
    let down: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.reachable)
        .map(|s| s.endpoint.as_str())
        .collect();
    let health = |verdict, reason: String, leader: Option<u64>| {
        let leader_endpoint = leader.and_then(|id| {
            up.iter()
                .find(|s| s.member_id == id)
                .map(|s| s.endpoint.clone())
        });
        ClusterHealth {
            verdict,
            reason,
            leader_id: leader,
            leader_endpoint,
            members_total: total,
            members_up: up.len(),
            quorum,
        }
    };
    let name = |id: u64| match up.iter().find(|s| s.member_id == id) {
        Some(s) => format!("{} ({})", hex_id(id), s.endpoint),
        None => hex_id(id),
    };

    if total == 0 {
        return health(Verdict::QuorumLost, "no members were asked".into(), None);
    }
    let cluster_ids: BTreeSet<u64> = up.iter().map(|s| s.cluster_id).collect();
    if cluster_ids.len() > 1 {
        return health(
            Verdict::Disagreement,
            format!(
                "members belong to different clusters: {}",
                by_member(&up, |s| format!("cluster {}", hex_id(s.cluster_id)))
            ),
            None,
        );
    }
    if up.len() < quorum {
        return health(
            Verdict::QuorumLost,
            format!(
                "{} of {total} members answer, {quorum} are needed for quorum; down: {}",
                up.len(),
                down.join(", ")
            ),
            None,
        );
    }
    let alarms: BTreeSet<Alarm> = up.iter().flat_map(|s| s.alarms.iter().copied()).collect();
    if !alarms.is_empty() {
        let list = alarms
            .iter()
            .map(|a| format!("{} on member {}", a.kind, name(a.member_id)))
            .collect::<Vec<_>>()
            .join(", ");
        let advice = if alarms.iter().any(|a| a.kind == AlarmKind::NoSpace) {
            "; etcd refuses writes until space is freed (compact, defragment) and the alarm is disarmed"
        } else {
            "; a member's data differs from its peers': replace it from a good snapshot"
        };
        return health(Verdict::Alarmed, format!("alarm {list}{advice}"), None);
    }
    let leaders: BTreeSet<u64> = up.iter().map(|s| s.leader_id).collect();
    if leaders.len() > 1 {
        return health(
            Verdict::Disagreement,
            format!(
                "members report different leaders: {}",
                by_member(&up, |s| match s.leader_id {
                    0 => "no leader".to_owned(),
                    id => format!("leader {}", hex_id(id)),
                })
            ),
            None,
        );
    }
    let leader = *leaders.iter().next().expect("at least a quorum answered");
    if leader == 0 {
        return health(
            Verdict::NoLeader,
            format!(
                "{} of {total} members answer but none knows a leader; an election is under way or failing",
                up.len()
            ),
            None,
        );
    }
    let terms: BTreeSet<u64> = up.iter().map(|s| s.raft_term).collect();
    if terms.len() > 1 {
        return health(
            Verdict::Disagreement,
            format!(
                "members report different raft terms: {}",
                by_member(&up, |s| format!("term {}", s.raft_term))
            ),
            Some(leader),
        );
    }
    let leader_answers = up.iter().any(|s| s.member_id == leader);
    if !leader_answers && !down.is_empty() {
        return health(
            Verdict::NoLeader,
            format!(
                "members still follow leader {}, which does not answer; down: {}; an election is due",
                hex_id(leader),
                down.join(", ")
            ),
            None,
        );
    }
    if !down.is_empty() {
        return health(
            Verdict::Degraded,
            format!(
                "{} of {total} members down ({}); quorum of {quorum} kept, leader {}",
                down.len(),
                down.join(", "),
                name(leader)
            ),
            Some(leader),
        );
    }
    health(
        Verdict::Healthy,
        format!("{total} of {total} members answer; leader {}", name(leader)),
        Some(leader),
    )
}

fn by_member(up: &[&MemberStatus], what: impl Fn(&MemberStatus) -> String) -> String {
    up.iter()
        .map(|s| format!("{} says {}", s.endpoint, what(s)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An id as etcdctl prints it: 16 hex digits.
pub fn hex_id(id: u64) -> String {
    format!("{id:016x}")
}

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
        let mut causes = Vec::new();
        for member in &self.members {
            match probe_through(member, &key).await {
                Ok(probe) => return Ok(probe),
                Err(e) => causes.push(e.to_string()),
            }
        }
        Err(Error::NoMemberAnswered {
            call: "the write probe",
            causes,
        })
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

    /// Lists keys under `prefix` (all keys for `""`), at most `limit` of
    /// them, and counts every key under each prefix of `depth` path
    /// segments. Uses the first member that answers.
    pub async fn list_keys(&self, prefix: &str, limit: usize, depth: usize) -> Result<KeyListing> {
        let mut causes = Vec::new();
        for member in &self.members {
            match list_keys_through(member, prefix, limit, depth).await {
                Ok(listing) => return Ok(listing),
                Err(e) => causes.push(e.to_string()),
            }
        }
        Err(Error::NoMemberAnswered {
            call: "range",
            causes,
        })
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

/// Reads an alarm from a Status error, which etcd writes in protobuf text
/// form: `memberID:9372538179322589801 alarm:NOSPACE `.
pub fn parse_alarm(error: &str) -> Option<Alarm> {
    let mut member_id = None;
    let mut kind = None;
    for field in error.split_whitespace() {
        match field.split_once(':') {
            Some(("memberID", id)) => member_id = id.parse::<u64>().ok(),
            Some(("alarm", "NOSPACE")) => kind = Some(AlarmKind::NoSpace),
            Some(("alarm", "CORRUPT")) => kind = Some(AlarmKind::Corrupt),
            _ => {}
        }
    }
    Some(Alarm {
        member_id: member_id?,
        kind: kind?,
    })
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
        cause: match e {
            Error::Request { cause, .. } => cause,
            other => other.to_string(),
        },
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
            });
        }
        None => {
            return Err(Error::Probe {
                endpoint: m.endpoint.clone(),
                step: "get",
                cause: "the key just written is missing".into(),
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

fn ser_id<S: Serializer>(id: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    match id {
        0 => s.serialize_none(),
        id => s.serialize_str(&hex_id(*id)),
    }
}

fn ser_opt_id<S: Serializer>(id: &Option<u64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    ser_id(&id.unwrap_or(0), s)
}

fn ser_ms<S: Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_dur_ms(d, s),
        None => s.serialize_none(),
    }
}

fn ser_dur_ms<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

#[cfg(test)]
mod tests;
