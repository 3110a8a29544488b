//! Scheduling strategies: one file per balancer behind the `Balancer` trait.
//!
//! A balancer is shared by every core (`Send + Sync`) and must decide without
//! locks or allocation: it reads the worker-set snapshot it is given, atomic
//! counters, and its own lock-free state.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::worker::{Lease, Worker, WorkerSet};

mod hashing_bounded;
mod idle_queues;
mod least_connections;
mod predictive;
mod pull_based;
mod pull_hashing;
mod random;

pub use hashing_bounded::HashingBounded;
pub use idle_queues::{hold_epoch, repin_epoch, IdleQueues, DEFAULT_MAX_FUNCTIONS};
pub use least_connections::LeastConnections;
pub use predictive::{Predictive, DEFAULT_WORKER_CORES};
pub use pull_based::PullBased;
pub use pull_hashing::PullHashing;
pub use random::Random;

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

/// The balancer names: the Go original's four, then hiku's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalancerKind {
    PullBased,
    HashingBounded,
    LeastConnections,
    Random,
    /// Not in the Go original: pull-based with a consistent-hashing fallback.
    PullHashing,
    /// Not in the Go original: the worker where the call is predicted to finish first.
    Predictive,
}

impl BalancerKind {
    pub const ALL: [BalancerKind; 6] = [
        BalancerKind::PullBased,
        BalancerKind::HashingBounded,
        BalancerKind::LeastConnections,
        BalancerKind::Random,
        BalancerKind::PullHashing,
        BalancerKind::Predictive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            BalancerKind::PullBased => "pull-based",
            BalancerKind::HashingBounded => "hashing-bounded",
            BalancerKind::LeastConnections => "least-connections",
            BalancerKind::Random => "random",
            BalancerKind::PullHashing => "pull-hashing",
            BalancerKind::Predictive => "predictive",
        }
    }

    pub fn build(self) -> Arc<dyn Balancer> {
        self.build_with(idle_queues::DEFAULT_MAX_FUNCTIONS, DEFAULT_WORKER_CORES)
    }

    /// The balancer, with the warm-instance table holding `max_functions`
    /// (pull-based, pull-hashing, predictive) and predictive told that
    /// workers run calls on `worker_cores` cores.
    pub fn build_with(self, max_functions: usize, worker_cores: u64) -> Arc<dyn Balancer> {
        match self {
            BalancerKind::PullBased => Arc::new(PullBased::with_max_functions(max_functions)),
            BalancerKind::HashingBounded => Arc::new(HashingBounded::new()),
            BalancerKind::LeastConnections => Arc::new(LeastConnections),
            BalancerKind::Random => Arc::new(Random),
            BalancerKind::PullHashing => Arc::new(PullHashing::with_max_functions(max_functions)),
            BalancerKind::Predictive => Arc::new(Predictive::new(max_functions, worker_cores)),
        }
    }
}

impl fmt::Display for BalancerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BalancerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        BalancerKind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<&str> = BalancerKind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown \"balancer\" {s:?}; valid names: {}", names.join(", "))
        })
    }
}

#[cfg(test)]
mod tests;
