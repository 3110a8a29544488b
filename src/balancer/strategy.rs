//! What a strategy is: the [`Balancer`] trait every one implements, and
//! what it hears of the calls it placed ([`Outcome`], [`Answer`]).

use std::time::{Duration, Instant};

use super::idle_queues::IdleQueues;
use crate::worker::{Lease, Worker, WorkerSet};

/// How a request on a worker ended, as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The worker answered in full: its instance of the function ran and is warm.
    Completed,
    /// No usable answer (connection failed, worker error, client went away).
    Failed,
}

/// What a worker's answer to a completed call said, for a balancer that
/// learns from answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    /// When the request was sent (its last byte).
    pub sent_at: Instant,
    /// From then to the answer's head.
    pub elapsed: Duration,
    /// The worker's `X-Cold-Start` (`true`/`false`), if it sent one.
    pub cold: Option<bool>,
    /// The worker's `X-Service-Ms`: the time the call spent in it, if it said.
    pub service_ms: Option<f64>,
}

pub trait Balancer: Send + Sync {
    /// Picks a worker of the non-empty `workers` for `function` and leases it.
    fn select(&self, workers: &WorkerSet, function: &str) -> Lease;

    /// A request for `function` on `worker` ended.
    fn release(&self, _function: &str, _worker: &Worker, _outcome: Outcome) {}

    /// A lease `select` gave for `function` was not used (its worker had
    /// no room): what the choice took is given back. By default, the warm
    /// idle instance a nonzero hint says it took.
    fn unselect(&self, function: &str, lease: &Lease) {
        if lease.hint() > 0 {
            self.release(function, lease.worker(), Outcome::Completed);
        }
    }

    /// `worker` evicted an idle instance of `function`; true if the balancer
    /// dropped state for it.
    fn sandbox_destroyed(&self, _function: &str, _worker: &Worker) -> bool {
        false
    }

    /// A new worker set was published (called after every add or remove).
    fn workers_changed(&self, _workers: &WorkerSet) {}

    /// The idle instances it knows of, for a balancer that keeps them
    /// (pull-based and those built on it). Such a balancer leaves a nonzero
    /// hint on a lease that took one.
    fn idle_instances(&self) -> Option<&IdleQueues> {
        None
    }

    /// Whether the balancer learns from answers: only then are calls timed
    /// and the worker's answer headers read for `observe`.
    fn learns(&self) -> bool {
        false
    }

    /// A call for `function` on the worker of `lease` was answered in full
    /// (before `release`).
    fn observe(&self, _function: &str, _lease: &Lease, _answer: Answer) {}
}
