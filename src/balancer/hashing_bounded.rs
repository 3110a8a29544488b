//! Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam,
//! SODA 2018): a function's requests go to the first worker clockwise from
//! the function's point on a ring whose load stays within 1.25 times the mean.

use std::sync::Arc;

use ahash::RandomState;
use arc_swap::ArcSwap;

use super::least_connections::least_loaded;
use super::strategy::Balancer;
use crate::worker::{Lease, Worker, WorkerSet};

/// Points per worker on the ring. The Go original's 10 leave some workers
/// with twice the arc of others; 160 keeps arcs within a few percent.
pub(crate) const VIRTUAL_NODES: u32 = 160;

/// Load bound: a worker takes a request while `load + 1 <= ceil(c * (total + 1) / n)`,
/// with c = LOAD_FACTOR_NUM / LOAD_FACTOR_DEN = 1.25.
const LOAD_FACTOR_NUM: usize = 5;
const LOAD_FACTOR_DEN: usize = 4;

/// Fixed seeds: every core and every restart builds the same ring.
const SEEDS: [u64; 4] = [0x6869_6b75_5f72_696e, 0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9, 0x94d0_49bb_1331_11eb];

pub(crate) struct HashingBounded {
    ring: ArcSwap<Ring>,
}

/// Virtual nodes sorted by hash, each naming an index into `workers`.
#[derive(Default)]
struct Ring {
    generation: u64,
    points: Vec<(u64, u32)>,
    /// `starts[b]`: the first point whose hash has top bits >= b, so finding
    /// a key's successor is a lookup and a short scan, not a binary search
    /// over the whole ring.
    starts: Vec<u32>,
    shift: u32,
    workers: Vec<Arc<Worker>>,
}

fn hasher() -> RandomState {
    RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3])
}

impl Ring {
    fn build(set: &WorkerSet) -> Ring {
        let hasher = hasher();
        let workers: Vec<Arc<Worker>> = set.iter().cloned().collect();
        let mut points = Vec::with_capacity(workers.len() * VIRTUAL_NODES as usize);
        for (i, w) in workers.iter().enumerate() {
            for v in 0..VIRTUAL_NODES {
                points.push((hasher.hash_one((w.url().as_str(), v)), i as u32));
            }
        }
        points.sort_unstable();
        let buckets = points.len().max(1).next_power_of_two();
        let shift = 64 - buckets.trailing_zeros();
        let mut starts = Vec::with_capacity(buckets);
        let mut p = 0;
        for b in 0..buckets as u64 {
            while p < points.len() && bucket(points[p].0, shift) < b {
                p += 1;
            }
            starts.push(p as u32);
        }
        Ring { generation: set.generation(), points, starts, shift, workers }
    }

    /// The index of the first point at or after `key` (may be `points.len()`).
    fn successor(&self, key: u64) -> usize {
        let mut i = self.starts[bucket(key, self.shift) as usize] as usize;
        while i < self.points.len() && self.points[i].0 < key {
            i += 1;
        }
        i
    }
}

fn bucket(hash: u64, shift: u32) -> u64 {
    hash.checked_shr(shift).unwrap_or(0)
}

impl HashingBounded {
    pub(crate) fn new() -> HashingBounded {
        HashingBounded { ring: ArcSwap::from_pointee(Ring::default()) }
    }
}

impl Default for HashingBounded {
    fn default() -> Self {
        Self::new()
    }
}

impl Balancer for HashingBounded {
    fn select(&self, workers: &WorkerSet, function: &str) -> Lease {
        let ring = self.ring.load();
        if ring.points.is_empty() {
            return Lease::new(least_loaded(workers.as_slice()));
        }
        let n = ring.workers.len();
        let total = ring.workers[0].total_in_flight();
        let limit = (LOAD_FACTOR_NUM * (total + 1)).div_ceil(LOAD_FACTOR_DEN * n);
        let key = hasher().hash_one(function);
        let start = ring.successor(key);
        debug_assert_eq!(start, ring.points.partition_point(|&(h, _)| h < key));
        let (before, after) = ring.points.split_at(start);
        for &(_, i) in after.iter().chain(before) {
            let w = &ring.workers[i as usize];
            // load + 1 <= limit
            if w.in_flight() < limit && w.is_available() {
                return Lease::new(w);
            }
        }
        // Only reachable when removed workers still hold part of the total.
        Lease::new(least_loaded(&ring.workers))
    }

    fn workers_changed(&self, workers: &WorkerSet) {
        let ring = Arc::new(Ring::build(workers));
        // Publish unless a newer set's ring got there first.
        self.ring.rcu(
            |current| {
                if current.generation > ring.generation {
                    Arc::clone(current)
                } else {
                    Arc::clone(&ring)
                }
            },
        );
    }
}
