//! A hand-made run of five calls, summarised and written out.

use super::*;

fn call(start_ms: f64, latency_ms: f64, answer: Option<(bool, &str, f64)>) -> Call {
    let mut call = Call {
        vu: 0,
        function: 0,
        start_ms,
        latency_ms,
        status: 502,
        cold: None,
        worker: None,
        service_ms: None,
        cut: false,
    };
    if let Some((cold, worker, service_ms)) = answer {
        call.status = 200;
        call.cold = Some(cold);
        call.worker = Some(worker.to_string());
        call.service_ms = Some(service_ms);
    }
    call
}

fn run() -> Run {
    let calls = [
        call(100.0, 200.0, Some((true, "http://a", 150.0))),
        call(500.0, 400.0, Some((false, "http://b", 300.0))),
        call(1200.0, 600.0, Some((false, "http://a", 500.0))),
        call(2500.0, 800.0, Some((true, "http://a", 500.0))),
        call(2600.0, 3.0, None),
        Call { cut: true, status: 0, ..call(2990.0, 10.0, None) },
    ];
    let workers = ["http://a".to_string(), "http://b".to_string()];
    summarize("hiku", "random", &calls, &workers, 1000.0, TimeScale::new(0.5).unwrap())
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn summary_of_known_calls() {
    let r = run();
    assert_eq!((r.calls, r.failed, r.cut), (4, 1, 1));
    assert!(close(r.throughput_rps, 4.0 / 3.0));
    assert_eq!((r.latency_ms.mean, r.latency_ms.p50), (500.0, 500.0));
    assert!(close(r.latency_ms.p90, 740.0) && close(r.latency_ms.p95, 770.0) && close(r.latency_ms.p99, 794.0));
    assert_eq!(r.cold_start_rate, 0.5);
    // Seconds: (a 1, b 1) -> 0; (a 1, b 0) -> 1; (a 1, b 0) -> 1.
    assert!(close(r.load_cv, 2.0 / 3.0));
    // Latency minus service, times the scale: 25, 50, 50, 150 real ms.
    assert_eq!(r.added_latency_ms.p50, 50.0);
    assert!(close(r.added_latency_ms.p99, 147.0));
    let phases: Vec<(usize, f64)> = r.phases.iter().map(|p| (p.vus, p.throughput_rps)).collect();
    assert_eq!(phases, vec![(20, 2.0), (50, 1.0), (100, 1.0)]);
}

#[test]
fn json_has_exactly_the_issue_schema() {
    let json = serde_json::to_value(Report { runs: vec![run()] }).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&json), ["runs"]);
    let r = &json["runs"][0];
    let expected = [
        "added_latency_ms",
        "balancer",
        "calls",
        "cold_start_rate",
        "cut",
        "failed",
        "latency_ms",
        "load_cv",
        "phases",
        "scheduler",
        "throughput_rps",
    ];
    assert_eq!(keys(r), expected);
    assert_eq!(keys(&r["latency_ms"]), ["mean", "p50", "p90", "p95", "p99"]);
    assert_eq!(keys(&r["added_latency_ms"]), ["p50", "p99"]);
    assert_eq!(keys(&r["phases"][0]), ["throughput_rps", "vus"]);
}

#[test]
fn table_and_csv_have_a_row_per_run() {
    let runs = [run(), run()];
    let table = table(&runs);
    assert_eq!(table.lines().filter(|l| l.starts_with("hiku       random")).count(), 2);
    let csv = csv(&runs);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.split(',').count() == 18));
    assert!(lines[1].starts_with("hiku,random,4,1,1,1.3333,500.0000,500.0000,740.0000,"));
}
