//! `hiku-perf experiment`: parse the options, run, print and write the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hiku_perf::cluster::EmulatorArgs;
use hiku_perf::experiment::{self, Contender, Options, BALANCERS};
use hiku_perf::report::{self, Report};

#[derive(Parser)]
#[command(name = "hiku-perf", version, about = "The Hiku paper's experiment on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the paper's workload through each scheduler and balancer
    Experiment(ExperimentArgs),
}

#[derive(Args)]
struct ExperimentArgs {
    /// A short run of every balancer: time scale 0.1, 60 s phases (at paper scale)
    #[arg(long)]
    quick: bool,
    /// Balancers to run, comma-separated [default: all four]
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
    /// Seed of the workload and the service-time noise
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Usable memory per worker (512 MB per sandbox)
    #[arg(long, default_value_t = 6144)]
    memory_mb: u64,
    /// Paper-scale seconds an idle sandbox lives
    #[arg(long, default_value_t = 60.0)]
    keep_alive_s: f64,
    /// Another scheduler binary, started as `PATH start -c <config>`, run after hiku
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// The hiku binary [default: `hiku` beside this program]
    #[arg(long)]
    hiku: Option<PathBuf>,
    /// The emulator binary [default: `hiku-emulator` beside this program]
    #[arg(long)]
    emulator: Option<PathBuf>,
    /// Function probabilities of the Azure trace
    #[arg(long, default_value = hiku_perf::DEFAULT_PROBABILITIES)]
    functions: PathBuf,
    /// Write the report as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as CSV
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write every call (start, latency, status, cold, worker, service time) as CSV
    #[arg(long)]
    calls_csv: Option<PathBuf>,
    /// Write the figures (SVG) into this directory
    #[arg(long)]
    plots: Option<PathBuf>,
}

/// A binary installed beside this one (cargo puts every binary of a
/// workspace in the same target directory).
fn sibling(name: &str) -> PathBuf {
    let me = std::env::current_exe().unwrap_or_default();
    me.parent().unwrap_or(Path::new(".")).join(name)
}

/// The baseline's label: its file name, unless that would read as hiku.
fn baseline_label(path: &Path) -> String {
    match path.file_name().and_then(|n| n.to_str()) {
        Some(name) if !name.is_empty() && name != "hiku" => name.to_string(),
        _ => "baseline".to_string(),
    }
}

fn options(args: &ExperimentArgs) -> Result<Options, String> {
    let (time_scale, phase_seconds) = match args.quick {
        true => (args.time_scale.unwrap_or(0.1), args.phase_seconds.unwrap_or(60.0)),
        false => (args.time_scale.unwrap_or(1.0), args.phase_seconds.unwrap_or(100.0)),
    };
    if !(time_scale > 0.0 && time_scale.is_finite() && phase_seconds > 0.0 && phase_seconds.is_finite()) {
        return Err("--time-scale and --phase-seconds must be positive".to_string());
    }
    let balancers: Vec<String> = match args.balancers.is_empty() {
        true => BALANCERS.iter().map(|b| b.to_string()).collect(),
        false => args.balancers.clone(),
    };
    if let Some(b) = balancers.iter().find(|b| !BALANCERS.contains(&b.as_str())) {
        return Err(format!("unknown balancer {b:?}; the balancers are {}", BALANCERS.join(", ")));
    }
    let mut contenders =
        vec![Contender { label: "hiku".to_string(), binary: args.hiku.clone().unwrap_or_else(|| sibling("hiku")) }];
    if let Some(path) = &args.baseline {
        contenders.push(Contender { label: baseline_label(path), binary: path.clone() });
    }
    for c in &contenders {
        if !c.binary.is_file() {
            return Err(format!(
                "no scheduler binary at {} (build hiku with `cargo build --release`)",
                c.binary.display()
            ));
        }
    }
    if args.workers == 0 {
        return Err("--workers must be at least 1".to_string());
    }
    let emulator = EmulatorArgs {
        binary: args.emulator.clone().unwrap_or_else(|| sibling("hiku-emulator")),
        workers: args.workers,
        memory_mb: args.memory_mb,
        keep_alive_s: args.keep_alive_s,
        time_scale,
        seed: args.seed,
    };
    let progress = true;
    Ok(Options {
        contenders,
        balancers,
        emulator,
        phase_seconds,
        seed: args.seed,
        probabilities: args.functions.clone(),
        progress,
    })
}

/// Writes the report files asked for, naming each one on stderr.
fn write_outputs(args: &ExperimentArgs, outcomes: &[experiment::Outcome]) -> Result<(), String> {
    let runs: Vec<report::Run> = outcomes.iter().map(|o| o.run.clone()).collect();
    let write = |path: &Path, text: String| {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
        Ok::<(), String>(())
    };
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&Report { runs: runs.clone() }).expect("plain structs");
        write(path, json + "\n")?;
    }
    if let Some(path) = &args.csv {
        write(path, report::csv(&runs))?;
    }
    if let Some(path) = &args.calls_csv {
        let rows = outcomes
            .iter()
            .enumerate()
            .map(|(i, o)| report::calls_csv(&o.run.scheduler, &o.run.balancer, &o.calls, i == 0));
        write(path, rows.collect())?;
    }
    if let Some(dir) = &args.plots {
        for path in hiku_perf::figures::write(dir, outcomes)? {
            eprintln!("wrote {path}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let Command::Experiment(args) = Cli::parse().command;
    let options = match options(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("hiku-perf: {e}");
            return ExitCode::from(2);
        }
    };
    // Fail now, not after a long run, if an output can't go where asked.
    let files = [&args.json, &args.csv, &args.calls_csv];
    for path in files.into_iter().flatten().chain(&args.plots) {
        let dir = if Some(path) == args.plots.as_ref() { Some(path.as_path()) } else { path.parent() };
        if let Err(e) = dir.filter(|d| !d.as_os_str().is_empty()).map_or(Ok(()), std::fs::create_dir_all) {
            eprintln!("hiku-perf: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let result = runtime.block_on(async {
        tokio::select! {
            result = experiment::run(&options) => result,
            // Dropping the run kills every process it started.
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    let outcome = result.and_then(|outcomes| {
        print!("{}", report::table(&outcomes.iter().map(|o| o.run.clone()).collect::<Vec<_>>()));
        write_outputs(&args, &outcomes)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hiku-perf: {e}");
            ExitCode::FAILURE
        }
    }
}
