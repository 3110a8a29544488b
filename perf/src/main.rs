//! `hiku-perf`: its subcommands, each with its own command line (in
//! `experiment::cli`, `throughput::cli`, `results` and `soak`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hiku_perf::harness::process::raise_open_file_limit;
use hiku_perf::{experiment, results, soak, throughput};

#[derive(Parser)]
#[command(name = "hiku-perf", version, about = "The Hiku paper's experiment on one machine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the paper's workload through each scheduler and balancer
    Experiment(experiment::cli::Args),
    /// Measure the proxy's own cost: throughput, latency, CPU and memory at full speed
    Throughput(throughput::cli::Args),
    /// Run only the throughput generator against a running server, and print what it measured
    Blast(throughput::cli::BlastArgs),
    /// Lay out saved reports as markdown (perf/RESULTS.md) on stdout
    Results(results::Args),
    /// Calls through hiku while its workers die, restart, leave and come back: none may be lost
    Soak(soak::Args),
}

fn main() -> ExitCode {
    raise_open_file_limit();
    match Cli::parse().command {
        Command::Experiment(args) => args.run(),
        Command::Throughput(args) => args.run(),
        Command::Blast(args) => args.run(),
        Command::Results(args) => args.run(),
        Command::Soak(args) => args.run(),
    }
}
