//! `IdleQueues`: which workers hold warm idle instances of which function,
//! shared by every core without locks.
//!
//! A fixed table of buckets maps a function name to its queue: a function
//! lives in one of the [`WAYS`] places of the bucket its hash picks (a
//! bucket is one cache line, with a tag of each place's hash, so a lookup
//! follows one pointer). A new function takes a free place, or the
//! place of the bucket's least recently used function, whose queue is
//! dropped: at worst one extra cold start for a function nobody called for
//! a long time, and the table's memory stays bounded however many names it
//! sees. A function whose last entry a worker evicted (destroySandbox) is
//! dropped too. Queues are freed through crossbeam-epoch, once no core can
//! still be reading them.
//!
//! Its rooms: the table here; each function's queue ([`queue`]); the
//! epoch pin the shards hold ([`pinning`]).

mod pinning;
mod queue;

pub use pinning::{hold_epoch, repin_epoch};
use queue::FunctionQueue;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use ahash::RandomState;
use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned, Shared};

use crate::worker::{Worker, WorkerId, WorkerSet};

/// Functions tracked by default; past it, a new function takes the place of
/// a least recently used one.
pub(crate) const DEFAULT_MAX_FUNCTIONS: usize = 1 << 17;
/// Places per bucket: 4 pointers and their tags, one cache line.
pub(crate) const WAYS: usize = 4;

/// One bucket's places: the queues, and a tag of each one's hash beside it,
/// so a lookup follows only the pointer whose tag matches (one cache line).
#[repr(align(64))]
#[derive(Default)]
struct Bucket {
    ways: [Atomic<FunctionQueue>; WAYS],
    /// Set after the queue is published. A stale tag (a lookup between the
    /// two stores, or two inserts in one place storing out of order) only
    /// makes a lookup miss, or follow a pointer whose name then does not
    /// match: at worst a function's warm entries go unseen (cold starts)
    /// until its place is taken again; memory safety rests on the pointer.
    tags: [std::sync::atomic::AtomicU32; WAYS],
}

/// The tag of a hash: bits the bucket index does not use.
fn tag_of(hash: u64) -> u32 {
    hash as u32
}

pub struct IdleQueues {
    buckets: Box<[Bucket]>,
    hasher: RandomState,
    functions: AtomicUsize,
    /// Moves on with every new function: recency is counted in it, so a
    /// use only writes a queue's `last_used` when a new function came since.
    clock: AtomicU64,
}

impl IdleQueues {
    /// A table for `max_functions` functions (places for as many, in a power
    /// of two of buckets; with two buckets to choose from, a function
    /// seldom finds both full before the table is).
    pub(crate) fn new(max_functions: usize) -> IdleQueues {
        let buckets = max_functions.max(1).div_ceil(WAYS).next_power_of_two();
        IdleQueues {
            buckets: (0..buckets).map(|_| Bucket::default()).collect(),
            hasher: RandomState::with_seeds(1, 2, 3, 4),
            functions: AtomicUsize::new(0),
            clock: AtomicU64::new(0),
        }
    }

    /// Functions the table holds at most.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    /// The two buckets a function may live in (two choices keep buckets
    /// from filling while the table has room): from the hash's high bits,
    /// which the tag does not use.
    fn buckets(&self, hash: u64) -> [&Bucket; 2] {
        let mask = self.buckets.len() - 1;
        let high = hash >> 32;
        let second = (high ^ (high >> 17) ^ 0x9e37_79b9).wrapping_mul(0x85eb_ca6b) >> 7;
        [&self.buckets[high as usize & mask], &self.buckets[second as usize & mask]]
    }

    /// The queue of `function`, if it has one, marked as used now.
    fn get<'g>(&'g self, function: &str, guard: &'g Guard) -> Option<&'g FunctionQueue> {
        let hash = self.hasher.hash_one(function);
        let (_, _, q) = find(self.buckets(hash), hash, function, guard)?;
        // SAFETY: non-null (found), and protected by the guard.
        let q = unsafe { q.deref() };
        self.touch(q);
        Some(q)
    }

    fn touch(&self, q: &FunctionQueue) {
        let now = self.clock.load(Ordering::Relaxed);
        if q.last_used.load(Ordering::Relaxed) != now {
            q.last_used.store(now, Ordering::Relaxed);
        }
    }

    /// The queue of `function`, made if it has none (in a free place of its
    /// bucket, or in the place of the bucket's least recently used one).
    fn get_or_insert<'g>(&'g self, function: &str, guard: &'g Guard) -> &'g FunctionQueue {
        let hash = self.hasher.hash_one(function);
        let buckets = self.buckets(hash);
        let mut fresh: Option<Owned<FunctionQueue>> = None;
        loop {
            if let Some((_, _, q)) = find(buckets, hash, function, guard) {
                // SAFETY: non-null, protected by the guard.
                let q = unsafe { q.deref() };
                self.touch(q);
                return q;
            }
            let (bucket, i, current) = place_for_new(buckets, guard);
            let way = &bucket.ways[i];
            let new = fresh.take().unwrap_or_else(|| {
                let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
                Owned::new(FunctionQueue::new(hash, function, now))
            });
            // Counted before it is published, so a drop racing with it can
            // never take the count below zero.
            if current.is_null() {
                self.functions.fetch_add(1, Ordering::Relaxed);
            }
            match way.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire, guard) {
                Ok(ours) => {
                    bucket.tags[i].store(tag_of(hash), Ordering::Release);
                    if !current.is_null() {
                        // SAFETY: unlinked by this exchange; readers that
                        // still hold it are pinned, and it is freed after them.
                        unsafe { guard.defer_destroy(current) };
                    }
                    // Another core may have put the same function in another
                    // place meanwhile: the first place in the bucket wins.
                    match find(buckets, hash, function, guard) {
                        Some((_, _, first)) if first != ours => {
                            if way
                                .compare_exchange(ours, Shared::null(), Ordering::AcqRel, Ordering::Acquire, guard)
                                .is_ok()
                            {
                                self.functions.fetch_sub(1, Ordering::Relaxed);
                                // SAFETY: unlinked just now, as above.
                                unsafe { guard.defer_destroy(ours) };
                            }
                            // SAFETY: non-null, protected by the guard.
                            return unsafe { first.deref() };
                        }
                        // SAFETY: published by us, protected by the guard.
                        _ => return unsafe { ours.deref() },
                    }
                }
                // The place changed under us: look again.
                Err(e) => {
                    if current.is_null() {
                        self.functions.fetch_sub(1, Ordering::Relaxed);
                    }
                    fresh = Some(e.new);
                }
            }
        }
    }

    /// Records one warm idle instance of `function` on `worker`.
    pub(crate) fn push(&self, function: &str, worker: WorkerId) {
        let guard = epoch::pin();
        self.get_or_insert(function, &guard).push(worker);
    }

    /// Consumes an idle instance of `function` on the least-loaded worker of
    /// `workers` holding one (none on an ejected or full worker). Never
    /// allocates.
    pub(crate) fn take_least_loaded<'a>(&self, function: &str, workers: &'a WorkerSet) -> Option<&'a Arc<Worker>> {
        self.take_cheapest(function, workers, |w| w.available_load(), u64::MAX)
    }

    /// Consumes an idle instance of `function` on the worker of `workers`
    /// holding one that `cost` rates lowest, if that is below `limit`.
    /// Never allocates.
    pub(crate) fn take_cheapest<'a>(
        &self,
        function: &str,
        workers: &'a WorkerSet,
        cost: impl FnMut(&Arc<Worker>) -> u64,
        limit: u64,
    ) -> Option<&'a Arc<Worker>> {
        let guard = epoch::pin();
        self.get(function, &guard)?.take_cheapest(workers, cost, limit)
    }

    /// Drops one idle instance of `function` on `worker`; false if there was
    /// none. A function left with no instance anywhere is dropped (a push
    /// racing with that may be lost: at worst one cold start).
    pub(crate) fn remove_one(&self, function: &str, worker: WorkerId) -> bool {
        let guard = epoch::pin();
        let hash = self.hasher.hash_one(function);
        let Some((bucket, i, q)) = find(self.buckets(hash), hash, function, &guard) else { return false };
        let way = &bucket.ways[i];
        // SAFETY: non-null, protected by the guard.
        let queue = unsafe { q.deref() };
        let removed = queue.remove_one(worker);
        if removed
            && queue.is_empty()
            && way.compare_exchange(q, Shared::null(), Ordering::AcqRel, Ordering::Acquire, &guard).is_ok()
        {
            self.functions.fetch_sub(1, Ordering::Relaxed);
            // SAFETY: unlinked just now; freed after every pinned reader.
            unsafe { guard.defer_destroy(q) };
        }
        removed
    }

    /// Idle instances of `function` recorded on `worker`.
    pub fn count(&self, function: &str, worker: WorkerId) -> u64 {
        let guard = epoch::pin();
        self.get(function, &guard).map_or(0, |q| q.count(worker))
    }

    /// Whether `function` has a queue.
    pub fn tracks(&self, function: &str) -> bool {
        let guard = epoch::pin();
        let hash = self.hasher.hash_one(function);
        find(self.buckets(hash), hash, function, &guard).is_some()
    }

    /// Drops every entry of workers not in `workers`.
    pub(crate) fn retain(&self, workers: &WorkerSet) {
        let guard = epoch::pin();
        for way in self.buckets.iter().flat_map(|b| b.ways.iter()) {
            // SAFETY: protected by the guard.
            let Some(q) = (unsafe { way.load(Ordering::Acquire, &guard).as_ref() }) else { continue };
            q.retain(workers);
        }
    }

    /// Every function with idle instances (or only `function`), each with
    /// its workers in `workers` and their counts. Walks the whole table and
    /// allocates: for the admin directory, not the request path.
    pub(crate) fn entries(&self, workers: &WorkerSet, function: Option<&str>) -> Vec<(String, Vec<(WorkerId, u64)>)> {
        let guard = epoch::pin();
        let mut entries = Vec::new();
        for way in self.buckets.iter().flat_map(|b| b.ways.iter()) {
            // SAFETY: protected by the guard.
            let Some(q) = (unsafe { way.load(Ordering::Acquire, &guard).as_ref() }) else { continue };
            if function.is_some_and(|f| !q.is_named(f)) {
                continue;
            }
            let counts = q.counts(workers);
            if !counts.is_empty() {
                entries.push((q.name().to_string(), counts));
            }
        }
        entries.sort_unstable();
        entries
    }

    /// Functions with a queue.
    pub fn functions(&self) -> usize {
        self.functions.load(Ordering::Relaxed)
    }
}

/// The bucket, place and queue of `function` in `buckets`: the first, if a
/// race left two. Follows only pointers whose tag matches.
fn find<'g>(
    buckets: [&'g Bucket; 2],
    hash: u64,
    function: &str,
    guard: &'g Guard,
) -> Option<(&'g Bucket, usize, Shared<'g, FunctionQueue>)> {
    let tag = tag_of(hash);
    buckets.into_iter().find_map(|bucket| {
        (0..WAYS).find_map(|i| {
            if bucket.tags[i].load(Ordering::Acquire) != tag {
                return None;
            }
            let q = bucket.ways[i].load(Ordering::Acquire, guard);
            // SAFETY: protected by the guard.
            unsafe { q.as_ref() }.filter(|r| r.is(hash, function)).map(|_| (bucket, i, q))
        })
    })
}

/// Where a new function goes: a free place of its first bucket, else of
/// its second, else that of the least recently used function of the two;
/// with what is there now.
fn place_for_new<'b, 'g>(buckets: [&'b Bucket; 2], guard: &'g Guard) -> (&'b Bucket, usize, Shared<'g, FunctionQueue>) {
    let mut oldest: Option<(&Bucket, usize, Shared<FunctionQueue>, u64)> = None;
    for bucket in buckets {
        for i in 0..WAYS {
            let q = bucket.ways[i].load(Ordering::Acquire, guard);
            // SAFETY: protected by the guard.
            match unsafe { q.as_ref() } {
                None => return (bucket, i, q),
                Some(r) => {
                    let used = r.last_used.load(Ordering::Relaxed);
                    if oldest.map_or(true, |(_, _, _, u)| used < u) {
                        oldest = Some((bucket, i, q, used));
                    }
                }
            }
        }
    }
    let (bucket, i, q, _) = oldest.expect("buckets have places");
    (bucket, i, q)
}

impl Drop for IdleQueues {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no core reads the table any more.
        let guard = unsafe { epoch::unprotected() };
        for way in self.buckets.iter().flat_map(|b| b.ways.iter()) {
            let q = way.swap(Shared::null(), Ordering::Relaxed, guard);
            if !q.is_null() {
                // SAFETY: unreachable now, owned by the table alone.
                drop(unsafe { q.into_owned() });
            }
        }
    }
}

// SAFETY: all shared state is atomics and immutable data behind published pointers.
unsafe impl Send for IdleQueues {}
unsafe impl Sync for IdleQueues {}

#[cfg(test)]
mod tests;
