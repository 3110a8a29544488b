//! One function's queue of workers holding warm idle instances of it: a
//! chain of segments of slots. A slot is one `AtomicU64` packing a worker
//! id (high 40 bits) and how many idle instances of the function that
//! worker holds (low 24 bits); 0 is an empty slot (worker ids start at 1).
//! Every change to a slot is a single compare-and-swap.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

use crate::worker::{Worker, WorkerId, WorkerSet};

#[cfg(test)]
/// How many queues exist (freed ones are subtracted when freed).
pub(super) static LIVE_QUEUES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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

pub(super) struct Segment {
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
pub(super) const INLINE_NAME: usize = 32;

/// Two cache lines: hash, name and recency in the first with the first
/// slots, the rest of the head segment in the second.
#[repr(align(64))]
pub(super) struct FunctionQueue {
    pub(super) hash: u64,
    name: Name,
    /// The table's clock when the function was last pushed or taken.
    pub(super) last_used: AtomicU64,
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

    fn as_str(&self) -> &str {
        match self {
            // The bytes came from a `&str`, cut at its length.
            Name::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or(""),
            Name::Heap(own) => own,
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
    pub(super) fn new(hash: u64, function: &str, now: u64) -> FunctionQueue {
        #[cfg(test)]
        LIVE_QUEUES.fetch_add(1, Ordering::Relaxed);
        FunctionQueue { hash, name: Name::new(function), last_used: AtomicU64::new(now), head: Segment::new() }
    }

    pub(super) fn is(&self, hash: u64, function: &str) -> bool {
        self.hash == hash && self.name.is(function)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots().all(|s| count_of(s.load(Ordering::Acquire)) == 0)
    }

    fn segments(&self) -> impl Iterator<Item = &Segment> {
        let mut next: *const Segment = &self.head;
        std::iter::from_fn(move || {
            // SAFETY: segments are published with Release after being fully
            // built and are freed only with their queue (`Drop`, `&mut`).
            let seg = unsafe { next.as_ref()? };
            next = seg.next.load(Ordering::Acquire);
            Some(seg)
        })
    }

    fn slots(&self) -> impl Iterator<Item = &AtomicU64> {
        self.segments().flat_map(|s| s.slots.iter())
    }

    pub(super) fn push(&self, id: WorkerId) {
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

    /// Takes one entry of the worker in `workers` that `cost` rates lowest,
    /// if that is below `limit`; clears entries of workers no longer in the
    /// set.
    pub(super) fn take_cheapest<'a>(
        &self,
        workers: &'a WorkerSet,
        mut cost: impl FnMut(&Arc<Worker>) -> u64,
        limit: u64,
    ) -> Option<&'a Arc<Worker>> {
        for _ in 0..TAKE_RETRIES {
            let mut best: Option<(&AtomicU64, u64, &Arc<Worker>, u64)> = None;
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
                let c = cost(w);
                if c < limit && best.map_or(true, |(_, _, _, b)| c < b) {
                    best = Some((slot, v, w, c));
                }
            }
            let (slot, v, w, _) = best?;
            if slot.compare_exchange(v, v - 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Some(w);
            }
        }
        None
    }

    pub(super) fn remove_one(&self, id: WorkerId) -> bool {
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

    /// Drops every entry of workers not in `workers`.
    pub(super) fn retain(&self, workers: &WorkerSet) {
        for slot in self.slots() {
            let v = slot.load(Ordering::Acquire);
            if count_of(v) > 0 && workers.get(worker_of(v)).is_none() {
                let _ = slot.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }

    /// The workers in `workers` holding instances, each with its count,
    /// by id. Allocates: for the admin directory.
    pub(super) fn counts(&self, workers: &WorkerSet) -> Vec<(WorkerId, u64)> {
        let mut counts: Vec<(WorkerId, u64)> = Vec::new();
        for v in self.slots().map(|s| s.load(Ordering::Acquire)) {
            let (id, count) = (worker_of(v), count_of(v));
            if count == 0 || workers.get(id).is_none() {
                continue;
            }
            match counts.iter_mut().find(|(w, _)| *w == id) {
                Some((_, n)) => *n += count,
                None => counts.push((id, count)),
            }
        }
        counts.sort_unstable();
        counts
    }

    /// The function's name.
    pub(super) fn name(&self) -> &str {
        self.name.as_str()
    }

    /// Whether this is the queue of `function`.
    pub(super) fn is_named(&self, function: &str) -> bool {
        self.name.is(function)
    }

    pub(super) fn count(&self, id: WorkerId) -> u64 {
        self.slots().map(|s| s.load(Ordering::Acquire)).filter(|&v| worker_of(v) == id).map(count_of).sum()
    }
}

impl Drop for FunctionQueue {
    fn drop(&mut self) {
        #[cfg(test)]
        LIVE_QUEUES.fetch_sub(1, Ordering::Relaxed);
        let mut next = *self.head.next.get_mut();
        while !next.is_null() {
            // SAFETY: `&mut self`: the queue is unreachable; every segment
            // came from `Box::into_raw` and is freed once.
            let mut seg = unsafe { Box::from_raw(next) };
            next = *seg.next.get_mut();
        }
    }
}
