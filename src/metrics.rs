//! `GET /metrics` in the Prometheus text format.
//!
//! Each core counts into its own cache-aligned block of atomics, which only
//! that core writes (a relaxed load and store: no locked instruction, no
//! shared cache line on the request path); a scrape sums the blocks. Worker
//! counters live on the workers (`Worker::assigned`, `failures`), beside
//! the in-flight count each call already updates.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::scheduler::Scheduler;
use crate::worker::{Worker, WorkerSet};

/// Upper bounds (seconds) of the call-duration buckets.
const CALL_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Upper bounds (seconds) of the decision-time buckets.
const DECISION_BUCKETS: [f64; 8] = [50e-9, 100e-9, 200e-9, 500e-9, 1e-6, 2e-6, 5e-6, 10e-6];

/// One in this many decisions is timed (two clock reads cost about as much
/// as a decision).
pub(crate) const DECISION_SAMPLE: u32 = 64;

/// How a call's worker was chosen. `Warm` and `Fallback` are counted for
/// balancers that know warm instances; the others for every balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It took a warm idle instance.
    Warm,
    /// None was known: another rule chose (a cold start, most likely).
    Fallback,
    /// Every worker was full: the call waited in the queue for a slot.
    Queued,
    /// A worker answered that it was overloaded (429, or 503 with
    /// `Retry-After`): the call went to another worker.
    Bounced,
    /// A connection to the worker failed: the call went to another worker.
    Retried,
}

/// The label of each `Decision`, in order.
const DECISIONS: [&str; 5] = ["warm", "fallback", "queued", "bounced", "retried"];

/// A histogram one core writes: counts per bucket (the last is +Inf) and
/// the sum in nanoseconds.
struct Histogram<const N: usize> {
    counts: [AtomicU64; N],
    sum_ns: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Histogram { counts: std::array::from_fn(|_| AtomicU64::new(0)), sum_ns: AtomicU64::new(0) }
    }
}

impl<const N: usize> Histogram<N> {
    fn observe(&self, bounds: &[f64], took: Duration) {
        let seconds = took.as_secs_f64();
        let i = bounds.iter().position(|&b| seconds <= b).unwrap_or(N - 1);
        bump(&self.counts[i], 1);
        bump(&self.sum_ns, took.as_nanos().min(u64::MAX.into()) as u64);
    }
}

/// Adds to a counter only this core writes.
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(by), Ordering::Relaxed);
}

/// What one core counts.
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Core {
    /// `/run` answers by status class (1xx to 5xx).
    calls: [AtomicU64; 5],
    decisions: [AtomicU64; DECISIONS.len()],
    /// `destroySandbox` reports that removed an entry, and that found none.
    destroyed: [AtomicU64; 2],
    /// Client connections accepted: on the main listener, on `admin.listen`.
    accepted: [AtomicU64; 2],
    call_duration: Histogram<{ CALL_BUCKETS.len() + 1 }>,
    decision_duration: Histogram<{ DECISION_BUCKETS.len() + 1 }>,
}

impl Core {
    /// A `/run` call answered with `status` after `took` (from its head to
    /// the end of the worker's part).
    pub(crate) fn call(&self, status: u16, took: Duration) {
        if let Some(class) = (status / 100).checked_sub(1).filter(|&c| c < 5) {
            bump(&self.calls[usize::from(class)], 1);
        }
        self.call_duration.observe(&CALL_BUCKETS, took);
    }

    pub(crate) fn decision(&self, decision: Decision) {
        bump(&self.decisions[decision as usize], 1);
    }

    /// The `/run` calls this core answered.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn decision_time(&self, took: Duration) {
        self.decision_duration.observe(&DECISION_BUCKETS, took);
    }

    pub(crate) fn sandbox_destroyed(&self, removed: bool) {
        bump(&self.destroyed[usize::from(!removed)], 1);
    }

    /// A client connection accepted here (`admin`: on `admin.listen`).
    pub(crate) fn accepted(&self, admin: bool) {
        bump(&self.accepted[usize::from(admin)], 1);
    }
}

/// Every core's counters.
pub struct Metrics {
    cores: Box<[Core]>,
}

impl Metrics {
    pub fn new(cores: usize) -> Metrics {
        Metrics { cores: (0..cores.max(1)).map(|_| Core::default()).collect() }
    }

    /// Core `i`'s counters: only that core may write them.
    pub(crate) fn core(&self, i: usize) -> &Core {
        &self.cores[i % self.cores.len()]
    }

    fn sum(&self, get: impl Fn(&Core) -> &AtomicU64) -> u64 {
        self.cores.iter().map(|c| get(c).load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }

    /// The text of a scrape, in the text format (version 0.0.4); `open` is
    /// each shard's open client connections.
    pub fn render(&self, scheduler: &Scheduler, open: &[usize]) -> String {
        let mut out = String::new();
        let o = &mut out;
        family(o, "hiku_build_info", "gauge", "Always 1: the version and commit of the running hiku, as labels.");
        let (version, commit) = (env!("CARGO_PKG_VERSION"), env!("HIKU_COMMIT"));
        let _ = writeln!(o, "hiku_build_info{{version=\"{version}\",commit=\"{commit}\"}} 1");
        family(o, "hiku_calls_total", "counter", "Calls to /run answered, by status class.");
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(o, "hiku_calls_total{{class=\"{class}\"}} {}", self.sum(|c| &c.calls[i]));
        }
        let help = "How calls found their worker: a warm idle instance or the fallback rule (balancers that \
                    track warm instances), a wait in the queue, or another worker after an overloaded answer \
                    (bounced) or a failed connection (retried).";
        family(o, "hiku_decisions_total", "counter", help);
        for (i, decision) in DECISIONS.iter().enumerate() {
            let _ = writeln!(o, "hiku_decisions_total{{decision=\"{decision}\"}} {}", self.sum(|c| &c.decisions[i]));
        }
        family(o, "hiku_destroy_sandbox_total", "counter", "destroySandbox reports, by whether an entry was removed.");
        for (i, removed) in ["true", "false"].iter().enumerate() {
            let _ =
                writeln!(o, "hiku_destroy_sandbox_total{{removed=\"{removed}\"}} {}", self.sum(|c| &c.destroyed[i]));
        }

        let workers = scheduler.workers();
        render_workers(o, &workers);
        family(o, "hiku_connections_open", "gauge", "Client connections open, by the shard (core) serving them.");
        for (shard, n) in open.iter().enumerate() {
            let _ = writeln!(o, "hiku_connections_open{{shard=\"{shard}\"}} {n}");
        }
        let help = "Client connections accepted, by listener (main, or admin: admin.listen).";
        family(o, "hiku_connections_accepted_total", "counter", help);
        for (i, listener) in ["main", "admin"].iter().enumerate() {
            let _ = writeln!(
                o,
                "hiku_connections_accepted_total{{listener=\"{listener}\"}} {}",
                self.sum(|c| &c.accepted[i])
            );
        }
        family(o, "hiku_queue_waiting", "gauge", "Calls waiting for a worker with room (every worker was full).");
        let _ = writeln!(o, "hiku_queue_waiting {}", scheduler.waiting_calls().count());
        if let Some(idle) = scheduler.balancer().idle_instances() {
            let entries = idle.entries(&workers, None);
            let total: u64 = entries.iter().flat_map(|(_, counts)| counts).map(|(_, n)| n).sum();
            family(o, "hiku_idle_instances", "gauge", "Warm idle instances the balancer knows of.");
            let _ = writeln!(o, "hiku_idle_instances {total}");
            family(o, "hiku_idle_functions", "gauge", "Functions with a warm idle instance.");
            let _ = writeln!(o, "hiku_idle_functions {}", entries.len());
        }

        let name = "hiku_call_duration_seconds";
        family(o, name, "histogram", "From a /run call's start to the end of its worker's answer.");
        self.histogram(o, name, &CALL_BUCKETS, |c| &c.call_duration.counts, |c| &c.call_duration.sum_ns);
        let name = "hiku_decision_duration_seconds";
        let help = "Time the balancer took to choose a worker (one decision in 64 is timed).";
        family(o, name, "histogram", help);
        self.histogram(o, name, &DECISION_BUCKETS, |c| &c.decision_duration.counts, |c| &c.decision_duration.sum_ns);
        out
    }

    fn histogram(
        &self,
        out: &mut String,
        name: &str,
        bounds: &[f64],
        counts: impl Fn(&Core) -> &[AtomicU64],
        sum_ns: impl Fn(&Core) -> &AtomicU64,
    ) {
        let mut cumulative = 0u64;
        for (i, bound) in bounds.iter().map(|b| b.to_string()).chain(["+Inf".to_string()]).enumerate() {
            cumulative = cumulative.wrapping_add(self.sum(|c| &counts(c)[i]));
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_sum {}", self.sum(&sum_ns) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// A metric family's `HELP` and `TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The per-worker families, a sample per worker of `workers`.
fn render_workers(o: &mut String, workers: &WorkerSet) {
    type Read = fn(&Worker) -> u64;
    let per_worker: [(&str, &str, &str, Read); 5] = [
        ("hiku_worker_in_flight", "gauge", "Calls in flight on the worker.", |w| w.in_flight() as u64),
        ("hiku_worker_assigned_total", "counter", "Calls assigned to the worker.", |w| w.assigned()),
        ("hiku_worker_failures_total", "counter", "Calls on the worker that got no usable answer.", |w| w.failures()),
        ("hiku_worker_ejected", "gauge", "1 while the worker is ejected (health).", |w| u64::from(w.is_ejected())),
        ("hiku_worker_ejections_total", "counter", "Times the worker was ejected.", |w| w.ejections()),
    ];
    for (name, kind, help, read) in per_worker {
        family(o, name, kind, help);
        for w in workers.iter() {
            let _ = writeln!(o, "{name}{{worker=\"{}\"}} {}", escape(w.url().as_str()), read(w));
        }
    }
    family(o, "hiku_worker_capacity", "gauge", "The most calls the worker takes at once (+Inf: no bound).");
    for w in workers.iter() {
        let capacity = match w.capacity() {
            usize::MAX => "+Inf".to_string(),
            n => n.to_string(),
        };
        let _ = writeln!(o, "hiku_worker_capacity{{worker=\"{}\"}} {capacity}", escape(w.url().as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::BalancerKind;
    use crate::worker::WorkerUrl;

    #[test]
    fn counts_from_every_core_are_summed_into_the_text_format() {
        let m = Metrics::new(2);
        m.core(0).call(200, Duration::from_millis(3));
        m.core(1).call(204, Duration::from_millis(30));
        m.core(1).call(502, Duration::from_secs(20));
        m.core(0).decision(Decision::Warm);
        m.core(1).decision(Decision::Fallback);
        m.core(1).decision_time(Duration::from_nanos(150));
        m.core(0).decision(Decision::Retried);
        m.core(1).decision(Decision::Bounced);
        m.core(0).decision(Decision::Bounced);
        m.core(0).sandbox_destroyed(true);
        m.core(0).accepted(false);
        m.core(1).accepted(false);
        m.core(1).accepted(true);
        let s = Scheduler::new(BalancerKind::PullBased, vec![(WorkerUrl::parse("http://w1:1").unwrap(), vec![])]);
        let lease = s.select("f").unwrap();
        s.release("f", lease, crate::balancer::Outcome::Completed);
        let text = m.render(&s, &[3, 4]);
        let build = format!(
            "hiku_build_info{{version=\"{}\",commit=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            env!("HIKU_COMMIT")
        );
        for line in [
            build.as_str(),
            "hiku_calls_total{class=\"2xx\"} 2",
            "hiku_calls_total{class=\"5xx\"} 1",
            "hiku_decisions_total{decision=\"warm\"} 1",
            "hiku_decisions_total{decision=\"retried\"} 1",
            "hiku_decisions_total{decision=\"bounced\"} 2",
            "hiku_decisions_total{decision=\"queued\"} 0",
            "hiku_destroy_sandbox_total{removed=\"true\"} 1",
            "hiku_worker_assigned_total{worker=\"http://w1:1\"} 1",
            "hiku_worker_in_flight{worker=\"http://w1:1\"} 0",
            "hiku_idle_instances 1",
            "hiku_worker_capacity{worker=\"http://w1:1\"} +Inf",
            "hiku_queue_waiting 0",
            "hiku_connections_open{shard=\"0\"} 3",
            "hiku_connections_open{shard=\"1\"} 4",
            "hiku_connections_accepted_total{listener=\"main\"} 2",
            "hiku_connections_accepted_total{listener=\"admin\"} 1",
            "hiku_call_duration_seconds_bucket{le=\"0.005\"} 1",
            "hiku_call_duration_seconds_bucket{le=\"0.05\"} 2",
            "hiku_call_duration_seconds_bucket{le=\"10\"} 2",
            "hiku_call_duration_seconds_bucket{le=\"+Inf\"} 3",
            "hiku_call_duration_seconds_count 3",
            "hiku_call_duration_seconds_sum 20.033",
            "hiku_decision_duration_seconds_bucket{le=\"0.0000002\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in\n{text}");
        }
    }
}
