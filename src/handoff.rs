//! Each shard's share of the keep-alive connections.
//!
//! New connections are steered by the core that took their SYN
//! ([`crate::steering`]), which is right for a connection that carries one
//! call, but a client on this machine that opens many connections at once
//! (a load generator, a front such as HAProxy) puts them all on the shards
//! away from its core, and keep-alive connections stay where they landed.
//! So a shard that holds more than its share past a slack moves
//! connections that have served [`SETTLED`] calls, between two calls, to
//! the shard with the fewest: it duplicates the descriptor into that
//! shard's inbox (the stream stays with the runtime that made it until it
//! is dropped) and wakes it; that shard adopts it and serves the next
//! call. A connection that closes after a call or two never moves, so
//! short ones keep their steering. Each shard weighs the counts every
//! [`LOOK_EVERY`]; between looks, a call pays one `Cell` read.

use std::cell::Cell;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::task::Poll;
use std::time::Duration;

use atomic_waker::AtomicWaker;

use crate::runtime::{self, TcpStream};
use crate::shutdown::OpenConnection;

/// How often each shard weighs its share.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(50);
/// Requests a connection has had on its shard before it may move: one
/// that closes after a call or two (a client without a pool that does not
/// say `Connection: close`) is not worth the move.
pub(crate) const SETTLED: u32 = 2;
/// The count of a shard that is not serving (it failed to start).
const RETIRED: usize = usize::MAX;

/// A connection on its way to another shard, still counted as open.
pub(crate) struct Moved {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: SocketAddr,
    /// It came in on `admin.listen`.
    pub(crate) admin: bool,
    pub(crate) open: OpenConnection,
}

/// What the shards share, for the life of the process: per shard its open
/// client connections, its inbox and the waker of the task that empties it.
pub(crate) struct Shards {
    cores: Box<[Core]>,
}

#[repr(align(128))]
struct Core {
    open: AtomicUsize,
    inbox: Sender<Moved>,
    waker: AtomicWaker,
}

impl Shards {
    /// The shared part for `n` shards (it lives as long as the process, so
    /// counting a connection touches no reference count), and each shard's
    /// receiving end.
    pub(crate) fn new(n: usize) -> (&'static Shards, Vec<Receiver<Moved>>) {
        let (cores, inboxes): (Vec<Core>, Vec<Receiver<Moved>>) = (0..n.max(1))
            .map(|_| {
                let (inbox, receiver) = channel();
                (Core { open: AtomicUsize::new(0), inbox, waker: AtomicWaker::new() }, receiver)
            })
            .unzip();
        (Box::leak(Box::new(Shards { cores: cores.into() })), inboxes)
    }

    /// OpenConnection client connections, shard by shard (a retired shard's are
    /// `usize::MAX`).
    pub(crate) fn open(&self) -> impl Iterator<Item = usize> + '_ {
        self.cores.iter().map(|c| c.open.load(Ordering::Relaxed))
    }

    /// Shard `i` serves nothing (it failed to start): no connection moves
    /// to it.
    pub(crate) fn retire(&self, i: usize) {
        self.cores[i].open.store(RETIRED, Ordering::Relaxed);
    }
}

/// How many connections shard `me` should move, and to which shard, for
/// these open counts: once it holds more than the mean plus a slack (counts
/// that differ by a few, as they always do, move nothing), down to the
/// mean, and no more than its part of what the emptiest lacks (the part
/// of each shard that is over, so that they do not all fill it past the
/// mean at once). Retired shards take no part.
pub(crate) fn plan(open: &[usize], me: usize) -> (usize, usize) {
    let live = || open.iter().copied().enumerate().filter(|&(_, c)| c != RETIRED);
    let n = live().count().max(1);
    let mean = live().map(|(_, c)| c).sum::<usize>() / n;
    let slack = 4 + mean / 8;
    let over = live().filter(|&(_, c)| c > mean + slack).count().max(1);
    let (to, fewest) = live().min_by_key(|&(_, c)| c).unwrap_or((me, 0));
    let surplus = open.get(me).copied().filter(|&c| c != RETIRED).unwrap_or(0).saturating_sub(mean);
    if surplus > slack && to != me {
        (surplus.min((mean - fewest).div_ceil(over)), to)
    } else {
        (0, me)
    }
}

/// One shard's side.
pub(crate) struct Handoff {
    shards: &'static Shards,
    me: usize,
    inbox: Receiver<Moved>,
    /// Connections still to move at their next call, and where.
    give: Cell<usize>,
    to: Cell<usize>,
}

impl Handoff {
    pub(crate) fn new(shards: &'static Shards, me: usize, inbox: Receiver<Moved>) -> Handoff {
        Handoff { shards, me, inbox, give: Cell::new(0), to: Cell::new(me) }
    }

    /// OpenConnection client connections, shard by shard.
    pub(crate) fn open(&self) -> impl Iterator<Item = usize> + '_ {
        self.shards.open()
    }

    /// Counts a connection on this shard while the guard lives.
    pub(crate) fn count(&self) -> OnShard {
        let open = &self.shards.cores[self.me].open;
        open.fetch_add(1, Ordering::Relaxed);
        OnShard(open)
    }

    /// Weighs the shards' counts (every `LOOK_EVERY`).
    pub(crate) fn look(&self) {
        let open: Vec<usize> = self.shards.open().collect();
        let (give, to) = plan(&open, self.me);
        self.give.set(give);
        self.to.set(to);
    }

    /// The shard a connection between two calls should move to, if this
    /// one holds more than its share.
    pub(crate) fn wanted(&self) -> Option<usize> {
        let give = self.give.get();
        (give > 0).then(|| {
            self.give.set(give - 1);
            self.to.get()
        })
    }

    /// Sends `client` from `peer` (on `admin.listen`: `admin`; the caller
    /// drops its own stream after) to shard `to`, counted open on the way
    /// with `open`; gives `open` back if it cannot.
    pub(crate) fn send(
        &self,
        to: usize,
        client: &TcpStream,
        peer: SocketAddr,
        admin: bool,
        open: OpenConnection,
    ) -> Result<(), (std::io::Error, OpenConnection)> {
        let fd = match runtime::dup(client.as_raw_fd()) {
            Ok(fd) => fd,
            Err(e) => return Err((e, open)),
        };
        let core = &self.shards.cores[to];
        match core.inbox.send(Moved { fd, peer, admin, open }) {
            Ok(()) => {
                core.waker.wake();
                Ok(())
            }
            Err(back) => Err((std::io::Error::other("that shard is not serving"), back.0.open)),
        }
    }

    /// The next connection another shard moved here.
    pub(crate) async fn next(&self) -> Moved {
        poll_fn(|cx| {
            self.shards.cores[self.me].waker.register(cx.waker());
            match self.inbox.try_recv() {
                Ok(moved) => Poll::Ready(moved),
                Err(_) => Poll::Pending,
            }
        })
        .await
    }
}

/// A connection counted on its shard.
pub(crate) struct OnShard(&'static AtomicUsize);

impl Drop for OnShard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_past_its_share_gives_the_emptiest_what_it_lacks() {
        // All on shard 1: it moves half to shard 0, and shard 0 nothing.
        assert_eq!(plan(&[0, 1024], 1), (512, 0));
        assert_eq!(plan(&[0, 1024], 0), (0, 0));
        // Three shards: shard 2 moves down to the mean, as much as 0 lacks.
        assert_eq!(plan(&[10, 50, 90], 2), (40, 0));
        assert_eq!(plan(&[10, 50, 90], 1), (0, 1));
        // Within the slack (4 + mean / 8), nothing moves.
        assert_eq!(plan(&[60, 68], 1), (0, 1));
        assert_eq!(plan(&[0, 8], 1), (0, 1));
        assert_eq!(plan(&[0, 10], 1), (5, 0));
        assert_eq!(plan(&[], 0), (0, 0));
        assert_eq!(plan(&[7], 0), (0, 0));
        // Two over the mean share what the emptiest lacks.
        assert_eq!(plan(&[0, 0, 200, 200], 2), (50, 0));
        assert_eq!(plan(&[0, 0, 200, 200], 3), (50, 0));
        assert_eq!(plan(&[100, 0, 150, 150], 2), (50, 1));
        // A retired shard neither counts nor takes any.
        assert_eq!(plan(&[RETIRED, 0, 100], 2), (50, 1));
        assert_eq!(plan(&[0, RETIRED, 100], 1), (0, 1));
    }

    #[test]
    fn counts_follow_the_guards() {
        let (shards, mut inboxes) = Shards::new(2);
        let one = Handoff::new(shards, 1, inboxes.pop().unwrap());
        let guards: Vec<OnShard> = (0..20).map(|_| one.count()).collect();
        assert_eq!(shards.open().collect::<Vec<_>>(), [0, 20]);
        one.look();
        assert_eq!((0..12).filter_map(|_| one.wanted()).collect::<Vec<_>>(), [0; 10]);
        drop(guards);
        assert_eq!(shards.open().collect::<Vec<_>>(), [0, 0]);
    }
}
