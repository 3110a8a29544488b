//! # hiku: a thread-per-core request scheduler for serverless workers
//!
//! Clients POST to `/run/<function>`; hiku picks a worker with a balancer
//! and reverse-proxies the call. It is a drop-in replacement for the Go Hiku
//! scheduler (same command, config file, endpoints and balancers).
//!
//! ## The machine
//!
//! hiku runs one [monoio] runtime per core, on a thread pinned to it. Each
//! is a *shard* ([`shard::Shard`]) that owns, and shares with no other:
//!
//! - its listening socket: every shard binds the same address with
//!   `SO_REUSEPORT`; a small BPF program on the group ([`steering`])
//!   gives each new connection to a shard on another core than the one
//!   that processed its SYN (busy with the client or the NIC), at random,
//!   and a shard holding more than its share of the keep-alive
//!   connections moves some, between two calls, to the emptiest
//!   ([`handoff`]);
//! - its client connections, each served start to finish on the shard,
//!   with buffers borrowed from the shard's stock only while a request is
//!   read or served ([`conn::Conn`], [`http::ReadBuf`]);
//! - its keep-alive connections to the workers ([`pool::Pool`]), since a
//!   stream belongs to the runtime that made it;
//! - its I/O driver: an io_uring ring set up with `COOP_TASKRUN` and
//!   `SINGLE_ISSUER`, so reads and writes are submitted in batches and
//!   their completions' work run by the shard itself when it next enters
//!   the kernel (no interrupt, no wake-up from another core); or epoll,
//!   where io_uring is blocked ([`runtime`] chooses once at start, and
//!   nothing else knows which).
//!
//! Shared by all shards:
//!
//! - through one `Arc<`[`scheduler::Scheduler`]`>`: the worker set, an
//!   immutable [`worker::WorkerSet`] snapshot in an `ArcSwap`: reading it
//!   is one atomic load; admin changes publish a new snapshot with a
//!   compare-and-swap; per worker, its requests in flight as an atomic
//!   counter, moved only by a [`worker::Lease`] (increment on select,
//!   decrement on drop, so no path can leak a count), and its adaptive
//!   limit ([`worker::Limit`]): a window of atomic sums that each call's
//!   end adds to, from which the call that completes the window computes
//!   how many calls the worker runs well at once (the rest wait in the
//!   queue); the balancer's own state, lock-free: the hashing ring is
//!   another `ArcSwap` snapshot, and pull-based keeps its idle queues in
//!   `IdleQueues`, a table of atomics; and the calls waiting over all
//!   cores ([`scheduler::WaitingCalls`]): counts, a ticket per call in
//!   order of arrival, and per core its oldest call's ticket and a waker;
//! - the running config ([`reload::LiveConfig`], another `ArcSwap`, which
//!   a shard looks at between requests);
//! - the metrics ([`metrics::Metrics`]): counters per core, each on its
//!   own cache lines, summed when scraped;
//! - the handoff table ([`handoff::Shards`]): per shard its open
//!   connections, its inbox of connections moved to it and its waker.
//!
//! Nothing on the request path takes a lock, allocates in the decision, or
//! logs at info level.
//!
//! ## The life of a request
//!
//! 1. A shard accepts the connection and reads the head into a buffer from
//!    the shard's stock (a connection quiet for 500 ms gives the buffer
//!    back, its task ends, and the shard keeps a record of it, a socket
//!    among those its one epoll descriptor watches ([`parking`]), until it
//!    is readable and a new task serves it: an idle connection holds no
//!    task and no buffer, about 0.3 KiB of hiku's memory in all
//!    (`perf/throughput --idle-connections`); a per-core sweep closes
//!    those idle past `timeouts_ms.client_idle`); [`http::parse_request`] (httparse)
//!    borrows it. [`conn::Conn`] keeps the buffers and every rule of
//!    reading and writing them.
//! 2. [`serve`] plans the request from its head, and [`route`] says where
//!    it goes. For `/run/<fn>` the scheduler selects a worker and returns a
//!    `Lease` (a small body that did not come with its head is read whole
//!    first, so the call can go again if it must).
//! 3. [`proxy`] writes the rewritten head (hop-by-hop fields removed,
//!    `X-Forwarded-For` extended) to a worker connection from the shard's
//!    pool (if idle for 50 ms or more it is peeked first: closed or holding
//!    stray bytes, it is dropped) or
//!    a new one (if that connection fails, nothing was sent: the call goes
//!    to another worker, up to `retries.connect` times), and streams the
//!    body through a fixed buffer; a small request goes out in one write,
//!    and an idempotent one is sent again if a pooled connection fails
//!    before any answer. Every wait has a limit (`timeouts_ms`): a client
//!    too slow with its head or body gets 408, a worker with no answer 504.
//! 4. The response head is rewritten the same way and the body streamed back
//!    (chunked bodies passed through, or decoded for HTTP/1.0 clients).
//! 5. Once the worker's answer is read to its end, the worker connection
//!    returns to the pool, the worker's adaptive limit hears how long the
//!    call took (or that it failed), and the balancer how it ended
//!    (pull-based records a warm idle instance for a 2xx/3xx); the lease
//!    drops. Only then do the last bytes go to the client, so its next call
//!    finds the worker idle.
//! 6. A connection hiku closes is shut down for writing and drained for a
//!    moment, so the client reads the last answer rather than a reset.
//!
//! ## Layout
//!
//! Every arrow points down: a file uses only files below it in this list,
//! and a room (a module with its folder) named on a line only rooms named
//! after it (`tests/layout.rs` checks both, and that no file leans on one
//! that leans back).
//!
//! - `main.rs`: the command line, on top of [`run`], [`Config`] and
//!   [`ask_reload`].
//! - [`app`]: start: the driver, the limits, the bound sockets, the shared
//!   state, one shard per core.
//! - [`listen`]: listeners, the accept loops, connections moved in, the
//!   stop at a drain.
//! - [`serve`]: the connection loop: head, plan, park, move, close.
//! - [`proxy`]: a call's policy: hold, wait, forward, one retry loop
//!   (connect, resend, bounce), release. [`admin`]: hiku's own endpoints;
//!   [`cluster`]: the tier's peers (changes passed on, what a starting
//!   instance takes from them).
//! - [`route`]: the endpoint table (path, listener, token, workers only),
//!   and who may call each.
//! - [`shard`]: what a core owns and its periodic tasks; [`conn`]: a
//!   client connection, its buffers and their rules, and hiku's own
//!   answers.
//! - [`reload`], [`metrics`], [`access_log`], [`queue`] (a core's waiting
//!   calls), [`handoff`] and [`steering`] (which shard serves a
//!   connection), [`parking`] (idle connections), [`pool`] (worker
//!   connections).
//! - [`config`]: the file, read as the Go original reads it, and its
//!   sections.
//! - [`scheduler`]: the shared state: snapshot, place and release,
//!   capacities, the functions' baselines, the calls waiting over all
//!   cores;
//!   [`health`]: ejection and probes.
//! - [`balancer`]: the `Balancer` trait, the kinds, one file per strategy.
//! - [`worker`]: workers, their URLs, the worker-set snapshot, leases,
//!   adaptive limits.
//! - [`probe`]: the one small HTTP client.
//! - [`http`]: parsing, framing, rewriting, chunked bodies, buffers, and
//!   moving heads and bodies over sockets.
//! - [`runtime`] (the seam to monoio: driver, shard threads, socket I/O),
//!   [`error`] (every failure and its HTTP answer), [`shutdown`]
//!   (signals, drain, exit), [`sys`], [`logger`], [`proxy_protocol`] (the
//!   header a front may send first, and the networks of
//!   `front.trusted_proxies`): the leaves.

// The essay above is for developers (`cargo doc --document-private-items`):
// it names the private rooms.
#![allow(rustdoc::private_intra_doc_links)]

mod access_log;
mod admin;
mod app;
mod balancer;
mod cluster;
mod config;
mod conn;
mod error;
mod handoff;
mod health;
pub mod http;
mod listen;
mod logger;
mod metrics;
mod parking;
mod pool;
mod probe;
mod proxy;
mod proxy_protocol;
mod queue;
mod reload;
mod route;
mod runtime;
mod scheduler;
mod serve;
mod shard;
mod shutdown;
mod steering;
mod sys;
mod worker;

/// What `hiku --version` prints after the name: the version, the commit
/// it was built from (`build.rs`) and the I/O drivers this build runs on
/// (`HIKU_IO` picks one).
pub const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("HIKU_COMMIT"), "; I/O drivers: io_uring, epoll)");

// The surface: what the binary, the benchmarks, the fuzz targets and the
// tests outside the crate use. `http` is whole: the parser is fuzzed.
pub use app::run;
pub use balancer::{hold_epoch, repin_epoch, Answer, Balancer, BalancerKind, Outcome};
pub use config::{Config, ConfigError};
pub use logger::init as init_logging;
pub use metrics::Metrics;
pub use probe::Reply;
pub use reload::ask as ask_reload;
pub use scheduler::{CallEnd, Scheduler};
pub use shutdown::handle_signals;
pub use sys::no_huge_pages;
pub use worker::{Tuning, WorkerUrl};
