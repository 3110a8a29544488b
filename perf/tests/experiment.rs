//! End to end: a tiny experiment (two workers, time compressed 50-fold,
//! 2 s phases) through the real hiku binary, and the report checked
//! against what the workers themselves counted.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hiku_perf::experiment::{self, Contender, Options};
use hiku_perf::harness::cluster::EmulatorArgs;

/// The whole experiment must end within this.
const DEADLINE: Duration = Duration::from_secs(120);

/// A tiny experiment's options: two workers, time compressed 50-fold, with
/// memory for every call at once (128 slots each: the paper's load never
/// fills them, so no call fails for the evictor's last resort).
fn tiny(contenders: Vec<Contender>, balancers: &[&str], seeds: Vec<u64>) -> Options {
    Options {
        contenders,
        balancers: balancers.iter().map(|b| b.to_string()).collect(),
        emulator: EmulatorArgs {
            binary: PathBuf::from(env!("CARGO_BIN_EXE_hiku-emulator")),
            workers: 2,
            memory_mb: 65536,
            paused_mb: 64,
            destroy_ms: 10.0,
            code_refresh_s: 5.0,
            time_scale: 0.02,
            seed: 7,
            fault: None,
            hints: true,
        },
        phase_seconds: 100.0,
        seeds,
        probabilities: PathBuf::from(hiku_perf::load::workload::DEFAULT_PROBABILITIES),
        progress: false,
    }
}

/// Runs `options` within the deadline.
fn run(options: &Options) -> Vec<experiment::Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime
        .block_on(async { tokio::time::timeout(DEADLINE, experiment::run(options)).await })
        .expect("the experiment ran over its deadline")
        .expect("the experiment failed")
}

#[test]
fn a_tiny_experiment_is_complete_and_consistent() {
    let hiku = Contender {
        label: "hiku".to_string(),
        binary: support::hiku_binary(),
        paper_balancers_only: false,
        config: Default::default(),
        tier: None,
        rolling_restart: false,
    };
    let options = tiny(vec![hiku], &["pull-based", "least-connections"], vec![7, 8]);
    let outcomes = run(&options);

    assert_eq!(outcomes.len(), 4);
    let runs: Vec<(u64, &str)> = outcomes.iter().map(|o| (o.run.seed, o.run.balancer.as_str())).collect();
    assert_eq!(runs, [(7, "pull-based"), (7, "least-connections"), (8, "pull-based"), (8, "least-connections")]);
    // A seed is the workload: both balancers of a seed got the same calls,
    // the other seed other ones.
    let firsts = |o: &experiment::Outcome| {
        let first_of = |vu| o.calls.iter().filter(|c| c.vu == vu).min_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        (0..20).map(|vu| first_of(vu).map(|c| c.function)).collect::<Vec<_>>()
    };
    assert_eq!(firsts(&outcomes[0]), firsts(&outcomes[1]));
    assert_ne!(firsts(&outcomes[0]), firsts(&outcomes[2]));
    for o in &outcomes {
        let r = &o.run;
        let who = format!("{} {}", r.scheduler, r.balancer);
        assert_eq!(r.failed, 0, "{who}: failed calls");
        assert!(r.calls > 0, "{who}: no calls");
        // Calls in flight when a phase ended were cut (k6's gracefulStop: 0s).
        assert!(r.cut > 0, "{who}: no call was in flight at a phase's end");
        assert_eq!((r.calls + r.cut) as usize, o.calls.len());
        assert!(o.calls.iter().filter(|c| c.cut).all(|c| c.status == 0 && c.worker.is_none()));

        // The client's view and the workers' own counts agree: the workers
        // also finished some of the calls the client cut.
        let cold = o.calls.iter().filter(|c| c.cold == Some(true)).count() as u64;
        let (worker_cold, worker_warm) = o.worker_stats.iter().fold((0, 0), |(c, w), s| (c + s.cold, w + s.warm));
        let ran = worker_cold + worker_warm;
        assert!(r.calls <= ran && ran <= r.calls + r.cut, "{who}: {ran} run by the workers, {} completed", r.calls);
        assert!(
            cold <= worker_cold && worker_cold <= cold + r.cut,
            "{who}: cold {cold} per client, {worker_cold} per workers"
        );
        assert!((r.cold_start_rate - cold as f64 / r.calls as f64).abs() < 1e-12);
        for url in &o.workers {
            assert!(o.calls.iter().any(|c| c.worker.as_ref() == Some(url)), "{who}: {url} got no call");
        }

        // Every phase ran, and the phases add up to the whole run.
        let vus: Vec<usize> = r.phases.iter().map(|p| p.vus).collect();
        assert_eq!(vus, [20, 50, 100]);
        let per_phase: f64 = r.phases.iter().map(|p| p.throughput_rps * options.phase_seconds).sum();
        // (Completed calls only.)
        assert!((per_phase - r.calls as f64).abs() < 1e-6, "{who}: phases {per_phase} vs calls {}", r.calls);
        assert!(r.phases.iter().all(|p| p.throughput_rps > 0.0), "{who}: an empty phase");

        // Latencies are ordered, at least a warm start at paper scale, and
        // never shorter than the time the worker spent.
        let l = &r.latency_ms;
        assert!(l.p50 <= l.p90 && l.p90 <= l.p95 && l.p95 <= l.p99, "{who}: {l:?}");
        assert!(l.p50 >= 58.0, "{who}: median {} ms is below any warm start", l.p50);
        assert!(r.added_latency_ms.p50 >= 0.0 && r.added_latency_ms.p50 <= r.added_latency_ms.p99);
        assert!(r.load_cv.is_finite() && r.load_cv >= 0.0, "{who}: cv {}", r.load_cv);
    }

    // The figures and the CSV come out of the same outcomes.
    let dir = std::env::temp_dir().join(format!("hiku-perf-e2e-{}", std::process::id()));
    let runs: Vec<_> = outcomes.iter().map(|o| o.run.clone()).collect();
    let written = hiku_perf::report::figures::write(&dir, &runs).unwrap();
    assert_eq!(written.len(), 3);
    let cdf = std::fs::read_to_string(dir.join("latency_cdf.svg")).unwrap();
    assert_eq!(cdf.matches("<polyline").count(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_option_is_a_usage_error_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_hiku-perf"))
        .args(["experiment", "--balancers", "round-robin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown balancer \"round-robin\""), "{stderr}");
}

#[test]
fn a_variant_needs_a_label_and_a_json_object() {
    for bad in ["nolabel", "=[1]", "hiku-x={\"workers_max_inflight\": ", "hiku={}"] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_hiku-perf"))
            .args(["experiment", "--quick", "--variant", bad])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--variant"), "{bad}: {stderr}");
    }
}

#[test]
fn a_tiny_experiment_runs_through_a_tier_behind_each_front() {
    let tier = |instances, kind: hiku_perf::harness::front::Kind| Contender {
        label: format!("hiku-k{instances}-{}", kind.name()),
        binary: support::hiku_binary(),
        paper_balancers_only: false,
        config: Default::default(),
        tier: Some((instances, kind)),
        rolling_restart: kind == hiku_perf::harness::front::Kind::FnHash,
    };
    use hiku_perf::harness::front::Kind;
    let outcomes = run(&tiny(vec![tier(2, Kind::FnHash), tier(2, Kind::L4)], &["pull-based"], vec![7]));
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        let r = &o.run;
        assert!(r.calls > 100, "{}: {} calls", r.scheduler, r.calls);
        let failed: Vec<_> = o.calls.iter().filter(|c| !c.cut && c.status != 200).collect();
        let mut statuses = std::collections::BTreeMap::new();
        failed.iter().for_each(|c| *statuses.entry(c.status).or_insert(0) += 1);
        let span = failed.first().zip(failed.last()).map(|(a, b)| (a.start_ms, b.start_ms + b.latency_ms));
        assert_eq!(
            r.failed, 0,
            "{}: every call through the front is answered: {statuses:?} in {span:?} ms",
            r.scheduler
        );
    }
}
