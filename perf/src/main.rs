//! `hiku-perf experiment` and `hiku-perf throughput`: parse the options,
//! run, print and write the report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use hiku_perf::balancers::BALANCERS;
use hiku_perf::experiment::{self, Contender, Options};
use hiku_perf::harness::cluster::EmulatorArgs;
use hiku_perf::harness::process::{raise_open_file_limit, until_interrupted};
use hiku_perf::report::results::{self, Experiment, Provenance};
use hiku_perf::report::{self, Report};
use hiku_perf::throughput::blast::{self, Load};
use hiku_perf::throughput::options::{Contender as ThroughputContender, Options as ThroughputOptions, Proxy};
use hiku_perf::throughput::options::{BODY, REQUEST_TIMEOUT, UPSTREAMS};
use hiku_perf::throughput::{self, idle, proxies, summary};

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
    /// Measure the proxy's own cost: throughput, latency, CPU and memory at full speed
    Throughput(ThroughputArgs),
    /// Run only the throughput generator against a running server, and print what it measured
    Blast(BlastArgs),
    /// Lay out saved reports as markdown (perf/RESULTS.md) on stdout
    Results(ResultsArgs),
    /// Calls through hiku while its workers die, restart, leave and come back: none may be lost
    Soak(SoakArgs),
}

#[derive(Args)]
struct SoakArgs {
    /// A short run: 20 000 calls, churn every 50 ms, a burst of 2 000
    #[arg(long)]
    quick: bool,
    /// Calls to send [default: 1 000 000, or 20 000 with --quick]
    #[arg(long)]
    calls: Option<u64>,
    /// Client keep-alive connections
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Workers (trivial upstreams, one process each)
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Milliseconds between churn steps [default: 200, or 50 with --quick]
    #[arg(long)]
    churn_ms: Option<u64>,
    /// Calls sent all at once at the end, on as many connections [default: 10 000, or 2 000 with --quick]
    #[arg(long)]
    burst: Option<usize>,
    /// The balancer in hiku's config
    #[arg(long, default_value = "pull-based")]
    balancer: String,
    /// The hiku binary [default: `hiku` beside this program]
    #[arg(long)]
    hiku: Option<PathBuf>,
    /// The upstream binary [default: `hiku-upstream` beside this program]
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// Write the report as JSON
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ResultsArgs {
    /// A report written by `experiment --json`, with its label: LABEL=FILE (repeatable)
    #[arg(long = "experiment", value_name = "LABEL=FILE")]
    experiments: Vec<String>,
    /// A report written by `throughput --json` (repeatable)
    #[arg(long)]
    throughput: Vec<PathBuf>,
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
}

#[derive(Args)]
struct BlastArgs {
    /// host:port to send to; repeat to spread the connections over several
    #[arg(long, required = true)]
    target: Vec<SocketAddr>,
    /// Client connections, one request outstanding on each
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Untimed seconds before
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

#[derive(Args)]
struct ThroughputArgs {
    /// A short run: 3 rounds of 2 s at 64 and 256 connections
    #[arg(long)]
    quick: bool,
    /// Client connections, comma-separated [default: 64,256,1024, or 64,256 with --quick]
    #[arg(long, value_delimiter = ',')]
    connections: Vec<usize>,
    /// Rounds; every contender is measured at every connection count in each
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds measured per contender and connection count [default: 5, or 2 with --quick]
    #[arg(long)]
    duration: Option<f64>,
    /// Untimed seconds of load before each measurement [default: 1, or 0.5 with --quick]
    #[arg(long)]
    warmup: Option<f64>,
    /// The balancer in the schedulers' config
    #[arg(long, default_value = "least-connections")]
    balancer: String,
    /// Cores for hiku (`--cores`), nginx (worker processes) and HAProxy (threads) [default: all]
    #[arg(long)]
    cores: Option<usize>,
    /// Another scheduler binary, started as `PATH start -c <config>`
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// An nginx binary, run as a least_conn keep-alive reverse proxy
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// HAProxy (2.6+), run as a leastconn keep-alive reverse proxy with a thread per core
    /// [PATH defaults to `haproxy` on the PATH]
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "haproxy")]
    haproxy: Option<PathBuf>,
    /// The hiku binary [default: `hiku` beside this program]
    #[arg(long)]
    hiku: Option<PathBuf>,
    /// The upstream binary [default: `hiku-upstream` beside this program]
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// hiku once more, labelled LABEL, with environment variables and arguments:
    /// LABEL=[NAME=VALUE...] [ARG...], e.g. `hiku-epoll=HIKU_IO=epoll` (repeatable)
    #[arg(long = "variant", value_name = "LABEL=ARGS")]
    variants: Vec<String>,
    /// A new connection for every call: each request asks the server to close
    #[arg(long)]
    new_connection: bool,
    /// Instead of throughput: open N keep-alive connections to each proxy, send one call on
    /// each at once, and report the proxy's resident memory per idle connection
    #[arg(long, value_name = "N")]
    idle_connections: Option<usize>,
    /// With --idle-connections: send the N calls all at once, not 64 at a time
    #[arg(long, requires = "idle_connections")]
    burst: bool,
    /// Write the medians as JSON
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args)]
struct ExperimentArgs {
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
    #[arg(long, default_value_t = hiku_perf::emulator::DEFAULT_MEMORY_MB)]
    memory_mb: u64,
    /// What a paused sandbox keeps of its 512 MB
    #[arg(long, default_value_t = hiku_perf::emulator::DEFAULT_PAUSED_MB)]
    paused_mb: u64,
    /// Paper-scale seconds after which a call pulls its function's code again (0: never)
    #[arg(long, default_value_t = 5.0)]
    code_refresh_s: f64,
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
    let hiku = args.hiku.clone().unwrap_or_else(|| sibling("hiku"));
    let mut contenders = vec![Contender {
        label: "hiku".to_string(),
        binary: hiku.clone(),
        paper_balancers_only: false,
        config: Default::default(),
    }];
    for variant in &args.variant {
        let (label, json) =
            variant.split_once('=').ok_or_else(|| format!("--variant {variant:?}: expected LABEL=JSON"))?;
        let config = match serde_json::from_str(json) {
            Ok(serde_json::Value::Object(map)) if !label.is_empty() => map,
            _ => return Err(format!("--variant {variant:?}: expected a label, =, and a JSON object of config keys")),
        };
        if contenders.iter().any(|c| c.label == label) {
            return Err(format!("--variant {label:?}: that label is taken"));
        }
        contenders.push(Contender {
            label: label.to_string(),
            binary: hiku.clone(),
            paper_balancers_only: false,
            config,
        });
    }
    if let Some(path) = &args.baseline {
        let label = baseline_label(path);
        contenders.push(Contender {
            label,
            binary: path.clone(),
            paper_balancers_only: true,
            config: Default::default(),
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
    if args.workers == 0 {
        return Err("--workers must be at least 1".to_string());
    }
    let seeds = args.seeds.unwrap_or(if args.quick { 1 } else { 3 });
    if seeds == 0 {
        return Err("--seeds must be at least 1".to_string());
    }
    let emulator = EmulatorArgs {
        binary: args.emulator.clone().unwrap_or_else(|| sibling("hiku-emulator")),
        workers: args.workers,
        memory_mb: args.memory_mb,
        paused_mb: args.paused_mb,
        code_refresh_s: args.code_refresh_s,
        time_scale,
        seed: args.seed,
    };
    let progress = true;
    Ok(Options {
        contenders,
        balancers,
        emulator,
        phase_seconds,
        seeds: (0..seeds).map(|i| args.seed.wrapping_add(i)).collect(),
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
        let json = serde_json::to_string_pretty(&Report::new(runs.clone())).expect("plain structs");
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
        for path in report::figures::write(dir, outcomes.iter().map(|o| (&o.run, o.calls.as_slice())))? {
            eprintln!("wrote {path}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    raise_open_file_limit();
    match Cli::parse().command {
        Command::Experiment(args) => experiment(args),
        Command::Throughput(args) => throughput(args),
        Command::Blast(args) => blast(args),
        Command::Results(args) => results(args),
        Command::Soak(args) => soak(args),
    }
}

fn soak(args: SoakArgs) -> ExitCode {
    let options = hiku_perf::soak::Options {
        hiku: args.hiku.clone().unwrap_or_else(|| sibling("hiku")),
        upstream: args.upstream.clone().unwrap_or_else(|| sibling("hiku-upstream")),
        balancer: args.balancer.clone(),
        workers: args.workers,
        connections: args.connections,
        calls: args.calls.unwrap_or(if args.quick { 20_000 } else { 1_000_000 }),
        churn_every: Duration::from_millis(args.churn_ms.unwrap_or(if args.quick { 50 } else { 200 }).max(1)),
        burst: args.burst.unwrap_or(if args.quick { 2_000 } else { 10_000 }),
        progress: true,
    };
    if !BALANCERS.contains(&options.balancer.as_str()) || options.workers < 2 || options.connections == 0 {
        eprintln!("hiku-perf: soak needs a known --balancer, --workers 2 or more, and --connections");
        return ExitCode::from(2);
    }
    if let Err(e) = hiku_perf::soak::check_binaries(&options) {
        eprintln!("hiku-perf: {e}");
        return ExitCode::from(2);
    }
    let report = match until_interrupted(hiku_perf::soak::run(&options)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("hiku-perf: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.text());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).expect("plain structs");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("hiku-perf: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let problems = report.problems();
    for problem in &problems {
        eprintln!("FAIL: {problem}");
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn results(args: ResultsArgs) -> ExitCode {
    let page = (|| {
        let mut experiments = Vec::new();
        for spec in &args.experiments {
            let (label, file) =
                spec.split_once('=').ok_or_else(|| format!("--experiment {spec}: expected LABEL=FILE"))?;
            experiments.push(Experiment { label: label.to_string(), report: results::load(Path::new(file))? });
        }
        let throughput: Vec<summary::Report> =
            args.throughput.iter().map(|p| results::load(p)).collect::<Result<_, _>>()?;
        let provenance = Provenance {
            date: args.date.clone(),
            commit: args.commit.clone(),
            commands: args.commands.clone(),
            notes: args.notes.clone(),
        };
        Ok::<_, String>(results::markdown(&provenance, &results::machine(), &experiments, &throughput))
    })();
    exit(page.map(|page| print!("{page}")))
}

/// The exit status for how a command ended, with the error on stderr.
fn exit(outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hiku-perf: {e}");
            ExitCode::FAILURE
        }
    }
}

fn blast(args: BlastArgs) -> ExitCode {
    let (duration, warmup) = match (seconds(args.duration, "--duration"), seconds(args.warmup, "--warmup")) {
        (Ok(d), Ok(w)) if !d.is_zero() && args.connections > 0 => (d, w),
        _ => {
            eprintln!("hiku-perf: --duration and --connections must be positive");
            return ExitCode::from(2);
        }
    };
    let load = Load {
        targets: args.target,
        connections: args.connections,
        functions: hiku_perf::functions::names(),
        body: BODY.to_vec(),
        warmup,
        duration,
        counted: Duration::ZERO,
        close: false,
        timeout: REQUEST_TIMEOUT,
    };
    exit(blast::run(&load, &AtomicBool::new(false), |_| {}).map_err(|e| e.to_string()).map(|t| {
        println!(
            "{} connections: {:.0} req/s  p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  {} ok  errors {:?}",
            args.connections,
            t.rps(),
            t.latency_ms(0.5),
            t.latency_ms(0.99),
            t.latency_ms(0.999),
            t.ok,
            t.errors
        );
    }))
}

fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("{what} must be a number of seconds, not {value}"))
}

fn throughput_options(args: &ThroughputArgs) -> Result<ThroughputOptions, String> {
    let (duration, warmup, connections) = match args.quick {
        true => (args.duration.unwrap_or(2.0), args.warmup.unwrap_or(0.5), vec![64, 256]),
        false => (args.duration.unwrap_or(5.0), args.warmup.unwrap_or(1.0), vec![64, 256, 1024]),
    };
    let connections = if args.connections.is_empty() { connections } else { args.connections.clone() };
    let (duration, warmup) = (seconds(duration, "--duration")?, seconds(warmup, "--warmup")?);
    if duration.is_zero() || args.rounds == 0 || connections.contains(&0) || args.idle_connections == Some(0) {
        return Err("--duration, --rounds, --idle-connections and every --connections must be positive".to_string());
    }
    if !BALANCERS.contains(&args.balancer.as_str()) {
        return Err(format!("unknown balancer {:?}; the balancers are {}", args.balancer, BALANCERS.join(", ")));
    }
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cores = args.cores.unwrap_or(available);
    if cores == 0 {
        return Err("--cores must be at least 1".to_string());
    }
    let hiku = args.hiku.clone().unwrap_or_else(|| sibling("hiku"));
    let upstream = args.upstream.clone().unwrap_or_else(|| sibling("hiku-upstream"));
    let hiku_extra = args.cores.map(|n| vec!["--cores".to_string(), n.to_string()]).unwrap_or_default();
    let mut contenders = vec![
        ThroughputContender { label: "direct".to_string(), proxy: Proxy::Direct },
        ThroughputContender {
            label: "hiku".to_string(),
            proxy: Proxy::Scheduler { binary: hiku.clone(), extra: hiku_extra.clone(), env: Vec::new() },
        },
    ];
    for spec in &args.variants {
        let variant = throughput::parse_variant(spec)?;
        let extra = hiku_extra.iter().cloned().chain(variant.args).collect();
        let proxy = Proxy::Scheduler { binary: hiku.clone(), extra, env: variant.env };
        contenders.push(ThroughputContender { label: variant.label, proxy });
    }
    if let Some(path) = &args.baseline {
        let proxy = Proxy::Scheduler { binary: path.clone(), extra: Vec::new(), env: Vec::new() };
        contenders.push(ThroughputContender { label: baseline_label(path), proxy });
    }
    if let Some(path) = &args.nginx {
        contenders
            .push(ThroughputContender { label: "nginx".to_string(), proxy: Proxy::Nginx { binary: path.clone() } });
    }
    if let Some(path) = &args.haproxy {
        let binary = on_path(path).ok_or_else(|| format!("no haproxy binary {}", path.display()))?;
        contenders.push(ThroughputContender { label: "haproxy".to_string(), proxy: Proxy::Haproxy { binary } });
    }
    for (i, c) in contenders.iter().enumerate() {
        if contenders[..i].iter().any(|earlier| earlier.label == c.label) {
            return Err(format!("two contenders are labelled {:?}", c.label));
        }
    }
    let binaries = contenders.iter().filter_map(|c| match &c.proxy {
        Proxy::Direct => None,
        Proxy::Scheduler { binary, .. } | Proxy::Nginx { binary } | Proxy::Haproxy { binary } => Some(binary),
    });
    for binary in binaries.chain([&upstream]) {
        if !binary.is_file() {
            return Err(format!(
                "no binary at {} (build with `cargo build --release -p hiku -p hiku-perf`)",
                binary.display()
            ));
        }
    }
    Ok(ThroughputOptions {
        contenders,
        upstream,
        balancer: args.balancer.clone(),
        cores,
        connections,
        rounds: args.rounds,
        warmup,
        duration,
        counted: duration / 2,
        perf: if args.idle_connections.is_some() { None } else { usable_perf() },
        new_connection: args.new_connection,
        progress: true,
    })
}

/// `path` itself if it names a file, or a bare name found on the PATH.
fn on_path(path: &Path) -> Option<PathBuf> {
    if path.is_file() || path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs).map(|dir| dir.join(path)).find(|p| p.is_file())
}

/// `perf` from the PATH if it can count system calls here; says why not
/// otherwise.
fn usable_perf() -> Option<PathBuf> {
    let perf = PathBuf::from("perf");
    match hiku_perf::throughput::counters::perf_unusable(&perf) {
        None => Some(perf),
        Some(why) => {
            eprintln!("perf is not usable ({why}): system calls and context switches are not counted");
            None
        }
    }
}

fn throughput(args: ThroughputArgs) -> ExitCode {
    let options = match throughput_options(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("hiku-perf: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = args.json.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("hiku-perf: {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let measured = async {
        Ok(match args.idle_connections {
            Some(n) => summary::Report { idle: idle::run(&options, n, args.burst).await?, ..Default::default() },
            None => summary::Report {
                results: throughput::run(&options).await?,
                new_connection: options.new_connection,
                ..Default::default()
            },
        }
        .with_configs(proxies::proxy_configs(&options.contenders, UPSTREAMS, options.cores)))
    };
    let outcome = until_interrupted(measured).and_then(|report| {
        for (title, table) in summary::titled(&report) {
            print!("{title}\n{table}");
        }
        print!("{}", summary::configs(&report.configs));
        match &args.json {
            Some(path) => {
                let json = serde_json::to_string_pretty(&report).expect("plain structs");
                std::fs::write(path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
                Ok(())
            }
            None => Ok(()),
        }
    });
    exit(outcome)
}

fn experiment(args: ExperimentArgs) -> ExitCode {
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
    let outcome = until_interrupted(experiment::run(&options)).and_then(|outcomes| {
        print!("{}", report::table(&outcomes.iter().map(|o| o.run.clone()).collect::<Vec<_>>()));
        write_outputs(&args, &outcomes)
    });
    exit(outcome)
}
