//! The experiment's three figures, written as SVG files into a directory.

use std::path::Path;

use crate::load::loadgen::Call;
use crate::report::svg::{grouped_bars, latency_cdf};
use crate::report::{latencies, Run};

/// Writes `latency_cdf.svg`, `throughput.svg` and `cold_starts.svg` into
/// `dir` (created if needed) from `runs`, each with its calls, and returns
/// their paths.
pub fn write<'a>(dir: &Path, runs: impl IntoIterator<Item = (&'a Run, &'a [Call])>) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // One curve per scheduler and balancer: the first seed's runs.
    let mut runs = runs.into_iter().peekable();
    let first = runs.peek().map(|(run, _)| run.seed);
    let runs: Vec<(&Run, &[Call])> = runs.filter(|(run, _)| Some(run.seed) == first).collect();
    let name = |run: &Run| format!("{} {}", run.scheduler, run.balancer);

    let cdfs: Vec<(String, Vec<f64>)> = runs.iter().map(|(run, calls)| (name(run), latencies(calls))).collect();
    let cdf = latency_cdf("Latency CDF per balancer", &cdfs);

    let phases: Vec<String> =
        runs.first().map_or(vec![], |(run, _)| run.phases.iter().map(|p| format!("{} VUs", p.vus)).collect());
    let rps: Vec<(String, Vec<f64>)> =
        runs.iter().map(|(run, _)| (name(run), run.phases.iter().map(|p| p.throughput_rps).collect())).collect();
    let throughput = grouped_bars("Throughput per phase", "completed calls per second", &phases, &rps);

    // Balancers along the x axis, one bar per scheduler.
    let mut balancers: Vec<String> = Vec::new();
    let mut schedulers: Vec<String> = Vec::new();
    for (run, _) in &runs {
        if !balancers.contains(&run.balancer) {
            balancers.push(run.balancer.clone());
        }
        if !schedulers.contains(&run.scheduler) {
            schedulers.push(run.scheduler.clone());
        }
    }
    let cold: Vec<(String, Vec<f64>)> = schedulers
        .iter()
        .map(|s| {
            let rate = |b: &String| {
                let found = runs.iter().find(|(run, _)| &run.scheduler == s && &run.balancer == b);
                found.map_or(f64::NAN, |(run, _)| run.cold_start_rate * 100.0)
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
