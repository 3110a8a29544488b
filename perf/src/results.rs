//! `perf/RESULTS.md`: the reports that `experiment --json`,
//! `throughput --json` and `soak --instances K --json` wrote, laid out as markdown with the machine, the
//! date, the commit and the commands that produced them. Every number in it
//! comes from those files; nothing is typed in.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::exit;
use crate::report::{self, Report};
use crate::throughput::summary;
use crate::tier_soak;

/// One experiment report and what distinguishes it (its memory, say).
pub struct Experiment {
    pub label: String,
    pub report: Report,
}

/// Where and from what the results came.
pub struct Provenance {
    pub date: String,
    pub commit: String,
    /// The commands that produced the reports, as run.
    pub commands: Vec<String>,
    /// Anything else the reader must know (what a baseline binary is).
    pub notes: Vec<String>,
}

/// The figures drawn for the page, as it links them (relative to it).
#[derive(Debug, Default)]
pub struct Figures {
    /// Each experiment's, in the order of the experiments.
    pub experiments: Vec<Vec<String>>,
    /// The proxies' requests per second and CPU per call.
    pub proxies: Vec<String>,
}

/// A figure as markdown shows it, named after its file.
fn image(link: &str) -> String {
    let stem = Path::new(link).file_stem().and_then(|s| s.to_str()).unwrap_or(link);
    format!("![{}]({link})\n", stem.replace('_', " "))
}

/// Reads a JSON report written by `experiment --json` or `throughput --json`.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// This machine as the reports' reader needs to know it: processor, cores,
/// memory and kernel, from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown processor".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{model}, {cores} cores, {mem_gib:.0} GiB, Linux {}", kernel.trim())
}

/// The markdown page.
pub fn markdown(
    provenance: &Provenance,
    machine: &str,
    experiments: &[Experiment],
    throughput: &[summary::Report],
    soaks: &[tier_soak::Report],
    figures: &Figures,
) -> String {
    let mut out = String::from("# hiku: measured results\n\n");
    out += "Written by `hiku-perf results` (as `perf/results` runs it after measuring) from the JSON reports of ";
    out += "`perf/experiment`, `perf/throughput` and `perf/soak`; `perf/README.md` says what the columns mean. ";
    out += "Not edited by hand: measure again to update it.\n\n";
    let _ = writeln!(out, "- machine: {machine}");
    let _ = writeln!(out, "- date: {}", provenance.date);
    let _ = writeln!(out, "- commit: {}", provenance.commit);
    for command in &provenance.commands {
        let _ = writeln!(out, "- `{command}`");
    }
    for note in &provenance.notes {
        let _ = writeln!(out, "- {note}");
    }
    for (i, e) in experiments.iter().enumerate() {
        let _ = write!(out, "\n## The paper's experiment: {}\n\n```\n{}```\n", e.label, report::table(&e.report.runs));
        let links = figures.experiments.get(i).map_or(&[][..], Vec::as_slice);
        if !links.is_empty() {
            out += "\nThe first seed's runs, drawn as the paper draws its figures:\n\n";
            out.extend(links.iter().map(|l| image(l)));
        }
    }
    for (title, table) in throughput.iter().flat_map(summary::titled) {
        let _ = write!(out, "\n## {title}\n\n```\n{table}```\n");
    }
    if !figures.proxies.is_empty() {
        out += "\n## The proxies side by side (keep-alive)\n\n";
        out.extend(figures.proxies.iter().map(|l| image(l)));
    }
    for soak in soaks {
        let verdict = match soak.problems().as_slice() {
            [] => "nothing lost or failed in the rolling restarts; the worker lists agree".to_string(),
            problems => format!("FAILED: {}", problems.join("; ")),
        };
        let _ = write!(
            out,
            "\n## A tier under restarts: `perf/soak --instances {}`\n\n```\n{}{verdict}\n```\n",
            soak.instances,
            soak.text()
        );
    }
    let mut configs: Vec<&(String, String)> = Vec::new();
    for config in throughput.iter().flat_map(|t| &t.configs) {
        if !configs.iter().any(|c| c.0 == config.0) {
            configs.push(config);
        }
    }
    if !configs.is_empty() {
        out += "\n## How the other proxies ran\n\nEach measurement writes its own ports and directory into these.\n";
        for (label, text) in configs {
            let _ = write!(out, "\n{label}:\n\n```\n{text}```\n");
        }
    }
    out
}

/// `hiku-perf results`'s command line.
#[derive(clap::Args)]
pub struct Args {
    /// A report written by `experiment --json`, with its label: LABEL=FILE (repeatable)
    #[arg(long = "experiment", value_name = "LABEL=FILE")]
    experiments: Vec<String>,
    /// A report written by `throughput --json` (repeatable)
    #[arg(long)]
    throughput: Vec<PathBuf>,
    /// A report written by `soak --instances K --json` (repeatable)
    #[arg(long = "tier-soak")]
    tier_soaks: Vec<PathBuf>,
    /// The commit the reports were measured at
    #[arg(long)]
    commit: String,
    /// When they were measured
    #[arg(long)]
    date: String,
    /// A command that produced them, as run (repeatable)
    #[arg(long = "command")]
    commands: Vec<String>,
    /// Anything else a reader must know, such as what the baseline is (repeatable)
    #[arg(long = "note")]
    notes: Vec<String>,
    /// Write the page here rather than to stdout
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Draw the figures (each experiment's, and the keep-alive throughput's) into this
    /// directory, which must be in the page's, and show them on the page (needs --out)
    #[arg(long, value_name = "DIR", requires = "out")]
    figures: Option<PathBuf>,
}

impl Args {
    /// Prints the page made of the reports named.
    pub fn run(self) -> ExitCode {
        let page = (|| {
            let mut experiments = Vec::new();
            for spec in &self.experiments {
                let (label, file) =
                    spec.split_once('=').ok_or_else(|| format!("--experiment {spec}: expected LABEL=FILE"))?;
                experiments.push(Experiment { label: label.to_string(), report: load(Path::new(file))? });
            }
            let throughput: Vec<summary::Report> = self.throughput.iter().map(|p| load(p)).collect::<Result<_, _>>()?;
            let soaks: Vec<tier_soak::Report> = self.tier_soaks.iter().map(|p| load(p)).collect::<Result<_, _>>()?;
            let provenance = Provenance {
                date: self.date.clone(),
                commit: self.commit.clone(),
                commands: self.commands.clone(),
                notes: self.notes.clone(),
            };
            let figures = match &self.figures {
                Some(dir) => self.draw(dir, &experiments, &throughput)?,
                None => Figures::default(),
            };
            let page = markdown(&provenance, &machine(), &experiments, &throughput, &soaks, &figures);
            match &self.out {
                Some(path) => std::fs::write(path, page).map_err(|e| format!("{}: {e}", path.display())),
                None => {
                    print!("{page}");
                    Ok(())
                }
            }
        })();
        exit(page)
    }

    /// Draws the figures into `dir`: `experiment-N/` for the Nth
    /// experiment, the proxies' beside them.
    fn draw(&self, dir: &Path, experiments: &[Experiment], throughput: &[summary::Report]) -> Result<Figures, String> {
        let page_dir = self.out.as_deref().and_then(Path::parent).unwrap_or(Path::new(""));
        let relative = dir.strip_prefix(page_dir).map_err(|_| {
            format!("--figures {} must be inside the page's directory {}", dir.display(), page_dir.display())
        })?;
        let link = |path: &Path| {
            let name = path.strip_prefix(dir).unwrap_or(path);
            relative.join(name).display().to_string()
        };
        let mut figures = Figures::default();
        for (i, e) in experiments.iter().enumerate() {
            let written = report::figures::write(&dir.join(format!("experiment-{}", i + 1)), &e.report.runs)?;
            figures.experiments.push(written.iter().map(|p| link(p)).collect());
        }
        if let Some(keep_alive) = throughput.iter().find(|t| !t.new_connection && !t.tail && !t.results.is_empty()) {
            let written = report::figures::write_throughput(dir, keep_alive)?;
            figures.proxies = written.iter().map(|p| link(p)).collect();
        }
        Ok(figures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Added, Latency, Phase, Run};

    fn run(scheduler: &str, calls: u64) -> Run {
        Run {
            scheduler: scheduler.to_string(),
            balancer: "pull-based".to_string(),
            seed: 1,
            calls,
            failed: 0,
            cut: 0,
            throughput_rps: 54.7,
            latency_ms: Latency { mean: 481.0, p50: 400.0, p90: 800.0, p95: 900.0, p99: 1200.0 },
            cold_start_rate: 0.3,
            load_cv: 0.27,
            added_latency_ms: Added { p50: 0.2, p99: 1.5 },
            phases: vec![Phase { vus: 20, throughput_rps: 20.0, mean_ms: Some(481.0), cold_start_rate: Some(0.3) }],
            cold_bound_rate: None,
            latency_cdf_ms: vec![100.0, 481.0, 2000.0],
            cold_causes: Default::default(),
            failures: Default::default(),
        }
    }

    /// A throughput row: `contender` at `connections`, `rps`.
    fn row(contender: &str, connections: usize, rps: f64) -> summary::Row {
        summary::Row {
            contender: contender.to_string(),
            cores: 2,
            connections,
            rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            p999_ms: 3.0,
            p9999_ms: 4.0,
            max_ms: 5.0,
            errors: 0,
            timeouts: 0,
            cpu_s_per_1k: 0.02,
            front_cpu_s_per_1k: None,
            peak_rss_mb: 20.0,
            syscalls_per_request: None,
            context_switches_per_request: None,
            reschedule_ipis_per_request: None,
        }
    }

    #[test]
    fn the_page_holds_every_report_and_where_it_came_from() {
        let provenance = Provenance {
            date: "2026-11-23".to_string(),
            commit: "abc123".to_string(),
            commands: vec!["perf/experiment --baseline /x/hiku-go".to_string()],
            notes: vec!["hiku-go is a local build".to_string()],
        };
        let experiments = vec![
            Experiment { label: "6 GB".to_string(), report: Report::new(vec![run("hiku", 16414), run("go", 12361)]) },
            Experiment { label: "16 GB".to_string(), report: Report::new(vec![run("hiku", 17000)]) },
        ];
        let row = |contender: &str, rps: f64| row(contender, 64, rps);
        let config = |label: &str| (label.to_string(), format!("the {label} config\n"));
        let throughput = summary::Report {
            results: vec![row("hiku", 40000.0), row("nginx", 50000.0)],
            configs: vec![config("nginx"), config("haproxy")],
            ..Default::default()
        };
        let closing = summary::Report {
            results: vec![row("hiku", 21000.0)],
            new_connection: true,
            configs: vec![config("haproxy")],
            ..Default::default()
        };
        let idle = crate::throughput::idle::IdleRow {
            contender: "nginx".to_string(),
            cores: 2,
            connections: 10000,
            burst: false,
            ok: 10000,
            errors: 0,
            rss_before_mb: 5.0,
            rss_after_mb: 15.0,
            kib_per_connection: 1.02,
        };
        let idle = summary::Report { idle: vec![idle], ..Default::default() };
        let soak = tier_soak::Report {
            instances: 2,
            calls: 600000,
            answered: [(200, 600000)].into(),
            restarts: 9,
            kill_calls: 150000,
            kill_failed: 0,
            kill_lost: 43,
            worker_lists: [("127.0.0.1:1".to_string(), vec!["http://w".to_string()])].into(),
            workers: vec!["http://w".to_string()],
            ..Default::default()
        };
        let figures = Figures {
            experiments: vec![vec!["figures/experiment-1/latency_cdf.svg".to_string()]],
            proxies: vec!["figures/proxies_rps.svg".to_string()],
        };
        let page = markdown(&provenance, "a machine", &experiments, &[throughput, closing, idle], &[soak], &figures);
        for needle in [
            "a machine",
            "2026-11-23",
            "abc123",
            "`perf/experiment --baseline /x/hiku-go`",
            "- hiku-go is a local build",
            "## The paper's experiment: 6 GB",
            "## The paper's experiment: 16 GB",
            "16414",
            "12361",
            "17000",
            "40000",
            "50000",
            "1.25",
            "## The proxy's own cost, keep-alive",
            "## The proxy's own cost, a new connection per call",
            "21000",
            "## Idle keep-alive connections",
            "1.02",
            "## How the other proxies ran",
            "nginx:\n\n```\nthe nginx config\n```",
            "## A tier under restarts: `perf/soak --instances 2`",
            "9 restarts, 600000 calls",
            "43 lost",
            "nothing lost or failed in the rolling restarts",
            "![latency cdf](figures/experiment-1/latency_cdf.svg)",
            "## The proxies side by side (keep-alive)\n\n![proxies rps](figures/proxies_rps.svg)",
        ] {
            assert!(page.contains(needle), "{needle} missing from:\n{page}");
        }
        assert_eq!(page.matches("the haproxy config").count(), 1, "each proxy's config once:\n{page}");
    }

    #[test]
    fn figures_are_drawn_beside_the_page_and_shown_on_it() {
        let dir = std::env::temp_dir().join(format!("hiku-perf-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let experiment = dir.join("experiment.json");
        let report = Report::new(vec![run("hiku", 16414), run("hiku-go", 12361)]);
        std::fs::write(&experiment, serde_json::to_string(&report).unwrap()).unwrap();
        let row = |contender: &str, connections: usize| row(contender, connections, 40000.0);
        let throughput = dir.join("throughput.json");
        let rows = vec![row("hiku", 64), row("nginx", 64), row("hiku", 256), row("nginx", 256)];
        let report = summary::Report { results: rows, ..Default::default() };
        std::fs::write(&throughput, serde_json::to_string(&report).unwrap()).unwrap();
        let args = Args {
            experiments: vec![format!("16 GB={}", experiment.display())],
            throughput: vec![throughput],
            tier_soaks: vec![],
            commit: "abc123".to_string(),
            date: "today".to_string(),
            commands: vec![],
            notes: vec![],
            out: Some(dir.join("RESULTS.md")),
            figures: Some(dir.join("figures")),
        };
        let _ = args.run();
        let page = std::fs::read_to_string(dir.join("RESULTS.md")).unwrap();
        for (file, link) in [
            ("figures/experiment-1/latency_cdf.svg", "![latency cdf](figures/experiment-1/latency_cdf.svg)"),
            ("figures/experiment-1/throughput.svg", "![throughput](figures/experiment-1/throughput.svg)"),
            ("figures/experiment-1/cold_starts.svg", "![cold starts](figures/experiment-1/cold_starts.svg)"),
            ("figures/proxies_rps.svg", "![proxies rps](figures/proxies_rps.svg)"),
            ("figures/proxies_cpu.svg", "![proxies cpu](figures/proxies_cpu.svg)"),
        ] {
            let svg = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(svg.starts_with("<svg") && svg.contains("hiku"), "{file}: {svg}");
            assert!(page.contains(link), "{link} missing from:\n{page}");
        }
        // Two schedulers' CDFs; two contenders' bars at two connection counts.
        let cdf = std::fs::read_to_string(dir.join("figures/experiment-1/latency_cdf.svg")).unwrap();
        assert_eq!(cdf.matches("<polyline").count(), 2);
        let rps = std::fs::read_to_string(dir.join("figures/proxies_rps.svg")).unwrap();
        assert!(rps.contains("256 connections") && rps.contains("nginx"), "{rps}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn figures_outside_the_pages_directory_are_refused() {
        let args = Args {
            experiments: vec![],
            throughput: vec![],
            tier_soaks: vec![],
            commit: String::new(),
            date: String::new(),
            commands: vec![],
            notes: vec![],
            out: Some(PathBuf::from("perf/RESULTS.md")),
            figures: Some(PathBuf::from("elsewhere/figures")),
        };
        let e = args.draw(Path::new("elsewhere/figures"), &[], &[]).unwrap_err();
        assert!(e.contains("must be inside the page's directory perf"), "{e}");
    }

    #[test]
    fn machine_names_cores_and_kernel() {
        let m = machine();
        assert!(m.contains("cores") && m.contains("Linux"), "{m}");
    }
}
