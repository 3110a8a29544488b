//! hiku's own endpoints: `/status`, `/health`, `/metrics`,
//! `/admin/workers/{add,remove}`, `/admin/instances`, `/admin/reload` and
//! `/destroySandbox/<fn>`. Off the request path: these may allocate.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::cluster;
use crate::conn::Conn;
use crate::error::Error;
use crate::http::RequestMeta;
use crate::probe::{self, Ask};
use crate::reload;
use crate::route::Endpoint;
use crate::runtime;
use crate::scheduler::Scheduler;
use crate::shard::Shard;
use crate::shutdown;
use crate::worker::{Worker, WorkerSet, WorkerUrl};

/// Largest body hiku reads for its own endpoints (`destroySandbox`, admin).
const LOCAL_BODY_LIMIT: u64 = 64 * 1024;

/// A request for one of hiku's own endpoints.
pub(crate) struct Local {
    pub(crate) endpoint: Endpoint,
    /// The function of `destroySandbox`, the query of the others.
    pub(crate) arg: String,
    /// A change passed on by a peer (`X-Hiku-Forwarded`): it goes no further.
    pub(crate) forwarded: bool,
}

/// Answers `local`; whether the connection can carry another request.
pub(crate) async fn serve(shard: &Shard, conn: &mut Conn, local: Local, meta: RequestMeta) -> bool {
    let within = shard.config().timeouts.client_body;
    let body = match conn.read_small_body(meta, LOCAL_BODY_LIMIT, within).await {
        Ok(body) => body,
        Err(None) => return false,
        Err(Some(e)) => {
            conn.send_error(&e, false, Some(meta)).await;
            return false;
        }
    };
    let keep_alive = meta.keep_alive;
    let sent = match answer(shard, &local, &body).await {
        Ok(Reply { code, content_type, body }) => {
            conn.send(code, content_type, body.as_bytes(), keep_alive, Some(meta)).await
        }
        Err(e) => conn.send_error(&e, keep_alive, Some(meta)).await,
    };
    sent && keep_alive
}

/// What one of hiku's own endpoints answers.
struct Reply {
    code: u16,
    content_type: &'static str,
    body: String,
}

impl Reply {
    fn json(value: Value) -> Reply {
        Reply { code: 200, content_type: "application/json", body: value.to_string() }
    }
}

/// The answer of `local`, whose request body is `body`; a change of the
/// tier's is passed on to the peers, and what each said joins the answer.
async fn answer(shard: &Shard, local: &Local, body: &[u8]) -> Result<Reply, Error> {
    let Local { endpoint, ref arg, forwarded } = *local;
    let mut json = match endpoint {
        // Serialized from its structs, fields in their order (url first).
        Endpoint::Status => {
            let body = status(&shard.scheduler, shard.cores).await;
            return Ok(Reply { code: 200, content_type: "application/json", body });
        }
        Endpoint::Health if shutdown::stopping() => {
            return Ok(Reply { code: 503, ..Reply::json(json!({ "status": "stopping" })) })
        }
        Endpoint::Health => json!({ "status": "up" }),
        Endpoint::Metrics => {
            let open: Vec<usize> = shard.handoff.open().collect();
            let body = shard.metrics.render(&shard.scheduler, &open);
            return Ok(Reply { code: 200, content_type: "text/plain; version=0.0.4", body });
        }
        Endpoint::Workers => worker_list_json(&shard.scheduler.workers()),
        Endpoint::AddWorkers => add_workers(&shard.scheduler, arg).await?,
        Endpoint::RemoveWorkers => remove_workers(&shard.scheduler, arg)?,
        Endpoint::Instances => instances(&shard.scheduler, arg),
        Endpoint::Reload => reload_config(shard).await?,
        Endpoint::DestroySandbox => {
            let removed = destroy_sandbox(&shard.scheduler, arg, body)?;
            shard.counters().sandbox_destroyed(removed);
            json!({ "removed": removed })
        }
    };
    let config = shard.config();
    let spec = endpoint.spec();
    if spec.changes_the_tier && !forwarded && !config.cluster.peers.is_empty() {
        json["peers"] = Value::Object(cluster::pass_on(&config, spec.path, arg).await);
    }
    Ok(Reply::json(json))
}

/// `/admin/reload`: re-reads the config file (off the executor: it
/// resolves new workers' names) and says what changed, or why the file
/// was refused (**422**, hiku running as before).
async fn reload_config(shard: &Shard) -> Result<Value, Error> {
    let live = Arc::clone(&shard.live);
    let outcome =
        runtime::blocking(move || live.reload()).await.unwrap_or_else(|e| Err(format!("the reload did not run: {e}")));
    reload::log_outcome(outcome.clone());
    match outcome {
        Ok(changes) => Ok(json!({ "reloaded": true, "changes": changes })),
        Err(e) => Err(Error::ConfigRefused(e)),
    }
}

/// The balancer, the cores, and per worker its load and the answer of its
/// `GET /status` (all workers probed at once).
pub(crate) async fn status(scheduler: &Scheduler, cores: usize) -> String {
    let workers: Vec<Arc<Worker>> = scheduler.workers().iter().cloned().collect();
    let probes: Vec<_> = workers
        .iter()
        .map(|w| {
            let w = Arc::clone(w);
            runtime::spawn(async move { probe(&w).await })
        })
        .collect();
    let mut list = Vec::with_capacity(workers.len());
    for (w, probe) in workers.iter().zip(probes) {
        let probe = match probe.await {
            Ok(code) => Probe::Status(code),
            Err(e) => Probe::Error(e),
        };
        let state = if w.is_ejected() { "ejected" } else { "up" };
        let (capacity, adaptive) = (capacity(w), adaptive(w));
        list.push(WorkerStatus { url: w.url().as_str(), state, in_flight: w.in_flight(), capacity, adaptive, probe });
    }
    let waiting = scheduler.waiting_calls().count();
    let status = Status { balancer: scheduler.kind().name(), cores, waiting, workers: list };
    serde_json::to_string(&status).expect("status serializes")
}

#[derive(Serialize)]
struct Status<'a> {
    balancer: &'a str,
    cores: usize,
    /// Calls waiting for a worker with room.
    waiting: usize,
    workers: Vec<WorkerStatus<'a>>,
}

/// A worker's capacity as shown: `null` if it has none.
fn capacity(w: &Worker) -> Option<usize> {
    Some(w.capacity()).filter(|&c| c != usize::MAX)
}

/// A worker's adaptive limit as shown (`null` if off): the limit, whether
/// it holds calls back, the configured capacity it stays within, and the
/// slowdowns it goes by (the lowest seen lately and the smoothed one;
/// `null` before any).
fn adaptive(w: &Worker) -> Option<Adaptive> {
    let limit = w.adaptive_limit()?;
    let (lowest, smoothed) = w.slowdowns();
    let round = |s: f64| (s > 0.0).then(|| (s * 100.0).round() / 100.0);
    let configured = Some(w.configured_capacity()).filter(|&c| c != usize::MAX);
    Some(Adaptive {
        limit,
        holds: w.limit_holds(),
        configured,
        slowdown: round(smoothed),
        lowest_slowdown: round(lowest),
    })
}

#[derive(Serialize)]
struct Adaptive {
    limit: u32,
    /// Whether it holds calls back (they take long enough).
    holds: bool,
    configured: Option<usize>,
    slowdown: Option<f64>,
    lowest_slowdown: Option<f64>,
}

#[derive(Serialize)]
struct WorkerStatus<'a> {
    url: &'a str,
    /// `up`, or `ejected` (health) until a probe finds it back.
    state: &'static str,
    in_flight: usize,
    capacity: Option<usize>,
    adaptive: Option<Adaptive>,
    probe: Probe,
}

#[derive(Serialize)]
#[serde(rename_all = "lowercase")]
enum Probe {
    Status(u16),
    Error(String),
}

/// The status code of the worker's `GET /status`.
async fn probe(worker: &Worker) -> Result<u16, String> {
    let ask = Ask::get("/status", worker.url().authority());
    probe::ask(worker.addrs(), &ask, probe::STATUS_TIMEOUT).await
}

/// `?workers=a,b&workers=c`: every URL, validated, without repeats.
fn worker_list(query: &str) -> Result<Vec<WorkerUrl>, Error> {
    let mut urls: Vec<WorkerUrl> = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "workers" {
            continue;
        }
        for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let url = WorkerUrl::parse(item).map_err(|e| Error::BadRequest(format!("malformed {e}")))?;
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
    }
    if urls.is_empty() {
        return Err(Error::BadRequest("no workers given: use ?workers=http://host:port[,http://host:port]".into()));
    }
    Ok(urls)
}

fn worker_list_json(set: &WorkerSet) -> Value {
    let urls: Vec<&str> = set.iter().map(|w| w.url().as_str()).collect();
    json!({ "workers": urls })
}

/// `GET /admin/instances[?function=f]`: the directory of warm idle
/// instances the balancer knows of (pull-based and those built on it): per
/// function, the workers holding them and how many; per worker, its calls
/// in flight and the functions it holds warm. Read from the live lock-free
/// table, which calls go on changing meanwhile.
pub(crate) fn instances(scheduler: &Scheduler, query: &str) -> Value {
    let function = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "function").map(|(_, v)| v);
    let workers = scheduler.workers();
    let balancer = scheduler.balancer();
    let idle = balancer.idle_instances();
    let entries = idle.map_or_else(Vec::new, |idle| idle.entries(&workers, function.as_deref()));
    let url = |id| workers.get(id).map_or("", |w| w.url().as_str());
    let functions: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(name, counts)| {
            let on: Vec<_> = counts.iter().map(|&(id, n)| json!({"url": url(id), "idle": n})).collect();
            (name.clone(), json!({"idle": counts.iter().map(|(_, n)| n).sum::<u64>(), "workers": on}))
        })
        .collect();
    let per_worker: Vec<_> = workers
        .iter()
        .map(|w| {
            let warm: Vec<&str> = entries
                .iter()
                .filter(|(_, counts)| counts.iter().any(|&(id, _)| id == w.id()))
                .map(|(name, _)| name.as_str())
                .collect();
            let held: u64 = entries.iter().flat_map(|(_, c)| c).filter(|(id, _)| *id == w.id()).map(|(_, n)| n).sum();
            let state = if w.is_ejected() { "ejected" } else { "up" };
            json!({"url": w.url().as_str(), "state": state, "in_flight": w.in_flight(), "capacity": capacity(w),
                   "adaptive": adaptive(w), "idle": held, "warm_functions": warm})
        })
        .collect();
    let kind = scheduler.kind().name();
    json!({"balancer": kind, "tracked": idle.is_some(), "functions": functions, "workers": per_worker})
}

/// Adds the listed workers (present ones are left as they are). All are
/// parsed and resolved before anything changes.
pub(crate) async fn add_workers(scheduler: &Scheduler, query: &str) -> Result<Value, Error> {
    let mut new = Vec::new();
    for url in worker_list(query)? {
        if scheduler.workers().find_url(&url).is_some() {
            continue;
        }
        let lookup = url.clone();
        // Name resolution blocks: run it off the executor.
        let addrs = runtime::blocking(move || lookup.resolve())
            .await
            .and_then(|resolved| resolved)
            .map_err(|e| Error::BadRequest(format!("cannot resolve the host of worker {url}: {e}")))?;
        new.push((url, addrs));
    }
    let set = scheduler.add(new);
    log::info!("workers now: {}", worker_list_json(&set));
    Ok(worker_list_json(&set))
}

/// Removes the listed workers; if one is not present, nothing changes.
/// Requests in flight on a removed worker finish normally.
pub(crate) fn remove_workers(scheduler: &Scheduler, query: &str) -> Result<Value, Error> {
    let urls = worker_list(query)?;
    let set = scheduler
        .remove(&urls)
        .map_err(|absent| Error::NotFound(format!("worker {absent} is not in the worker list")))?;
    log::info!("workers now: {}", worker_list_json(&set));
    Ok(worker_list_json(&set))
}

#[derive(Deserialize)]
struct SandboxDestroyed {
    host: String,
}

/// A worker evicted an idle instance of `function`: `{"host": "<ip>:<port>"}`.
/// Whether an entry was removed.
pub(crate) fn destroy_sandbox(scheduler: &Scheduler, function: &str, body: &[u8]) -> Result<bool, Error> {
    let msg: SandboxDestroyed = serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!("destroySandbox expects a JSON body {{\"host\": \"<ip>:<port>\"}}: {e}"))
    })?;
    match scheduler.sandbox_destroyed(function, &msg.host) {
        Some(removed) => Ok(removed),
        None => Err(Error::NotFound(format!("no worker is named {}", msg.host))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::BalancerKind;

    #[test]
    fn the_directory_lists_idle_instances_by_function_and_by_worker() {
        let urls = |n: usize| (1..=n).map(|i| (WorkerUrl::parse(&format!("http://w{i}:1")).unwrap(), vec![])).collect();
        let s = Scheduler::new(BalancerKind::PullBased, urls(2));
        let set = s.workers();
        let (w1, w2) = (&set.as_slice()[0], &set.as_slice()[1]);
        for (f, w) in [("f", w1), ("f", w1), ("f", w2), ("g", w2)] {
            s.balancer().release(f, w, crate::balancer::Outcome::Completed);
        }
        let _busy = crate::worker::Lease::new(w2);
        w2.set_capacity(4);
        let all: serde_json::Value = instances(&s, "");
        assert_eq!(all["balancer"], "pull-based");
        assert_eq!(all["tracked"], true);
        let f = json!({"idle": 3, "workers": [{"url": "http://w1:1", "idle": 2}, {"url": "http://w2:1", "idle": 1}]});
        assert_eq!(all["functions"]["f"], f);
        assert_eq!(all["functions"]["g"], json!({"idle": 1, "workers": [{"url": "http://w2:1", "idle": 1}]}));
        let w2_row = json!({"url": "http://w2:1", "state": "up", "in_flight": 1, "capacity": 4, "adaptive": null,
                            "idle": 2, "warm_functions": ["f", "g"]});
        assert_eq!(all["workers"][1], w2_row);
        assert_eq!(all["workers"][0]["capacity"], json!(null), "no capacity");
        // An adaptive limit, within the configured capacity; it holds calls
        // back (and is the capacity) from the start, until they are known
        // to take too little time for that.
        s.set_adaptive(Some(crate::worker::Tuning::default()));
        let all: serde_json::Value = instances(&s, "");
        let adaptive = |limit, configured| json!({"limit": limit, "holds": true, "configured": configured, "slowdown": null, "lowest_slowdown": null});
        let row = |i: usize| (all["workers"][i]["capacity"].clone(), all["workers"][i]["adaptive"].clone());
        assert_eq!(row(0), (json!(6), adaptive(6, json!(null))));
        assert_eq!(row(1), (json!(4), adaptive(4, json!(4))));
        // One function only.
        let only: serde_json::Value = instances(&s, "function=g");
        assert_eq!(only["functions"].as_object().unwrap().len(), 1);
        assert_eq!(only["workers"][0]["warm_functions"], json!([]));
        // A balancer that keeps no idle instances says so.
        let lc = Scheduler::new(BalancerKind::LeastConnections, urls(1));
        let none: serde_json::Value = instances(&lc, "");
        assert_eq!((none["tracked"].clone(), none["functions"].clone()), (json!(false), json!({})));
    }

    #[test]
    fn parses_worker_lists_in_every_form() {
        let urls =
            worker_list("workers=http://a:1,http://b:2&x=1&workers=http%3A%2F%2Fc%3A3&workers=http://a:1").unwrap();
        let urls: Vec<&str> = urls.iter().map(|u| u.as_str()).collect();
        assert_eq!(urls, ["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(worker_list("workers=").unwrap_err().status(), 400);
        assert_eq!(worker_list("").unwrap_err().status(), 400);
        let e = worker_list("workers=http://a:1,ftp://b").unwrap_err();
        assert!(e.to_string().contains("ftp://b"), "{e}");
    }

    #[test]
    fn removing_an_absent_worker_changes_nothing() {
        let s = Scheduler::new(BalancerKind::PullBased, vec![(WorkerUrl::parse("http://a:1").unwrap(), vec![])]);
        let e = remove_workers(&s, "workers=http://a:1,http://b:2").unwrap_err();
        assert_eq!(e.status(), 404);
        assert!(e.to_string().contains("http://b:2"));
        assert_eq!(s.workers().len(), 1);
        assert_eq!(remove_workers(&s, "workers=http://a:1").unwrap(), json!({"workers": []}));
    }

    #[test]
    fn destroy_sandbox_answers() {
        let s = Scheduler::new(BalancerKind::PullBased, vec![(WorkerUrl::parse("http://a:1").unwrap(), vec![])]);
        let w = Arc::clone(&s.workers().as_slice()[0]);
        s.balancer().release("f", &w, crate::balancer::Outcome::Completed);
        assert!(destroy_sandbox(&s, "f", br#"{"host":"a:1"}"#).unwrap());
        assert!(!destroy_sandbox(&s, "f", br#"{"host":"http://a:1"}"#).unwrap());
        assert_eq!(destroy_sandbox(&s, "f", br#"{"host":"b:1"}"#).unwrap_err().status(), 404);
        assert_eq!(destroy_sandbox(&s, "f", b"nope").unwrap_err().status(), 400);
        assert_eq!(destroy_sandbox(&s, "f", br#"{"hots":"a:1"}"#).unwrap_err().status(), 400);
    }
}
