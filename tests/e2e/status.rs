//! `/status`: the balancer, the cores, and each worker's load and probe.

use crate::support::{cores, wait_for, Client, Driver, Hiku, Worker};

on_both_drivers!(status_reports_balancer_cores_load_and_probes);
fn status_reports_balancer_cores_load_and_probes(driver: Driver) {
    let live = Worker::start();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let hiku = Hiku::on(driver).start("hashing-bounded", &[&live.url]);
    // One request held at the worker counts as in flight.
    let held = {
        let addr = hiku.addr;
        std::thread::spawn(move || Client::connect(addr).request("POST", "/run/f?mode=hold", &[], b"").status)
    };
    wait_for("the held request to reach the worker", || live.held() == 1);
    assert_eq!(hiku.post(&format!("/admin/workers/add?workers={dead}"), b"").status, 200);
    let status = hiku.get("/status");
    assert_eq!(status.status, 200);
    assert_eq!(status.header("content-type"), Some("application/json"));
    let json = status.json();
    assert_eq!(json["balancer"], "hashing-bounded");
    assert_eq!(json["cores"], cores());
    let list = json["workers"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["url"], live.url.as_str());
    assert_eq!(list[0]["in_flight"], 1);
    assert_eq!(list[0]["probe"]["status"], 200);
    assert_eq!(list[1]["url"], dead.as_str());
    assert_eq!(list[1]["in_flight"], 0);
    assert!(list[1]["probe"]["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
    live.open_gate();
    assert_eq!(held.join().unwrap(), 200);
    wait_for("the count to drop", || hiku.get("/status").json()["workers"][0]["in_flight"] == 0);
}
