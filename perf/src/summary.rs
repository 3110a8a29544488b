//! `perf/throughput`'s report: each measurement as a [`Sample`], the
//! medians over rounds as one [`Row`] per contender and connection count
//! (the `--json` schema of issue 3), the ratios to hiku, and the table.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// One measurement: one contender at one connection count in one round,
/// with the same numbers a [`Row`] summarises.
pub type Sample = Row;

/// Everything written to `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub results: Vec<Row>,
}

/// A contender at a connection count: the median of each number over the
/// rounds, except `errors`, the total (a median would hide a bad round).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub contender: String,
    pub connections: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub cpu_s_per_1k: f64,
    pub peak_rss_mb: f64,
}

/// The median, the mean of the middle two for an even count; NaN values
/// (a number a round could not give) are left out; NaN if none is left.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One row per (contender, connections), in the order they first appear.
pub fn summarize(samples: &[Sample]) -> Vec<Row> {
    let mut keys: Vec<(&str, usize)> = Vec::new();
    for s in samples {
        if !keys.contains(&(s.contender.as_str(), s.connections)) {
            keys.push((s.contender.as_str(), s.connections));
        }
    }
    keys.into_iter()
        .map(|(contender, connections)| {
            let of = |s: &&Sample| s.contender == contender && s.connections == connections;
            let group: Vec<&Sample> = samples.iter().filter(of).collect();
            let m = |f: fn(&Sample) -> f64| median(group.iter().map(|s| f(s)));
            Row {
                contender: contender.to_string(),
                connections,
                rps: m(|s| s.rps),
                p50_ms: m(|s| s.p50_ms),
                p99_ms: m(|s| s.p99_ms),
                p999_ms: m(|s| s.p999_ms),
                errors: group.iter().map(|s| s.errors).sum(),
                cpu_s_per_1k: m(|s| s.cpu_s_per_1k),
                peak_rss_mb: m(|s| s.peak_rss_mb),
            }
        })
        .collect()
}

/// A row's numbers over hiku's at the same connection count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratios {
    pub rps: f64,
    pub p99: f64,
    pub cpu: f64,
}

pub fn ratios(row: &Row, rows: &[Row], reference: &str) -> Option<Ratios> {
    let hiku = rows.iter().find(|r| r.contender == reference && r.connections == row.connections)?;
    Some(Ratios { rps: row.rps / hiku.rps, p99: row.p99_ms / hiku.p99_ms, cpu: row.cpu_s_per_1k / hiku.cpu_s_per_1k })
}

fn number(value: f64, decimals: usize) -> String {
    match value.is_finite() {
        true => format!("{value:.decimals$}"),
        false => "-".to_string(),
    }
}

/// The rows as a table, with ratios to the `reference` contender.
pub fn table(rows: &[Row], reference: &str) -> String {
    let mut out = format!(
        "{:<14} {:>5} {:>10} {:>8} {:>8} {:>8} {:>7} {:>9} {:>7} {:>9} {:>9} {:>9}\n",
        "contender",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "errors",
        "cpu s/1k",
        "rss MB",
        "rps/hiku",
        "p99/hiku",
        "cpu/hiku"
    );
    for row in rows {
        let r = ratios(row, rows, reference);
        let ratio = |f: fn(&Ratios) -> f64| r.as_ref().map_or("-".to_string(), |r| number(f(r), 2));
        let _ = writeln!(
            out,
            "{:<14} {:>5} {:>10} {:>8} {:>8} {:>8} {:>7} {:>9} {:>7} {:>9} {:>9} {:>9}",
            row.contender,
            row.connections,
            number(row.rps, 0),
            number(row.p50_ms, 2),
            number(row.p99_ms, 2),
            number(row.p999_ms, 2),
            row.errors,
            number(row.cpu_s_per_1k, 4),
            number(row.peak_rss_mb, 1),
            ratio(|r| r.rps),
            ratio(|r| r.p99),
            ratio(|r| r.cpu),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(contender: &str, connections: usize, rps: f64, p99_ms: f64, errors: u64, cpu: f64) -> Sample {
        Sample {
            contender: contender.to_string(),
            connections,
            rps,
            p50_ms: p99_ms / 4.0,
            p99_ms,
            p999_ms: p99_ms * 2.0,
            errors,
            cpu_s_per_1k: cpu,
            peak_rss_mb: 10.0,
        }
    }

    #[test]
    fn medians_skip_what_a_round_could_not_measure() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median([f64::NAN, 5.0, 7.0]), 6.0);
        assert!(median([f64::NAN]).is_nan());
        assert!(median([]).is_nan());
    }

    #[test]
    fn rows_are_medians_per_contender_and_count_with_errors_totalled() {
        let samples = [
            sample("hiku", 64, 100.0, 2.0, 0, 0.04),
            sample("direct", 64, 300.0, 1.0, 1, 0.01),
            sample("hiku", 64, 120.0, 4.0, 2, 0.02),
            sample("direct", 64, 200.0, 0.5, 0, 0.03),
            sample("hiku", 64, 80.0, 3.0, 0, 0.03),
            sample("direct", 64, 250.0, 0.75, 0, 0.02),
            sample("hiku", 256, 90.0, 8.0, 0, 0.05),
        ];
        let rows = summarize(&samples);
        let keys: Vec<(&str, usize)> = rows.iter().map(|r| (r.contender.as_str(), r.connections)).collect();
        assert_eq!(keys, [("hiku", 64), ("direct", 64), ("hiku", 256)]);
        assert_eq!(
            rows[0],
            Row {
                contender: "hiku".to_string(),
                connections: 64,
                rps: 100.0,
                p50_ms: 0.75,
                p99_ms: 3.0,
                p999_ms: 6.0,
                errors: 2,
                cpu_s_per_1k: 0.03,
                peak_rss_mb: 10.0,
            }
        );
        assert_eq!((rows[1].rps, rows[1].p99_ms, rows[1].errors, rows[1].cpu_s_per_1k), (250.0, 0.75, 1, 0.02));

        assert_eq!(ratios(&rows[1], &rows, "hiku"), Some(Ratios { rps: 2.5, p99: 0.25, cpu: 0.02 / 0.03 }));
        assert_eq!(ratios(&rows[2], &rows, "hiku"), Some(Ratios { rps: 1.0, p99: 1.0, cpu: 1.0 }));
        assert_eq!(ratios(&rows[2], &rows, "nginx"), None);

        let table = table(&rows, "hiku");
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[2].starts_with("direct            64        250     0.19     0.75     1.50       1"), "{table}");
        assert!(lines[2].ends_with("2.50      0.25      0.67"), "{table}");

        let json = serde_json::to_value(Report { results: rows }).unwrap();
        let first = json["results"][0].as_object().unwrap();
        let keys: Vec<&str> = first.keys().map(String::as_str).collect();
        let mut expected =
            ["contender", "connections", "rps", "p50_ms", "p99_ms", "p999_ms", "errors", "cpu_s_per_1k", "peak_rss_mb"];
        expected.sort();
        assert_eq!(keys, expected);
    }
}
