//! End to end: a tiny throughput measurement (direct and hiku, one round
//! of about a second at 8 connections) through the real binaries, and its
//! JSON report checked for completeness. Speed is reported, not asserted.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use hiku_perf::summary::Report;

/// The whole run must end within this.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_tiny_measurement_reports_every_contender_without_errors() {
    let dir = std::env::temp_dir().join(format!("hiku-perf-throughput-{}", std::process::id()));
    let json = dir.join("out.json");
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_hiku-perf"))
        .args(["throughput", "--rounds", "1", "--duration", "1", "--warmup", "0.2", "--connections", "8"])
        .arg("--hiku")
        .arg(support::hiku_binary())
        .arg("--upstream")
        .arg(env!("CARGO_BIN_EXE_hiku-upstream"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}\n{stderr}", output.status);
    assert!(started.elapsed() < DEADLINE, "took {:?}", started.elapsed());

    let report: Report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let keys: Vec<(&str, usize)> = report.results.iter().map(|r| (r.contender.as_str(), r.connections)).collect();
    assert_eq!(keys, [("direct", 8), ("hiku", 8)]);
    for r in &report.results {
        assert!(r.rps > 0.0, "{r:?}");
        assert_eq!(r.errors, 0, "{r:?}\n{stderr}");
        assert!(0.0 < r.p50_ms && r.p50_ms <= r.p99_ms && r.p99_ms <= r.p999_ms, "{r:?}");
        assert!(r.cpu_s_per_1k.is_finite() && r.cpu_s_per_1k >= 0.0, "{r:?}");
        assert!(r.peak_rss_mb > 0.0, "{r:?}");
    }

    // The table has the same rows, hiku's ratios to itself are 1.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let hiku_line = stdout.lines().find(|l| l.starts_with("hiku ")).expect(&stdout);
    assert!(hiku_line.ends_with("1.00      1.00      1.00"), "{stdout}");
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
