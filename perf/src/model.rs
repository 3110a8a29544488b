//! One emulated OpenLambda worker as a pure state machine: sandboxes and
//! their memory, LRU eviction, the FIFO queue of calls waiting for memory,
//! keep-alive expiry, and processor sharing over the worker's cores.
//!
//! Time is an explicit argument (milliseconds at paper scale, from any
//! origin), never read from a clock, so every rule here is tested with exact
//! timestamps; `emulator` drives it with real timers.
//!
//! A call's service time is CPU work: with `n` calls running on `C` cores,
//! each progresses at `min(1, C / n)` ms of work per ms. A cold start's extra
//! cost (Table I's cold minus warm) is modelled the same way, as more work.

use std::collections::VecDeque;

/// Memory one sandbox holds (the paper's per-sandbox limit).
pub const SANDBOX_MB: u64 = 512;

/// Work left below this (in ms) counts as done: float rounding over many
/// rate changes must not leave a call a femtosecond short of completion.
const EPSILON_MS: f64 = 1e-9;

/// Identifies one call, chosen by the caller.
pub type CallId = u64;

/// A worker's fixed parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Cores shared by running calls.
    pub cores: u32,
    /// Sandboxes that fit in memory at once.
    pub sandboxes: usize,
    /// How long an idle sandbox lives, in ms.
    pub keep_alive_ms: f64,
}

impl Limits {
    /// Limits for `memory_mb` of usable memory; `None` if not even one
    /// sandbox fits or there are no cores.
    pub fn new(cores: u32, memory_mb: u64, keep_alive_ms: f64) -> Option<Limits> {
        let sandboxes = (memory_mb / SANDBOX_MB) as usize;
        (cores > 0 && sandboxes > 0 && keep_alive_ms >= 0.0).then_some(Limits { cores, sandboxes, keep_alive_ms })
    }
}

/// The work a call needs, in ms at full speed, for either kind of start;
/// which one applies is only known when the call gets a sandbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    pub cold_ms: f64,
    pub warm_ms: f64,
}

/// Why a sandbox went away; both are reported to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Made room for another sandbox (least recently used idle one).
    Evicted,
    /// Idle for longer than the keep-alive.
    Expired,
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A call finished: answer it.
    Completed { call: CallId, cold: bool, arrived_ms: f64, finished_ms: f64 },
    /// A sandbox of `function` is gone: tell the scheduler.
    Removed { function: String, why: Removal },
}

/// Running totals, as `GET /stats` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub cold: u64,
    pub warm: u64,
    /// Sandboxes removed for any reason (each one reported to the scheduler).
    pub evictions: u64,
    /// The part of `evictions` that expired rather than made room.
    pub expired: u64,
    /// Calls that had to wait for memory.
    pub queued: u64,
}

#[derive(Debug)]
struct Sandbox {
    id: u64,
    function: String,
    /// `None` while a call runs in it.
    idle_since: Option<f64>,
}

#[derive(Debug)]
struct Running {
    call: CallId,
    sandbox: u64,
    cold: bool,
    arrived_ms: f64,
    remaining_ms: f64,
}

#[derive(Debug)]
struct Waiting {
    call: CallId,
    function: String,
    work: Work,
    arrived_ms: f64,
}

/// The state of one worker.
#[derive(Debug)]
pub struct Worker {
    limits: Limits,
    now: f64,
    next_sandbox: u64,
    sandboxes: Vec<Sandbox>,
    running: Vec<Running>,
    waiting: VecDeque<Waiting>,
    events: Vec<Event>,
    stats: Stats,
}

impl Worker {
    pub fn new(limits: Limits) -> Worker {
        Worker {
            limits,
            now: 0.0,
            next_sandbox: 0,
            sandboxes: Vec::new(),
            running: Vec::new(),
            waiting: VecDeque::new(),
            events: Vec::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// A call for `function` arrives at `now`: it starts at once (warm in an
    /// idle sandbox of `function`, else cold in a new one, evicting the least
    /// recently used idle sandbox if memory is full) or queues for memory.
    pub fn arrive(&mut self, now: f64, call: CallId, function: &str, work: Work) {
        self.advance(now);
        let waiting = Waiting { call, function: function.to_string(), work, arrived_ms: now };
        if self.waiting.is_empty() && self.admissible(function) {
            self.start(waiting);
        } else {
            self.stats.queued += 1;
            self.waiting.push_back(waiting);
        }
    }

    /// Moves time forward to `now`, completing calls and expiring sandboxes
    /// in the order they happen. Time never goes back: an earlier `now` is
    /// treated as the current time.
    pub fn advance(&mut self, now: f64) {
        while let Some(at) = self.next_deadline().filter(|&at| at <= now) {
            self.progress(at);
            self.complete_finished();
            self.expire_idle();
            self.admit_waiting();
        }
        self.progress(now);
    }

    /// When the next event happens if no call arrives before: the next
    /// completion or expiry, whichever is first.
    pub fn next_deadline(&self) -> Option<f64> {
        let rate = self.rate();
        let done = self.running.iter().map(|r| self.now + r.remaining_ms / rate);
        let expiry = self.sandboxes.iter().filter_map(|s| s.idle_since).map(|t| t + self.limits.keep_alive_ms);
        done.chain(expiry).reduce(f64::min)
    }

    /// Work done per ms by each running call.
    fn rate(&self) -> f64 {
        let n = self.running.len() as f64;
        let cores = f64::from(self.limits.cores);
        if n <= cores {
            1.0
        } else {
            cores / n
        }
    }

    fn progress(&mut self, to: f64) {
        if to <= self.now {
            return;
        }
        let done = (to - self.now) * self.rate();
        for r in &mut self.running {
            r.remaining_ms -= done;
        }
        self.now = to;
    }

    fn complete_finished(&mut self) {
        let (now, rate) = (self.now, self.rate());
        // Far from the origin, `now + remaining / rate` can round to `now`:
        // such a call is done too, or `advance` would never get past it.
        let finished = |r: &Running| r.remaining_ms <= EPSILON_MS || now + r.remaining_ms / rate <= now;
        let mut i = 0;
        while i < self.running.len() {
            if !finished(&self.running[i]) {
                i += 1;
                continue;
            }
            let r = self.running.swap_remove(i);
            if let Some(s) = self.sandboxes.iter_mut().find(|s| s.id == r.sandbox) {
                s.idle_since = Some(now);
            }
            self.events.push(Event::Completed {
                call: r.call,
                cold: r.cold,
                arrived_ms: r.arrived_ms,
                finished_ms: now,
            });
        }
    }

    fn expire_idle(&mut self) {
        let (now, keep_alive) = (self.now, self.limits.keep_alive_ms);
        let expired = |s: &Sandbox| s.idle_since.is_some_and(|t| t + keep_alive <= now);
        while let Some(i) = self.sandboxes.iter().position(expired) {
            let s = self.sandboxes.remove(i);
            self.removed(s.function, Removal::Expired);
        }
    }

    fn admit_waiting(&mut self) {
        while let Some(head) = self.waiting.front() {
            if !self.admissible(&head.function) {
                return;
            }
            let head = self.waiting.pop_front().expect("front exists");
            self.start(head);
        }
    }

    /// Whether a call for `function` can start now.
    fn admissible(&self, function: &str) -> bool {
        self.sandboxes.len() < self.limits.sandboxes
            || self.sandboxes.iter().any(|s| s.idle_since.is_some())
            || self.idle_of(function).is_some()
    }

    /// The most recently used idle sandbox of `function`: the others are
    /// left to age out first.
    fn idle_of(&self, function: &str) -> Option<usize> {
        let idle = self.sandboxes.iter().enumerate().filter(|(_, s)| s.function == function);
        idle.filter_map(|(i, s)| s.idle_since.map(|t| (i, t))).max_by(|a, b| a.1.total_cmp(&b.1)).map(|(i, _)| i)
    }

    fn start(&mut self, call: Waiting) {
        let (sandbox, cold) = match self.idle_of(&call.function) {
            Some(i) => {
                self.sandboxes[i].idle_since = None;
                self.stats.warm += 1;
                (self.sandboxes[i].id, false)
            }
            None => {
                if self.sandboxes.len() >= self.limits.sandboxes {
                    self.evict_lru();
                }
                self.next_sandbox += 1;
                self.sandboxes.push(Sandbox { id: self.next_sandbox, function: call.function, idle_since: None });
                self.stats.cold += 1;
                (self.next_sandbox, true)
            }
        };
        let remaining_ms = if cold { call.work.cold_ms } else { call.work.warm_ms };
        self.running.push(Running { call: call.call, sandbox, cold, arrived_ms: call.arrived_ms, remaining_ms });
        // A call with no work at all completes at its own arrival.
        self.complete_finished();
    }

    fn evict_lru(&mut self) {
        let idle = self.sandboxes.iter().enumerate().filter_map(|(i, s)| s.idle_since.map(|t| (i, t)));
        let (lru, _) = idle.min_by(|a, b| a.1.total_cmp(&b.1)).expect("admissible guarantees an idle sandbox");
        let s = self.sandboxes.remove(lru);
        self.removed(s.function, Removal::Evicted);
    }

    fn removed(&mut self, function: String, why: Removal) {
        self.stats.evictions += 1;
        if why == Removal::Expired {
            self.stats.expired += 1;
        }
        self.events.push(Event::Removed { function, why });
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
