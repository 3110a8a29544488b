//! The `Scheduler`: state shared by every core. The worker set and the
//! balancer are an immutable [`Snapshot`] behind an `ArcSwap`, read with
//! one atomic load per call; changes (workers added or removed, a balancer
//! reloaded) publish a new one with a compare-and-swap loop, then tell the
//! balancer. How calls end also tells each worker's adaptive limit
//! ([`Scheduler::call_ended`]), against the functions' [`Baselines`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};

use crate::balancer::{Answer, Balancer, BalancerKind, Outcome};
use crate::health::{self, Health};
use crate::worker::{Change, Learnt, Lease, Sample, Tuning, Worker, WorkerId, WorkerSet, WorkerUrl, SAMPLED};

mod baselines;
mod capacities;
mod waiting;

pub(crate) use baselines::Baselines;
pub(crate) use capacities::Capacities;
pub(crate) use waiting::WaitingCalls;

/// A worker to add: its URL and the addresses it resolved to.
pub(crate) type NewWorker = (WorkerUrl, Vec<SocketAddr>);

pub struct Scheduler {
    snapshot: ArcSwap<Snapshot>,
    next_id: AtomicU64,
    total: Arc<AtomicUsize>,
    health: ArcSwap<Health>,
    /// What the balancer says of itself, asked once rather than per call.
    learns: AtomicBool,
    tracks_warm: AtomicBool,
    /// Whether any worker has a capacity or an adaptive limit: only then
    /// can calls wait.
    bounded: AtomicBool,
    /// The capacity of each worker, also of those added later.
    capacities: ArcSwap<Capacities>,
    /// The workers' adaptive limits' tuning (`None`: off), also for those
    /// added later.
    adaptive: ArcSwap<Option<Tuning>>,
    baselines: Baselines,
    /// The cores' queues of calls waiting for a worker with room.
    waiting: WaitingCalls,
}

/// The workers and the balancer that chooses among them, published together.
pub(crate) struct Snapshot {
    set: WorkerSet,
    kind: BalancerKind,
    balancer: Arc<dyn Balancer>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("set", &self.set).field("kind", &self.kind).finish()
    }
}

impl std::ops::Deref for Snapshot {
    type Target = WorkerSet;

    fn deref(&self) -> &WorkerSet {
        &self.set
    }
}

/// Why a call found no worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unplaced {
    NoWorkers,
    /// Every worker is at its capacity (or calls wait already): the call
    /// waits in the queue.
    Full,
}

/// How a call on a worker ended, as its adaptive limit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEnd {
    /// The worker answered, this long after the request was sent (a
    /// function's own errors too: the worker ran it).
    Answered { took: Duration },
    /// It failed on the worker: a 502, 503 or 504 of its own, or a
    /// connection that broke off or went silent.
    Failed,
    /// The worker said it was overloaded and did not run it.
    Overloaded,
}

/// `select` found no worker at all.
#[derive(Debug, PartialEq, Eq)]
pub struct NoWorkers;

impl Scheduler {
    pub fn new(kind: BalancerKind, workers: Vec<NewWorker>) -> Scheduler {
        Scheduler::with_balancer(kind, kind.build(), workers)
    }

    pub(crate) fn with_balancer(kind: BalancerKind, balancer: Arc<dyn Balancer>, workers: Vec<NewWorker>) -> Scheduler {
        let (learns, tracks_warm) = (balancer.learns(), balancer.idle_instances().is_some());
        let s = Scheduler {
            snapshot: ArcSwap::from_pointee(Snapshot { set: WorkerSet::default(), kind, balancer }),
            next_id: AtomicU64::new(1),
            total: Arc::new(AtomicUsize::new(0)),
            health: ArcSwap::from_pointee(Health::default()),
            learns: AtomicBool::new(learns),
            tracks_warm: AtomicBool::new(tracks_warm),
            bounded: AtomicBool::new(false),
            capacities: ArcSwap::from_pointee(Capacities::default()),
            adaptive: ArcSwap::from_pointee(None),
            baselines: Baselines::default(),
            waiting: WaitingCalls::new(1),
        };
        s.add(workers);
        s
    }

    /// The same, with a queue of waiting calls on each of `cores` cores.
    pub(crate) fn with_cores(mut self, cores: usize) -> Scheduler {
        self.waiting = WaitingCalls::new(cores);
        self
    }

    /// The same, ejecting workers as `health` says.
    pub(crate) fn with_health(self, health: Health) -> Scheduler {
        self.set_health(health);
        self
    }

    /// Ejects workers as `health` says from now on.
    pub(crate) fn set_health(&self, health: Health) {
        self.health.store(Arc::new(health));
    }

    pub(crate) fn health(&self) -> Health {
        **self.health.load()
    }

    /// A connection to `worker` failed: past `eject_after` in a row, it is
    /// ejected (unless too many are out already) and probed with `GET
    /// /status`, after 0.5 s, then twice as long each time up to 30 s, until
    /// it answers and is put back.
    pub(crate) fn connect_failed(&self, worker: &Arc<Worker>) {
        let failures = worker.connect_failed();
        let health = self.health();
        if !health.ejects_after(failures) || worker.is_ejected() {
            return;
        }
        let workers = self.snapshot.load();
        let out = workers.iter().filter(|w| w.is_ejected()).count();
        if !health.may_eject(out, workers.len()) || !worker.eject() {
            return;
        }
        log::warn!("worker {} ejected after {failures} connection failures in a row; probing it", worker.url());
        let weak = Arc::downgrade(worker);
        let probe = std::thread::Builder::new().name("hiku-probe".into()).spawn(move || health::probe_until_back(weak));
        if let Err(e) = probe {
            log::error!("cannot start the probe of {}: {e}; it is put back", worker.url());
            worker.restore();
        }
    }

    pub(crate) fn kind(&self) -> BalancerKind {
        self.snapshot.load().kind
    }

    pub(crate) fn balancer(&self) -> Arc<dyn Balancer> {
        Arc::clone(&self.snapshot.load().balancer)
    }

    /// The current worker set (one atomic load; hold it briefly).
    pub(crate) fn workers(&self) -> Guard<Arc<Snapshot>> {
        self.snapshot.load()
    }

    /// Picks and leases a worker for `function`.
    pub fn select(&self, function: &str) -> Result<Lease, NoWorkers> {
        let now = self.snapshot.load();
        if now.set.is_empty() {
            return Err(NoWorkers);
        }
        Ok(now.balancer.select(&now.set, function))
    }

    /// Changes the balancer: new calls are placed by `balancer` (of
    /// `kind`), knowing nothing yet; calls in flight end with it too.
    pub(crate) fn set_balancer(&self, kind: BalancerKind, balancer: Arc<dyn Balancer>) {
        let mut current = self.snapshot.load_full();
        loop {
            let set = WorkerSet::new(current.generation() + 1, current.as_slice().to_vec());
            let next = Arc::new(Snapshot { set, kind, balancer: Arc::clone(&balancer) });
            let prev = self.snapshot.compare_and_swap(&current, Arc::clone(&next));
            if Arc::ptr_eq(&prev, &current) {
                self.learns.store(balancer.learns(), Ordering::Relaxed);
                self.tracks_warm.store(balancer.idle_instances().is_some(), Ordering::Relaxed);
                balancer.workers_changed(&next.set);
                self.waiting.notify_all();
                return;
            }
            current = Guard::into_inner(prev);
        }
    }

    /// Places a call of `function`: the balancer's choice, if its worker
    /// has room (always, unless workers have a capacity). A call that
    /// finds calls waiting already waits behind them.
    pub(crate) fn place(&self, function: &str) -> Result<Lease, Unplaced> {
        let bounded = self.bounded.load(Ordering::Relaxed);
        if bounded && self.waiting.count() != 0 {
            return Err(Unplaced::Full);
        }
        let lease = self.select(function).map_err(|NoWorkers| Unplaced::NoWorkers)?;
        if lease.admitted() {
            return Ok(lease);
        }
        self.unselect(function, lease);
        Err(Unplaced::Full)
    }

    /// The balancer's choice for a waiting call of `function`, if its
    /// worker has room.
    pub(crate) fn try_place(&self, function: &str) -> Option<Lease> {
        let lease = self.select(function).ok()?;
        if lease.admitted() {
            return Some(lease);
        }
        self.unselect(function, lease);
        None
    }

    /// Undoes a choice that was not used: what the balancer took for it (a
    /// warm idle instance) is given back, and the lease dropped.
    pub(crate) fn unselect(&self, function: &str, lease: Lease) {
        self.snapshot.load().balancer.unselect(function, &lease);
    }

    /// A call its worker did not run (it answered that it was overloaded):
    /// its limit hears of it, what the balancer took for it is given back
    /// and its slot freed.
    pub(crate) fn refused(&self, function: &str, lease: Lease) {
        self.call_ended(function, &lease, CallEnd::Overloaded);
        self.unselect(function, lease);
        if self.bounded.load(Ordering::Relaxed) {
            self.waiting.slot_freed();
        }
    }

    /// The calls waiting for a worker with room, as the cores share them.
    pub(crate) fn waiting_calls(&self) -> &WaitingCalls {
        &self.waiting
    }

    /// Sets the capacity of every worker, and of workers added later;
    /// calls waiting are placed if that made room.
    pub(crate) fn set_capacities(&self, capacities: Capacities) {
        self.capacities.store(Arc::new(capacities));
        let capacities = self.capacities.load();
        self.for_every_worker(|w| w.set_capacity(capacities.of(w.url()).unwrap_or(usize::MAX)));
    }

    /// Gives every worker, and those added later, an adaptive limit tuned
    /// so (`None`: none). A tuning that changed starts every limit afresh.
    pub fn set_adaptive(&self, tuning: Option<Tuning>) {
        self.adaptive.store(Arc::new(tuning));
        let tuning = self.adaptive.load();
        self.for_every_worker(|w| w.set_adaptive(tuning.as_ref().as_ref()));
    }

    /// Applies `set` to every worker, again if workers were added meanwhile
    /// (they may have read the settings before they changed); then calls
    /// may wait or not, and those waiting are placed if that made room.
    fn for_every_worker(&self, set: impl Fn(&Worker)) {
        let bounded = self.capacities.load().any() || self.adaptive.load().is_some();
        self.bounded.store(bounded, Ordering::Relaxed);
        loop {
            let now = self.snapshot.load();
            for w in now.iter() {
                set(w);
            }
            if self.snapshot.load().generation() == now.generation() {
                break;
            }
        }
        self.waiting.notify_all();
    }

    /// Tells the worker of `lease` how its call of `function` ended, before
    /// the lease is released; a limit that came down sharply, or for a
    /// failure, is logged (the worker is under pressure).
    pub fn call_ended(&self, function: &str, lease: &Lease, end: CallEnd) {
        let worker = lease.worker();
        if worker.adaptive_limit().is_none() {
            return;
        }
        let sample = match end {
            CallEnd::Answered { took } => {
                let Some(weight) = sample_weight(worker.limit_holds()) else { return };
                let took_us = took.as_micros().min(u64::MAX as u128) as u64;
                let base_us = self.baselines.observe(function, took_us);
                Sample::Answered { took_us, base_us, at_limit: worker.in_flight() >= worker.capacity(), weight }
            }
            CallEnd::Failed => Sample::Failed,
            CallEnd::Overloaded => Sample::Overloaded { in_flight: worker.in_flight() },
        };
        let Some((from, to, why)) = worker.record(sample) else { return };
        let url = worker.url();
        match why {
            Change::Failed => log::warn!("worker {url}: a call failed; its limit {from} -> {to}"),
            Change::Overloaded => log::warn!("worker {url} says it is overloaded; its limit {from} -> {to}"),
            Change::Excess(excess) if to * 3 <= from * 2 => {
                log::warn!("worker {url} is under pressure ({excess:.1} calls only waited); its limit {from} -> {to}")
            }
            Change::Excess(excess) => log::debug!("worker {url}: {excess:.1} calls only waited; limit {from} -> {to}"),
            Change::Raised => log::debug!("worker {url} keeps up; limit {from} -> {to}"),
        }
    }

    /// Leases the least loaded worker not in `tried`, if there is one with
    /// room: where a call goes when its connection to the chosen worker
    /// failed (nothing was sent, so any worker will do; the balancer's
    /// pick is what failed), or the worker said it was overloaded.
    pub(crate) fn select_other(&self, tried: &[WorkerId]) -> Option<Lease> {
        let workers = self.snapshot.load();
        let others = workers.iter().filter(|w| !tried.contains(&w.id()));
        others.min_by_key(|w| w.load()).map(Lease::new).filter(Lease::admitted)
    }

    /// Whether the balancer learns from answers (see `Balancer::learns`).
    pub fn learns(&self) -> bool {
        self.learns.load(Ordering::Relaxed)
    }

    /// Whether the balancer keeps warm idle instances (`Balancer::idle_instances`).
    pub(crate) fn tracks_warm(&self) -> bool {
        self.tracks_warm.load(Ordering::Relaxed)
    }

    /// Tells the balancer what a completed call's answer said.
    pub fn observe(&self, function: &str, lease: &Lease, answer: Answer) {
        self.snapshot.load().balancer.observe(function, lease, answer);
    }

    /// Takes `count` warm idle instances of `function` on the worker at
    /// `url` into the balancer's directory, as if that many calls had just
    /// completed there (what a peer knew, for an instance that restarts);
    /// false if no worker has that URL or the balancer keeps no directory.
    pub(crate) fn adopt_idle(&self, function: &str, url: &WorkerUrl, count: u64) -> bool {
        let snapshot = self.snapshot.load();
        let Some(worker) = snapshot.find_url(url) else { return false };
        if snapshot.balancer.idle_instances().is_none() {
            return false;
        }
        for _ in 0..count {
            snapshot.balancer.release(function, worker, Outcome::Completed);
        }
        true
    }

    /// Takes what a peer's adaptive limit on the worker at `url` learnt
    /// (for an instance that restarts); false if no worker has that URL or
    /// it has no adaptive limit.
    pub(crate) fn adopt_limit(&self, url: &WorkerUrl, learnt: &Learnt) -> bool {
        let snapshot = self.snapshot.load();
        let Some(worker) = snapshot.find_url(url).filter(|w| w.adaptive_limit().is_some()) else { return false };
        worker.adopt_limit(learnt);
        self.waiting.notify_all();
        true
    }

    /// Ends a request: tells the balancer, then frees the lease. A worker
    /// removed meanwhile is not recorded as holding anything.
    pub fn release(&self, function: &str, lease: Lease, outcome: Outcome) {
        let now = self.snapshot.load();
        let present = now.get(lease.worker().id()).is_some();
        let outcome = if present { outcome } else { Outcome::Failed };
        if outcome == Outcome::Failed {
            lease.worker().failed();
        }
        now.balancer.release(function, lease.worker(), outcome);
        drop(lease);
        if self.bounded.load(Ordering::Relaxed) {
            self.waiting.slot_freed();
        }
    }

    /// Adds the workers not present yet; returns the resulting set.
    pub(crate) fn add(&self, new: Vec<NewWorker>) -> Arc<Snapshot> {
        let result: Result<_, ()> = self.update(|current| {
            let mut list = current.as_slice().to_vec();
            for (url, addrs) in &new {
                if list.iter().all(|w| w.url() != url) {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let worker = Worker::new(id, url.clone(), addrs.clone(), Arc::clone(&self.total));
                    worker.set_capacity(self.capacities.load().of(url).unwrap_or(usize::MAX));
                    worker.set_adaptive(self.adaptive.load().as_ref().as_ref());
                    list.push(Arc::new(worker));
                }
            }
            Ok((list.len() != current.len()).then_some(list))
        });
        result.unwrap_or_else(|()| unreachable!())
    }

    /// Removes the workers; if any is absent, nothing changes and it is returned.
    pub(crate) fn remove(&self, urls: &[WorkerUrl]) -> Result<Arc<Snapshot>, WorkerUrl> {
        self.update(|current| {
            if let Some(absent) = urls.iter().find(|u| current.find_url(u).is_none()) {
                return Err(absent.clone());
            }
            let list: Vec<_> = current.iter().filter(|w| !urls.contains(w.url())).cloned().collect();
            Ok(Some(list))
        })
    }

    /// A worker (named by `host`, as OpenLambda sends it) evicted an idle
    /// instance of `function`. `None` if no worker has that name.
    pub(crate) fn sandbox_destroyed(&self, function: &str, host: &str) -> Option<bool> {
        let now = self.snapshot.load();
        let worker = now.iter().find(|w| w.is_named_by(host))?;
        Some(now.balancer.sandbox_destroyed(function, worker))
    }

    /// Publishes `change(current)` (if it is `Some`) with a compare-and-swap,
    /// retrying against whatever another core published meanwhile.
    fn update<E>(
        &self,
        change: impl Fn(&WorkerSet) -> Result<Option<Vec<Arc<Worker>>>, E>,
    ) -> Result<Arc<Snapshot>, E> {
        let mut current = self.snapshot.load_full();
        loop {
            let Some(list) = change(&current)? else { return Ok(current) };
            let set = WorkerSet::new(current.generation() + 1, list);
            let next = Arc::new(Snapshot { set, kind: current.kind, balancer: Arc::clone(&current.balancer) });
            let prev = self.snapshot.compare_and_swap(&current, Arc::clone(&next));
            if Arc::ptr_eq(&prev, &current) {
                next.balancer.workers_changed(&next.set);
                self.waiting.notify_all();
                return Ok(next);
            }
            current = Guard::into_inner(prev);
        }
    }
}

/// Resolves workers' names (blocking: off the executors). One that does
/// not resolve is kept, with no address (its calls get a 502 naming it),
/// so that a config that starts elsewhere starts here too.
pub(crate) fn resolve(urls: &[WorkerUrl]) -> Vec<NewWorker> {
    let resolve = |url: &WorkerUrl| {
        let addrs = url.resolve().unwrap_or_else(|e| {
            log::warn!("worker {url}: cannot resolve its host: {e}");
            Vec::new()
        });
        (url.clone(), addrs)
    };
    urls.iter().map(resolve).collect()
}

impl health::Probed for Scheduler {
    fn health(&self) -> Health {
        Scheduler::health(self)
    }

    fn workers_in(&self) -> Vec<Arc<Worker>> {
        self.snapshot.load().iter().filter(|w| !w.is_ejected()).cloned().collect()
    }

    fn connect_failed(&self, worker: &Arc<Worker>) {
        Scheduler::connect_failed(self, worker);
    }
}

/// What an answer weighs in its worker's window: each counts while the
/// limit holds calls back; else one in [`SAMPLED`] stands for as many,
/// drawn at random (not every SAMPLED-th: answers from the workers in turn
/// would leave one out), and the rest are not counted.
fn sample_weight(holds: bool) -> Option<u32> {
    if holds {
        return Some(1);
    }
    (fastrand::u32(..SAMPLED) == 0).then_some(SAMPLED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(names: &[&str]) -> Vec<NewWorker> {
        names.iter().map(|n| (WorkerUrl::parse(n).unwrap(), Vec::new())).collect()
    }

    fn listed(s: &Scheduler) -> Vec<String> {
        s.workers().iter().map(|w| w.url().to_string()).collect()
    }

    #[test]
    fn workers_whose_connections_fail_are_ejected_within_the_bound_and_never_picked() {
        use crate::balancer::BalancerKind;
        for kind in BalancerKind::ALL {
            let s = Scheduler::new(kind, urls(&["http://a:1", "http://b:1", "http://c:1", "http://d:1"]));
            let set = s.workers();
            let (a, b, c) = (&set.as_slice()[0], &set.as_slice()[1], &set.as_slice()[2]);
            s.balancer().release("f", a, Outcome::Completed);
            s.connect_failed(a);
            s.connect_failed(a);
            assert!(!a.is_ejected(), "{kind}: two failures are not enough");
            s.connect_failed(a);
            assert!(a.is_ejected(), "{kind}");
            // A success in between starts the count again.
            s.connect_failed(b);
            s.connect_failed(b);
            b.connect_succeeded();
            s.connect_failed(b);
            s.connect_failed(b);
            assert!(!b.is_ejected(), "{kind}");
            s.connect_failed(b);
            assert!(b.is_ejected(), "{kind}");
            // Half of four are out: the third stays in.
            for _ in 0..5 {
                s.connect_failed(c);
            }
            assert!(!c.is_ejected(), "{kind}: at most max_ejected_percent out");
            for _ in 0..200 {
                let lease = s.select("f").unwrap();
                assert!(!lease.worker().is_ejected(), "{kind} picked an ejected worker");
                assert!(s.select_other(&[lease.worker().id()]).is_some_and(|l| !l.worker().is_ejected()));
            }
            a.restore();
            assert!(!a.is_ejected());
        }
        // eject_after 0: never.
        let s = Scheduler::new(BalancerKind::Random, urls(&["http://a:1", "http://b:1"])).with_health(Health {
            eject_after: 0,
            max_ejected_percent: 100,
            interval: None,
        });
        let a = Arc::clone(&s.workers().as_slice()[0]);
        for _ in 0..10 {
            s.connect_failed(&a);
        }
        assert!(!a.is_ejected());
    }

    #[test]
    fn full_workers_are_skipped_by_every_balancer_and_calls_wait_when_all_are() {
        for kind in BalancerKind::ALL {
            let s = Scheduler::new(kind, urls(&["http://a:1", "http://b:1", "http://c:1"]));
            let a = WorkerUrl::parse("http://a:1").unwrap();
            s.set_capacities(Capacities { default: Some(2), own: vec![(a, Some(1))] });
            let set = s.workers();
            assert_eq!(set.iter().map(|w| w.capacity()).collect::<Vec<_>>(), [1, 2, 2], "{kind}");
            // Warm instances on a, where the next f would go.
            s.balancer().release("f", &set.as_slice()[0], Outcome::Completed);
            s.balancer().release("f", &set.as_slice()[0], Outcome::Completed);
            let mut leases = Vec::new();
            for i in 0..5 {
                let lease = s.place("f").unwrap_or_else(|e| panic!("{kind}: call {i}: {e:?}"));
                leases.push(lease);
                assert!(set.iter().all(|w| w.in_flight() <= w.capacity()), "{kind}: past a capacity");
            }
            assert_eq!(s.place("f").unwrap_err(), Unplaced::Full, "{kind}: all five slots taken");
            assert_eq!(s.try_place("f").map(|l| l.worker().id()), None, "{kind}");
            if let Some(idle) = s.balancer().idle_instances() {
                assert_eq!(
                    idle.count("f", set.as_slice()[0].id()),
                    1,
                    "{kind}: a warm entry is not lost to a full worker"
                );
            }
            assert!(s.select_other(&[]).is_none(), "{kind}: no other worker has room");
            let on_b = leases.iter().position(|l| l.worker().url().as_str() == "http://b:1").unwrap();
            s.release("f", leases.swap_remove(on_b), Outcome::Failed);
            let next = s.try_place("f").expect("b has room again");
            assert_eq!(next.worker().url().as_str(), "http://b:1", "{kind}");
            // Added workers get their own capacity, or the default.
            s.remove(&[WorkerUrl::parse("http://a:1").unwrap()]).unwrap();
            s.add(urls(&["http://d:1", "http://a:1"]));
            let capacity = |u: &str| s.workers().find_url(&WorkerUrl::parse(u).unwrap()).unwrap().capacity();
            assert_eq!((capacity("http://d:1"), capacity("http://a:1")), (2, 1), "{kind}");
        }
    }

    #[test]
    fn one_answer_in_sampled_is_drawn_and_none_of_two_workers_in_turn_is_left_out() {
        // Answers from two workers in turn, as least-connections gives them,
        // weighed as `call_ended` weighs them.
        let mut drawn = [0; 2];
        for i in 0..32_000 {
            if let Some(weight) = sample_weight(false) {
                assert_eq!(weight, SAMPLED, "one stands for as many");
                drawn[i % 2] += 1;
            }
        }
        assert!(drawn.iter().all(|&n| (800..1200).contains(&n)), "{drawn:?} of 16 000 each");
        assert!((0..100).all(|_| sample_weight(true) == Some(1)), "while the limit holds, every answer counts");
    }

    #[test]
    fn an_adaptive_limit_is_the_capacity_moves_with_how_calls_end_and_makes_calls_wait() {
        let s = Scheduler::new(BalancerKind::LeastConnections, urls(&["http://a:1"]));
        assert_eq!(s.workers().as_slice()[0].capacity(), usize::MAX, "none until it is set");
        let tuning = Tuning { initial: 2, ..Tuning::default() };
        s.set_adaptive(Some(tuning));
        let a = Arc::clone(&s.workers().as_slice()[0]);
        assert_eq!((a.capacity(), a.adaptive_limit()), (2, Some(2)), "it holds at initial from the start");
        let (first, second) = (s.place("f").unwrap(), s.place("f").unwrap());
        // Calls of f, each 10 ms with both slots taken: the first 8 set f's
        // baseline; after a window of 20, all at the limit with no excess,
        // it goes up by one (and goes on holding: they take over 1 ms).
        let answered = CallEnd::Answered { took: Duration::from_millis(10) };
        for _ in 0..8 + 19 {
            s.call_ended("f", &first, answered);
        }
        assert_eq!(a.capacity(), 2);
        s.call_ended("f", &first, answered);
        assert_eq!((a.capacity(), a.adaptive_limit()), (3, Some(3)));
        let third = s.place("f").unwrap();
        assert_eq!(s.place("f").unwrap_err(), Unplaced::Full, "the fourth waits");
        drop(third);
        // Failures: the third cuts it (to 0.7 x 3), and it never goes below min.
        for _ in 0..3 {
            s.call_ended("f", &second, CallEnd::Failed);
        }
        assert_eq!(a.capacity(), 2);
        s.call_ended("f", &second, CallEnd::Overloaded);
        assert_eq!(a.capacity(), 1, "one less than the two it held");
        // A configured capacity bounds it; off, only that is left.
        s.set_capacities(Capacities { default: Some(1), own: Vec::new() });
        s.set_adaptive(None);
        assert_eq!((a.capacity(), a.adaptive_limit()), (1, None));
        s.set_capacities(Capacities::default());
        assert_eq!(a.capacity(), usize::MAX);
        drop((first, second));
    }

    #[test]
    fn with_every_healthy_worker_full_calls_wait_rather_than_go_to_an_ejected_one() {
        for kind in BalancerKind::ALL {
            let s = Scheduler::new(kind, urls(&["http://a:1", "http://b:1"]));
            s.set_capacities(Capacities { default: Some(1), own: Vec::new() });
            let set = s.workers();
            let (a, b) = (&set.as_slice()[0], &set.as_slice()[1]);
            s.balancer().release("f", b, Outcome::Completed);
            for _ in 0..3 {
                s.connect_failed(b);
            }
            assert!(b.is_ejected(), "{kind}");
            let _busy = Lease::new(a);
            for _ in 0..20 {
                assert_eq!(s.place("f").unwrap_err(), Unplaced::Full, "{kind}: a call went to the ejected worker");
            }
            assert!(s.select_other(&[]).is_none(), "{kind}");
        }
    }

    #[test]
    fn a_new_balancer_places_new_calls_and_ends_those_in_flight() {
        let s = Scheduler::new(BalancerKind::Random, urls(&["http://a:1", "http://b:1"]));
        let before = s.select("f").unwrap();
        assert!(!s.learns() && !s.tracks_warm());
        s.set_balancer(BalancerKind::PullBased, BalancerKind::PullBased.build());
        assert_eq!((s.kind(), s.tracks_warm()), (BalancerKind::PullBased, true));
        let worker = before.worker().id();
        s.release("f", before, Outcome::Completed);
        let idle = s.balancer();
        assert_eq!(idle.idle_instances().unwrap().count("f", worker), 1, "the call in flight ended with the new one");
        assert_eq!(s.select("f").unwrap().worker().id(), worker, "and it places by its own rule");
        s.set_balancer(BalancerKind::Predictive, BalancerKind::Predictive.build());
        assert!(s.learns());
        assert_eq!(s.workers().len(), 2);
    }

    #[test]
    fn add_remove_list_for_every_balancer() {
        for kind in BalancerKind::ALL {
            let s = Scheduler::new(kind, urls(&["http://worker1:8080", "http://worker2:8080"]));
            assert_eq!(listed(&s).len(), 2, "{kind}");
            s.add(urls(&["http://worker3:8080", "http://worker1:8080"]));
            assert_eq!(listed(&s), ["http://worker1:8080", "http://worker2:8080", "http://worker3:8080"]);
            let w3 = WorkerUrl::parse("http://worker3:8080").unwrap();
            s.remove(std::slice::from_ref(&w3)).unwrap();
            assert_eq!(listed(&s).len(), 2, "{kind}");
            assert_eq!(s.remove(std::slice::from_ref(&w3)).unwrap_err(), w3);
            assert_eq!(listed(&s).len(), 2, "{kind}");
        }
    }

    #[test]
    fn a_worker_removed_during_a_request_gets_no_warm_entry() {
        let pull = Arc::new(crate::balancer::PullBased::new());
        let s = Scheduler::with_balancer(BalancerKind::PullBased, pull.clone(), urls(&["http://a:1", "http://b:1"]));
        let lease = s.select("f").unwrap();
        let id = lease.worker().id();
        s.remove(&[lease.worker().url().clone()]).unwrap();
        s.release("f", lease, Outcome::Completed);
        assert_eq!(pull.idle_queues().count("f", id), 0);
        let lease = s.select("f").unwrap();
        let other = lease.worker().id();
        s.release("f", lease, Outcome::Completed);
        assert_eq!(pull.idle_queues().count("f", other), 1);
    }

    #[test]
    fn select_with_no_workers_fails_and_ids_are_not_reused() {
        let s = Scheduler::new(BalancerKind::LeastConnections, Vec::new());
        assert_eq!(s.select("f").unwrap_err(), NoWorkers);
        s.add(urls(&["http://a:1"]));
        let first = s.workers().as_slice()[0].id();
        s.remove(&[WorkerUrl::parse("http://a:1").unwrap()]).unwrap();
        s.add(urls(&["http://a:1"]));
        assert!(s.workers().as_slice()[0].id() > first);
    }

    #[test]
    fn another_worker_is_the_least_loaded_one_not_tried() {
        let s = Scheduler::new(BalancerKind::Random, urls(&["http://a:1", "http://b:1", "http://c:1"]));
        let ids: Vec<WorkerId> = s.workers().iter().map(|w| w.id()).collect();
        let busy = Lease::new(&s.workers().as_slice()[1]);
        let other = s.select_other(&[ids[0]]).unwrap();
        assert_eq!(other.worker().id(), ids[2], "b is busier than c");
        assert_eq!(other.worker().in_flight(), 1, "the other worker is leased");
        assert_eq!(s.select_other(&[ids[0], ids[2]]).unwrap().worker().id(), ids[1]);
        assert!(s.select_other(&ids).is_none(), "every worker tried");
        drop((busy, other));
        assert!(s.workers().iter().all(|w| w.in_flight() == 0));
    }
}
