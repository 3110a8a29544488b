//! Balancers on the wire: where each balancer sends calls, as the workers
//! see them.

use std::collections::HashSet;

use crate::support::{urls, wait_for, workers, Client, Driver, Hiku, Worker};

on_both_drivers!(pull_based_repicks_the_worker_that_just_finished_a_function);
fn pull_based_repicks_the_worker_that_just_finished_a_function(driver: Driver) {
    let ws = workers(3);
    let hiku = Hiku::on(driver).start("pull-based", &urls(&ws));
    for function in ["f", "g", "h", "i"] {
        let mut c = hiku.client();
        let first = c.request("POST", &format!("/run/{function}"), &[], b"").worker().to_string();
        for _ in 0..20 {
            assert_eq!(c.request("POST", &format!("/run/{function}"), &[], b"").worker(), first, "{function}");
        }
        // The same from fresh connections (which may land on any core).
        for _ in 0..10 {
            assert_eq!(hiku.post(&format!("/run/{function}"), b"").worker(), first, "{function}");
        }
    }
}

on_both_drivers!(hashing_bounded_keeps_a_function_on_one_worker);
fn hashing_bounded_keeps_a_function_on_one_worker(driver: Driver) {
    let ws = workers(4);
    let hiku = Hiku::on(driver).start("hashing-bounded", &urls(&ws));
    let mut homes = HashSet::new();
    for i in 0..40 {
        let function = format!("fn-{i}");
        let first = hiku.post(&format!("/run/{function}"), b"").worker().to_string();
        for _ in 0..5 {
            assert_eq!(hiku.post(&format!("/run/{function}?q={i}"), b"").worker(), first, "{function}");
        }
        homes.insert(first);
    }
    assert_eq!(homes.len(), 4, "40 functions spread over all 4 workers");
}

on_both_drivers!(least_connections_avoids_a_busy_worker);
fn least_connections_avoids_a_busy_worker(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(driver).start("least-connections", &[&a.url, &b.url]);
    let addr = hiku.addr;
    let held = std::thread::spawn(move || Client::connect(addr).request("POST", "/run/f?mode=hold", &[], b""));
    wait_for("a request held", || a.held() + b.held() == 1);
    let (busy, idle) = if a.held() == 1 { (&a, &b) } else { (&b, &a) };
    for _ in 0..10 {
        assert_eq!(hiku.post("/run/g", b"").worker(), idle.url);
    }
    busy.open_gate();
    assert_eq!(held.join().unwrap().status, 200);
}

on_both_drivers!(random_uses_every_worker);
fn random_uses_every_worker(driver: Driver) {
    let ws = workers(3);
    let hiku = Hiku::on(driver).start("random", &urls(&ws));
    let picked: HashSet<String> = (0..60).map(|_| hiku.post("/run/f", b"").worker().to_string()).collect();
    assert_eq!(picked.len(), 3);
}
