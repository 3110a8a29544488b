//! The epoch pin a shard holds while it serves, so that the idle-instance
//! table's own pins nest in it and cost no memory fence, and the repin
//! that lets queues dropped meanwhile be freed.

use crossbeam_epoch::{self as epoch, Guard};

thread_local! {
    static HELD: std::cell::RefCell<Option<Guard>> = const { std::cell::RefCell::new(None) };
}

/// Keeps this thread pinned to the current epoch, so that the table's own
/// pins nest in it and cost no memory fence: for threads that use the table
/// on every request (the shards). Freed queues then wait until each such
/// thread calls [`repin_epoch`] (every second, say).
pub fn hold_epoch() {
    HELD.with(|held| *held.borrow_mut() = Some(epoch::pin()));
}

/// Flushes per call: each frees a few hundred queues whose readers are gone.
const FLUSHES: usize = 8;

/// Lets the epoch move on past this thread's held pin (see [`hold_epoch`])
/// and frees what no reader can hold any more. Nested pins never advance
/// the epoch (crossbeam does that on an outermost pin or a flush), so this
/// is what frees the queues a held thread drops.
pub fn repin_epoch() {
    HELD.with(|held| {
        if let Some(guard) = held.borrow_mut().as_mut() {
            guard.repin();
            for _ in 0..FLUSHES {
                guard.flush();
            }
        }
    });
}
