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
        cold_cause: None,
        worker: None,
        service_ms: None,
        cut: false,
    };
    if let Some((cold, worker, service_ms)) = answer {
        call.status = 200;
        call.cold = Some(cold);
        call.cold_cause = cold.then_some(Cold::First);
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
        Call { cold_cause: Some(Cold::Evicted), ..call(2500.0, 800.0, Some((true, "http://a", 500.0))) },
        call(2600.0, 3.0, None),
        Call { cut: true, status: 0, ..call(2990.0, 10.0, None) },
    ];
    let workers = ["http://a".to_string(), "http://b".to_string()];
    let timing = Timing { phase_ms: 1000.0, scale: TimeScale::new(0.5).unwrap(), refresh_ms: Some(1000.0) };
    summarize("hiku", "random", 7, &calls, &workers, timing)
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
    // One function, refreshed every 1000 ms: pulls at 100, 1200 and 2500.
    assert_eq!(r.cold_bound_rate, Some(0.75));
}

#[test]
fn json_has_exactly_the_issue_schema() {
    let json = serde_json::to_value(Report::new(vec![run()])).unwrap();
    let keys = |v: &serde_json::Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&json), ["runs", "summary"]);
    let r = &json["runs"][0];
    let expected = [
        "added_latency_ms",
        "balancer",
        "calls",
        "cold_bound_rate",
        "cold_causes",
        "cold_start_rate",
        "cut",
        "failed",
        "failures",
        "latency_cdf_ms",
        "latency_ms",
        "load_cv",
        "phases",
        "scheduler",
        "seed",
        "throughput_rps",
    ];
    assert_eq!(keys(r), expected);
    assert_eq!(keys(&r["latency_ms"]), ["mean", "p50", "p90", "p95", "p99"]);
    assert_eq!(keys(&r["added_latency_ms"]), ["p50", "p99"]);
    assert_eq!(keys(&r["phases"][0]), ["cold_start_rate", "mean_ms", "throughput_rps", "vus"]);
}

#[test]
fn each_phase_has_the_mean_and_cold_starts_of_its_completed_calls_and_the_table_shows_them() {
    // Phase 0: 200 ms cold and 400 ms warm; 1: 600 ms warm; 2: 800 ms
    // cold (the failed and the cut call do not count).
    let r = run();
    let got: Vec<(Option<f64>, Option<f64>)> = r.phases.iter().map(|p| (p.mean_ms, p.cold_start_rate)).collect();
    assert_eq!(got, [(Some(300.0), Some(0.5)), (Some(600.0), Some(0.0)), (Some(800.0), Some(1.0))]);
    let table = table(&[r.clone(), Run { seed: 8, ..r }]);
    assert!(table.contains("per phase, completed calls' mean ms / cold % at 20, 50, 100 VUs:\n"), "{table}");
    assert!(table.contains("  hiku random     300 /  50.0     600 /   0.0     800 / 100.0\n"), "{table}");
}

#[test]
fn cold_starts_are_counted_by_cause_and_the_table_shows_their_share() {
    let r = run();
    let causes: Vec<(&str, u64)> = r.cold_causes.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(causes, [("evicted", 1), ("first", 1)]);
    let shown = table(&[r.clone(), Run { seed: 8, cold_causes: Default::default(), ..r }]);
    assert!(
        shown.contains("cold starts by cause, % of completed calls: first / refresh / scale-up / evicted / killed:\n"),
        "{shown}"
    );
    // A quarter of the four completed calls each, on one seed of two.
    assert!(shown.contains("  hiku random   12.5    0.0    0.0   12.5    0.0\n"), "{shown}");
    let mut old = run();
    old.cold_causes.clear();
    assert!(!table(&[old]).contains("by cause"), "a report from before the causes shows none");
}

#[test]
fn failed_calls_are_counted_by_answer_and_the_table_shows_them() {
    let r = run();
    let failures: Vec<(&str, u64)> = r.failures.iter().map(|(a, n)| (a.as_str(), *n)).collect();
    assert_eq!(failures, [("502", 1)]);
    let shown = table(&[r.clone(), Run { seed: 8, ..r.clone() }]);
    assert!(shown.contains("failed calls by answer, all seeds together (none: no answer):\n"), "{shown}");
    assert!(shown.contains("\n  hiku random  502: 2\n"), "{shown}");
    let mut clean = run();
    clean.failures.clear();
    assert!(!table(&[clean]).contains("by answer"), "no failures, no line");
}

#[test]
fn a_report_without_phase_means_has_no_phase_lines() {
    let mut r = run();
    for p in &mut r.phases {
        (p.mean_ms, p.cold_start_rate) = (None, None);
    }
    assert!(!table(&[r]).contains("per phase"));
}

#[test]
fn the_latency_cdf_holds_every_half_percentile_of_the_completed_calls() {
    // Completed: 200, 400, 600 and 800 ms.
    let cdf = run().latency_cdf_ms;
    assert_eq!(cdf.len(), CDF_POINTS);
    assert_eq!((cdf[0], cdf[100], cdf[200]), (200.0, 500.0, 800.0));
    assert!(cdf.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn table_and_csv_have_a_row_per_run_and_the_paper_beside() {
    let runs = [run(), Run { balancer: "pull-based".to_string(), ..run() }];
    let table = table(&runs);
    let rows: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..5], ["scheduler", "balancer", "calls", "failed", "cut"], "{table}");
    assert_eq!(rows[1][..5], ["hiku", "random", "4", "1", "1"], "{table}");
    assert_eq!(rows[2][..3], ["hiku", "pull-based", "4"], "{table}");
    assert_eq!(rows[3][..4], ["paper", "pull-based", "16414", "481"], "{table}");
    assert_eq!(rows[4][..4], ["paper", "others", "12361-15151", "565-660"], "{table}");
    assert!(!table.contains("min"), "one seed: no ranges\n{table}");
    let bound = table.lines().find(|l| l.starts_with("bound: ")).expect("a bound line");
    assert!(bound.starts_with("bound: at least 75.0% of the calls start cold"), "{bound}");
    assert!(bound.ends_with("points above it: hiku random -25.0, hiku pull-based -25.0"), "{bound}");
    let csv = csv(&runs);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(lines.iter().all(|l| l.split(',').count() == 19));
    assert!(lines[0].starts_with("scheduler,balancer,seed,calls,failed,cut,throughput_rps,"));
    assert!(lines[1].starts_with("hiku,random,7,4,1,1,1.3333,500.0000,500.0000,740.0000,"), "{csv}");
}

#[test]
fn every_published_figure_has_a_column() {
    let headers: Vec<&str> = FIGURES.iter().map(|f| f.header).collect();
    for row in paper::rows(&[&["scheduler", "balancer"], &headers[..]].concat()) {
        let published = row[2..].iter().filter(|cell| !cell.is_empty()).count();
        assert_eq!(published, 6, "{row:?}");
    }
}

#[test]
fn several_seeds_give_a_mean_and_a_range_per_figure() {
    let seed = |seed: u64, calls: u64, cold: f64| Run { seed, calls, cold_start_rate: cold, ..run() };
    let runs = [seed(1, 100, 0.2), seed(2, 130, 0.5), seed(3, 160, 0.2)];
    let summaries = summaries(&runs);
    assert_eq!(summaries.len(), 1);
    let s = &summaries[0];
    assert_eq!((s.scheduler.as_str(), s.balancer.as_str(), s.seeds.clone()), ("hiku", "random", vec![1, 2, 3]));
    assert_eq!(s.figures["calls"], Spread { mean: 130.0, min: 100.0, max: 160.0 });
    let cold = s.figures["cold_start_percent"];
    assert!(close(cold.mean, 30.0) && close(cold.min, 20.0) && close(cold.max, 50.0), "{cold:?}");
    let table = table(&runs);
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[1].starts_with("hiku      random") && rows[1].contains(" 130 "), "{table}");
    assert!(rows[2].contains("3 seeds: min") && rows[2].contains(" 100 "), "{table}");
    assert!(rows[3].contains("max") && rows[3].contains(" 160 "), "{table}");
    let json: Report = serde_json::from_str(&serde_json::to_string(&Report::new(runs.to_vec())).unwrap()).unwrap();
    assert_eq!(json.runs.len(), 3, "every run is kept");
    assert_eq!(json.summary, summaries);
}

#[test]
fn a_figure_with_nothing_to_measure_survives_the_json_and_the_summary() {
    let empty = Run { seed: 2, load_cv: f64::NAN, cold_start_rate: f64::NAN, ..run() };
    let runs = vec![run(), empty];
    let text = serde_json::to_string(&Report::new(runs)).unwrap();
    let back: Report = serde_json::from_str(&text).expect("NaN is written as null and read back");
    assert!(back.runs[1].load_cv.is_nan() && back.runs[1].cold_start_rate.is_nan());
    // The seed that measured it alone makes the mean and the range.
    let cv = back.summary[0].figures["load_cv"];
    assert!(close(cv.mean, 2.0 / 3.0) && close(cv.min, 2.0 / 3.0) && close(cv.max, 2.0 / 3.0), "{cv:?}");
}
