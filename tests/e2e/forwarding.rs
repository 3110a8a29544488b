//! Forwarding: a `/run/<fn>` call goes to a worker with its method, target,
//! headers and body, and the answer comes back, or a 4xx/5xx saying why not.

use crate::support::{wait_for, Driver, Hiku, Worker, BALANCERS};

on_both_drivers!(forwards_method_target_headers_and_body_and_relays_the_answer);
fn forwards_method_target_headers_and_body_and_relays_the_answer(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("least-connections", &[&w.url]);
    let mut c = hiku.client();
    let res = c.request(
        "PUT",
        "/run/f?code=201&x=1",
        &[
            ("X-Forwarded-For", "10.9.8.7"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "dropped"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "secret"),
            ("X-End-To-End", "kept"),
        ],
        b"{\"param0\": \"value0\"}",
    );
    assert_eq!(res.status, 201);
    assert_eq!(res.header("x-custom"), Some("yes"), "the worker's fields come back");
    assert_eq!(res.body, b"{\"param0\": \"value0\"}");
    let seen = w.last();
    assert_eq!((seen.method.as_str(), seen.target.as_str()), ("PUT", "/run/f?code=201&x=1"));
    assert_eq!(seen.body, b"{\"param0\": \"value0\"}");
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    assert_eq!(seen.header("host"), Some("hiku"), "the client's Host goes through");
    assert_eq!(seen.all("x-forwarded-for"), ["10.9.8.7, 127.0.0.1"]);
    for hop in ["x-hop", "keep-alive", "te", "proxy-authorization"] {
        assert_eq!(seen.header(hop), None, "{hop} must not be forwarded");
    }
    assert!(seen.header("connection").map_or(true, |v| !v.contains("X-Hop")));
    // The connection stays open for the next request.
    assert_eq!(c.request("GET", "/run/f", &[], b"").status, 200);
}

on_both_drivers!(run_paths_need_exactly_two_segments);
fn run_paths_need_exactly_two_segments(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("pull-based", &[&w.url]);
    for ok in ["/run/f", "/run/f/", "/run/f?x=/y"] {
        assert_eq!(hiku.post(ok, b"").status, 200, "{ok}");
    }
    for bad in ["/run", "/run/", "/run/f/g", "/run//f"] {
        let res = hiku.post(bad, b"");
        assert_eq!(res.status, 400, "{bad}");
        assert!(res.text().contains(bad.trim_end_matches('/')), "{bad}: {}", res.text());
    }
    for missing in ["/", "/runner/f", "/status/x", "/admin", "/admin/workers/list"] {
        assert_eq!(hiku.get(missing).status, 404, "{missing}");
    }
    assert_eq!(w.seen().len(), 3, "only the good paths reached the worker");
}

on_both_drivers!(no_workers_is_a_503);
fn no_workers_is_a_503(driver: Driver) {
    let hiku = Hiku::on(driver).start("pull-based", &[]);
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f", &[], b"x");
    assert_eq!(res.status, 503);
    assert!(res.text().contains("no workers"), "{}", res.text());
    assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 503, "the connection stays usable");
}

on_both_drivers!(an_unreachable_worker_is_a_502_naming_it);
fn an_unreachable_worker_is_a_502_naming_it(driver: Driver) {
    // A port that was just free: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for balancer in BALANCERS {
        let hiku = Hiku::on(driver).start(balancer, &[&dead]);
        let mut c = hiku.client();
        let res = c.request("POST", "/run/f", &[], b"payload");
        assert_eq!(res.status, 502, "{balancer}");
        assert!(res.text().contains(&dead), "{balancer}: {}", res.text());
        assert_eq!(c.request("POST", "/run/f", &[], b"again").status, 502, "{balancer}: keep-alive after a 502");
    }
}

on_both_drivers!(a_worker_that_closes_without_answering_is_a_502_and_not_warm);
fn a_worker_that_closes_without_answering_is_a_502_and_not_warm(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(driver).start("pull-based", &[&a.url, &b.url]);
    // A worker's error answer does not mean a warm instance either.
    for _ in 0..20 {
        assert_eq!(hiku.post("/run/e?code=500", b"x").status, 500);
    }
    let on = |w: &Worker, f: &str| w.seen().iter().filter(|s| s.target.starts_with(f)).count();
    assert!(on(&a, "/run/e") > 0 && on(&b, "/run/e") > 0, "500s must not pin e to a worker");
    let res = hiku.post("/run/f?mode=drop", b"x");
    assert_eq!(res.status, 502);
    let failed_on = if on(&a, "/run/f") == 0 { &b } else { &a };
    assert!(res.text().contains(&failed_on.url), "{}", res.text());
    // The failure left no warm entry: with both idle, the next pick is
    // random, so over many rounds both workers get picked.
    for _ in 0..40 {
        assert_eq!(hiku.post("/run/g?mode=drop", b"x").status, 502);
    }
    let (ga, gb) = (on(&a, "/run/g"), on(&b, "/run/g"));
    assert!(ga > 0 && gb > 0, "failed requests must not pin g to a worker: {ga} on a, {gb} on b");
}

on_both_drivers!(a_request_that_may_have_reached_the_worker_is_not_sent_twice);
fn a_request_that_may_have_reached_the_worker_is_not_sent_twice(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("least-connections", &[&w.url]);
    let mut c = hiku.client();
    let count = |target: &str| w.seen().iter().filter(|s| s.target == target).count();
    // The worker reads the request on a pooled connection, then closes it.
    assert_eq!(c.request("POST", "/run/f", &[], b"warm up the pool").status, 200);
    let res = c.request("POST", "/run/f?mode=drop&n=1", &[], b"run once");
    assert_eq!(res.status, 502);
    assert_eq!(count("/run/f?mode=drop&n=1"), 1, "a POST that reached the worker was sent again");
    // An idempotent request may be sent again on a fresh connection.
    assert_eq!(c.request("GET", "/run/f", &[], b"").status, 200);
    assert_eq!(c.request("GET", "/run/f?mode=drop&n=2", &[], b"").status, 502);
    assert_eq!(count("/run/f?mode=drop&n=2"), 2);
}

on_both_drivers!(a_keep_alive_connection_idle_past_its_hot_wait_is_served);
fn a_keep_alive_connection_idle_past_its_hot_wait_is_served(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let mut c = hiku.client();
    assert_eq!(c.request("POST", "/run/f", &[], b"one").body, b"one");
    // Past hiku's hot wait (conn::HOT_IDLE, 500 ms) the connection gives its
    // buffers back and is parked in a small task waiting for readiness: the
    // next request still arrives whole.
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert_eq!(c.request("POST", "/run/f", &[], b"two").body, b"two");
    assert_eq!(c.request("POST", "/run/f", &[], b"three").body, b"three");
    // Parked again, then woken by a head that comes in two pieces.
    std::thread::sleep(std::time::Duration::from_millis(700));
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    c.send(b"Content-Length: 4\r\n\r\nfour");
    assert_eq!(c.read(false).body, b"four");
}

on_both_drivers!(stray_bytes_from_a_worker_never_reach_another_request);
fn stray_bytes_from_a_worker_never_reach_another_request(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let mut c = hiku.client();
    for i in 1..=5 {
        assert_eq!(c.request("POST", "/run/f?mode=extra", &[], b"x").status, 200);
        wait_for("the stray bytes to be sent", || w.strays() == i);
        // The pooled connection has the strays waiting: once it has been idle
        // for more than a moment (hiku's pool::FRESH, 50 ms: a worker's
        // unsolicited answer, such as a 408 before an idle close, comes
        // seconds after the last one), it is checked and not reused.
        std::thread::sleep(std::time::Duration::from_millis(60));
        let res = c.request("POST", "/run/g", &[], b"clean");
        assert_eq!((res.status, res.body.as_slice()), (200, &b"clean"[..]), "{}", res.text());
    }
}

on_both_drivers!(transfer_codings_hiku_cannot_relay_are_a_502);
fn transfer_codings_hiku_cannot_relay_are_a_502(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f?mode=gzip", &[], b"x");
    assert_eq!(res.status, 502);
    assert!(res.text().contains(&w.url) && res.text().contains("transfer coding"), "{}", res.text());
    assert_eq!(c.request("POST", "/run/f", &[], b"next").body, b"next");
}

on_both_drivers!(absolute_form_targets_are_forwarded_in_origin_form);
fn absolute_form_targets_are_forwarded_in_origin_form(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let res = hiku.post(&format!("http://{}/run/f?x=1", hiku.addr), b"abs");
    assert_eq!((res.status, res.body.as_slice()), (200, &b"abs"[..]));
    assert_eq!(w.last().target, "/run/f?x=1");
}
