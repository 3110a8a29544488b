//! The figures, written as SVG files into a directory: an experiment's
//! three (as the paper draws them, a panel per balancer), and the proxies'
//! throughput and CPU.

use std::path::{Path, PathBuf};

use crate::report::svg::{grouped_bars, latency_cdf, Panel};
use crate::report::Run;
use crate::stats::groups;
use crate::throughput::summary;

/// Writes `latency_cdf.svg`, `throughput.svg` and `cold_starts.svg` into
/// `dir` (created if needed) from an experiment's `runs`, drawing each
/// scheduler and balancer's first seed, and returns their paths.
pub fn write(dir: &Path, runs: &[Run]) -> Result<Vec<PathBuf>, String> {
    save(dir, draw(runs))
}

/// An experiment's three figures, (file name, SVG).
fn draw(runs: &[Run]) -> Vec<(&'static str, String)> {
    let first = runs.first().map(|run| run.seed);
    let runs: Vec<&Run> = runs.iter().filter(|run| Some(run.seed) == first).collect();
    // Every figure names the schedulers in this order, so each keeps its
    // colour from panel to panel and from figure to figure.
    let schedulers: Vec<String> = groups(&runs, |run| run.scheduler.clone()).into_iter().map(|(s, _)| s).collect();
    // A panel per balancer, a series per scheduler in it.
    let panels = |value: fn(&Run) -> Vec<f64>| -> Vec<Panel> {
        groups(&runs, |run| run.balancer.clone())
            .into_iter()
            .map(|(balancer, mut own)| {
                own.sort_by_key(|run| schedulers.iter().position(|s| *s == run.scheduler));
                Panel { title: balancer, series: own.iter().map(|run| (run.scheduler.clone(), value(run))).collect() }
            })
            .collect()
    };

    let cdf = latency_cdf("Latency CDF", &schedulers, &panels(|run| run.latency_cdf_ms.clone()));

    let phases: Vec<String> =
        runs.first().map_or(vec![], |run| run.phases.iter().map(|p| format!("{} VUs", p.vus)).collect());
    let rps = panels(|run| run.phases.iter().map(|p| p.throughput_rps).collect());
    let throughput = grouped_bars("Throughput per phase", "completed calls per second", &phases, &schedulers, &rps);

    // One panel: balancers along the x axis, a bar per scheduler.
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
    let cold = Panel { title: String::new(), series: cold };
    let cold = grouped_bars("Cold-start rate", "cold starts (% of calls)", &balancers, &schedulers, &[cold]);

    vec![("latency_cdf.svg", cdf), ("throughput.svg", throughput), ("cold_starts.svg", cold)]
}

/// Writes `proxies_rps.svg` and `proxies_cpu.svg` into `dir` from a
/// `perf/throughput` report: each contender's requests per second and CPU
/// per call, grouped by the number of connections. None for a report
/// without rows.
pub fn write_throughput(dir: &Path, report: &summary::Report) -> Result<Vec<PathBuf>, String> {
    save(dir, draw_throughput(report))
}

/// The proxies' two figures, (file name, SVG); none without rows.
fn draw_throughput(report: &summary::Report) -> Vec<(&'static str, String)> {
    if report.results.is_empty() {
        return Vec::new();
    }
    let connections: Vec<usize> = groups(&report.results, |r| r.connections).into_iter().map(|(c, _)| c).collect();
    let labels: Vec<String> = connections.iter().map(|c| format!("{c} connections")).collect();
    let panel = |value: fn(&summary::Row) -> f64| -> [Panel; 1] {
        let series = groups(&report.results, |r| r.contender.clone())
            .into_iter()
            .map(|(contender, rows)| {
                let at = |c: &usize| rows.iter().find(|r| r.connections == *c).map_or(f64::NAN, |r| value(r));
                (contender, connections.iter().map(at).collect())
            })
            .collect();
        [Panel { title: String::new(), series }]
    };
    let kind = if report.new_connection { "a new connection per call" } else { "keep-alive" };
    let rps = grouped_bars(&format!("Requests per second, {kind}"), "req/s", &labels, &[], &panel(|r| r.rps));
    let cpu = grouped_bars(
        &format!("CPU per call, {kind}"),
        "CPU ms per call (all processes)",
        &labels,
        &[],
        &panel(|r| r.cpu_s_per_1k),
    );
    vec![("proxies_rps.svg", rps), ("proxies_cpu.svg", cpu)]
}

fn save(dir: &Path, files: Vec<(&str, String)>) -> Result<Vec<PathBuf>, String> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for (file, svg) in files {
        let path = dir.join(file);
        std::fs::write(&path, svg).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::svg::tests::{assert_readable, looks};
    use crate::report::{Added, Latency, Phase};

    const BALANCERS: [&str; 6] =
        ["pull-based", "hashing-bounded", "least-connections", "random", "pull-hashing", "predictive"];
    /// The Go original runs the paper's four balancers only.
    const PAPER: [&str; 4] = ["pull-based", "hashing-bounded", "least-connections", "random"];
    const TIERS: [&str; 9] = [
        "hiku",
        "hiku-k2-fnhash",
        "hiku-k3-fnhash",
        "hiku-k2-l4",
        "hiku-k3-l4",
        "hiku-k2-fnhash-restarted",
        "hiku-k3-fnhash-restarted",
        "hiku-k2-l4-restarted",
        "hiku-k3-l4-restarted",
    ];

    /// A made-up run: `k` shifts its numbers, so series differ.
    fn run(scheduler: &str, balancer: &str, k: f64) -> Run {
        let latency = Latency { mean: 900.0, p50: 600.0, p90: 1800.0, p95: 2400.0, p99: 3600.0 };
        let phase = |vus: usize| Phase {
            vus,
            throughput_rps: vus as f64 * (4.0 + k),
            mean_ms: Some(800.0 + 10.0 * k),
            cold_start_rate: Some(0.3),
        };
        Run {
            scheduler: scheduler.to_string(),
            balancer: balancer.to_string(),
            seed: 1,
            calls: 10_000,
            failed: 0,
            cut: 0,
            throughput_rps: 300.0,
            latency_ms: latency,
            cold_start_rate: 0.3 + 0.05 * k,
            load_cv: 0.5,
            added_latency_ms: Added { p50: 0.3, p99: 1.2 },
            phases: vec![phase(20), phase(50), phase(100)],
            cold_bound_rate: None,
            latency_cdf_ms: (0..201).map(|i| 80.0 + (1.0 + k / 4.0) * (f64::from(i) / 40.0).powi(3) * 30.0).collect(),
            cold_causes: Default::default(),
            failures: Default::default(),
        }
    }

    /// Six balancers, each with hiku and adaptive limits off, and the Go
    /// original with the paper's four.
    fn experiment() -> Vec<Run> {
        let mut runs = Vec::new();
        for (k, scheduler) in ["hiku", "hiku-go", "off"].iter().enumerate() {
            for (b, balancer) in BALANCERS.iter().enumerate() {
                if *scheduler != "hiku-go" || PAPER.contains(balancer) {
                    runs.push(run(scheduler, balancer, k as f64 + b as f64 / 6.0));
                }
            }
        }
        runs
    }

    /// The tier experiment: nine schedulers behind one balancer.
    fn tier() -> Vec<Run> {
        TIERS.iter().enumerate().map(|(k, s)| run(s, "pull-based", k as f64)).collect()
    }

    fn proxies() -> summary::Report {
        // From JSON, so the row's optional fields take their defaults.
        let row = |contender: &str, connections: usize| -> summary::Row {
            let cpu = 0.2 + connections as f64 / 1000.0;
            serde_json::from_value(serde_json::json!({
                "contender": contender, "connections": connections, "rps": 1000 + connections, "p50_ms": 1,
                "p99_ms": 2, "p999_ms": 3, "errors": 0, "cpu_s_per_1k": cpu, "peak_rss_mb": 20,
            }))
            .unwrap()
        };
        let contenders = ["hiku", "hiku-go", "nginx", "haproxy", "hiku-k3-fnhash-restarted"];
        let results = [1, 16, 64, 256, 1024].iter().flat_map(|c| contenders.map(|n| row(n, *c))).collect();
        summary::Report { results, ..Default::default() }
    }

    /// The panels' titles: the texts in the panel font.
    fn panel_titles(svg: &str) -> Vec<String> {
        let titled = svg.lines().filter(|l| l.starts_with("<text") && l.contains("font-size=\"13\""));
        titled.filter_map(|l| l.split('>').nth(1)?.split('<').next().map(str::to_string)).collect()
    }

    /// Each series' colour, by name.
    fn colours(svg: &str) -> Vec<(String, String)> {
        // The first colour of a look: a line's stroke, a bar's fill.
        let colour = |look: String| look.split(' ').find_map(|kv| Some(kv.split_once("=#")?.1.to_string()));
        looks(svg).into_iter().map(|(name, look)| (name, colour(look).unwrap_or_default())).collect()
    }

    #[test]
    fn every_figure_is_readable() {
        let mut figures = [draw(&tier()), draw_throughput(&proxies())].concat();
        // Every shape of grid: one balancer to six.
        for n in 1..=BALANCERS.len() {
            let runs: Vec<Run> = experiment().into_iter().filter(|r| BALANCERS[..n].contains(&&*r.balancer)).collect();
            figures.extend(draw(&runs));
        }
        assert_eq!(figures.len(), 3 + 2 + 3 * 6);
        for (_, svg) in figures {
            assert_readable(&svg);
        }
    }

    #[test]
    fn a_panel_per_balancer_with_its_schedulers() {
        let figures = draw(&experiment());
        for (_, svg) in &figures[..2] {
            assert_eq!(panel_titles(svg), BALANCERS);
        }
        let cdf = &figures[0].1;
        assert_eq!(cdf.matches("<polyline").count(), 3 * 6 - 2);
        // pull-hashing (the fifth panel) has hiku and off, not the Go original.
        let lines: Vec<String> = looks(cdf).into_iter().map(|(name, _)| name).collect();
        assert_eq!(lines[12..14], ["hiku", "off"]);
        // One shared legend: three entries, not one per line.
        assert_eq!(cdf.lines().filter(|l| l.starts_with("<line") && l.contains("stroke-width")).count(), 3);
    }

    #[test]
    fn a_scheduler_has_one_colour_in_every_panel_and_figure() {
        let figures = draw(&experiment());
        let all: Vec<(String, String)> = figures.iter().flat_map(|(_, svg)| colours(svg)).collect();
        for scheduler in ["hiku", "hiku-go", "off"] {
            let mut mine: Vec<&str> = all.iter().filter(|(n, _)| n == scheduler).map(|(_, c)| c.as_str()).collect();
            let drawn = mine.len();
            mine.dedup();
            assert_eq!(mine.len(), 1, "{scheduler} drawn {drawn} times in {mine:?}");
        }
        let hiku = all.iter().find(|(n, _)| n == "hiku").unwrap();
        assert!(all.iter().filter(|(n, _)| n != "hiku").all(|(_, c)| *c != hiku.1));
    }

    #[test]
    fn the_tier_experiment_is_one_panel_of_nine_distinct_lines() {
        let figures = draw(&tier());
        let cdf = &figures[0].1;
        assert_eq!(panel_titles(cdf), ["pull-based"]);
        assert!(!cdf.contains("per balancer"));
        let looks = looks(cdf);
        let mut distinct: Vec<&String> = looks.iter().map(|(_, look)| look).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!((looks.len(), distinct.len()), (9, 9), "{looks:?}");
        assert_eq!(panel_titles(&figures[1].1), ["pull-based"]);
    }
}
