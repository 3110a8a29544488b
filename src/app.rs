//! Starting hiku: the I/O driver chosen, the process's limits raised, the
//! listening sockets bound (and steered), the state the shards share made
//! (scheduler, running config, metrics, access log), the signal hooks set,
//! and one shard started per core.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use socket2::Socket;

use crate::access_log;
use crate::balancer;
use crate::cluster;
use crate::config::Config;
use crate::handoff::{Handoff, Shards};
use crate::health;
use crate::listen;
use crate::metrics::Metrics;
use crate::reload::{self, LiveConfig};
use crate::runtime::{self, Driver, TcpListener};
use crate::scheduler::{self, Scheduler};
use crate::shard::{Parts, Shard};
use crate::shutdown;
use crate::steering;
use crate::sys;

/// Serves `config` (read from `path`, which reloads re-read) on `cores`
/// shards, each pinned to a core of its own if `pin`, until the process ends.
pub fn run(config: &Config, path: Option<&Path>, cores: usize, pin: bool) -> Result<(), String> {
    let driver = Driver::choose()?;
    sys::raise_limits();
    let addr = config.listen_addr().map_err(|e| e.to_string())?;
    let (bound, sockets) = listen::bind_listeners(addr, cores).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if let Some(pinned) = runtime::pinned_cores(cores).filter(|_| pin) {
        if let Err(e) = steering::steer_away_from_syn_core(&sockets[0], pinned) {
            log::warn!("new connections are spread by the kernel's hash, not steered by core: {e}");
        }
    }
    let admin = match config.admin_addr().map_err(|e| e.to_string())? {
        Some(addr) => Some(listen::bind_admin(addr).map_err(|e| format!("cannot listen on admin.listen {addr}: {e}"))?),
        None => None,
    };
    let scheduler = start_scheduler(config, cores);
    log::info!(
        "hiku {} on {bound}: {} balancer, {} workers, {cores} {} cores, {driver}",
        env!("CARGO_PKG_VERSION"),
        config.balancer,
        scheduler.workers().len(),
        if pin { "pinned" } else { "unpinned" }
    );
    println!("listening on {bound}");
    // The admin listener goes to the first shard.
    let mut admin = admin.map(|(admin_bound, socket)| {
        log::info!("/admin and /status on {admin_bound} only");
        println!("admin listening on {admin_bound}");
        socket
    });
    let (shards, inboxes) = Shards::new(cores);
    let inputs: Vec<_> = sockets.into_iter().zip(inboxes).map(|(s, inbox)| (s, admin.take(), inbox)).collect();
    let max_connections = config.limits.max_connections.unwrap_or_else(|| sys::open_file_limit() / 2).max(1);
    let live = LiveConfig::new(path.map(Into::into), config.clone(), Arc::clone(&scheduler));
    let config = live.config();
    let metrics = Arc::new(Metrics::new(cores));
    let access = open_access_log(&config, cores)?;
    let reloads = Arc::clone(&live);
    shutdown::on_reload(move || reload::log_outcome(reloads.reload()));
    runtime::run_shards(inputs, driver, pin, move |i, (socket, admin, inbox)| {
        let scheduler = Arc::clone(&scheduler);

        let live = Arc::clone(&live);
        let metrics = Arc::clone(&metrics);
        let access = access.clone();
        async move {
            let adopt = |socket: Socket| TcpListener::from_std(socket.into());
            let (listener, admin) = match (adopt(socket), admin.map(adopt).transpose()) {
                (Ok(l), Ok(a)) => (l, a),
                (Err(e), _) | (_, Err(e)) => {
                    log::error!("shard {i}: cannot adopt its listener: {e}");
                    shards.retire(i);
                    return;
                }
            };
            // The function table's pins nest in this one (no fence per
            // request); the shard's memory trim lets the epoch move on
            // every second.
            balancer::hold_epoch();
            let access = access.map(|writer| writer.shard());
            let handoff = Handoff::new(shards, i, inbox);
            let shard = Shard::start(Parts { core: i, cores, scheduler, live, metrics, access, handoff });
            listen::accept_all(shard, listener, admin, max_connections).await;
        }
    })
}

/// The scheduler of `config`'s workers (or, in a tier, of the list a peer
/// has), with what the peers know, its workers probed from now on.
fn start_scheduler(config: &Config, cores: usize) -> Arc<Scheduler> {
    let workers = match cluster::workers_from_peers(config) {
        Some((peer, workers)) => {
            log::info!("{} workers, as peer {peer} has them (the tier's list, not the file's)", workers.len());
            workers
        }
        None => config.workers.clone(),
    };
    let balancer = config.balancer.build_with(config.limits.max_functions, config.predictive.worker_cores);
    let scheduler = Scheduler::with_balancer(config.balancer, balancer, scheduler::resolve(&workers))
        .with_health(config.health)
        .with_cores(cores);
    scheduler.set_capacities(config.capacities());
    scheduler.set_adaptive(config.adaptive_tuning());
    adopt_from_peers(config, &scheduler);
    let scheduler = Arc::new(scheduler);
    health::probe_actively(Arc::downgrade(&scheduler));
    scheduler
}

/// Opens `log.access`, if set, reopened on SIGUSR1 and flushed at exit.
fn open_access_log(config: &Config, cores: usize) -> Result<Option<access_log::Writer>, String> {
    let Some(path) = &config.log.access else { return Ok(None) };
    let writer =
        access_log::open(path, cores).map_err(|e| format!("cannot open log.access {}: {e}", path.display()))?;
    let (reopened, finished) = (writer.clone(), writer.clone());
    shutdown::on_reopen(move || reopened.reopen());
    shutdown::before_exit(move || finished.finish(Duration::from_secs(1)));
    Ok(Some(writer))
}

/// Takes what the peers know: the warm idle instances (the functions they
/// served while this instance was away, the front having sent them its
/// functions, come back to it warm), and what the first that knows any
/// learnt of the workers' adaptive limits. Blocks: at start.
fn adopt_from_peers(config: &Config, scheduler: &Scheduler) {
    let mut limits_known = false;
    for peer in &config.cluster.peers {
        let directory = cluster::directory_of_peer(config, peer);
        let adopted = directory.idle.iter().filter(|(f, url, n)| scheduler.adopt_idle(f, url, *n)).count();
        if adopted > 0 {
            log::info!("took {adopted} warm idle entries from peer {peer}");
        }
        if !limits_known {
            let adopted = directory.limits.iter().filter(|(url, learnt)| scheduler.adopt_limit(url, learnt)).count();
            if adopted > 0 {
                log::info!("took the adaptive limits of {adopted} workers from peer {peer}");
                limits_known = true;
            }
        }
    }
}
