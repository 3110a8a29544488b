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
//! A queue is a chain of segments of slots. A slot is one `AtomicU64` packing
//! a worker id (high 40 bits) and how many idle instances of the function
//! that worker holds (low 24 bits); 0 is an empty slot (worker ids start at
//! 1). Every change to a slot is a single compare-and-swap.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use ahash::RandomState;
use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned, Shared};

use crate::worker::{Worker, WorkerId, WorkerSet};

/// Functions tracked by default; past it, a new function takes the place of
/// a least recently used one.
pub const DEFAULT_MAX_FUNCTIONS: usize = 1 << 17;
/// Places per bucket: 4 pointers and their tags, one cache line.
pub const WAYS: usize = 4;

thread_local! {
    static HELD: std::cell::RefCell<Option<Guard>> = const { std::cell::RefCell::new(None) };
}

/// Keeps this thread pinned to the current epoch, so that the table's own
/// pins nest in it and cost no memory fence: for threads that use the table
/// on every request (the shards). Freed queues then wait until each such
/// thread calls [`repin_epoch`] (every second, say).
pub fn hold_epoch() {
    HELD.with(|held| *held.borrow_mut() = Some(epoch::pin()));
}

/// Flushes per call: each frees a few hundred queues whose readers are gone.
const FLUSHES: usize = 8;

/// Lets the epoch move on past this thread's held pin (see [`hold_epoch`])
/// and frees what no reader can hold any more. Nested pins never advance
/// the epoch (crossbeam does that on an outermost pin or a flush), so this
/// is what frees the queues a held thread drops.
pub fn repin_epoch() {
    HELD.with(|held| {
        if let Some(guard) = held.borrow_mut().as_mut() {
            guard.repin();
            for _ in 0..FLUSHES {
                guard.flush();
            }
        }
    });
}

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
const INLINE_NAME: usize = 32;

/// Two cache lines: hash, name and recency in the first with the first
/// slots, the rest of the head segment in the second.
#[repr(align(64))]
struct FunctionQueue {
    hash: u64,
    name: Name,
    /// The table's clock when the function was last pushed or taken.
    last_used: AtomicU64,
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
    fn new(hash: u64, function: &str, now: u64) -> FunctionQueue {
        #[cfg(test)]
        tests::LIVE_QUEUES.fetch_add(1, Ordering::Relaxed);
        FunctionQueue { hash, name: Name::new(function), last_used: AtomicU64::new(now), head: Segment::new() }
    }

    fn is(&self, hash: u64, function: &str) -> bool {
        self.hash == hash && self.name.is(function)
    }

    fn is_empty(&self) -> bool {
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

    /// Takes one entry of the worker in `workers` that `cost` rates lowest,
    /// if that is below `limit`; clears entries of workers no longer in the
    /// set.
    fn take_cheapest<'a>(
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

impl Drop for FunctionQueue {
    fn drop(&mut self) {
        #[cfg(test)]
        tests::LIVE_QUEUES.fetch_sub(1, Ordering::Relaxed);
        let mut next = *self.head.next.get_mut();
        while !next.is_null() {
            // SAFETY: `&mut self`: the queue is unreachable; every segment
            // came from `Box::into_raw` and is freed once.
            let mut seg = unsafe { Box::from_raw(next) };
            next = *seg.next.get_mut();
        }
    }
}

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
    pub fn new(max_functions: usize) -> IdleQueues {
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
    pub fn push(&self, function: &str, worker: WorkerId) {
        let guard = epoch::pin();
        self.get_or_insert(function, &guard).push(worker);
    }

    /// Consumes an idle instance of `function` on the least-loaded worker of
    /// `workers` holding one (none on an ejected or full worker). Never
    /// allocates.
    pub fn take_least_loaded<'a>(&self, function: &str, workers: &'a WorkerSet) -> Option<&'a Arc<Worker>> {
        self.take_cheapest(function, workers, |w| w.available_load(), u64::MAX)
    }

    /// Consumes an idle instance of `function` on the worker of `workers`
    /// holding one that `cost` rates lowest, if that is below `limit`.
    /// Never allocates.
    pub fn take_cheapest<'a>(
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
    pub fn remove_one(&self, function: &str, worker: WorkerId) -> bool {
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
    pub fn retain(&self, workers: &WorkerSet) {
        let guard = epoch::pin();
        for way in self.buckets.iter().flat_map(|b| b.ways.iter()) {
            // SAFETY: protected by the guard.
            let Some(q) = (unsafe { way.load(Ordering::Acquire, &guard).as_ref() }) else { continue };
            for slot in q.slots() {
                let v = slot.load(Ordering::Acquire);
                if count_of(v) > 0 && workers.get(worker_of(v)).is_none() {
                    let _ = slot.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed);
                }
            }
        }
    }

    /// Every function with idle instances (or only `function`), each with
    /// its workers in `workers` and their counts. Walks the whole table and
    /// allocates: for the admin directory, not the request path.
    pub fn entries(&self, workers: &WorkerSet, function: Option<&str>) -> Vec<(String, Vec<(WorkerId, u64)>)> {
        let guard = epoch::pin();
        let mut entries = Vec::new();
        for way in self.buckets.iter().flat_map(|b| b.ways.iter()) {
            // SAFETY: protected by the guard.
            let Some(q) = (unsafe { way.load(Ordering::Acquire, &guard).as_ref() }) else { continue };
            if function.is_some_and(|f| !q.name.is(f)) {
                continue;
            }
            let mut counts: Vec<(WorkerId, u64)> = Vec::new();
            for v in q.slots().map(|s| s.load(Ordering::Acquire)) {
                let (id, count) = (worker_of(v), count_of(v));
                if count == 0 || workers.get(id).is_none() {
                    continue;
                }
                match counts.iter_mut().find(|(w, _)| *w == id) {
                    Some((_, n)) => *n += count,
                    None => counts.push((id, count)),
                }
            }
            if !counts.is_empty() {
                counts.sort_unstable();
                entries.push((q.name.as_str().to_string(), counts));
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
mod tests {
    use super::*;
    use crate::worker::tests::set_of;
    use crate::worker::Lease;

    #[test]
    fn entries_list_each_function_with_its_workers_and_counts() {
        let q = IdleQueues::new(64);
        let set = set_of(3);
        let long = "a-function-name-longer-than-thirty-two-bytes";
        for (f, w) in [("f", 2), ("f", 1), ("f", 2), (long, 3), ("g", 1)] {
            q.push(f, w);
        }
        q.remove_one("g", 1);
        let entries = q.entries(&set, None);
        let expected = vec![(long.to_string(), vec![(3, 1)]), ("f".to_string(), vec![(1, 1), (2, 2)])];
        assert_eq!(entries, expected);
        assert_eq!(q.entries(&set, Some("f")), vec![("f".to_string(), vec![(1, 1), (2, 2)])]);
        // A worker no longer in the set is left out.
        let smaller = WorkerSet::new(2, set.as_slice()[..2].to_vec());
        assert_eq!(q.entries(&smaller, Some(long)), vec![]);
    }

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
    fn a_full_bucket_forgets_its_least_recently_used_function() {
        let set = set_of(2);
        // One bucket.
        let q = IdleQueues::new(WAYS);
        assert_eq!(q.capacity(), WAYS);
        for i in 0..WAYS {
            q.push(&format!("f{i}"), 1);
        }
        assert_eq!(q.functions(), WAYS);
        // f0 is used again: f1 is now the least recently used.
        assert_eq!(q.take_least_loaded("f0", &set).unwrap().id(), 1);
        q.push("new", 2);
        assert_eq!(q.functions(), WAYS);
        assert!(!q.tracks("f1"), "the least recently used went");
        assert!(q.tracks("f0") && (2..WAYS).all(|i| q.tracks(&format!("f{i}"))));
        assert_eq!(q.take_least_loaded("new", &set).unwrap().id(), 2, "the new function is routed warm");
    }

    #[test]
    fn a_queue_is_two_cache_lines() {
        assert_eq!(std::mem::size_of::<FunctionQueue>(), 128);
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
    }

    #[test]
    fn a_function_whose_last_instance_is_evicted_is_dropped() {
        let q = IdleQueues::new(16);
        q.push("f", 1);
        q.push("f", 1);
        assert!(q.remove_one("f", 1));
        assert!(q.tracks("f"), "one instance left");
        assert!(q.remove_one("f", 1));
        assert!(!q.tracks("f"));
        assert_eq!(q.functions(), 0);
        assert!(!q.remove_one("f", 1));
    }

    /// How many queues exist (freed ones are subtracted when freed).
    pub(super) static LIVE_QUEUES: AtomicUsize = AtomicUsize::new(0);
    /// Taken by the tests that count `LIVE_QUEUES`: one's garbage, not yet
    /// freed, must not count against the other's bound.
    static COUNTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_million_names_keep_memory_bounded_and_every_new_one_warm() {
        let _counting = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
        let set = set_of(1);
        let q = IdleQueues::new(1024);
        for i in 0..1_000_000u32 {
            let name = format!("function-{i}");
            q.push(&name, 1);
            if i % 997 == 0 {
                assert_eq!(q.take_least_loaded(&name, &set).map(|w| w.id()), Some(1), "{name}");
            }
        }
        assert!(q.functions() <= q.capacity());
        // Freed queues wait for the epoch to move on, which other tests'
        // shards (pinned, repinning every second) may hold back a while.
        // Other tests' queues live at the same time: a generous bound, far
        // below the million made.
        let live = live_queues_once_freed(0, q.capacity() + 20_000, || {
            epoch::pin().flush();
        });
        assert!(live < q.capacity() + 20_000, "{live} queues alive for a table of {}", q.capacity());
    }

    /// Live queues made since `before` once fewer than `bound`, calling
    /// `free` between looks, for at most 10 s: the epoch moves on only
    /// once every pinned thread in the process (other tests' shards
    /// among them) has repinned.
    fn live_queues_once_freed(before: usize, bound: usize, mut free: impl FnMut()) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            for _ in 0..64 {
                free();
            }
            let live = LIVE_QUEUES.load(Ordering::Relaxed).saturating_sub(before);
            if live < bound || std::time::Instant::now() > deadline {
                return live;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    #[test]
    fn a_thread_that_holds_the_epoch_frees_dropped_queues_when_it_repins() {
        let _counting = COUNTING.lock().unwrap_or_else(|e| e.into_inner());
        // As a shard: pinned for good, repinning now and then.
        std::thread::spawn(|| {
            hold_epoch();
            let q = IdleQueues::new(WAYS);
            let before = LIVE_QUEUES.load(Ordering::Relaxed);
            for i in 0..20_000u32 {
                let name = format!("churn-{i}");
                q.push(&name, 1);
                assert!(q.remove_one(&name, 1));
                if i % 1000 == 999 {
                    repin_epoch();
                }
            }
            // Other tests make queues meanwhile; 20 000 were dropped here.
            // Without the repins this thread's own pin would keep them all.
            let live = live_queues_once_freed(before, 10_000, repin_epoch);
            assert!(live < 10_000, "{live} dropped queues are still alive");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn cores_churning_a_small_table_agree() {
        let set = Arc::new(set_of(4));
        let q = Arc::new(IdleQueues::new(16));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let (set, q) = (Arc::clone(&set), Arc::clone(&q));
                std::thread::spawn(move || {
                    for i in 0..20_000u64 {
                        let f = format!("f{}", (i * 7 + t) % 200);
                        match i % 3 {
                            0 => q.push(&f, 1 + (i + t) % 4),
                            1 => drop(q.take_least_loaded(&f, &set)),
                            _ => drop(q.remove_one(&f, 1 + i % 4)),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(q.functions() <= q.capacity(), "{} functions", q.functions());
        let tracked = (0..200).filter(|i| q.tracks(&format!("f{i}"))).count();
        assert!(tracked <= q.capacity());
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
