//! `hiku-emulator`: N emulated OpenLambda workers in one process, one
//! loopback port each (or the workers a hiku config names). Prints `worker
//! <url>` per worker on stdout once all listen, then serves until
//! interrupted.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hiku_perf::emulator::{self, Config};
use hiku_perf::scale::TimeScale;

#[derive(Parser)]
#[command(name = "hiku-emulator", version, about = "Emulated OpenLambda workers for the hiku experiment")]
struct Cli {
    /// Workers to emulate, one port each
    #[arg(long, default_value_t = 5)]
    workers: usize,
    /// Port of the first worker, the others follow; 0: any free ports
    #[arg(long, default_value_t = 0)]
    base_port: u16,
    /// Cores per worker, shared by its running calls
    #[arg(long, default_value_t = 4)]
    cores: u32,
    /// Memory pool per worker (OpenLambda's mem_pool_mb); a running sandbox holds 512 MB of it
    #[arg(long, default_value_t = hiku_perf::emulator::DEFAULT_MEMORY_MB)]
    memory_mb: u64,
    /// What a paused sandbox keeps of its 512 MB
    #[arg(long, default_value_t = hiku_perf::emulator::DEFAULT_PAUSED_MB)]
    paused_mb: u64,
    /// Paper-scale ms destroying a sandbox takes until its memory is back
    #[arg(long, default_value_t = hiku_perf::emulator::DEFAULT_DESTROY_MS)]
    destroy_ms: f64,
    /// Paper-scale seconds after which a call pulls its function's code again, killing its
    /// instances (OpenLambda's registry_cache_ms); 0: never
    #[arg(long, default_value_t = 5.0)]
    code_refresh_s: f64,
    /// Spread of the log-normal noise on service times (median 1)
    #[arg(long, default_value_t = 0.1)]
    sigma: f64,
    /// Cold start ms of a benchmark not in Table I
    #[arg(long, default_value_t = 300.0)]
    default_cold_ms: f64,
    /// Warm start ms of a benchmark not in Table I
    #[arg(long, default_value_t = 100.0)]
    default_warm_ms: f64,
    /// Multiplies every duration (0.1: ten times faster than the paper)
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Seed of the service-time noise
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Scheduler to report removed sandboxes to (http://host:port)
    #[arg(long)]
    scheduler: Option<String>,
    /// A fault in the first worker's destroySandbox reports: lost-destroy (never sent) or
    /// other-host (they name it localhost for 127.0.0.1)
    #[arg(long, value_name = "FAULT")]
    fault: Option<String>,
    /// Leave out the hint headers X-Cold-Start and X-Service-Ms, which no real OpenLambda
    /// worker sends (the body says the same, for the load generator)
    #[arg(long)]
    no_hints: bool,
    /// Emulate the workers this hiku config names, on their ports, reporting to its host and
    /// port (in place of --workers, --base-port and --scheduler)
    #[arg(long, value_name = "CONFIG", conflicts_with_all = ["workers", "base_port", "scheduler"])]
    for_config: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(time_scale) = TimeScale::new(cli.time_scale) else {
        eprintln!("hiku-emulator: --time-scale must be positive");
        return ExitCode::from(2);
    };
    if !(cli.sigma >= 0.0 && cli.default_cold_ms >= 0.0 && cli.default_warm_ms >= 0.0) {
        eprintln!("hiku-emulator: --sigma and the default times must not be negative");
        return ExitCode::from(2);
    }
    let fault = match cli.fault.as_deref().map(emulator::Fault::parse).transpose() {
        Ok(fault) => fault,
        Err(e) => {
            eprintln!("hiku-emulator: --fault: {e}");
            return ExitCode::from(2);
        }
    };
    let (ports, scheduler) = match &cli.for_config {
        Some(path) => {
            let read = std::fs::read_to_string(path).map_err(|e| e.to_string());
            match read.and_then(|text| emulator::workers_of_config(&text)) {
                Ok((ports, scheduler)) => (ports, Some(scheduler)),
                Err(e) => {
                    eprintln!("hiku-emulator: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        }
        None => {
            let port = |i: usize| if cli.base_port == 0 { 0 } else { cli.base_port.saturating_add(i as u16) };
            let address = |i| emulator::Address { port: port(i), name: None };
            ((0..cli.workers).map(address).collect(), cli.scheduler.clone())
        }
    };
    let config = Config {
        cores: cli.cores,
        memory_mb: cli.memory_mb,
        paused_mb: cli.paused_mb,
        destroy_ms: cli.destroy_ms,
        code_refresh_s: cli.code_refresh_s,
        sigma: cli.sigma,
        default_cold_ms: cli.default_cold_ms,
        default_warm_ms: cli.default_warm_ms,
        time_scale,
        seed: cli.seed,
        scheduler,
        fault,
        hints: !cli.no_hints,
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        let urls = match emulator::start(config, &ports).await {
            Ok(urls) => urls,
            Err(e) => {
                eprintln!("hiku-emulator: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut out = std::io::stdout().lock();
        for url in &urls {
            let _ = writeln!(out, "worker {url}");
        }
        let _ = out.flush();
        drop(out);
        let _ = tokio::signal::ctrl_c().await;
        ExitCode::SUCCESS
    })
}
