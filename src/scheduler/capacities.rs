//! How many calls each worker may have in flight (`workers_max_inflight`,
//! a worker's `max_inflight`, `limits.max_connections_per_worker`).

use crate::worker::WorkerUrl;

/// The capacity of each worker: its own, or the default (`None`: no bound).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Capacities {
    pub(crate) default: Option<usize>,
    pub(crate) own: Vec<(WorkerUrl, Option<usize>)>,
}

impl Capacities {
    pub(crate) fn of(&self, url: &WorkerUrl) -> Option<usize> {
        self.own.iter().find(|(u, _)| u == url).map_or(self.default, |&(_, n)| n)
    }

    /// Whether any worker may have a bound.
    pub(crate) fn any(&self) -> bool {
        self.default.is_some() || self.own.iter().any(|(_, n)| n.is_some())
    }
}
