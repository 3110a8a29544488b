//! The JSON config file: the Go original's keys and defaults, validated once.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::balancer::BalancerKind;
use crate::health::Health;
use crate::scheduler::Capacities;
use crate::worker::WorkerUrl;

/// What `hiku start` needs to run, as read from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub balancer: BalancerKind,
    pub workers: Vec<WorkerUrl>,
    /// `max_inflight` of the workers listed as objects.
    pub worker_max_inflight: Vec<(WorkerUrl, usize)>,
    /// `workers_max_inflight`: the capacity of every other worker, if any.
    pub workers_max_inflight: Option<usize>,
    /// `queue`: how calls wait when every worker is full.
    pub queue: Queue,
    /// `timeouts_ms`: hiku's own key, not the Go original's.
    pub timeouts: Timeouts,
    /// `retries`: hiku's own key.
    pub retries: Retries,
    /// `shutdown_grace_ms`: how long a drain waits for calls in flight.
    pub shutdown_grace: Duration,
    /// `limits`: hiku's own key.
    pub limits: Limits,
    /// `admin.token`: if set, `/admin/*` needs `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// `admin.listen`: if set, `/admin/*` and `/status` are served on this
    /// `host:port` only.
    pub admin_listen: Option<String>,
    /// `destroy_sandbox.only_from_workers`: `/destroySandbox` is taken only
    /// from the address of a worker.
    pub destroy_only_from_workers: bool,
    /// `predictive.worker_cores`: the cores each worker runs calls on, as
    /// the predictive balancer prices a worker's load.
    pub worker_cores: u64,
    /// `health`: when workers are ejected.
    pub health: Health,
    /// `log.access`: where to write a line per `/run` call, if anywhere.
    pub access_log: Option<std::path::PathBuf>,
    /// Keys the file has that hiku does not know (reported as warnings).
    pub unknown_keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "localhost".into(),
            port: 9020,
            balancer: BalancerKind::PullBased,
            workers: Vec::new(),
            worker_max_inflight: Vec::new(),
            workers_max_inflight: None,
            queue: Queue::default(),
            timeouts: Timeouts::default(),
            retries: Retries::default(),
            shutdown_grace: Duration::from_secs(30),
            limits: Limits::default(),
            admin_token: None,
            admin_listen: None,
            destroy_only_from_workers: true,
            worker_cores: crate::balancer::DEFAULT_WORKER_CORES,
            access_log: None,
            health: Health::default(),
            unknown_keys: Vec::new(),
        }
    }
}

/// How long hiku waits, for each thing it waits for (`timeouts_ms` in the
/// file, in milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the first byte of a request head to its end: 408 past it.
    pub client_header: Duration,
    /// A keep-alive connection with no request: closed silently past it.
    pub client_idle: Duration,
    /// Between two bytes of a request body: 408 past it.
    pub client_body: Duration,
    /// For a connection to a worker: another worker is tried past it.
    pub upstream_connect: Duration,
    /// From the request sent to the worker's response head: 504 past it.
    pub upstream_response: Duration,
    /// A client that takes none of its answer for this long: closed.
    pub client_send: Duration,
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

/// What hiku tries again (`retries` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Other workers tried when a connection to one fails: nothing was
    /// sent, so it is always safe.
    pub connect: u32,
    /// Other workers tried when one answers that it is overloaded (429, or
    /// 503 with `Retry-After`): it did not run the call. Only a request
    /// hiku still holds whole is sent again.
    pub overload: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Retries { connect: 2, overload: 1 }
    }
}

/// How calls wait for a worker with room (`queue` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Calls waiting at once over all cores; past it: 503.
    pub limit: usize,
    /// The longest a call waits; past it: 503.
    pub timeout: Duration,
}

impl Default for Queue {
    fn default() -> Self {
        Queue { limit: 1024, timeout: Duration::from_secs(10) }
    }
}

/// How much a client may send (`limits` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request head larger than this: 431.
    pub max_header_bytes: usize,
    /// A request head with more fields: 431.
    pub max_headers: usize,
    /// A request body larger than this (by its Content-Length, or as it
    /// streams): 413.
    pub max_body_bytes: u64,
    /// A `/run` body up to this size that did not come with its head is
    /// read whole before the call goes to a worker (so it can go again to
    /// another worker if its worker is overloaded or cannot be reached); a
    /// larger one streams. 0: every such body streams.
    pub buffer_body_bytes: usize,
    /// Client connections open at once in the process; past it new ones
    /// wait in the listen backlog. `None`: half the open-file limit.
    pub max_connections: Option<usize>,
    /// Functions pull-based keeps warm-instance queues for; past it a new
    /// function takes the place of a least recently used one.
    pub max_functions: usize,
    /// Connections to one worker, in use and idle: a call holds one, so
    /// this bounds its calls in flight as a capacity does.
    pub max_connections_per_worker: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: crate::http::MAX_HEAD,
            max_headers: crate::http::MAX_HEADERS,
            max_body_bytes: 64 << 20,
            buffer_body_bytes: 64 * 1024,
            max_connections: None,
            max_functions: crate::balancer::DEFAULT_MAX_FUNCTIONS,
            max_connections_per_worker: None,
        }
    }
}

/// The keys hiku reads: the Go original's, then hiku's own.
const KEYS: [&str; 15] = [
    "host",
    "port",
    "balancer",
    "workers",
    "workers_max_inflight",
    "queue",
    "timeouts_ms",
    "retries",
    "shutdown_grace_ms",
    "limits",
    "admin",
    "destroy_sandbox",
    "predictive",
    "log",
    "health",
];
/// The keys of `limits`.
const LIMIT_KEYS: [&str; 7] = [
    "max_header_bytes",
    "max_headers",
    "max_body_bytes",
    "buffer_body_bytes",
    "max_connections",
    "max_functions",
    "max_connections_per_worker",
];
/// The largest capacity a worker may be given.
const MAX_CAPACITY: u64 = 1_000_000;
/// The keys of `timeouts_ms`.
const TIMEOUT_KEYS: [&str; 6] =
    ["client_header", "client_idle", "client_body", "client_send", "upstream_connect", "upstream_response"];
/// The longest timeout accepted: a day.
const MAX_TIMEOUT_MS: u64 = 86_400_000;
/// The most retries accepted.
pub const MAX_RETRIES: u32 = 16;

/// The file's top-level object, read as Go's `encoding/json` reads it into
/// the original's struct, so that every file it accepts starts here too:
/// keys match case-insensitively (an exact match first), the last of
/// repeated keys wins, `null` means absent, and whatever follows the first
/// JSON value is ignored.
struct RawConfig {
    map: serde_json::Map<String, serde_json::Value>,
}

impl RawConfig {
    fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        let json_error =
            |e: serde_json::Error| ConfigError(format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()));
        let mut values = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Map<_, _>>();
        match values.next() {
            Some(map) => Ok(RawConfig { map: map.map_err(json_error)? }),
            None => Err(ConfigError("the config is empty: expected a JSON object".into())),
        }
    }

    /// The value of `key`, deserialized; `None` if absent or null.
    fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, ConfigError> {
        let value =
            self.map.get(key).or_else(|| self.map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v));
        match value {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => T::deserialize(v).map(Some).map_err(|e| ConfigError(format!("\"{key}\": {e}"))),
        }
    }

    /// The object under `key` (hiku's own keys are matched exactly), or an
    /// empty one if absent or null.
    fn section(&self, key: &str) -> Result<RawConfig, ConfigError> {
        match self.map.get(key) {
            None | Some(serde_json::Value::Null) => Ok(RawConfig { map: serde_json::Map::new() }),
            Some(serde_json::Value::Object(map)) => Ok(RawConfig { map: map.clone() }),
            Some(other) => Err(ConfigError(format!("\"{key}\" must be an object, not {other}"))),
        }
    }

    /// The keys not among `known` (compared ignoring case), as `prefix` + key.
    fn unknown_keys(&self, known: &[&str], prefix: &str) -> Vec<String> {
        let is_known = |k: &String| known.iter().any(|known| k.eq_ignore_ascii_case(known));
        self.map.keys().filter(|k| !is_known(k)).map(|k| format!("{prefix}{k}")).collect()
    }

    /// A whole number at `key` (named `name` in errors) between `min` and
    /// `max`, or `default`.
    fn number(&self, key: &str, name: &str, min: u64, max: u64, default: u64) -> Result<u64, ConfigError> {
        let bad = || ConfigError(format!("\"{name}\" must be a whole number from {min} to {max}"));
        match self.map.get(key) {
            None | Some(serde_json::Value::Null) => Ok(default),
            Some(v) => v.as_u64().filter(|n| (min..=max).contains(n)).ok_or_else(bad),
        }
    }
}

fn parse_timeouts(raw: &RawConfig) -> Result<Timeouts, ConfigError> {
    let section = raw.section("timeouts_ms")?;
    let defaults = Timeouts::default();
    let ms = |key: &str, default: Duration| {
        let name = format!("timeouts_ms.{key}");
        section.number(key, &name, 1, MAX_TIMEOUT_MS, default.as_millis() as u64).map(Duration::from_millis)
    };
    Ok(Timeouts {
        client_header: ms("client_header", defaults.client_header)?,
        client_idle: ms("client_idle", defaults.client_idle)?,
        client_body: ms("client_body", defaults.client_body)?,
        upstream_connect: ms("upstream_connect", defaults.upstream_connect)?,
        upstream_response: ms("upstream_response", defaults.upstream_response)?,
        client_send: ms("client_send", defaults.client_send)?,
    })
}

/// The most `limits.buffer_body_bytes` may be: each client connection may
/// hold this much while its body arrives.
const MAX_BUFFER_BODY: u64 = 16 << 20;

fn parse_limits(raw: &RawConfig) -> Result<Limits, ConfigError> {
    let section = raw.section("limits")?;
    let d = Limits::default();
    let max_head = crate::http::MAX_HEAD as u64;
    let max_fields = crate::http::MAX_HEADERS as u64;
    let number =
        |key: &str, min: u64, max: u64, default: u64| section.number(key, &format!("limits.{key}"), min, max, default);
    let optional = |key: &str, max: u64| match section.map.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => number(key, 1, max, 0).map(|n| Some(n as usize)),
    };
    let connections = optional("max_connections", 10_000_000)?;
    Ok(Limits {
        max_header_bytes: number("max_header_bytes", 1024, max_head, d.max_header_bytes as u64)? as usize,
        max_headers: number("max_headers", 1, max_fields, d.max_headers as u64)? as usize,
        max_body_bytes: number("max_body_bytes", 0, u64::MAX >> 1, d.max_body_bytes)?,
        buffer_body_bytes: number("buffer_body_bytes", 0, MAX_BUFFER_BODY, d.buffer_body_bytes as u64)? as usize,
        max_connections: connections,
        max_functions: number("max_functions", 8, 1 << 26, d.max_functions as u64)? as usize,
        max_connections_per_worker: optional("max_connections_per_worker", MAX_CAPACITY)?,
    })
}

fn parse_queue(raw: &RawConfig) -> Result<Queue, ConfigError> {
    let section = raw.section("queue")?;
    let d = Queue::default();
    let limit = section.number("limit", "queue.limit", 0, 10_000_000, d.limit as u64)? as usize;
    let ms = section.number("timeout_ms", "queue.timeout_ms", 1, MAX_TIMEOUT_MS, d.timeout.as_millis() as u64)?;
    Ok(Queue { limit, timeout: Duration::from_millis(ms) })
}

/// The workers' URLs, and the capacities some were given.
type WorkerList = (Vec<WorkerUrl>, Vec<(WorkerUrl, usize)>);

/// The `workers` list: each a URL, or an object with `url` and optionally
/// `max_inflight`.
fn parse_workers(raw: &RawConfig) -> Result<WorkerList, ConfigError> {
    let mut workers: Vec<WorkerUrl> = Vec::new();
    let mut capacities = Vec::new();
    let bad_entry = |other: &serde_json::Value| {
        ConfigError(format!("\"workers\": each must be a URL or {{\"url\": URL, \"max_inflight\": N}}, not {other}"))
    };
    for entry in raw.get::<Vec<serde_json::Value>>("workers")?.unwrap_or_default() {
        let (text, capacity) = match &entry {
            serde_json::Value::String(text) => (text.as_str(), None),
            serde_json::Value::Object(map) => {
                if let Some(key) = map.keys().find(|k| !matches!(k.as_str(), "url" | "max_inflight")) {
                    return Err(ConfigError(format!("\"workers\": unknown key {key:?} in {entry}")));
                }
                let text = map.get("url").and_then(|u| u.as_str()).ok_or_else(|| bad_entry(&entry))?;
                let capacity = match map.get("max_inflight") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(n) => Some(n.as_u64().filter(|n| (1..=MAX_CAPACITY).contains(n)).ok_or_else(|| {
                        ConfigError(format!(
                            "\"workers\": max_inflight of {text} must be a whole number from 1 to {MAX_CAPACITY}"
                        ))
                    })? as usize),
                };
                (text, capacity)
            }
            other => return Err(bad_entry(other)),
        };
        let url = WorkerUrl::parse(text).map_err(|e| ConfigError(format!("\"workers\": {e}")))?;
        if workers.contains(&url) {
            return Err(ConfigError(format!("\"workers\": {url} is listed twice")));
        }
        if let Some(capacity) = capacity {
            capacities.push((url.clone(), capacity));
        }
        workers.push(url);
    }
    Ok((workers, capacities))
}

fn parse_retries(raw: &RawConfig) -> Result<Retries, ConfigError> {
    let section = raw.section("retries")?;
    let d = Retries::default();
    let number = |key: &str, default: u32| {
        section.number(key, &format!("retries.{key}"), 0, MAX_RETRIES.into(), default.into()).map(|n| n as u32)
    };
    Ok(Retries { connect: number("connect", d.connect)?, overload: number("overload", d.overload)? })
}

/// A config that can't be used; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let raw = RawConfig::parse(text)?;
        let defaults = Config::default();
        let host = raw.get::<String>("host")?.unwrap_or(defaults.host);
        if host.is_empty() {
            return Err(ConfigError("\"host\" must not be empty".into()));
        }
        let port = match raw.get::<i64>("port")? {
            None => defaults.port,
            Some(p) => u16::try_from(p).map_err(|_| ConfigError(format!("\"port\" {p} is out of range (0-65535)")))?,
        };
        let balancer = match raw.get::<String>("balancer")? {
            None => defaults.balancer,
            Some(name) => name.parse().map_err(ConfigError)?,
        };
        let (workers, worker_max_inflight) = parse_workers(&raw)?;
        let workers_max_inflight = match raw.map.get("workers_max_inflight") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => Some(raw.number("workers_max_inflight", "workers_max_inflight", 1, MAX_CAPACITY, 0)? as usize),
        };
        let queue = parse_queue(&raw)?;
        let timeouts = parse_timeouts(&raw)?;
        let grace_ms = defaults.shutdown_grace.as_millis() as u64;
        let grace_ms = raw.number("shutdown_grace_ms", "shutdown_grace_ms", 0, MAX_TIMEOUT_MS, grace_ms)?;
        let shutdown_grace = Duration::from_millis(grace_ms);
        let limits = parse_limits(&raw)?;
        let admin = raw.section("admin")?;
        let admin_token = match admin.map.get("token") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(t)) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()) => {
                Some(t.clone())
            }
            Some(_) => return Err(ConfigError("\"admin.token\" must be a non-empty string of visible ASCII".into())),
        };
        let admin_listen = match admin.map.get("listen") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(a)) if valid_host_port(a) => Some(a.clone()),
            Some(other) => return Err(ConfigError(format!("\"admin.listen\" must be \"host:port\", not {other}"))),
        };
        let destroy = raw.section("destroy_sandbox")?;
        let destroy_only_from_workers = match destroy.map.get("only_from_workers") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => return Err(ConfigError("\"destroy_sandbox.only_from_workers\" must be true or false".into())),
        };
        let retries = parse_retries(&raw)?;
        let predictive = raw.section("predictive")?;
        let worker_cores =
            predictive.number("worker_cores", "predictive.worker_cores", 1, 4096, defaults.worker_cores)?;
        let health_section = raw.section("health")?;
        let d = Health::default();
        let interval = match health_section.map.get("interval_ms") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => {
                let ms = health_section.number("interval_ms", "health.interval_ms", 100, MAX_TIMEOUT_MS, 0)?;
                Some(Duration::from_millis(ms))
            }
        };
        let health = Health {
            eject_after: health_section.number("eject_after", "health.eject_after", 0, 1000, d.eject_after.into())?
                as u32,
            max_ejected_percent: health_section.number(
                "max_ejected_percent",
                "health.max_ejected_percent",
                0,
                100,
                d.max_ejected_percent.into(),
            )? as u32,
            interval,
        };
        let log_section = raw.section("log")?;
        let access_log = match log_section.map.get("access") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(path)) if !path.is_empty() => Some(std::path::PathBuf::from(path)),
            Some(other) => return Err(ConfigError(format!("\"log.access\" must be a file path, not {other}"))),
        };
        let mut unknown_keys = raw.unknown_keys(&KEYS, "");
        unknown_keys.extend(raw.section("timeouts_ms")?.unknown_keys(&TIMEOUT_KEYS, "timeouts_ms."));
        unknown_keys.extend(raw.section("retries")?.unknown_keys(&["connect", "overload"], "retries."));
        unknown_keys.extend(raw.section("limits")?.unknown_keys(&LIMIT_KEYS, "limits."));
        unknown_keys.extend(raw.section("queue")?.unknown_keys(&["limit", "timeout_ms"], "queue."));
        unknown_keys.extend(admin.unknown_keys(&["token", "listen"], "admin."));
        unknown_keys.extend(destroy.unknown_keys(&["only_from_workers"], "destroy_sandbox."));
        unknown_keys.extend(predictive.unknown_keys(&["worker_cores"], "predictive."));
        unknown_keys.extend(log_section.unknown_keys(&["access"], "log."));
        unknown_keys
            .extend(health_section.unknown_keys(&["eject_after", "max_ejected_percent", "interval_ms"], "health."));
        Ok(Config {
            host,
            port,
            balancer,
            workers,
            worker_max_inflight,
            workers_max_inflight,
            queue,
            timeouts,
            retries,
            shutdown_grace,
            limits,
            admin_token,
            admin_listen,
            destroy_only_from_workers,
            worker_cores,
            access_log,
            health,
            unknown_keys,
        })
    }

    /// The addresses to listen on for `host:port`, IPv4 first (as Go's
    /// `net.Listen` does for "localhost").
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        first_addr((self.host.as_str(), self.port), "host", &self.host)
    }

    /// The address of `admin.listen`, if set.
    pub fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.admin_listen else { return Ok(None) };
        first_addr(listen.as_str(), "admin.listen", listen).map(Some)
    }
}

/// Whether `s` is `host:port` (a bracketed IPv6 host too).
fn valid_host_port(s: &str) -> bool {
    s.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// The first address `addr` resolves to, IPv4 first; errors name `key`.
fn first_addr(addr: impl ToSocketAddrs, key: &str, shown: &str) -> Result<SocketAddr, ConfigError> {
    let mut addrs: Vec<SocketAddr> =
        addr.to_socket_addrs().map_err(|e| ConfigError(format!("cannot resolve \"{key}\" {shown}: {e}")))?.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.into_iter().next().ok_or_else(|| ConfigError(format!("\"{key}\" {shown} resolves to no address")))
}

impl Config {
    /// The capacity of workers without one of their own (and of workers
    /// added later): `workers_max_inflight`, at most
    /// `limits.max_connections_per_worker`; `None`: no bound.
    pub fn default_capacity(&self) -> Option<usize> {
        min_bound(self.workers_max_inflight, self.limits.max_connections_per_worker)
    }

    /// Every worker's capacity, as the config says.
    pub fn capacities(&self) -> Capacities {
        let cap = self.limits.max_connections_per_worker;
        let own = self.worker_max_inflight.iter().map(|(url, n)| (url.clone(), min_bound(Some(*n), cap))).collect();
        Capacities { default: self.default_capacity(), own }
    }
}

/// The lower of two optional bounds (`None`: no bound).
fn min_bound(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_go_original() {
        let c = Config::parse("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!((c.host.as_str(), c.port, c.balancer), ("localhost", 9020, BalancerKind::PullBased));
    }

    #[test]
    fn reads_every_key_and_reports_unknown_ones() {
        let c = Config::parse(
            r#"{"host":"0.0.0.0","port":8080,"balancer":"random","workers":["http://a:1","http://B:2/"],"x":1}"#,
        )
        .unwrap();
        assert_eq!(c.host, "0.0.0.0");
        assert_eq!(c.port, 8080);
        assert_eq!(c.balancer, BalancerKind::Random);
        let urls: Vec<&str> = c.workers.iter().map(|w| w.as_str()).collect();
        assert_eq!(urls, ["http://a:1", "http://b:2"]);
        assert_eq!(c.unknown_keys, ["x"]);
    }

    #[test]
    fn reads_what_go_reads() {
        // Keys in any case (an exact match first), the last of repeated
        // keys, null as absent, and nothing after the first value matters.
        let c =
            Config::parse(r#"{"Port": 8080, "BALANCER": "random", "workers": null, "port": 1, "port": 7} trailing"#)
                .unwrap();
        assert_eq!((c.port, c.balancer, c.workers.len()), (7, BalancerKind::Random, 0));
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        let c = Config::parse(r#"{"Workers": ["http://a:1"], "Host": "0.0.0.0"}"#).unwrap();
        assert_eq!((c.host.as_str(), c.workers.len()), ("0.0.0.0", 1));
        assert!(Config::parse("").unwrap_err().0.contains("empty"));
        assert!(Config::parse("[]").unwrap_err().0.contains("line 1 column"));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |t: &str| Config::parse(t).unwrap_err().0;
        assert!(err("{\"port\": 1,\n}").contains("line 2 column 1"));
        assert!(err(r#"{"port": 70000}"#).contains("\"port\" 70000 is out of range"));
        assert!(err(r#"{"port": -1}"#).contains("\"port\""));
        assert!(err(r#"{"port": "9020"}"#).contains("\"port\": invalid type: string"));
        assert!(err(r#"{"workers": "http://a:1"}"#).contains("\"workers\": invalid type"));
        let e = err(r#"{"balancer": "round-robin"}"#);
        assert!(e.contains("round-robin") && e.contains("pull-based"), "{e}");
        assert!(err(r#"{"workers": ["localhost:5000"]}"#).contains("\"localhost:5000\""));
        assert!(err(r#"{"workers": ["http://a:1", "http://A:1/"]}"#).contains("http://a:1 is listed twice"));
    }

    #[test]
    fn timeouts_and_retries_have_safe_defaults_and_are_checked() {
        let c = Config::parse("{}").unwrap();
        let ms = |d: Duration| d.as_millis();
        let t = c.timeouts;
        assert_eq!(
            [t.client_header, t.client_idle, t.client_body, t.upstream_connect, t.upstream_response].map(ms),
            [10_000, 60_000, 30_000, 1_000, 300_000]
        );
        assert_eq!(ms(t.client_send), 60_000);
        assert_eq!((c.retries.connect, c.retries.overload), (2, 1));
        assert_eq!(ms(c.shutdown_grace), 30_000);
        assert_eq!(ms(Config::parse(r#"{"shutdown_grace_ms": 0}"#).unwrap().shutdown_grace), 0);

        let c = Config::parse(
            r#"{"timeouts_ms": {"client_header": 5, "upstream_response": 7000, "client_headr": 1},
                "retries": {"connect": 0, "overload": 3, "overlaod": 1}}"#,
        )
        .unwrap();
        assert_eq!((ms(c.timeouts.client_header), ms(c.timeouts.upstream_response)), (5, 7000));
        assert_eq!(ms(c.timeouts.client_idle), 60_000, "the others keep their defaults");
        assert_eq!((c.retries.connect, c.retries.overload), (0, 3));
        assert_eq!(c.unknown_keys, ["timeouts_ms.client_headr", "retries.overlaod"]);
        assert_eq!(Config::parse(r#"{"timeouts_ms": null, "retries": {}}"#).unwrap(), Config::default());

        let err = |t: &str| Config::parse(t).unwrap_err().0;
        for (bad, message) in [
            (r#"{"timeouts_ms": {"client_idle": 0}}"#, "\"timeouts_ms.client_idle\" must be a whole number from 1 to"),
            (r#"{"timeouts_ms": {"client_body": -5}}"#, "\"timeouts_ms.client_body\" must be"),
            (r#"{"timeouts_ms": {"upstream_connect": 1.5}}"#, "\"timeouts_ms.upstream_connect\" must be"),
            (r#"{"timeouts_ms": {"upstream_response": "5s"}}"#, "\"timeouts_ms.upstream_response\" must be"),
            (r#"{"timeouts_ms": {"client_header": 86400001}}"#, "from 1 to 86400000"),
            (r#"{"timeouts_ms": 5}"#, "\"timeouts_ms\" must be an object"),
            (r#"{"retries": {"connect": 17}}"#, "\"retries.connect\" must be a whole number from 0 to 16"),
            (r#"{"retries": {"overload": -1}}"#, "\"retries.overload\" must be a whole number from 0 to 16"),
            (r#"{"retries": []}"#, "\"retries\" must be an object"),
            (r#"{"shutdown_grace_ms": -1}"#, "\"shutdown_grace_ms\" must be a whole number from 0 to 86400000"),
        ] {
            assert!(err(bad).contains(message), "{bad}: {}", err(bad));
        }
    }

    #[test]
    fn limits_have_safe_defaults_and_are_checked() {
        let l = Config::parse("{}").unwrap().limits;
        assert_eq!(
            (l.max_header_bytes, l.max_headers, l.max_body_bytes, l.buffer_body_bytes, l.max_connections),
            (16384, 100, 64 << 20, 65536, None)
        );
        let c = Config::parse(
            r#"{"limits": {"max_header_bytes": 2048, "max_headers": 10, "max_body_bytes": 0, "buffer_body_bytes": 0,
                "max_connections": 5, "x": 1}}"#,
        )
        .unwrap();
        let l = c.limits;
        assert_eq!(
            (l.max_header_bytes, l.max_headers, l.max_body_bytes, l.buffer_body_bytes, l.max_connections),
            (2048, 10, 0, 0, Some(5))
        );
        assert_eq!(c.unknown_keys, ["limits.x"]);
        let err = |t: &str| Config::parse(t).unwrap_err().0;
        for (bad, message) in [
            (
                r#"{"limits": {"max_header_bytes": 100000}}"#,
                "\"limits.max_header_bytes\" must be a whole number from 1024 to 16384",
            ),
            (r#"{"limits": {"max_headers": 0}}"#, "\"limits.max_headers\" must be a whole number from 1 to 100"),
            (r#"{"limits": {"max_body_bytes": -1}}"#, "\"limits.max_body_bytes\""),
            (r#"{"limits": {"max_connections": 0}}"#, "\"limits.max_connections\" must be a whole number from 1"),
            (
                r#"{"limits": {"buffer_body_bytes": 16777217}}"#,
                "\"limits.buffer_body_bytes\" must be a whole number from 0 to 16777216",
            ),
            (
                r#"{"limits": {"max_functions": 4}}"#,
                "\"limits.max_functions\" must be a whole number from 8 to 67108864",
            ),
        ] {
            assert!(err(bad).contains(message), "{bad}: {}", err(bad));
        }
    }

    #[test]
    fn workers_may_have_a_capacity_and_calls_a_queue() {
        let c = Config::parse("{}").unwrap();
        assert_eq!((c.default_capacity(), c.queue.limit, c.queue.timeout.as_millis()), (None, 1024, 10_000));
        let c = Config::parse(
            r#"{"workers": ["http://a:1", {"url": "http://b:1", "max_inflight": 8}, {"url": "http://c:1"}],
                "workers_max_inflight": 32, "queue": {"limit": 5, "timeout_ms": 250}}"#,
        )
        .unwrap();
        let url = |u: &str| WorkerUrl::parse(u).unwrap();
        assert_eq!(c.workers, [url("http://a:1"), url("http://b:1"), url("http://c:1")]);
        assert_eq!(c.capacities().of(&url("http://a:1")), Some(32));
        assert_eq!(c.capacities().of(&url("http://b:1")), Some(8));
        assert_eq!(c.capacities().of(&url("http://d:1")), Some(32), "a worker added later");
        assert_eq!((c.queue.limit, c.queue.timeout.as_millis()), (5, 250));
        // The connection cap bounds every capacity, and is one by itself.
        let c = Config::parse(
            r#"{"workers": [{"url": "http://b:1", "max_inflight": 8}], "limits": {"max_connections_per_worker": 4}}"#,
        )
        .unwrap();
        assert_eq!((c.capacities().of(&url("http://b:1")), c.default_capacity()), (Some(4), Some(4)));
        let err = |t: &str| Config::parse(t).unwrap_err().0;
        for (bad, message) in [
            (r#"{"workers": [{"url": "http://b:1", "max_inflight": 0}]}"#, "max_inflight of http://b:1 must be"),
            (r#"{"workers": [{"max_inflight": 3}]}"#, "each must be a URL or {\"url\": URL"),
            (r#"{"workers": [{"url": "http://b:1", "weight": 3}]}"#, "unknown key \"weight\""),
            (r#"{"workers": [3]}"#, "each must be a URL"),
            (r#"{"workers": ["http://b:1", {"url": "http://B:1"}]}"#, "http://b:1 is listed twice"),
            (r#"{"workers_max_inflight": 0}"#, "\"workers_max_inflight\" must be a whole number from 1 to 1000000"),
            (r#"{"queue": {"timeout_ms": 0}}"#, "\"queue.timeout_ms\" must be"),
            (r#"{"queue": {"limit": -1}}"#, "\"queue.limit\" must be"),
            (r#"{"limits": {"max_connections_per_worker": 0}}"#, "\"limits.max_connections_per_worker\" must be"),
        ] {
            assert!(err(bad).contains(message), "{bad}: {}", err(bad));
        }
        assert_eq!(Config::parse(r#"{"queue": {"size": 1}}"#).unwrap().unknown_keys, ["queue.size"]);
    }

    #[test]
    fn health_says_when_workers_are_ejected() {
        let d = Config::parse("{}").unwrap().health;
        assert_eq!((d.eject_after, d.max_ejected_percent), (3, 50));
        assert_eq!(d.interval, None, "no active probing by default");
        let c = Config::parse(r#"{"health": {"eject_after": 0, "max_ejected_percent": 100, "interval_ms": 250}}"#)
            .unwrap()
            .health;
        assert_eq!((c.eject_after, c.max_ejected_percent, c.interval), (0, 100, Some(Duration::from_millis(250))));
        let e = Config::parse(r#"{"health": {"interval_ms": 10}}"#).unwrap_err().0;
        assert!(e.contains("\"health.interval_ms\" must be a whole number from 100 to"), "{e}");
        let e = Config::parse(r#"{"health": {"max_ejected_percent": 101}}"#).unwrap_err().0;
        assert!(e.contains("\"health.max_ejected_percent\" must be a whole number from 0 to 100"), "{e}");
    }

    #[test]
    fn the_access_log_is_a_path() {
        assert_eq!(Config::parse("{}").unwrap().access_log, None);
        let c = Config::parse(r#"{"log": {"access": "/var/log/hiku/access.log"}}"#).unwrap();
        assert_eq!(c.access_log.as_deref(), Some(Path::new("/var/log/hiku/access.log")));
        for bad in [r#"{"log": {"access": ""}}"#, r#"{"log": {"access": 3}}"#] {
            assert!(Config::parse(bad).unwrap_err().0.contains("\"log.access\" must be a file path"), "{bad}");
        }
    }

    #[test]
    fn the_predictive_balancer_is_told_the_workers_cores() {
        assert_eq!(Config::parse("{}").unwrap().worker_cores, 4);
        let c = Config::parse(r#"{"balancer": "predictive", "predictive": {"worker_cores": 16}}"#).unwrap();
        assert_eq!((c.balancer, c.worker_cores), (BalancerKind::Predictive, 16));
        let e = Config::parse(r#"{"predictive": {"worker_cores": 0}}"#).unwrap_err().0;
        assert!(e.contains("\"predictive.worker_cores\" must be a whole number from 1 to 4096"), "{e}");
        let c = Config::parse(r#"{"predictive": {"cores": 2}}"#).unwrap();
        assert_eq!(c.unknown_keys, ["predictive.cores"]);
    }

    #[test]
    fn admin_protection_is_read_and_checked() {
        let c = Config::parse("{}").unwrap();
        assert_eq!((c.admin_token, c.destroy_only_from_workers), (None, true));
        let c = Config::parse(r#"{"admin": {"token": "s3cret"}, "destroy_sandbox": {"only_from_workers": false}}"#)
            .unwrap();
        assert_eq!((c.admin_token.as_deref(), c.destroy_only_from_workers), (Some("s3cret"), false));
        let err = |t: &str| Config::parse(t).unwrap_err().0;
        assert!(err(r#"{"admin": {"token": ""}}"#).contains("\"admin.token\" must be a non-empty string"));
        assert!(err(r#"{"admin": {"token": "a b"}}"#).contains("\"admin.token\""));
        assert!(err(r#"{"destroy_sandbox": {"only_from_workers": "no"}}"#).contains("must be true or false"));
        let c = Config::parse(r#"{"admin": {"listen": "127.0.0.1:9021"}}"#).unwrap();
        assert_eq!(c.admin_addr().unwrap(), Some("127.0.0.1:9021".parse().unwrap()));
        assert_eq!(Config::parse("{}").unwrap().admin_addr().unwrap(), None);
        for bad in [r#""9021""#, r#""host:""#, r#"":9021""#, r#""h:70000""#, "9021"] {
            let e = err(&format!(r#"{{"admin": {{"listen": {bad}}}}}"#));
            assert!(e.contains("\"admin.listen\" must be \"host:port\""), "{bad}: {e}");
        }
    }
}
