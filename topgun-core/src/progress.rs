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
    /// Images to import were exported from the host engine (`docker save`)
    /// into a temporary file.
    ImagesExported {
        /// The images.
        images: Vec<String>,
        /// The archive's size.
        bytes: u64,
        /// How long the export took.
        #[serde(serialize_with = "ser_ms")]
        elapsed: Duration,
    },
    /// The image archive was copied into a container: the cluster's images
    /// volume, or a node.
    ImagesCopied {
        /// Where to (`volume <name>` or a container name).
        to: String,
        /// The archive's size.
        bytes: u64,
        /// How long the copy took.
        #[serde(serialize_with = "ser_ms")]
        elapsed: Duration,
    },
    /// A node imported the images (`k3s ctr images import`).
    ImagesImported {
        /// The container name.
        node: String,
        /// How long its import took.
        #[serde(serialize_with = "ser_ms")]
        elapsed: Duration,
    },
    /// A node does not run; it imports the images when it next starts.
    ImportAtNextStart {
        /// The container name.
        node: String,
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
            Event::ImagesExported {
                images,
                bytes,
                elapsed,
            } => write!(
                f,
                "exported {} ({}, {:.1}s)",
                images.join(", "),
                megabytes(*bytes),
                elapsed.as_secs_f64()
            ),
            Event::ImagesCopied { to, bytes, elapsed } => write!(
                f,
                "copied {} to {to} ({:.1}s)",
                megabytes(*bytes),
                elapsed.as_secs_f64()
            ),
            Event::ImagesImported { node, elapsed } => {
                write!(
                    f,
                    "{node} imported the images ({:.1}s)",
                    elapsed.as_secs_f64()
                )
            }
            Event::ImportAtNextStart { node } => {
                write!(
                    f,
                    "{node} does not run: it imports the images when it starts"
                )
            }
        }
    }
}

/// `104.9 MB` (decimal units, one decimal; `18.4 kB` below 0.1 MB).
pub(crate) fn megabytes(bytes: u64) -> String {
    if bytes < 100_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

/// Receives [`Event`]s; called from the runtime's tasks, so it must be
/// quick and thread-safe. Cheap to clone.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&Event) + Send + Sync>);

impl Progress {
    /// Calls `f` with every event.
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        Progress(Arc::new(f))
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Sends an event to an optional [`Progress`] and to `tracing`.
pub(crate) fn emit(progress: &Option<Progress>, event: Event) {
    tracing::debug!(%event, "progress");
    if let Some(p) = progress {
        (p.0)(&event);
    }
}

/// Counts of ready nodes per phase, from a create's [`Event`]s: what a
/// progress display shows instead of a line per node (`agents 37/50
/// ready`).
#[derive(Debug, Default, Clone)]
pub struct ReadyCounts {
    /// Phases started and not done: the phase, its nodes, which are ready.
    running: Vec<(PhaseKind, Vec<String>, Vec<bool>)>,
}

impl ReadyCounts {
    /// An empty count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes an event in; returns whether the counts changed.
    pub fn update(&mut self, event: &Event) -> bool {
        match event {
            Event::PhaseStarted { phase, nodes } if !nodes.is_empty() => {
                self.running.retain(|(p, ..)| p != phase);
                self.running
                    .push((*phase, nodes.clone(), vec![false; nodes.len()]));
                true
            }
            Event::PhaseDone { phase, .. } => {
                let before = self.running.len();
                self.running.retain(|(p, ..)| p != phase);
                before != self.running.len()
            }
            Event::NodeReady { node, .. } => {
                // The phase that started it last (server-0 is in the first
                // server's phase and the API's).
                let found = self.running.iter_mut().rev().find_map(|(_, nodes, ready)| {
                    let i = nodes.iter().position(|n| n == node)?;
                    Some(&mut ready[i])
                });
                match found {
                    Some(ready) if !*ready => {
                        *ready = true;
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// `servers 1/2 ready, agents 37/50 ready`: every phase of more than one
    /// node still running, or `None` when there is none.
    pub fn summary(&self) -> Option<String> {
        let parts: Vec<String> = self
            .running
            .iter()
            .filter(|(_, nodes, _)| nodes.len() > 1)
            .map(|(phase, nodes, ready)| {
                let n = ready.iter().filter(|r| **r).count();
                format!("{} {n}/{} ready", phase.describe(), nodes.len())
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(phase: PhaseKind, nodes: &[&str]) -> Event {
        Event::PhaseStarted {
            phase,
            nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    fn ready(node: &str) -> Event {
        Event::NodeReady {
            node: node.to_owned(),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn ready_counts_per_phase() {
        let mut c = ReadyCounts::new();
        assert_eq!(c.summary(), None);
        let agents: Vec<String> = (0..50).map(|i| format!("agent-{i}")).collect();
        let names: Vec<&str> = agents.iter().map(String::as_str).collect();
        assert!(c.update(&started(PhaseKind::FirstServer, &["server-0"])));
        assert_eq!(c.summary(), None, "one node needs no count");
        assert!(c.update(&started(PhaseKind::Servers, &["server-1", "server-2"])));
        assert!(c.update(&started(PhaseKind::Agents, &names)));
        for name in &names[..37] {
            assert!(c.update(&ready(name)));
        }
        assert!(c.update(&ready("server-2")));
        assert!(!c.update(&ready("nobody")));
        assert_eq!(
            c.summary().as_deref(),
            Some("servers 1/2 ready, agents 37/50 ready")
        );
        assert!(c.update(&Event::PhaseDone {
            phase: PhaseKind::Servers,
            elapsed: Duration::ZERO,
        }));
        assert_eq!(c.summary().as_deref(), Some("agents 37/50 ready"));
        // A node counts once.
        assert!(!c.update(&ready("agent-0")));
        for name in &names {
            c.update(&ready(name));
        }
        assert_eq!(c.summary().as_deref(), Some("agents 50/50 ready"));
    }
}
