//! # hiku-perf: the Hiku paper's experiment on one machine
//!
//! The paper (Akbari and Hauswirth, CCGrid 2025) measured its scheduler on
//! six VMs with real OpenLambda workers. This crate reproduces that
//! experiment on one machine, so any scheduler binary with the Go
//! original's `start -c <config>` interface can be run through it:
//!
//! - `hiku-emulator` ([`emulator`] over the pure [`emulator::model`])
//!   serves N emulated workers, one loopback port each: sandboxes that hold
//!   512 MB each, warm and cold starts with Table I's times ([`functions`]),
//!   processor sharing over 4 cores, LRU eviction and keep-alive expiry
//!   reported to the scheduler as `POST /destroySandbox/<fn>`, and a FIFO
//!   queue when memory is full of busy sandboxes.
//! - [`load::loadgen`] plays the paper's k6 workload ([`load::workload`]):
//!   closed-loop virtual users in phases of 20, 50 and 100, each with its
//!   own seeded sequence of functions and think times, so every scheduler
//!   sees the same calls.
//! - [`experiment`] runs each scheduler with each balancer against a fresh
//!   cluster ([`harness::cluster`] starts and kills the processes), hiku
//!   alone or as a tier behind HAProxy ([`harness::front`]);
//!   [`report`] summarises the calls with [`stats`] into the paper's
//!   numbers (its published ones beside them, [`report::paper`]), and
//!   [`report::figures`] draws them ([`report::svg`]).
//!
//! Time can be compressed ([`scale`]): every duration is multiplied by the
//! time scale and every measurement divided by it, so a run at 0.1 takes a
//! tenth of the time and reports paper-scale numbers. Only the latency the
//! scheduler adds is reported in real milliseconds: it does not scale.
//!
//! [`http`] is the minimal HTTP/1.1 both ends speak, its messages framed by
//! [`http::framing`]; [`rng`] the seeded randomness.
//!
//! `perf/throughput` measures the other side of the question, the proxy's
//! own cost: [`throughput`] starts `hiku-upstream` ([`throughput::upstream`]:
//! trivial servers on one mio thread) and a proxy in front of them
//! ([`throughput::proxies`]) for every measurement, drives it with [`throughput::blast`] (a wrk-like closed-loop
//! generator on one mio thread, framing responses with [`http::framing`]),
//! reads the proxy's CPU time and peak memory from `/proc`
//! ([`harness::procstat`]) and its system calls, context switches and the
//! machine's reschedule IPIs ([`throughput::counters`]: `perf stat` and
//! `/proc/interrupts`), and [`throughput::summary`] reports the medians over
//! rounds. [`throughput::idle`] measures what idle keep-alive connections
//! cost each proxy, after a burst of calls on all of them.
//!
//! `perf/soak` ([`soak`]) sends a fixed number of calls ([`calls`])
//! through hiku while its workers are killed, restarted, removed and added,
//! and checks that none was lost, nothing stayed in flight and no memory
//! leaked; with `--instances` ([`tier_soak`]), through a tier behind
//! HAProxy while its instances are restarted one after the other.
//!
//! `perf/results` runs both at full length and [`results`] lays
//! their reports out as `perf/RESULTS.md`.
//!
//! Each subcommand of the `hiku-perf` binary owns its command line and
//! turns it into its module's options: [`experiment::cli`],
//! [`throughput::cli`] (`throughput` and `blast`), [`results`] and
//! [`soak`], with what they share in [`cli`]; the binary only dispatches.
//!
//! The modules follow the experiment as it runs: [`experiment`] starts the
//! [`emulator`] and a scheduler, the [`load`] side calls through it, and the
//! [`report`] is what comes out; [`throughput`] and [`soak`] are the other
//! measurements, and [`results`] lays the reports of all three out as one
//! page. [`harness`] starts and watches the processes of all
//! three, and [`http`], [`functions`], [`balancers`], [`rng`], [`scale`]
//! and [`stats`] are shared between them.

pub mod balancers;
pub mod calls;
pub mod cli;
pub mod emulator;
pub mod experiment;
pub mod functions;
pub mod harness;
pub mod http;
pub mod load;
pub mod report;
pub mod results;
pub mod rng;
pub mod scale;
pub mod soak;
pub mod stats;
pub mod throughput;
pub mod tier_soak;
