//! The figures, written as SVG files into a directory: an experiment's
//! three (as the paper draws them), and the proxies' throughput and CPU.

use std::path::{Path, PathBuf};

use crate::report::svg::{grouped_bars, latency_cdf};
use crate::report::Run;
use crate::stats::groups;
use crate::throughput::summary;

/// Writes `latency_cdf.svg`, `throughput.svg` and `cold_starts.svg` into
/// `dir` (created if needed) from an experiment's `runs`, drawing each
/// scheduler and balancer's first seed, and returns their paths.
pub fn write(dir: &Path, runs: &[Run]) -> Result<Vec<PathBuf>, String> {
    let first = runs.first().map(|run| run.seed);
    let runs: Vec<&Run> = runs.iter().filter(|run| Some(run.seed) == first).collect();
    let name = |run: &Run| format!("{} {}", run.scheduler, run.balancer);

    let cdfs: Vec<(String, Vec<f64>)> = runs.iter().map(|run| (name(run), run.latency_cdf_ms.clone())).collect();
    let cdf = latency_cdf("Latency CDF per balancer", &cdfs);

    let phases: Vec<String> =
        runs.first().map_or(vec![], |run| run.phases.iter().map(|p| format!("{} VUs", p.vus)).collect());
    let rps: Vec<(String, Vec<f64>)> =
        runs.iter().map(|run| (name(run), run.phases.iter().map(|p| p.throughput_rps).collect())).collect();
    let throughput = grouped_bars("Throughput per phase", "completed calls per second", &phases, &rps);

    // Balancers along the x axis, one bar per scheduler.
    let balancers: Vec<String> = groups(&runs, |run| run.balancer.clone()).into_iter().map(|(b, _)| b).collect();
    let cold: Vec<(String, Vec<f64>)> = groups(&runs, |run| run.scheduler.clone())
        .into_iter()
        .map(|(s, own)| {
            let rate = |b: &String| {
                own.iter().find(|run| &run.balancer == b).map_or(f64::NAN, |run| run.cold_start_rate * 100.0)
            };
            (s, balancers.iter().map(rate).collect())
        })
        .collect();
    let cold = grouped_bars("Cold-start rate per balancer", "cold starts (% of calls)", &balancers, &cold);

    save(dir, [("latency_cdf.svg", cdf), ("throughput.svg", throughput), ("cold_starts.svg", cold)])
}

/// Writes `proxies_rps.svg` and `proxies_cpu.svg` into `dir` from a
/// `perf/throughput` report: each contender's requests per second and CPU
/// per call, grouped by the number of connections. None for a report
/// without rows.
pub fn write_throughput(dir: &Path, report: &summary::Report) -> Result<Vec<PathBuf>, String> {
    if report.results.is_empty() {
        return Ok(Vec::new());
    }
    let connections: Vec<usize> = groups(&report.results, |r| r.connections).into_iter().map(|(c, _)| c).collect();
    let labels: Vec<String> = connections.iter().map(|c| format!("{c} connections")).collect();
    let series = |value: fn(&summary::Row) -> f64| -> Vec<(String, Vec<f64>)> {
        groups(&report.results, |r| r.contender.clone())
            .into_iter()
            .map(|(contender, rows)| {
                let at = |c: &usize| rows.iter().find(|r| r.connections == *c).map_or(f64::NAN, |r| value(r));
                (contender, connections.iter().map(at).collect())
            })
            .collect()
    };
    let kind = if report.new_connection { "a new connection per call" } else { "keep-alive" };
    let rps = grouped_bars(&format!("Requests per second, {kind}"), "req/s", &labels, &series(|r| r.rps));
    let cpu = grouped_bars(
        &format!("CPU per call, {kind}"),
        "CPU ms per call (all processes)",
        &labels,
        &series(|r| r.cpu_s_per_1k),
    );
    save(dir, [("proxies_rps.svg", rps), ("proxies_cpu.svg", cpu)])
}

fn save<const N: usize>(dir: &Path, files: [(&str, String); N]) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (file, svg) in files {
        let path = dir.join(file);
        std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
