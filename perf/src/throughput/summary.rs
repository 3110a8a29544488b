//! `perf/throughput`'s report: each measurement as a [`Sample`], the
//! medians over rounds as one [`Row`] per contender and connection count
//! (the `--json` schema of issue 3), the ratios to hiku, and the table.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::stats::{groups, median};

/// One measurement: one contender at one connection count in one round,
/// with the same numbers a [`Row`] summarises.
pub type Sample = Row;

/// Everything written to `--json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub results: Vec<Row>,
    /// The generator asked for a new connection for every call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_connection: bool,
    /// The tail mode measured these: the slowest calls are the point.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tail: bool,
    /// `--idle-connections`: what idle connections cost each contender.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idle: Vec<crate::throughput::idle::IdleRow>,
    /// The configuration each proxy (nginx, HAProxy) ran with: (label, text).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<(String, String)>,
}

impl Report {
    pub fn with_configs(self, configs: Vec<(String, String)>) -> Report {
        Report { configs, ..self }
    }
}

/// The proxies' configurations, each under a line naming it; nothing if
/// there are none.
pub fn configs(configs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (label, text) in configs {
        out += &format!("\n{label}'s configuration (each measurement writes it with its own ports and directory):\n");
        out += text;
    }
    out
}

/// A contender on a core count at a connection count: the median of each
/// number over the rounds, except `errors` and `timeouts`, the totals (a
/// median would hide a bad round).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub contender: String,
    /// The cores it ran on (0 in reports from before they were recorded).
    #[serde(default)]
    pub cores: usize,
    pub connections: usize,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    #[serde(default)]
    pub p9999_ms: f64,
    /// The slowest answered call.
    #[serde(default)]
    pub max_ms: f64,
    /// Every error, timeouts included.
    pub errors: u64,
    /// Calls unanswered within the generator's timeout (wrk's 2 s).
    #[serde(default)]
    pub timeouts: u64,
    pub cpu_s_per_1k: f64,
    /// A tier's front alone (HAProxy), of `cpu_s_per_1k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_cpu_s_per_1k: Option<f64>,
    pub peak_rss_mb: f64,
    /// The contender's system calls per request (all its processes), where
    /// `perf` could count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscalls_per_request: Option<f64>,
    /// Its context switches per request, where `perf` could count them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_switches_per_request: Option<f64>,
    /// The machine's reschedule IPIs per request (every process's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reschedule_ipis_per_request: Option<f64>,
}

/// One row per (contender, cores, connections), in the order they first
/// appear.
pub fn summarize(samples: &[Sample]) -> Vec<Row> {
    groups(samples, |s| (s.contender.as_str(), s.cores, s.connections))
        .into_iter()
        .map(|((contender, cores, connections), group)| {
            let m = |f: fn(&Sample) -> f64| median(group.iter().map(|s| f(s)));
            let counted =
                |f: fn(&Sample) -> Option<f64>| Some(median(group.iter().filter_map(|s| f(s)))).filter(|m| !m.is_nan());
            Row {
                contender: contender.to_string(),
                cores,
                connections,
                rps: m(|s| s.rps),
                p50_ms: m(|s| s.p50_ms),
                p99_ms: m(|s| s.p99_ms),
                p999_ms: m(|s| s.p999_ms),
                p9999_ms: m(|s| s.p9999_ms),
                max_ms: m(|s| s.max_ms),
                errors: group.iter().map(|s| s.errors).sum(),
                timeouts: group.iter().map(|s| s.timeouts).sum(),
                cpu_s_per_1k: m(|s| s.cpu_s_per_1k),
                front_cpu_s_per_1k: counted(|s| s.front_cpu_s_per_1k),
                peak_rss_mb: m(|s| s.peak_rss_mb),
                syscalls_per_request: counted(|s| s.syscalls_per_request),
                context_switches_per_request: counted(|s| s.context_switches_per_request),
                reschedule_ipis_per_request: counted(|s| s.reschedule_ipis_per_request),
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
    let hiku =
        rows.iter().find(|r| r.contender == reference && r.cores == row.cores && r.connections == row.connections)?;
    Some(Ratios { rps: row.rps / hiku.rps, p99: row.p99_ms / hiku.p99_ms, cpu: row.cpu_s_per_1k / hiku.cpu_s_per_1k })
}

fn number(value: f64, decimals: usize) -> String {
    match value.is_finite() {
        true => format!("{value:.decimals$}"),
        false => "-".to_string(),
    }
}

/// What a report measured, as a heading, and its table.
pub fn titled(report: &Report) -> Vec<(&'static str, String)> {
    let mut parts = Vec::new();
    if report.tail {
        parts.push((
            "The slowest calls, keep-alive, every connection's first call counted (medians over rounds; \
             errors and timeouts totalled)",
            tail_table(&report.results, "hiku"),
        ));
    } else if !report.results.is_empty() {
        let title = match report.new_connection {
            true => "The proxy's own cost, a new connection per call (medians over rounds)",
            false => "The proxy's own cost, keep-alive (medians over rounds)",
        };
        parts.push((title, table(&report.results, "hiku")));
    }
    if !report.idle.is_empty() {
        parts.push((
            "Idle keep-alive connections after a burst of calls on all of them",
            crate::throughput::idle::table(&report.idle),
        ));
    }
    parts
}

/// The columns only some measurements have (the kernel's counts, a tier's
/// front): heading, width, decimals, the number.
type Counted = (&'static str, usize, usize, fn(&Row) -> Option<f64>);

const COUNTED: [Counted; 4] = [
    ("front s/1k", 10, 4, |r| r.front_cpu_s_per_1k),
    ("sys/req", 8, 2, |r| r.syscalls_per_request),
    ("cs/req", 7, 3, |r| r.context_switches_per_request),
    ("ipi/req", 8, 4, |r| r.reschedule_ipis_per_request),
];

/// A table's column: its heading, its width and its cell for a row.
type Column<'a> = (&'static str, usize, Box<dyn Fn(&Row) -> String + 'a>);

/// `rows` under `columns`: the first left-aligned, the others
/// right-aligned, a space between.
fn render(rows: &[Row], columns: &[Column]) -> String {
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        for (i, ((_, width, _), cell)) in columns.iter().zip(cells).enumerate() {
            let _ = match i {
                0 => write!(out, "{cell:<width$}"),
                _ => write!(out, " {cell:>width$}"),
            };
        }
        out.push('\n');
    };
    line(columns.iter().map(|(heading, _, _)| heading.to_string()).collect());
    for row in rows {
        line(columns.iter().map(|(_, _, cell)| cell(row)).collect());
    }
    out
}

/// The rows as a table, with ratios to the `reference` contender. An
/// optional column no row has a number for is left out.
pub fn table(rows: &[Row], reference: &str) -> String {
    let ratio = |f: fn(&Ratios) -> f64| -> Box<dyn Fn(&Row) -> String + '_> {
        Box::new(move |row| ratios(row, rows, reference).map_or("-".to_string(), |r| number(f(&r), 2)))
    };
    let mut columns: Vec<Column> = vec![
        ("contender", 14, Box::new(|r| r.contender.clone())),
        ("conns", 5, Box::new(|r| r.connections.to_string())),
        ("req/s", 10, Box::new(|r| number(r.rps, 0))),
        ("p50 ms", 8, Box::new(|r| number(r.p50_ms, 2))),
        ("p99 ms", 8, Box::new(|r| number(r.p99_ms, 2))),
        ("p99.9 ms", 8, Box::new(|r| number(r.p999_ms, 2))),
        ("errors", 7, Box::new(|r| r.errors.to_string())),
        ("cpu s/1k", 9, Box::new(|r| number(r.cpu_s_per_1k, 4))),
        ("rss MB", 7, Box::new(|r| number(r.peak_rss_mb, 1))),
        ("rps/hiku", 9, ratio(|r| r.rps)),
        ("p99/hiku", 9, ratio(|r| r.p99)),
        ("cpu/hiku", 9, ratio(|r| r.cpu)),
    ];
    for &(heading, width, decimals, value) in &COUNTED {
        if rows.iter().any(|r| value(r).is_some()) {
            columns.push((heading, width, Box::new(move |r| number(value(r).unwrap_or(f64::NAN), decimals))));
        }
    }
    render(rows, &columns)
}

/// The tail mode's table: the slowest calls of each contender on each core
/// count at each connection count, and the ratio of its p99.99 and max to
/// the `reference` contender's.
pub fn tail_table(rows: &[Row], reference: &str) -> String {
    let ratio = |f: fn(&Row) -> f64| -> Box<dyn Fn(&Row) -> String + '_> {
        Box::new(move |row| {
            let same = |r: &&Row| r.contender == reference && r.cores == row.cores && r.connections == row.connections;
            rows.iter().find(same).map_or("-".to_string(), |h| number(f(row) / f(h), 2))
        })
    };
    let columns: Vec<Column> = vec![
        ("contender", 14, Box::new(|r| r.contender.clone())),
        ("cores", 5, Box::new(|r| r.cores.to_string())),
        ("conns", 5, Box::new(|r| r.connections.to_string())),
        ("req/s", 9, Box::new(|r| number(r.rps, 0))),
        ("p50 ms", 8, Box::new(|r| number(r.p50_ms, 2))),
        ("p99 ms", 8, Box::new(|r| number(r.p99_ms, 2))),
        ("p99.9 ms", 9, Box::new(|r| number(r.p999_ms, 1))),
        ("p99.99 ms", 9, Box::new(|r| number(r.p9999_ms, 1))),
        ("max ms", 9, Box::new(|r| number(r.max_ms, 1))),
        ("errors", 6, Box::new(|r| r.errors.to_string())),
        ("timeouts", 8, Box::new(|r| r.timeouts.to_string())),
        ("p99.99/hiku", 10, ratio(|r| r.p9999_ms)),
        ("max/hiku", 9, ratio(|r| r.max_ms)),
    ];
    render(rows, &columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(contender: &str, connections: usize, rps: f64, p99_ms: f64, errors: u64, cpu: f64) -> Sample {
        Sample {
            contender: contender.to_string(),
            cores: 2,
            connections,
            rps,
            p50_ms: p99_ms / 4.0,
            p99_ms,
            p999_ms: p99_ms * 2.0,
            p9999_ms: p99_ms * 3.0,
            max_ms: p99_ms * 4.0,
            errors,
            timeouts: 0,
            cpu_s_per_1k: cpu,
            front_cpu_s_per_1k: None,
            peak_rss_mb: 10.0,
            syscalls_per_request: None,
            context_switches_per_request: None,
            reschedule_ipis_per_request: None,
        }
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
                cores: 2,
                connections: 64,
                rps: 100.0,
                p50_ms: 0.75,
                p99_ms: 3.0,
                p999_ms: 6.0,
                p9999_ms: 9.0,
                max_ms: 12.0,
                errors: 2,
                timeouts: 0,
                cpu_s_per_1k: 0.03,
                front_cpu_s_per_1k: None,
                peak_rss_mb: 10.0,
                syscalls_per_request: None,
                context_switches_per_request: None,
                reschedule_ipis_per_request: None,
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

        let json = serde_json::to_value(Report { results: rows, ..Report::default() }).unwrap();
        let first = json["results"][0].as_object().unwrap();
        let keys: Vec<&str> = first.keys().map(String::as_str).collect();
        let mut expected = [
            "contender",
            "cores",
            "connections",
            "rps",
            "p50_ms",
            "p99_ms",
            "p999_ms",
            "p9999_ms",
            "max_ms",
            "errors",
            "timeouts",
            "cpu_s_per_1k",
            "peak_rss_mb",
        ];
        expected.sort();
        assert_eq!(keys, expected);
    }

    #[test]
    fn the_tail_table_has_the_slowest_calls_per_core_count_beside_hikus() {
        let tail = |contender: &str, cores: usize, p99: f64, timeouts: u64| Sample {
            cores,
            timeouts,
            errors: timeouts,
            ..sample(contender, 1024, 30000.0, p99, 0, 0.02)
        };
        let rows = summarize(&[
            tail("hiku", 1, 10.0, 0),
            tail("nginx", 1, 20.0, 3),
            tail("hiku", 2, 5.0, 0),
            tail("nginx", 2, 5.0, 0),
            tail("hiku", 1, 10.0, 1),
        ]);
        assert_eq!(rows.len(), 4, "one row per contender and core count");
        assert_eq!((rows[0].p9999_ms, rows[0].max_ms, rows[0].timeouts), (30.0, 40.0, 1));
        let shown = tail_table(&rows, "hiku");
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[0].contains("p99.99 ms") && lines[0].ends_with("max/hiku"), "{shown}");
        // nginx on one core: p99.99 60 and max 80 against hiku's 30 and 40.
        assert!(lines[2].starts_with("nginx              1  1024"), "{shown}");
        assert!(lines[2].ends_with("60.0      80.0      3        3       2.00      2.00"), "{shown}");
        assert!(lines[4].starts_with("nginx              2  1024") && lines[4].ends_with("1.00      1.00"), "{shown}");
        let report = Report { results: rows, tail: true, ..Report::default() };
        let titled = titled(&report);
        assert_eq!(titled.len(), 1);
        assert!(titled[0].0.starts_with("The slowest calls"), "{}", titled[0].0);
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), report);
    }

    #[test]
    fn kernel_counts_are_medians_of_the_rounds_that_have_them_and_shown_only_if_any() {
        let counted = |syscalls: Option<f64>, ipis: Option<f64>| Sample {
            syscalls_per_request: syscalls,
            context_switches_per_request: syscalls.map(|s| s / 100.0),
            reschedule_ipis_per_request: ipis,
            ..sample("hiku", 64, 100.0, 2.0, 0, 0.02)
        };
        let rows = summarize(&[
            counted(Some(0.5), Some(0.01)),
            counted(None, Some(0.03)),
            counted(Some(0.7), Some(0.02)),
            Sample { contender: "nginx".to_string(), ..counted(None, None) },
        ]);
        assert_eq!(rows[0].syscalls_per_request, Some(0.6));
        assert_eq!(rows[0].context_switches_per_request, Some(0.006));
        assert_eq!(rows[0].reschedule_ipis_per_request, Some(0.02));
        assert_eq!((rows[1].syscalls_per_request, rows[1].reschedule_ipis_per_request), (None, None));

        let shown = table(&rows, "hiku");
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[0].ends_with("cpu/hiku  sys/req  cs/req  ipi/req"), "{shown}");
        assert!(lines[1].ends_with("1.00      1.00      1.00     0.60   0.006   0.0200"), "{shown}");
        assert!(lines[2].ends_with("1.00      1.00      1.00        -       -        -"), "{shown}");

        // A tier's front has a column of its own, shown when a row has it.
        let tier = Sample { contender: "tier-k2".to_string(), front_cpu_s_per_1k: Some(0.015), ..counted(None, None) };
        let shown = table(&summarize(&[sample("hiku", 64, 100.0, 2.0, 0, 0.02), tier]), "hiku");
        let lines: Vec<&str> = shown.lines().collect();
        assert!(lines[0].ends_with("cpu/hiku front s/1k"), "{shown}");
        assert!(lines[1].ends_with("1.00          -"), "{shown}");
        assert!(lines[2].starts_with("tier-k2") && lines[2].ends_with("1.00     0.0150"), "{shown}");

        let plain = summarize(&[sample("hiku", 64, 100.0, 2.0, 0, 0.02)]);
        assert!(table(&plain, "hiku").lines().next().unwrap().ends_with("cpu/hiku"));

        // Missing counts are missing from the JSON, and read back as missing.
        let json = serde_json::to_string(&Report { results: rows.clone(), ..Report::default() }).unwrap();
        assert!(json.contains("\"syscalls_per_request\":0.6") && json.matches("syscalls_per_request").count() == 1);
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap().results, rows);
    }
}
