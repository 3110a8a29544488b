//! The experiment's three figures, written as SVG files into a directory.

use std::path::Path;

use crate::experiment::Outcome;
use crate::report;
use crate::report::svg::{grouped_bars, latency_cdf};

/// Writes `latency_cdf.svg`, `throughput.svg` and `cold_starts.svg` into
/// `dir` (created if needed) and returns their paths.
pub fn write(dir: &Path, outcomes: &[Outcome]) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // One curve per scheduler and balancer: the first seed's runs.
    let first = outcomes.first().map(|o| o.run.seed);
    let outcomes: Vec<&Outcome> = outcomes.iter().filter(|o| Some(o.run.seed) == first).collect();
    let name = |o: &&Outcome| format!("{} {}", o.run.scheduler, o.run.balancer);

    let cdfs: Vec<(String, Vec<f64>)> = outcomes.iter().map(|o| (name(o), report::latencies(&o.calls))).collect();
    let cdf = latency_cdf("Latency CDF per balancer", &cdfs);

    let phases: Vec<String> =
        outcomes.first().map_or(vec![], |o| o.run.phases.iter().map(|p| format!("{} VUs", p.vus)).collect());
    let rps: Vec<(String, Vec<f64>)> =
        outcomes.iter().map(|o| (name(o), o.run.phases.iter().map(|p| p.throughput_rps).collect())).collect();
    let throughput = grouped_bars("Throughput per phase", "completed calls per second", &phases, &rps);

    // Balancers along the x axis, one bar per scheduler.
    let mut balancers: Vec<String> = Vec::new();
    let mut schedulers: Vec<String> = Vec::new();
    for o in &outcomes {
        if !balancers.contains(&o.run.balancer) {
            balancers.push(o.run.balancer.clone());
        }
        if !schedulers.contains(&o.run.scheduler) {
            schedulers.push(o.run.scheduler.clone());
        }
    }
    let cold: Vec<(String, Vec<f64>)> = schedulers
        .iter()
        .map(|s| {
            let rate = |b: &String| {
                let run = outcomes.iter().find(|o| &o.run.scheduler == s && &o.run.balancer == b);
                run.map_or(f64::NAN, |o| o.run.cold_start_rate * 100.0)
            };
            (s.clone(), balancers.iter().map(rate).collect())
        })
        .collect();
    let cold = grouped_bars("Cold-start rate per balancer", "cold starts (% of calls)", &balancers, &cold);

    let mut written = Vec::new();
    for (file, svg) in [("latency_cdf.svg", cdf), ("throughput.svg", throughput), ("cold_starts.svg", cold)] {
        let path = dir.join(file);
        std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}
