//! The Grafana dashboard in config/ queries only metrics hiku serves.

use hiku::BalancerKind;
use hiku::Metrics;
use hiku::Scheduler;
use hiku::WorkerUrl;

#[test]
fn every_metric_the_dashboard_queries_is_served() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/grafana-dashboard.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let s = Scheduler::new(BalancerKind::PullBased, vec![(WorkerUrl::parse("http://w:1").unwrap(), vec![])]);
    let served = Metrics::new(1).render(&s, &[0]);
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names =
                expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("hiku_"));
            for name in names {
                let family =
                    ["_bucket", "_sum", "_count"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
                assert!(
                    served.contains(&format!("# TYPE {family} ")),
                    "{name} (panel {}) is not served",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10, "{queried} metric names");
}
