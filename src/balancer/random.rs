//! Random: a worker drawn uniformly (among the available ones: healthy, not full).

use super::strategy::Balancer;
use crate::worker::{Lease, WorkerSet};

pub(crate) struct Random;

impl Balancer for Random {
    fn select(&self, workers: &WorkerSet, _function: &str) -> Lease {
        let all = workers.as_slice();
        // A few draws find an available worker unless most are ejected or full.
        for _ in 0..4 {
            let w = &all[fastrand::usize(..all.len())];
            if w.is_available() {
                return Lease::new(w);
            }
        }
        Lease::new(super::least_connections::least_loaded(all))
    }
}
