//! The experiment: for each scheduler and balancer, a fresh emulated
//! cluster, the scheduler in front of it, the whole workload, a summary.

pub mod cli;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balancers::PAPER_BALANCERS;
use crate::emulator::model::Stats;
use crate::functions;
use crate::harness::cluster::{self, EmulatorArgs};
use crate::harness::process::{free_port, tail};
use crate::harness::workdir::WorkDir;
use crate::harness::{front, tier};
use crate::load::loadgen::{self, Call, Plan, Progress};
use crate::load::workload::{self, PHASE_VUS};
use crate::report::{self, Run};
use crate::rng::WeightedChoice;
use crate::scale::TimeScale;

/// A scheduler binary and the label of its rows.
#[derive(Debug, Clone)]
pub struct Contender {
    pub label: String,
    pub binary: PathBuf,
    /// Runs only the Go original's balancers (a baseline).
    pub paper_balancers_only: bool,
    /// Keys added to its config (a variant of hiku: a capacity, say).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Run as a tier: this many instances behind a front of this kind.
    pub tier: Option<(usize, front::Kind)>,
    /// A tier's instances are restarted one after the other early in the
    /// last phase (the most load): what a rolling restart costs the warm
    /// knowledge.
    pub rolling_restart: bool,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub contenders: Vec<Contender>,
    pub balancers: Vec<String>,
    pub emulator: EmulatorArgs,
    /// Paper-scale seconds per phase.
    pub phase_seconds: f64,
    /// Every scheduler and balancer runs once with each seed.
    pub seeds: Vec<u64>,
    pub probabilities: PathBuf,
    /// Show progress on stderr.
    pub progress: bool,
}

/// One run's summary and the raw material behind it.
pub struct Outcome {
    pub run: Run,
    pub calls: Vec<Call>,
    pub workers: Vec<String>,
    /// Each worker's own count of what it did, in `workers` order.
    pub worker_stats: Vec<Stats>,
}

impl Options {
    fn scale(&self) -> Result<TimeScale, String> {
        TimeScale::new(self.emulator.time_scale).ok_or_else(|| "the time scale must be positive".to_string())
    }
}

/// Every contender with every balancer, one after the other, seed by seed
/// (so a slow spell of the machine falls on one seed of every balancer, not
/// on every seed of one).
pub async fn run(options: &Options) -> Result<Vec<Outcome>, String> {
    let probabilities = workload::load_probabilities(&options.probabilities)?;
    let users = workload::PHASE_VUS[workload::PHASE_VUS.len() - 1];
    let workdir = WorkDir::new()?;
    let mut outcomes = Vec::new();
    for &seed in &options.seeds {
        let choices = workload::user_choices(&probabilities, seed, users)
            .ok_or_else(|| format!("{}: fewer than 40 functions with a weight", options.probabilities.display()))?;
        for contender in &options.contenders {
            let skip = |b: &String| contender.paper_balancers_only && !PAPER_BALANCERS.contains(&b.as_str());
            for balancer in options.balancers.iter().filter(|b| !skip(b)) {
                outcomes.push(run_one(options, contender, balancer, seed, &choices, &workdir.0).await?);
            }
        }
    }
    Ok(outcomes)
}

async fn run_one(
    options: &Options,
    contender: &Contender,
    balancer: &str,
    seed: u64,
    choices: &[WeightedChoice],
    workdir: &Path,
) -> Result<Outcome, String> {
    let scale = options.scale()?;
    let address = format!("127.0.0.1:{}", free_port()?);
    let emulator_args = EmulatorArgs { seed, ..options.emulator.clone() };
    let emulator = cluster::start_emulator(&emulator_args, &format!("http://{address}")).await?;
    let name = format!("{}-{balancer}", contender.label);
    let config = workdir.join(format!("{name}.json"));
    let (host, port) = address.split_once(':').expect("host:port");
    // The Go original's keys only, so any scheduler with its interface
    // starts; a variant of hiku adds its own.
    let port: u16 = port.parse().expect("a port");
    let mut json = serde_json::json!({"host": host, "port": port, "balancer": balancer, "workers": emulator.urls});
    json.as_object_mut().expect("an object").extend(contender.config.clone());
    std::fs::write(&config, json.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
    let log = workdir.join(format!("{name}.log"));
    // A tier: the front on `address`, the instances behind it.
    let (_single, tier) = match contender.tier {
        None => (Some(cluster::start_scheduler(&contender.binary, &config, &[], &[], &address, &log).await?), None),
        Some((instances, kind)) => {
            let spec = tier::Spec {
                hiku: &contender.binary,
                haproxy: &front::haproxy(),
                extra: Vec::new(),
                config: json.clone(),
                instances,
                front: kind,
                address: address.clone(),
                workdir,
                name: &name,
            };
            (None, Some(tier::start(spec).await?))
        }
    };
    let (mut instances, _front, rise) = match tier {
        Some(tier) => (tier.instances, Some(tier.front), tier.rise),
        None => (Vec::new(), None, Duration::ZERO),
    };
    // The rolling restart: from a tenth into the last phase on, as an
    // operator's goes: the next instance stops once the front counts the
    // last one up again (else both may be out at once).
    let restarts = contender.rolling_restart.then(|| {
        let wait = scale.real(options.phase_seconds * 1000.0 * 2.1);
        let (binary, mut instances) = (contender.binary.clone(), std::mem::take(&mut instances));
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            for instance in &mut instances {
                // SIGTERM: it tells the front, then drains.
                instance.stop(libc::SIGTERM, Duration::from_secs(60)).await?;
                instance.start(&binary).await?;
                tokio::time::sleep(rise).await;
            }
            Ok::<_, String>(instances)
        })
    });

    let plan = Arc::new(Plan {
        target: address.clone(),
        functions: functions::names(),
        choices: choices.to_vec(),
        phase_ms: options.phase_seconds * 1000.0,
        scale,
        seed,
    });
    let progress = Arc::new(Progress::default());
    let label = match options.seeds.len() {
        1 => format!("{} {balancer}", contender.label),
        _ => format!("{} {balancer} seed {seed}", contender.label),
    };
    let show = options.progress.then(|| tokio::spawn(show_progress(label.clone(), plan.clone(), progress.clone())));
    let calls = loadgen::run(plan, progress).await;
    if let Some(restarts) = restarts {
        instances = restarts.await.map_err(|e| format!("the rolling restart: {e}"))??;
    }
    drop(instances);
    if let Some(show) = show {
        show.abort();
    }
    let mut worker_stats = Vec::new();
    for url in &emulator.urls {
        worker_stats.push(cluster::worker_stats(url).await?);
    }
    let phase_ms = options.phase_seconds * 1000.0;
    let refresh_ms = (options.emulator.code_refresh_s > 0.0).then_some(options.emulator.code_refresh_s * 1000.0);
    let timing = report::Timing { phase_ms, scale, refresh_ms };
    let run = report::summarize(&contender.label, balancer, seed, &calls, &emulator.urls, timing);
    if options.progress {
        let clear = if std::io::stderr().is_terminal() { "\r\x1b[2K" } else { "" };
        eprintln!("{clear}[{label}] done: {} calls, {} failed", run.calls, run.failed);
    }
    if run.calls == 0 {
        return Err(format!("{} with {balancer} completed no call; its log:\n{}", contender.label, tail(&log)));
    }
    Ok(Outcome { run, calls, workers: emulator.urls.clone(), worker_stats })
}

/// A one-line progress display, redrawn twice a second on a terminal.
async fn show_progress(label: String, plan: Arc<Plan>, progress: Arc<Progress>) {
    let started = Instant::now();
    let total = plan.scale.real(plan.phase_ms * PHASE_VUS.len() as f64);
    let terminal = std::io::stderr().is_terminal();
    let mut last_phase = usize::MAX;
    loop {
        let elapsed = started.elapsed().min(total);
        let phase = ((elapsed.as_secs_f64() / total.as_secs_f64()) * PHASE_VUS.len() as f64) as usize;
        let phase = phase.min(PHASE_VUS.len() - 1);
        let (done, failed) = (progress.completed.load(Ordering::Relaxed), progress.failed.load(Ordering::Relaxed));
        let line = format!(
            "[{label}] {} {:>5.1}/{:.1} s  {:>3} VUs  {done} calls  {failed} failed",
            bar(elapsed.as_secs_f64() / total.as_secs_f64(), 24),
            elapsed.as_secs_f64(),
            total.as_secs_f64(),
            PHASE_VUS[phase]
        );
        if terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else if phase != last_phase {
            eprintln!("{line}");
        }
        last_phase = phase;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A progress bar `width` characters wide, `done` (0 to 1) of it filled.
fn bar(done: f64, width: usize) -> String {
    let filled = ((done.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_progress_bar_fills_with_time() {
        assert_eq!(super::bar(0.0, 4), "[....]");
        assert_eq!(super::bar(0.5, 4), "[##..]");
        assert_eq!(super::bar(1.0, 4), "[####]");
        assert_eq!(super::bar(2.0, 4), "[####]");
    }
}
