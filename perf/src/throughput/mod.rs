//! `perf/throughput`: the proxy's own cost. For each round, each
//! connection count and each contender, fresh processes: two trivial
//! upstreams ([`upstream`], in their own process), the contender in front
//! of them (or nothing, for `direct`; [`proxies`] starts them), and the
//! generator ([`blast`], on its own thread) at full speed against it, as
//! the [`options`] say. Each measurement reads the
//! contender's CPU time at the window's edges and its peak memory at the
//! end, then keeps the load going for a second, counted window in which
//! [`counters`] reads what the kernel did (system calls, context switches,
//! reschedule IPIs: tracing them slows the process down, so not in the
//! measured window); [`summary`] takes the medians.

pub mod blast;
pub mod cli;
pub mod counters;
pub mod idle;
pub mod options;
pub mod proxies;
pub mod summary;
pub mod upstream;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use self::blast::{Load, Mark, Tally};
use self::counters::{Counts, PerfStat};
use self::options::{Contender, Options, BODY, REQUEST_TIMEOUT};
use self::summary::{Row, Sample};
use crate::functions;
use crate::harness::procstat;
use crate::harness::workdir::WorkDir;

/// Every round, in which every contender is measured on every core count
/// at every connection count; the medians.
pub async fn run(options: &Options) -> Result<Vec<Row>, String> {
    let workdir = WorkDir::new()?;
    let mut samples = Vec::new();
    for round in 1..=options.rounds {
        for &cores in &options.cores {
            for &connections in &options.connections {
                for contender in &options.contenders {
                    let sample = measure(options, contender, cores, connections, &workdir.0).await?;
                    if options.progress {
                        eprintln!(
                            "[round {round}/{}] {:<12} {cores} cores {connections:>5} conns: {:>8.0} req/s  \
                             p99 {:.2} ms  p99.99 {:.2} ms  max {:.2} ms  {} errors ({} timeouts)  \
                             {:.4} cpu s/1k  {:.1} MB",
                            options.rounds,
                            contender.label,
                            sample.rps,
                            sample.p99_ms,
                            sample.p9999_ms,
                            sample.max_ms,
                            sample.errors,
                            sample.timeouts,
                            sample.cpu_s_per_1k,
                            sample.peak_rss_mb
                        );
                    }
                    samples.push(sample);
                }
            }
        }
    }
    Ok(summary::summarize(&samples))
}

async fn measure(
    options: &Options,
    contender: &Contender,
    cores: usize,
    connections: usize,
    workdir: &Path,
) -> Result<Sample, String> {
    let setup = proxies::start(options, contender, cores, workdir).await?;
    let load = Load {
        targets: setup.targets.clone(),
        connections,
        functions: functions::names(),
        body: BODY.to_vec(),
        warmup: options.warmup,
        duration: options.duration,
        counted: options.counted,
        close: options.new_connection,
        timeout: REQUEST_TIMEOUT,
    };
    let perf = match &options.perf {
        Some(perf) => Some(PerfStat::attach(perf, &setup.pids, workdir)?),
        None => None,
    };
    let (tally, cpu, counts) = generate(load, [setup.pids.clone(), setup.front_pids.clone()], perf).await?;
    let peak_rss_mb = procstat::peak_rss_mb(&setup.pids);
    let has_front = !setup.front_pids.is_empty();
    drop(setup);
    // Each group's CPU seconds in the window, per thousand calls answered.
    let per_1k = |group: usize| match cpu.as_slice() {
        [start, end] => (end[group] - start[group]) / (tally.ok as f64 / 1000.0),
        _ => f64::NAN,
    };
    let per_request = |count: Option<u64>| match tally.counted_ok {
        0 => None,
        n => count.map(|c| c as f64 / n as f64),
    };
    if options.progress && tally.errors.total() > 0 {
        eprintln!("{} at {connections} connections: errors {:?}", contender.label, tally.errors);
    }
    Ok(Sample {
        contender: contender.label.clone(),
        cores,
        connections,
        rps: tally.rps(),
        p50_ms: tally.latency_ms(0.5),
        p99_ms: tally.latency_ms(0.99),
        p999_ms: tally.latency_ms(0.999),
        p9999_ms: tally.latency_ms(0.9999),
        max_ms: tally.max_ms(),
        errors: tally.errors.total(),
        timeouts: tally.errors.timeout,
        cpu_s_per_1k: per_1k(0),
        front_cpu_s_per_1k: has_front.then(|| per_1k(1)),
        peak_rss_mb,
        syscalls_per_request: per_request(counts.syscalls),
        context_switches_per_request: per_request(counts.context_switches),
        reschedule_ipis_per_request: per_request(counts.reschedule_ipis),
    })
}

/// Sets the flag when dropped: the generator stops if the measurement is
/// abandoned (Ctrl-C, an error elsewhere).
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs the generator on its own thread; the CPU seconds of each group of
/// `pids` at the window's start and end, and what the kernel did in the
/// counted window (by `perf`, when given), come back with its tally.
async fn generate<const N: usize>(
    load: Load,
    pids: [Vec<u32>; N],
    perf: Option<PerfStat>,
) -> Result<(Tally, Vec<[f64; N]>, Counts), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let (send, receive) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("blast".to_string())
        .spawn(move || {
            let mut perf = perf;
            let mut cpu = Vec::new();
            let mut ipis = Vec::new();
            let mut perf_error = None;
            let tally = blast::run(&load, &stop, |mark: Mark| match mark {
                Mark::WindowStart | Mark::WindowEnd => cpu.push(pids.each_ref().map(|g| procstat::cpu_seconds(g))),
                Mark::CountStart => {
                    ipis.push(counters::reschedule_ipis());
                    if let Some(Err(e)) = perf.as_mut().map(PerfStat::enable) {
                        perf_error = Some(e);
                    }
                }
                Mark::CountEnd => {
                    if let Some(Err(e)) = perf.as_mut().map(PerfStat::disable) {
                        perf_error = Some(e);
                    }
                    ipis.push(counters::reschedule_ipis());
                }
            });
            let (syscalls, context_switches) = match (perf, perf_error) {
                (Some(perf), None) => perf.finish(),
                (_, Some(e)) => {
                    eprintln!("{e}: system calls and context switches not counted");
                    (None, None)
                }
                (None, None) => (None, None),
            };
            let reschedule_ipis = match ipis.as_slice() {
                [Some(start), Some(end)] => end.checked_sub(*start),
                _ => None,
            };
            let counts = Counts { syscalls, context_switches, reschedule_ipis };
            let _ = send.send(tally.map(|t| (t, cpu, counts)));
        })
        .map_err(|e| format!("starting the generator: {e}"))?;
    receive.await.map_err(|_| "the generator panicked".to_string())?.map_err(|e| format!("the generator failed: {e}"))
}
