//! The `Scheduler`: state shared by every core. The worker set is an
//! immutable snapshot behind an `ArcSwap`; changes publish a new one with a
//! compare-and-swap loop, then tell the balancer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};

use crate::balancer::{Answer, Balancer, BalancerKind, Outcome};
use crate::config::WorkerUrl;
use crate::worker::{Lease, Worker, WorkerId, WorkerSet};

/// A worker to add: its URL and the addresses it resolved to.
pub type NewWorker = (WorkerUrl, Vec<SocketAddr>);

pub struct Scheduler {
    kind: BalancerKind,
    balancer: Arc<dyn Balancer>,
    workers: ArcSwap<WorkerSet>,
    next_id: AtomicU64,
    total: Arc<AtomicUsize>,
}

/// `select` found no worker at all.
#[derive(Debug, PartialEq, Eq)]
pub struct NoWorkers;

impl Scheduler {
    pub fn new(kind: BalancerKind, workers: Vec<NewWorker>) -> Scheduler {
        Scheduler::with_balancer(kind, kind.build(), workers)
    }

    pub fn with_balancer(kind: BalancerKind, balancer: Arc<dyn Balancer>, workers: Vec<NewWorker>) -> Scheduler {
        let s = Scheduler {
            kind,
            balancer,
            workers: ArcSwap::from_pointee(WorkerSet::default()),
            next_id: AtomicU64::new(1),
            total: Arc::new(AtomicUsize::new(0)),
        };
        s.add(workers);
        s
    }

    pub fn kind(&self) -> BalancerKind {
        self.kind
    }

    pub fn balancer(&self) -> &dyn Balancer {
        &*self.balancer
    }

    /// The current worker set (one atomic load; hold it briefly).
    pub fn workers(&self) -> Guard<Arc<WorkerSet>> {
        self.workers.load()
    }

    /// Picks and leases a worker for `function`.
    pub fn select(&self, function: &str) -> Result<Lease, NoWorkers> {
        let workers = self.workers.load();
        if workers.is_empty() {
            return Err(NoWorkers);
        }
        Ok(self.balancer.select(&workers, function))
    }

    /// Leases the least loaded worker not in `tried`, if there is one: where
    /// a call goes when its connection to the chosen worker failed (nothing
    /// was sent, so any worker will do; the balancer's pick is what failed).
    pub fn select_other(&self, tried: &[WorkerId]) -> Option<Lease> {
        let workers = self.workers.load();
        let others = workers.iter().filter(|w| !tried.contains(&w.id()));
        others.min_by_key(|w| w.in_flight()).map(Lease::new)
    }

    /// Whether the balancer learns from answers (see `Balancer::learns`).
    pub fn learns(&self) -> bool {
        self.balancer.learns()
    }

    /// Tells the balancer what a completed call's answer said.
    pub fn observe(&self, function: &str, lease: &Lease, answer: Answer) {
        self.balancer.observe(function, lease, answer);
    }

    /// Ends a request: tells the balancer, then frees the lease. A worker
    /// removed meanwhile is not recorded as holding anything.
    pub fn release(&self, function: &str, lease: Lease, outcome: Outcome) {
        let present = self.workers.load().get(lease.worker().id()).is_some();
        let outcome = if present { outcome } else { Outcome::Failed };
        if outcome == Outcome::Failed {
            lease.worker().failed();
        }
        self.balancer.release(function, lease.worker(), outcome);
    }

    /// Adds the workers not present yet; returns the resulting set.
    pub fn add(&self, new: Vec<NewWorker>) -> Arc<WorkerSet> {
        let result: Result<_, ()> = self.update(|current| {
            let mut list = current.as_slice().to_vec();
            for (url, addrs) in &new {
                if list.iter().all(|w| w.url() != url) {
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    list.push(Arc::new(Worker::new(id, url.clone(), addrs.clone(), Arc::clone(&self.total))));
                }
            }
            Ok((list.len() != current.len()).then_some(list))
        });
        result.unwrap_or_else(|()| unreachable!())
    }

    /// Removes the workers; if any is absent, nothing changes and it is returned.
    pub fn remove(&self, urls: &[WorkerUrl]) -> Result<Arc<WorkerSet>, WorkerUrl> {
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
    pub fn sandbox_destroyed(&self, function: &str, host: &str) -> Option<bool> {
        let workers = self.workers.load();
        let worker = workers.iter().find(|w| w.is_named_by(host))?;
        Some(self.balancer.sandbox_destroyed(function, worker))
    }

    /// Publishes `change(current)` (if it is `Some`) with a compare-and-swap,
    /// retrying against whatever another core published meanwhile.
    fn update<E>(
        &self,
        change: impl Fn(&WorkerSet) -> Result<Option<Vec<Arc<Worker>>>, E>,
    ) -> Result<Arc<WorkerSet>, E> {
        let mut current = self.workers.load_full();
        loop {
            let Some(list) = change(&current)? else { return Ok(current) };
            let next = Arc::new(WorkerSet::new(current.generation() + 1, list));
            let prev = self.workers.compare_and_swap(&current, Arc::clone(&next));
            if Arc::ptr_eq(&prev, &current) {
                self.balancer.workers_changed(&next);
                return Ok(next);
            }
            current = Guard::into_inner(prev);
        }
    }
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
