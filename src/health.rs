//! Which workers the balancers may choose: the ejection rule (`health` in
//! the config) and the probes that put an ejected worker back.

use std::time::Duration;

use crate::probe::{self, Ask};
use crate::worker::Worker;

/// When a worker is taken out of the balancers' choice (`health` in the
/// config): after `eject_after` connection failures in a row (0: never),
/// with at most `max_ejected_percent` of the workers out at once. With an
/// `interval`, every worker in is also probed that often, a failed probe
/// counting as a failed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub eject_after: u32,
    pub max_ejected_percent: u32,
    pub interval: Option<Duration>,
}

impl Default for Health {
    fn default() -> Self {
        Health { eject_after: 3, max_ejected_percent: 50, interval: None }
    }
}

impl Health {
    /// Whether `failures` connection failures in a row eject a worker.
    pub fn ejects_after(&self, failures: u32) -> bool {
        self.eject_after != 0 && failures >= self.eject_after
    }

    /// Whether one more worker may go out, with `out` of `total` out now.
    pub fn may_eject(&self, out: usize, total: usize) -> bool {
        out < total * self.max_ejected_percent as usize / 100
    }
}

/// The first wait before an ejected worker is probed, and the longest.
const PROBE_FIRST: Duration = Duration::from_millis(500);
const PROBE_LAST: Duration = Duration::from_secs(30);
/// How often, at most, the active prober looks whether a round is due.
pub const PROBE_SLICE: Duration = Duration::from_millis(250);

/// Probes an ejected worker with backoff until it answers `GET /status`
/// with a 2xx (then puts it back), or it is gone. A thread of its own:
/// blocking here stops no executor.
pub fn probe_until_back(worker: std::sync::Weak<Worker>) {
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
pub fn status_ok(w: &Worker, within: Duration) -> bool {
    let ask = Ask::get("/status", w.url().authority());
    w.addrs().iter().any(|&addr| probe::ask_blocking(addr, &ask, within).is_ok_and(|r| (200..300).contains(&r.status)))
}
