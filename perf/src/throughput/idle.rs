//! `perf/throughput --idle-connections N`: what an idle keep-alive
//! connection costs a contender, and whether it answers a burst. For each
//! contender but `direct`, in each round, fresh processes as for a
//! throughput measurement, then:
//!
//! 1. its resident memory (`VmRSS` of all its processes), once it settled;
//! 2. N connections opened, at most [`CONNECTING`] at a time;
//! 3. one call sent on every connection, [`CALLING`] at a time (or all at
//!    once with `--burst`: N concurrent calls), every answer counted (2xx
//!    or not);
//! 4. a pause ([`SETTLE`]) with the N connections open and idle, and its
//!    resident memory again (allocators give freed memory back lazily:
//!    hiku each second, mimalloc when next busy).
//!
//! (after - before) / N is what an idle connection holds in user space:
//! its task, its buffers, its share of the worker connections the burst
//! opened. The kernel's socket buffers are not in a process's RSS.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::functions;
use crate::harness::procstat;
use crate::harness::workdir::WorkDir;
use crate::http::framing::ResponseFraming;
use crate::stats::{groups, median};
use crate::throughput::blast;
use crate::throughput::options::{Contender, Options, Proxy, BODY};
use crate::throughput::proxies;

/// Connects in flight at once (below every listen backlog).
pub const CONNECTING: usize = 256;
/// Calls in flight at once, unless all are sent at once.
pub const CALLING: usize = 64;
/// How long a contender is left alone before each memory reading.
pub const SETTLE: Duration = Duration::from_millis(2500);
/// Every call must be answered within this.
const CALLS_TIMEOUT: Duration = Duration::from_secs(30);

/// One contender's idle connections: medians over rounds, except `errors`
/// (the total) and `ok` (the least: a median would hide a bad round).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdleRow {
    pub contender: String,
    /// The contender's cores (0 in reports from before they were recorded).
    #[serde(default)]
    pub cores: usize,
    pub connections: usize,
    /// All the calls were sent at once.
    #[serde(default)]
    pub burst: bool,
    /// Calls answered 2xx.
    pub ok: u64,
    /// Connects that failed, calls answered otherwise or not at all.
    pub errors: u64,
    pub rss_before_mb: f64,
    pub rss_after_mb: f64,
    /// (after - before) / connections.
    pub kib_per_connection: f64,
}

/// Every round, in which every contender but `direct` is measured; with
/// `burst`, the calls all go at once.
pub async fn run(options: &Options, connections: usize, burst: bool) -> Result<Vec<IdleRow>, String> {
    let workdir = WorkDir::new()?;
    let mut samples = Vec::new();
    for round in 1..=options.rounds {
        for &cores in &options.cores {
            for contender in options.contenders.iter().filter(|c| !matches!(c.proxy, Proxy::Direct)) {
                let sample = measure(options, contender, cores, connections, burst, &workdir.0).await?;
                if options.progress {
                    eprintln!(
                        "[round {round}/{}] {:<12} {cores} cores {connections:>6} idle conns: {} ok, {} errors, \
                         {:.1} -> {:.1} MB, {:.2} KiB/conn",
                        options.rounds,
                        sample.contender,
                        sample.ok,
                        sample.errors,
                        sample.rss_before_mb,
                        sample.rss_after_mb,
                        sample.kib_per_connection
                    );
                }
                samples.push(sample);
            }
        }
    }
    Ok(summarize(&samples))
}

/// One row per contender, in the order they first appear.
pub fn summarize(samples: &[IdleRow]) -> Vec<IdleRow> {
    groups(samples, |s| (s.contender.as_str(), s.cores, s.connections))
        .into_iter()
        .map(|((contender, cores, connections), group)| {
            let m = |f: fn(&IdleRow) -> f64| median(group.iter().map(|s| f(s)));
            IdleRow {
                contender: contender.to_string(),
                cores,
                connections,
                burst: group.iter().any(|s| s.burst),
                ok: group.iter().map(|s| s.ok).min().unwrap_or(0),
                errors: group.iter().map(|s| s.errors).sum(),
                rss_before_mb: m(|s| s.rss_before_mb),
                rss_after_mb: m(|s| s.rss_after_mb),
                kib_per_connection: m(|s| s.kib_per_connection),
            }
        })
        .collect()
}

/// The rows as a table.
pub fn table(rows: &[IdleRow]) -> String {
    let mut out = format!(
        "{:<14} {:>5} {:>7} {:>6} {:>7} {:>7} {:>12} {:>12} {:>10}\n",
        "contender", "cores", "conns", "calls", "ok", "errors", "rss before", "rss after", "KiB/conn"
    );
    for r in rows {
        let calls = if r.burst { "burst".to_string() } else { format!("by {CALLING}") };
        let cores = if r.cores == 0 { "-".to_string() } else { r.cores.to_string() };
        let _ = writeln!(
            out,
            "{:<14} {:>5} {:>7} {:>6} {:>7} {:>7} {:>9.1} MB {:>9.1} MB {:>10.2}",
            r.contender,
            cores,
            r.connections,
            calls,
            r.ok,
            r.errors,
            r.rss_before_mb,
            r.rss_after_mb,
            r.kib_per_connection
        );
    }
    out
}

async fn measure(
    options: &Options,
    contender: &Contender,
    cores: usize,
    connections: usize,
    burst: bool,
    workdir: &Path,
) -> Result<IdleRow, String> {
    let setup = proxies::start(options, contender, cores, workdir).await?;
    let target = setup.targets[0];
    tokio::time::sleep(SETTLE).await;
    let before = procstat::rss_mb(&setup.pids);
    let (streams, connect_errors) = connect(target, connections).await;
    let in_flight = if burst { connections } else { CALLING };
    let (streams, ok, call_errors) = call_each(target, streams, in_flight).await;
    tokio::time::sleep(SETTLE).await;
    let after = procstat::rss_mb(&setup.pids);
    drop(streams);
    Ok(IdleRow {
        contender: contender.label.clone(),
        cores,
        connections,
        burst,
        ok,
        errors: connect_errors + call_errors,
        rss_before_mb: before,
        rss_after_mb: after,
        kib_per_connection: (after - before) * 1024.0 / connections as f64,
    })
}

/// Opens `n` connections, [`CONNECTING`] at a time; those that failed are
/// counted.
pub(crate) async fn connect(target: SocketAddr, n: usize) -> (Vec<TcpStream>, u64) {
    let mut streams = Vec::with_capacity(n);
    let mut failed = 0;
    let mut pending = JoinSet::new();
    let mut collect = |done: Option<Result<std::io::Result<TcpStream>, _>>| match done {
        Some(Ok(Ok(stream))) => streams.push(stream),
        _ => failed += 1,
    };
    for _ in 0..n {
        if pending.len() >= CONNECTING {
            collect(pending.join_next().await);
        }
        pending.spawn(TcpStream::connect(target));
    }
    while let Some(done) = pending.join_next().await {
        collect(Some(done));
    }
    (streams, failed)
}

/// Sends one call on every connection, `in_flight` at a time, and reads
/// every answer: the connections still open, the calls answered 2xx, and
/// the rest.
pub(crate) async fn call_each(
    target: SocketAddr,
    streams: Vec<TcpStream>,
    in_flight: usize,
) -> (Vec<TcpStream>, u64, u64) {
    let names = functions::names();
    let mut calls = JoinSet::new();
    let mut open = Vec::new();
    let (mut ok, mut errors) = (0, 0);
    let mut tally = |answer: Option<Result<Answer, _>>| match answer {
        Some(Ok(Some((status, stream)))) => {
            match (200..300).contains(&status) {
                true => ok += 1,
                false => errors += 1,
            }
            open.extend(stream);
        }
        _ => errors += 1,
    };
    let all = async {
        for (i, stream) in streams.into_iter().enumerate() {
            if calls.len() >= in_flight {
                tally(calls.join_next().await);
            }
            calls.spawn(call(stream, blast::request(&target, &names[i % names.len()], BODY)));
        }
        while let Some(answer) = calls.join_next().await {
            tally(Some(answer));
        }
    };
    let timed_out = tokio::time::timeout(CALLS_TIMEOUT, all).await.is_err();
    if timed_out {
        errors += calls.len() as u64;
    }
    (open, ok, errors)
}

/// A call's status, and the connection if the server keeps it open;
/// `None` if it failed.
pub(crate) type Answer = Option<(u16, Option<TcpStream>)>;

/// One call.
pub(crate) async fn call(mut stream: TcpStream, request: Vec<u8>) -> Answer {
    stream.write_all(&request).await.ok()?;
    let mut framing = ResponseFraming::default();
    let mut buffer = vec![0u8; 4096];
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buffer[filled..]).await.ok()?;
        if n == 0 {
            return framing.eof().map(|done| (done.status, None));
        }
        filled += n;
        let progress = framing.feed(&buffer[..filled]).ok()?;
        buffer.copy_within(progress.consumed..filled, 0);
        filled -= progress.consumed;
        if let Some(done) = progress.done {
            return Some((done.status, (!done.close).then_some(stream)));
        }
        if filled == buffer.len() {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(contender: &str, ok: u64, errors: u64, kib: f64) -> IdleRow {
        IdleRow {
            contender: contender.to_string(),
            cores: 2,
            connections: 100,
            burst: false,
            ok,
            errors,
            rss_before_mb: 10.0,
            rss_after_mb: 10.0 + kib * 100.0 / 1024.0,
            kib_per_connection: kib,
        }
    }

    #[test]
    fn rounds_give_medians_the_worst_ok_and_all_errors() {
        let rows = summarize(&[row("hiku", 100, 0, 4.0), row("nginx", 99, 1, 1.0), row("hiku", 98, 2, 6.0)]);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].ok, rows[0].errors, rows[0].kib_per_connection), (98, 2, 5.0));
        assert_eq!((rows[1].contender.as_str(), rows[1].ok, rows[1].errors), ("nginx", 99, 1));
        let shown = table(&rows);
        assert!(
            shown.lines().nth(1).unwrap().starts_with("hiku               2     100  by 64      98       2"),
            "{shown}"
        );
        assert!(shown.lines().nth(1).unwrap().ends_with("5.00"), "{shown}");
    }
}
