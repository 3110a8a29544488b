//! A tier: HAProxy on the shipped front config (`config/tier/haproxy.cfg`)
//! in front of two hiku instances that both know every worker.

use std::net::SocketAddr;

use serde_json::{json, Value};

use crate::support::{free_port, sample, wait_for, Client, Driver, Front, Hiku, Worker};

/// An instance as a tier runs it: the PROXY protocol from the front on its
/// main address, its admin endpoints on an address of their own.
fn instance(driver: Driver, workers: &[&str]) -> (Hiku, SocketAddr) {
    let admin = free_addr();
    (instance_at(driver, workers, admin, &[]), admin)
}

/// An instance with its admin endpoints at `admin`, and `peers`' admin
/// addresses in `cluster.peers`.
fn instance_at(driver: Driver, workers: &[&str], admin: SocketAddr, peers: &[SocketAddr]) -> Hiku {
    instance_tuned(driver, workers, admin, peers, json!({}))
}

/// The same, with `adaptive` as its adaptive limits' section.
/// The sample instance config hiku ships (`config/tier/instance.json`),
/// for loopback: its PROXY protocol from the front, its admin address and
/// token, its tier of two and its announce time, as it writes them.
const SAMPLE: &str = include_str!("../../config/tier/instance.json");

fn instance_tuned(driver: Driver, workers: &[&str], admin: SocketAddr, peers: &[SocketAddr], adaptive: Value) -> Hiku {
    let mut config: Value = serde_json::from_str(SAMPLE).unwrap();
    config["host"] = json!("127.0.0.1");
    config["port"] = json!(0);
    config["workers"] = json!(workers);
    config["front"]["trusted_proxies"] = json!(["127.0.0.1"]);
    config["admin"] = json!({"listen": admin.to_string(), "token": "t0ken"});
    config["cluster"]["peers"] = json!(peers.iter().map(|p| p.to_string()).collect::<Vec<_>>());
    config["adaptive"] = adaptive;
    config.as_object_mut().unwrap().remove("log");
    Hiku::on(driver).start_config(&config.to_string())
}

fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// The workers an instance has, asked at its admin address.
fn workers_of(admin: SocketAddr) -> Vec<String> {
    let auth = [("Authorization", "Bearer t0ken")];
    let listed = Client::connect(admin).request("GET", "/admin/workers", &auth, b"").json();
    listed["workers"].as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect()
}

/// The functions an instance's directory holds warm instances of.
fn warm_functions(admin: SocketAddr) -> Vec<String> {
    let auth = [("Authorization", "Bearer t0ken")];
    let directory = Client::connect(admin).request("GET", "/admin/instances", &auth, b"").json();
    directory["functions"].as_object().unwrap().keys().cloned().collect()
}

on_both_drivers!(a_functions_calls_and_its_evictions_reach_one_instance);
fn a_functions_calls_and_its_evictions_reach_one_instance(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let (one, one_admin) = instance(driver, &[&a.url, &b.url]);
    let (two, two_admin) = instance(driver, &[&a.url, &b.url]);
    let front = Front::start(&[one.addr, two.addr], &[one_admin, two_admin]);
    let functions: Vec<String> = (0..16).map(|i| format!("fn-{i}")).collect();
    let mut c = Client::connect(front.addr);
    let mut warm_on = Vec::new();
    for f in &functions {
        for _ in 0..3 {
            let res = c.request("POST", &format!("/run/{f}"), &[], b"");
            assert_eq!(res.status, 200, "{f}: {}", front.log());
        }
        warm_on.push(c.request("POST", &format!("/run/{f}"), &[], b"").worker().to_string());
    }
    // Each function is warm on one instance only, and both have some.
    let (on_one, on_two) = (warm_functions(one_admin), warm_functions(two_admin));
    for f in &functions {
        assert!(on_one.contains(f) != on_two.contains(f), "{f}: on one {on_one:?}, on two {on_two:?}");
    }
    assert!(!on_one.is_empty() && !on_two.is_empty(), "the hash spreads functions: {on_one:?} / {on_two:?}");
    // A worker's eviction report (through the front, from the worker's
    // address, which the PROXY header carries) reaches the owner.
    for (f, worker) in functions.iter().zip(&warm_on) {
        let body = format!("{{\"host\": \"{}\"}}", &worker[7..]);
        let res = c.request("POST", &format!("/destroySandbox/{f}"), &[], body.as_bytes());
        assert_eq!((res.status, res.json()), (200, json!({"removed": true})), "{f}");
    }
    // The admin endpoints are refused on the public address, and served
    // on the internal one by an instance that is up; the front answers
    // /health on the public one itself.
    let auth = [("Authorization", "Bearer t0ken")];
    for target in ["/admin/instances", "/admin/workers", "/status", "/metrics"] {
        assert_eq!(c.request("GET", target, &auth, b"").status, 403, "{target} on the public address");
        let inside = Client::connect(front.internal).request("GET", target, &auth, b"");
        assert_eq!(inside.status, 200, "{target} on the internal address: {}", front.log());
    }
    let reload = c.request("POST", "/admin/reload", &auth, b"");
    assert_eq!(reload.status, 403, "no admin change through the public address");
    assert_eq!(c.request("GET", "/health", &[], b"").status, 200);
    // The front checks the admin addresses too: /health is answered there.
    for admin in [one_admin, two_admin] {
        assert_eq!(Client::connect(admin).request("GET", "/health", &[], b"").status, 200);
    }
    // With no instance up, the front's /health says so (for whatever
    // balances the fronts).
    drop((one, two));
    wait_for("the front to count both instances out", || {
        Client::connect(front.addr).request("GET", "/health", &[], b"").status == 503
    });
}

on_both_drivers!(two_fronts_on_the_shipped_config_send_a_function_to_the_same_instance);
fn two_fronts_on_the_shipped_config_send_a_function_to_the_same_instance(driver: Driver) {
    // More fronts carry more calls: each hashes the same, so a function
    // still has one owner whichever front its calls and reports go through.
    let w = Worker::start();
    let (one, one_admin) = instance(driver, &[&w.url]);
    let (two, two_admin) = instance(driver, &[&w.url]);
    let fronts = [
        Front::start(&[one.addr, two.addr], &[one_admin, two_admin]),
        Front::start(&[one.addr, two.addr], &[one_admin, two_admin]),
    ];
    let functions: Vec<String> = (0..16).map(|i| format!("fn-{i}")).collect();
    for front in &fronts {
        let mut c = Client::connect(front.addr);
        for f in &functions {
            assert_eq!(c.request("POST", &format!("/run/{f}"), &[], b"").status, 200, "{}", front.log());
        }
    }
    let (on_one, on_two) = (warm_functions(one_admin), warm_functions(two_admin));
    for f in &functions {
        assert!(on_one.contains(f) != on_two.contains(f), "{f}: on one {on_one:?}, on two {on_two:?}");
    }
    assert!(!on_one.is_empty() && !on_two.is_empty(), "the hash spreads functions: {on_one:?} / {on_two:?}");
}

/// Connections the instances have accepted on their main addresses (the
/// front's calls and checks), scraped at their admin addresses.
fn accepted(admins: &[SocketAddr]) -> f64 {
    let scrape = |admin: &SocketAddr| {
        let res = Client::connect(*admin).request("GET", "/metrics", &[], b"");
        let lines = res.text().lines().map(|l| Ok(l.to_string())).collect::<Vec<_>>();
        prometheus_parse::Scrape::parse(lines.into_iter()).expect("the Prometheus text format")
    };
    admins.iter().map(|a| sample(&scrape(a), "hiku_connections_accepted_total", Some(("listener", "main")))).sum()
}

on_both_drivers!(a_clients_keep_alive_connection_keeps_one_connection_to_its_instance);
fn a_clients_keep_alive_connection_keeps_one_connection_to_its_instance(driver: Driver) {
    let w = Worker::start();
    let (one, one_admin) = instance(driver, &[&w.url]);
    let (two, two_admin) = instance(driver, &[&w.url]);
    let front = Front::start(&[one.addr, two.addr], &[one_admin, two_admin]);
    // Earlier clients come and go; their connections to the instances must
    // not stand in the way of the next client's. (With `http-reuse safe`,
    // HAProxy 2.6 opened and reset a connection to the instance for every
    // call of every later client: a PROXY header ties a connection to one
    // client.)
    for _ in 0..4 {
        let mut c = Client::connect(front.addr);
        for _ in 0..5 {
            assert_eq!(c.request("POST", "/run/f", &[], b"").status, 200, "{}", front.log());
        }
    }
    let before = accepted(&[one_admin, two_admin]);
    let mut c = Client::connect(front.addr);
    for _ in 0..50 {
        assert_eq!(c.request("POST", "/run/f", &[], b"").status, 200, "{}", front.log());
    }
    let opened = accepted(&[one_admin, two_admin]) - before;
    // One for the client, and the front's checks meanwhile (each a
    // connection of its own, every 300 ms to each instance).
    assert!(opened <= 6.0, "50 calls on one client connection opened {opened} connections to the instances");
}

on_both_drivers!(calls_to_an_instance_that_died_go_to_the_other);
fn calls_to_an_instance_that_died_go_to_the_other(driver: Driver) {
    let w = Worker::start();
    let (one, one_admin) = instance(driver, &[&w.url]);
    let (two, two_admin) = instance(driver, &[&w.url]);
    let front = Front::start(&[one.addr, two.addr], &[one_admin, two_admin]);
    let call = |f: &str| Client::connect(front.addr).request("POST", &format!("/run/{f}"), &[], b"").status;
    let functions: Vec<String> = (0..16).map(|i| format!("fn-{i}")).collect();
    for f in &functions {
        assert_eq!(call(f), 200);
    }
    let survivor_had = warm_functions(two_admin);
    // Killed at once: a call whose connection is refused goes to the
    // survivor at once. (One the kernel still queued for the dead
    // instance, in the moments its listening socket outlives it, is lost
    // with it, as a call in flight there: the front cannot know it did not
    // run.) Within the checks' second, every call goes through.
    drop(one);
    let killed = std::time::Instant::now();
    let mut lost = 0;
    wait_for("every function answered through the survivor", || {
        let failed = functions.iter().filter(|f| call(f) != 200).count();
        lost += failed;
        failed == 0
    });
    assert!(killed.elapsed() < std::time::Duration::from_secs(3), "{lost} calls lost in {:?}", killed.elapsed());
    for f in functions.iter().cycle().take(48) {
        assert_eq!(call(f), 200, "{f}: {}", front.log());
    }
    // The survivor's own functions stayed where they were (consistent
    // hashing): they are warm there still, and the others joined them.
    let now = warm_functions(two_admin);
    for f in &survivor_had {
        assert!(now.contains(f), "{f} left the survivor: {now:?}");
    }
    wait_for("every function on the survivor", || warm_functions(two_admin).len() == functions.len());
}

on_both_drivers!(an_instance_stopped_under_a_stream_of_calls_fails_none);
fn an_instance_stopped_under_a_stream_of_calls_fails_none(driver: Driver) {
    let w = Worker::start();
    let (mut one, one_admin) = instance(driver, &[&w.url]);
    let (two, two_admin) = instance(driver, &[&w.url]);
    let front = Front::start(&[one.addr, two.addr], &[one_admin, two_admin]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Two clients: one on a keep-alive connection, one opening a connection per call.
    let streams: Vec<_> = [true, false]
        .into_iter()
        .map(|keep_alive| {
            let (stop, addr) = (std::sync::Arc::clone(&stop), front.addr);
            std::thread::spawn(move || {
                let (mut calls, mut failed) = (0, Vec::new());
                let mut c = Client::connect(addr);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if !keep_alive {
                        c = Client::connect(addr);
                    }
                    let res = c.request("POST", &format!("/run/fn-{}", calls % 16), &[], b"");
                    if res.status != 200 {
                        failed.push(res.status);
                    }
                    calls += 1;
                }
                (calls, failed)
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    one.signal(libc::SIGTERM);
    assert!(one.wait_exit().success(), "the stopped instance drains and exits 0");
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for stream in streams {
        let (calls, failed) = stream.join().unwrap();
        assert!(calls > 50, "a stream of calls: {calls}");
        assert!(failed.is_empty(), "{} of {calls} calls failed: {failed:?}\n{}", failed.len(), front.log());
    }
    drop(two);
}

on_both_drivers!(an_admin_change_reaches_every_instance_and_a_restarted_one_asks_its_peers);
fn an_admin_change_reaches_every_instance_and_a_restarted_one_asks_its_peers(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let (one_admin, two_admin) = (free_addr(), free_addr());
    let one = instance_at(driver, &[&a.url], one_admin, &[two_admin]);
    let two = instance_at(driver, &[&a.url], two_admin, &[one_admin]);
    let front = Front::start(&[one.addr, two.addr], &[one_admin, two_admin]);
    let auth = [("Authorization", "Bearer t0ken")];
    // Added through the front's internal address: the instance that took
    // it passes it on.
    let added =
        Client::connect(front.internal).request("POST", &format!("/admin/workers/add?workers={}", b.url), &auth, b"");
    assert_eq!(added.status, 200, "{}", added.text());
    let peers = added.json()["peers"].clone();
    assert!(
        peers == json!({one_admin.to_string(): {"status": 200}})
            || peers == json!({two_admin.to_string(): {"status": 200}}),
        "{peers}"
    );
    let both = vec![a.url.clone(), b.url.clone()];
    assert_eq!((workers_of(one_admin), workers_of(two_admin)), (both.clone(), both.clone()));
    // A restarted instance takes the tier's list from its peer, not its file's.
    // (On a new admin address: the old port may be another process's by now.)
    drop(one);
    let one_admin = free_addr();
    let _one = instance_at(driver, &[&a.url], one_admin, &[two_admin]);
    assert_eq!(workers_of(one_admin), both);
    // A peer that is down is named in the answer, and not waited for long.
    drop(two);
    let started = std::time::Instant::now();
    let removed =
        Client::connect(one_admin).request("POST", &format!("/admin/workers/remove?workers={}", b.url), &auth, b"");
    assert_eq!(removed.status, 200);
    assert!(removed.json()["peers"][two_admin.to_string()]["error"].is_string(), "{}", removed.text());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(workers_of(one_admin), vec![a.url.clone()]);
    // A change passed on goes no further (a peer's own answer names no peers).
    let forwarded = [("Authorization", "Bearer t0ken"), ("X-Hiku-Forwarded", "1")];
    let again =
        Client::connect(one_admin).request("POST", &format!("/admin/workers/add?workers={}", b.url), &forwarded, b"");
    assert_eq!((again.status, again.json().get("peers").is_none()), (200, true), "{}", again.text());
}

on_both_drivers!(behind_nginx_a_functions_calls_and_evictions_reach_one_instance_too);
fn behind_nginx_a_functions_calls_and_evictions_reach_one_instance_too(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let start = || {
        let admin = free_addr();
        let extra = json!({
            "front": {"forwarded_for": true, "trusted_proxies": ["127.0.0.1"]},
            "admin": {"listen": admin.to_string(), "token": "t0ken"},
        });
        (Hiku::on(driver).start_with("pull-based", &[&a.url, &b.url], extra), admin)
    };
    let ((one, one_admin), (two, two_admin)) = (start(), start());
    let front = Front::start_nginx(&[one.addr, two.addr], &[one_admin, two_admin]);
    let functions: Vec<String> = (0..16).map(|i| format!("fn-{i}")).collect();
    let mut c = Client::connect(front.addr);
    let mut warm_on = Vec::new();
    for f in &functions {
        for _ in 0..3 {
            assert_eq!(c.request("POST", &format!("/run/{f}"), &[], b"").status, 200, "{f}: {}", front.log());
        }
        warm_on.push(c.request("POST", &format!("/run/{f}"), &[], b"").worker().to_string());
    }
    let (on_one, on_two) = (warm_functions(one_admin), warm_functions(two_admin));
    for f in &functions {
        assert!(on_one.contains(f) != on_two.contains(f), "{f}: on one {on_one:?}, on two {on_two:?}");
    }
    // The worker's report: X-Forwarded-For names it, and the owner takes it.
    for (f, worker) in functions.iter().zip(&warm_on) {
        let body = format!("{{\"host\": \"{}\"}}", &worker[7..]);
        let res = c.request("POST", &format!("/destroySandbox/{f}"), &[], body.as_bytes());
        assert_eq!((res.status, res.json()), (200, json!({"removed": true})), "{f}");
    }
    // A client cannot pass itself off as a worker through the front: nginx
    // adds the address it came from after whatever the client claims.
    let spoofed = c.request("POST", "/run/fn-0", &[("X-Forwarded-For", "10.9.9.9")], b"");
    assert_eq!(spoofed.status, 200);
    let seen = if a.requests() > 0 && a.last().target.contains("fn-0") { a.last() } else { b.last() };
    assert_eq!(seen.header("x-forwarded-for"), Some("10.9.9.9, 127.0.0.1, 127.0.0.1"));
    // The admin endpoints: refused on the public address, served on the
    // internal one.
    let auth = [("Authorization", "Bearer t0ken")];
    for target in ["/admin/instances", "/status", "/metrics"] {
        assert_eq!(c.request("GET", target, &auth, b"").status, 403, "{target} on the public address");
        let inside = Client::connect(front.internal).request("GET", target, &auth, b"");
        assert_eq!(inside.status, 200, "{target} on the internal address: {}", front.log());
    }
}

on_both_drivers!(a_restarted_instance_takes_its_peers_warm_entries);
fn a_restarted_instance_takes_its_peers_warm_entries(driver: Driver) {
    let w = Worker::start();
    let (one_admin, two_admin) = (free_addr(), free_addr());
    let one = instance_at(driver, &[&w.url], one_admin, &[two_admin]);
    let two = instance_at(driver, &[&w.url], two_admin, &[one_admin]);
    let front = Front::start(&[one.addr, two.addr], &[one_admin, two_admin]);
    let functions: Vec<String> = (0..16).map(|i| format!("fn-{i}")).collect();
    let call = |f: &str| Client::connect(front.addr).request("POST", &format!("/run/{f}"), &[], b"").status;
    for f in &functions {
        assert_eq!(call(f), 200);
    }
    let ones = warm_functions(one_admin);
    assert!(!ones.is_empty());
    // While it is away, the other instance serves its functions, and warms them.
    drop(one);
    wait_for("the survivor to serve every function", || {
        functions.iter().all(|f| call(f) == 200) && warm_functions(two_admin).len() == functions.len()
    });
    // Back, it knows them warm before any call reaches it. (On a new admin
    // address: the old port may be another process's by now.)
    let one_admin = free_addr();
    let one = instance_at(driver, &[&w.url], one_admin, &[two_admin]);
    let known = warm_functions(one_admin);
    for f in &ones {
        assert!(known.contains(f), "{f} is not warm on the restarted instance: {known:?}\n{}", one.stderr());
    }
}

on_both_drivers!(a_restarted_instance_takes_its_peers_adaptive_limits);
fn a_restarted_instance_takes_its_peers_adaptive_limits(driver: Driver) {
    let w = Worker::start();
    let (one_admin, two_admin) = (free_addr(), free_addr());
    // The survivor starts its limits lower than the restarted one would
    // (4 for the worker: 2 for each of the two instances, against 3), and
    // its calls of 5 ms show it the worker's slowdowns.
    let two = instance_tuned(driver, &[&w.url], two_admin, &[one_admin], json!({"initial": 4}));
    let mut c = two.client();
    c.send(b"PROXY TCP4 127.0.0.1 127.0.0.1 40000 80\r\n");
    for _ in 0..80 {
        assert_eq!(c.request("POST", "/run/f?ms=5", &[], b"x").status, 200);
    }
    let limits = |admin: SocketAddr| {
        let auth = [("Authorization", "Bearer t0ken")];
        Client::connect(admin).request("GET", "/admin/instances", &auth, b"").json()["workers"][0]["adaptive"].clone()
    };
    let learnt = limits(two_admin);
    assert_eq!((learnt["limit"].clone(), learnt["holds"].clone()), (json!(2), json!(true)), "{learnt}");
    assert!(learnt["lowest_slowdown"].as_f64().is_some(), "{learnt}");
    // A starting instance takes them, before any call reaches it.
    let one = instance_at(driver, &[&w.url], one_admin, &[two_admin]);
    assert_eq!(limits(one_admin), learnt, "{}", one.stderr());
}
