//! Calls waiting for a worker with room. When every worker is at its
//! capacity (`workers_max_inflight`, a worker's `max_inflight`), a call
//! waits in its core's queue, at most `queue.limit` over all cores and
//! `queue.timeout_ms` each, then gets a **503** with `Retry-After`.
//!
//! Each core owns its waiting calls (plain `RefCell` state, never borrowed
//! across an `.await`), in the order they came. What cores share is
//! [`WaitingCalls`](crate::scheduler::WaitingCalls): counts of waiting calls, a ticket per call in order of
//! arrival, and per core the ticket of its oldest waiting call, a flag and
//! a waker. A call that ends (`Scheduler::release`) while calls wait wakes
//! the core holding the oldest one; that core's dispatcher places its
//! waiting calls while workers have room (first, of its first few, one a
//! worker with room holds a warm instance for: pull-based's own idea,
//! applied to the queue; then the oldest), and when it has none left and
//! there may be room still, wakes the core with the next oldest.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{fence, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::error::Error;
use crate::runtime;
use crate::scheduler::Scheduler;
use crate::worker::Lease;

/// The waiting calls looked at for a warm instance, oldest first, each
/// time a slot frees: a younger call for a warm function may go before
/// older ones, but never more than this far ahead.
const WARM_WINDOW: usize = 8;

/// How often a core with waiting calls looks for room without being
/// told: a worker back from ejection, say, frees no slot.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// One core's waiting calls, oldest first.
pub(crate) struct Queue {
    core: usize,
    calls: RefCell<VecDeque<Rc<Waiter>>>,
}

struct Waiter {
    ticket: u64,
    function: Box<str>,
    /// The lease the dispatcher placed it with.
    lease: Cell<Option<Lease>>,
    waker: Cell<Option<Waker>>,
}

/// Takes a waiting call off the queue however its wait ends (placed,
/// timed out, or its task dropped), giving back a lease it was placed
/// with but did not take.
struct Leave<'a> {
    queue: &'a Queue,
    scheduler: &'a Scheduler,
    waiter: Rc<Waiter>,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        let mut calls = self.queue.calls.borrow_mut();
        if let Some(i) = calls.iter().position(|w| Rc::ptr_eq(w, &self.waiter)) {
            calls.remove(i);
        }
        self.queue.publish(self.scheduler, &calls);
        drop(calls);
        self.scheduler.waiting_calls().leave(self.queue.core);
        if let Some(lease) = self.waiter.lease.take() {
            self.scheduler.unselect(&self.waiter.function, lease);
            self.scheduler.waiting_calls().slot_freed();
        }
    }
}

impl Queue {
    pub(crate) fn new(core: usize) -> Queue {
        Queue { core, calls: RefCell::new(VecDeque::new()) }
    }

    /// Tells the other cores the ticket of this core's oldest waiting call.
    fn publish(&self, scheduler: &Scheduler, calls: &VecDeque<Rc<Waiter>>) {
        let oldest = calls.front().map_or(u64::MAX, |w| w.ticket);
        scheduler.waiting_calls().set_oldest(self.core, oldest);
    }

    /// Whether no call waits on this core.
    pub(crate) fn is_empty(&self) -> bool {
        self.calls.borrow().is_empty()
    }

    /// Waits for a worker with room for a call of `function`, at most
    /// `within`; fails at once if `limit` calls wait already. Ends with
    /// `None` as soon as `gone` does (the client left).
    pub(crate) async fn wait(
        &self,
        scheduler: &Scheduler,
        function: &str,
        limit: usize,
        within: Duration,
        gone: impl std::future::Future<Output = ()>,
    ) -> Option<Result<Lease, Error>> {
        let waiting = scheduler.waiting_calls();
        if waiting.count() >= limit {
            return Some(Err(Error::Overloaded(format!("every worker is full and {limit} calls wait already"))));
        }
        let ticket = waiting.enter(self.core);
        let waiter =
            Rc::new(Waiter { ticket, function: function.into(), lease: Cell::new(None), waker: Cell::new(None) });
        {
            let mut calls = self.calls.borrow_mut();
            calls.push_back(Rc::clone(&waiter));
            self.publish(scheduler, &calls);
        }
        let leave = Leave { queue: self, scheduler, waiter };
        // A slot freed before this call was counted found no one waiting:
        // the dispatcher looks once more, in order.
        waiting.notify(self.core);
        let placed = poll_fn(|cx| match leave.waiter.lease.take() {
            Some(lease) => Poll::Ready(lease),
            None => {
                leave.waiter.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        });
        let placed = async { Some(runtime::timeout(within, placed).await) };
        let left = async {
            gone.await;
            None
        };
        let placed = futures_lite::future::or(placed, left).await?;
        Some(match placed {
            Ok(lease) => Ok(lease),
            Err(_) => leave.waiter.lease.take().ok_or_else(|| {
                if scheduler.workers().is_empty() {
                    Error::NoWorkers
                } else {
                    Error::Overloaded(format!("every worker stayed full for {} ms", within.as_millis()))
                }
            }),
        })
    }

    /// Places waiting calls whenever a slot may have freed, for the life of
    /// the shard.
    pub(crate) async fn dispatch_forever(&self, scheduler: &Scheduler) {
        loop {
            let notified = scheduler.waiting_calls().notified(self.core);
            if self.is_empty() {
                notified.await;
            } else {
                let _ = runtime::timeout(LOOK_EVERY, notified).await;
            }
            fence(Ordering::SeqCst);
            if self.dispatch(scheduler) {
                // A slot this core held for a moment may have turned
                // another core's call away meanwhile, or there may be room
                // left for calls waiting on another core.
                scheduler.waiting_calls().slot_freed();
            }
        }
    }

    /// Places waiting calls while workers have room: a call of the first
    /// `WARM_WINDOW` that can take a warm instance first, then the oldest.
    /// Returns whether another core should look: this one gave back a slot
    /// it held for a moment, or has no call left (placed, or gone while the
    /// wake-up was on its way) and there may be room.
    fn dispatch(&self, scheduler: &Scheduler) -> bool {
        let mut calls = self.calls.borrow_mut();
        let look_on = self.place_while_room(scheduler, &mut calls);
        self.publish(scheduler, &calls);
        look_on || calls.is_empty()
    }

    /// `dispatch`'s work: whether it gave back a slot.
    fn place_while_room(&self, scheduler: &Scheduler, calls: &mut VecDeque<Rc<Waiter>>) -> bool {
        let mut gave_back = false;
        if scheduler.tracks_warm() {
            let mut i = 0;
            while i < calls.len().min(WARM_WINDOW) {
                let Some(lease) = scheduler.try_place(&calls[i].function) else { return gave_back };
                if lease.hint() > 0 {
                    let waiter = calls.remove(i).expect("in range");
                    place(&waiter, lease);
                } else {
                    // No warm instance for it: it waits its turn.
                    scheduler.unselect(&calls[i].function, lease);
                    gave_back = true;
                    i += 1;
                }
            }
        }
        while let Some(waiter) = calls.front() {
            let Some(lease) = scheduler.try_place(&waiter.function) else { return gave_back };
            let waiter = calls.pop_front().expect("a front");
            place(&waiter, lease);
        }
        gave_back
    }
}

fn place(waiter: &Waiter, lease: Lease) {
    waiter.lease.set(Some(lease));
    if let Some(waker) = waiter.waker.take() {
        waker.wake();
    }
}
