//! What `perf/throughput` is asked to measure, and what every
//! measurement shares: the contenders, the options, the request body and
//! the timeouts.

use std::path::PathBuf;
use std::time::Duration;

/// The body of every request.
pub const BODY: &[u8] = br#"{"param0": "value0"}"#;
/// Upstream servers behind every contender.
pub const UPSTREAMS: usize = 2;
/// A request unanswered this long is an error (wrk's default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// What stands between the generator and the upstreams.
#[derive(Debug, Clone)]
pub enum Proxy {
    /// Nothing: the generator's connections alternate between the upstreams.
    Direct,
    /// A binary with the Go original's `start -c <config>` interface, with
    /// arguments after it and variables added to its environment; `hiku`
    /// if it takes hiku's `--cores` (the Go original gets `GOMAXPROCS`).
    Scheduler { binary: PathBuf, extra: Vec<String>, env: Vec<(String, String)>, hiku: bool },
    /// nginx as a least-connections keep-alive reverse proxy.
    Nginx { binary: PathBuf },
    /// HAProxy (2.6+) the same way: a thread per core, least connections,
    /// keep-alive on both sides, idle server connections shared by all.
    Haproxy { binary: PathBuf },
    /// A tier: `instances` hiku instances (`extra` after `start -c
    /// <config>`) behind HAProxy on the front config hiku ships.
    Tier { hiku: PathBuf, haproxy: PathBuf, instances: usize, extra: Vec<String> },
}

/// What answers behind the proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `hiku-upstream`: one thread, one event loop for every port, a
    /// preformatted answer; as cheap as a server gets.
    HikuUpstream(PathBuf),
    /// nginx, one worker process serving every port, `return 200` from a
    /// `location`: what a real server costs, closer to it.
    Nginx(PathBuf),
}

/// A proxy (or none) and the label of its rows.
#[derive(Debug, Clone)]
pub struct Contender {
    pub label: String,
    pub proxy: Proxy,
}

/// What to measure, and how long.
#[derive(Debug, Clone)]
pub struct Options {
    pub contenders: Vec<Contender>,
    pub backend: Backend,
    /// The balancer in the schedulers' config.
    pub balancer: String,
    /// Cores for the proxy, each measured in turn: nginx's worker
    /// processes, HAProxy's threads, hiku's `--cores` and the Go original's
    /// `GOMAXPROCS` when `cores_given`.
    pub cores: Vec<usize>,
    /// The cores were asked for (`--cores`, `--tail`): schedulers are told;
    /// otherwise they take every core, as they would by themselves.
    pub cores_given: bool,
    pub connections: Vec<usize>,
    pub rounds: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The counted window after the measured one (zero for none).
    pub counted: Duration,
    /// A `perf` that can trace system calls here, or `None` (those
    /// columns are then missing).
    pub perf: Option<PathBuf>,
    /// A new connection for every call (`Connection: close` on each).
    pub new_connection: bool,
    /// The tail mode: the slowest calls (p99.99, max, timeouts) are the
    /// point, and every connection's first call counts.
    pub tail: bool,
    /// Show progress on stderr.
    pub progress: bool,
}
