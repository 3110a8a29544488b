//! One emulated OpenLambda worker as a pure state machine, following what
//! the paper's workers ran (upstream OpenLambda at the commit
//! `open-lambda-mod` builds, with its `scripts/2_setup.sh` config):
//!
//! - **Instances.** Each function has instances; an instance serves one
//!   call at a time and holds at most one sandbox. Calls for a function wait
//!   in its FIFO queue; an idle instance takes them, the one idle longest
//!   first; one that finishes a call takes the next queued call at once,
//!   else it pauses its sandbox. An instance without a sandbox creates one
//!   for its next call: a **cold start** (`Creating new sandbox`, which the
//!   paper counts); resuming a paused sandbox is warm.
//! - **Autoscaler** (`LambdaFunc.Task`): a function wants
//!   `max(1, min(outstanding, outstanding * avg / 10))` instances, `avg`
//!   being the mean (in whole ms) of its last 10 calls' round trips to the
//!   sandbox, each in whole ms and at least 1 (`Invocation.execMs`: no
//!   queueing, no sandbox creation; a cold start's extra work is taken to
//!   be all creation), 0 before any. At
//!   each arrival and completion, and 100 ms after each change (no sooner),
//!   one instance is added (with no sandbox) or the newest one killed
//!   (after its call, if it has one) until the count is right. A killed instance destroys its
//!   sandbox and tells the scheduler (`destroySandbox`). There is no
//!   keep-alive: the last instance stays until one of the next two rules.
//! - **Code refresh** (`registry_cache_ms`, 5000): a call that arrives that
//!   long after the function's code was last pulled pulls it again. The
//!   paper's registry is a directory, copied to a new path on every pull,
//!   so the code always looks changed and every instance of the function is
//!   killed (running ones after their call): the call starts cold.
//! - **Memory** (`mem_pool_mb`): a running sandbox holds its limit (512
//!   MB); a paused one shrinks to what it really uses (`downsize_paused_mem`,
//!   on by default). Creating or resuming a sandbox waits, in FIFO order,
//!   until its memory is free.
//! - **Cores.** With `n` calls running on `C` cores, each progresses at
//!   `min(1, C / n)` ms of work per ms (each sandbox is capped at one core);
//!   a cold start's extra cost (Table I's cold minus warm) is more work.
//!
//! - **The evictor** (`SOCKEvictor.doEvictions`) runs after each batch of
//!   sandbox events (made, paused, unpaused, destroyed). It starts
//!   destroying `goal - free` paused sandboxes, least recently paused
//!   first, the goal being a fifth of the pool's slots
//!   (`FREE_SANDBOXES_PERCENT_GOAL`), `free` the slots free now: memory
//!   still held by destroys in flight does not count, so bursts of events
//!   over-evict; at most 8 of its destroys are in flight
//!   (`CONCURRENT_EVICTIONS`). The instance lives on and its next call is
//!   cold; the scheduler is not told then, but the instance still points
//!   at the dead sandbox, so when it is killed later its kill is reported
//!   as any other (`LambdaInstance.Task`). Its last resort: with no slot
//!   free and none of its destroys in flight, it destroys the sandbox in
//!   use that was made or unpaused longest ago; that call fails (502), and
//!   so does every call its instance takes before it would pause.
//! - **Destroys take time** (`Limits::destroy_ms`): a sandbox's memory
//!   comes back, and the evictor hears of it, when its destroy is done;
//!   a killed instance's report (`destroySandbox`) is sent then too.
//!
//! - **Why a call starts cold** ([`Cold`]): what left its instance without a
//!   sandbox: it is the function's first, it replaces instances a code pull
//!   killed, the autoscaler added it, the evictor destroyed its paused
//!   sandbox, or its sandbox was destroyed under a running call.
//!
//! Left out: the 1024-call queue limit (429) and the import cache (off in
//! the paper's setup).
//!
//! Time is an explicit argument (milliseconds at paper scale, from any
//! origin), never read from a clock, so every rule here is tested with exact
//! timestamps; `emulator` drives it with real timers.

use std::collections::VecDeque;

/// A running sandbox's memory (the paper's `limits.mem_mb`).
pub const SANDBOX_MB: u64 = 512;

/// The autoscaler changes a function's instances by one at most this often.
pub const AUTOSCALE_MS: f64 = 100.0;

/// Calls in a function's running average of run times.
const AVERAGE_OF: usize = 10;

/// The evictor keeps this share (percent) of the pool's slots free.
const FREE_SLOTS_PERCENT_GOAL: u64 = 20;

/// The evictor's destroys in flight at most (`CONCURRENT_EVICTIONS`).
const CONCURRENT_EVICTIONS: usize = 8;

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
    /// The memory pool, MB (`mem_pool_mb`).
    pub memory_mb: u64,
    /// What a paused sandbox keeps of its memory, MB.
    pub paused_mb: u64,
    /// `registry_cache_ms`; `None`: the code is pulled once.
    pub code_refresh_ms: Option<f64>,
    /// How long destroying a sandbox takes, ms, until its memory is back.
    pub destroy_ms: f64,
}

impl Limits {
    /// `None` if not even one sandbox fits, there are no cores, a paused
    /// sandbox would keep more than a running one, the refresh interval is
    /// not positive, or the destroy time is negative.
    pub fn new(
        cores: u32,
        memory_mb: u64,
        paused_mb: u64,
        code_refresh_ms: Option<f64>,
        destroy_ms: f64,
    ) -> Option<Limits> {
        let valid = cores > 0
            && memory_mb >= SANDBOX_MB
            && paused_mb <= SANDBOX_MB
            && code_refresh_ms.map_or(true, |ms| ms > 0.0 && ms.is_finite())
            && destroy_ms >= 0.0
            && destroy_ms.is_finite();
        valid.then_some(Limits { cores, memory_mb, paused_mb, code_refresh_ms, destroy_ms })
    }

    /// Free sandbox slots the evictor aims for: OpenLambda's
    /// `1 + (slots - 2) * 20 / 100`, in whole slots.
    fn free_slots_goal(&self) -> u64 {
        1 + (self.memory_mb / SANDBOX_MB).saturating_sub(2) * FREE_SLOTS_PERCENT_GOAL / 100
    }
}

/// The work a call needs, in ms at full speed, for either kind of start;
/// which one applies is only known when the call gets an instance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    pub cold_ms: f64,
    pub warm_ms: f64,
}

/// Why a call started cold: what left its instance without a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cold {
    /// The function's first instance on this worker.
    First,
    /// An instance in place of those a code pull killed.
    Refresh,
    /// An instance the autoscaler added for more calls at once (or again,
    /// after scaling down).
    ScaleUp,
    /// Its paused sandbox was destroyed by the evictor for memory.
    Evicted,
    /// Its sandbox was destroyed under a running call (the evictor's last
    /// resort).
    Killed,
}

impl Cold {
    pub const ALL: [Cold; 5] = [Cold::First, Cold::Refresh, Cold::ScaleUp, Cold::Evicted, Cold::Killed];

    pub fn name(self) -> &'static str {
        match self {
            Cold::First => "first",
            Cold::Refresh => "refresh",
            Cold::ScaleUp => "scale-up",
            Cold::Evicted => "evicted",
            Cold::Killed => "killed",
        }
    }

    pub fn parse(name: &str) -> Option<Cold> {
        Cold::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A call finished: answer it. `cold` says why it started cold (`None`: warm).
    Completed { call: CallId, cold: Option<Cold>, arrived_ms: f64, finished_ms: f64 },
    /// An instance of `function` was killed with its sandbox: tell the scheduler.
    Removed { function: String },
    /// A call failed: the evictor destroyed the sandbox it ran in, or the
    /// one its instance still pointed at (OpenLambda answers 502).
    Failed { call: CallId, arrived_ms: f64, finished_ms: f64 },
}

/// Running totals, as `GET /stats` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub cold: u64,
    pub warm: u64,
    /// Instances killed with a sandbox (scale-down or code refresh), each
    /// reported to the scheduler; the sandbox may be one the evictor
    /// destroyed.
    pub killed: u64,
    /// Code pulls that killed a function's instances.
    pub refreshes: u64,
    /// Paused sandboxes the evictor destroyed for memory (not reported).
    pub evictions: u64,
    /// Calls that had to wait for memory.
    pub queued: u64,
    /// Sandboxes in use the evictor destroyed, its last resort.
    #[serde(default)]
    pub forced_evictions: u64,
    /// Calls that failed for it.
    #[serde(default)]
    pub failed: u64,
}

/// A call not yet running.
#[derive(Debug)]
struct Pending {
    call: CallId,
    work: Work,
    arrived_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sandbox {
    /// Running a call, or about to; made or unpaused at `since` (the
    /// evictor's queue of sandboxes in use is in that order).
    Active {
        since: f64,
    },
    Paused {
        since: f64,
    },
    /// Destroyed by the evictor behind its instance's back: it holds no
    /// memory, and the instance still points at it (OpenLambda's `sb`),
    /// so its next call is cold and its kill is still reported.
    Dead,
}

#[derive(Debug)]
struct Instance {
    id: u64,
    function: usize,
    sandbox: Option<Sandbox>,
    /// Why it has no sandbox, while it has none (a `Dead` one was evicted).
    fresh: Cold,
    /// Waiting for a call since then; `None` while it has one.
    idle_since: Option<f64>,
    /// Killed while busy: goes with its sandbox after its call.
    dying: bool,
}

#[derive(Debug)]
struct Function {
    name: String,
    /// Live instances, oldest first (killed ones are no longer here).
    instances: Vec<u64>,
    queue: VecDeque<Pending>,
    /// Calls arrived and not completed.
    outstanding: usize,
    last_pull_ms: Option<f64>,
    /// Instances a code pull killed that the autoscaler has not replaced
    /// yet: the next ones it adds are there for the pull.
    refreshed: usize,
    /// Whether it ever had an instance here.
    had_instance: bool,
    /// Round trips of the last calls, whole ms.
    run_times: VecDeque<f64>,
    /// The autoscaler's next chance, after a change.
    autoscale_at: Option<f64>,
}

#[derive(Debug)]
struct Running {
    call: CallId,
    instance: u64,
    cold: Option<Cold>,
    arrived_ms: f64,
    remaining_ms: f64,
    /// The work of the round trip to the sandbox (a warm call's), the last
    /// part of `remaining_ms`; a cold start's extra work comes first.
    trip_ms: f64,
    /// When the round trip began: the start, or once the sandbox was made.
    trip_started_ms: Option<f64>,
}

/// A sandbox being destroyed: its memory comes back when it is done.
#[derive(Debug)]
struct Destroy {
    done_ms: f64,
    mb: u64,
    /// Started by the evictor (it counts its own in flight).
    by_evictor: bool,
    /// The function whose killed instance reports it when done.
    report: Option<usize>,
}

/// A sandbox to create (cold) or resume, waiting for its memory.
#[derive(Debug)]
struct MemoryWait {
    instance: u64,
    call: Pending,
}

/// The state of one worker.
#[derive(Debug)]
pub struct Worker {
    limits: Limits,
    now: f64,
    next_instance: u64,
    functions: Vec<Function>,
    instances: Vec<Instance>,
    running: Vec<Running>,
    memory_waits: VecDeque<MemoryWait>,
    free_mb: u64,
    destroys: Vec<Destroy>,
    /// A sandbox was made, unpaused, paused or destroyed since the
    /// evictor last looked.
    sandbox_event: bool,
    events: Vec<Event>,
    stats: Stats,
}

impl Worker {
    pub fn new(limits: Limits) -> Worker {
        Worker {
            limits,
            now: 0.0,
            next_instance: 0,
            functions: Vec::new(),
            instances: Vec::new(),
            running: Vec::new(),
            memory_waits: VecDeque::new(),
            free_mb: limits.memory_mb,
            destroys: Vec::new(),
            sandbox_event: false,
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

    /// A call for `function` arrives at `now`: its code is pulled again if
    /// stale, it joins the function's queue, and an idle instance takes it.
    pub fn arrive(&mut self, now: f64, call: CallId, function: &str, work: Work) {
        self.advance(now);
        // An earlier `now` is the current time.
        let now = self.now;
        let f = self.function(function);
        let stale = match (self.functions[f].last_pull_ms, self.limits.code_refresh_ms) {
            (None, _) => true,
            (Some(at), Some(every)) => now - at >= every,
            (Some(_), None) => false,
        };
        if stale {
            if self.functions[f].last_pull_ms.is_some() {
                self.refresh(f);
            }
            self.functions[f].last_pull_ms = Some(now);
        }
        self.functions[f].outstanding += 1;
        self.functions[f].queue.push_back(Pending { call, work, arrived_ms: now });
        self.dispatch(f);
        self.autoscale(f);
        self.settle_memory();
    }

    /// Moves time forward to `now`, completing calls and running the
    /// autoscaler in the order they happen. Time never goes back: an
    /// earlier `now` is treated as the current time.
    pub fn advance(&mut self, now: f64) {
        while let Some(at) = self.next_deadline().filter(|&at| at <= now) {
            self.progress(at);
            self.complete_finished();
            for f in 0..self.functions.len() {
                if self.functions[f].autoscale_at.is_some_and(|t| t <= self.now) {
                    self.functions[f].autoscale_at = None;
                    self.autoscale(f);
                }
            }
            self.settle_memory();
        }
        self.progress(now);
    }

    /// When the next event happens if no call arrives before: the next
    /// completion, autoscaler step or destroy done, whichever is first.
    pub fn next_deadline(&self) -> Option<f64> {
        let rate = self.rate();
        let done = self.running.iter().map(|r| self.now + r.remaining_ms / rate);
        let autoscale = self.functions.iter().filter_map(|f| f.autoscale_at);
        let destroyed = self.destroys.iter().map(|d| d.done_ms);
        done.chain(autoscale).chain(destroyed).reduce(f64::min)
    }

    /// The index of `name`'s state, made on its first call.
    fn function(&mut self, name: &str) -> usize {
        if let Some(f) = self.functions.iter().position(|f| f.name == name) {
            return f;
        }
        self.functions.push(Function {
            name: name.to_string(),
            instances: Vec::new(),
            queue: VecDeque::new(),
            outstanding: 0,
            last_pull_ms: None,
            refreshed: 0,
            had_instance: false,
            run_times: VecDeque::new(),
            autoscale_at: None,
        });
        self.functions.len() - 1
    }

    fn instance(&mut self, id: u64) -> &mut Instance {
        self.instances.iter_mut().find(|i| i.id == id).expect("a live instance")
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
        let rate = self.rate();
        let done = (to - self.now) * rate;
        for r in &mut self.running {
            if r.trip_started_ms.is_none() && r.remaining_ms - done <= r.trip_ms {
                r.trip_started_ms = Some(self.now + (r.remaining_ms - r.trip_ms) / rate);
            }
            r.remaining_ms -= done;
        }
        self.now = to;
    }

    /// Every instance of `f` is killed: idle ones now, busy ones after their call.
    fn refresh(&mut self, f: usize) {
        let ids = std::mem::take(&mut self.functions[f].instances);
        if !ids.is_empty() {
            self.stats.refreshes += 1;
        }
        self.functions[f].refreshed = ids.len();
        for id in ids {
            self.kill(id);
        }
    }

    /// The autoscaler's step for `f`, unless it changed `f` within the
    /// last `AUTOSCALE_MS`.
    fn autoscale(&mut self, f: usize) {
        let function = &self.functions[f];
        if function.autoscale_at.is_some() {
            return;
        }
        let average = match function.run_times.len() {
            0 => 0.0,
            n => function.run_times.iter().sum::<f64>() / n as f64,
        };
        // OpenLambda's integers: outstanding * whole ms of average, / 10.
        let work_ms = function.outstanding as u64 * average as u64;
        let desired = ((work_ms / 10) as usize).min(function.outstanding).max(1);
        let have = function.instances.len();
        if have < desired {
            self.next_instance += 1;
            let id = self.next_instance;
            let function = &mut self.functions[f];
            let fresh = match (function.had_instance, function.refreshed) {
                (false, _) => Cold::First,
                (true, 0) => Cold::ScaleUp,
                (true, _) => Cold::Refresh,
            };
            function.had_instance = true;
            function.refreshed = function.refreshed.saturating_sub(1);
            function.instances.push(id);
            self.instances.push(Instance {
                id,
                function: f,
                sandbox: None,
                fresh,
                idle_since: Some(self.now),
                dying: false,
            });
            self.dispatch(f);
        } else if have > desired {
            self.functions[f].refreshed = 0;
            let newest = self.functions[f].instances.pop().expect("more than one");
            self.kill(newest);
        } else {
            // Enough instances: those a pull killed are replaced.
            self.functions[f].refreshed = 0;
            return;
        }
        self.functions[f].autoscale_at = Some(self.now + AUTOSCALE_MS);
    }

    /// Kills an instance no longer in its function's list: at once if idle,
    /// after its call if busy.
    fn kill(&mut self, id: u64) {
        let instance = self.instance(id);
        if instance.idle_since.is_none() {
            instance.dying = true;
            return;
        }
        self.remove_instance(id);
    }

    /// Removes an instance and destroys its sandbox, telling the scheduler
    /// once it is destroyed if it had one, even one the evictor destroyed
    /// (`LambdaInstance.Task` destroys it again, a no-op, and posts
    /// `destroySandbox` whenever its `sb` is set).
    fn remove_instance(&mut self, id: u64) {
        let at = self.instances.iter().position(|i| i.id == id).expect("a live instance");
        let instance = self.instances.swap_remove(at);
        let f = instance.function;
        match instance.sandbox {
            None => return,
            Some(Sandbox::Active { .. }) => self.destroy(SANDBOX_MB, false, Some(f)),
            Some(Sandbox::Paused { .. }) => self.destroy(self.limits.paused_mb, false, Some(f)),
            Some(Sandbox::Dead) => self.report(f),
        }
        self.stats.killed += 1;
    }

    /// Tells the scheduler an instance of `f` is gone.
    fn report(&mut self, f: usize) {
        let function = self.functions[f].name.clone();
        self.events.push(Event::Removed { function });
    }

    /// Starts destroying a sandbox holding `mb`.
    fn destroy(&mut self, mb: u64, by_evictor: bool, report: Option<usize>) {
        let done_ms = self.now + self.limits.destroy_ms;
        self.destroys.push(Destroy { done_ms, mb, by_evictor, report });
    }

    /// Ends the destroys due by now: their memory is back, the evictor
    /// hears of it, and killed instances are reported. False if none was due.
    fn finish_destroys(&mut self) -> bool {
        let mut any = false;
        while let Some(i) = self.destroys.iter().position(|d| d.done_ms <= self.now) {
            let d = self.destroys.remove(i);
            self.free_mb += d.mb;
            self.sandbox_event = true;
            if let Some(f) = d.report {
                self.report(f);
            }
            any = true;
        }
        any
    }

    /// Hands `f`'s queued calls to its idle instances, longest idle first.
    fn dispatch(&mut self, f: usize) {
        while !self.functions[f].queue.is_empty() {
            let idle = self.functions[f]
                .instances
                .iter()
                .filter_map(|&id| self.instances.iter().find(|i| i.id == id))
                .filter_map(|i| i.idle_since.map(|since| (i.id, since)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            let Some((id, _)) = idle else { return };
            let call = self.functions[f].queue.pop_front().expect("not empty");
            self.take(id, call);
        }
    }

    /// Instance `id` takes `call`: it runs now if its memory is free and
    /// nobody waits for memory before it, else it waits.
    fn take(&mut self, id: u64, call: Pending) {
        let (now, paused_mb) = (self.now, self.limits.paused_mb);
        let instance = self.instance(id);
        instance.idle_since = None;
        let need = match instance.sandbox {
            Some(Sandbox::Paused { .. }) => {
                instance.sandbox = Some(Sandbox::Active { since: now });
                self.sandbox_event = true;
                SANDBOX_MB - paused_mb
            }
            Some(Sandbox::Active { .. }) => 0,
            None | Some(Sandbox::Dead) => SANDBOX_MB,
        };
        if need <= self.free_mb && self.memory_waits.is_empty() {
            self.free_mb -= need;
            self.start(id, call);
        } else {
            self.stats.queued += 1;
            self.memory_waits.push_back(MemoryWait { instance: id, call });
        }
    }

    /// The memory instance `id` still needs to run its call.
    fn memory_needed(&self, id: u64) -> u64 {
        let instance = self.instances.iter().find(|i| i.id == id).expect("a live instance");
        match instance.sandbox {
            Some(Sandbox::Active { .. } | Sandbox::Paused { .. }) => SANDBOX_MB - self.limits.paused_mb,
            None | Some(Sandbox::Dead) => SANDBOX_MB,
        }
    }

    /// Runs `call` on instance `id`, whose memory is taken: cold if it has
    /// no sandbox yet.
    fn start(&mut self, id: u64, call: Pending) {
        let now = self.now;
        let instance = self.instance(id);
        let cold = match instance.sandbox {
            None => Some(instance.fresh),
            Some(Sandbox::Dead) => Some(Cold::Evicted),
            Some(Sandbox::Active { .. } | Sandbox::Paused { .. }) => None,
        };
        if cold.is_some() {
            instance.sandbox = Some(Sandbox::Active { since: now });
            self.sandbox_event = true;
            self.stats.cold += 1;
        } else {
            self.stats.warm += 1;
        }
        let remaining_ms = if cold.is_some() { call.work.cold_ms } else { call.work.warm_ms };
        let trip_ms = call.work.warm_ms.min(remaining_ms);
        self.running.push(Running {
            call: call.call,
            instance: id,
            cold,
            arrived_ms: call.arrived_ms,
            remaining_ms,
            trip_ms,
            trip_started_ms: (remaining_ms <= trip_ms).then_some(self.now),
        });
        // A call with no work at all completes at its own start.
        self.complete_finished();
    }

    fn complete_finished(&mut self) {
        let (now, rate) = (self.now, self.rate());
        // Far from the origin, `now + remaining / rate` can round to `now`:
        // such a call is done too, or `advance` would never get past it.
        let finished = |r: &Running| r.remaining_ms <= EPSILON_MS || now + r.remaining_ms / rate <= now;
        while let Some(i) = self.running.iter().position(finished) {
            let r = self.running.swap_remove(i);
            self.events.push(Event::Completed {
                call: r.call,
                cold: r.cold,
                arrived_ms: r.arrived_ms,
                finished_ms: now,
            });
            self.finished(r);
        }
    }

    /// After instance `r.instance`'s call: it dies, takes the next queued
    /// call warm, or pauses.
    fn finished(&mut self, r: Running) {
        let (now, paused_mb) = (self.now, self.limits.paused_mb);
        let instance = self.instance(r.instance);
        let (f, dying) = (instance.function, instance.dying);
        let function = &mut self.functions[f];
        function.outstanding -= 1;
        if function.run_times.len() == AVERAGE_OF {
            function.run_times.pop_front();
        }
        // OpenLambda times the round trip alone (`execMs`: "doesn't count
        // queue time or Sandbox init"), in whole ms, at least 1.
        let trip = now - r.trip_started_ms.unwrap_or(now);
        function.run_times.push_back(trip.floor().max(1.0));
        if dying {
            self.remove_instance(r.instance);
        } else if let Some(next) = self.functions[f].queue.pop_front() {
            self.start(r.instance, next);
        } else {
            let instance = self.instance(r.instance);
            instance.sandbox = Some(Sandbox::Paused { since: now });
            instance.idle_since = Some(now);
            self.free_mb += SANDBOX_MB - paused_mb;
            self.sandbox_event = true;
        }
        self.autoscale(f);
    }

    /// Destroys done by now, the evictor, then the calls waiting for
    /// memory, oldest first, until nothing more happens at this instant.
    fn settle_memory(&mut self) {
        loop {
            self.finish_destroys();
            self.evict();
            let fits = self.memory_waits.front().is_some_and(|w| self.memory_needed(w.instance) <= self.free_mb);
            if fits {
                let wait = self.memory_waits.pop_front().expect("front exists");
                self.free_mb -= self.memory_needed(wait.instance);
                self.start(wait.instance, wait.call);
            } else if !self.destroys.iter().any(|d| d.done_ms <= self.now) {
                return;
            }
        }
    }

    /// `doEvictions`, if a sandbox was made, unpaused, paused or destroyed
    /// since it last ran: starts destroying `goal - free` paused sandboxes,
    /// least recently paused first, with at most `CONCURRENT_EVICTIONS` of
    /// its destroys in flight. Its last resort: with no slot free and none
    /// of its destroys in flight, the sandbox in use that was made or
    /// unpaused longest ago is destroyed, and its call fails.
    fn evict(&mut self) {
        if !std::mem::take(&mut self.sandbox_event) {
            return;
        }
        let free = self.free_mb / SANDBOX_MB;
        let in_flight = self.destroys.iter().filter(|d| d.by_evictor).count();
        let mut count = self
            .limits
            .free_slots_goal()
            .saturating_sub(free)
            .min(CONCURRENT_EVICTIONS.saturating_sub(in_flight) as u64);
        while count > 0 {
            let paused = self.instances.iter_mut().filter_map(|i| match i.sandbox {
                Some(Sandbox::Paused { since }) => Some((since, i)),
                _ => None,
            });
            let Some((_, oldest)) = paused.min_by(|a, b| a.0.total_cmp(&b.0)) else { break };
            oldest.sandbox = Some(Sandbox::Dead);
            self.destroy(self.limits.paused_mb, true, None);
            self.stats.evictions += 1;
            count -= 1;
        }
        if free == 0 && !self.destroys.iter().any(|d| d.by_evictor) {
            self.destroy_oldest_in_use();
        }
    }

    /// The evictor's last resort (`evictFront(prioQueues[1], true)`): the
    /// running call whose sandbox was made or unpaused longest ago fails,
    /// its memory comes back once destroyed, and its instance fails every call queued for
    /// its function (each grabbed at once, each round trip failing), then
    /// drops the sandbox (its pause fails: `sb = nil`), so it is not
    /// reported, unless it was killed meanwhile (a busy kill always is).
    /// A sandbox that waits for its memory to unpause is left alone.
    fn destroy_oldest_in_use(&mut self) {
        let since = |r: &Running| match self.instances.iter().find(|i| i.id == r.instance).and_then(|i| i.sandbox) {
            Some(Sandbox::Active { since }) => since,
            _ => f64::INFINITY,
        };
        let oldest = self.running.iter().enumerate().min_by(|a, b| since(a.1).total_cmp(&since(b.1))).map(|(i, _)| i);
        let Some(at) = oldest else { return };
        let r = self.running.swap_remove(at);
        self.stats.forced_evictions += 1;
        self.destroy(SANDBOX_MB, true, None);
        let now = self.now;
        let instance = self.instance(r.instance);
        let (f, dying) = (instance.function, instance.dying);
        instance.sandbox = Some(Sandbox::Dead);
        self.fail(f, r.call, r.arrived_ms);
        if dying {
            self.remove_instance(r.instance);
        } else {
            while let Some(next) = self.functions[f].queue.pop_front() {
                self.fail(f, next.call, next.arrived_ms);
            }
            let instance = self.instance(r.instance);
            instance.sandbox = None;
            instance.fresh = Cold::Killed;
            instance.idle_since = Some(now);
        }
        self.autoscale(f);
    }

    /// A call of `f` fails now: its round trip to a destroyed sandbox
    /// fails at once (1 ms, the least a round trip counts).
    fn fail(&mut self, f: usize, call: CallId, arrived_ms: f64) {
        self.events.push(Event::Failed { call, arrived_ms, finished_ms: self.now });
        self.stats.failed += 1;
        let function = &mut self.functions[f];
        function.outstanding -= 1;
        if function.run_times.len() == AVERAGE_OF {
            function.run_times.pop_front();
        }
        function.run_times.push_back(1.0);
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
