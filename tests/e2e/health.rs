//! Health: a dead worker ejected by failed calls or by probes, and taken
//! back once it answers.

use crate::support::{dead_url, rewrite_config, sample, scrape, wait_for, Driver, Hiku, Worker};

on_both_drivers!(a_dead_worker_is_ejected_and_taken_back_once_it_answers);
fn a_dead_worker_is_ejected_and_taken_back_once_it_answers(driver: Driver) {
    let live = Worker::start();
    let dead = dead_url();
    let config = serde_json::json!({"retries": {"connect": 0}});
    let hiku = Hiku::on(driver).start_with("least-connections", &[&live.url, &dead], config);
    let state = |url: &str| {
        let status = hiku.get("/status").json();
        let workers = status["workers"].as_array().unwrap().clone();
        let w = workers.iter().find(|w| w["url"].as_str() == Some(url)).unwrap().clone();
        w["state"].as_str().unwrap().to_string()
    };
    // Calls that go to the dead worker fail, until three in a row eject it.
    let mut failed = 0;
    for _ in 0..50 {
        if hiku.post("/run/f", b"x").status == 502 {
            failed += 1;
        }
        if state(&dead) == "ejected" {
            break;
        }
    }
    assert_eq!((failed, state(&dead)), (3, "ejected".to_string()));
    assert_eq!(state(&live.url), "up");
    let metrics = hiku.get("/metrics").text();
    assert!(metrics.contains(&format!("hiku_worker_ejected{{worker=\"{dead}\"}} 1")), "{metrics}");
    assert!(metrics.contains(&format!("hiku_worker_ejections_total{{worker=\"{dead}\"}} 1")), "{metrics}");
    for _ in 0..20 {
        let res = hiku.post("/run/f", b"x");
        assert_eq!((res.status, res.worker()), (200, live.url.as_str()), "an ejected worker got a call");
    }
    // It comes back: a probe finds it (after 0.5 s, then 1 s, ...).
    let back = Worker::start_at(dead.trim_start_matches("http://"));
    wait_for("the worker taken back", || state(&dead) == "up");
    let mut c = hiku.client();
    let on_back = (0..40).filter(|_| c.request("POST", "/run/f", &[], b"x").worker() == back.url).count();
    assert!(on_back > 0, "the worker taken back got no call");
}

on_both_drivers!(active_probes_eject_a_dead_worker_before_any_call_reaches_it);
fn active_probes_eject_a_dead_worker_before_any_call_reaches_it(driver: Driver) {
    let live = Worker::start();
    let dead = dead_url();
    let config = serde_json::json!({"health": {"interval_ms": 100}, "retries": {"connect": 0}});
    let hiku = Hiku::on(driver).start_with("random", &[&live.url, &dead], config);
    let ejected = || sample(&scrape(&hiku), "hiku_worker_ejected", Some(("worker", dead.as_str()))) == 1.0;
    wait_for("the dead worker ejected by its probes", ejected);
    assert_eq!(sample(&scrape(&hiku), "hiku_worker_ejected", Some(("worker", live.url.as_str()))), 0.0);
    let probes = live.requests();
    wait_for("the live worker probed too", || live.requests() > probes);
    assert!(live.seen().is_empty(), "probes are GET /status, not calls");
    for i in 0..20 {
        let res = hiku.post(&format!("/run/f{i}"), b"x");
        assert_eq!((res.status, res.worker()), (200, live.url.as_str()));
    }
}

on_both_drivers!(a_reload_that_sets_health_interval_starts_the_probes);
fn a_reload_that_sets_health_interval_starts_the_probes(driver: Driver) {
    let live = Worker::start();
    let dead = dead_url();
    let hiku = Hiku::on(driver).start_with("random", &[&live.url, &dead], serde_json::json!({}));
    let ejected = || sample(&scrape(&hiku), "hiku_worker_ejected", Some(("worker", dead.as_str()))) == 1.0;
    assert!(!ejected(), "no call, no probe: nothing found it dead");
    rewrite_config(&hiku, "random", &[&live.url, &dead], serde_json::json!({"health": {"interval_ms": 100}}));
    hiku.signal(libc::SIGHUP);
    wait_for("the dead worker ejected by the probes the reload started", ejected);
}
