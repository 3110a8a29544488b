//! End to end: tiny throughput measurements (direct and hiku, one round
//! of about a second at 8 connections; a new connection per call; 200 idle
//! connections) through the real binaries, and their JSON reports checked
//! for completeness. Speed is reported, not asserted.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use hiku_perf::throughput::summary::Report;

/// The whole run must end within this.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_tiny_measurement_reports_every_contender_without_errors() {
    let started = Instant::now();
    let args = ["--duration", "1", "--warmup", "0.2", "--connections", "8"];
    let (report, stdout, stderr) = run_throughput(&args, "tiny");
    assert!(started.elapsed() < DEADLINE, "took {:?}", started.elapsed());

    let keys: Vec<(&str, usize)> = report.results.iter().map(|r| (r.contender.as_str(), r.connections)).collect();
    assert_eq!(keys, [("direct", 8), ("hiku", 8)]);
    for r in &report.results {
        assert!(r.rps > 0.0, "{r:?}");
        assert_eq!(r.errors, 0, "{r:?}\n{stderr}");
        assert!(0.0 < r.p50_ms && r.p50_ms <= r.p99_ms && r.p99_ms <= r.p999_ms, "{r:?}");
        assert!(r.cpu_s_per_1k.is_finite() && r.cpu_s_per_1k >= 0.0, "{r:?}");
        assert!(r.peak_rss_mb > 0.0, "{r:?}");
        // The machine's reschedule IPIs are always counted (perf may not be).
        assert!(r.reschedule_ipis_per_request.is_some_and(|n| n >= 0.0), "{r:?}");
        if let Some(syscalls) = r.syscalls_per_request {
            assert!(syscalls > 0.0 && r.context_switches_per_request.is_some(), "{r:?}");
        }
    }

    // The table has the same rows, hiku's ratios to itself are 1.
    let hiku_line = stdout.lines().find(|l| l.starts_with("hiku ")).expect(&stdout);
    assert!(hiku_line.contains("1.00      1.00      1.00"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("direct ")), "{stdout}");
}

#[test]
fn a_bad_option_is_a_usage_error_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_hiku-perf"))
        .args(["throughput", "--balancer", "round-robin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown balancer \"round-robin\""), "{stderr}");
}

/// Runs `hiku-perf throughput --rounds 1` with `args` (direct and hiku,
/// the proxies with a row of their own); its report, stdout and stderr.
fn run_throughput(args: &[&str], name: &str) -> (Report, String, String) {
    let args: Vec<&str> = ["throughput", "--rounds", "1"].into_iter().chain(args.iter().copied()).collect();
    support::run_perf(&args, name)
}

#[test]
fn idle_connections_are_opened_called_once_and_weighed() {
    let (report, stdout, _) = run_throughput(&["--idle-connections", "200"], "idle");
    assert!(report.results.is_empty(), "{report:?}");
    let [hiku] = report.idle.as_slice() else { panic!("{report:?}") };
    assert_eq!((hiku.contender.as_str(), hiku.connections, hiku.ok, hiku.errors), ("hiku", 200, 200, 0), "{hiku:?}");
    assert!(hiku.rss_before_mb > 0.0 && hiku.rss_after_mb > 0.0, "{hiku:?}");
    let per_connection = (hiku.rss_after_mb - hiku.rss_before_mb) * 1024.0 / 200.0;
    assert!((hiku.kib_per_connection - per_connection).abs() < 1e-9, "{hiku:?}");
    assert!(stdout.starts_with("Idle keep-alive connections"), "{stdout}");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(hiku.cores, cores, "{hiku:?}");
    let row = format!("hiku           {cores:>5}     200  by 64     200       0");
    assert!(stdout.lines().any(|l| l.starts_with(&row)), "{stdout}");
}

#[test]
fn a_new_connection_per_call_is_measured_without_errors() {
    let args = ["--new-connection", "--duration", "0.5", "--warmup", "0.2", "--connections", "4"];
    let (report, stdout, _) = run_throughput(&args, "close");
    assert!(report.new_connection, "{report:?}");
    assert_eq!(report.results.len(), 2, "{report:?}");
    for r in &report.results {
        assert!(r.rps > 0.0 && r.errors == 0, "{r:?}");
    }
    assert!(stdout.starts_with("The proxy's own cost, a new connection per call"), "{stdout}");
}

#[test]
fn variants_of_hiku_are_measured_under_their_labels() {
    let args = ["--duration", "0.5", "--warmup", "0.2", "--connections", "4", "--variant", "hiku-epoll=HIKU_IO=epoll"];
    let (report, _, _) = run_throughput(&args, "variant");
    let keys: Vec<&str> = report.results.iter().map(|r| r.contender.as_str()).collect();
    assert_eq!(keys, ["direct", "hiku", "hiku-epoll"]);
    assert!(report.results.iter().all(|r| r.rps > 0.0 && r.errors == 0), "{report:?}");
    let output = Command::new(env!("CARGO_BIN_EXE_hiku-perf"))
        .args(["throughput", "--variant", "hiku=--no-pin"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("must be a new word"), "{output:?}");
}

/// A system binary, from the PATH or where Debian puts it.
fn system_binary(name: &str) -> String {
    let dirs = std::env::var("PATH").unwrap_or_default();
    let mut found = dirs.split(':').chain(["/usr/sbin", "/usr/bin"]).map(|d| format!("{d}/{name}"));
    let path = found.find(|p| std::path::Path::new(p).is_file());
    path.unwrap_or_else(|| panic!("no {name} on the PATH or in /usr/sbin: .ci/run installs nginx-light and haproxy"))
}

#[test]
fn nginx_and_haproxy_are_measured_beside_hiku_in_every_mode() {
    let (nginx, haproxy) = (system_binary("nginx"), system_binary("haproxy"));
    let proxies = ["--nginx", nginx.as_str(), "--haproxy", haproxy.as_str()];
    let quick = ["--duration", "0.5", "--warmup", "0.2", "--connections", "4"];
    for mode in ["keep-alive", "--new-connection"] {
        let args: Vec<&str> =
            quick.iter().chain(&proxies).copied().chain((mode != "keep-alive").then_some(mode)).collect();
        let (report, stdout, stderr) = run_throughput(&args, "proxies");
        let keys: Vec<&str> = report.results.iter().map(|r| r.contender.as_str()).collect();
        assert_eq!(keys, ["direct", "hiku", "nginx", "haproxy"], "{mode}");
        for r in &report.results {
            assert!(r.rps > 0.0 && r.errors == 0, "{mode}: {r:?}\n{stderr}");
        }
        let labels: Vec<&str> = report.configs.iter().map(|(label, _)| label.as_str()).collect();
        assert_eq!(labels, ["nginx", "haproxy"], "{mode}");
        assert!(stdout.contains("haproxy's configuration") && stdout.contains("balance leastconn"), "{stdout}");
        assert!(stdout.contains("http-reuse always") && stdout.contains("nbthread"), "{stdout}");
    }
    let args: Vec<&str> = ["--idle-connections", "100"].iter().chain(&proxies).copied().collect();
    let (report, _, _) = run_throughput(&args, "proxies-idle");
    let rows: Vec<(&str, u64, u64)> = report.idle.iter().map(|r| (r.contender.as_str(), r.ok, r.errors)).collect();
    assert_eq!(rows, [("hiku", 100, 0), ("nginx", 100, 0), ("haproxy", 100, 0)]);
}

#[test]
fn a_tier_is_measured_with_its_fronts_share_of_the_cpu() {
    let haproxy = system_binary("haproxy");
    let args = ["--duration", "0.5", "--warmup", "0.2", "--connections", "8"];
    let args: Vec<&str> = args.iter().copied().chain(["--haproxy", haproxy.as_str(), "--tier", "2"]).collect();
    let (report, stdout, stderr) = run_throughput(&args, "tier");
    let keys: Vec<&str> = report.results.iter().map(|r| r.contender.as_str()).collect();
    assert_eq!(keys, ["direct", "hiku", "haproxy", "tier-k2"]);
    let tier = &report.results[3];
    assert!(tier.rps > 0.0 && tier.errors == 0, "{tier:?}\n{stderr}");
    // The front's CPU is counted on its own too, and is part of the whole.
    let front = tier.front_cpu_s_per_1k.expect("the front's CPU");
    assert!(front > 0.0 && front < tier.cpu_s_per_1k, "{tier:?}");
    assert!(report.results[..3].iter().all(|r| r.front_cpu_s_per_1k.is_none()));
    assert!(stdout.contains("front s/1k"), "{stdout}");
}
