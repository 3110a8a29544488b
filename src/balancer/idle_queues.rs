//! `IdleQueues`: which workers hold warm idle instances of which function,
//! shared by every core without locks.
//!
//! A fixed-size open-addressing table maps a function name to its queue.
//! Entries are only ever inserted (a function, once seen, keeps its queue),
//! and nothing is freed before the whole structure is dropped, so readers
//! need no reclamation scheme: a pointer, once published, stays valid.
//!
//! A queue is a chain of segments of slots. A slot is one `AtomicU64` packing
//! a worker id (high 40 bits) and how many idle instances of the function
//! that worker holds (low 24 bits); 0 is an empty slot (worker ids start at
//! 1). Every change to a slot is a single compare-and-swap.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use ahash::RandomState;

use crate::worker::{Worker, WorkerId, WorkerSet};

/// Functions tracked by default; past it, new functions are scheduled by the
/// fallback (least connections) and use no memory.
pub const DEFAULT_MAX_FUNCTIONS: usize = 1 << 17;

const SEGMENT_SLOTS: usize = 8;
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Retries of a contended take before giving up on the queue (the caller
/// falls back); each retry means another core made progress.
const TAKE_RETRIES: usize = 16;

fn pack(id: WorkerId, count: u64) -> u64 {
    debug_assert!(id > 0 && id < 1 << (64 - COUNT_BITS) && count <= COUNT_MASK);
    (id << COUNT_BITS) | count
}

fn worker_of(slot: u64) -> WorkerId {
    slot >> COUNT_BITS
}

fn count_of(slot: u64) -> u64 {
    slot & COUNT_MASK
}

struct Segment {
    slots: [AtomicU64; SEGMENT_SLOTS],
    next: AtomicPtr<Segment>,
}

impl Segment {
    fn new() -> Segment {
        Segment { slots: Default::default(), next: AtomicPtr::new(ptr::null_mut()) }
    }
}

/// Names up to this long are kept inside the queue, so a lookup touches no
/// memory but the queue's own (two adjacent cache lines).
const INLINE_NAME: usize = 40;

struct FunctionQueue {
    hash: u64,
    name: Name,
    head: Segment,
}

enum Name {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Heap(Box<str>),
}

impl Name {
    fn new(name: &str) -> Name {
        match name.len() {
            len @ 0..=INLINE_NAME => {
                let mut bytes = [0; INLINE_NAME];
                bytes[..len].copy_from_slice(name.as_bytes());
                Name::Inline { len: len as u8, bytes }
            }
            _ => Name::Heap(name.into()),
        }
    }

    fn is(&self, name: &str) -> bool {
        match self {
            Name::Inline { len, bytes } => &bytes[..usize::from(*len)] == name.as_bytes(),
            Name::Heap(own) => &**own == name,
        }
    }
}

impl FunctionQueue {
    fn segments(&self) -> impl Iterator<Item = &Segment> {
        let mut next: *const Segment = &self.head;
        std::iter::from_fn(move || {
            // SAFETY: segments are published with Release after being fully
            // built and are freed only by `IdleQueues::drop`, which has `&mut`.
            let seg = unsafe { next.as_ref()? };
            next = seg.next.load(Ordering::Acquire);
            Some(seg)
        })
    }

    fn slots(&self) -> impl Iterator<Item = &AtomicU64> {
        self.segments().flat_map(|s| s.slots.iter())
    }

    fn push(&self, id: WorkerId) {
        loop {
            // The worker's own slot first, so one worker uses one slot.
            for slot in self.slots() {
                let mut v = slot.load(Ordering::Relaxed);
                while worker_of(v) == id && count_of(v) < COUNT_MASK {
                    match slot.compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Relaxed) {
                        Ok(_) => return,
                        Err(now) => v = now,
                    }
                }
            }
            // Then any empty slot (a count of 0 frees the slot for anyone).
            for slot in self.slots() {
                let mut v = slot.load(Ordering::Relaxed);
                while count_of(v) == 0 {
                    match slot.compare_exchange_weak(v, pack(id, 1), Ordering::AcqRel, Ordering::Relaxed) {
                        Ok(_) => return,
                        Err(now) => v = now,
                    }
                }
            }
            // All full: append a segment holding the entry, then done.
            let last = self.segments().last().expect("a queue has a head segment");
            let seg = Box::new(Segment::new());
            seg.slots[0].store(pack(id, 1), Ordering::Relaxed);
            let seg = Box::into_raw(seg);
            match last.next.compare_exchange(ptr::null_mut(), seg, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                // Another core appended first: retry, its segment has room.
                // SAFETY: `seg` was never published.
                Err(_) => drop(unsafe { Box::from_raw(seg) }),
            }
        }
    }

    /// Takes one entry of the worker in `workers` with the fewest requests
    /// in flight; clears entries of workers no longer in the set.
    fn take_least_loaded<'a>(&self, workers: &'a WorkerSet) -> Option<&'a Arc<Worker>> {
        for _ in 0..TAKE_RETRIES {
            let mut best: Option<(&AtomicU64, u64, &Arc<Worker>, usize)> = None;
            for slot in self.slots() {
                let v = slot.load(Ordering::Acquire);
                if count_of(v) == 0 {
                    continue;
                }
                let Some(w) = workers.get(worker_of(v)) else {
                    // A removed worker's entry: drop it (losing the race is fine).
                    let _ = slot.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
                    continue;
                };
                let load = w.in_flight();
                if best.map_or(true, |(_, _, _, l)| load < l) {
                    best = Some((slot, v, w, load));
                }
            }
            let (slot, v, w, _) = best?;
            if slot.compare_exchange(v, v - 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Some(w);
            }
        }
        None
    }

    fn remove_one(&self, id: WorkerId) -> bool {
        for slot in self.slots() {
            let mut v = slot.load(Ordering::Relaxed);
            while worker_of(v) == id && count_of(v) > 0 {
                match slot.compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return true,
                    Err(now) => v = now,
                }
            }
        }
        false
    }

    fn count(&self, id: WorkerId) -> u64 {
        self.slots().map(|s| s.load(Ordering::Acquire)).filter(|&v| worker_of(v) == id).map(count_of).sum()
    }
}

pub struct IdleQueues {
    table: Box<[AtomicPtr<FunctionQueue>]>,
    hasher: RandomState,
    functions: AtomicUsize,
    max_functions: usize,
}

impl IdleQueues {
    pub fn new(max_functions: usize) -> IdleQueues {
        // At most half full, so probe sequences stay short.
        let size = (max_functions.max(1) * 2).next_power_of_two();
        IdleQueues {
            table: (0..size).map(|_| AtomicPtr::new(ptr::null_mut())).collect(),
            hasher: RandomState::with_seeds(1, 2, 3, 4),
            functions: AtomicUsize::new(0),
            max_functions,
        }
    }

    /// The slot indexes to probe for a hash, in order.
    fn probe(&self, hash: u64) -> impl Iterator<Item = &AtomicPtr<FunctionQueue>> {
        let mask = self.table.len() - 1;
        let start = hash as usize & mask;
        (0..self.table.len()).map(move |i| &self.table[(start + i) & mask])
    }

    fn get(&self, function: &str) -> Option<&FunctionQueue> {
        let hash = self.hasher.hash_one(function);
        for entry in self.probe(hash) {
            // SAFETY: see `FunctionQueue::segments`; queues live as long as `self`.
            let q = unsafe { entry.load(Ordering::Acquire).as_ref()? };
            if q.hash == hash && q.name.is(function) {
                return Some(q);
            }
        }
        None
    }

    fn get_or_insert(&self, function: &str) -> Option<&FunctionQueue> {
        let hash = self.hasher.hash_one(function);
        let mut fresh: *mut FunctionQueue = ptr::null_mut();
        let mut found = None;
        for entry in self.probe(hash) {
            let mut current = entry.load(Ordering::Acquire);
            if current.is_null() {
                if fresh.is_null() {
                    if self.functions.fetch_add(1, Ordering::Relaxed) >= self.max_functions {
                        self.functions.fetch_sub(1, Ordering::Relaxed);
                        return None;
                    }
                    let q = FunctionQueue { hash, name: Name::new(function), head: Segment::new() };
                    fresh = Box::into_raw(Box::new(q));
                }
                match entry.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
                    // SAFETY: just published; lives as long as `self`.
                    Ok(_) => return Some(unsafe { &*fresh }),
                    Err(winner) => current = winner,
                }
            }
            // SAFETY: non-null entries are published queues.
            let q = unsafe { &*current };
            if q.hash == hash && q.name.is(function) {
                found = Some(q);
                break;
            }
        }
        if !fresh.is_null() {
            // Lost the race to insert the same function: ours was never published.
            self.functions.fetch_sub(1, Ordering::Relaxed);
            drop(unsafe { Box::from_raw(fresh) });
        }
        found
    }

    /// Records one warm idle instance of `function` on `worker`. Returns
    /// false if the table is full and the function is not tracked.
    pub fn push(&self, function: &str, worker: WorkerId) -> bool {
        match self.get_or_insert(function) {
            Some(q) => {
                q.push(worker);
                true
            }
            None => false,
        }
    }

    /// Consumes an idle instance of `function` on the least-loaded worker of
    /// `workers` holding one. Never allocates.
    pub fn take_least_loaded<'a>(&self, function: &str, workers: &'a WorkerSet) -> Option<&'a Arc<Worker>> {
        self.get(function)?.take_least_loaded(workers)
    }

    /// Drops one idle instance of `function` on `worker`; false if there was none.
    pub fn remove_one(&self, function: &str, worker: WorkerId) -> bool {
        self.get(function).is_some_and(|q| q.remove_one(worker))
    }

    /// Idle instances of `function` recorded on `worker`.
    pub fn count(&self, function: &str, worker: WorkerId) -> u64 {
        self.get(function).map_or(0, |q| q.count(worker))
    }

    /// Drops every entry of workers not in `workers`.
    pub fn retain(&self, workers: &WorkerSet) {
        for entry in self.table.iter() {
            // SAFETY: as in `get`.
            let Some(q) = (unsafe { entry.load(Ordering::Acquire).as_ref() }) else { continue };
            for slot in q.slots() {
                let v = slot.load(Ordering::Acquire);
                if count_of(v) > 0 && workers.get(worker_of(v)).is_none() {
                    let _ = slot.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        }
    }

    /// Functions with a queue.
    pub fn functions(&self) -> usize {
        self.functions.load(Ordering::Relaxed)
    }
}

impl Drop for IdleQueues {
    fn drop(&mut self) {
        for entry in self.table.iter_mut() {
            let q = *entry.get_mut();
            if q.is_null() {
                continue;
            }
            // SAFETY: `&mut self`: no other reference exists; every pointer
            // here came from `Box::into_raw` and is freed once.
            let mut q = unsafe { Box::from_raw(q) };
            let mut next = *q.head.next.get_mut();
            while !next.is_null() {
                let mut seg = unsafe { Box::from_raw(next) };
                next = *seg.next.get_mut();
            }
        }
    }
}

// SAFETY: all shared state is atomics and immutable data behind published pointers.
unsafe impl Send for IdleQueues {}
unsafe impl Sync for IdleQueues {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::tests::set_of;
    use crate::worker::Lease;

    #[test]
    fn takes_the_least_loaded_holder_and_consumes_it() {
        let set = set_of(3);
        let q = IdleQueues::new(16);
        assert!(q.take_least_loaded("f", &set).is_none());
        q.push("f", 1);
        q.push("f", 2);
        let _busy = Lease::new(&set.as_slice()[0]);
        assert_eq!(q.take_least_loaded("f", &set).unwrap().id(), 2);
        assert_eq!(q.take_least_loaded("f", &set).unwrap().id(), 1);
        assert!(q.take_least_loaded("f", &set).is_none());
        assert!(q.take_least_loaded("g", &set).is_none());
    }

    #[test]
    fn counts_instances_and_grows_past_a_segment() {
        let set = set_of(20);
        let q = IdleQueues::new(16);
        for id in 1..=20 {
            q.push("f", id);
            q.push("f", id);
        }
        assert_eq!(q.count("f", 7), 2);
        assert!(q.remove_one("f", 7));
        assert!(q.remove_one("f", 7));
        assert!(!q.remove_one("f", 7));
        let mut taken = 0;
        while q.take_least_loaded("f", &set).is_some() {
            taken += 1;
        }
        assert_eq!(taken, 38);
    }

    #[test]
    fn forgets_removed_workers() {
        let set = set_of(3);
        let q = IdleQueues::new(16);
        q.push("f", 3);
        q.push("g", 3);
        let smaller = WorkerSet::new(2, set.as_slice()[..2].to_vec());
        assert!(q.take_least_loaded("f", &smaller).is_none());
        q.retain(&smaller);
        assert_eq!(q.count("g", 3), 0);
    }

    #[test]
    fn long_and_short_names_are_told_apart() {
        let set = set_of(2);
        let q = IdleQueues::new(16);
        let long = "f".repeat(INLINE_NAME + 1);
        q.push(&long, 1);
        q.push(&long[..INLINE_NAME], 2);
        assert_eq!(q.take_least_loaded(&long, &set).unwrap().id(), 1);
        assert_eq!(q.take_least_loaded(&long[..INLINE_NAME], &set).unwrap().id(), 2);
        assert!(q.take_least_loaded("", &set).is_none());
    }

    #[test]
    fn stops_tracking_past_the_limit() {
        let q = IdleQueues::new(2);
        assert!(q.push("a", 1) && q.push("b", 1) && q.push("a", 1));
        assert!(!q.push("c", 1));
        assert_eq!(q.functions(), 2);
    }

    #[test]
    fn concurrent_pushes_and_takes_balance() {
        let set = Arc::new(set_of(4));
        let q = Arc::new(IdleQueues::new(64));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (set, q) = (Arc::clone(&set), Arc::clone(&q));
                std::thread::spawn(move || {
                    let mut taken = 0;
                    for i in 0..5000u64 {
                        let f = ["a", "b", "c"][(i % 3) as usize];
                        q.push(f, 1 + (i + t) % 4);
                        if q.take_least_loaded(f, &set).is_some() {
                            taken += 1;
                        }
                    }
                    taken
                })
            })
            .collect();
        let taken: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        let left: u64 = ["a", "b", "c"].iter().flat_map(|f| (1..=4).map(|w| q.count(f, w))).sum();
        assert_eq!(taken + left, 4 * 5000);
    }
}
