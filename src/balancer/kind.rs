//! The balancers by name, as the config file and `/status` call them, and
//! how each is built.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::hashing_bounded::HashingBounded;
use super::idle_queues::DEFAULT_MAX_FUNCTIONS;
use super::least_connections::LeastConnections;
use super::predictive::{Predictive, DEFAULT_WORKER_CORES};
use super::pull_based::PullBased;
use super::pull_hashing::PullHashing;
use super::random::Random;
use super::strategy::Balancer;

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
        self.build_with(DEFAULT_MAX_FUNCTIONS, DEFAULT_WORKER_CORES)
    }

    /// The balancer, with the warm-instance table holding `max_functions`
    /// (pull-based, pull-hashing, predictive) and predictive told that
    /// workers run calls on `worker_cores` cores.
    pub(crate) fn build_with(self, max_functions: usize, worker_cores: u64) -> Arc<dyn Balancer> {
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
