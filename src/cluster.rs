//! What an instance of a tier does with its peers (`cluster.peers`, their
//! admin addresses): an admin change made here is passed on to each, and a
//! starting instance takes the tier's worker list from the first that
//! answers, the warm idle instances each knows of (the functions it served
//! while this one was away come back warm), and what the workers' adaptive
//! limits learnt there (its own start under full load floods no worker).

use std::net::ToSocketAddrs;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::probe::{self, Ask};
use crate::runtime;
use crate::worker::{Learnt, WorkerUrl};

/// How long a peer may take to answer a change passed on to it.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a starting instance waits for each peer's worker list and
/// directory (a peer under load may take a while; one that is down
/// refuses at once).
const ASK_AT_START: Duration = Duration::from_secs(2);

/// Passes a change made here (`path` with `query`) on to every peer in
/// `cluster.peers`, all at once, with the admin token, marked so that it
/// goes no further; each peer's outcome by its address: its status, or why
/// it gave none within `PEER_TIMEOUT` (also logged).
pub(crate) async fn pass_on(config: &Config, path: &str, query: &str) -> Map<String, Value> {
    let target = if query.is_empty() { path.to_string() } else { format!("{path}?{query}") };
    let asks: Vec<_> = config
        .cluster
        .peers
        .iter()
        .map(|peer| {
            let (peer, target, token) = (peer.clone(), target.clone(), config.admin.token.clone());
            runtime::spawn(async move {
                let lookup = peer.clone();
                let addrs = runtime::blocking(move || lookup.to_socket_addrs().map(Vec::from_iter))
                    .await
                    .and_then(|resolved| resolved)
                    .map_err(|e| format!("cannot resolve {peer}: {e}"));
                let ask = Ask::post(&target, &peer).token(token.as_deref()).forwarded();
                let outcome = match addrs {
                    Ok(addrs) => probe::ask(&addrs, &ask, PEER_TIMEOUT).await,
                    Err(e) => Err(e),
                };
                (peer, outcome)
            })
        })
        .collect();
    let mut outcomes = Map::new();
    for ask in asks {
        let (peer, outcome) = ask.await;
        let shown = match outcome {
            Ok(status) => json!({ "status": status }),
            Err(error) => {
                log::warn!("an admin change was not passed on to peer {peer}: {error}");
                json!({ "error": error })
            }
        };
        outcomes.insert(peer, shown);
    }
    outcomes
}

/// The tier's worker list, from the first of `cluster.peers` that gives
/// it (`GET /admin/workers`), and which one did; `None` if none did, or
/// there are no peers. Blocks: call it at start, before the shards run.
pub(crate) fn workers_from_peers(config: &Config) -> Option<(String, Vec<WorkerUrl>)> {
    for peer in &config.cluster.peers {
        let ask = Ask::get("/admin/workers", peer).token(config.admin.token.as_deref());
        let addrs = peer.to_socket_addrs().map(Vec::from_iter).unwrap_or_default();
        for addr in addrs {
            let listed = match probe::ask_blocking(addr, &ask, ASK_AT_START) {
                Ok(reply) if reply.status == 200 => worker_list(&reply.body),
                Ok(reply) => Err(format!("status {}", reply.status)),
                Err(e) => Err(e),
            };
            match listed {
                Ok(workers) => return Some((peer.clone(), workers)),
                Err(e) => log::warn!("peer {peer} gave no worker list: {e}"),
            }
        }
    }
    None
}

/// The most idle instances taken for one function on one worker.
const MOST_ADOPTED: u64 = 64;

/// What a peer knows that a starting instance takes (`GET
/// /admin/instances`): the warm idle instances, per function and worker
/// URL, how many; and what each worker's adaptive limit learnt there.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    pub(crate) idle: Vec<(String, WorkerUrl, u64)>,
    pub(crate) limits: Vec<(WorkerUrl, Learnt)>,
}

/// `peer`'s [`Directory`]; empty if it does not answer. Blocks: at start.
pub(crate) fn directory_of_peer(config: &Config, peer: &str) -> Directory {
    let ask = Ask::get("/admin/instances", peer).token(config.admin.token.as_deref());
    let addrs = peer.to_socket_addrs().map(Vec::from_iter).unwrap_or_default();
    for addr in addrs {
        match probe::ask_blocking(addr, &ask, ASK_AT_START) {
            Ok(reply) if reply.status == 200 => return directory(&reply.body),
            Ok(reply) => log::warn!("peer {peer} gave no directory: status {}", reply.status),
            Err(e) => log::warn!("peer {peer} gave no directory: {e}"),
        }
    }
    Directory::default()
}

/// The entries of a `/admin/instances` answer.
fn directory(body: &str) -> Directory {
    let Ok(value) = serde_json::from_str::<Value>(body) else { return Directory::default() };
    let mut idle = Vec::new();
    for (function, held) in value["functions"].as_object().into_iter().flatten() {
        for on in held["workers"].as_array().into_iter().flatten() {
            let url = on["url"].as_str().and_then(|u| WorkerUrl::parse(u).ok());
            if let (Some(url), Some(n)) = (url, on["idle"].as_u64()) {
                idle.push((function.clone(), url, n.min(MOST_ADOPTED)));
            }
        }
    }
    let limits = value["workers"].as_array().into_iter().flatten().filter_map(|w| {
        let url = WorkerUrl::parse(w["url"].as_str()?).ok()?;
        let a = &w["adaptive"];
        let limit = u32::try_from(a["limit"].as_u64()?).ok()?;
        let slowdown = |key: &str| a[key].as_f64().unwrap_or(0.0);
        let learnt = Learnt {
            limit,
            holds: a["holds"].as_bool()?,
            lowest: slowdown("lowest_slowdown"),
            smoothed: slowdown("slowdown"),
        };
        Some((url, learnt))
    });
    Directory { idle, limits: limits.collect() }
}

/// The URLs of a `{"workers": [...]}` answer.
fn worker_list(body: &str) -> Result<Vec<WorkerUrl>, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let urls = value["workers"].as_array().ok_or("no \"workers\" list")?;
    urls.iter().map(|u| WorkerUrl::parse(u.as_str().unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_peers_worker_list() {
        let urls = worker_list(r#"{"workers": ["http://a:1", "http://b:2"]}"#).unwrap();
        assert_eq!(urls.iter().map(|u| u.as_str()).collect::<Vec<_>>(), ["http://a:1", "http://b:2"]);
        assert!(worker_list(r#"{"workers": [1]}"#).is_err());
        assert!(worker_list("{}").is_err());
        assert!(worker_list("nope").is_err());
        assert!(workers_from_peers(&Config::default()).is_none(), "no peers");
        let body = r#"{"functions": {"f": {"idle": 3, "workers": [{"url": "http://a:1", "idle": 2},
                      {"url": "http://b:1", "idle": 1000}]}},
                      "workers": [{"url": "http://a:1", "adaptive": {"limit": 6, "holds": true, "slowdown": 2.5,
                      "lowest_slowdown": 1.25}}, {"url": "http://b:1", "adaptive": {"limit": 8, "holds": false,
                      "slowdown": null, "lowest_slowdown": null}}, {"url": "http://c:1", "adaptive": null}]}"#;
        let Directory { idle, limits } = directory(body);
        let shown: Vec<_> = idle.iter().map(|(f, u, n)| (f.as_str(), u.as_str(), *n)).collect();
        assert_eq!(shown, [("f", "http://a:1", 2), ("f", "http://b:1", MOST_ADOPTED)]);
        let shown: Vec<_> = limits.iter().map(|(u, l)| (u.as_str(), *l)).collect();
        let learnt = |limit, holds, lowest, smoothed| Learnt { limit, holds, lowest, smoothed };
        assert_eq!(shown, [("http://a:1", learnt(6, true, 1.25, 2.5)), ("http://b:1", learnt(8, false, 0.0, 0.0))]);
        for nothing in ["{}", "nope"] {
            let Directory { idle, limits } = directory(nothing);
            assert!(idle.is_empty() && limits.is_empty());
        }
    }
}
