//! What the cores share of their queues of waiting calls
//! (each core keeps its own in `queue.rs`): counts of waiting calls, a
//! ticket per call in order of arrival, and per core the ticket of its
//! oldest waiting call, a flag and a waker.

use std::future::poll_fn;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;

use atomic_waker::AtomicWaker;

/// What the cores share of their queues.
pub struct Signals {
    /// On a line of their own: they change as calls wait, beside state
    /// every call reads.
    shared: Shared,
    cores: Box<[CoreSignal]>,
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
struct CoreSignal {
    waiting: AtomicUsize,
    /// The ticket of its oldest waiting call (`u64::MAX`: none).
    oldest: AtomicU64,
    /// A slot may have freed since its dispatcher last looked.
    notified: AtomicBool,
    waker: AtomicWaker,
}

impl Default for CoreSignal {
    fn default() -> Self {
        CoreSignal {
            waiting: AtomicUsize::new(0),
            oldest: AtomicU64::new(u64::MAX),
            notified: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }
}

impl Signals {
    pub fn new(cores: usize) -> Signals {
        Signals { shared: Shared::default(), cores: (0..cores.max(1)).map(|_| CoreSignal::default()).collect() }
    }

    /// Calls waiting over all cores.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::Relaxed)
    }

    /// Tells the other cores the ticket of `core`'s oldest waiting call
    /// (`u64::MAX`: none).
    pub fn set_oldest(&self, core: usize, ticket: u64) {
        self.core(core).oldest.store(ticket, Ordering::Relaxed);
    }

    fn core(&self, core: usize) -> &CoreSignal {
        &self.cores[core % self.cores.len()]
    }

    /// A call on `core` starts waiting: its ticket.
    pub fn enter(&self, core: usize) -> u64 {
        self.core(core).waiting.fetch_add(1, Ordering::SeqCst);
        self.shared.waiting.fetch_add(1, Ordering::SeqCst);
        self.shared.tickets.fetch_add(1, Ordering::Relaxed)
    }

    /// A call on `core` stopped waiting.
    pub fn leave(&self, core: usize) {
        self.core(core).waiting.fetch_sub(1, Ordering::SeqCst);
        self.shared.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// A slot may have freed (a call ended): wakes the core with the
    /// oldest waiting call, if any. The fence pairs with the one a
    /// dispatcher passes before it looks: either this sees the waiting
    /// call, or the dispatcher sees the freed slot.
    pub fn slot_freed(&self) {
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
    pub fn notify_all(&self) {
        for (i, c) in self.cores.iter().enumerate() {
            if c.waiting.load(Ordering::Relaxed) != 0 {
                self.notify(i);
            }
        }
    }

    /// Wakes `core`'s dispatcher.
    pub fn notify(&self, core: usize) {
        let c = self.core(core);
        c.notified.store(true, Ordering::Release);
        c.waker.wake();
    }

    /// Resolves once `core` was notified since it last was.
    pub async fn notified(&self, core: usize) {
        let c = self.core(core);
        poll_fn(|cx| {
            if c.notified.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            c.waker.register(cx.waker());
            match c.notified.swap(false, Ordering::AcqRel) {
                true => Poll::Ready(()),
                false => Poll::Pending,
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
        let signals = Signals::new(3);
        let notified = |i: usize| signals.cores[i].notified.swap(false, Ordering::Relaxed);
        signals.slot_freed();
        assert!(!(notified(0) || notified(1) || notified(2)), "no call waits: no one is woken");
        let first = signals.enter(2);
        signals.set_oldest(2, first);
        let second = signals.enter(0);
        signals.set_oldest(0, second);
        assert!(first < second);
        signals.slot_freed();
        assert_eq!((notified(0), notified(1), notified(2)), (false, false, true));
        // Core 2's call was placed (its task has not taken it yet, so it
        // still counts as waiting): core 0's is the oldest now.
        signals.set_oldest(2, u64::MAX);
        signals.slot_freed();
        assert_eq!((notified(0), notified(1), notified(2)), (true, false, false));
        signals.leave(2);
        // A change of workers or capacities wakes every core with calls.
        signals.enter(1);
        signals.notify_all();
        assert_eq!((notified(0), notified(1), notified(2)), (true, true, false));
        assert_eq!(signals.waiting(), 2);
    }
}
