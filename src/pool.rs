//! One core's keep-alive connections to the workers. glommio streams can't
//! leave the core that made them, so each core keeps its own pool: plain
//! `RefCell` state, never borrowed across an `.await`.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use glommio::net::TcpStream;

use crate::worker::{Worker, WorkerId, WorkerSet};

/// How long to wait for a worker to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Idle connections kept per worker on one core. The pool grows to the
/// concurrency the core has seen (the Go original keeps 2).
pub const MAX_IDLE_PER_WORKER: usize = 4096;
/// A connection idle for longer is checked for a close by the worker
/// before reuse; younger ones are trusted (and retried if stale).
const TRUST_IDLE: Duration = Duration::from_secs(1);

struct Idle {
    stream: TcpStream,
    since: Instant,
}

#[derive(Default)]
pub struct Pool {
    idle: RefCell<AHashMap<WorkerId, Vec<Idle>>>,
}

impl Pool {
    /// The most recently used live idle connection to `worker`, if any.
    /// With `verify`, even a recently used one is checked (for a request
    /// that could not be sent again if the connection turned out closed).
    pub fn take(&self, worker: WorkerId, verify: bool) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&worker)?;
        while let Some(c) = list.pop() {
            if (!verify && c.since.elapsed() < TRUST_IDLE) || is_open(&c.stream) {
                return Some(c.stream);
            }
        }
        None
    }

    pub fn put(&self, worker: WorkerId, stream: TcpStream) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(worker).or_default();
        if list.len() < MAX_IDLE_PER_WORKER {
            list.push(Idle { stream, since: Instant::now() });
        }
    }

    /// Closes connections to removed workers and ones their worker closed.
    pub fn sweep(&self, workers: &WorkerSet) {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|id, list| {
            if workers.get(*id).is_none() {
                return false;
            }
            list.retain(|c| is_open(&c.stream));
            !list.is_empty()
        });
    }

    pub fn idle_count(&self) -> usize {
        self.idle.borrow().values().map(Vec::len).sum()
    }
}

/// Whether an idle connection is still open: no EOF and no stray bytes
/// waiting (a non-blocking peek; it never waits).
fn is_open(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: a valid fd and a one-byte buffer we own.
    let n = unsafe {
        libc::recv(stream.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Opens a connection to `worker`, trying each of its addresses in turn.
pub async fn connect(worker: &Worker) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host resolved to no address");
    for addr in worker.addrs() {
        match TcpStream::connect_timeout(*addr, CONNECT_TIMEOUT).await {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e.into(),
        }
    }
    Err(last)
}
