//! Predictive scheduling (after ETAS: predict each call's execution time
//! from history, and place it where it finishes first).
//!
//! A call for f can go to a worker holding an idle instance of f (as
//! pull-based learns them: a completed call leaves one, `destroySandbox`
//! removes one) or, started cold, to the least-loaded worker. Each is
//! priced as the call's expected service time times the worker's slowdown,
//! `max(1, (in_flight + 1) / cores)` (processor sharing over its cores)
//! plus the slowdown it brings the calls already there once the cores are
//! full (it is the mean latency that is minimised), and the cheapest wins:
//! among equals the least loaded, and an idle instance over a cold start.
//!
//! The expected service time is learnt from the answers hiku relays: per
//! function, exponentially weighted means of warm and cold service time
//! (the worker's `X-Service-Ms` if it sends one, else the time to its
//! answer, split by its `X-Cold-Start`). An idle instance is not always
//! warm: workers drop instances on their own schedule (OpenLambda kills a
//! function's instances when it pulls its code again, every 5 s of use).
//! So the chance that a call sent to an idle instance starts cold anyway is
//! learnt too, by the instance's age: the time since that worker last
//! started the function cold. The chance is shared by all functions (the
//! schedule is the worker's), for ages in quarter-octave steps from 32 ms
//! to 2 minutes, so a schedule on any time scale is learnt as sharply.
//!
//! Until a function's cold time is known (without `X-Cold-Start`, never),
//! its calls take an idle instance wherever there is one, on the least
//! loaded worker holding one, as pull-based does. State is tables of
//! atomics indexed by hash, sized when built (functions in two-way sets,
//! the least recently answered giving way; a collision costs estimates,
//! never correctness): no lock, no allocation.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use ahash::RandomState;

use super::idle_queues::IdleQueues;
use super::least_connections::least_loaded;
use super::pull_based::PullBased;
use super::strategy::{Answer, Balancer, Outcome};
use crate::worker::{Lease, Worker, WorkerId, WorkerSet};

/// Cores per worker unless the config says (the paper's m5.xlarge: 4).
pub(crate) const DEFAULT_WORKER_CORES: u64 = 4;

/// Function slots: `limits.max_functions` rounded up, within these bounds.
const MIN_FUNCTION_SLOTS: usize = 1 << 12;
const MAX_FUNCTION_SLOTS: usize = 1 << 16;
const PAIR_SLOTS: usize = 1 << 16;

/// Age buckets: one below 32 ms, four per octave up to 2^17 ms (131 s), one
/// for older, one for an instance whose worker never started the function
/// cold.
const OLDEST: usize = 1 + 4 * (17 - 5);
const NEVER: usize = OLDEST + 1;
const BUCKETS: usize = NEVER + 1;

/// The bucket of an age in ms: quarter octaves (1, 1.25, 1.5, 1.75 times a
/// power of two) from 32 ms.
fn bucket_of(age_ms: u64) -> usize {
    if age_ms < 32 {
        return 0;
    }
    let octave = 63 - age_ms.leading_zeros() as usize;
    let quarter = ((age_ms >> (octave - 2)) & 3) as usize;
    (1 + 4 * (octave - 5) + quarter).min(OLDEST)
}

/// A new sample's weight in a mean: 1/8.
const WEIGHT_SHIFT: u32 = 3;

/// Low bits of a price that hold the worker's calls in flight (tie-break).
const TIE_BITS: u32 = 8;
const TIE_MAX: u64 = (1 << TIE_BITS) - 1;

/// Probability 1 in the fixed point of `cold_chance`.
const ONE: u64 = 1 << 16;

const SEEDS: [u64; 4] = [0x7072_6564_6963_7469, 0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9, 0x94d0_49bb_1331_11eb];

#[derive(Default)]
struct FunctionStats {
    /// The function's hash (made odd, so 0 is an empty slot).
    tag: AtomicU64,
    warm_us: AtomicU32,
    cold_us: AtomicU32,
    /// When it was last answered (balancer ms): the older of a set gives way.
    answered: AtomicU64,
}

#[derive(Default)]
struct PairStats {
    tag: AtomicU64,
    /// When the worker last started the function cold (balancer ms + 1; 0: never).
    last_cold: AtomicU64,
}

pub(crate) struct Predictive {
    /// The idle instances, kept as pull-based keeps them.
    pull: PullBased,
    cores: u64,
    epoch: Instant,
    hasher: RandomState,
    functions: Box<[FunctionStats]>,
    pairs: Box<[PairStats]>,
    /// Per age bucket: the chance (of `ONE`) that an idle instance starts cold.
    cold_chance: [AtomicU64; BUCKETS],
}

/// An odd 64-bit mix of a function's hash and a worker id.
fn pair_hash(function: u64, worker: WorkerId) -> u64 {
    let mut x = function ^ worker.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 31)) | 1
}

/// `mean` moved by a new `sample` (the first sample is taken as is).
fn blend(mean: &AtomicU32, sample: u32) {
    let old = mean.load(Ordering::Relaxed);
    let new = match old {
        0 => sample,
        _ => (i64::from(old) + ((i64::from(sample) - i64::from(old)) >> WEIGHT_SHIFT)) as u32,
    };
    mean.store(new.max(1), Ordering::Relaxed);
}

impl Predictive {
    pub(crate) fn new(max_functions: usize, cores: u64) -> Predictive {
        Predictive {
            pull: PullBased::with_max_functions(max_functions),
            cores: cores.max(1),
            epoch: Instant::now(),
            hasher: RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]),
            functions: (0..max_functions.next_power_of_two().clamp(MIN_FUNCTION_SLOTS, MAX_FUNCTION_SLOTS))
                .map(|_| FunctionStats::default())
                .collect(),
            pairs: (0..PAIR_SLOTS).map(|_| PairStats::default()).collect(),
            cold_chance: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn function_hash(&self, function: &str) -> u64 {
        self.hasher.hash_one(function) | 1
    }

    /// The two slots `hash` may live in.
    fn function_set(&self, hash: u64) -> &[FunctionStats] {
        let set = (hash >> 1) as usize & (self.functions.len() / 2 - 1);
        &self.functions[2 * set..2 * set + 2]
    }

    fn function_slot(&self, hash: u64) -> Option<&FunctionStats> {
        self.function_set(hash).iter().find(|s| s.tag.load(Ordering::Relaxed) == hash)
    }

    fn pair_slot(&self, hash: u64) -> &PairStats {
        &self.pairs[(hash >> 1) as usize % PAIR_SLOTS]
    }

    /// The function's warm and cold service time in µs (at least 1), once
    /// a cold start of it was answered.
    fn service_us(&self, hash: u64) -> Option<(u64, u64)> {
        let slot = self.function_slot(hash)?;
        let cold = u64::from(slot.cold_us.load(Ordering::Relaxed));
        // No warm answer yet: no reason to think a warm start is faster.
        let warm = match u64::from(slot.warm_us.load(Ordering::Relaxed)) {
            0 => cold,
            warm => warm.min(cold),
        };
        (cold > 0).then_some((warm.max(1), cold))
    }

    /// The age bucket of the function's instances on `worker` at `now`.
    fn age_bucket(&self, function: u64, worker: WorkerId, now: u64) -> usize {
        let hash = pair_hash(function, worker);
        let slot = self.pair_slot(hash);
        let last = slot.last_cold.load(Ordering::Relaxed);
        if slot.tag.load(Ordering::Relaxed) != hash || last == 0 {
            return NEVER;
        }
        bucket_of(now.saturating_sub(last - 1))
    }

    /// The decision at balancer time `now` (ms).
    fn select_at(&self, workers: &WorkerSet, function: &str, now: u64) -> Lease {
        let hash = self.function_hash(function);
        let warm_lease =
            |w: &std::sync::Arc<Worker>| Lease::with_hint(w, self.age_bucket(hash, w.id(), now) as u32 + 1);
        let Some((warm, cold)) = self.service_us(hash) else {
            // Nothing to price a cold start by: any idle instance, as pull-based.
            let idle = self.pull.idle_queues().take_cheapest(function, workers, |w| w.available_load(), u64::MAX);
            return idle.map_or_else(|| Lease::new(least_loaded(workers.as_slice())), warm_lease);
        };
        // Processor sharing over `cores`: the call's own slowdown, plus the
        // one it brings the calls already there once the cores are full
        // (the mean latency is what is minimised, not this call's alone).
        // A price is the predicted time (µs) times the slowdown, then the
        // calls in flight as a tie-break: among equals, the least loaded.
        let price = |time: u64, w: &Worker| {
            let running = w.in_flight() as u64 + 1;
            let slowdown = running.max(self.cores) + running.saturating_sub(self.cores);
            time.saturating_mul(slowdown).min(u64::MAX >> TIE_BITS) << TIE_BITS | running.min(TIE_MAX)
        };
        let idle_cost = |w: &std::sync::Arc<Worker>| {
            if !w.is_available() {
                return u64::MAX;
            }
            let chance = self.cold_chance[self.age_bucket(hash, w.id(), now)].load(Ordering::Relaxed);
            price(warm + (cold - warm) * chance / ONE, w)
        };
        // No cold start costs less than on an idle worker: an idle instance
        // priced within that wins without looking at every worker.
        let cheapest_cold = cold.saturating_mul(self.cores).min(u64::MAX >> TIE_BITS) << TIE_BITS | TIE_MAX;
        if let Some(w) = self.pull.idle_queues().take_cheapest(function, workers, idle_cost, cheapest_cold + 1) {
            return warm_lease(w);
        }
        let fallback = least_loaded(workers.as_slice());
        let cold_cost = price(cold, fallback) | TIE_MAX;
        match self.pull.idle_queues().take_cheapest(function, workers, idle_cost, cold_cost + 1) {
            Some(w) => warm_lease(w),
            None => Lease::new(fallback),
        }
    }

    /// Learns from an answer to a call sent at balancer time `sent` (ms).
    fn observe_at(&self, function: &str, lease: &Lease, answer: Answer, sent: u64) {
        let hash = self.function_hash(function);
        let slot = match self.function_slot(hash) {
            Some(slot) => slot,
            None => {
                // A new function takes the set's less recently answered slot.
                let set = self.function_set(hash);
                let answered = |s: &FunctionStats| s.answered.load(Ordering::Relaxed);
                let slot = set.iter().min_by_key(|s| answered(s)).expect("two slots");
                slot.warm_us.store(0, Ordering::Relaxed);
                slot.cold_us.store(0, Ordering::Relaxed);
                slot.tag.store(hash, Ordering::Relaxed);
                slot
            }
        };
        slot.answered.store(sent + 1, Ordering::Relaxed);
        let service_ms = answer.service_ms.unwrap_or(answer.elapsed.as_secs_f64() * 1000.0);
        let service_us = (service_ms * 1000.0).clamp(1.0, f64::from(u32::MAX)) as u32;
        match answer.cold {
            Some(true) => blend(&slot.cold_us, service_us),
            Some(false) | None => blend(&slot.warm_us, service_us),
        }
        let Some(cold) = answer.cold else { return };
        if let Some(bucket) = (lease.hint() as usize).checked_sub(1).filter(|&b| b < BUCKETS) {
            let chance = &self.cold_chance[bucket];
            let old = chance.load(Ordering::Relaxed) as i64;
            let sample = if cold { ONE as i64 } else { 0 };
            chance.store((old + ((sample - old) >> WEIGHT_SHIFT)) as u64, Ordering::Relaxed);
        }
        if cold {
            let pair = pair_hash(hash, lease.worker().id());
            let slot = self.pair_slot(pair);
            if slot.tag.load(Ordering::Relaxed) != pair {
                slot.last_cold.store(0, Ordering::Relaxed);
                slot.tag.store(pair, Ordering::Relaxed);
            }
            slot.last_cold.fetch_max(sent + 1, Ordering::Relaxed);
        }
    }
}

impl Balancer for Predictive {
    fn select(&self, workers: &WorkerSet, function: &str) -> Lease {
        self.select_at(workers, function, self.now_ms())
    }

    fn release(&self, function: &str, worker: &Worker, outcome: Outcome) {
        self.pull.release(function, worker, outcome);
    }

    fn sandbox_destroyed(&self, function: &str, worker: &Worker) -> bool {
        self.pull.sandbox_destroyed(function, worker)
    }

    fn workers_changed(&self, workers: &WorkerSet) {
        self.pull.workers_changed(workers);
    }

    fn idle_instances(&self) -> Option<&IdleQueues> {
        self.pull.idle_instances()
    }

    fn learns(&self) -> bool {
        true
    }

    fn observe(&self, function: &str, lease: &Lease, answer: Answer) {
        let sent = answer.sent_at.saturating_duration_since(self.epoch).as_millis() as u64;
        self.observe_at(function, lease, answer, sent);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::worker::tests::set_of;

    fn answer(cold: bool, service_ms: f64) -> Answer {
        let elapsed = Duration::from_millis(service_ms as u64);
        Answer { sent_at: Instant::now(), elapsed, cold: Some(cold), service_ms: Some(service_ms) }
    }

    /// Sends a call for `f` at `now` and answers it as `cold` in `ms`.
    fn call(p: &Predictive, set: &WorkerSet, f: &str, now: u64, cold: bool, ms: f64) {
        let lease = p.select_at(set, f, now);
        p.observe_at(f, &lease, answer(cold, ms), now);
        p.release(f, lease.worker(), Outcome::Completed);
    }

    #[test]
    fn ages_fall_in_quarter_octaves() {
        assert_eq!((bucket_of(0), bucket_of(31), bucket_of(32), bucket_of(39), bucket_of(40)), (0, 0, 1, 1, 2));
        assert_eq!((bucket_of(56), bucket_of(63), bucket_of(64)), (4, 4, 5));
        assert_eq!((bucket_of(4096), bucket_of(5119), bucket_of(5120)), (29, 29, 30));
        assert_eq!(bucket_of(1 << 17), OLDEST);
        assert_eq!(bucket_of(u64::MAX), OLDEST);
    }

    #[test]
    fn untaught_it_is_pull_based() {
        let p = Predictive::new(64, 4);
        let set = set_of(3);
        let first = p.select(&set, "f");
        p.release("f", first.worker(), Outcome::Completed);
        let warm = first.worker().id();
        drop(first);
        // The idle instance is taken, then there is none: least loaded.
        let again = p.select(&set, "f");
        assert_eq!(again.worker().id(), warm);
        let other = p.select(&set, "f");
        assert_ne!(other.worker().id(), warm);
    }

    #[test]
    fn service_times_are_learnt_warm_and_cold() {
        let p = Predictive::new(64, 4);
        let set = set_of(1);
        call(&p, &set, "f", 0, true, 500.0);
        call(&p, &set, "f", 1000, false, 100.0);
        assert_eq!(p.service_us(p.function_hash("f")), Some((100_000, 500_000)));
        call(&p, &set, "f", 2000, false, 180.0);
        // 100 + (180 - 100) / 8.
        assert_eq!(p.service_us(p.function_hash("f")), Some((110_000, 500_000)));
        assert_eq!(p.service_us(p.function_hash("g")), None);
        // Warm answers alone give no cold time to price by.
        call(&p, &set, "h", 0, false, 50.0);
        assert_eq!(p.service_us(p.function_hash("h")), None);
    }

    #[test]
    fn with_no_cold_time_known_a_warm_instance_is_taken_even_on_a_loaded_worker() {
        let p = Predictive::new(64, 4);
        let set = set_of(2);
        let a = &set.as_slice()[0];
        let _busy: Vec<Lease> = (0..6).map(|_| Lease::new(a)).collect();
        p.pull.idle_queues().push("f", a.id());
        assert_eq!(p.select_at(&set, "f", 0).worker().id(), a.id());
    }

    #[test]
    fn functions_sharing_a_set_keep_their_estimates_until_a_third_comes() {
        let p = Predictive::new(64, 4);
        let set = set_of(1);
        let sets = p.functions.len() / 2;
        let set_of_name = |name: &str| (p.function_hash(name) >> 1) as usize & (sets - 1);
        let names: Vec<String> =
            (0..).map(|i| format!("f{i}")).filter(|n| set_of_name(n) == set_of_name("f0")).take(3).collect();
        call(&p, &set, &names[0], 0, true, 300.0);
        call(&p, &set, &names[1], 1000, true, 400.0);
        assert_eq!(p.service_us(p.function_hash(&names[0])), Some((300_000, 300_000)));
        assert_eq!(p.service_us(p.function_hash(&names[1])), Some((400_000, 400_000)));
        call(&p, &set, &names[0], 2000, false, 100.0);
        // The third takes the place of the one answered longest ago.
        call(&p, &set, &names[2], 3000, true, 500.0);
        assert_eq!(p.service_us(p.function_hash(&names[0])), Some((100_000, 300_000)));
        assert_eq!(p.service_us(p.function_hash(&names[1])), None);
    }

    #[test]
    fn an_instance_of_an_age_learnt_cold_loses_to_a_fresh_one() {
        let p = Predictive::new(64, 4);
        let set = set_of(2);
        let (a, b) = (&set.as_slice()[0], &set.as_slice()[1]);
        // Teach: instances last started cold 15 s ago or more start cold.
        p.observe_at("f", &Lease::new(a), answer(false, 100.0), 100);
        for i in 0..40 {
            let at = 20_000 * (i + 1) + 500;
            p.observe_at("f", &Lease::with_hint(a, OLDEST as u32 + 1), answer(true, 500.0), at);
        }
        assert!(p.cold_chance[OLDEST].load(Ordering::Relaxed) > ONE * 9 / 10);
        // a last started f cold long ago, b half a second ago: both hold an idle instance.
        let now = 1_000_000;
        p.observe_at("f", &Lease::new(b), answer(true, 500.0), now - 500);
        p.pull.idle_queues().push("f", a.id());
        p.pull.idle_queues().push("f", b.id());
        let lease = p.select_at(&set, "f", now);
        assert_eq!(lease.worker().id(), b.id());
        assert_eq!(lease.hint(), bucket_of(500) as u32 + 1);
    }

    #[test]
    fn a_busy_warm_worker_loses_to_an_idle_one_when_waiting_costs_more_than_a_cold_start() {
        let p = Predictive::new(64, 2);
        let set = set_of(2);
        let (a, b) = (&set.as_slice()[0], &set.as_slice()[1]);
        p.observe_at("f", &Lease::new(a), answer(true, 200.0), 200);
        p.observe_at("f", &Lease::new(a), answer(false, 100.0), 1100);
        // a holds an idle instance, and 7 calls.
        let busy: Vec<Lease> = (0..7).map(|_| Lease::new(a)).collect();
        p.pull.idle_queues().push("f", a.id());
        // Warm on a: 100 ms x (8 + 6) (its 8 calls on 2 cores slowed, and
        // the 6 it slows); cold on b: 200 ms x 2.
        assert_eq!(p.select_at(&set, "f", 2000).worker().id(), b.id());
        // With no other call on a, its warm instance wins.
        drop(busy);
        assert_eq!(p.select_at(&set, "f", 2000).worker().id(), a.id());
    }

    #[test]
    fn removed_workers_lose_their_instances() {
        let p = Predictive::new(64, 4);
        let set = set_of(2);
        p.pull.idle_queues().push("f", 2);
        let smaller = crate::worker::WorkerSet::new(2, vec![set.as_slice()[0].clone()]);
        p.workers_changed(&smaller);
        assert_eq!(p.pull.idle_queues().count("f", 2), 0);
        assert!(!p.sandbox_destroyed("g", &set.as_slice()[0]));
    }
}
