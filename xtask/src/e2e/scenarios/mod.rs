//! The registry of end-to-end scenarios: what `cargo xtask e2e` runs, in
//! order. Scenarios depend on the harness in [`crate::e2e`]; the harness
//! reaches them only through [`all`].
//!
//! A new scenario: a `pub(super) fn NAME(h: &Harness) -> anyhow::Result<()>`
//! in a file of this directory, its `mod` line and an entry in [`all`].
//! Every scenario also runs on real k3s (`cargo xtask e2e --upstream`): wait
//! on k3s with [`Harness::patience`](crate::e2e::Harness::patience) (the
//! harness's own waits already do); a scenario that proves something only
//! with the k3s stand-in gets `.standin_only("why")`, a single such check
//! `if h.standin_only("why") { ... }`.

mod day1;
mod day2;
mod registry;
mod remote;

use super::Scenario;

/// Every scenario, in the order they run.
pub fn all() -> Vec<Scenario> {
    vec![
        Scenario::new("bad-input", day1::bad_input),
        Scenario::new("one-server-embedded", day1::one_server_embedded),
        Scenario::new("ha-etcd", day1::ha_etcd),
        Scenario::new(
            "failure-docker-unreachable",
            day1::failure_docker_unreachable,
        ),
        Scenario::new("failure-missing-image", day1::failure_missing_image),
        Scenario::new("failure-node-exits", day1::failure_node_exits),
        Scenario::new("failure-port-taken", day1::failure_port_taken),
        Scenario::new("failure-readiness-timeout", day1::failure_readiness_timeout),
        Scenario::new("failure-sigint", day1::failure_sigint),
        Scenario::new("failure-sighup", day1::failure_sighup),
        Scenario::new("race-create-delete", day1::race_create_delete),
        Scenario::new("day2-etcd", day2::day2_etcd),
        Scenario::new("day2-reboot-embedded", day2::day2_reboot_embedded),
        Scenario::new("registry", registry::registry),
        Scenario::new("remote-ssh", remote::remote_ssh),
        Scenario::new("remote-tls", remote::remote_tls),
        Scenario::new("remote-context", remote::remote_context),
    ]
}
