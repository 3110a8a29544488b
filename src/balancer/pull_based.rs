//! Pull-based scheduling (the paper's Join-Idle-Queue variant): a worker that
//! finishes a request for f joins f's idle queue, since it now holds a warm
//! idle instance of f. A request for f goes to the least-loaded worker in f's
//! queue (consuming that entry); with none, to the least-loaded worker.

use std::sync::atomic::{AtomicU64, Ordering};

use super::idle_queues::{IdleQueues, DEFAULT_MAX_FUNCTIONS};
use super::least_connections::least_loaded;
use super::strategy::{Balancer, Outcome};
use crate::worker::{Lease, Worker, WorkerSet};

/// The lease hint of a call placed on a warm idle instance.
pub(crate) const WARM: u32 = 1;

pub(crate) struct PullBased {
    idle: IdleQueues,
    /// The newest worker-set generation whose removed workers were dropped.
    retained: AtomicU64,
}

impl PullBased {
    pub(crate) fn new() -> PullBased {
        PullBased::with_max_functions(DEFAULT_MAX_FUNCTIONS)
    }

    pub(crate) fn with_max_functions(max: usize) -> PullBased {
        PullBased { idle: IdleQueues::new(max), retained: AtomicU64::new(0) }
    }

    pub(crate) fn idle_queues(&self) -> &IdleQueues {
        &self.idle
    }
}

impl Default for PullBased {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer for PullBased {
    fn select(&self, workers: &WorkerSet, function: &str) -> Lease {
        match self.idle.take_least_loaded(function, workers) {
            Some(w) => Lease::with_hint(w, WARM),
            None => Lease::new(least_loaded(workers.as_slice())),
        }
    }

    fn release(&self, function: &str, worker: &Worker, outcome: Outcome) {
        if outcome == Outcome::Completed {
            self.idle.push(function, worker.id());
        }
    }

    fn sandbox_destroyed(&self, function: &str, worker: &Worker) -> bool {
        self.idle.remove_one(function, worker.id())
    }

    fn idle_instances(&self) -> Option<&IdleQueues> {
        Some(&self.idle)
    }

    fn workers_changed(&self, workers: &WorkerSet) {
        // Two admin changes on two cores may get here out of order. A newer
        // set has every removal of an older one, so the older is skipped:
        // it would drop the entries of a worker the newer one added.
        if self.retained.fetch_max(workers.generation(), Ordering::AcqRel) < workers.generation() {
            self.idle.retain(workers);
        }
    }
}
