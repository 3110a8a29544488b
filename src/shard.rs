//! What one core owns ([`Shard`]), shared with no other core, and the
//! periodic tasks that keep it: its waiting calls dispatched, its share of
//! the connections weighed, its access log flushed, its worker connections
//! swept, its idle connections closed and its freed memory given back.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::access_log::{self, AccessLog};
use crate::balancer;
use crate::config::Config;
use crate::conn::{Conn, Dormant};
use crate::handoff::{self, Handoff};
use crate::metrics::{self, Decision, Metrics};
use crate::parking::{self, Parking};
use crate::pool::Pool;
use crate::queue::Queue;
use crate::reload::LiveConfig;
use crate::runtime;
use crate::scheduler::{Scheduler, Unplaced};
use crate::sys;
use crate::worker::{Lease, Worker};

/// How often each core closes idle connections to removed or closed workers.
const POOL_SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How often each core gives the memory it freed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// What one core owns.
pub(crate) struct Shard {
    pub(crate) scheduler: Arc<Scheduler>,
    /// Its keep-alive connections to the workers.
    pub(crate) pool: Pool,
    /// How many shards the process runs.
    pub(crate) cores: usize,
    /// The running config, and this core's copy of it (as of its
    /// generation), refreshed before each request: a reloaded config
    /// applies from the core's next request on (to the requests in
    /// progress too, from then on).
    pub(crate) live: Arc<LiveConfig>,
    config: RefCell<Rc<Config>>,
    config_generation: Cell<u64>,
    /// Its quiet connections, closed when `timeouts.client_idle` is up.
    pub(crate) parking: Parking<Dormant>,
    /// A drain has shut its listeners down: their accept loops may end.
    pub(crate) listeners_shut: Cell<bool>,
    /// Every core's counters (`/metrics`), and this core's place in them.
    pub(crate) metrics: Arc<Metrics>,
    core: usize,
    /// Decisions since the last timed one.
    untimed: Cell<u32>,
    /// Its side of the access log, if there is one.
    pub(crate) access: Option<AccessLog>,
    /// Its calls waiting for a worker with room.
    pub(crate) queue: Queue,
    /// Its share of the keep-alive connections.
    pub(crate) handoff: Handoff,
}

/// What a shard is made of, beside what it makes itself.
pub(crate) struct Parts {
    pub(crate) core: usize,
    pub(crate) cores: usize,
    pub(crate) scheduler: Arc<Scheduler>,
    pub(crate) live: Arc<LiveConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access: Option<AccessLog>,
    pub(crate) handoff: Handoff,
}

impl Shard {
    /// Core `parts.core`'s shard, with its periodic tasks running.
    pub(crate) fn start(parts: Parts) -> Rc<Shard> {
        let Parts { core, cores, scheduler, live, metrics, access, handoff } = parts;
        let shard = Rc::new(Shard {
            scheduler,
            pool: Pool::default(),
            cores,
            config: RefCell::new(Rc::new(Config::clone(&live.config()))),
            config_generation: Cell::new(live.generation()),
            live,
            parking: Parking::new(),
            listeners_shut: Cell::new(false),
            metrics,
            core,
            untimed: Cell::new(0),
            access,
            queue: Queue::new(core),
            handoff,
        });
        runtime::spawn(dispatch_waiting_calls(Rc::clone(&shard)));
        if cores > 1 {
            runtime::spawn(weigh_share(Rc::clone(&shard)));
        }
        if shard.access.is_some() {
            runtime::spawn(flush_access_log(Rc::clone(&shard)));
        }
        runtime::spawn(sweep_pool(Rc::clone(&shard)));
        runtime::spawn(close_idle(Rc::clone(&shard)));
        runtime::spawn(trim_memory(Rc::clone(&shard)));
        shard
    }

    /// The settings hiku runs with (time limits, retries, limits, admin).
    pub(crate) fn config(&self) -> Rc<Config> {
        Rc::clone(&self.config.borrow())
    }

    /// Takes the reloaded config, if there is a newer one (a relaxed load
    /// otherwise).
    pub(crate) fn refresh_config(&self) {
        let generation = self.live.generation();
        if generation != self.config_generation.get() {
            *self.config.borrow_mut() = Rc::new(Config::clone(&self.live.config()));
            self.config_generation.set(generation);
        }
    }

    /// This core's counters.
    pub(crate) fn counters(&self) -> &metrics::Core {
        self.metrics.core(self.core)
    }

    /// The balancer's choice for a call of `function`, counted (and one in
    /// `DECISION_SAMPLE` timed) for `/metrics`.
    pub(crate) fn place(&self, function: &str) -> Result<Lease, Unplaced> {
        let untimed = self.untimed.get();
        self.untimed.set(if untimed + 1 >= metrics::DECISION_SAMPLE { 0 } else { untimed + 1 });
        let timed = (untimed == 0).then(Instant::now);
        let lease = self.scheduler.place(function)?;
        if let Some(at) = timed {
            self.counters().decision_time(at.elapsed());
        }
        self.count_decision(&lease);
        Ok(lease)
    }

    /// Counts whether a call took a warm instance, for balancers that know.
    pub(crate) fn count_decision(&self, lease: &Lease) {
        if self.scheduler.tracks_warm() {
            let decision = if lease.hint() > 0 { Decision::Warm } else { Decision::Fallback };
            self.counters().decision(decision);
        }
    }

    /// Counts a `/run` call on `conn` that ended with `status` after `took`
    /// (none: the connection was cut, or the client left), on `worker` if
    /// one had it, and logs it if there is an access log.
    pub(crate) fn record_call(&self, conn: &Conn, worker: Option<&Worker>, status: Option<u16>, took: Duration) {
        if let Some(status) = status {
            self.counters().call(status, took);
        }
        if let Some(log) = &self.access {
            let worker = worker.map(|w| w.url().as_str());
            log.call(conn.client_ip(), conn.request_line(), status.unwrap_or(0), worker, took);
        }
    }

    /// Counts a `/run` call that no worker had, answered with `status` by
    /// hiku itself (none: the client left).
    pub(crate) fn record_refused(&self, conn: &Conn, status: Option<u16>) {
        self.record_call(conn, None, status, Duration::ZERO);
    }
}

/// Places the core's waiting calls as workers get room.
async fn dispatch_waiting_calls(shard: Rc<Shard>) {
    shard.queue.dispatch_forever(&shard.scheduler).await
}

/// Weighs this shard's share of the connections now and then.
async fn weigh_share(shard: Rc<Shard>) {
    loop {
        runtime::sleep(handoff::LOOK_EVERY).await;
        shard.handoff.look();
    }
}

async fn close_idle(shard: Rc<Shard>) {
    loop {
        // As often as the client_idle in force asks (a reload may change it).
        runtime::sleep(parking::sweep_every(shard.config().timeouts.client_idle)).await;
        shard.parking.sweep(Instant::now());
    }
}

async fn flush_access_log(shard: Rc<Shard>) {
    while let Some(log) = &shard.access {
        runtime::sleep(access_log::FLUSH_EVERY).await;
        log.flush();
    }
}

/// Gives the memory the core freed back to the system every
/// [`TRIM_EVERY`]: all it can once no call came for as long (after a
/// burst, the pages of its connections' tasks and buffers, kept otherwise:
/// 0.6 KiB per idle connection with 10 000 over two cores), what is quick
/// to give while calls come.
async fn trim_memory(shard: Rc<Shard>) {
    let mut calls = shard.counters().calls();
    loop {
        runtime::sleep(TRIM_EVERY).await;
        balancer::repin_epoch();
        let now = shard.counters().calls();
        sys::return_free_memory(now == calls);
        calls = now;
    }
}

async fn sweep_pool(shard: Rc<Shard>) {
    loop {
        runtime::sleep(POOL_SWEEP_EVERY).await;
        shard.pool.sweep(&shard.scheduler.workers());
    }
}
