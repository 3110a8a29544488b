//! Random: a worker drawn uniformly.

use super::Balancer;
use crate::worker::{Lease, WorkerSet};

pub struct Random;

impl Balancer for Random {
    fn select(&self, workers: &WorkerSet, _function: &str) -> Lease {
        let all = workers.as_slice();
        Lease::new(&all[fastrand::usize(..all.len())])
    }
}
