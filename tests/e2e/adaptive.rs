//! Adaptive limits: a worker that fails calls past some number at once
//! costs a few calls while hiku finds the number, then none: the calls past
//! it wait in hiku's queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::{wait_for, Driver, Hiku, Worker};

/// Calls the clients send in all, and how many send at once.
const CALLS: usize = 1200;
const CLIENTS: usize = 12;

on_both_drivers!(a_worker_that_fails_calls_past_four_at_once_gets_four_and_loses_no_more_calls);
fn a_worker_that_fails_calls_past_four_at_once_gets_four_and_loses_no_more_calls(driver: Driver) {
    let worker = Worker::start();
    worker.fail_past(4, 502);
    // The default limit (6 to start with); calls past it wait at most 10 s.
    let hiku = Arc::new(Hiku::on(driver).start("least-connections", &[&worker.url]));
    let (sent, failed_late) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (hiku, sent, failed_late) = (Arc::clone(&hiku), Arc::clone(&sent), Arc::clone(&failed_late));
            std::thread::spawn(move || {
                let mut c = hiku.client();
                let mut statuses = Vec::new();
                while sent.fetch_add(1, Ordering::Relaxed) < CALLS {
                    let res = c.request("POST", "/run/f?ms=5", &[], b"x");
                    let n = sent.load(Ordering::Relaxed);
                    if res.status != 200 && n > CALLS / 2 {
                        failed_late.fetch_add(1, Ordering::Relaxed);
                    }
                    statuses.push(res.status);
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(statuses.len(), CALLS);
    let failed = statuses.iter().filter(|&&s| s != 200).count();
    assert!(statuses.iter().all(|&s| s == 200 || s == 502), "only the worker's own failures: {statuses:?}");
    assert_eq!(failed, worker.failed(), "every failure is one the worker made");
    // Finding the number costs a few calls (three or four each time the
    // limit is past it: 7 here); then a try past it every 33 windows of
    // calls (about 800 calls at four at once), three calls each.
    assert!(failed <= 24, "{failed} of {CALLS} calls failed: {}", hiku.stderr());
    let late = failed_late.load(Ordering::Relaxed);
    assert!(late <= 8, "{late} failed in the second half: {}", hiku.stderr());
    let status = hiku.get("/status").json();
    let limit = status["workers"][0]["adaptive"]["limit"].as_u64().unwrap();
    assert!((3..=4).contains(&limit), "settles near four: {status}");
    assert_eq!(status["workers"][0]["capacity"], limit, "the limit is the capacity");
    assert!(hiku.stderr().contains("a call failed; its limit 6 -> 4"), "{}", hiku.stderr());
}

on_both_drivers!(the_adaptive_limit_can_be_turned_off_and_stays_within_a_configured_capacity);
fn the_adaptive_limit_can_be_turned_off_and_stays_within_a_configured_capacity(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let workers = [serde_json::json!({"url": a.url, "max_inflight": 3}), serde_json::json!(b.url)];
    let config = serde_json::json!({"workers": workers});
    let hiku = Hiku::on(driver).start_with("least-connections", &[], config);
    let status = hiku.get("/status").json();
    let row = |i: usize| {
        let w = &status["workers"][i];
        (w["capacity"].clone(), w["adaptive"]["limit"].clone(), w["adaptive"]["holds"].clone())
    };
    // No call timed yet: the limits hold calls back at their start (a
    // within its capacity), until calls show they take too little time.
    assert_eq!(row(0), (serde_json::json!(3), serde_json::json!(3), serde_json::json!(true)), "{status}");
    assert_eq!(row(1), (serde_json::json!(6), serde_json::json!(6), serde_json::json!(true)), "{status}");
    let metrics = hiku.get("/metrics").text();
    assert!(metrics.contains(&format!("hiku_worker_capacity{{worker=\"{}\"}} 6", b.url)), "{metrics}");
    // Calls that take well under a millisecond are not held back: after 300
    // of them, 20 at once all reach their worker, past its limit of 6.
    let fast = Worker::start();
    let alone = Hiku::on(driver).start("least-connections", &[&fast.url]);
    let mut c = alone.client();
    for _ in 0..300 {
        assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 200);
    }
    let status = alone.get("/status").json();
    assert_eq!(status["workers"][0]["adaptive"]["holds"], false, "{status}");
    let held: Vec<_> = (0..20)
        .map(|_| {
            let mut c = alone.client();
            c.send(b"POST /run/f?mode=hold HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx");
            c
        })
        .collect();
    wait_for("20 calls at the worker at once", || fast.held() == 20);
    fast.open_gate();
    drop(held);
    let off = Hiku::on(driver).start_with(
        "least-connections",
        &[&a.url],
        serde_json::json!({"adaptive": {"enabled": false}}),
    );
    let status = off.get("/status").json();
    assert_eq!(status["workers"][0]["capacity"], serde_json::Value::Null, "{status}");
    assert_eq!(status["workers"][0]["adaptive"], serde_json::Value::Null, "{status}");
}
