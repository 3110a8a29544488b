//! One run's calls summarised as the paper reports them, and the report's
//! three forms: a table for the terminal, JSON (the schema of issue 3) and
//! CSV.

pub mod bound;
pub mod figures;
pub mod paper;
pub mod svg;

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::emulator::model::Cold;
use crate::load::loadgen::Call;
use crate::load::workload::PHASE_VUS;
use crate::scale::TimeScale;
use crate::stats::{groups, load_cv, mean, percentile};

/// Everything written to `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Every run, seed by seed.
    pub runs: Vec<Run>,
    /// Each scheduler and balancer over its seeds.
    #[serde(default)]
    pub summary: Vec<Summary>,
}

impl Report {
    pub fn new(runs: Vec<Run>) -> Report {
        let summary = summaries(&runs);
        Report { runs, summary }
    }
}

/// One scheduler with one balancer. Latencies are paper-scale ms; the added
/// latency (the scheduler's own cost) is real ms, since it does not shrink
/// with the time scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub scheduler: String,
    pub balancer: String,
    /// The seed of the workload and the workers' noise.
    #[serde(default)]
    pub seed: u64,
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
    #[serde(deserialize_with = "nan_if_null")]
    pub cold_start_rate: f64,
    /// Mean over seconds of the CV of calls assigned per worker.
    #[serde(deserialize_with = "nan_if_null")]
    pub load_cv: f64,
    pub added_latency_ms: Added,
    pub phases: Vec<Phase>,
    /// The share of the calls that would start cold however they were
    /// placed ([`bound`]), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_bound_rate: Option<f64>,
    /// The completed calls' latency (paper-scale ms) at every half
    /// percentile, 0 to 100: the latency CDF a figure draws.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub latency_cdf_ms: Vec<f64>,
    /// The completed calls that started cold, by why (the emulator's
    /// `cold_cause`: `first`, `refresh`, `scale-up`, `evicted`, `killed`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cold_causes: BTreeMap<String, u64>,
    /// The failed calls by the answer they got: its status, `none` (no
    /// answer: the connection broke or the call timed out) or
    /// `200-unmarked` (a 200 that no worker ran).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, u64>,
}

/// Points in [`Run::latency_cdf_ms`]: the 0th to the 100th percentile.
pub const CDF_POINTS: usize = 201;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p50: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p90: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p95: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Added {
    #[serde(deserialize_with = "nan_if_null")]
    pub p50: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p99: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub vus: usize,
    pub throughput_rps: f64,
    /// The mean latency (paper-scale ms) of the phase's completed calls;
    /// none if none completed (or the report predates it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_ms: Option<f64>,
    /// The share of the phase's completed calls that started cold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start_rate: Option<f64>,
}

/// The latencies of a run's completed calls, ascending (paper-scale ms).
pub fn latencies(calls: &[Call]) -> Vec<f64> {
    let mut latencies: Vec<f64> = calls.iter().filter(|c| c.completed()).map(|c| c.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// A run's clock: its phases' length (paper-scale ms), its time scale, and
/// the workers' code refresh (ms; `None`: never).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub phase_ms: f64,
    pub scale: TimeScale,
    pub refresh_ms: Option<f64>,
}

/// Summarises a run of `calls` over `workers` (their URLs, as in
/// `X-Worker`), timed as `timing` says.
pub fn summarize(
    scheduler: &str,
    balancer: &str,
    seed: u64,
    calls: &[Call],
    workers: &[String],
    timing: Timing,
) -> Run {
    let Timing { phase_ms, scale, refresh_ms } = timing;
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
            let done: Vec<&&Call> = completed.iter().filter(in_phase).collect();
            let latencies: Vec<f64> = done.iter().map(|c| c.latency_ms).collect();
            let cold = done.iter().filter(|c| c.cold == Some(true)).count();
            Phase {
                vus: PHASE_VUS[p],
                throughput_rps: done.len() as f64 / phase_s,
                mean_ms: (!done.is_empty()).then(|| mean(&latencies)),
                cold_start_rate: (!done.is_empty()).then(|| cold as f64 / done.len() as f64),
            }
        })
        .collect();
    Run {
        scheduler: scheduler.to_string(),
        balancer: balancer.to_string(),
        seed,
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
        cold_bound_rate: Some(bound::cold_bound(calls, refresh_ms) as f64 / completed.len() as f64)
            .filter(|r| r.is_finite()),
        latency_cdf_ms: match latencies.is_empty() {
            true => Vec::new(),
            false => {
                (0..CDF_POINTS).map(|k| percentile(&latencies, 100.0 * k as f64 / (CDF_POINTS - 1) as f64)).collect()
            }
        },
        cold_causes: cold_causes(&completed),
        failures: failures(calls),
    }
}

/// How many of `calls` failed with each answer ([`Run::failures`]).
fn failures(calls: &[Call]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for call in calls.iter().filter(|c| !c.completed() && !c.cut) {
        let answer = match call.status {
            0 => "none".to_string(),
            200 => "200-unmarked".to_string(),
            status => status.to_string(),
        };
        *counts.entry(answer).or_insert(0) += 1;
    }
    counts
}

/// How many of `completed` started cold for each reason.
fn cold_causes(completed: &[&Call]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for cause in completed.iter().filter_map(|c| c.cold_cause) {
        *counts.entry(cause.name().to_string()).or_insert(0) += 1;
    }
    counts
}

/// The figures of a run, in the order of the table and the CSV: a header,
/// the CSV column, the digits shown, and how to read it from a run.
struct Figure {
    header: &'static str,
    column: &'static str,
    digits: usize,
    get: fn(&Run) -> f64,
}

const FIGURES: [Figure; 16] = [
    Figure { header: "calls", column: "calls", digits: 0, get: |r| r.calls as f64 },
    Figure { header: "failed", column: "failed", digits: 0, get: |r| r.failed as f64 },
    Figure { header: "cut", column: "cut", digits: 0, get: |r| r.cut as f64 },
    Figure { header: "rps", column: "throughput_rps", digits: 1, get: |r| r.throughput_rps },
    Figure { header: "mean", column: "latency_mean_ms", digits: 0, get: |r| r.latency_ms.mean },
    Figure { header: "p50", column: "latency_p50_ms", digits: 0, get: |r| r.latency_ms.p50 },
    Figure { header: "p90", column: "latency_p90_ms", digits: 0, get: |r| r.latency_ms.p90 },
    Figure { header: "p95", column: "latency_p95_ms", digits: 0, get: |r| r.latency_ms.p95 },
    Figure { header: "p99", column: "latency_p99_ms", digits: 0, get: |r| r.latency_ms.p99 },
    Figure { header: "cold%", column: "cold_start_percent", digits: 1, get: |r| r.cold_start_rate * 100.0 },
    Figure { header: "cv", column: "load_cv", digits: 2, get: |r| r.load_cv },
    Figure { header: "+p50", column: "added_latency_p50_ms", digits: 3, get: |r| r.added_latency_ms.p50 },
    Figure { header: "+p99", column: "added_latency_p99_ms", digits: 3, get: |r| r.added_latency_ms.p99 },
    Figure { header: "rps@20", column: "rps_20vus", digits: 1, get: |r| phase_rps(r, 0) },
    Figure { header: "rps@50", column: "rps_50vus", digits: 1, get: |r| phase_rps(r, 1) },
    Figure { header: "rps@100", column: "rps_100vus", digits: 1, get: |r| phase_rps(r, 2) },
];

/// The first figures are counts (calls, failed, cut).
const COUNTS: usize = 3;

fn phase_rps(run: &Run, phase: usize) -> f64 {
    run.phases.get(phase).map_or(f64::NAN, |p| p.throughput_rps)
}

/// A figure over the seeds of one scheduler and balancer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub min: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max: f64,
}

/// A figure with nothing to measure is NaN, which JSON writes as `null`:
/// read `null` back as NaN.
fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// One scheduler with one balancer over every seed it ran with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub scheduler: String,
    pub balancer: String,
    pub seeds: Vec<u64>,
    /// Every figure by its CSV column name.
    pub figures: std::collections::BTreeMap<String, Spread>,
}

/// The runs grouped by scheduler and balancer (in the order they first
/// ran), each figure's mean, minimum and maximum over the seeds.
pub fn summaries(runs: &[Run]) -> Vec<Summary> {
    let spread = |group: &[&Run], get: fn(&Run) -> f64| {
        // A seed with nothing to measure (NaN) is left out of all three.
        let values: Vec<f64> = group.iter().map(|r| get(r)).filter(|v| !v.is_nan()).collect();
        let fold = |f: fn(f64, f64) -> f64| values.iter().copied().reduce(f).unwrap_or(f64::NAN);
        Spread { mean: mean(&values), min: fold(f64::min), max: fold(f64::max) }
    };
    let summary = |((scheduler, balancer), group): ((&str, &str), Vec<&Run>)| Summary {
        scheduler: scheduler.to_string(),
        balancer: balancer.to_string(),
        seeds: group.iter().map(|r| r.seed).collect(),
        figures: FIGURES.iter().map(|f| (f.column.to_string(), spread(&group, f.get))).collect(),
    };
    groups(runs, |r| (r.scheduler.as_str(), r.balancer.as_str())).into_iter().map(summary).collect()
}

/// Rows of cells under `headers`, every column as wide as its widest cell;
/// the first two columns left-aligned, the others right-aligned.
fn grid(headers: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|row| row[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: Vec<&str>| {
        let cells = cells.iter().zip(&widths).enumerate().map(|(i, (cell, &w))| match i < 2 {
            true => format!("{cell:<w$}"),
            false => format!("{cell:>w$}"),
        });
        cells.collect::<Vec<_>>().join(" ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

const UNITS: &str =
    "rps, latencies (ms): paper scale; cv: load imbalance; +p50/+p99: latency the scheduler adds (real ms)\n";

/// The runs as a table: one row per run if every scheduler and balancer ran
/// with one seed, else one row per scheduler and balancer with each
/// figure's mean over the seeds and, below it, the minimum and maximum.
/// The paper's published figures follow, for comparison.
pub fn table(runs: &[Run]) -> String {
    let summaries = summaries(runs);
    let mut headers = vec!["scheduler", "balancer"];
    headers.extend(FIGURES.iter().map(|f| f.header));
    let mut rows = Vec::new();
    let several = summaries.iter().any(|s| s.seeds.len() > 1);
    for s in &summaries {
        let cells = |pick: fn(&Spread) -> f64| {
            FIGURES.iter().map(move |f| format!("{:.*}", f.digits, pick(&s.figures[f.column])))
        };
        let mut row = vec![s.scheduler.clone(), s.balancer.clone()];
        row.extend(cells(|v| v.mean));
        rows.push(row);
        if several {
            let min = format!("  {} seeds: min", s.seeds.len());
            let max = format!("{:>1$}", "max", min.len());
            let mut range = vec![String::new(), min];
            range.extend(cells(|v| v.min));
            let mut top = vec![String::new(), max];
            top.extend(cells(|v| v.max));
            rows.extend([range, top]);
        }
    }
    rows.extend(paper::rows(&headers));
    let seeds = match several {
        true => "mean over the seeds, then the least and the most any seed gave; ",
        false => "",
    };
    grid(&headers, &rows)
        + &bound_line(runs)
        + &phase_lines(runs)
        + &cause_lines(runs)
        + &failure_lines(runs)
        + seeds
        + UNITS
        + paper::SOURCE
}

/// The failed calls of each row that had any, by answer, over all its
/// seeds: whether the worker failed them (502), hiku turned them away
/// (503, 504) or no answer came. Nothing if no run failed a call (or the
/// reports predate the breakdown).
fn failure_lines(runs: &[Run]) -> String {
    if runs.iter().all(|r| r.failures.is_empty()) {
        return String::new();
    }
    let rows = groups(runs, |r| (r.scheduler.as_str(), r.balancer.as_str()));
    let width = rows.iter().map(|((s, b), _)| s.len() + b.len() + 1).max().unwrap_or(0);
    let mut out = String::from("failed calls by answer, all seeds together (none: no answer):\n");
    for ((scheduler, balancer), group) in rows {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for (answer, n) in group.iter().flat_map(|r| &r.failures) {
            *counts.entry(answer.as_str()).or_insert(0) += n;
        }
        if counts.is_empty() {
            continue;
        }
        let shown: Vec<String> = counts.iter().map(|(answer, n)| format!("{answer}: {n}")).collect();
        let _ = writeln!(out, "  {:width$}  {}", format!("{scheduler} {balancer}"), shown.join(", "));
    }
    out
}

/// Each row's cold starts by why they were cold (means over the seeds), in
/// points of its completed calls: what a change of placement removed.
/// Nothing if no run knows them.
fn cause_lines(runs: &[Run]) -> String {
    if runs.iter().all(|r| r.cold_causes.is_empty()) {
        return String::new();
    }
    let rows = groups(runs, |r| (r.scheduler.as_str(), r.balancer.as_str()));
    let width = rows.iter().map(|((s, b), _)| s.len() + b.len() + 1).max().unwrap_or(0);
    let names: Vec<&str> = Cold::ALL.iter().map(|c| c.name()).collect();
    let mut out = format!("cold starts by cause, % of completed calls: {}:\n", names.join(" / "));
    for ((scheduler, balancer), group) in rows {
        let name = format!("{scheduler} {balancer}");
        let _ = write!(out, "  {name:width$}");
        for cause in &names {
            let shares: Vec<f64> =
                group.iter().map(|r| r.cold_causes.get(*cause).copied().unwrap_or(0) as f64 / r.calls as f64).collect();
            let _ = write!(out, "  {:>5.1}", mean(&shares) * 100.0);
        }
        out.push('\n');
    }
    out
}

/// Each row's mean latency and cold starts phase by phase (means over the
/// seeds): a mean over a whole run weighs the phases by how many calls
/// completed in each, so a scheduler that fails the crowded phase's slow
/// calls shows a lower one. Nothing if no run has them.
fn phase_lines(runs: &[Run]) -> String {
    if !runs.iter().flat_map(|r| &r.phases).any(|p| p.mean_ms.is_some()) {
        return String::new();
    }
    let rows = groups(runs, |r| (r.scheduler.as_str(), r.balancer.as_str()));
    let width = rows.iter().map(|((s, b), _)| s.len() + b.len() + 1).max().unwrap_or(0);
    let vus: Vec<String> = PHASE_VUS.iter().map(|v| v.to_string()).collect();
    let mut out = format!("per phase, completed calls' mean ms / cold % at {} VUs:\n", vus.join(", "));
    for ((scheduler, balancer), group) in rows {
        let name = format!("{scheduler} {balancer}");
        let _ = write!(out, "  {name:width$}");
        for p in 0..PHASE_VUS.len() {
            let of = |get: fn(&Phase) -> Option<f64>| {
                let values: Vec<f64> = group.iter().filter_map(|r| r.phases.get(p).and_then(get)).collect();
                mean(&values)
            };
            let _ = write!(out, "  {:>6.0} / {:>5.1}", of(|p| p.mean_ms), of(|p| p.cold_start_rate) * 100.0);
        }
        out.push('\n');
    }
    out
}

/// `bound ...`: the cold starts no placement of the calls avoids, and how
/// far above it each row is (means over the seeds); nothing if no run
/// knows its bound.
fn bound_line(runs: &[Run]) -> String {
    let known: Vec<&Run> = runs.iter().filter(|r| r.cold_bound_rate.is_some()).collect();
    if known.is_empty() {
        return String::new();
    }
    let percent = |values: Vec<f64>| mean(&values) * 100.0;
    let mut above = Vec::new();
    for ((scheduler, balancer), group) in groups(&known, |r| (r.scheduler.as_str(), r.balancer.as_str())) {
        let cold = percent(group.iter().map(|r| r.cold_start_rate).collect());
        let bound = percent(group.iter().filter_map(|r| r.cold_bound_rate).collect());
        above.push(format!("{scheduler} {balancer} {:+.1}", cold - bound));
    }
    let bound = percent(known.iter().filter_map(|r| r.cold_bound_rate).collect());
    format!(
        "bound: at least {:.1}% of the calls start cold however they are placed (each function's code pulls, \
         were all its calls on one worker); points above it: {}\n",
        bound,
        above.join(", ")
    )
}

/// The runs as CSV, one row each, phases as `rps_<vus>vus` columns.
pub fn csv(runs: &[Run]) -> String {
    let mut out = String::from("scheduler,balancer,seed");
    for f in &FIGURES {
        out += &format!(",{}", f.column);
    }
    out.push('\n');
    for r in runs {
        out += &format!("{},{},{}", r.scheduler, r.balancer, r.seed);
        for (i, f) in FIGURES.iter().enumerate() {
            match i < COUNTS {
                true => out += &format!(",{}", (f.get)(r)),
                false => out += &format!(",{:.4}", (f.get)(r)),
            }
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
        out += "scheduler,balancer,vu,function,start_ms,latency_ms,status,cold,worker,service_ms,cut,cold_cause\n";
    }
    for c in calls {
        let cold = c.cold.map_or(String::new(), |v| v.to_string());
        let cause = c.cold_cause.map_or("", Cold::name);
        let service = c.service_ms.map_or(String::new(), |v| format!("{v:.3}"));
        out += &format!(
            "{scheduler},{balancer},{},{},{:.3},{:.3},{},{cold},{},{service},{},{cause}\n",
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
mod tests;
