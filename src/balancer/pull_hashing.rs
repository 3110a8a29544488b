//! Pull-hashing: pull-based first, and with no idle instance anywhere, the
//! function's home under consistent hashing with bounded loads instead of
//! the least-loaded worker.
//!
//! Pull-based sends a function's cold starts wherever load is lowest, so
//! over time each function has instances (and, in OpenLambda, a code cache
//! that every pull refreshes, killing them) on every worker. Sending them
//! home keeps each function on few workers: fewer cold starts where the
//! worker's own rules destroy sandboxes per function and worker, and a
//! cluster's working set that fits its memory. The load bound (1.25 times
//! the mean) still moves a function off a busy home.

use super::hashing_bounded::HashingBounded;
use super::idle_queues::IdleQueues;
use super::pull_based::PullBased;
use super::strategy::{Balancer, Outcome};
use crate::worker::{Lease, Worker, WorkerSet};

pub(crate) struct PullHashing {
    pull: PullBased,
    home: HashingBounded,
}

impl PullHashing {
    pub(crate) fn with_max_functions(max: usize) -> PullHashing {
        PullHashing { pull: PullBased::with_max_functions(max), home: HashingBounded::new() }
    }
}

impl Balancer for PullHashing {
    fn select(&self, workers: &WorkerSet, function: &str) -> Lease {
        match self.pull.idle_queues().take_least_loaded(function, workers) {
            Some(w) => Lease::with_hint(w, super::pull_based::WARM),
            None => self.home.select(workers, function),
        }
    }

    fn release(&self, function: &str, worker: &Worker, outcome: Outcome) {
        self.pull.release(function, worker, outcome);
    }

    fn sandbox_destroyed(&self, function: &str, worker: &Worker) -> bool {
        self.pull.sandbox_destroyed(function, worker)
    }

    fn idle_instances(&self) -> Option<&IdleQueues> {
        self.pull.idle_instances()
    }

    fn workers_changed(&self, workers: &WorkerSet) {
        self.pull.workers_changed(workers);
        self.home.workers_changed(workers);
    }
}
