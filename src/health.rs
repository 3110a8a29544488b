//! Which workers the balancers may choose: the ejection rule (`health` in
//! the config) and the probes that put an ejected worker back.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::probe::{self, Ask};
use crate::worker::Worker;

/// When a worker is taken out of the balancers' choice (`health` in the
/// config): after `eject_after` connection failures in a row (0: never),
/// with at most `max_ejected_percent` of the workers out at once. With an
/// `interval`, every worker in is also probed that often, a failed probe
/// counting as a failed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Health {
    pub(crate) eject_after: u32,
    pub(crate) max_ejected_percent: u32,
    pub(crate) interval: Option<Duration>,
}

impl Default for Health {
    fn default() -> Self {
        Health { eject_after: 3, max_ejected_percent: 50, interval: None }
    }
}

impl Health {
    /// Whether `failures` connection failures in a row eject a worker.
    pub(crate) fn ejects_after(&self, failures: u32) -> bool {
        self.eject_after != 0 && failures >= self.eject_after
    }

    /// Whether one more worker may go out, with `out` of `total` out now.
    pub(crate) fn may_eject(&self, out: usize, total: usize) -> bool {
        out < total * self.max_ejected_percent as usize / 100
    }
}

/// The first wait before an ejected worker is probed, and the longest.
const PROBE_FIRST: Duration = Duration::from_millis(500);
const PROBE_LAST: Duration = Duration::from_secs(30);
/// How often, at most, the active prober looks whether a round is due.
const PROBE_SLICE: Duration = Duration::from_millis(250);

/// What the active probes look at and report to: the scheduler.
pub(crate) trait Probed: Send + Sync + 'static {
    /// The health settings in force now (a reload may change them).
    fn health(&self) -> Health;
    /// The workers not ejected.
    fn workers_in(&self) -> Vec<Arc<Worker>>;
    /// A probe of `worker` failed: as a failed connection.
    fn connect_failed(&self, worker: &Arc<Worker>);
}

/// Probes every worker that is in each `health.interval` (while one is
/// set), for as long as `probed` lives: a failed probe counts as a failed
/// connection, a 2xx resets the count. A thread of its own, as blocking
/// here stops no executor.
pub(crate) fn probe_actively<P: Probed>(probed: Weak<P>) {
    let spawned = std::thread::Builder::new().name("hiku-health".into()).spawn(move || {
        let (mut last, mut slice) = (Instant::now(), PROBE_SLICE);
        loop {
            // In slices, so that an interval a reload sets or changes
            // counts from the last round at once.
            std::thread::sleep(slice);
            let Some(p) = probed.upgrade() else { return };
            let Some(interval) = p.health().interval else {
                slice = PROBE_SLICE;
                continue;
            };
            slice = interval.min(PROBE_SLICE);
            if last.elapsed() < interval {
                continue;
            }
            last = Instant::now();
            for w in p.workers_in() {
                if status_ok(&w, interval.min(probe::STATUS_TIMEOUT)) {
                    w.connect_succeeded();
                } else {
                    log::debug!("worker {} failed its health probe", w.url());
                    p.connect_failed(&w);
                }
            }
        }
    });
    if let Err(e) = spawned {
        log::error!("cannot start the health probes: {e}");
    }
}

/// Probes an ejected worker with backoff until it answers `GET /status`
/// with a 2xx (then puts it back), or it is gone. A thread of its own:
/// blocking here stops no executor.
pub(crate) fn probe_until_back(worker: Weak<Worker>) {
    let mut wait = PROBE_FIRST;
    loop {
        std::thread::sleep(wait);
        let Some(w) = worker.upgrade() else { return };
        if !w.is_ejected() {
            return;
        }
        if status_ok(&w, probe::STATUS_TIMEOUT) {
            w.restore();
            log::info!("worker {} answers again: back in", w.url());
            return;
        }
        wait = (wait * 2).min(PROBE_LAST);
    }
}

/// Whether the worker answers `GET /status` with a 2xx `within` the time,
/// at any of its addresses. Blocks: for the probes' own threads.
pub(crate) fn status_ok(w: &Worker, within: Duration) -> bool {
    let ask = Ask::get("/status", w.url().authority());
    w.addrs().iter().any(|&addr| probe::ask_blocking(addr, &ask, within).is_ok_and(|r| (200..300).contains(&r.status)))
}
