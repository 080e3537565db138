//! The schedule of a create: the running futures (making nodes, starting
//! phases, waiting for gates), and which phases have started and are ready.

use tokio::time::Instant;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;

use crate::Result;
use crate::plan::{Phase, PhaseKind};

/// What a scheduled future of a create did.
pub(super) enum Step<'p> {
    /// Every node was made.
    Made,
    /// The phase's containers were started at the instant given.
    Started(&'p Phase, Instant),
    /// The phase passed its gates.
    Ready(PhaseKind),
}

/// The running futures of a create (making nodes, starting phases, waiting
/// for gates), and which phases have started and are ready.
#[derive(Default)]
pub(super) struct Schedule<'a, 'p> {
    pub(super) pending: FuturesUnordered<BoxFuture<'a, Result<Step<'p>>>>,
    pub(super) started: Vec<PhaseKind>,
    pub(super) ready: Vec<PhaseKind>,
}

impl<'a, 'p> Schedule<'a, 'p> {
    pub(super) fn push(&mut self, step: impl Future<Output = Result<Step<'p>>> + Send + 'a) {
        self.pending.push(Box::pin(step));
    }

    /// Whether every phase `phase` depends on has got far enough.
    pub(super) fn can_start(&self, phase: &Phase) -> bool {
        phase.after_started.iter().all(|k| self.started.contains(k))
            && phase.after_ready.iter().all(|k| self.ready.contains(k))
    }
}
