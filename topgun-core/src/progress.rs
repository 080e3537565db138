//! Progress events of a create or delete, for a CLI spinner or a log.
//! topgun-core never prints; it calls the caller's [`Progress`] function.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::plan::PhaseKind;

/// Something that happened during a create or delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A phase started.
    PhaseStarted {
        /// The phase.
        phase: PhaseKind,
        /// The containers it concerns (may be empty).
        nodes: Vec<String>,
    },
    /// A node passed its readiness gate.
    NodeReady {
        /// The container name.
        node: String,
        /// Time since its phase started.
        #[serde(serialize_with = "ser_ms")]
        elapsed: Duration,
    },
    /// A phase finished.
    PhaseDone {
        /// The phase.
        phase: PhaseKind,
        /// How long it took.
        #[serde(serialize_with = "ser_ms")]
        elapsed: Duration,
    },
    /// Something the user should know; the operation goes on.
    Warning {
        /// The message.
        message: String,
    },
    /// A node was stopped.
    NodeStopped {
        /// The container name.
        node: String,
    },
    /// A create failed (or was cancelled) and everything it made is being
    /// removed.
    RollingBack {
        /// Why.
        reason: String,
    },
    /// Rollback or delete finished.
    Removed {
        /// How many containers, volumes and networks were removed.
        count: usize,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::PhaseStarted { phase, .. } => write!(f, "{}...", phase.describe()),
            Event::NodeReady { node, elapsed } => {
                write!(f, "{node} ready ({:.1}s)", elapsed.as_secs_f64())
            }
            Event::PhaseDone { phase, elapsed } => {
                write!(f, "{} ({:.1}s)", phase.describe(), elapsed.as_secs_f64())
            }
            Event::NodeStopped { node } => write!(f, "{node} stopped"),
            Event::Warning { message } => write!(f, "warning: {message}"),
            Event::RollingBack { reason } => write!(f, "rolling back: {reason}"),
            Event::Removed { count } => write!(f, "removed {count} resources"),
        }
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Receives [`Event`]s; called from the runtime's tasks, so it must be
/// quick and thread-safe.
pub type Progress = Arc<dyn Fn(&Event) + Send + Sync>;

/// Sends an event to an optional [`Progress`] and to `tracing`.
pub(crate) fn emit(progress: &Option<Progress>, event: Event) {
    tracing::debug!(%event, "progress");
    if let Some(p) = progress {
        p(&event);
    }
}
