//! `perf/soak`: hiku under churn, every call accounted for. Trivial
//! upstreams (`hiku-upstream`, one process each, so each can die alone)
//! stand behind one hiku; client connections send a fixed number of calls
//! while, every `churn_every`, a worker is killed (SIGKILL) or restarted on
//! its port, or removed from hiku and added back through its admin API.
//! At least one worker stays alive and registered throughout.
//!
//! Every call ends in exactly one of: an answer (counted by status: a call
//! on a worker killed under it is answered 502) or **lost** (no answer at
//! all: the connection broke, or nothing came within [`crate::calls::CALL_TIMEOUT`]).
//! Afterwards, with the churn over and every worker back, hiku must report
//! no call in flight on any worker, its memory must come back to where it
//! was after the warm-up, and a burst of calls all at once must be
//! answered 2xx. [`Report::problems`] lists what failed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::process::Child;

use crate::balancers::BALANCERS;
use crate::calls::{load, request_once, Answer};
use crate::cli::{exit, sibling, usage_error};
use crate::harness::cluster::{start_scheduler, start_upstreams};
use crate::harness::front;
use crate::harness::process::{free_port, tail, until_interrupted};
use crate::harness::procstat;
use crate::harness::workdir::WorkDir;
use crate::throughput::idle;
use crate::tier_soak;

/// How often progress is shown.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long hiku gets to settle before each memory reading.
const SETTLE: Duration = Duration::from_millis(2500);
/// Memory growth over the run that counts as a leak: more than this, and
/// more than half again the reading after the warm-up.
const LEAK_SLACK_MB: f64 = 8.0;

#[derive(Debug, Clone)]
pub struct Options {
    pub hiku: PathBuf,
    pub upstream: PathBuf,
    pub balancer: String,
    pub workers: usize,
    pub connections: usize,
    pub calls: u64,
    pub churn_every: Duration,
    /// Calls sent all at once at the end (0: none).
    pub burst: usize,
    pub progress: bool,
}

/// What the churn did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Churn {
    pub kills: u64,
    pub restarts: u64,
    pub removals: u64,
    pub additions: u64,
}

/// Everything measured; `--json` writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub calls: u64,
    /// Answers by status code.
    pub answered: BTreeMap<u16, u64>,
    pub lost: u64,
    pub churn: Churn,
    /// Calls in flight on each worker, as hiku's `/status` says, after it all.
    pub in_flight_after: Vec<u64>,
    pub rss_before_mb: f64,
    pub rss_after_mb: f64,
    pub burst: usize,
    pub burst_ok: u64,
    pub burst_errors: u64,
    pub seconds: f64,
}

impl Report {
    pub fn answered_total(&self) -> u64 {
        self.answered.values().sum()
    }

    /// What went wrong; empty if nothing did.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.lost > 0 {
            problems.push(format!("{} calls lost", self.lost));
        }
        if self.answered_total() + self.lost != self.calls {
            problems.push(format!("{} calls sent but {} accounted for", self.calls, self.answered_total() + self.lost));
        }
        if self.in_flight_after.iter().any(|&n| n > 0) {
            problems.push(format!("calls still in flight after the run: {:?}", self.in_flight_after));
        }
        let grown = self.rss_after_mb - self.rss_before_mb;
        if grown > LEAK_SLACK_MB && grown > self.rss_before_mb / 2.0 {
            problems.push(format!("memory grew from {:.1} to {:.1} MB", self.rss_before_mb, self.rss_after_mb));
        }
        if self.burst_errors > 0 {
            problems.push(format!("{} of a burst of {} calls failed", self.burst_errors, self.burst));
        }
        problems
    }

    pub fn text(&self) -> String {
        let answered: Vec<String> = self.answered.iter().map(|(code, n)| format!("{n} x {code}")).collect();
        format!(
            "calls {}: answered {} ({}), lost {}\n\
             churn: {} kills, {} restarts, {} removals, {} additions\n\
             in flight after: {:?}\n\
             memory: {:.1} MB after the warm-up, {:.1} MB after the run\n\
             burst of {}: {} ok, {} errors\n\
             {:.1} s\n",
            self.calls,
            self.answered_total(),
            answered.join(", "),
            self.lost,
            self.churn.kills,
            self.churn.restarts,
            self.churn.removals,
            self.churn.additions,
            self.in_flight_after,
            self.rss_before_mb,
            self.rss_after_mb,
            self.burst,
            self.burst_ok,
            self.burst_errors,
            self.seconds,
        )
    }
}

/// One upstream process; `child` is `None` while it is dead.
struct Upstream {
    port: u16,
    url: String,
    child: Option<Child>,
    registered: bool,
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let workdir = WorkDir::new()?;
    let mut upstreams = Vec::new();
    for _ in 0..options.workers.max(1) {
        let (child, urls) = start_upstreams(&options.upstream, 1, 0).await?;
        let url = urls.into_iter().next().ok_or("the upstream listed no URL")?;
        let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).ok_or_else(|| format!("bad URL {url}"))?;
        upstreams.push(Upstream { port, url, child: Some(child), registered: true });
    }
    let port = free_port()?;
    let config = workdir.0.join("soak.json");
    let urls: Vec<&str> = upstreams.iter().map(|u| u.url.as_str()).collect();
    let json = serde_json::json!({"host": "127.0.0.1", "port": port, "balancer": options.balancer, "workers": urls});
    std::fs::write(&config, json.to_string()).map_err(|e| format!("{}: {e}", config.display()))?;
    let address = format!("127.0.0.1:{port}");
    let log = workdir.0.join("hiku.log");
    let hiku = start_scheduler(&options.hiku, &config, &[], &[], &address, &log).await?;
    let pid = hiku.pid().ok_or("hiku exited")?;
    let target: SocketAddr = address.parse().expect("an address");

    // Warm-up: pools, buffers and the balancer's tables in use once.
    let warm = load(target, options.connections, (options.calls / 20).clamp(100, 5000)).await;
    if warm.lost > 0 {
        return Err(format!("{} calls lost in the warm-up, with no churn; hiku's log:\n{}", warm.lost, tail(&log)));
    }
    tokio::time::sleep(SETTLE).await;
    let rss_before_mb = procstat::rss_mb(&[pid]);

    let loading = tokio::spawn(load(target, options.connections, options.calls));
    let mut churn = Churn::default();
    let mut ticker = tokio::time::interval(options.churn_every);
    ticker.tick().await;
    let mut shown = Instant::now();
    while !loading.is_finished() {
        ticker.tick().await;
        churn_once(options, target, &mut upstreams, &mut churn).await?;
        if options.progress && shown.elapsed() >= PROGRESS_EVERY {
            eprintln!("[soak {:.0} s] churn so far: {churn:?}", started.elapsed().as_secs_f64());
            shown = Instant::now();
        }
    }
    let tally = loading.await.map_err(|e| format!("the load failed: {e}"))?;
    // Every worker back, alive and registered.
    for u in upstreams.iter_mut() {
        if u.child.is_none() {
            u.child = Some(start_upstreams(&options.upstream, 1, u.port).await?.0);
        }
        if !u.registered {
            admin(target, "add", &u.url).await?;
            u.registered = true;
        }
    }
    let in_flight_after = settled_in_flight(target).await?;

    let (burst_ok, burst_errors) = match options.burst {
        0 => (0, 0),
        n => {
            let (streams, connect_errors) = idle::connect(target, n).await;
            let (open, ok, errors) = idle::call_each(target, streams, n).await;
            drop(open);
            (ok, errors + connect_errors)
        }
    };
    tokio::time::sleep(SETTLE).await;
    let rss_after_mb = procstat::rss_mb(&[pid]);
    drop(hiku);
    Ok(Report {
        calls: options.calls,
        answered: tally.answered,
        lost: tally.lost,
        churn,
        in_flight_after,
        rss_before_mb,
        rss_after_mb,
        burst: options.burst,
        burst_ok,
        burst_errors,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One churn step: restart a dead worker, re-add a removed one, or (with
/// two or more alive and registered) kill or remove one.
async fn churn_once(
    options: &Options,
    target: SocketAddr,
    ups: &mut [Upstream],
    churn: &mut Churn,
) -> Result<(), String> {
    let i = fastrand::usize(..ups.len());
    let up = |u: &Upstream| u.child.is_some() && u.registered;
    let serving = ups.iter().filter(|u| up(u)).count();
    let u = &mut ups[i];
    if u.child.is_none() {
        u.child = Some(start_upstreams(&options.upstream, 1, u.port).await?.0);
        churn.restarts += 1;
    } else if !u.registered {
        admin(target, "add", &u.url).await?;
        u.registered = true;
        churn.additions += 1;
    } else if serving >= 2 && fastrand::bool() {
        if let Some(mut child) = u.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
        churn.kills += 1;
    } else if serving >= 2 {
        admin(target, "remove", &u.url).await?;
        u.registered = false;
        churn.removals += 1;
    }
    Ok(())
}

/// `/admin/workers/<verb>?workers=<url>`, which must answer 200.
async fn admin(target: SocketAddr, verb: &str, url: &str) -> Result<(), String> {
    let Answer { status, body } = request_once(target, "POST", &format!("/admin/workers/{verb}?workers={url}")).await?;
    match status {
        200 => Ok(()),
        _ => Err(format!("{verb} {url}: {status} {body}")),
    }
}

/// Waits (up to 10 s) for every worker's in-flight count in `/status` to
/// be 0; the last counts seen.
async fn settled_in_flight(target: SocketAddr) -> Result<Vec<u64>, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = request_once(target, "GET", "/status").await?.body;
        let status: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("/status: {e}: {body}"))?;
        let counts: Vec<u64> = status["workers"]
            .as_array()
            .ok_or_else(|| format!("/status has no workers: {body}"))?
            .iter()
            .map(|w| w["in_flight"].as_u64().unwrap_or(u64::MAX))
            .collect();
        if counts.iter().all(|&n| n == 0) || Instant::now() > deadline {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The options' binaries exist.
fn check_binaries(options: &Options) -> Result<(), String> {
    for binary in [&options.hiku, &options.upstream] {
        if !Path::new(binary).is_file() {
            return Err(format!(
                "no binary at {} (build with `cargo build --release -p hiku -p hiku-perf`)",
                binary.display()
            ));
        }
    }
    Ok(())
}

/// `hiku-perf soak`'s command line.
#[derive(clap::Args)]
pub struct Args {
    /// A short run: 20 000 calls, churn every 50 ms, a burst of 2 000
    #[arg(long)]
    quick: bool,
    /// Calls to send [default: 1 000 000, or 20 000 with --quick]
    #[arg(long)]
    calls: Option<u64>,
    /// Client keep-alive connections
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Workers (trivial upstreams, one process each)
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Milliseconds between churn steps [default: 200, or 50 with --quick]
    #[arg(long)]
    churn_ms: Option<u64>,
    /// Calls sent all at once at the end, on as many connections [default: 10 000, or 2 000 with --quick]
    #[arg(long)]
    burst: Option<usize>,
    /// The balancer in hiku's config
    #[arg(long, default_value = "pull-based")]
    balancer: String,
    /// The hiku binary [default: `hiku` beside this program]
    #[arg(long)]
    hiku: Option<PathBuf>,
    /// The upstream binary [default: `hiku-upstream` beside this program]
    #[arg(long)]
    upstream: Option<PathBuf>,
    /// Write the report as JSON
    #[arg(long)]
    json: Option<PathBuf>,
    /// A tier instead: this many hiku instances behind HAProxy (the shipped
    /// front), restarted one after the other, then one killed, under calls
    /// [default: 1, hiku alone under worker churn]
    #[arg(long, default_value_t = 1)]
    instances: usize,
}

impl Args {
    /// Runs the soak, prints the report, writes it if asked, and fails if
    /// anything went wrong.
    pub fn run(self) -> ExitCode {
        if self.instances > 1 {
            return self.run_tier();
        }
        let options = Options {
            hiku: self.hiku.clone().unwrap_or_else(|| sibling("hiku")),
            upstream: self.upstream.clone().unwrap_or_else(|| sibling("hiku-upstream")),
            balancer: self.balancer.clone(),
            workers: self.workers,
            connections: self.connections,
            calls: self.calls.unwrap_or(if self.quick { 20_000 } else { 1_000_000 }),
            churn_every: Duration::from_millis(self.churn_ms.unwrap_or(if self.quick { 50 } else { 200 }).max(1)),
            burst: self.burst.unwrap_or(if self.quick { 2_000 } else { 10_000 }),
            progress: true,
        };
        if !BALANCERS.contains(&options.balancer.as_str()) || options.workers < 2 || options.connections == 0 {
            return usage_error("soak needs a known --balancer, --workers 2 or more, and --connections");
        }
        if let Err(e) = check_binaries(&options) {
            return usage_error(e);
        }
        match until_interrupted(run(&options)) {
            Ok(report) => self.finish(&report, &report.text(), &report.problems()),
            Err(e) => exit(Err(e)),
        }
    }

    /// Prints `text`, writes `report` where `--json` says, names each of
    /// `problems`, and fails if there is any.
    fn finish(&self, report: &impl Serialize, text: &str, problems: &[String]) -> ExitCode {
        print!("{text}");
        if let Some(path) = &self.json {
            let json = serde_json::to_string_pretty(report).expect("plain structs");
            if let Err(e) = std::fs::write(path, json + "\n") {
                return exit(Err(format!("{}: {e}", path.display())));
            }
        }
        for problem in problems {
            eprintln!("FAIL: {problem}");
        }
        match problems.is_empty() {
            true => ExitCode::SUCCESS,
            false => ExitCode::FAILURE,
        }
    }
}

impl Args {
    /// `--instances K`: the tier soak.
    fn run_tier(self) -> ExitCode {
        let options = tier_soak::Options {
            hiku: self.hiku.clone().unwrap_or_else(|| sibling("hiku")),
            upstream: self.upstream.clone().unwrap_or_else(|| sibling("hiku-upstream")),
            haproxy: front::haproxy(),
            balancer: self.balancer.clone(),
            workers: self.workers,
            instances: self.instances,
            connections: self.connections,
            calls: self.calls.unwrap_or(if self.quick { 150_000 } else { 1_000_000 }),
            pause: Duration::from_millis(self.churn_ms.unwrap_or(if self.quick { 300 } else { 2_000 })),
            progress: true,
        };
        if !BALANCERS.contains(&options.balancer.as_str()) || options.instances > 16 || options.connections == 0 {
            return usage_error("a tier soak needs a known --balancer, --instances up to 16, and --connections");
        }
        match until_interrupted(tier_soak::run(&options)) {
            Ok(report) => self.finish(&report, &report.text(), &report.problems()),
            Err(e) => exit(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_losses_leaks_and_counts_that_do_not_add_up() {
        let fine = Report {
            calls: 10,
            answered: BTreeMap::from([(200, 8), (502, 2)]),
            in_flight_after: vec![0, 0],
            rss_before_mb: 10.0,
            rss_after_mb: 17.0,
            burst: 5,
            burst_ok: 5,
            ..Report::default()
        };
        assert!(fine.problems().is_empty(), "{:?}", fine.problems());
        assert!(fine.text().contains("answered 10 (8 x 200, 2 x 502), lost 0"), "{}", fine.text());
        let bad = Report { lost: 1, in_flight_after: vec![0, 3], rss_after_mb: 40.0, burst_errors: 2, ..fine.clone() };
        let problems = bad.problems();
        assert_eq!(problems.len(), 5, "{problems:?}");
        assert!(problems[0].contains("1 calls lost"));
        assert!(problems[1].contains("10 calls sent but 11 accounted for"));
        assert!(problems[2].contains("[0, 3]"));
        assert!(problems[3].contains("from 10.0 to 40.0 MB"));
        assert!(problems[4].contains("2 of a burst of 5"));
    }
}
