//! The calls waiting for a worker with room, as the cores share them
//! (each core keeps its own in `queue.rs`): counts of waiting calls, a
//! ticket per call in order of arrival, and per core the ticket of its
//! oldest waiting call, a flag and a waker.

use std::future::poll_fn;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;

/// What the cores share of their queues of waiting calls.
pub(crate) struct WaitingCalls {
    /// On a line of their own: they change as calls wait, beside state
    /// every call reads.
    shared: Shared,
    cores: Box<[CoreWaiting]>,
}

#[repr(align(128))]
#[derive(Default)]
struct Shared {
    /// Calls waiting over all cores.
    waiting: AtomicUsize,
    /// The next waiting call's ticket: tickets give the order of arrival.
    tickets: AtomicU64,
}

#[repr(align(128))]
struct CoreWaiting {
    waiting: AtomicUsize,
    /// The ticket of its oldest waiting call (`u64::MAX`: none).
    oldest: AtomicU64,
    /// A slot may have freed since its dispatcher last looked.
    notified: AtomicBool,
    waker: AtomicWaker,
}

impl Default for CoreWaiting {
    fn default() -> Self {
        CoreWaiting {
            waiting: AtomicUsize::new(0),
            oldest: AtomicU64::new(u64::MAX),
            notified: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }
}

impl WaitingCalls {
    pub(crate) fn new(cores: usize) -> WaitingCalls {
        WaitingCalls { shared: Shared::default(), cores: (0..cores.max(1)).map(|_| CoreWaiting::default()).collect() }
    }

    /// Calls waiting over all cores.
    pub(crate) fn count(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// Tells the other cores the ticket of `core`'s oldest waiting call
    /// (`u64::MAX`: none).
    pub(crate) fn set_oldest(&self, core: usize, ticket: u64) {
        self.core(core).oldest.store(ticket, Ordering::Relaxed);
    }

    fn core(&self, core: usize) -> &CoreWaiting {
        &self.cores[core % self.cores.len()]
    }

    /// A call on `core` starts waiting: its ticket.
    pub(crate) fn enter(&self, core: usize) -> u64 {
        self.core(core).waiting.fetch_add(1, Ordering::SeqCst);
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        self.shared.tickets.fetch_add(1, Ordering::Relaxed)
    }

    /// A call on `core` stopped waiting.
    pub(crate) fn leave(&self, core: usize) {
        self.core(core).waiting.fetch_sub(1, Ordering::SeqCst);
        self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// A slot may have freed (a call ended): wakes the core with the
    /// oldest waiting call, if any. The fence pairs with the one a
    /// dispatcher passes before it looks: either this sees the waiting
    /// call, or the dispatcher sees the freed slot.
    pub(crate) fn slot_freed(&self) {
        fence(Ordering::SeqCst);
        if self.shared.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        // A core with calls placed but not yet on their way, or with a call
        // that has not published its ticket yet (it then wakes its own
        // core), shows none.
        let oldest = self.cores.iter().map(|c| c.oldest.load(Ordering::Relaxed)).enumerate();
        if let Some((i, _)) = oldest.filter(|&(_, ticket)| ticket != u64::MAX).min_by_key(|&(_, ticket)| ticket) {
            self.notify(i);
        }
    }

    /// Wakes every core's dispatcher that has waiting calls (workers came,
    /// or got room).
    pub(crate) fn notify_all(&self) {
        for (i, c) in self.cores.iter().enumerate() {
            if c.waiting.load(Ordering::Relaxed) != 0 {
                self.notify(i);
            }
        }
    }

    /// Wakes `core`'s dispatcher.
    pub(crate) fn notify(&self, core: usize) {
        let c = self.core(core);
        c.notified.store(true, Ordering::Release);
        c.waker.wake();
    }

    /// Resolves once `core` was notified since it last was.
    pub(crate) async fn notified(&self, core: usize) {
        let c = self.core(core);
        poll_fn(|cx| {
            if c.notified.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            c.waker.register(cx.waker());
            if c.notified.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_slot_wakes_the_core_with_the_oldest_waiting_call_only() {
        let waiting = WaitingCalls::new(3);
        let notified = |i: usize| waiting.cores[i].notified.swap(false, Ordering::Relaxed);
        waiting.slot_freed();
        assert!(!(notified(0) || notified(1) || notified(2)), "no call waits: no one is woken");
        let first = waiting.enter(2);
        waiting.set_oldest(2, first);
        let second = waiting.enter(0);
        waiting.set_oldest(0, second);
        assert!(first < second);
        waiting.slot_freed();
        assert_eq!((notified(0), notified(1), notified(2)), (false, false, true));
        // Core 2's call was placed (its task has not taken it yet, so it
        // still counts as waiting): core 0's is the oldest now.
        waiting.set_oldest(2, u64::MAX);
        waiting.slot_freed();
        assert_eq!((notified(0), notified(1), notified(2)), (true, false, false));
        waiting.leave(2);
        // A change of workers or capacities wakes every core with calls.
        waiting.enter(1);
        waiting.notify_all();
        assert_eq!((notified(0), notified(1), notified(2)), (true, true, false));
        assert_eq!(waiting.count(), 2);
    }
}
