//! The worker emulator's network side: one listener per emulated worker,
//! each driving its own [`model::Worker`] with real timers.
//!
//! Per worker, a driver task owns the timing: it advances the model to the
//! current (scaled) time, answers the calls that completed, reports removed
//! sandboxes to the scheduler, then sleeps until the model's next deadline
//! or until a new call wakes it. Calls never burn CPU while they "run".

pub mod model;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify};

use self::model::{CallId, Cold, Event, Limits, Work};
use crate::functions::table_i_times;
use crate::http::{self, Conn};
use crate::rng::{derive_seed, lognormal_noise};
use crate::scale::{Clock, TimeScale};

/// The share (per mille) of a VM's memory its kernel reports as
/// `MemTotal` (what OpenLambda's `Sysinfo` reads): an estimate, as no
/// figure for the paper's VMs was published. A 16 GiB VM's kernel keeps
/// some for itself; any MemTotal from 15,348 to 15,859 MiB gives the same
/// 29 sandbox slots.
pub const MEM_TOTAL_PERMILLE: u64 = 952;

/// OpenLambda's default memory pool on a VM of `gib` GiB (`LoadDefaults`
/// in `common/config.go`): `MemTotal` in MB less 500.
pub const fn pool_mb(gib: u64) -> u64 {
    gib * 1024 * MEM_TOTAL_PERMILLE / 1000 - 500
}

/// The paper's workers: m5.xlarge VMs (16 GiB) with OpenLambda's default
/// memory pool (15,097 MB: 29 slots of 512 MB).
pub const DEFAULT_MEMORY_MB: u64 = pool_mb(16);

/// What a paused sandbox of a FunctionBench function keeps (an assumption:
/// OpenLambda shrinks it to its real usage, a Python runtime with the
/// benchmark's imports; perf/README.md shows what this changes).
pub const DEFAULT_PAUSED_MB: u64 = 64;

/// How long destroying a sandbox takes until its memory is back, ms (an
/// estimate from OpenLambda's code, not a measurement: `SOCKContainer`'s
/// `Destroy` freezes the cgroup, writes `cgroup.kill`, then polls every 5 ms
/// until its processes are gone before the memory returns to the pool; the
/// unmount and directory removal follow before the evictor hears of it).
pub const DEFAULT_DESTROY_MS: f64 = 10.0;

/// Give up on a `destroySandbox` notification after this long.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the emulated workers behave.
#[derive(Debug, Clone)]
pub struct Config {
    pub cores: u32,
    /// The memory pool (OpenLambda's `mem_pool_mb`).
    pub memory_mb: u64,
    /// What a paused sandbox keeps of its 512 MB.
    pub paused_mb: u64,
    /// Paper-scale ms a sandbox's destroy takes.
    pub destroy_ms: f64,
    /// Paper-scale seconds after which a call pulls its function's code
    /// again, killing its instances (`registry_cache_ms`); 0: never.
    pub code_refresh_s: f64,
    /// Spread of the log-normal service-time noise.
    pub sigma: f64,
    /// Times for benchmarks not in Table I.
    pub default_cold_ms: f64,
    pub default_warm_ms: f64,
    pub time_scale: TimeScale,
    pub seed: u64,
    /// Where removed sandboxes are reported (`http://host:port`), if anywhere.
    pub scheduler: Option<String>,
    /// A fault injected into the first worker's reports, if any.
    pub fault: Option<Fault>,
    /// Whether answers carry the emulator's hints, `X-Cold-Start` and
    /// `X-Service-Ms`, which no real OpenLambda worker sends (the body says
    /// the same either way, for the load generator: a scheduler reads no
    /// body).
    pub hints: bool,
}

/// What goes wrong with the first worker's `destroySandbox` reports: the
/// faults a scheduler's idle entries must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// They are never sent (a worker that evicts silently, or reports lost).
    LostDestroy,
    /// They name the worker otherwise than the scheduler does: `localhost`
    /// for `127.0.0.1` (and back).
    OtherHost,
}

impl Fault {
    pub fn parse(text: &str) -> Result<Fault, String> {
        match text {
            "lost-destroy" => Ok(Fault::LostDestroy),
            "other-host" => Ok(Fault::OtherHost),
            other => Err(format!("unknown fault {other:?}: lost-destroy or other-host")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::LostDestroy => "lost-destroy",
            Fault::OtherHost => "other-host",
        }
    }

    /// The host a report names for a worker called `host`; `None`: no report.
    fn report_host(fault: Option<Fault>, host: &str) -> Option<String> {
        match fault {
            None => Some(host.to_string()),
            Some(Fault::LostDestroy) => None,
            Some(Fault::OtherHost) => Some(match host.strip_prefix("127.0.0.1:") {
                Some(port) => format!("localhost:{port}"),
                None => host.replacen("localhost:", "127.0.0.1:", 1),
            }),
        }
    }
}

impl Config {
    fn limits(&self) -> io::Result<Limits> {
        let refresh = (self.code_refresh_s != 0.0).then_some(self.code_refresh_s * 1000.0);
        Limits::new(self.cores, self.memory_mb, self.paused_mb, refresh, self.destroy_ms).ok_or_else(|| {
            let why = format!(
                "need at least 1 core, {sandbox} MB of memory, at most {sandbox} MB per paused sandbox, \
                 a code refresh of 0 (never) or more seconds, and a destroy time of 0 or more ms",
                sandbox = model::SANDBOX_MB
            );
            io::Error::new(io::ErrorKind::InvalidInput, why)
        })
    }

    fn work(&self, function: &str, noise: f64) -> Work {
        let (cold, warm) = table_i_times(function).unwrap_or((self.default_cold_ms, self.default_warm_ms));
        Work { cold_ms: cold * noise, warm_ms: warm * noise }
    }
}

struct Worker {
    /// `127.0.0.1:<port>` or the config's name, as the worker names itself
    /// to the scheduler.
    host: String,
    /// The fault in its reports (`Config::fault`, the first worker only).
    fault: Option<Fault>,
    config: Arc<Config>,
    clock: Clock,
    state: Mutex<State>,
    wake: Notify,
}

/// How a call in the model ended.
enum Ran {
    /// It completed, cold for this reason (`None`: warm).
    Completed(Option<Cold>),
    /// Its sandbox was destroyed under it.
    Failed,
}

struct State {
    model: model::Worker,
    noise: fastrand::Rng,
    next_call: CallId,
    /// Calls in the model, by id: the sender answers how it started.
    pending: HashMap<CallId, oneshot::Sender<Ran>>,
}

/// Where an emulated worker listens (on 127.0.0.1; 0: any free port) and,
/// if given, the `host:port` it goes by: what it reports in
/// `destroySandbox` (as OpenLambda reports its configured `worker_url` and
/// port) and in `X-Worker`. Without one, `127.0.0.1:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub port: u16,
    pub name: Option<String>,
}

/// The workers a hiku config names, to emulate in front of it: the port and
/// name (`host:port`, as the config writes it) of each of its `workers`
/// (all must be on this machine: `localhost` or 127.x.x.x), and its
/// scheduler's URL from `host` and `port` (hiku's defaults, every
/// interface, reached on 127.0.0.1, and 9020, if absent).
pub fn workers_of_config(text: &str) -> Result<(Vec<Address>, String), String> {
    let config: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("not a JSON config: {e}"))?;
    let host = match config["host"].as_str() {
        None | Some("" | "0.0.0.0" | "::" | "[::]") => "127.0.0.1",
        Some(host) => host,
    };
    let port = config["port"].as_u64().unwrap_or(9020);
    let workers = config["workers"].as_array().ok_or("the config has no \"workers\" list")?;
    let port_of = |worker: &serde_json::Value| {
        let url = worker
            .as_str()
            .or_else(|| worker["url"].as_str())
            .ok_or(format!("a worker that is not a URL: {worker}"))?;
        let authority = url.strip_prefix("http://").unwrap_or(url).split('/').next().unwrap_or("");
        let (name, port) = match authority.rsplit_once(':') {
            Some((name, port)) => (name, port.parse::<u16>().map_err(|_| format!("{url}: a bad port"))?),
            None => (authority, 80),
        };
        let local = name.eq_ignore_ascii_case("localhost")
            || name.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
        match local {
            true => Ok(Address { port, name: Some(format!("{name}:{port}")) }),
            false => Err(format!("{url} is not on this machine (localhost or 127.x.x.x)")),
        }
    };
    let addresses = workers.iter().map(port_of).collect::<Result<Vec<Address>, String>>()?;
    Ok((addresses, format!("http://{host}:{port}")))
}

/// Binds a worker on 127.0.0.1 at each of `addresses`, starts serving them
/// on the current runtime, and returns their URLs (by their names).
pub async fn start(config: Config, addresses: &[Address]) -> io::Result<Vec<String>> {
    let config = Arc::new(config);
    let limits = config.limits()?;
    let mut urls = Vec::with_capacity(addresses.len());
    for (i, Address { port, name }) in addresses.iter().enumerate() {
        let listener = TcpListener::bind(("127.0.0.1", *port))
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("127.0.0.1:{port}: {e}")))?;
        let host = name.clone().unwrap_or(format!("127.0.0.1:{}", listener.local_addr()?.port()));
        urls.push(format!("http://{host}"));
        let state = State {
            model: model::Worker::new(limits),
            noise: fastrand::Rng::with_seed(derive_seed(config.seed, i as u64)),
            next_call: 0,
            pending: HashMap::new(),
        };
        let clock = Clock::new(config.time_scale);
        let fault = config.fault.filter(|_| i == 0);
        let worker = Arc::new(Worker {
            host,
            fault,
            config: config.clone(),
            clock,
            state: Mutex::new(state),
            wake: Notify::new(),
        });
        tokio::spawn(drive(worker.clone()));
        tokio::spawn(accept(worker, listener));
    }
    Ok(urls)
}

async fn accept(worker: Arc<Worker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(worker.clone(), stream));
            }
            // Out of descriptors or similar: back off rather than spin.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The driver: the only place the model's time moves on its own.
async fn drive(worker: Arc<Worker>) {
    loop {
        let deadline = {
            let mut state = worker.state.lock().expect("no panics while locked");
            state.model.advance(worker.clock.now_ms());
            for event in state.model.take_events() {
                match event {
                    Event::Completed { call, cold, .. } => {
                        if let Some(answer) = state.pending.remove(&call) {
                            let _ = answer.send(Ran::Completed(cold));
                        }
                    }
                    Event::Failed { call, .. } => {
                        if let Some(answer) = state.pending.remove(&call) {
                            let _ = answer.send(Ran::Failed);
                        }
                    }
                    Event::Removed { function, .. } => report_removal(&worker, function),
                }
            }
            state.model.next_deadline()
        };
        match deadline {
            Some(at) => {
                let at = tokio::time::Instant::from_std(worker.clock.instant_at(at));
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = worker.wake.notified() => {}
                }
            }
            None => worker.wake.notified().await,
        }
    }
}

/// Tells the scheduler a sandbox is gone, as OpenLambda does, without
/// making anyone wait for it; a failed report is dropped.
fn report_removal(worker: &Worker, function: String) {
    let Some(scheduler) = worker.config.scheduler.as_deref().and_then(http::authority) else { return };
    let Some(host) = Fault::report_host(worker.fault, &worker.host) else { return };
    let request = http::post_json(
        scheduler,
        &format!("/destroySandbox/{function}"),
        serde_json::json!({"host": host}).to_string().as_bytes(),
        false,
    );
    let scheduler = scheduler.to_string();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(NOTIFY_TIMEOUT, async {
            let mut conn = Conn::new(TcpStream::connect(&scheduler).await?);
            conn.write_all(&request).await?;
            conn.read_response().await
        })
        .await;
    });
}

async fn serve(worker: Arc<Worker>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::new(stream);
    loop {
        let request = match conn.read_request().await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                let _ = conn.write_all(&http::response(400, "Bad Request", &[], e.to_string().as_bytes(), false)).await;
                return;
            }
        };
        let answer = route(&worker, &request).await;
        if conn.write_all(&answer).await.is_err() || !request.keep_alive {
            return;
        }
    }
}

async fn route(worker: &Worker, request: &http::Request) -> Vec<u8> {
    let path = request.path.split('?').next().unwrap_or("");
    let keep_alive = request.keep_alive;
    let json = [("Content-Type", "application/json")];
    match path.strip_prefix("/run/") {
        Some(function) if !function.is_empty() && !function.contains('/') => run(worker, function, keep_alive).await,
        _ if path == "/status" => http::response(200, "OK", &json, b"{\"status\": \"ok\"}", keep_alive),
        _ if path == "/stats" => {
            let stats = worker.state.lock().expect("no panics while locked").model.stats();
            let body = serde_json::to_vec(&stats).expect("plain struct");
            http::response(200, "OK", &json, &body, keep_alive)
        }
        _ => http::response(404, "Not Found", &[], format!("no route {path}").as_bytes(), keep_alive),
    }
}

/// One call: into the model, wait for the driver to finish it, answer.
async fn run(worker: &Worker, function: &str, keep_alive: bool) -> Vec<u8> {
    let arrived = Instant::now();
    let done = {
        let mut state = worker.state.lock().expect("no panics while locked");
        let noise = lognormal_noise(&mut state.noise, worker.config.sigma);
        let call = state.next_call;
        state.next_call += 1;
        let (answer, done) = oneshot::channel();
        state.pending.insert(call, answer);
        state.model.arrive(worker.clock.now_ms(), call, function, worker.config.work(function, noise));
        done
    };
    worker.wake.notify_one();
    let cold = match done.await {
        Ok(Ran::Completed(cold)) => cold,
        // OpenLambda's answer when the round trip to the sandbox fails.
        Ok(Ran::Failed) => return http::response(502, "Bad Gateway", &[], b"RoundTrip failed", keep_alive),
        Err(_) => return http::response(500, "Internal Server Error", &[], b"call lost", false),
    };
    // Measured, not taken from the model: timer lateness is the worker's,
    // so the scheduler's added latency (latency minus this) excludes it.
    let service_ms = worker.config.time_scale.paper_ms(arrived.elapsed());
    let url = format!("http://{}", worker.host);
    let mut body = serde_json::json!({"function": function, "cold": cold.is_some(), "service_ms": service_ms});
    if let Some(cause) = cold {
        body["cold_cause"] = cause.name().into();
    }
    let (cold, service) = (cold.is_some().to_string(), format!("{service_ms:.3}"));
    let mut headers = vec![("Content-Type", "application/json"), ("X-Worker", &url)];
    if worker.config.hints {
        headers.extend([("X-Cold-Start", cold.as_str()), ("X-Service-Ms", service.as_str())]);
    }
    http::response(200, "OK", &headers, body.to_string().as_bytes(), keep_alive)
}

#[cfg(test)]
mod tests;
