//! Table-driven tests of the pure verdict.

use std::time::Duration;

use super::*;

const CLUSTER: u64 = 0xc1;

fn up(i: u64, leader: u64, term: u64) -> MemberStatus {
    MemberStatus {
        endpoint: format!("https://m{i}:2379"),
        reachable: true,
        latency: Some(Duration::from_millis(1)),
        member_id: 0x100 + i,
        cluster_id: CLUSTER,
        version: "3.5.21".into(),
        leader_id: if leader == 0 { 0 } else { 0x100 + leader - 1 },
        raft_term: term,
        raft_index: 10,
        raft_applied_index: 10,
        ..MemberStatus::default()
    }
}

fn down(i: u64) -> MemberStatus {
    MemberStatus::unreachable(
        format!("https://m{i}:2379"),
        "status failed: connection refused",
    )
}

fn with(mut s: MemberStatus, f: impl FnOnce(&mut MemberStatus)) -> MemberStatus {
    f(&mut s);
    s
}

/// Name, statuses, verdict, leader, words the reason must contain.
type Case = (
    &'static str,
    Vec<MemberStatus>,
    Verdict,
    Option<u64>,
    &'static str,
);

/// Leader numbers in `up(i, leader, term)` are 1-based member indexes (0: no leader).
#[test]
fn verdicts() {
    let nospace = Alarm {
        member_id: 0x101,
        kind: AlarmKind::NoSpace,
    };
    let corrupt = Alarm {
        member_id: 0x100,
        kind: AlarmKind::Corrupt,
    };
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("all agree", vec![up(0, 1, 2), up(1, 1, 2), up(2, 1, 2)], Verdict::Healthy, Some(0x100),
            "3 of 3 members answer; leader 0000000000000100 (https://m0:2379)"),
        ("single member", vec![up(0, 1, 2)], Verdict::Healthy, Some(0x100), "1 of 1 members answer"),
        ("one follower down", vec![up(0, 1, 2), up(1, 1, 2), down(2)], Verdict::Degraded, Some(0x100),
            "1 of 3 members down (https://m2:2379); quorum of 2 kept, leader 0000000000000100 (https://m0:2379)"),
        ("old leader down, new one agreed", vec![down(0), up(1, 2, 3), up(2, 2, 3)], Verdict::Degraded, Some(0x101),
            "leader 0000000000000101 (https://m1:2379)"),
        ("two of five down", vec![up(0, 1, 2), up(1, 1, 2), up(2, 1, 2), down(3), down(4)], Verdict::Degraded, Some(0x100),
            "2 of 5 members down"),
        ("two of three down", vec![up(0, 0, 2), down(1), down(2)], Verdict::QuorumLost, None,
            "1 of 3 members answer, 2 are needed for quorum; down: https://m1:2379, https://m2:2379"),
        ("all down", vec![down(0), down(1), down(2)], Verdict::QuorumLost, None, "0 of 3 members answer"),
        ("single member down", vec![down(0)], Verdict::QuorumLost, None, "0 of 1 members answer"),
        ("half of four", vec![up(0, 1, 2), up(1, 1, 2), down(2), down(3)], Verdict::QuorumLost, None,
            "2 of 4 members answer, 3 are needed"),
        ("nobody knows a leader", vec![up(0, 0, 5), up(1, 0, 5), up(2, 0, 5)], Verdict::NoLeader, None,
            "none knows a leader"),
        ("survivors follow the dead leader", vec![down(0), up(1, 1, 2), up(2, 1, 2)], Verdict::NoLeader, None,
            "still follow leader 0000000000000100, which does not answer"),
        ("two leaders", vec![up(0, 1, 3), up(1, 2, 3), up(2, 2, 3)], Verdict::Disagreement, None,
            "members report different leaders: https://m0:2379 says leader 0000000000000100, https://m1:2379 says leader 0000000000000101"),
        ("leader and no leader", vec![up(0, 1, 3), up(1, 1, 3), up(2, 0, 3)], Verdict::Disagreement, None,
            "https://m2:2379 says no leader"),
        ("different terms", vec![up(0, 1, 3), up(1, 1, 3), up(2, 1, 2)], Verdict::Disagreement, Some(0x100),
            "different raft terms: https://m0:2379 says term 3, https://m1:2379 says term 3, https://m2:2379 says term 2"),
        ("different cluster ids", vec![up(0, 1, 2), up(1, 1, 2), with(up(2, 1, 2), |s| s.cluster_id = 0xc2)],
            Verdict::Disagreement, None, "https://m2:2379 says cluster 00000000000000c2"),
        ("different cluster ids beat quorum", vec![with(up(0, 1, 2), |s| s.cluster_id = 0xc2), up(1, 1, 2), down(2), down(3), down(4)],
            Verdict::Disagreement, None, "different clusters"),
        ("nospace", vec![up(0, 1, 2), with(up(1, 1, 2), |s| s.alarms = vec![nospace]), up(2, 1, 2)],
            Verdict::Alarmed, None, "alarm NOSPACE on member 0000000000000101 (https://m1:2379); etcd refuses writes"),
        ("corrupt on a degraded cluster", vec![with(up(0, 1, 2), |s| s.alarms = vec![corrupt]), up(1, 1, 2), down(2)],
            Verdict::Alarmed, None, "alarm CORRUPT on member 0000000000000100 (https://m0:2379); a member's data differs"),
        ("quorum lost beats alarms", vec![with(up(0, 1, 2), |s| s.alarms = vec![nospace]), down(1), down(2)],
            Verdict::QuorumLost, None, "1 of 3"),
        ("no members", vec![], Verdict::QuorumLost, None, "no members were asked"),
    ];
    for (name, statuses, verdict, leader, reason) in cases {
        let health = assess(&statuses);
        assert_eq!(health.verdict, verdict, "{name}: {health}");
        assert_eq!(health.leader_id, leader, "{name}: {health}");
        assert!(
            health.reason.contains(reason),
            "{name}: {:?} lacks {reason:?}",
            health.reason
        );
        assert_eq!(health.members_total, statuses.len(), "{name}");
        assert_eq!(
            health.members_up,
            statuses.iter().filter(|s| s.reachable).count(),
            "{name}"
        );
    }
}

#[test]
fn leader_endpoint_and_quorum() {
    let h = assess(&[down(0), up(1, 2, 3), up(2, 2, 3)]);
    assert_eq!(h.leader_endpoint.as_deref(), Some("https://m1:2379"));
    assert_eq!((h.members_total, h.members_up, h.quorum), (3, 2, 2));
    assert_eq!(assess(&vec![up(0, 1, 1); 5]).quorum, 3);
}

#[test]
fn json_uses_hex_ids_and_milliseconds() {
    let report = HealthReport {
        members: vec![up(0, 1, 2), down(1)],
        health: assess(&[up(0, 1, 2), down(1)]),
        took: Duration::from_micros(1500),
    };
    insta::assert_json_snapshot!(report);
}

#[test]
fn leader_change_needs_a_previous_round() {
    let report = HealthReport {
        members: vec![up(0, 1, 2)],
        health: assess(&[up(0, 1, 2)]),
        took: Duration::ZERO,
    };
    let first = HealthChange {
        report: report.clone(),
        previous_leader: None,
        previous_verdict: None,
    };
    assert!(!first.leader_changed());
    let changed = HealthChange {
        report,
        previous_leader: Some(0x999),
        previous_verdict: Some(Verdict::Degraded),
    };
    assert!(changed.leader_changed());
}

#[test]
fn alarms_are_read_from_status_errors() {
    assert_eq!(
        parse_alarm("memberID:9372538179322589801 alarm:NOSPACE "),
        Some(Alarm {
            member_id: 9372538179322589801,
            kind: AlarmKind::NoSpace
        })
    );
    assert_eq!(
        parse_alarm("memberID:1 alarm:CORRUPT").map(|a| a.kind),
        Some(AlarmKind::Corrupt)
    );
    assert_eq!(parse_alarm("etcdserver: no leader"), None);
    assert_eq!(parse_alarm("memberID:x alarm:NOSPACE"), None);
}
