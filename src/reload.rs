//! Changing the config while hiku runs: SIGHUP, `POST /admin/reload` or
//! `hiku reload` re-read the file hiku was started with. A file that does
//! not load is logged and refused, and hiku goes on as it was. Otherwise:
//!
//! - workers come and go as with `/admin/workers/add` and `remove`: the
//!   file's list becomes the set (calls in flight on a removed worker end);
//! - capacities and health apply at once, to new calls;
//! - a new balancer (or new `limits.max_functions`,
//!   `predictive.worker_cores`) places new calls, starting with no warm
//!   instances known;
//! - everything else read per call (timeouts, retries, limits, queue,
//!   admin token, destroy_sandbox, front, cluster) applies to the next
//!   request on each core.
//!
//! What is bound at start ([`Config::changes`] lists it) keeps its running
//! value, with a warning that it takes a restart.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::probe::{self, Ask, Reply};
use crate::scheduler::{self, Scheduler};

/// The running config, and how to load the next one.
pub(crate) struct LiveConfig {
    /// The file hiku was started with (`None`: nothing to re-read).
    path: Option<PathBuf>,
    config: ArcSwap<Config>,
    /// Bumped on every reload: cores compare it to refresh their copy.
    generation: AtomicU64,
    scheduler: Arc<Scheduler>,
    /// One reload at a time (signals and admin calls may overlap; never
    /// taken on the request path).
    reloading: Mutex<()>,
}

impl LiveConfig {
    pub(crate) fn new(path: Option<PathBuf>, config: Config, scheduler: Arc<Scheduler>) -> Arc<LiveConfig> {
        Arc::new(LiveConfig {
            path,
            config: ArcSwap::from_pointee(config),
            generation: AtomicU64::new(0),
            scheduler,
            reloading: Mutex::new(()),
        })
    }

    pub(crate) fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Changes with every reload (a plain load on x86: cheap on every
    /// request).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Re-reads the file and applies it; returns what changed (one line
    /// each), or why the file was refused. Blocks (it reads a file and
    /// resolves new workers' names): call it off the executors.
    pub(crate) fn reload(&self) -> Result<Vec<String>, String> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.path.as_ref().ok_or("hiku was not started from a config file")?;
        let next = Config::load(path).map_err(|e| e.to_string())?;
        for warning in next.key_warnings() {
            log::warn!("{}: {warning}", path.display());
        }
        let current = self.config.load_full();
        let mut changes = Vec::new();
        for key in current.changes(&next).start_bound {
            log::warn!("config reload: {key} changed, which takes a restart; kept the running value");
            changes.push(format!("{key}: takes a restart (kept)"));
        }
        let next = current.keeping_start_bound(next);
        // Capacities first: workers added next take theirs.
        self.scheduler.set_capacities(next.capacities());
        self.scheduler.set_adaptive(next.adaptive_tuning());
        self.apply_workers(&next, &mut changes);
        use crate::balancer::BalancerKind::{Predictive, PullBased, PullHashing};
        let keeps_table = matches!(next.balancer, PullBased | PullHashing | Predictive);
        let rebuild = next.balancer != current.balancer
            || (keeps_table && next.limits.max_functions != current.limits.max_functions)
            || (next.balancer == Predictive && next.predictive != current.predictive);
        if rebuild {
            let balancer = next.balancer.build_with(next.limits.max_functions, next.predictive.worker_cores);
            self.scheduler.set_balancer(next.balancer, balancer);
            changes.push(format!("balancer: {} (new calls; no warm instances known yet)", next.balancer));
        }
        self.scheduler.set_health(next.health);
        changes.extend(current.changes(&next).per_call.iter().map(|key| format!("{key}: new values")));
        self.config.store(Arc::new(next));
        // Release: a core that sees the new generation sees the new config.
        self.generation.fetch_add(1, Ordering::Release);
        Ok(changes)
    }

    /// Makes the running set the file's list: removes workers it no longer
    /// has, adds (resolving their names) the ones it has newly.
    fn apply_workers(&self, next: &Config, changes: &mut Vec<String>) {
        let running: Vec<_> = self.scheduler.workers().iter().map(|w| w.url().clone()).collect();
        // One at a time: one an admin removed meanwhile is gone already.
        for url in running.iter().filter(|u| !next.workers.contains(u)) {
            if self.scheduler.remove(std::slice::from_ref(url)).is_ok() {
                changes.push(format!("worker removed: {url}"));
            }
        }
        let new: Vec<_> = next.workers.iter().filter(|u| !running.contains(u)).cloned().collect();
        if !new.is_empty() {
            let resolved = scheduler::resolve(&new);
            self.scheduler.add(resolved);
            changes.extend(new.iter().map(|u| format!("worker added: {u}")));
        }
    }
}

/// Logs what a reload did.
pub(crate) fn log_outcome(outcome: Result<Vec<String>, String>) {
    match outcome {
        Ok(changes) if changes.is_empty() => log::info!("config reloaded: nothing changed"),
        Ok(changes) => log::info!("config reloaded: {}", changes.join("; ")),
        Err(e) => log::error!("config reload refused, running as before: {e}"),
    }
}

/// `hiku reload`: asks the hiku running with `config` (at its
/// `admin.listen`, or its `host:port`, with its `admin.token`; `addr` and
/// `token` instead, if given) to reload its config file. Returns the
/// answer's status and body.
pub fn ask(config: &Config, addr: Option<&str>, token: Option<&str>) -> Result<Reply, String> {
    let addr = match addr {
        Some(given) => given
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| format!("--addr {given:?} is not a host:port that resolves"))?,
        None => match config.admin_addr().map_err(|e| e.to_string())? {
            Some(addr) => addr,
            None => config.listen_addr().map_err(|e| e.to_string())?,
        },
    };
    // A listener on every interface is reached on loopback (IPv4's: one on
    // every IPv6 interface takes IPv4 too).
    let addr = if addr.ip().is_unspecified() { (std::net::Ipv4Addr::LOCALHOST, addr.port()).into() } else { addr };
    let token = token.or(config.admin.token.as_deref());
    let host = addr.to_string();
    let ask = Ask::post("/admin/reload", &host).token(token);
    probe::ask_blocking(addr, &ask, Duration::from_secs(60)).map_err(|e| format!("hiku: {e}"))
}
