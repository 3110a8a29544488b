//! `perf/soak --instances K`: a tier under restarts, every call accounted
//! for. Trivial upstreams stand behind K hiku instances (each knowing every
//! worker, with the PROXY protocol, an `admin.listen`, `cluster.peers` and
//! `shutdown_announce_ms`, as the README's "Running a tier" says), behind
//! HAProxy on the front config hiku ships. Client connections send calls
//! through the front while the instances are restarted one after the
//! other: SIGTERM, wait for the exit, start it again on its ports.
//! Then, with a second stream of calls, one instance is killed (SIGKILL)
//! and started again. A rolling restart must fail and lose no call; what a
//! kill costs is counted. At the end every instance must have the same
//! worker list.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::calls::{load, request_once, Tally};
use crate::harness::cluster::start_upstreams;
use crate::harness::front::Kind;
use crate::harness::process::free_port;
use crate::harness::tier::{self, Tier};
use crate::harness::workdir::WorkDir;

/// The longest an instance may take to drain and exit.
const EXIT_WITHIN: Duration = Duration::from_secs(40);

#[derive(Debug, Clone)]
pub struct Options {
    pub hiku: PathBuf,
    pub upstream: PathBuf,
    pub haproxy: PathBuf,
    pub balancer: String,
    pub workers: usize,
    pub instances: usize,
    pub connections: usize,
    /// Calls sent while the instances are restarted one after the other.
    pub calls: u64,
    /// Between one instance back and the next one stopped.
    pub pause: Duration,
    pub progress: bool,
}

/// Everything measured; `--json` writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub instances: usize,
    pub calls: u64,
    /// During the rolling restarts: answers by status, and calls lost.
    pub answered: BTreeMap<u16, u64>,
    pub lost: u64,
    pub restarts: u64,
    /// During the kill: calls sent, not answered 2xx, and lost.
    pub kill_calls: u64,
    pub kill_failed: u64,
    pub kill_lost: u64,
    /// Every instance's worker list at the end, by admin address.
    pub worker_lists: BTreeMap<String, Vec<String>>,
    pub workers: Vec<String>,
    pub seconds: f64,
}

impl Report {
    /// What went wrong: an empty list is a pass.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let failed: u64 = self.answered.iter().filter(|(code, _)| !(200..300).contains(*code)).map(|(_, n)| n).sum();
        if failed > 0 || self.lost > 0 {
            problems.push(format!("rolling restarts: {failed} calls failed and {} lost", self.lost));
        }
        if self.restarts < self.instances as u64 {
            problems.push(format!("only {} restarts for {} instances", self.restarts, self.instances));
        }
        for (admin, list) in &self.worker_lists {
            if list != &self.workers {
                problems.push(format!("instance {admin} has workers {list:?}, not {:?}", self.workers));
            }
        }
        problems
    }

    pub fn text(&self) -> String {
        let answered: u64 = self.answered.values().sum();
        format!(
            "tier of {} instances behind HAProxy, {:.0} s\n\
             rolling restarts: {} restarts, {} calls: {answered} answered {:?}, {} lost\n\
             one instance killed: {} calls, {} not answered 2xx, {} lost\n\
             worker lists at the end: {}\n",
            self.instances,
            self.seconds,
            self.restarts,
            self.calls,
            self.answered,
            self.lost,
            self.kill_calls,
            self.kill_failed,
            self.kill_lost,
            if self.worker_lists.values().all(|l| l == &self.workers) {
                "the same on every instance"
            } else {
                "differ"
            },
        )
    }
}

pub async fn run(options: &Options) -> Result<Report, String> {
    let started = Instant::now();
    let workdir = WorkDir::new()?;
    let (_upstreams, workers) = start_upstreams(&options.upstream, options.workers, 0).await?;
    let address = format!("127.0.0.1:{}", free_port()?);
    let spec = tier::Spec {
        hiku: &options.hiku,
        haproxy: &options.haproxy,
        extra: Vec::new(),
        config: serde_json::json!({"host": "127.0.0.1", "balancer": options.balancer, "workers": workers}),
        instances: options.instances,
        front: Kind::FnHash,
        address: address.clone(),
        workdir: &workdir.0,
        name: "hiku",
    };
    let Tier { mut instances, front: _front, rise } = tier::start(spec).await?;
    let target: SocketAddr = address.parse().expect("an address");
    // The front's checks find every instance up before the load.
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Rolling restarts, one instance after the other, while calls go on.
    let loading = tokio::spawn(load(target, options.connections, options.calls));
    let mut restarts = 0;
    let mut next = 0;
    while !loading.is_finished() {
        tokio::time::sleep(options.pause).await;
        if loading.is_finished() {
            break;
        }
        let instance = &mut instances[next % options.instances];
        let status = instance.stop(libc::SIGTERM, EXIT_WITHIN).await?;
        if !status.success() {
            return Err(format!("instance {} exited {status} on SIGTERM", instance.main));
        }
        instance.start(&options.hiku).await?;
        // As an operator's rolling restart: the next instance goes only
        // once the front counts this one up again, or both could be out.
        tokio::time::sleep(rise).await;
        restarts += 1;
        next += 1;
        if options.progress {
            eprintln!("[tier soak {:.0} s] {restarts} restarts", started.elapsed().as_secs_f64());
        }
    }
    let rolling: Tally = loading.await.map_err(|e| format!("the load failed: {e}"))?;

    // One instance killed under calls, and started again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill_calls = (options.calls / 4).max(1000);
    let loading = tokio::spawn(load(target, options.connections, kill_calls));
    tokio::time::sleep(Duration::from_millis(500)).await;
    instances[0].stop(libc::SIGKILL, EXIT_WITHIN).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    instances[0].start(&options.hiku).await?;
    let killed: Tally = loading.await.map_err(|e| format!("the load failed: {e}"))?;
    let kill_failed = killed.answered.iter().filter(|(c, _)| !(200..300).contains(*c)).map(|(_, n)| n).sum();

    let mut worker_lists = BTreeMap::new();
    for instance in &instances {
        let admin: SocketAddr = instance.admin.parse().expect("an address");
        let body = request_once(admin, "GET", "/admin/workers").await?.body;
        let listed: serde_json::Value = serde_json::from_str(&body).map_err(|e| format!("{body}: {e}"))?;
        let urls =
            listed["workers"].as_array().map(|a| a.iter().filter_map(|u| u.as_str().map(String::from)).collect());
        worker_lists.insert(instance.admin.clone(), urls.unwrap_or_default());
    }
    Ok(Report {
        instances: options.instances,
        calls: options.calls,
        answered: rolling.answered,
        lost: rolling.lost,
        restarts,
        kill_calls,
        kill_failed,
        kill_lost: killed.lost,
        worker_lists,
        workers,
        seconds: started.elapsed().as_secs_f64(),
    })
}
