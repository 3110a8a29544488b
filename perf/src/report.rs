//! One run's calls summarised as the paper reports them, and the report's
//! three forms: a table for the terminal, JSON (the schema of issue 3) and
//! CSV.

use serde::{Deserialize, Serialize};

use crate::loadgen::Call;
use crate::metrics::{load_cv, mean, percentile};
use crate::scale::TimeScale;
use crate::workload::PHASE_VUS;

/// Everything written to `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub runs: Vec<Run>,
}

/// One scheduler with one balancer. Latencies are paper-scale ms; the added
/// latency (the scheduler's own cost) is real ms, since it does not shrink
/// with the time scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub scheduler: String,
    pub balancer: String,
    /// Calls completed (a 200 from a worker).
    pub calls: u64,
    /// Calls that got no answer or another status.
    pub failed: u64,
    /// Calls in flight when their phase ended, cut as k6 cuts them.
    #[serde(default)]
    pub cut: u64,
    /// Completed calls per paper-scale second over the whole run.
    pub throughput_rps: f64,
    pub latency_ms: Latency,
    pub cold_start_rate: f64,
    /// Mean over seconds of the CV of calls assigned per worker.
    pub load_cv: f64,
    pub added_latency_ms: Added,
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Added {
    pub p50: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub vus: usize,
    pub throughput_rps: f64,
}

/// The latencies of a run's completed calls, ascending (paper-scale ms).
pub fn latencies(calls: &[Call]) -> Vec<f64> {
    let mut latencies: Vec<f64> = calls.iter().filter(|c| c.completed()).map(|c| c.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// Summarises a run of `calls` over `workers` (their URLs, as in
/// `X-Worker`), with phases of `phase_ms` paper-scale ms.
pub fn summarize(
    scheduler: &str,
    balancer: &str,
    calls: &[Call],
    workers: &[String],
    phase_ms: f64,
    scale: TimeScale,
) -> Run {
    let completed: Vec<&Call> = calls.iter().filter(|c| c.completed()).collect();
    let latencies = latencies(calls);
    let mut added: Vec<f64> =
        completed.iter().map(|c| (c.latency_ms - c.service_ms.unwrap_or(0.0)) * scale.factor()).collect();
    added.sort_by(f64::total_cmp);
    let cold = completed.iter().filter(|c| c.cold == Some(true)).count();
    let worker_of = |c: &&Call| workers.iter().position(|w| Some(w) == c.worker.as_ref());
    let assignments = completed.iter().filter_map(|c| Some(((c.start_ms / 1000.0) as usize, worker_of(c)?)));
    let phase_s = phase_ms / 1000.0;
    let phases = (0..PHASE_VUS.len())
        .map(|p| {
            let in_phase = |c: &&&Call| (c.start_ms / phase_ms) as usize == p;
            Phase { vus: PHASE_VUS[p], throughput_rps: completed.iter().filter(in_phase).count() as f64 / phase_s }
        })
        .collect();
    Run {
        scheduler: scheduler.to_string(),
        balancer: balancer.to_string(),
        calls: completed.len() as u64,
        failed: calls.iter().filter(|c| !c.completed() && !c.cut).count() as u64,
        cut: calls.iter().filter(|c| c.cut).count() as u64,
        throughput_rps: completed.len() as f64 / (phase_s * PHASE_VUS.len() as f64),
        latency_ms: Latency {
            mean: mean(&latencies),
            p50: percentile(&latencies, 50.0),
            p90: percentile(&latencies, 90.0),
            p95: percentile(&latencies, 95.0),
            p99: percentile(&latencies, 99.0),
        },
        cold_start_rate: cold as f64 / completed.len() as f64,
        load_cv: load_cv(assignments, workers.len()).unwrap_or(f64::NAN),
        added_latency_ms: Added { p50: percentile(&added, 50.0), p99: percentile(&added, 99.0) },
        phases,
    }
}

/// The runs as a fixed-width table with a line saying what the units are.
pub fn table(runs: &[Run]) -> String {
    let mut out = format!(
        "{:<10} {:<17} {:>6} {:>6} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>6} {:>5} {:>7} {:>7}",
        "scheduler",
        "balancer",
        "calls",
        "failed",
        "cut",
        "rps",
        "mean",
        "p50",
        "p90",
        "p95",
        "p99",
        "cold%",
        "cv",
        "+p50",
        "+p99"
    );
    for vus in PHASE_VUS {
        out += &format!(" {:>7}", format!("rps@{vus}"));
    }
    out.push('\n');
    for r in runs {
        let l = &r.latency_ms;
        out += &format!(
            "{:<10} {:<17} {:>6} {:>6} {:>5} {:>6.1} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>6.0} {:>6.1} {:>5.2} {:>7.3} {:>7.3}",
            r.scheduler,
            r.balancer,
            r.calls,
            r.failed,
            r.cut,
            r.throughput_rps,
            l.mean,
            l.p50,
            l.p90,
            l.p95,
            l.p99,
            r.cold_start_rate * 100.0,
            r.load_cv,
            r.added_latency_ms.p50,
            r.added_latency_ms.p99
        );
        for p in &r.phases {
            out += &format!(" {:>7.1}", p.throughput_rps);
        }
        out.push('\n');
    }
    out + "rps, latencies (ms): paper scale; cv: load imbalance; +p50/+p99: latency the scheduler adds (real ms)\n"
}

/// The runs as CSV, one row each, phases as `rps_<vus>vus` columns.
pub fn csv(runs: &[Run]) -> String {
    let mut out = String::from(
        "scheduler,balancer,calls,failed,cut,throughput_rps,latency_mean_ms,latency_p50_ms,latency_p90_ms,\
         latency_p95_ms,latency_p99_ms,cold_start_rate,load_cv,added_latency_p50_ms,added_latency_p99_ms",
    );
    for vus in PHASE_VUS {
        out += &format!(",rps_{vus}vus");
    }
    out.push('\n');
    for r in runs {
        let l = &r.latency_ms;
        let fields = [r.throughput_rps, l.mean, l.p50, l.p90, l.p95, l.p99, r.cold_start_rate, r.load_cv];
        out += &format!("{},{},{},{},{}", r.scheduler, r.balancer, r.calls, r.failed, r.cut);
        for v in fields.iter().chain([r.added_latency_ms.p50, r.added_latency_ms.p99].iter()) {
            out += &format!(",{v:.4}");
        }
        for p in &r.phases {
            out += &format!(",{:.4}", p.throughput_rps);
        }
        out.push('\n');
    }
    out
}

/// Every call of a run as CSV rows (times in paper-scale ms), after a
/// header if `header`.
pub fn calls_csv(scheduler: &str, balancer: &str, calls: &[Call], header: bool) -> String {
    let mut out = String::new();
    if header {
        out += "scheduler,balancer,vu,function,start_ms,latency_ms,status,cold,worker,service_ms,cut\n";
    }
    for c in calls {
        let cold = c.cold.map_or(String::new(), |v| v.to_string());
        let service = c.service_ms.map_or(String::new(), |v| format!("{v:.3}"));
        out += &format!(
            "{scheduler},{balancer},{},{},{:.3},{:.3},{},{cold},{},{service},{}\n",
            c.vu,
            c.function,
            c.start_ms,
            c.latency_ms,
            c.status,
            c.worker.as_deref().unwrap_or(""),
            c.cut
        );
    }
    out
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
