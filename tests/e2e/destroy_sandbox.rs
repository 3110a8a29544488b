//! `/destroySandbox/<fn>`: a worker says an idle instance is gone.

use crate::support::{wait_for, Client, Driver, Hiku, Worker};

on_both_drivers!(destroy_sandbox_removes_one_idle_entry);
fn destroy_sandbox_removes_one_idle_entry(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(driver).start("pull-based", &[&a.url, &b.url]);
    let warm = hiku.post("/run/f", b"").worker().to_string();
    let host = warm.trim_start_matches("http://");
    let destroy = |body: &str| {
        let mut c = hiku.client();
        c.request("POST", "/destroySandbox/f", &[("Content-Type", "application/json")], body.as_bytes())
    };
    let res = destroy(&format!("{{\"host\": \"{host}\"}}"));
    assert_eq!((res.status, res.json()), (200, serde_json::json!({"removed": true})));
    let res = destroy(&format!("{{\"host\": \"{warm}\"}}"));
    assert_eq!((res.status, res.json()), (200, serde_json::json!({"removed": false})), "only one entry was there");
    let res = destroy("{\"host\": \"127.0.0.1:1\"}");
    assert_eq!(res.status, 404);
    assert!(res.text().contains("127.0.0.1:1"));
    for bad in ["", "{", "{\"hots\": \"x\"}", "[1]"] {
        assert_eq!(destroy(bad).status, 400, "{bad:?}");
    }
    assert_eq!(hiku.post("/destroySandbox/f/g", b"{}").status, 400);
    // Other balancers accept the message and keep no state.
    let hiku = Hiku::on(driver).start("random", &[&a.url]);
    let res = hiku.client().request(
        "POST",
        "/destroySandbox/f",
        &[],
        format!("{{\"host\": \"{}\"}}", &a.url[7..]).as_bytes(),
    );
    assert_eq!((res.status, res.json()), (200, serde_json::json!({"removed": false})));
}

on_both_drivers!(destroy_sandbox_sends_the_next_call_elsewhere);
fn destroy_sandbox_sends_the_next_call_elsewhere(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(driver).start("pull-based", &[&a.url, &b.url]);
    let warm = hiku.post("/run/f", b"").worker().to_string();
    let other = if warm == a.url { &b.url } else { &a.url };
    // Warm f on the other worker too, then evict it there: f stays on `warm`.
    let mut c = hiku.client();
    let addr = hiku.addr;
    let held = std::thread::spawn(move || Client::connect(addr).request("POST", "/run/f?mode=hold", &[], b""));
    let holder = if warm == a.url { &a } else { &b };
    wait_for("f held on its warm worker", || holder.held() == 1);
    assert_eq!(c.request("POST", "/run/f", &[], b"").worker(), other.as_str(), "no idle entry left: least connections");
    holder.open_gate();
    assert_eq!(held.join().unwrap().worker(), warm);
    // Both workers hold an idle f now; evict the one on `other`.
    let body = format!("{{\"host\": \"{}\"}}", &other[7..]);
    assert_eq!(c.request("POST", "/destroySandbox/f", &[], body.as_bytes()).json()["removed"], true);
    for _ in 0..5 {
        assert_eq!(c.request("POST", "/run/f", &[], b"").worker(), warm);
    }
}
