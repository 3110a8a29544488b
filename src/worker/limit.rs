//! A worker's adaptive limit: how many calls hiku lets it run at once,
//! found from what its calls show, with no knowledge of its cores or its
//! memory (`adaptive` in the config).
//!
//! The idea is TCP Vegas's, per worker. Each call's duration is set against
//! its function's baseline (the shortest the function has taken lately, on
//! any worker: [`crate::scheduler::Baselines`]). Over a window of calls, the
//! ratio of the two sums is the worker's *slowdown*; its lowest smoothed
//! value seen lately is the slowdown with nothing queued (cold starts and
//! all). Little's law gives the calls the worker held on average (the
//! durations' sum over the window's span), and with the two slowdowns, how
//! many of those did nothing but wait: the **excess**,
//! `held * (1 - lowest / now)`. A worker past its cores shares them, so
//! every call it takes on is excess; a worker short of memory evicts the
//! sandboxes it keeps warm, so its calls start cold and wait for memory,
//! and the excess grows faster still, well before any call fails.
//!
//! So, window by window: above `high` calls of excess the limit comes down
//! by the calls over it (in a tier, by this instance's part of that, see
//! [`calls_to_cut`]); below `low`, if the limit held calls back (a
//! quarter of the window's calls found the worker at it), it goes up by
//! one, but not back to a limit that showed too much excess (or failures,
//! below) until 32 binding windows passed without any: near the edge of a
//! worker's memory each try past it costs evicted sandboxes. Calls past
//! the limit wait in hiku's queue, where a freed slot goes to a call its
//! worker holds warm; a worker that runs them all at once instead shares
//! its cores among them and evicts for memory.
//!
//! Failed calls (the worker's 502, 503 or 504, or a connection that broke
//! off) cut the limit to 0.7 of itself at once, when a few came since the
//! last cut (two, and one more per 16 calls of a window), at most once a
//! round trip (the last window's mean call): one burst of failures cuts
//! once, failures that go on cut again. An answer that the worker is
//! overloaded (429, 503 with `Retry-After`) cuts it to one less than the
//! calls the worker held. Either way the limit then stays below where the
//! trouble came for 32 binding windows without any, before it tries one
//! more: a worker that fails calls past some number at once costs a few
//! calls, not a few every window. The limit stays within `min` and the
//! configured capacity.
//!
//! Holding a call back costs hiku a little work (the queue, a wake-up),
//! which is nothing beside a call of a function but not beside one that
//! takes a few microseconds. So the limit only holds calls back while the
//! worker's calls take at least `min_call_ms` at best (their mean
//! baseline, window by window), or fail; below, it is learnt all the same
//! but the worker gets every call, as it would without one. A new limit
//! holds from the start, at `initial`, until its first window shows
//! otherwise (or a call ends in less than `min_call_ms` before then): an
//! instance that starts, or a worker added, under full load does not
//! flood the worker while its functions' baselines are learnt. In a tier,
//! a starting instance takes its peer's limits instead ([`Learnt`]).
//!
//! Lock-free: every call adds to the worker's window with three relaxed
//! atomic additions (while the limit holds nothing back, one call in
//! [`SAMPLED`] does, for as many); the call that completes a window
//! computes the next limit and starts the next window. A worker's limit moves a few times a
//! second at most.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Calls in a window: enough for its sums to mean something, and more
/// when the limit is higher (a window lasts about two round trips).
fn window_calls(limit: u32) -> u32 {
    16 + 2 * limit.min(1024)
}

/// Weight of a window in the smoothed slowdown (1/4).
const SMOOTHING: f64 = 0.25;

/// The lowest slowdown rises by this share each window that held no calls
/// back, so that one seen long ago under other work gives way. (Under
/// calls held back, nothing shows it lower: it stays.)
const LOWEST_CREEP: f64 = 1.0 / 256.0;

/// Failures cut the limit to this share of itself.
const FAILURE_CUT: f64 = 0.7;

/// Failures that cut the limit: a few, more where windows are longer, so
/// that a function that fails on its own now and then does not starve its
/// worker.
fn failures_that_cut(limit: u32) -> u32 {
    2 + window_calls(limit) / 16
}

/// A limit that held back at least this share of a window's calls was
/// binding: only then is it raised.
const BINDING_SHARE: u32 = 4;

/// After too much excess, failures or an overloaded answer, the limit
/// stays below where they came until this many binding windows passed
/// without any; then it may try one more.
const PATIENCE: u32 = 32;

/// The adaptive limit's parameters (`adaptive` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// The limit a worker starts with, until its calls show another: a
    /// jump in load meets all of it at once, before any window can. The
    /// default, 6, is what the smallest workers measured (6 GB, 10 sandbox
    /// slots) take at once without their evictor destroying a running
    /// sandbox; at 8, a few calls failed when the load doubled.
    pub(crate) initial: u32,
    /// The lowest limit: a worker always takes this many calls.
    pub(crate) min: u32,
    /// Excess calls below which a binding limit goes up, and above which it
    /// comes down.
    pub(crate) low: f64,
    pub(crate) high: f64,
    /// The limit holds calls back only while the worker's calls take at
    /// least this long at best (their mean baseline, µs).
    pub(crate) min_call_us: u64,
    /// The instances of a tier that share each worker (`cluster.size`),
    /// each with a limit of its own; `low` and `high` are already this
    /// instance's part.
    pub(crate) instances: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { initial: 6, min: 1, low: 1.0, high: 2.0, min_call_us: 1000, instances: 1 }
    }
}

/// What a window of calls on a worker showed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Window {
    /// Calls that ran to an answer, and those of them that found the
    /// worker at its limit when they ended.
    pub(crate) calls: u32,
    pub(crate) at_limit: u32,
    /// Their durations, and their functions' baselines (µs).
    pub(crate) took_us: u64,
    pub(crate) base_us: u64,
    /// From the window's start to its last call's end (µs).
    pub(crate) span_us: u64,
}

impl Window {
    /// The calls the worker held on average (Little's law).
    pub(crate) fn held(&self) -> f64 {
        self.took_us as f64 / self.span_us.max(1) as f64
    }

    /// How much longer than their baselines the calls took.
    pub(crate) fn slowdown(&self) -> f64 {
        self.took_us as f64 / self.base_us.max(1) as f64
    }
}

/// Why a limit moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Change {
    /// It held calls back and the worker had room.
    Raised,
    /// The worker held this many calls that only waited.
    Excess(f64),
    /// A call on it failed.
    Failed,
    /// It said it was overloaded.
    Overloaded,
}

/// The calls a limit comes down by for `over` calls of excess over
/// `high`: all of them, rounded up. In a tier of `instances`, every
/// instance's limit on a worker sees the same slowdown at once, and each
/// holds its part of the excess: together they would cut `instances` times
/// what one hiku cuts, and a limit of two or three calls would halve. So
/// each takes its part of the whole worker's cut, rounded up or down at
/// random (`draw`, in [0, 1)) so that together they cut about what one hiku
/// would, and seldom all at once.
fn calls_to_cut(over: f64, instances: u32, draw: f64) -> u32 {
    let k = f64::from(instances.max(1));
    let part = (over * k).ceil() / k;
    (part.floor() + if draw < part.fract() { 1.0 } else { 0.0 }) as u32
}

/// A number in [0, 1) drawn from a window's sums: windows differ from
/// instance to instance, so their draws do too (splitmix64's mix).
fn draw(window: &Window) -> f64 {
    let mut z = window.took_us ^ window.span_us.rotate_left(32) ^ u64::from(window.calls);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
}

/// The controller's memory between windows: a pure state machine, so that
/// every rule is tested on made-up windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Controller {
    pub(crate) limit: u32,
    /// The slowdown, smoothed over windows; its lowest value lately (0:
    /// none seen yet).
    pub(crate) smoothed: f64,
    pub(crate) lowest: f64,
    /// The most it goes up to: one below where it last saw too much excess,
    /// failures or an overloaded answer, `u32::MAX` if it never did; and
    /// the binding windows without trouble since.
    pub(crate) ceiling: u32,
    pub(crate) calm: u32,
}

impl Controller {
    pub(crate) fn new(tuning: &Tuning, most: u32) -> Controller {
        let limit = tuning.initial.clamp(tuning.min, most.max(tuning.min));
        Controller { limit, smoothed: 0.0, lowest: 0.0, ceiling: u32::MAX, calm: 0 }
    }

    /// The calls of excess `window` shows, as this controller judges it.
    pub(crate) fn excess(&self, window: &Window) -> f64 {
        let now = window.slowdown();
        if self.lowest > 0.0 && now > self.lowest {
            window.held() * (1.0 - self.lowest / now)
        } else {
            0.0
        }
    }

    /// The next limit after `window`, at most `most` (the configured
    /// capacity); `Some` if it moved.
    pub(crate) fn window(&mut self, window: &Window, tuning: &Tuning, most: u32) -> Option<Change> {
        if window.calls == 0 || window.base_us == 0 {
            return None;
        }
        let slowdown = window.slowdown();
        self.smoothed = match self.smoothed {
            0.0 => slowdown,
            s => s + SMOOTHING * (slowdown - s),
        };
        let binding = window.at_limit * BINDING_SHARE >= window.calls;
        let creep = if binding { 1.0 } else { 1.0 + LOWEST_CREEP };
        self.lowest = match self.lowest {
            0.0 => self.smoothed,
            l => self.smoothed.min(l * creep),
        };
        let excess = self.excess(window);
        if binding && self.ceiling != u32::MAX {
            self.calm += 1;
            if self.calm >= PATIENCE {
                (self.ceiling, self.calm) = (self.ceiling.saturating_add(1), 0);
            }
        }
        let cut =
            if excess > tuning.high { calls_to_cut(excess - tuning.high, tuning.instances, draw(window)) } else { 0 };
        let next = if cut > 0 {
            // Down by the calls over `high`; and not back up to where the
            // excess was for a while.
            self.trouble_at(self.limit);
            self.limit.saturating_sub(cut)
        } else if excess < tuning.low && binding && self.limit < self.ceiling {
            self.limit.saturating_add(1)
        } else {
            self.limit
        };
        let change = if next > self.limit { Change::Raised } else { Change::Excess(excess) };
        self.set(next, tuning, most).then_some(change)
    }

    /// Calls failed on the worker.
    pub(crate) fn failed(&mut self, tuning: &Tuning, most: u32) -> Option<Change> {
        self.trouble_at(self.limit);
        let next = (self.limit as f64 * FAILURE_CUT).floor() as u32;
        self.set(next, tuning, most).then_some(Change::Failed)
    }

    /// The worker said it was overloaded, holding `in_flight` calls.
    pub(crate) fn overloaded(&mut self, in_flight: usize, tuning: &Tuning, most: u32) -> Option<Change> {
        let held = in_flight.min(u32::MAX as usize) as u32;
        self.trouble_at(held);
        (held <= self.limit && self.set(held.saturating_sub(1), tuning, most)).then_some(Change::Overloaded)
    }

    /// Trouble came with `held` calls: the limit stays below for a while.
    fn trouble_at(&mut self, held: u32) {
        (self.ceiling, self.calm) = (held.saturating_sub(1).min(self.ceiling), 0);
    }

    /// Sets the limit within `min` and `most`; whether it changed.
    fn set(&mut self, limit: u32, tuning: &Tuning, most: u32) -> bool {
        let limit = limit.clamp(tuning.min, most.max(tuning.min));
        let changed = limit != self.limit;
        self.limit = limit;
        changed
    }
}

/// One worker's limit, shared by every core: its tuning, the window's
/// sums, and the controller, which only the call that completes a window
/// (or the first failure of one) updates.
#[derive(Debug)]
#[repr(align(128))]
pub(crate) struct Limit {
    took_us: AtomicU64,
    base_us: AtomicU64,
    /// Calls and at-limit calls, 32 bits each.
    counts: AtomicU64,
    /// When the window started (µs since the limit was made).
    started_us: AtomicU64,
    limit: AtomicU32,
    smoothed: AtomicU64,
    lowest: AtomicU64,
    ceiling: AtomicU32,
    calm: AtomicU32,
    /// Failures since the limit was last cut for them, when that was (0:
    /// never), and the last window's mean call (µs).
    failures: AtomicU32,
    last_cut_us: AtomicU64,
    round_trip_us: AtomicU64,
    /// A core is updating the controller: others leave it be.
    busy: AtomicBool,
    /// Whether there is an adaptive limit at all, and its tuning.
    on: AtomicBool,
    initial: AtomicU32,
    min: AtomicU32,
    low: AtomicU64,
    high: AtomicU64,
    min_call_us: AtomicU64,
    instances: AtomicU32,
    /// The last window's calls took long enough for the limit to hold
    /// calls back.
    holds: AtomicBool,
    epoch: std::time::Instant,
}

/// While a limit holds nothing back, one answer in this many is enough to
/// follow the worker: hiku's part of a call of a few microseconds stays
/// what it was. Each counts for as many; a window is as many times longer.
pub(crate) const SAMPLED: u32 = 16;

const CALL: u64 = 1;
const AT_LIMIT: u64 = 1 << 32;
const FIELD: u64 = (1 << 32) - 1;

/// What a limit has learnt of its worker, as a peer in a tier shows it in
/// `/admin/instances`: a starting instance takes it rather than start from
/// `initial` knowing nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Learnt {
    pub(crate) limit: u32,
    pub(crate) holds: bool,
    /// The lowest slowdown seen lately and the smoothed one (0: none).
    pub(crate) lowest: f64,
    pub(crate) smoothed: f64,
}

/// What a call's end tells its worker's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sample {
    /// The worker answered: `took_us` after the call was sent, its
    /// function's baseline being `base_us` (0: not known yet), while the
    /// worker was at its limit or not; standing for `weight` answers
    /// alike (1, or [`SAMPLED`] for one answer of that many).
    Answered { took_us: u64, base_us: u64, at_limit: bool, weight: u32 },
    /// The call failed on the worker (not the client's doing).
    Failed,
    /// The worker said it was overloaded.
    Overloaded { in_flight: usize },
}

impl Default for Limit {
    fn default() -> Self {
        let zero = || AtomicU64::new(0f64.to_bits());
        Limit {
            took_us: AtomicU64::new(0),
            base_us: AtomicU64::new(0),
            counts: AtomicU64::new(0),
            started_us: AtomicU64::new(0),
            limit: AtomicU32::new(u32::MAX),
            smoothed: zero(),
            lowest: zero(),
            ceiling: AtomicU32::new(u32::MAX),
            calm: AtomicU32::new(0),
            failures: AtomicU32::new(0),
            last_cut_us: AtomicU64::new(0),
            round_trip_us: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            on: AtomicBool::new(false),
            initial: AtomicU32::new(0),
            min: AtomicU32::new(0),
            low: zero(),
            high: zero(),
            min_call_us: AtomicU64::new(0),
            instances: AtomicU32::new(1),
            holds: AtomicBool::new(false),
            epoch: std::time::Instant::now(),
        }
    }
}

impl Limit {
    /// Whether the worker has an adaptive limit.
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// The current limit (`u32::MAX` while off).
    pub(crate) fn get(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Whether the limit holds calls back: the worker's calls take long
    /// enough (`min_call_ms`).
    pub(crate) fn holds(&self) -> bool {
        self.holds.load(Ordering::Relaxed)
    }

    /// The most calls the worker gets at once by this limit (`u32::MAX`:
    /// off, or calls too short to hold back).
    pub(crate) fn bound(&self) -> u32 {
        if self.is_on() && self.holds() {
            self.get()
        } else {
            u32::MAX
        }
    }

    /// The lowest slowdown seen lately and the smoothed one (0: none yet).
    pub(crate) fn slowdowns(&self) -> (f64, f64) {
        let load = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        (load(&self.lowest), load(&self.smoothed))
    }

    fn tuning(&self) -> Tuning {
        let load = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        Tuning {
            initial: self.initial.load(Ordering::Relaxed),
            min: self.min.load(Ordering::Relaxed),
            low: load(&self.low),
            high: load(&self.high),
            min_call_us: self.min_call_us.load(Ordering::Relaxed),
            instances: self.instances.load(Ordering::Relaxed),
        }
    }

    /// Turns the limit on with `tuning` (at most `most`), or off. A new
    /// tuning starts again from its `initial`, with a fresh window; what
    /// was learnt of slowdowns stays.
    pub(crate) fn set_tuning(&self, tuning: Option<&Tuning>, most: u32) {
        let Some(t) = tuning else {
            self.on.store(false, Ordering::Relaxed);
            self.limit.store(u32::MAX, Ordering::Relaxed);
            return;
        };
        let was_on = self.is_on();
        if was_on && self.tuning() == *t {
            return;
        }
        self.initial.store(t.initial, Ordering::Relaxed);
        self.min.store(t.min, Ordering::Relaxed);
        self.low.store(t.low.to_bits(), Ordering::Relaxed);
        self.high.store(t.high.to_bits(), Ordering::Relaxed);
        self.min_call_us.store(t.min_call_us, Ordering::Relaxed);
        self.instances.store(t.instances, Ordering::Relaxed);
        self.update(|c| {
            let fresh = Controller::new(t, most);
            (c.limit, c.ceiling, c.calm) = (fresh.limit, fresh.ceiling, fresh.calm);
            None
        });
        self.close_window();
        if !was_on {
            // Until a window shows the calls short, it holds.
            self.holds.store(true, Ordering::Relaxed);
        }
        self.on.store(true, Ordering::Relaxed);
    }

    /// Takes what a peer's limit on the same worker learnt (its limit
    /// within `min` and `most`, whether it holds, its slowdowns), if this
    /// one is on.
    pub(crate) fn adopt(&self, learnt: &Learnt, most: u32) {
        if !self.is_on() {
            return;
        }
        self.update(|c| {
            c.set(learnt.limit, &self.tuning(), most);
            (c.lowest, c.smoothed) = (learnt.lowest.max(0.0), learnt.smoothed.max(0.0));
            None
        });
        self.holds.store(learnt.holds, Ordering::Relaxed);
    }

    /// Counts a call's end; the limit before and after, and why, if it
    /// moved. `most` is the worker's configured capacity.
    pub(crate) fn record(&self, sample: Sample, most: u32) -> Option<(u32, u32, Change)> {
        if !self.is_on() {
            return None;
        }
        match sample {
            Sample::Answered { took_us, base_us: 0, .. } => {
                // Before its first window, a call this short shows that
                // holding calls back would cost more than it saves.
                let first = self.round_trip_us.load(Ordering::Relaxed) == 0;
                if first && took_us < self.min_call_us.load(Ordering::Relaxed) {
                    self.holds.store(false, Ordering::Relaxed);
                }
                None
            }
            Sample::Answered { took_us, base_us, at_limit, weight } => {
                let w = u64::from(weight.max(1));
                self.took_us.fetch_add(took_us * w, Ordering::Relaxed);
                self.base_us.fetch_add(base_us * w, Ordering::Relaxed);
                let add = (CALL + if at_limit { AT_LIMIT } else { 0 }) * w;
                let counts = self.counts.fetch_add(add, Ordering::Relaxed) + add;
                if ((counts & FIELD) as u32) < self.window_of(self.get()) {
                    return None;
                }
                self.update(|c| {
                    // Another core may have closed it a moment ago.
                    let calls = (self.counts.load(Ordering::Relaxed) & FIELD) as u32;
                    if calls < self.window_of(c.limit) {
                        return None;
                    }
                    let window = self.close_window();
                    c.window(&window, &self.tuning(), most)
                })
            }
            Sample::Failed => {
                let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let (now, last_cut) = (self.now_us().max(1), self.last_cut_us.load(Ordering::Relaxed));
                let soon = last_cut != 0 && now - last_cut.min(now) < self.round_trip_us.load(Ordering::Relaxed);
                if failures < failures_that_cut(self.get()) || soon {
                    return None;
                }
                // A worker whose calls fail is held back, however short they are.
                self.holds.store(true, Ordering::Relaxed);
                self.update(|c| {
                    self.failures.store(0, Ordering::Relaxed);
                    self.last_cut_us.store(now, Ordering::Relaxed);
                    c.failed(&self.tuning(), most)
                })
            }
            Sample::Overloaded { in_flight } => {
                self.holds.store(true, Ordering::Relaxed);
                self.update(|c| c.overloaded(in_flight, &self.tuning(), most))
            }
        }
    }

    /// The answers a window at `limit` counts: as many again for each one
    /// sampled while the limit holds nothing back.
    fn window_of(&self, limit: u32) -> u32 {
        if self.holds() {
            window_calls(limit)
        } else {
            window_calls(limit) * SAMPLED
        }
    }

    /// Runs `step` on the controller if no other core is at it; stores what
    /// it leaves.
    fn update(&self, step: impl FnOnce(&mut Controller) -> Option<Change>) -> Option<(u32, u32, Change)> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        let (lowest, smoothed) = self.slowdowns();
        let (ceiling, calm) = (self.ceiling.load(Ordering::Relaxed), self.calm.load(Ordering::Relaxed));
        let mut c = Controller { limit: self.get(), smoothed, lowest, ceiling, calm };
        let before = c.limit;
        let change = step(&mut c);
        self.smoothed.store(c.smoothed.to_bits(), Ordering::Relaxed);
        self.lowest.store(c.lowest.to_bits(), Ordering::Relaxed);
        self.ceiling.store(c.ceiling, Ordering::Relaxed);
        self.calm.store(c.calm, Ordering::Relaxed);
        self.limit.store(c.limit, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        change.map(|why| (before, c.limit, why))
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Ends the window: its sums, zeroed for the next.
    fn close_window(&self) -> Window {
        let now = self.now_us();
        let counts = self.counts.swap(0, Ordering::Relaxed);
        let window = Window {
            calls: (counts & FIELD) as u32,
            at_limit: (counts >> 32) as u32,
            took_us: self.took_us.swap(0, Ordering::Relaxed),
            base_us: self.base_us.swap(0, Ordering::Relaxed),
            span_us: now.saturating_sub(self.started_us.swap(now, Ordering::Relaxed)),
        };
        if window.calls > 0 {
            self.round_trip_us.store(window.took_us / u64::from(window.calls), Ordering::Relaxed);
            let long = window.base_us / u64::from(window.calls) >= self.min_call_us.load(Ordering::Relaxed);
            self.holds.store(long, Ordering::Relaxed);
        }
        window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOST: u32 = u32::MAX;

    /// A tuning starting at 8 (the windows below are counted for it).
    const EIGHT: Tuning = Tuning { initial: 8, min: 1, low: 1.0, high: 2.0, min_call_us: 1000, instances: 1 };

    /// A window of `calls` calls, `at_limit` of them at the limit, holding
    /// `held` calls on average at `slowdown` (1000 µs baselines each).
    fn window(calls: u32, at_limit: u32, held: f64, slowdown: f64) -> Window {
        let base_us = 1000 * calls as u64;
        let took_us = (base_us as f64 * slowdown) as u64;
        Window { calls, at_limit, took_us, base_us, span_us: (took_us as f64 / held) as u64 }
    }

    fn controller(limit: u32, lowest: f64) -> Controller {
        Controller { limit, smoothed: lowest, lowest, ceiling: u32::MAX, calm: 0 }
    }

    #[test]
    fn the_excess_is_what_the_worker_held_beyond_its_lowest_slowdown() {
        let c = controller(8, 2.0);
        // Six calls held at three times their baselines, two being the
        // least: a third of them only waited.
        assert!((c.excess(&window(30, 0, 6.0, 3.0)) - 2.0).abs() < 1e-9);
        assert_eq!(c.excess(&window(30, 0, 6.0, 1.5)), 0.0, "faster than the lowest: none");
        assert_eq!(controller(8, 0.0).excess(&window(30, 0, 6.0, 3.0)), 0.0, "nothing known yet");
    }

    #[test]
    fn it_rises_by_one_only_while_the_limit_holds_calls_back_and_the_worker_keeps_up() {
        let tuning = Tuning::default();
        let mut c = controller(6, 2.0);
        // At the lowest slowdown: no excess; a quarter of the calls at the limit.
        assert_eq!(c.window(&window(28, 7, 6.0, 2.0), &tuning, MOST), Some(Change::Raised));
        assert_eq!(c.limit, 7);
        // Not binding: it stays.
        assert_eq!(c.window(&window(30, 6, 6.0, 2.0), &tuning, MOST), None);
        // An excess between low and high: it stays too.
        let mut c = controller(6, 2.0);
        assert_eq!(c.window(&window(28, 28, 6.0, 2.8), &tuning, MOST), None, "{c:?}");
        assert_eq!(c.limit, 6);
    }

    #[test]
    fn it_comes_down_by_the_calls_of_excess_over_high() {
        let tuning = Tuning::default();
        let mut c = controller(10, 2.0);
        // Ten calls held at five times the baseline: six of excess, four over high.
        let change = c.window(&window(36, 36, 10.0, 5.0), &tuning, MOST);
        assert!(matches!(change, Some(Change::Excess(e)) if (e - 6.0).abs() < 1e-9), "{change:?}");
        // The smoothed slowdown is a quarter of the way to 5: 2.75; the
        // lowest stays (the limit held calls back).
        assert_eq!((c.limit, c.smoothed, c.lowest), (10 - 4, 2.75, 2.0));
        // Nor back up to 10 for a while: one below where the excess was.
        assert_eq!((c.ceiling, c.calm), (9, 0));
        // A window that held none back: the lowest creeps up.
        c.window(&window(36, 0, 3.0, 2.5), &tuning, MOST);
        assert_eq!(c.lowest, 2.0 * (1.0 + LOWEST_CREEP));
    }

    #[test]
    fn it_never_goes_below_min_nor_above_the_configured_capacity() {
        let tuning = Tuning { min: 2, ..Tuning::default() };
        let mut c = controller(3, 1.0);
        c.window(&window(30, 30, 10.0, 20.0), &tuning, MOST);
        assert_eq!(c.limit, 2, "never starved to 0");
        assert_eq!(c.failed(&tuning, MOST), None);
        assert_eq!(c.limit, 2);
        let mut c = controller(5, 2.0);
        assert_eq!(c.window(&window(26, 26, 5.0, 2.0), &tuning, 5), None, "at the configured capacity");
        assert_eq!(Controller::new(&Tuning { initial: 8, ..tuning }, 4).limit, 4);
        assert_eq!(Controller::new(&Tuning { initial: 8, min: 12, ..tuning }, 4).limit, 12, "min wins");
    }

    #[test]
    fn failures_cut_to_seven_tenths_and_an_overloaded_worker_to_one_less_than_it_held() {
        let tuning = Tuning::default();
        let mut c = controller(20, 2.0);
        assert_eq!(c.failed(&tuning, MOST), Some(Change::Failed));
        assert_eq!(c.limit, 14);
        assert_eq!(c.overloaded(6, &tuning, MOST), Some(Change::Overloaded));
        assert_eq!((c.limit, c.ceiling), (5, 5), "one less than it held");
        assert_eq!(c.overloaded(9, &tuning, MOST), None, "never up");
        // Binding windows with no excess: it stays at the ceiling for a while.
        for _ in 0..PATIENCE - 1 {
            assert_eq!(c.window(&window(26, 26, 5.0, 2.0), &tuning, MOST), None);
        }
        assert_eq!(c.window(&window(26, 26, 5.0, 2.0), &tuning, MOST), Some(Change::Raised));
        assert_eq!((c.limit, c.ceiling), (6, 6));
    }

    #[test]
    fn it_backs_off_on_failures_grows_back_when_they_stop_and_tries_past_them_rarely() {
        // A worker that fails calls past 10 at once and shows no slowdown
        // below: failures cut the limit, binding windows grow it back one
        // at a time to just below where they came, and it stays there for
        // 32 windows before it tries one more. It never reaches 0.
        let tuning = Tuning { initial: 12, ..Tuning::default() };
        let mut c = Controller::new(&tuning, MOST);
        c.window(&window(32, 0, 4.0, 2.0), &tuning, MOST);
        let (mut limits, mut failures) = (Vec::new(), Vec::new());
        for step in 0..200 {
            if c.limit > 10 {
                failures.push(step);
                c.failed(&tuning, MOST);
            } else {
                let held = c.limit as f64;
                c.window(&window(window_calls(c.limit), window_calls(c.limit), held, 2.0), &tuning, MOST);
            }
            limits.push(c.limit);
        }
        assert!(limits.iter().all(|&l| (1..=12).contains(&l)), "{limits:?}");
        // Failures at 12, then at 11: each time up to one below them.
        assert_eq!(&limits[..10], [8, 9, 10, 11, 7, 8, 9, 10, 10, 10], "{limits:?}");
        assert!(limits[10..].iter().filter(|&&l| l < 10).count() <= 4 * failures.len(), "{limits:?}");
        // Two to find them, then a try past them every 33 windows, no more.
        assert!(failures[2..].windows(2).all(|w| w[1] - w[0] == PATIENCE as usize + 1), "{failures:?}");
    }

    #[test]
    fn it_settles_a_call_or_two_past_where_the_worker_stops_keeping_up() {
        // A worker with four cores shared among its calls: each call past
        // the fourth slows every one. Light load first (two calls, never
        // at the limit) shows the lowest slowdown; then calls come faster
        // than it runs them. Past the cores every call is excess: the limit
        // settles where the excess is between low (1) and high (2).
        let tuning = Tuning::default();
        let mut c = Controller::new(&tuning, MOST);
        let worker = |held: f64| 2.0 * (held / 4.0).max(1.0);
        for _ in 0..10 {
            assert_eq!(c.window(&window(20, 0, 2.0, worker(2.0)), &tuning, MOST), None);
        }
        let mut limits = Vec::new();
        for _ in 0..60 {
            let (held, calls) = (c.limit as f64, window_calls(c.limit));
            c.window(&window(calls, calls, held, worker(held)), &tuning, MOST);
            limits.push(c.limit);
        }
        assert!(limits[30..].iter().all(|l| (5..=6).contains(l)), "{limits:?}");
    }

    #[test]
    fn in_a_tier_each_instance_takes_its_part_of_a_cut_rounded_at_random() {
        // Alone, all the calls over high, rounded up.
        assert_eq!([calls_to_cut(0.3, 1, 0.9), calls_to_cut(2.2, 1, 0.0)], [1, 3]);
        // One of three instances, 0.13 calls over its part of high: the
        // whole worker is 0.39 over, one call to cut, a third of it each.
        assert_eq!([calls_to_cut(0.13, 3, 0.2), calls_to_cut(0.13, 3, 0.5)], [1, 0]);
        // 0.9 over: 2.7 for the worker, 3 calls, one each.
        assert_eq!([calls_to_cut(0.9, 3, 0.0), calls_to_cut(0.9, 3, 0.99)], [1, 1]);
        assert_eq!([calls_to_cut(1.5, 2, 0.3), calls_to_cut(1.5, 2, 0.7)], [2, 1]);
        // The draws of windows that differ a little spread over [0, 1).
        let draws: Vec<f64> =
            (0..1000).map(|i| draw(&Window { took_us: 90_000 + i, ..window(26, 26, 3.0, 3.0) })).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)));
        let low = draws.iter().filter(|&&d| d < 1.0 / 3.0).count();
        assert!((250..420).contains(&low), "{low} of 1000 below a third");
    }

    #[test]
    fn three_instances_hold_a_worker_about_where_one_would() {
        // The worker of four cores above, its calls from three instances,
        // each holding its limit and seeing the slowdown all of them make.
        // Alone, a limit settles at 5 or 6; three that all cut at once
        // would halve their limits of two, to 3 in all.
        let worker = |held: f64| 2.0 * (held / 4.0).max(1.0);
        let alone = Tuning::default();
        let tuning = Tuning { initial: 2, low: alone.low / 3.0, high: alone.high / 3.0, instances: 3, ..alone };
        let mut tier = [Controller::new(&tuning, MOST); 3];
        for c in &mut tier {
            c.window(&window(20, 0, 0.6, worker(2.0)), &tuning, MOST);
        }
        let mut totals = Vec::new();
        for round in 0..400u64 {
            let total: u32 = tier.iter().map(|c| c.limit).sum();
            for (i, c) in tier.iter_mut().enumerate() {
                let (held, calls) = (c.limit as f64, window_calls(c.limit));
                let mut w = window(calls, calls, held, worker(total as f64));
                w.took_us += round * 3 + i as u64;
                c.window(&w, &tuning, MOST);
            }
            totals.push(total);
        }
        let mean = totals[100..].iter().sum::<u32>() as f64 / 300.0;
        assert!((4.5..=6.5).contains(&mean), "{mean}: {totals:?}");
        assert!(tier.iter().all(|c| c.limit >= 1));
    }

    #[test]
    fn the_shared_limit_closes_a_window_after_its_calls_and_cuts_once_per_window_on_failures() {
        let limit = Limit::default();
        let answered = |took_us| Sample::Answered { took_us, base_us: 1000, at_limit: true, weight: 1 };
        assert_eq!(limit.record(answered(2000), MOST), None, "off");
        assert_eq!(limit.get(), u32::MAX);
        let tuning = EIGHT;
        limit.set_tuning(Some(&tuning), MOST);
        assert_eq!(limit.get(), 8);
        let unknown = Sample::Answered { took_us: 5000, base_us: 0, at_limit: true, weight: 1 };
        assert_eq!(limit.record(unknown, MOST), None, "no baseline: not counted");
        for _ in 0..window_calls(8) - 1 {
            assert_eq!(limit.record(answered(2000), MOST), None);
        }
        // The first window: its slowdown becomes the lowest; no excess, binding.
        assert_eq!(limit.record(answered(2000), MOST), Some((8, 9, Change::Raised)));
        assert_eq!(limit.slowdowns(), (2.0, 2.0));
        // Two failures and one per 16 calls of a window (34 at 9): the fourth cuts.
        for _ in 0..3 {
            assert_eq!(limit.record(Sample::Failed, MOST), None);
        }
        assert_eq!(limit.record(Sample::Failed, MOST), Some((9, 6, Change::Failed)));
        // The next cut takes three more, and a round trip (the last window's
        // mean call) since.
        limit.round_trip_us.store(60_000_000, Ordering::Relaxed);
        for _ in 0..5 {
            assert_eq!(limit.record(Sample::Failed, MOST), None, "one burst cuts once");
        }
        limit.round_trip_us.store(0, Ordering::Relaxed);
        assert_eq!(limit.record(Sample::Failed, MOST), Some((6, 4, Change::Failed)), "failures go on");
        assert_eq!(limit.record(Sample::Overloaded { in_flight: 4 }, MOST), Some((4, 3, Change::Overloaded)));
        assert_eq!(failures_that_cut(3), 3);
        limit.set_tuning(Some(&Tuning { initial: 5, ..tuning }), 4);
        assert_eq!(limit.get(), 4, "a new tuning starts again, within the capacity");
        assert_eq!(limit.slowdowns(), (2.0, 2.0), "what it learnt stays");
        limit.set_tuning(None, MOST);
        assert_eq!((limit.is_on(), limit.get(), limit.bound()), (false, u32::MAX, u32::MAX));
    }

    #[test]
    fn a_limit_holds_calls_back_only_while_they_take_long_enough() {
        let limit = Limit::default();
        limit.set_tuning(Some(&EIGHT), MOST);
        assert_eq!((limit.get(), limit.bound()), (8, 8), "nothing known yet: it holds at initial");
        let window = |base_us| {
            for _ in 0..window_calls(limit.get()) {
                // One in SAMPLED, as `Scheduler::call_ended` sends them,
                // while it holds nothing back.
                let weight = if limit.holds() { 1 } else { SAMPLED };
                limit.record(Sample::Answered { took_us: 3 * base_us, base_us, at_limit: false, weight }, MOST);
            }
        };
        window(999);
        assert_eq!(limit.bound(), u32::MAX, "calls of under 1 ms at best");
        window(1000);
        assert_eq!(limit.bound(), 8);
        window(20);
        assert_eq!(limit.bound(), u32::MAX);
        // Turned off and on again, it holds until a window says otherwise.
        limit.set_tuning(None, MOST);
        limit.set_tuning(Some(&EIGHT), MOST);
        assert_eq!(limit.bound(), 8);
    }

    #[test]
    fn a_sampled_answer_counts_for_as_many_in_the_windows_sums() {
        // Two limits on the same calls: one hears every answer, the other
        // one in SAMPLED, weighted. Same slowdowns, same held calls.
        let (every, sampled) = (Limit::default(), Limit::default());
        for limit in [&every, &sampled] {
            limit.set_tuning(Some(&EIGHT), MOST);
            limit.record(Sample::Answered { took_us: 10, base_us: 0, at_limit: false, weight: 1 }, MOST);
            assert!(!limit.holds(), "microsecond calls");
        }
        let answer = |weight| Sample::Answered { took_us: 40, base_us: 20, at_limit: false, weight };
        for i in 0..window_calls(8) * SAMPLED - 1 {
            every.record(answer(1), MOST);
            if i % SAMPLED == 0 {
                sampled.record(answer(SAMPLED), MOST);
            }
        }
        assert_eq!(every.slowdowns(), (0.0, 0.0), "a window of as many answers, not closed yet");
        every.record(answer(1), MOST);
        assert_eq!(every.slowdowns(), (2.0, 2.0));
        assert_eq!(sampled.slowdowns(), (2.0, 2.0));
        let round_trip = |l: &Limit| l.round_trip_us.load(Ordering::Relaxed);
        assert_eq!((round_trip(&every), round_trip(&sampled)), (40, 40));
    }

    #[test]
    fn a_new_limit_stops_holding_at_a_short_call_before_its_first_window_and_not_after() {
        let limit = Limit::default();
        limit.set_tuning(Some(&EIGHT), MOST);
        let unknown = |took_us| Sample::Answered { took_us, base_us: 0, at_limit: false, weight: 1 };
        limit.record(unknown(5_000), MOST);
        assert_eq!(limit.bound(), 8, "a long call, its function's baseline not known yet");
        limit.record(unknown(900), MOST);
        assert_eq!(limit.bound(), u32::MAX, "a call under min_call_ms: it holds nothing");
        // After a window of long calls, one short call of a new function
        // changes nothing: the next window decides.
        for _ in 0..window_calls(8) {
            let weight = if limit.holds() { 1 } else { SAMPLED };
            limit.record(Sample::Answered { took_us: 3000, base_us: 2000, at_limit: false, weight }, MOST);
        }
        assert_eq!(limit.bound(), 8);
        limit.record(unknown(900), MOST);
        assert_eq!(limit.bound(), 8);
    }

    #[test]
    fn a_limit_takes_what_a_peer_learnt_within_min_and_the_configured_capacity() {
        let limit = Limit::default();
        let learnt = Learnt { limit: 6, holds: true, lowest: 1.5, smoothed: 2.0 };
        limit.adopt(&learnt, MOST);
        assert_eq!(limit.get(), u32::MAX, "off: nothing to take");
        limit.set_tuning(Some(&Tuning::default()), MOST);
        limit.adopt(&learnt, MOST);
        assert_eq!((limit.get(), limit.bound(), limit.slowdowns()), (6, 6, (1.5, 2.0)));
        limit.adopt(&Learnt { limit: 0, holds: false, ..learnt }, 4);
        assert_eq!((limit.get(), limit.bound()), (1, u32::MAX), "never below min; holds as the peer's does");
        limit.adopt(&learnt, 4);
        assert_eq!(limit.get(), 4, "within the configured capacity");
        // A window measured against the lowest it took: 1.5 lowest, 3.0
        // now, 12 held: 6 calls of excess, 4 over high.
        let calls = window_calls(4);
        limit.started_us.store(limit.now_us(), Ordering::Relaxed);
        for _ in 0..calls {
            limit.record(Sample::Answered { took_us: 3000, base_us: 1000, at_limit: true, weight: 1 }, MOST);
        }
        assert!(limit.get() < 4, "cut by the excess over the peer's lowest slowdown: {}", limit.get());
    }
}
