//! hiku's own endpoints: `/status`, `/admin/workers/{add,remove}` and
//! `/destroySandbox/<fn>`. Off the request path: these may allocate.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::WorkerUrl;
use crate::conn::Shard;
use crate::error::Error;
use crate::http::{self, ReadBuf};
use crate::runtime;
use crate::scheduler::Scheduler;
use crate::worker::{Worker, WorkerSet};

/// How long `/status` waits for a worker's own `/status`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The balancer, the cores, and per worker its load and the answer of its
/// `GET /status` (all workers probed at once).
pub async fn status(shard: &Shard) -> String {
    let workers: Vec<Arc<Worker>> = shard.scheduler.workers().iter().cloned().collect();
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
        list.push(WorkerStatus { url: w.url().as_str(), in_flight: w.in_flight(), probe });
    }
    let status = Status { balancer: shard.scheduler.kind().name(), cores: shard.cores, workers: list };
    serde_json::to_string(&status).expect("status serializes")
}

#[derive(Serialize)]
struct Status<'a> {
    balancer: &'a str,
    cores: usize,
    workers: Vec<WorkerStatus<'a>>,
}

#[derive(Serialize)]
struct WorkerStatus<'a> {
    url: &'a str,
    in_flight: usize,
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
    let exchange = async {
        let mut stream = crate::pool::connect(worker, PROBE_TIMEOUT).await?;
        let request =
            format!("GET /status HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", worker.url().authority());
        runtime::write_all(&mut stream, &mut request.into_bytes()).await?;
        let mut buf = ReadBuf::new();
        loop {
            let mut headers = http::empty_headers();
            match http::parse_response(buf.data(), &mut headers, false) {
                Ok(Some(res)) => return Ok(res.code),
                Ok(None) if !buf.is_full() => {}
                Ok(None) => return Err(std::io::Error::other("response head too large")),
                Err(e) => return Err(std::io::Error::other(e)),
            }
            if buf.fill(&mut stream).await? == 0 {
                return Err(std::io::Error::other("connection closed before a response"));
            }
        }
    };
    match runtime::timeout(PROBE_TIMEOUT, exchange).await {
        Ok(result) => result.map_err(|e: std::io::Error| e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
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

fn worker_list_json(set: &WorkerSet) -> String {
    let urls: Vec<&str> = set.iter().map(|w| w.url().as_str()).collect();
    json!({ "workers": urls }).to_string()
}

/// Adds the listed workers (present ones are left as they are). All are
/// parsed and resolved before anything changes.
pub async fn add_workers(scheduler: &Scheduler, query: &str) -> Result<String, Error> {
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
pub fn remove_workers(scheduler: &Scheduler, query: &str) -> Result<String, Error> {
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
pub fn destroy_sandbox(scheduler: &Scheduler, function: &str, body: &[u8]) -> Result<String, Error> {
    let msg: SandboxDestroyed = serde_json::from_slice(body).map_err(|e| {
        Error::BadRequest(format!("destroySandbox expects a JSON body {{\"host\": \"<ip>:<port>\"}}: {e}"))
    })?;
    match scheduler.sandbox_destroyed(function, &msg.host) {
        Some(removed) => Ok(json!({ "removed": removed }).to_string()),
        None => Err(Error::NotFound(format!("no worker is named {}", msg.host))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::BalancerKind;

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
        assert_eq!(remove_workers(&s, "workers=http://a:1").unwrap(), r#"{"workers":[]}"#);
    }

    #[test]
    fn destroy_sandbox_answers() {
        let s = Scheduler::new(BalancerKind::PullBased, vec![(WorkerUrl::parse("http://a:1").unwrap(), vec![])]);
        let w = Arc::clone(&s.workers().as_slice()[0]);
        s.balancer().release("f", &w, crate::balancer::Outcome::Completed);
        assert_eq!(destroy_sandbox(&s, "f", br#"{"host":"a:1"}"#).unwrap(), r#"{"removed":true}"#);
        assert_eq!(destroy_sandbox(&s, "f", br#"{"host":"http://a:1"}"#).unwrap(), r#"{"removed":false}"#);
        assert_eq!(destroy_sandbox(&s, "f", br#"{"host":"b:1"}"#).unwrap_err().status(), 404);
        assert_eq!(destroy_sandbox(&s, "f", b"nope").unwrap_err().status(), 400);
        assert_eq!(destroy_sandbox(&s, "f", br#"{"hots":"a:1"}"#).unwrap_err().status(), 400);
    }
}
