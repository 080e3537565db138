//! Health and leader checks against real members.
//!
//! - `verdict` (pure): [`MemberStatus`] of each member in, [`assess`] →
//!   [`ClusterHealth`] out, without any I/O, so the verdict logic is tested
//!   on tables.
//! - `probe` (I/O): [`Checker`] holds one client per member and runs every
//!   request under a deadline: status rounds ([`HealthReport`]), the write
//!   probe, `wait_healthy` and the leader watch ([`HealthWatch`]).
//!
//! Key listing is in [`crate::Checker::list_keys`].

mod probe;
mod verdict;

pub use probe::{
    Checker, HealthChange, HealthReport, HealthWatch, POLL_INTERVAL, PROBE_PREFIX, WriteProbe,
};
pub use verdict::{
    Alarm, AlarmKind, ClusterHealth, MemberStatus, Verdict, assess, hex_id, parse_alarm,
};

#[cfg(test)]
mod tests;
