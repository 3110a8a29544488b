//! `hiku-perf experiment`: its command line, the options it makes of it,
//! and the report, printed and written where asked.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::balancers::BALANCERS;
use crate::cli::{baseline_label, exit, sibling, usage_error};
use crate::emulator::{Fault, DEFAULT_DESTROY_MS, DEFAULT_MEMORY_MB, DEFAULT_PAUSED_MB};
use crate::experiment::{self, Contender, Options, Outcome};
use crate::harness::cluster::EmulatorArgs;
use crate::harness::front;
use crate::harness::process::until_interrupted;
use crate::load::workload::DEFAULT_PROBABILITIES;
use crate::report::{self, Report};

/// `hiku-perf experiment`'s command line.
#[derive(clap::Args)]
pub struct Args {
    /// A short run of every balancer: time scale 0.1, 60 s phases (at paper scale)
    #[arg(long)]
    quick: bool,
    /// Balancers to run, comma-separated [default: all six; a baseline runs the Go original's four]
    #[arg(long, value_delimiter = ',')]
    balancers: Vec<String>,
    /// Emulated workers
    #[arg(long, default_value_t = 5)]
    workers: usize,
    /// Multiplies every duration [default: 1, or 0.1 with --quick]
    #[arg(long)]
    time_scale: Option<f64>,
    /// Length of each of the three phases, paper-scale seconds [default: 100, or 60 with --quick]
    #[arg(long)]
    phase_seconds: Option<f64>,
    /// The first seed of the workload and the service-time noise
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds to run every balancer with: --seed, --seed + 1, ... [default: 3, or 1 with --quick]
    #[arg(long)]
    seeds: Option<u64>,
    /// Memory pool per worker (OpenLambda's mem_pool_mb; a running sandbox holds 512 MB)
    #[arg(long, default_value_t = DEFAULT_MEMORY_MB)]
    memory_mb: u64,
    /// What a paused sandbox keeps of its 512 MB
    #[arg(long, default_value_t = DEFAULT_PAUSED_MB)]
    paused_mb: u64,
    /// Paper-scale ms destroying a sandbox takes until its memory is back
    #[arg(long, default_value_t = DEFAULT_DESTROY_MS)]
    destroy_ms: f64,
    /// Paper-scale seconds after which a call pulls its function's code again (0: never)
    #[arg(long, default_value_t = 5.0)]
    code_refresh_s: f64,
    /// A fault in the first worker's destroySandbox reports: lost-destroy (never sent) or
    /// other-host (they name it localhost for 127.0.0.1)
    #[arg(long, value_name = "FAULT", value_parser = Fault::parse)]
    fault: Option<Fault>,
    /// The workers leave out the emulator's hint headers X-Cold-Start and X-Service-Ms, as
    /// real OpenLambda workers do (only hiku's predictive balancer reads them)
    #[arg(long)]
    no_hints: bool,
    /// Another scheduler binary, started as `PATH start -c <config>`, run after hiku
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// hiku once more under LABEL, with the keys of the JSON object JSON added to its config:
    /// `--variant 'hiku-cap4={"workers_max_inflight": 4}'` (repeatable)
    #[arg(long, value_name = "LABEL=JSON")]
    variant: Vec<String>,
    /// The hiku binary [default: `hiku` beside this program]
    #[arg(long)]
    hiku: Option<PathBuf>,
    /// The emulator binary [default: `hiku-emulator` beside this program]
    #[arg(long)]
    emulator: Option<PathBuf>,
    /// Function probabilities of the Azure trace
    #[arg(long, default_value = DEFAULT_PROBABILITIES)]
    functions: PathBuf,
    /// Write the report as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as CSV
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write every call (start, latency, status, cold, worker, service time, cold cause) as CSV
    #[arg(long)]
    calls_csv: Option<PathBuf>,
    /// Write the figures (SVG) into this directory
    #[arg(long)]
    plots: Option<PathBuf>,
    /// hiku as a tier too: this many instances behind HAProxy, comma-separated
    /// (1: hiku alone, as always); e.g. `--instances 2,3`
    #[arg(long, value_delimiter = ',')]
    instances: Vec<usize>,
    /// The tier's front, comma-separated: `fnhash` (the shipped config, hashing
    /// the function name) or `l4` (TCP round-robin) [default: fnhash]
    #[arg(long, value_delimiter = ',')]
    front: Vec<String>,
    /// Each tier once more, its instances restarted one after the other
    /// early in the last phase (rows `...-restarted`)
    #[arg(long)]
    rolling_restart: bool,
}

impl Args {
    /// Runs the experiment, prints the table and writes the files asked for.
    pub fn run(self) -> ExitCode {
        let options = match self.options() {
            Ok(options) => options,
            Err(e) => return usage_error(e),
        };
        // Fail now, not after a long run, if an output can't go where asked.
        let files = [&self.json, &self.csv, &self.calls_csv];
        for path in files.into_iter().flatten().chain(&self.plots) {
            let dir = if Some(path) == self.plots.as_ref() { Some(path.as_path()) } else { path.parent() };
            if let Err(e) = dir.filter(|d| !d.as_os_str().is_empty()).map_or(Ok(()), std::fs::create_dir_all) {
                eprintln!("hiku-perf: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        let outcome = until_interrupted(experiment::run(&options)).and_then(|outcomes| {
            print!("{}", report::table(&outcomes.iter().map(|o| o.run.clone()).collect::<Vec<_>>()));
            self.write_outputs(&outcomes)
        });
        exit(outcome)
    }

    /// The experiment's options, or what is wrong with the arguments.
    fn options(&self) -> Result<Options, String> {
        let (time_scale, phase_seconds) = match self.quick {
            true => (self.time_scale.unwrap_or(0.1), self.phase_seconds.unwrap_or(60.0)),
            false => (self.time_scale.unwrap_or(1.0), self.phase_seconds.unwrap_or(100.0)),
        };
        if !(time_scale > 0.0 && time_scale.is_finite() && phase_seconds > 0.0 && phase_seconds.is_finite()) {
            return Err("--time-scale and --phase-seconds must be positive".to_string());
        }
        let balancers: Vec<String> = match self.balancers.is_empty() {
            true => BALANCERS.iter().map(|b| b.to_string()).collect(),
            false => self.balancers.clone(),
        };
        if let Some(b) = balancers.iter().find(|b| !BALANCERS.contains(&b.as_str())) {
            return Err(format!("unknown balancer {b:?}; the balancers are {}", BALANCERS.join(", ")));
        }
        let hiku = self.hiku.clone().unwrap_or_else(|| sibling("hiku"));
        let mut contenders = vec![Contender {
            label: "hiku".to_string(),
            binary: hiku.clone(),
            paper_balancers_only: false,
            config: Default::default(),
            tier: None,
            rolling_restart: false,
        }];
        let fronts = match self.front.is_empty() {
            true => vec![front::Kind::FnHash],
            false => self.front.iter().map(|f| front::Kind::parse(f)).collect::<Result<_, _>>()?,
        };
        if (!self.front.is_empty() || self.rolling_restart) && self.instances.iter().all(|&k| k <= 1) {
            return Err("--front and --rolling-restart need --instances of 2 or more".to_string());
        }
        for &instances in self.instances.iter().filter(|&&k| k > 1) {
            if instances > 16 {
                return Err("--instances: at most 16".to_string());
            }
            for &kind in &fronts {
                for restarted in [false, true].into_iter().filter(|&r| !r || self.rolling_restart) {
                    let suffix = if restarted { "-restarted" } else { "" };
                    contenders.push(Contender {
                        label: format!("hiku-k{instances}-{}{suffix}", kind.name()),
                        binary: hiku.clone(),
                        paper_balancers_only: false,
                        config: Default::default(),
                        tier: Some((instances, kind)),
                        rolling_restart: restarted,
                    });
                }
            }
        }
        for variant in &self.variant {
            let (label, json) =
                variant.split_once('=').ok_or_else(|| format!("--variant {variant:?}: expected LABEL=JSON"))?;
            let config = match serde_json::from_str(json) {
                Ok(serde_json::Value::Object(map)) if !label.is_empty() => map,
                _ => {
                    return Err(format!("--variant {variant:?}: expected a label, =, and a JSON object of config keys"))
                }
            };
            if contenders.iter().any(|c| c.label == label) {
                return Err(format!("--variant {label:?}: that label is taken"));
            }
            contenders.push(Contender {
                label: label.to_string(),
                binary: hiku.clone(),
                paper_balancers_only: false,
                config,
                tier: None,
                rolling_restart: false,
            });
        }
        if let Some(path) = &self.baseline {
            let label = baseline_label(path);
            contenders.push(Contender {
                label,
                binary: path.clone(),
                paper_balancers_only: true,
                config: Default::default(),
                tier: None,
                rolling_restart: false,
            });
        }
        for c in &contenders {
            if !c.binary.is_file() {
                return Err(format!(
                    "no scheduler binary at {} (build hiku with `cargo build --release`)",
                    c.binary.display()
                ));
            }
        }
        if self.workers == 0 {
            return Err("--workers must be at least 1".to_string());
        }
        let seeds = self.seeds.unwrap_or(if self.quick { 1 } else { 3 });
        if seeds == 0 {
            return Err("--seeds must be at least 1".to_string());
        }
        let emulator = EmulatorArgs {
            binary: self.emulator.clone().unwrap_or_else(|| sibling("hiku-emulator")),
            workers: self.workers,
            memory_mb: self.memory_mb,
            paused_mb: self.paused_mb,
            destroy_ms: self.destroy_ms,
            code_refresh_s: self.code_refresh_s,
            time_scale,
            seed: self.seed,
            fault: self.fault,
            hints: !self.no_hints,
        };
        let progress = true;
        Ok(Options {
            contenders,
            balancers,
            emulator,
            phase_seconds,
            seeds: (0..seeds).map(|i| self.seed.wrapping_add(i)).collect(),
            probabilities: self.functions.clone(),
            progress,
        })
    }

    /// Writes the report files asked for, naming each one on stderr.
    fn write_outputs(&self, outcomes: &[Outcome]) -> Result<(), String> {
        let runs: Vec<report::Run> = outcomes.iter().map(|o| o.run.clone()).collect();
        let write = |path: &Path, text: String| {
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
            Ok::<(), String>(())
        };
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(&Report::new(runs.clone())).expect("plain structs");
            write(path, json + "\n")?;
        }
        if let Some(path) = &self.csv {
            write(path, report::csv(&runs))?;
        }
        if let Some(path) = &self.calls_csv {
            let rows = outcomes
                .iter()
                .enumerate()
                .map(|(i, o)| report::calls_csv(&o.run.scheduler, &o.run.balancer, &o.calls, i == 0));
            write(path, rows.collect())?;
        }
        if let Some(dir) = &self.plots {
            let runs: Vec<report::Run> = outcomes.iter().map(|o| o.run.clone()).collect();
            for path in report::figures::write(dir, &runs)? {
                eprintln!("wrote {}", path.display());
            }
        }
        Ok(())
    }
}
