//! Workers, the immutable worker-set snapshot every core reads, the
//! `Lease` that counts a request in flight on a worker, and each worker's
//! adaptive [`Limit`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

mod limit;
mod url;

pub use limit::Tuning;
pub(crate) use limit::{Change, Learnt, Limit, Sample, SAMPLED};
pub use url::WorkerUrl;

/// Identifies one worker for the life of the process. Ids grow with every
/// addition and are never reused, so a stale id can't alias a newer worker,
/// and a `WorkerSet` (kept in order of addition) is sorted by id.
pub(crate) type WorkerId = u64;

/// One worker, shared by every core.
#[derive(Debug)]
pub struct Worker {
    id: WorkerId,
    url: WorkerUrl,
    addrs: Vec<SocketAddr>,
    in_flight: AtomicUsize,
    /// The most calls it takes at once (`usize::MAX`: no bound): past it,
    /// no balancer picks it and calls wait for a slot. The lower of the
    /// configured capacity and the adaptive limit.
    capacity: AtomicUsize,
    /// The capacity the config gives it (`usize::MAX`: none).
    configured: AtomicUsize,
    /// What its calls show of how many it takes (`adaptive`).
    limit: Limit,
    /// Connections to it kept idle in the cores' pools.
    pooled: AtomicUsize,
    /// Calls ever assigned, and those that got no usable answer.
    assigned: AtomicU64,
    failures: AtomicU64,
    /// Connections that failed in a row, and whether that took it out of
    /// the balancers' choice until a probe finds it back.
    connect_failures: AtomicU32,
    ejected: AtomicBool,
    ejections: AtomicU64,
    /// In-flight requests over all workers (shared by every worker of a scheduler).
    total: Arc<AtomicUsize>,
}

impl Worker {
    pub(crate) fn new(id: WorkerId, url: WorkerUrl, addrs: Vec<SocketAddr>, total: Arc<AtomicUsize>) -> Worker {
        let (assigned, failures) = (AtomicU64::new(0), AtomicU64::new(0));
        Worker {
            id,
            url,
            addrs,
            in_flight: AtomicUsize::new(0),
            capacity: AtomicUsize::new(usize::MAX),
            configured: AtomicUsize::new(usize::MAX),
            limit: Limit::default(),
            pooled: AtomicUsize::new(0),
            assigned,
            failures,
            connect_failures: AtomicU32::new(0),
            ejected: AtomicBool::new(false),
            ejections: AtomicU64::new(0),
            total,
        }
    }

    pub(crate) fn id(&self) -> WorkerId {
        self.id
    }

    pub(crate) fn url(&self) -> &WorkerUrl {
        &self.url
    }

    /// Resolved addresses, IPv4 first.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Requests this scheduler has in flight on this worker, over all cores.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls ever assigned to this worker.
    pub(crate) fn assigned(&self) -> u64 {
        self.assigned.load(Ordering::Relaxed)
    }

    /// Calls on this worker that got no usable answer.
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Whether it is out of the balancers' choice (health).
    pub(crate) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// The most calls it takes at once (`usize::MAX`: no bound): the lower
    /// of its configured capacity and its adaptive limit.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// The capacity the config gives it (`usize::MAX`: none).
    pub(crate) fn configured_capacity(&self) -> usize {
        self.configured.load(Ordering::Relaxed)
    }

    /// Sets its configured capacity (0 and `usize::MAX`: no bound); it
    /// applies to new calls.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        let capacity = if capacity == 0 { usize::MAX } else { capacity };
        self.configured.store(capacity, Ordering::Relaxed);
        // The adaptive limit's next step keeps it within the new capacity;
        // until then the lower of the two counts.
        self.settle_capacity();
    }

    /// Its adaptive limit, if it has one.
    pub(crate) fn adaptive_limit(&self) -> Option<u32> {
        self.limit.is_on().then(|| self.limit.get())
    }

    /// Whether its adaptive limit holds calls back (its calls take long
    /// enough: `adaptive.min_call_ms`).
    pub(crate) fn limit_holds(&self) -> bool {
        self.limit.is_on() && self.limit.holds()
    }

    /// What its calls showed of it lately: the lowest slowdown and the
    /// smoothed one (0: none yet).
    pub(crate) fn slowdowns(&self) -> (f64, f64) {
        self.limit.slowdowns()
    }

    /// Gives it an adaptive limit tuned so, starting afresh (or none).
    pub(crate) fn set_adaptive(&self, tuning: Option<&Tuning>) {
        self.limit.set_tuning(tuning, self.most());
        self.settle_capacity();
    }

    /// Takes what a peer's adaptive limit on it learnt (if it has one).
    pub(crate) fn adopt_limit(&self, learnt: &Learnt) {
        self.limit.adopt(learnt, self.most());
        self.settle_capacity();
    }

    /// Tells its adaptive limit how a call ended; the limit before and
    /// after, and why, if it moved.
    pub(crate) fn record(&self, sample: Sample) -> Option<(u32, u32, Change)> {
        let moved = self.limit.record(sample, self.most());
        self.settle_capacity();
        moved
    }

    /// Its configured capacity as a bound of the adaptive limit.
    fn most(&self) -> u32 {
        self.configured_capacity().min(u32::MAX as usize) as u32
    }

    /// Its capacity anew from its configured one and its limit's bound
    /// (written only if it changed: every call's end comes here).
    fn settle_capacity(&self) {
        let bound = match self.limit.bound() {
            u32::MAX => usize::MAX,
            n => n as usize,
        };
        let capacity = self.configured_capacity().min(bound);
        if self.capacity() != capacity {
            self.capacity.store(capacity, Ordering::Relaxed);
        }
    }

    /// Whether it has no room for another call.
    pub(crate) fn is_full(&self) -> bool {
        self.in_flight() >= self.capacity()
    }

    /// Whether a balancer may pick it: not ejected, not full.
    pub(crate) fn is_available(&self) -> bool {
        !self.is_ejected() && !self.is_full()
    }

    /// The load the balancers compare: its calls in flight; for a full
    /// worker one less than the most there is, and the most for an ejected
    /// one, so that any available worker comes first, and a full one (the
    /// call waits for it) before an ejected one (likely dead).
    pub(crate) fn load(&self) -> usize {
        let in_flight = self.in_flight();
        if self.is_ejected() {
            usize::MAX
        } else if in_flight >= self.capacity() {
            usize::MAX - 1
        } else {
            in_flight
        }
    }

    /// Its calls in flight if it is available, else `u64::MAX`: the cost
    /// of taking one of its idle instances.
    pub(crate) fn available_load(&self) -> u64 {
        if self.is_available() {
            self.in_flight() as u64
        } else {
            u64::MAX
        }
    }

    /// Counts a connection to it that a pool keeps idle.
    pub(crate) fn pooled_one(&self) {
        self.pooled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one a pool lets go (taken for a call, or closed).
    pub(crate) fn unpooled_one(&self) {
        self.pooled.fetch_sub(1, Ordering::Relaxed);
    }

    /// Connections to it kept idle over all cores.
    pub(crate) fn pooled(&self) -> usize {
        self.pooled.load(Ordering::Relaxed)
    }

    /// A connection to it failed: the count of failures in a row.
    pub(crate) fn connect_failed(&self) -> u32 {
        self.connect_failures.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }

    /// A connection to it worked (no write unless failures were counted).
    pub(crate) fn connect_succeeded(&self) {
        if self.connect_failures.load(Ordering::Relaxed) != 0 {
            self.connect_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Takes it out of the choice; false if it already was.
    pub(crate) fn eject(&self) -> bool {
        let newly = !self.ejected.swap(true, Ordering::AcqRel);
        if newly {
            self.ejections.fetch_add(1, Ordering::Relaxed);
        }
        newly
    }

    /// Times it was ejected.
    pub(crate) fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Puts it back.
    pub(crate) fn restore(&self) {
        self.connect_failures.store(0, Ordering::Relaxed);
        self.ejected.store(false, Ordering::Release);
    }

    /// Counts a call that got no usable answer.
    pub(crate) fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests in flight over all workers of the scheduler.
    pub(crate) fn total_in_flight(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Whether `host` (`ip:port`, `name:port` or a URL, as a worker names
    /// itself in `destroySandbox`) denotes this worker.
    pub(crate) fn is_named_by(&self, host: &str) -> bool {
        let host = host.trim().trim_end_matches('/');
        let host = host.strip_prefix("http://").unwrap_or(host);
        if host.eq_ignore_ascii_case(self.url.authority()) {
            return true;
        }
        match host.parse::<SocketAddr>() {
            Ok(addr) => self.addrs.contains(&addr),
            Err(_) => false,
        }
    }
}

/// Counts one request in flight on a worker until dropped, so a counter can't
/// leak on any path (error, cancellation or panic).
#[derive(Debug)]
pub struct Lease {
    worker: Arc<Worker>,
    /// The balancer's note on why it chose the worker, for its own use
    /// when the call ends (0 if none).
    hint: u32,
    /// The worker had room for it (it was under its capacity).
    admitted: bool,
}

impl Lease {
    pub(crate) fn new(worker: &Arc<Worker>) -> Lease {
        Lease::with_hint(worker, 0)
    }

    pub(crate) fn with_hint(worker: &Arc<Worker>, hint: u32) -> Lease {
        let capacity = worker.capacity();
        let admitted = if capacity == usize::MAX {
            worker.in_flight.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            // Only below the capacity: a lease refused never counts, so it
            // never makes another call see the worker full.
            let room = |n: usize| (n < capacity).then_some(n + 1);
            worker.in_flight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, room).is_ok()
        };
        if admitted {
            worker.total.fetch_add(1, Ordering::Relaxed);
            worker.assigned.fetch_add(1, Ordering::Relaxed);
        }
        Lease { worker: Arc::clone(worker), hint, admitted }
    }

    /// Whether the worker had room for this call: it was below its
    /// capacity, and the lease counts the call in flight. One that was not
    /// counts nothing; it is given back (the call waits for a slot).
    pub(crate) fn admitted(&self) -> bool {
        self.admitted
    }

    pub(crate) fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }

    pub(crate) fn hint(&self) -> u32 {
        self.hint
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.admitted {
            return;
        }
        let before = self.worker.in_flight.fetch_sub(1, Ordering::Relaxed);
        debug_assert!(before > 0, "in-flight counter underflow");
        self.worker.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An immutable snapshot of the workers, in order of addition (so by id).
/// Changes publish a new snapshot with a higher generation.
#[derive(Debug, Default)]
pub struct WorkerSet {
    generation: u64,
    workers: Vec<Arc<Worker>>,
    /// The workers' ids, in the same order: a lookup by id searches this
    /// contiguous array instead of chasing a pointer per probe.
    ids: Vec<WorkerId>,
}

impl WorkerSet {
    pub(crate) fn new(generation: u64, workers: Vec<Arc<Worker>>) -> WorkerSet {
        debug_assert!(workers.windows(2).all(|w| w[0].id < w[1].id), "workers out of id order");
        let ids = workers.iter().map(|w| w.id).collect();
        WorkerSet { generation, workers, ids }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    pub(crate) fn iter(&self) -> std::slice::Iter<'_, Arc<Worker>> {
        self.workers.iter()
    }

    pub(crate) fn as_slice(&self) -> &[Arc<Worker>] {
        &self.workers
    }

    /// The worker with this id, if it is still in the set (binary search).
    pub(crate) fn get(&self, id: WorkerId) -> Option<&Arc<Worker>> {
        self.ids.binary_search(&id).ok().map(|i| &self.workers[i])
    }

    pub(crate) fn find_url(&self, url: &WorkerUrl) -> Option<&Arc<Worker>> {
        self.workers.iter().find(|w| &w.url == url)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A set of `n` workers named `http://w<i>:80` with ids 1..=n.
    pub(crate) fn set_of(n: usize) -> WorkerSet {
        let total = Arc::new(AtomicUsize::new(0));
        let workers = (1..=n)
            .map(|i| {
                let url = WorkerUrl::parse(&format!("http://w{i}")).unwrap();
                Arc::new(Worker::new(i as u64, url, Vec::new(), Arc::clone(&total)))
            })
            .collect();
        WorkerSet::new(1, workers)
    }

    #[test]
    fn lease_counts_until_dropped() {
        let set = set_of(2);
        let w = &set.as_slice()[0];
        let a = Lease::new(w);
        let b = Lease::new(w);
        assert_eq!((w.in_flight(), w.total_in_flight()), (2, 2));
        drop(a);
        assert_eq!((w.in_flight(), set.as_slice()[1].total_in_flight()), (1, 1));
        drop(b);
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn a_lease_past_the_capacity_is_not_admitted_and_the_worker_is_full() {
        let set = set_of(1);
        let w = &set.as_slice()[0];
        w.set_capacity(2);
        let (a, b) = (Lease::new(w), Lease::new(w));
        assert!(a.admitted() && b.admitted());
        assert!(w.is_full() && !w.is_available());
        assert_eq!((w.load(), w.available_load()), (usize::MAX - 1, u64::MAX), "full ranks before ejected");
        let c = Lease::new(w);
        assert!(!c.admitted());
        assert_eq!(w.in_flight(), 2, "a lease refused does not count, even for a moment");
        assert_eq!(w.assigned(), 2, "a call not admitted is not assigned");
        drop((a, c));
        assert!(!w.is_full());
        assert_eq!(w.load(), 1);
        w.set_capacity(0);
        assert_eq!(w.capacity(), usize::MAX, "0: no bound");
        drop(b);
    }

    #[test]
    fn lookup_by_id_and_name() {
        let set = set_of(3);
        assert_eq!(set.get(2).unwrap().url().as_str(), "http://w2:80");
        assert!(set.get(4).is_none());
        let total = Arc::new(AtomicUsize::new(0));
        let url = WorkerUrl::parse("http://localhost:5000").unwrap();
        let w = Worker::new(1, url, vec!["127.0.0.1:5000".parse().unwrap()], total);
        assert!(w.is_named_by("127.0.0.1:5000"));
        assert!(w.is_named_by("localhost:5000"));
        assert!(w.is_named_by("http://127.0.0.1:5000/"));
        assert!(!w.is_named_by("127.0.0.1:5001"));
    }
}
