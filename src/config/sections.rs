//! The config's sections, hiku's own keys: each with its defaults and how
//! it is read from the file (every value checked against its range).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::raw::{ConfigError, Section};
use crate::balancer::{DEFAULT_MAX_FUNCTIONS, DEFAULT_WORKER_CORES};
use crate::health::Health;
use crate::http::{MAX_HEAD, MAX_HEADERS};
use crate::proxy_protocol::Network;
use crate::worker::Tuning;

/// The longest timeout accepted: a day.
pub(crate) const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// The most retries accepted.
pub(crate) const MAX_RETRIES: u32 = 16;
/// The largest capacity a worker may be given.
pub(crate) const MAX_CAPACITY: u64 = 1_000_000;
/// The most `limits.buffer_body_bytes` may be: each client connection may
/// hold this much while its body arrives.
const MAX_BUFFER_BODY: u64 = 16 << 20;

/// How long hiku waits, for each thing it waits for (`timeouts_ms` in the
/// file, in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// From the first byte of a request head to its end: 408 past it.
    pub(crate) client_header: Duration,
    /// A keep-alive connection with no request: closed silently past it.
    pub(crate) client_idle: Duration,
    /// Between two bytes of a request body: 408 past it.
    pub(crate) client_body: Duration,
    /// For a connection to a worker: another worker is tried past it.
    pub(crate) upstream_connect: Duration,
    /// From the request sent to the worker's response head: 504 past it.
    pub(crate) upstream_response: Duration,
    /// A client that takes none of its answer for this long: closed.
    pub(crate) client_send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            client_header: Duration::from_secs(10),
            client_idle: Duration::from_secs(60),
            client_body: Duration::from_secs(30),
            upstream_connect: Duration::from_secs(1),
            upstream_response: Duration::from_secs(300),
            client_send: Duration::from_secs(60),
        }
    }
}

impl Timeouts {
    pub(crate) fn read(s: &Section) -> Result<Timeouts, ConfigError> {
        let d = Timeouts::default();
        let ms = |key: &str, default: Duration| s.millis(key, 1, MAX_TIMEOUT_MS, default);
        Ok(Timeouts {
            client_header: ms("client_header", d.client_header)?,
            client_idle: ms("client_idle", d.client_idle)?,
            client_body: ms("client_body", d.client_body)?,
            upstream_connect: ms("upstream_connect", d.upstream_connect)?,
            upstream_response: ms("upstream_response", d.upstream_response)?,
            client_send: ms("client_send", d.client_send)?,
        })
    }

    pub fn json(&self) -> Value {
        let ms = |d: Duration| d.as_millis() as u64;
        json!({
            "client_header": ms(self.client_header),
            "client_idle": ms(self.client_idle),
            "client_body": ms(self.client_body),
            "client_send": ms(self.client_send),
            "upstream_connect": ms(self.upstream_connect),
            "upstream_response": ms(self.upstream_response),
        })
    }
}

/// What hiku tries again (`retries` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Retries {
    /// Other workers tried when a connection to one fails: nothing was
    /// sent, so it is always safe.
    pub(crate) connect: u32,
    /// Other workers tried when one answers that it is overloaded (429, or
    /// 503 with `Retry-After`): it did not run the call. Only a request
    /// hiku still holds whole is sent again.
    pub(crate) overload: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries { connect: 2, overload: 1 }
    }
}

impl Retries {
    pub(crate) fn read(s: &Section) -> Result<Retries, ConfigError> {
        let d = Retries::default();
        let number = |key: &str, default: u32| s.number(key, 0, MAX_RETRIES.into(), default.into()).map(|n| n as u32);
        Ok(Retries { connect: number("connect", d.connect)?, overload: number("overload", d.overload)? })
    }

    pub fn json(&self) -> Value {
        json!({"connect": self.connect, "overload": self.overload})
    }
}

/// How calls wait for a worker with room (`queue` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Queue {
    /// Calls waiting at once over all cores; past it: 503.
    pub(crate) limit: usize,
    /// The longest a call waits; past it: 503.
    pub(crate) timeout: Duration,
}

impl Default for Queue {
    fn default() -> Self {
        Queue { limit: 65_536, timeout: Duration::from_secs(10) }
    }
}

impl Queue {
    pub(crate) fn read(s: &Section) -> Result<Queue, ConfigError> {
        let d = Queue::default();
        let limit = s.number("limit", 0, 10_000_000, d.limit as u64)? as usize;
        Ok(Queue { limit, timeout: s.millis("timeout_ms", 1, MAX_TIMEOUT_MS, d.timeout)? })
    }

    pub fn json(&self) -> Value {
        json!({"limit": self.limit, "timeout_ms": self.timeout.as_millis() as u64})
    }
}

/// How much a client may send (`limits` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// A request head larger than this: 431.
    pub(crate) max_header_bytes: usize,
    /// A request head with more fields: 431.
    pub(crate) max_headers: usize,
    /// A request body larger than this (by its Content-Length, or as it
    /// streams): 413.
    pub(crate) max_body_bytes: u64,
    /// A `/run` body up to this size that did not come with its head is
    /// read whole before the call goes to a worker (so it can go again to
    /// another worker if its worker is overloaded or cannot be reached); a
    /// larger one streams. 0: every such body streams.
    pub(crate) buffer_body_bytes: usize,
    /// Client connections open at once in the process; past it new ones
    /// wait in the listen backlog. `None`: half the open-file limit.
    pub(crate) max_connections: Option<usize>,
    /// Functions pull-based keeps warm-instance queues for; past it a new
    /// function takes the place of a least recently used one.
    pub(crate) max_functions: usize,
    /// Connections to one worker, in use and idle: a call holds one, so
    /// this bounds its calls in flight as a capacity does.
    pub(crate) max_connections_per_worker: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: MAX_HEAD,
            max_headers: MAX_HEADERS,
            max_body_bytes: 64 << 20,
            buffer_body_bytes: 64 * 1024,
            max_connections: None,
            max_functions: DEFAULT_MAX_FUNCTIONS,
            max_connections_per_worker: None,
        }
    }
}

impl Limits {
    pub(crate) fn read(s: &Section) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let (max_head, max_fields) = (MAX_HEAD as u64, MAX_HEADERS as u64);
        let size = |key: &str, min: u64, max: u64, default: usize| s.number(key, min, max, default as u64);
        let optional = |key: &str, max: u64| s.optional_number(key, 1, max).map(|n| n.map(|n| n as usize));
        Ok(Limits {
            max_header_bytes: size("max_header_bytes", 1024, max_head, d.max_header_bytes)? as usize,
            max_headers: size("max_headers", 1, max_fields, d.max_headers)? as usize,
            max_body_bytes: s.number("max_body_bytes", 0, u64::MAX >> 1, d.max_body_bytes)?,
            buffer_body_bytes: size("buffer_body_bytes", 0, MAX_BUFFER_BODY, d.buffer_body_bytes)? as usize,
            max_connections: optional("max_connections", 10_000_000)?,
            max_functions: size("max_functions", 8, 1 << 26, d.max_functions)? as usize,
            max_connections_per_worker: optional("max_connections_per_worker", MAX_CAPACITY)?,
        })
    }

    /// Unset bounds are `null` (no bound; `max_connections`: half the
    /// open-file limit), which reads back as unset.
    pub fn json(&self) -> Value {
        json!({
            "max_header_bytes": self.max_header_bytes,
            "max_headers": self.max_headers,
            "max_body_bytes": self.max_body_bytes,
            "buffer_body_bytes": self.buffer_body_bytes,
            "max_connections": self.max_connections,
            "max_functions": self.max_functions,
            "max_connections_per_worker": self.max_connections_per_worker,
        })
    }
}

/// Who may use `/admin/*`, and where (`admin` in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Admin {
    /// If set, `/admin/*` needs `Authorization: Bearer <token>`.
    pub(crate) token: Option<String>,
    /// If set, `/admin/*` and `/status` are served on this `host:port` only.
    pub(crate) listen: Option<String>,
}

impl Admin {
    pub(crate) fn read(s: &Section) -> Result<Admin, ConfigError> {
        let token = match s.value("token") {
            None => None,
            Some(Value::String(t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => Some(t.clone()),
            Some(_) => return Err(ConfigError("\"admin.token\" must be a non-empty string of visible ASCII".into())),
        };
        let listen = match s.value("listen") {
            None => None,
            Some(Value::String(a)) if valid_host_port(a) => Some(a.clone()),
            Some(other) => return Err(ConfigError(format!("\"admin.listen\" must be \"host:port\", not {other}"))),
        };
        Ok(Admin { token, listen })
    }

    /// The token is shown as `"(set)"`, never itself: the output may end
    /// up in a ticket or a log.
    pub fn json(&self) -> Value {
        json!({"token": self.token.as_ref().map(|_| "(set)"), "listen": self.listen})
    }
}

/// Whether `s` is `host:port` (a bracketed IPv6 host too).
fn valid_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// Who may report an evicted instance (`destroy_sandbox` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DestroySandbox {
    /// `/destroySandbox` is taken only from the address of a worker.
    pub(crate) only_from_workers: bool,
}

impl Default for DestroySandbox {
    fn default() -> Self {
        DestroySandbox { only_from_workers: true }
    }
}

impl DestroySandbox {
    pub(crate) fn read(s: &Section) -> Result<DestroySandbox, ConfigError> {
        Ok(DestroySandbox { only_from_workers: s.boolean("only_from_workers", true)? })
    }

    pub fn json(&self) -> Value {
        json!({"only_from_workers": self.only_from_workers})
    }
}

/// Each worker's adaptive limit (`adaptive` in the file): on unless
/// `enabled` is false.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Adaptive {
    pub(crate) enabled: bool,
    pub(crate) tuning: Tuning,
}

// Its numbers are finite (checked when read), so equality is one.
impl Eq for Adaptive {}

impl Default for Adaptive {
    fn default() -> Self {
        Adaptive { enabled: true, tuning: Tuning::default() }
    }
}

impl Adaptive {
    /// The most excess a tuning may name.
    const MOST_EXCESS: f64 = 1000.0;

    pub(crate) fn read(s: &Section) -> Result<Adaptive, ConfigError> {
        let d = Tuning::default();
        let count = |key: &str, default: u32| s.number(key, 1, MAX_CAPACITY, default.into()).map(|n| n as u32);
        let excess = |key: &str, default: f64| s.float(key, 0.0, Adaptive::MOST_EXCESS, default);
        let min_call_ms = s.float("min_call_ms", 0.0, MAX_TIMEOUT_MS as f64, d.min_call_us as f64 / 1000.0)?;
        let tuning = Tuning {
            initial: count("initial", d.initial)?,
            min: count("min", d.min)?,
            low: excess("low", d.low)?,
            high: excess("high", d.high)?,
            min_call_us: (min_call_ms * 1000.0).round() as u64,
            instances: 1,
        };
        if tuning.low >= tuning.high {
            return Err(ConfigError(format!(
                "\"adaptive.low\" ({}) must be less than \"adaptive.high\" ({})",
                tuning.low, tuning.high
            )));
        }
        Ok(Adaptive { enabled: s.boolean("enabled", true)?, tuning })
    }

    /// The tuning if it is on.
    pub(crate) fn tuning(&self) -> Option<Tuning> {
        self.enabled.then_some(self.tuning)
    }

    pub fn json(&self) -> Value {
        let t = &self.tuning;
        json!({
            "enabled": self.enabled,
            "initial": t.initial,
            "min": t.min,
            "low": t.low,
            "high": t.high,
            "min_call_ms": t.min_call_us as f64 / 1000.0,
        })
    }
}

/// The predictive balancer's view of the workers (`predictive` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Predictive {
    /// The cores each worker runs calls on, as it prices a worker's load.
    pub(crate) worker_cores: u64,
}

impl Default for Predictive {
    fn default() -> Self {
        Predictive { worker_cores: DEFAULT_WORKER_CORES }
    }
}

impl Predictive {
    pub(crate) fn read(s: &Section) -> Result<Predictive, ConfigError> {
        Ok(Predictive { worker_cores: s.number("worker_cores", 1, 4096, Predictive::default().worker_cores)? })
    }

    pub fn json(&self) -> Value {
        json!({"worker_cores": self.worker_cores})
    }
}

/// What hiku writes down (`log` in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Log {
    /// Where to write a line per `/run` call, if anywhere.
    pub(crate) access: Option<PathBuf>,
}

impl Log {
    pub(crate) fn read(s: &Section) -> Result<Log, ConfigError> {
        let access = match s.value("access") {
            None => None,
            Some(Value::String(path)) if !path.is_empty() => Some(PathBuf::from(path)),
            Some(other) => return Err(ConfigError(format!("\"log.access\" must be a file path, not {other}"))),
        };
        Ok(Log { access })
    }

    pub fn json(&self) -> Value {
        json!({"access": self.access.as_ref().map(|p| p.display().to_string())})
    }
}

/// What hiku takes from a front (HAProxy) in front of it (`front` in the file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Front {
    /// Every connection to `host:port` starts with a PROXY protocol header
    /// (v1 or v2) naming the client; one without it is refused.
    pub(crate) proxy_protocol: bool,
    /// The client of a request from a trusted front is the last address of
    /// its `X-Forwarded-For` (the one the front added): for a front that
    /// cannot send the PROXY protocol (nginx).
    pub(crate) forwarded_for: bool,
    /// The addresses and networks a PROXY header or `X-Forwarded-For` is
    /// taken from: a PROXY connection from anywhere else is refused, an
    /// `X-Forwarded-For` from anywhere else ignored.
    pub(crate) trusted_proxies: Vec<Network>,
}

impl Front {
    pub(crate) fn read(s: &Section) -> Result<Front, ConfigError> {
        let proxy_protocol = s.boolean("proxy_protocol", false)?;
        let forwarded_for = s.boolean("forwarded_for", false)?;
        let mut trusted_proxies = Vec::new();
        for text in s.get::<Vec<String>>("trusted_proxies")?.unwrap_or_default() {
            let network = Network::parse(&text).map_err(|e| ConfigError(format!("\"front.trusted_proxies\": {e}")))?;
            trusted_proxies.push(network);
        }
        if proxy_protocol && forwarded_for {
            return Err(ConfigError("\"front.proxy_protocol\" and \"front.forwarded_for\": one or the other".into()));
        }
        if (proxy_protocol || forwarded_for) && trusted_proxies.is_empty() {
            let key = if proxy_protocol { "proxy_protocol" } else { "forwarded_for" };
            return Err(ConfigError(format!("\"front.{key}\" needs \"front.trusted_proxies\": the fronts' addresses")));
        }
        Ok(Front { proxy_protocol, forwarded_for, trusted_proxies })
    }

    pub fn json(&self) -> Value {
        let trusted: Vec<String> = self.trusted_proxies.iter().map(|n| n.to_string()).collect();
        json!({
            "proxy_protocol": self.proxy_protocol,
            "forwarded_for": self.forwarded_for,
            "trusted_proxies": trusted,
        })
    }

    /// Whether a PROXY header is taken from `peer`.
    pub(crate) fn trusts(&self, peer: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(peer))
    }
}

/// The tier this instance is one of (`cluster` in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cluster {
    /// Instances in the tier: each worker's capacity is shared between
    /// them, each instance taking its part (rounded down, at least 1).
    pub(crate) size: usize,
    /// The other instances' admin addresses (`host:port`), which an admin
    /// change made here is passed on to.
    pub(crate) peers: Vec<String>,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster { size: 1, peers: Vec::new() }
    }
}

impl Cluster {
    pub(crate) fn read(s: &Section) -> Result<Cluster, ConfigError> {
        let size = s.number("size", 1, 1024, 1)? as usize;
        let peers = s.get::<Vec<String>>("peers")?.unwrap_or_default();
        if let Some(bad) = peers.iter().find(|p| !valid_host_port(p)) {
            return Err(ConfigError(format!("\"cluster.peers\": each must be \"host:port\", not {bad:?}")));
        }
        Ok(Cluster { size, peers })
    }

    pub fn json(&self) -> Value {
        json!({"size": self.size, "peers": self.peers})
    }

    /// This instance's part of a capacity of `n` calls.
    pub(crate) fn share(&self, n: usize) -> usize {
        (n / self.size).max(1)
    }
}

/// When workers are ejected (`health` in the file).
pub(crate) fn read_health(s: &Section) -> Result<Health, ConfigError> {
    let d = Health::default();
    let interval = s.optional_number("interval_ms", 100, MAX_TIMEOUT_MS)?.map(Duration::from_millis);
    Ok(Health {
        eject_after: s.number("eject_after", 0, 1000, d.eject_after.into())? as u32,
        max_ejected_percent: s.number("max_ejected_percent", 0, 100, d.max_ejected_percent.into())? as u32,
        interval,
    })
}

/// `health` as the config writes it (an unset interval: `null`).
pub fn health_json(h: &Health) -> Value {
    json!({
        "eject_after": h.eject_after,
        "max_ejected_percent": h.max_ejected_percent,
        "interval_ms": h.interval.map(|d| d.as_millis() as u64),
    })
}
