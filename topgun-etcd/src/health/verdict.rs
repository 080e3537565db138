//! The pure verdict: member statuses in, [`ClusterHealth`] out, without
//! any I/O, so the verdict logic is tested on tables.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

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

fn ser_id<S: Serializer>(id: &u64, s: S) -> std::result::Result<S::Ok, S::Error> {
    match id {
        0 => s.serialize_none(),
        id => s.serialize_str(&hex_id(*id)),
    }
}

pub(super) fn ser_opt_id<S: Serializer>(
    id: &Option<u64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    ser_id(&id.unwrap_or(0), s)
}

fn ser_ms<S: Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_dur_ms(d, s),
        None => s.serialize_none(),
    }
}

pub(super) fn ser_dur_ms<S: Serializer>(
    d: &Duration,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}
