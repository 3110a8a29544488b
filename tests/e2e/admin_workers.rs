//! `/admin/workers/add` and `/admin/workers/remove`: the worker list
//! changed on the wire, with calls in flight or not.

use crate::support::{wait_for, workers, Client, Driver, Hiku, Response, Worker, BALANCERS};

on_both_drivers!(admin_adds_and_removes_workers_in_every_list_form);
fn admin_adds_and_removes_workers_in_every_list_form(driver: Driver) {
    let ws = workers(3);
    let [a, b, c] = [ws[0].url.as_str(), ws[1].url.as_str(), ws[2].url.as_str()];
    let hiku = Hiku::on(driver).start("least-connections", &[a]);
    let list = |res: Response| {
        assert_eq!(res.status, 200, "{}", res.text());
        let json = res.json();
        json["workers"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    // Comma-separated and repeated, with a present worker (a no-op).
    let res = hiku.post(&format!("/admin/workers/add?workers={b},{a}&workers={c}"), b"");
    assert_eq!(list(res), [a, b, c]);
    let res = hiku.get(&format!("/admin/workers/add?workers={b}"));
    assert_eq!(list(res), [a, b, c]);
    // A malformed URL anywhere: 400 naming it, nothing added.
    let d = Worker::start();
    for bad in ["localhost:5000", "ftp://x", "http://a/b", "http://a:99999"] {
        let res = hiku.post(&format!("/admin/workers/add?workers={}&workers={bad}", d.url), b"");
        assert_eq!(res.status, 400, "{bad}");
        assert!(res.text().contains(bad), "{bad}: {}", res.text());
    }
    assert_eq!(hiku.post("/admin/workers/add", b"").status, 400, "an empty list");
    // Removing: an absent worker is a 404 naming it, and nothing changes.
    let res = hiku.post(&format!("/admin/workers/remove?workers={a},{}", d.url), b"");
    assert_eq!(res.status, 404);
    assert!(res.text().contains(&d.url), "{}", res.text());
    let res = hiku.post(&format!("/admin/workers/remove?workers={a}&workers={c}"), b"");
    assert_eq!(list(res), [b]);
    // Only the remaining worker is picked.
    for _ in 0..20 {
        assert_eq!(hiku.post("/run/f", b"").worker(), b);
    }
    let res = hiku.post(&format!("/admin/workers/remove?workers={b}"), b"");
    assert_eq!(list(res), Vec::<String>::new());
    assert_eq!(hiku.post("/run/f", b"").status, 503);
    // Percent-encoded URLs work too, and an added worker takes requests.
    let encoded = d.url.replace(':', "%3A").replace('/', "%2F");
    assert_eq!(list(hiku.post(&format!("/admin/workers/add?workers={encoded}"), b"")), [d.url.as_str()]);
    assert_eq!(hiku.post("/run/f", b"").worker(), d.url);
}

on_both_drivers!(workers_change_while_requests_are_in_flight);
fn workers_change_while_requests_are_in_flight(driver: Driver) {
    for balancer in BALANCERS {
        let (a, b) = (Worker::start(), Worker::start());
        let hiku = Hiku::on(driver).start(balancer, &[&a.url]);
        // Warm f on a (a pull-based idle entry), then hold three requests there.
        assert_eq!(hiku.post("/run/f", b"").worker(), a.url);
        let held: Vec<_> = (0..3)
            .map(|_| {
                let addr = hiku.addr;
                std::thread::spawn(move || Client::connect(addr).request("POST", "/run/f?mode=hold", &[], b"held"))
            })
            .collect();
        wait_for("three requests held at a", || a.held() == 3);
        assert_eq!(hiku.post(&format!("/admin/workers/add?workers={}", b.url), b"").status, 200);
        assert_eq!(hiku.post(&format!("/admin/workers/remove?workers={}", a.url), b"").status, 200);
        for _ in 0..10 {
            let res = hiku.post("/run/f", b"after");
            assert_eq!((res.status, res.worker()), (200, b.url.as_str()), "{balancer}: a removed worker was picked");
        }
        a.open_gate();
        for h in held {
            let res = h.join().unwrap();
            assert_eq!(
                (res.status, res.worker(), res.body.as_slice()),
                (200, a.url.as_str(), &b"held"[..]),
                "{balancer}"
            );
        }
        let status = hiku.get("/status").json();
        assert_eq!(status["workers"].as_array().unwrap().len(), 1, "{balancer}");
        assert_eq!(status["workers"][0]["in_flight"], 0, "{balancer}");
        // The finished requests on the removed worker left it out for good.
        for _ in 0..10 {
            assert_eq!(hiku.post("/run/f", b"").worker(), b.url, "{balancer}");
        }
    }
}
