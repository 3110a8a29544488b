//! Least connections: the worker with the fewest requests in flight, ties
//! broken uniformly at random.

use std::sync::Arc;

use super::strategy::Balancer;
use crate::worker::{Lease, Worker, WorkerSet};

pub(crate) struct LeastConnections;

impl Balancer for LeastConnections {
    fn select(&self, workers: &WorkerSet, _function: &str) -> Lease {
        Lease::new(least_loaded(workers.as_slice()))
    }
}

/// The least-loaded worker of a non-empty slice (an ejected one only if
/// all are); among equals, each is equally likely (reservoir sampling, one
/// pass, no allocation).
pub(crate) fn least_loaded(workers: &[Arc<Worker>]) -> &Arc<Worker> {
    let mut best = &workers[0];
    let mut best_load = best.load();
    let mut ties = 1u32;
    for w in &workers[1..] {
        let load = w.load();
        if load < best_load {
            (best, best_load, ties) = (w, load, 1);
        } else if load == best_load {
            ties += 1;
            if fastrand::u32(..ties) == 0 {
                best = w;
            }
        }
    }
    best
}
