//! One core's keep-alive connections to the workers. A stream belongs to
//! the runtime of the core that made it, so each core keeps its own pool:
//! plain `RefCell` state, never borrowed across an `.await`.

use std::cell::RefCell;
use std::io;
use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::runtime::{self, TcpStream};
use crate::worker::{Worker, WorkerId, WorkerSet};

/// Idle connections kept per worker on one core. The pool grows to the
/// concurrency the core has seen (the Go original keeps 2).
pub(crate) const MAX_IDLE_PER_WORKER: usize = 4096;
/// A connection idle for less than this is reused without checking it: a
/// worker closes idle connections after seconds, not within moments of an
/// answer, and the check costs a system call per request under load.
pub(crate) const FRESH: Duration = Duration::from_millis(50);

#[derive(Default)]
pub(crate) struct Pool {
    idle: RefCell<AHashMap<WorkerId, Vec<Idle>>>,
}

struct Idle {
    stream: TcpStream,
    since: Instant,
    /// It counts in its worker's `pooled` (only while it had a configured capacity:
    /// a worker without one pays no shared counter per call).
    counted: bool,
}

impl Idle {
    /// Lets it go from the worker's count.
    fn uncount(&self, worker: &Worker) {
        if self.counted {
            worker.unpooled_one();
        }
    }
}

impl Pool {
    /// The most recently used idle connection to `worker` that is still
    /// open and has nothing waiting to be read: a worker may have closed it,
    /// or sent stray bytes after its last answer that must not be taken for
    /// the next one. One idle for less than [`FRESH`] is taken as it is.
    pub(crate) fn take(&self, worker: &Worker) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&worker.id())?;
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            idle.uncount(worker);
            if now.duration_since(idle.since) < FRESH || is_open(&idle.stream) {
                return Some(idle.stream);
            }
        }
        None
    }

    /// Keeps a connection to `worker` (whose call on it has not ended yet)
    /// for its next call, unless that would take the connections to it
    /// past its capacity: those idle over all cores and one per call in
    /// flight (a race between cores may pass it by one each).
    pub(crate) fn put(&self, worker: &Worker, stream: TcpStream) {
        let counted = worker.configured_capacity() != usize::MAX;
        if counted && worker.pooled() + worker.in_flight() > worker.configured_capacity() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(worker.id()).or_default();
        if list.len() < MAX_IDLE_PER_WORKER {
            list.push(Idle { stream, since: Instant::now(), counted });
            if counted {
                worker.pooled_one();
            }
        }
    }

    /// Closes every idle connection to `worker`: one of them just failed,
    /// and the others (its process died, say) likely will too.
    pub(crate) fn forget(&self, worker: &Worker) {
        if let Some(list) = self.idle.borrow_mut().remove(&worker.id()) {
            list.iter().for_each(|i| i.uncount(worker));
        }
    }

    /// Closes connections to removed workers, ones their worker closed, and
    /// the oldest idle ones past a worker's capacity: a core with none idle
    /// opens a new connection while others keep theirs.
    pub(crate) fn sweep(&self, workers: &WorkerSet) {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|id, list| {
            let Some(worker) = workers.get(*id) else { return false };
            let bounded = worker.configured_capacity() != usize::MAX;
            list.retain_mut(|i| {
                // Kept before the worker had a capacity (a reload gave it
                // one): counted from now on.
                if bounded && !i.counted {
                    i.counted = true;
                    worker.pooled_one();
                }
                let open = is_open(&i.stream);
                if !open {
                    i.uncount(worker);
                }
                open
            });
            let excess = (worker.pooled() + worker.in_flight()).saturating_sub(worker.configured_capacity());
            let trimmed = excess.min(list.len());
            list.drain(..trimmed).for_each(|i| i.uncount(worker));
            !list.is_empty()
        });
    }
}

/// Whether an idle connection is still open: no EOF and no stray bytes
/// waiting (a non-blocking peek; it never waits).
fn is_open(stream: &TcpStream) -> bool {
    matches!(runtime::peek(stream), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Opens a connection to `worker`, trying each of its addresses in turn.
pub(crate) async fn connect(worker: &Worker, within: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in worker.addrs() {
        match runtime::timeout(within, TcpStream::connect_addr(*addr)).await {
            Ok(Ok(s)) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Ok(Err(e)) => last = e,
            Err(_) => {
                last =
                    io::Error::new(io::ErrorKind::TimedOut, format!("no connection within {} ms", within.as_millis()))
            }
        }
    }
    Err(last)
}
