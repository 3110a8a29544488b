//! The JSON config file: the Go original's keys and defaults, validated
//! once. [`raw`] reads the file as the Go original does and writes down
//! every key asked for (the rest are reported as unknown); [`sections`]
//! holds hiku's own sections, each with its defaults and ranges; a
//! [`Config`] is the whole, one field per key or section of the file.

mod raw;
mod sections;

use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

pub use raw::ConfigError;
use raw::{Document, Section};
pub(crate) use sections::{
    Adaptive, Admin, Cluster, DestroySandbox, Front, Limits, Log, Predictive, Queue, Retries, Timeouts, MAX_RETRIES,
};
use sections::{MAX_CAPACITY, MAX_TIMEOUT_MS};

use crate::balancer::BalancerKind;
use crate::health::Health;
use crate::scheduler::Capacities;
use crate::worker::{Tuning, WorkerUrl};

/// What `hiku start` needs to run, as read from the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub balancer: BalancerKind,
    pub workers: Vec<WorkerUrl>,
    /// `max_inflight` of the workers listed as objects.
    pub(crate) worker_max_inflight: Vec<(WorkerUrl, usize)>,
    /// `workers_max_inflight`: the capacity of every other worker, if any.
    pub(crate) workers_max_inflight: Option<usize>,
    /// `shutdown_grace_ms`: how long a drain waits for calls in flight.
    pub shutdown_grace: Duration,
    /// `shutdown_announce_ms`: how long, on SIGTERM, `/health` says 503
    /// while calls are still served, before the drain (for a front).
    pub shutdown_announce: Duration,
    /// `queue`: how calls wait when every worker is full.
    pub(crate) queue: Queue,
    /// `timeouts_ms`: hiku's own key, not the Go original's (as are the
    /// sections below).
    pub(crate) timeouts: Timeouts,
    pub(crate) retries: Retries,
    pub(crate) limits: Limits,
    pub(crate) admin: Admin,
    pub(crate) destroy_sandbox: DestroySandbox,
    pub(crate) predictive: Predictive,
    /// `adaptive`: each worker's limit, found from its calls.
    pub(crate) adaptive: Adaptive,
    pub(crate) health: Health,
    pub(crate) log: Log,
    pub(crate) front: Front,
    pub(crate) cluster: Cluster,
    /// Keys the file has that hiku does not know (reported as warnings).
    pub(crate) unknown_keys: Vec<String>,
    /// Keys read in another case than hiku's (as Go reads them): as the
    /// file writes them, and as hiku names them (reported as warnings).
    pub(crate) recased_keys: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: String::new(),
            port: 9020,
            balancer: BalancerKind::PullBased,
            workers: Vec::new(),
            worker_max_inflight: Vec::new(),
            workers_max_inflight: None,
            shutdown_grace: Duration::from_secs(30),
            shutdown_announce: Duration::ZERO,
            queue: Queue::default(),
            timeouts: Timeouts::default(),
            retries: Retries::default(),
            limits: Limits::default(),
            admin: Admin::default(),
            destroy_sandbox: DestroySandbox::default(),
            predictive: Predictive::default(),
            adaptive: Adaptive::default(),
            health: Health::default(),
            log: Log::default(),
            front: Front::default(),
            cluster: Cluster::default(),
            unknown_keys: Vec::new(),
            recased_keys: Vec::new(),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(&text).map_err(|e| ConfigError(format!("{}: {}", path.display(), e.0)))
    }

    /// What to tell the operator about the file's keys: those hiku does
    /// not know, and those it read in another case.
    pub fn key_warnings(&self) -> Vec<String> {
        let unknown = self.unknown_keys.iter().map(|key| format!("unknown key {key:?} ignored"));
        let recased = self.recased_keys.iter().map(|(written, read)| {
            format!("key {written:?} read as {read:?} (keys match in any case, as in the Go original)")
        });
        unknown.chain(recased).collect()
    }

    /// Parses and validates config text.
    pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::read(&Document::parse(text)?)
    }

    /// Reads and validates a parsed file.
    fn read(doc: &Document) -> Result<Config, ConfigError> {
        let file = doc.root();
        let d = Config::default();
        let host = file.get::<String>("host")?.unwrap_or(d.host);
        let port = match file.get::<i64>("port")? {
            None => d.port,
            Some(p) => u16::try_from(p).map_err(|_| ConfigError(format!("\"port\" {p} is out of range (0-65535)")))?,
        };
        let balancer = match file.get::<String>("balancer")? {
            None => d.balancer,
            Some(name) => name.parse().map_err(ConfigError)?,
        };
        let (workers, worker_max_inflight) = read_workers(&file)?;
        let mut config = Config {
            host,
            port,
            balancer,
            workers,
            worker_max_inflight,
            workers_max_inflight: file.optional_number("workers_max_inflight", 1, MAX_CAPACITY)?.map(|n| n as usize),
            shutdown_grace: file.millis("shutdown_grace_ms", 0, MAX_TIMEOUT_MS, d.shutdown_grace)?,
            shutdown_announce: file.millis("shutdown_announce_ms", 0, MAX_TIMEOUT_MS, d.shutdown_announce)?,
            queue: Queue::read(&file.section("queue")?)?,
            timeouts: Timeouts::read(&file.section("timeouts_ms")?)?,
            retries: Retries::read(&file.section("retries")?)?,
            limits: Limits::read(&file.section("limits")?)?,
            admin: Admin::read(&file.section("admin")?)?,
            destroy_sandbox: DestroySandbox::read(&file.section("destroy_sandbox")?)?,
            predictive: Predictive::read(&file.section("predictive")?)?,
            adaptive: Adaptive::read(&file.section("adaptive")?)?,
            health: sections::read_health(&file.section("health")?)?,
            log: Log::read(&file.section("log")?)?,
            front: Front::read(&file.section("front")?)?,
            cluster: Cluster::read(&file.section("cluster")?)?,
            unknown_keys: Vec::new(),
            recased_keys: Vec::new(),
        };
        config.unknown_keys = doc.unknown_keys();
        config.recased_keys = doc.recased_keys();
        Ok(config)
    }

    /// The address to listen on for `host:port`: the first `host`
    /// resolves to, IPv4 first (as Go's `net.Listen` does for
    /// "localhost"); an empty or missing `host` is every interface, IPv6
    /// and IPv4, as Go's `":port"` is.
    pub(crate) fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        if self.host.is_empty() {
            return Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, self.port)));
        }
        first_addr((self.host.as_str(), self.port), "host", &self.host)
    }

    /// The config as a file that says every key, defaults filled in (`hiku
    /// check --print`): read back, it is this config (but for an
    /// `admin.token`, which it does not show).
    pub fn to_json(&self) -> Value {
        let capacity = |url: &WorkerUrl| self.worker_max_inflight.iter().find(|(u, _)| u == url).map(|(_, n)| *n);
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|url| match capacity(url) {
                Some(n) => serde_json::json!({"url": url.to_string(), "max_inflight": n}),
                None => Value::String(url.to_string()),
            })
            .collect();
        serde_json::json!({
            "host": self.host,
            "port": self.port,
            "balancer": self.balancer.to_string(),
            "workers": workers,
            "workers_max_inflight": self.workers_max_inflight,
            "shutdown_grace_ms": self.shutdown_grace.as_millis() as u64,
            "shutdown_announce_ms": self.shutdown_announce.as_millis() as u64,
            "queue": self.queue.json(),
            "timeouts_ms": self.timeouts.json(),
            "retries": self.retries.json(),
            "limits": self.limits.json(),
            "admin": self.admin.json(),
            "destroy_sandbox": self.destroy_sandbox.json(),
            "predictive": self.predictive.json(),
            "adaptive": self.adaptive.json(),
            "health": sections::health_json(&self.health),
            "log": self.log.json(),
            "front": self.front.json(),
            "cluster": self.cluster.json(),
        })
    }

    /// Every check `start` makes of the config short of binding: its
    /// addresses resolve and its access log opens (created if missing, as
    /// `start` does). Returns what to warn of: admin endpoints that anyone
    /// on the network may use.
    pub fn preflight(&self) -> Result<Vec<String>, ConfigError> {
        let listen = self.listen_addr()?;
        let admin = self.admin_addr()?;
        if let Some(path) = &self.log.access {
            let open = std::fs::OpenOptions::new().create(true).append(true).open(path);
            open.map_err(|e| ConfigError(format!("cannot open \"log.access\" {}: {e}", path.display())))?;
        }
        Ok(self.open_admin(admin.unwrap_or(listen)).into_iter().collect())
    }

    /// A warning if the admin endpoints, served at `at`, take changes from
    /// anyone who reaches it: no `admin.token`, and `at` is not loopback.
    fn open_admin(&self, at: SocketAddr) -> Option<String> {
        if self.admin.token.is_some() || at.ip().is_loopback() {
            return None;
        }
        let reach = if at.ip().is_unspecified() { "on every interface" } else { "on a network address" };
        Some(format!(
            "/admin/* (the worker list, adding and removing workers, reload) answers anyone who reaches {at} \
             ({reach}): there is no \"admin.token\"; set one, or \"admin.listen\" on a loopback address"
        ))
    }

    /// The address of `admin.listen`, if set.
    pub(crate) fn admin_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.admin.listen else { return Ok(None) };
        first_addr(listen.as_str(), "admin.listen", listen).map(Some)
    }

    /// The capacity of workers without one of their own (and of workers
    /// added later): `workers_max_inflight`, at most
    /// `limits.max_connections_per_worker`; `None`: no bound.
    pub(crate) fn default_capacity(&self) -> Option<usize> {
        min_bound(self.workers_max_inflight, self.limits.max_connections_per_worker)
    }

    /// Every worker's capacity, as the config says, this instance's part of
    /// it in a tier of `cluster.size`.
    pub(crate) fn capacities(&self) -> Capacities {
        let cap = self.limits.max_connections_per_worker;
        let share = |n: Option<usize>| n.map(|n| self.cluster.share(n));
        let own = self.worker_max_inflight.iter().map(|(url, n)| (url.clone(), share(min_bound(Some(*n), cap))));
        Capacities { default: share(self.default_capacity()), own: own.collect() }
    }

    /// The workers' adaptive limits' tuning, if they have them: in a tier
    /// of `cluster.size`, this instance's part of it (of the initial limit,
    /// and of the excess a worker may hold: every instance's calls on a
    /// worker wait alike, so each holds its part of the excess), and how
    /// many instances share each worker (each takes its part of a cut).
    pub(crate) fn adaptive_tuning(&self) -> Option<Tuning> {
        let tuning = self.adaptive.tuning()?;
        let k = self.cluster.size as f64;
        let initial = self.cluster.share(tuning.initial as usize) as u32;
        let instances = self.cluster.size as u32;
        Some(Tuning { initial, low: tuning.low / k, high: tuning.high / k, instances, ..tuning })
    }

    /// What `next` changes of this config: the keys bound at start (which
    /// take a restart), and those read per call.
    pub(crate) fn changes(&self, next: &Config) -> Changes {
        let capacity =
            |c: &Config| (c.workers_max_inflight, c.worker_max_inflight.clone(), c.limits.max_connections_per_worker);
        let pick =
            |keys: &[(&'static str, bool)]| keys.iter().filter(|(_, changed)| *changed).map(|(k, _)| *k).collect();
        let kept = |keep: &Keep| {
            let mut kept = next.clone();
            keep(self, &mut kept);
            kept != *next
        };
        Changes {
            start_bound: START_BOUND.iter().filter(|(_, keep)| kept(keep)).map(|(key, _)| *key).collect(),
            per_call: pick(&[
                ("timeouts_ms", self.timeouts != next.timeouts),
                ("retries", self.retries != next.retries),
                ("limits", self.limits != next.limits),
                ("capacity", capacity(self) != capacity(next)),
                ("queue", self.queue != next.queue),
                ("health", self.health != next.health),
                ("admin.token", self.admin.token != next.admin.token),
                ("destroy_sandbox", self.destroy_sandbox != next.destroy_sandbox),
                ("adaptive", self.adaptive != next.adaptive),
                ("front", self.front != next.front),
                ("cluster", self.cluster != next.cluster),
            ]),
        }
    }

    /// `next`, keeping this config's values of what is bound at start.
    pub(crate) fn keeping_start_bound(&self, mut next: Config) -> Config {
        for (_, keep) in &START_BOUND {
            keep(self, &mut next);
        }
        next
    }
}

/// Copies one start-bound value from the running config into the next.
type Keep = fn(&Config, &mut Config);

/// What is bound at start, by key: a reload keeps each one's running value
/// (its `Keep`) and says it takes a restart. The one list of them.
const START_BOUND: [(&str, Keep); 7] = [
    ("host", |run, next| next.host.clone_from(&run.host)),
    ("port", |run, next| next.port = run.port),
    ("admin.listen", |run, next| next.admin.listen.clone_from(&run.admin.listen)),
    ("limits.max_connections", |run, next| next.limits.max_connections = run.limits.max_connections),
    ("log.access", |run, next| next.log.access.clone_from(&run.log.access)),
    ("shutdown_grace_ms", |run, next| next.shutdown_grace = run.shutdown_grace),
    ("shutdown_announce_ms", |run, next| next.shutdown_announce = run.shutdown_announce),
];

/// What a new config changes of the running one, by key.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Bound at start: only a restart changes them.
    pub(crate) start_bound: Vec<&'static str>,
    /// Read per call: they apply to the next request on each core.
    pub(crate) per_call: Vec<&'static str>,
}

/// The workers' URLs, and the capacities some were given.
type WorkerList = (Vec<WorkerUrl>, Vec<(WorkerUrl, usize)>);

/// The `workers` list: each a URL, or an object with `url` and optionally
/// `max_inflight`.
fn read_workers(file: &Section) -> Result<WorkerList, ConfigError> {
    let mut workers: Vec<WorkerUrl> = Vec::new();
    let mut capacities = Vec::new();
    let bad_entry = |other: &Value| {
        ConfigError(format!("\"workers\": each must be a URL or {{\"url\": URL, \"max_inflight\": N}}, not {other}"))
    };
    for entry in file.get::<Vec<Value>>("workers")?.unwrap_or_default() {
        let (text, capacity) = match &entry {
            Value::String(text) => (text.as_str(), None),
            Value::Object(map) => {
                if let Some(key) = map.keys().find(|k| !matches!(k.as_str(), "url" | "max_inflight")) {
                    return Err(ConfigError(format!("\"workers\": unknown key {key:?} in {entry}")));
                }
                let text = map.get("url").and_then(|u| u.as_str()).ok_or_else(|| bad_entry(&entry))?;
                let capacity = match map.get("max_inflight").filter(|v| !v.is_null()) {
                    None => None,
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

/// The first address `addr` resolves to, IPv4 first; errors name `key`.
fn first_addr(addr: impl ToSocketAddrs, key: &str, shown: &str) -> Result<SocketAddr, ConfigError> {
    let mut addrs: Vec<SocketAddr> =
        addr.to_socket_addrs().map_err(|e| ConfigError(format!("cannot resolve \"{key}\" {shown}: {e}")))?.collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.into_iter().next().ok_or_else(|| ConfigError(format!("\"{key}\" {shown} resolves to no address")))
}

/// The lower of two optional bounds (`None`: no bound).
fn min_bound(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
