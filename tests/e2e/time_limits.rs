//! Time limits and retries: clients and workers too slow, connections
//! refused, overloaded workers, bodies held to be sent again, and the
//! queue calls wait in while every worker is full.

use crate::support::{
    dead_url, held_call, in_flight, pattern, sample, scrape, send_call, wait_for, Client, Driver, Hiku, Response,
    Worker, BALANCERS,
};

on_both_drivers!(a_client_that_sends_half_a_head_gets_a_408_and_is_closed);
fn a_client_that_sends_half_a_head_gets_a_408_and_is_closed(driver: Driver) {
    let w = Worker::start();
    let hiku =
        Hiku::on(driver).start_with("random", &[&w.url], serde_json::json!({"timeouts_ms": {"client_header": 300}}));
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\n");
    let res = c.read(false);
    assert_eq!(res.status, 408, "{}", res.text());
    assert_eq!(res.text(), "no whole request head within 300 ms\n");
    assert_eq!(res.header("connection"), Some("close"));
    assert!(c.is_closed());
    assert_eq!(w.requests(), 0);
    // A head sent in pieces, each in time, is not cut off.
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.1\r\n");
    std::thread::sleep(std::time::Duration::from_millis(100));
    c.send(b"Host: h\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(c.read(false).body, b"ok");
}

on_both_drivers!(an_idle_keep_alive_connection_is_closed_silently);
fn an_idle_keep_alive_connection_is_closed_silently(driver: Driver) {
    let w = Worker::start();
    // Shorter and longer than the wait with a buffer ready (500 ms).
    for idle in [200, 800] {
        let hiku =
            Hiku::on(driver).start_with("random", &[&w.url], serde_json::json!({"timeouts_ms": {"client_idle": idle}}));
        let mut c = hiku.client();
        assert_eq!(c.request("POST", "/run/f", &[], b"one").body, b"one");
        assert!(c.is_closed(), "client_idle {idle}: closed without a word");
        // A connection that never sends anything goes the same way.
        assert!(hiku.client().is_closed(), "client_idle {idle}: a silent new connection");
    }
}

on_both_drivers!(a_body_that_stops_coming_gets_a_408_and_releases_the_worker);
fn a_body_that_stops_coming_gets_a_408_and_releases_the_worker(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start_with(
        "least-connections",
        &[&w.url],
        serde_json::json!({"timeouts_ms": {"client_body": 300}}),
    );
    for target in ["/run/f", "/destroySandbox/f"] {
        let mut c = hiku.client();
        c.send(format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc").as_bytes());
        let res = c.read(false);
        assert_eq!(res.status, 408, "{target}: {}", res.text());
        assert_eq!(res.text(), "no next byte of the request body within 300 ms\n", "{target}");
        assert!(c.is_closed(), "{target}");
    }
    wait_for("the lease released", || in_flight(&hiku) == [0]);
    assert_eq!(hiku.post("/run/f", b"next").body, b"next");
}

on_both_drivers!(a_worker_that_never_answers_is_a_504_and_its_lease_is_released);
fn a_worker_that_never_answers_is_a_504_and_its_lease_is_released(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start_with(
        "least-connections",
        &[&w.url],
        serde_json::json!({"timeouts_ms": {"upstream_response": 300}}),
    );
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f?mode=hold", &[], b"x");
    assert_eq!(res.status, 504, "{}", res.text());
    assert_eq!(res.text(), format!("worker {} sent no response within 300 ms\n", w.url));
    assert_eq!(in_flight(&hiku), [0], "the lease is released");
    w.open_gate();
    // The connection the worker held is not reused: the next call is answered.
    assert_eq!(c.request("POST", "/run/f", &[], b"next").body, b"next");
}

on_both_drivers!(a_refused_connection_is_tried_on_another_worker);
fn a_refused_connection_is_tried_on_another_worker(driver: Driver) {
    let (dead, live) = (dead_url(), Worker::start());
    for balancer in BALANCERS {
        let hiku = Hiku::on(driver).start(balancer, &[&dead, &live.url]);
        let mut c = hiku.client();
        for i in 0..20 {
            let res = c.request("POST", &format!("/run/f{i}"), &[], b"x");
            assert_eq!((res.status, res.worker()), (200, live.url.as_str()), "{balancer}: {}", res.text());
        }
        // HTTP/1.0 without a Host: the Host hiku adds names the worker it went to.
        let before = live.requests();
        let mut c = hiku.client();
        for i in 0..10 {
            c.send(
                format!("POST /run/h{i} HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx").as_bytes(),
            );
            assert_eq!(c.read(false).status, 200, "{balancer}");
        }
        assert_eq!(live.requests(), before + 10);
        let hosts: Vec<String> =
            live.seen().iter().rev().take(10).map(|s| s.header("host").unwrap_or("").to_string()).collect();
        assert!(hosts.iter().all(|h| *h == live.addr.to_string()), "{balancer}: {hosts:?}");
        assert_eq!(in_flight(&hiku), [0, 0], "{balancer}");
    }
    // Without retries, some calls land on the dead worker and fail.
    let hiku =
        Hiku::on(driver).start_with("random", &[&dead, &live.url], serde_json::json!({"retries": {"connect": 0}}));
    let failed = (0..40).filter(|i| hiku.post(&format!("/run/f{i}"), b"x").status == 502).count();
    assert!(failed > 0, "random put no call on the dead worker in 40");
}

on_both_drivers!(an_overloaded_worker_bounces_the_call_to_another_once);
fn an_overloaded_worker_bounces_the_call_to_another_once(driver: Driver) {
    let (busy, free) = (Worker::start(), Worker::start());
    busy.refuse(429, false);
    let hiku = Hiku::on(driver).start("random", &[&busy.url, &free.url]);
    let mut c = hiku.client();
    for i in 0..20 {
        let body = format!("call {i}");
        let res = c.request("POST", &format!("/run/f{i}"), &[], body.as_bytes());
        assert_eq!((res.status, res.worker()), (200, free.url.as_str()), "{}", res.text());
        assert_eq!(res.text(), body, "the whole body went again");
    }
    let bounced = busy.seen().len();
    assert!(bounced > 0, "random sent none of 20 calls to the busy worker");
    assert_eq!(free.seen().len(), 20);
    assert_eq!(sample(&scrape(&hiku), "hiku_decisions_total", Some(("decision", "bounced"))), bounced as f64);
    // A 503 with Retry-After says the same; once both are overloaded, the
    // second answer is passed on, with its Retry-After.
    busy.refuse(503, true);
    free.refuse(503, true);
    let res = c.request("POST", "/run/g", &[], b"x");
    assert_eq!((res.status, res.header("retry-after"), res.text().as_str()), (503, Some("1"), "busy"));
    assert_eq!(busy.seen().len() + free.seen().len(), bounced + 20 + 2, "tried once on each");
    assert_eq!(in_flight(&hiku), [0, 0]);
}

on_both_drivers!(calls_that_may_have_run_or_cannot_be_sent_again_are_not_bounced);
fn calls_that_may_have_run_or_cannot_be_sent_again_are_not_bounced(driver: Driver) {
    let (busy, free) = (Worker::start(), Worker::start());
    let count = || busy.seen().len() + free.seen().len();
    // A 503 without Retry-After may come from a call that failed as it ran.
    busy.refuse(503, false);
    let hiku = Hiku::on(driver).start("random", &[&busy.url, &free.url]);
    for i in 0..20 {
        let before = count();
        let res = hiku.post(&format!("/run/f{i}"), b"x");
        assert_eq!(count(), before + 1, "{}: sent once", res.status);
    }
    assert!(!busy.seen().is_empty(), "random sent none of 20 calls to the busy worker");
    // retries.overload 0: a 429 is passed on.
    busy.refuse(429, true);
    free.refuse(429, true);
    let hiku =
        Hiku::on(driver).start_with("random", &[&busy.url, &free.url], serde_json::json!({"retries": {"overload": 0}}));
    let before = count();
    assert_eq!(hiku.post("/run/f", b"x").status, 429);
    assert_eq!(count(), before + 1);
    // A body too large to hold is streamed, so it cannot go again.
    let hiku = Hiku::on(driver).start("random", &[&busy.url, &free.url]);
    let before = count();
    let res = hiku.post("/run/f", &pattern(200 * 1024));
    assert_eq!((res.status, count()), (429, before + 1));
}

/// Sends a POST of `body` to `target` as Python's `http.client` does: the
/// head in one write, the body in another (in pieces, if `chunked`) after a
/// pause.
fn post_split(c: &mut Client, target: &str, body: &[u8], chunked: bool) -> Response {
    let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
    match chunked {
        false => {
            c.send(format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
            pause();
            c.send(body);
        }
        true => {
            c.send(format!("POST {target} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes());
            for piece in body.chunks(body.len().div_ceil(2).max(1)) {
                pause();
                c.send(format!("{:x}\r\n", piece.len()).as_bytes());
                c.send(piece);
                c.send(b"\r\n");
            }
            c.send(b"0\r\n\r\n");
        }
    }
    c.read(false)
}

on_both_drivers!(a_body_sent_after_its_head_is_held_and_bounced_or_retried_like_any_other);
fn a_body_sent_after_its_head_is_held_and_bounced_or_retried_like_any_other(driver: Driver) {
    let (busy, free, dead) = (Worker::start(), Worker::start(), dead_url());
    busy.refuse(429, true);
    let (mut bounced, mut retried) = (0.0, 0.0);
    for balancer in BALANCERS {
        for other in [&busy.url, &dead] {
            let hiku = Hiku::on(driver).start(balancer, &[other, &free.url]);
            for i in 0..6 {
                // A new connection for each call, as http.client makes.
                let mut c = hiku.client();
                let body = format!("{{\"call\": {i}}}").into_bytes();
                let res = post_split(&mut c, &format!("/run/f{i}"), &body, i % 3 == 2);
                assert_eq!((res.status, res.worker()), (200, free.url.as_str()), "{balancer} {other}: {}", res.text());
                assert_eq!(res.body, body, "{balancer}: the whole body went to the free worker");
            }
            let scrape = scrape(&hiku);
            bounced += sample(&scrape, "hiku_decisions_total", Some(("decision", "bounced")));
            retried += sample(&scrape, "hiku_decisions_total", Some(("decision", "retried")));
            assert_eq!(in_flight(&hiku), [0, 0], "{balancer}");
        }
    }
    assert!(bounced > 0.0 && retried > 0.0, "no call went to the busy or dead worker first: {bounced} {retried}");
    assert_eq!(busy.seen().len() as f64, bounced, "each refused call was bounced");
    // Larger than a read buffer, still within limits.buffer_body_bytes.
    let hiku = Hiku::on(driver).start_with("least-connections", &[&busy.url, &free.url], serde_json::json!({}));
    for chunked in [false, true] {
        let res = post_split(&mut hiku.client(), "/run/big", &pattern(40_000), chunked);
        assert_eq!((res.status, res.worker()), (200, free.url.as_str()), "chunked {chunked}");
        assert!(res.body == pattern(40_000), "chunked {chunked}");
    }
}

on_both_drivers!(a_body_past_buffer_body_bytes_streams_and_is_not_sent_again);
fn a_body_past_buffer_body_bytes_streams_and_is_not_sent_again(driver: Driver) {
    let (busy, free) = (Worker::start(), Worker::start());
    busy.refuse(429, true);
    free.refuse(429, true);
    let count = || busy.seen().len() + free.seen().len();
    for (limit, size, chunked) in [(0, 10, false), (1000, 1001, false), (1000, 3000, true)] {
        let extra = serde_json::json!({"limits": {"buffer_body_bytes": limit}});
        let hiku = Hiku::on(driver).start_with("random", &[&busy.url, &free.url], extra);
        let before = count();
        let res = post_split(&mut hiku.client(), "/run/f", &pattern(size), chunked);
        assert_eq!((res.status, count()), (429, before + 1), "limit {limit}, {size} bytes, chunked {chunked}");
        // Both refuse: a body held whole is tried on each, once.
        let res = post_split(&mut hiku.client(), "/run/f", &pattern(if limit == 0 { 10 } else { 100 }), chunked);
        let tries = if limit == 0 { 1 } else { 2 };
        assert_eq!((res.status, count()), (429, before + 1 + tries), "limit {limit}, chunked {chunked}");
    }
    // A streamed chunked body that outgrew the limit reaches the worker whole.
    free.refuse(0, false);
    let hiku =
        Hiku::on(driver).start_with("random", &[&free.url], serde_json::json!({"limits": {"buffer_body_bytes": 1000}}));
    let res = post_split(&mut hiku.client(), "/run/f", &pattern(5000), true);
    assert_eq!(res.status, 200);
    assert!(res.body == pattern(5000));
}

on_both_drivers!(a_held_body_answers_expect_and_time_limits);
fn a_held_body_answers_expect_and_time_limits(driver: Driver) {
    let w = Worker::start();
    let hiku =
        Hiku::on(driver).start_with("random", &[&w.url], serde_json::json!({"timeouts_ms": {"client_body": 300}}));
    // hiku asks for the body itself, then holds it.
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(c.read(false).status, 100);
    c.send(b"hello");
    let res = c.read(false);
    assert_eq!((res.status, res.body.as_slice()), (200, &b"hello"[..]));
    assert_eq!(w.last().header("expect"), None);
    // A held body that stops coming: 408, and no worker ever had the call.
    let before = w.seen().len();
    for raw in [&b"Content-Length: 10\r\n\r\nabc"[..], b"Transfer-Encoding: chunked\r\n\r\n5\r\nab"] {
        let mut c = hiku.client();
        c.send(&[&b"POST /run/f HTTP/1.1\r\nHost: h\r\n"[..], raw].concat());
        let res = c.read(false);
        assert_eq!(res.status, 408, "{}", res.text());
        assert_eq!(res.text(), "no next byte of the request body within 300 ms\n");
        assert!(c.is_closed());
    }
    assert_eq!(w.seen().len(), before, "no worker had the call");
    assert_eq!(in_flight(&hiku), [0]);
    // A chunked body that grows past limits.max_body_bytes while held: 413.
    let hiku = Hiku::on(driver).start_with("random", &[&w.url], serde_json::json!({"limits": {"max_body_bytes": 100}}));
    let res = post_split(&mut hiku.client(), "/run/f", &pattern(300), true);
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(w.seen().len(), before, "no worker had the call");
    // With no worker at all, the answer does not wait for the body.
    let empty = Hiku::on(driver).start("random", &[]);
    let mut c = empty.client();
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(c.read(false).status, 503);
}

fn waiting(hiku: &Hiku) -> f64 {
    sample(&scrape(hiku), "hiku_queue_waiting", None)
}

on_both_drivers!(calls_wait_for_a_full_worker_in_a_bounded_queue_then_get_a_503);
fn calls_wait_for_a_full_worker_in_a_bounded_queue_then_get_a_503(driver: Driver) {
    let w = Worker::start();
    let extra = serde_json::json!({"workers_max_inflight": 1, "queue": {"limit": 1, "timeout_ms": 500}});
    // One core, so that the next call finds the held call's connection idle.
    let hiku = Hiku::on(driver).cores(1).start_with("pull-based", &[&w.url], extra);
    let mut held = held_call(&hiku, &w);
    let mut second = send_call(&hiku, "/run/g");
    wait_for("the second call waiting", || waiting(&hiku) == 1.0);
    // The queue holds one: the third is refused at once.
    let res = hiku.post("/run/h", b"x");
    assert_eq!((res.status, res.header("retry-after")), (503, Some("1")), "{}", res.text());
    assert_eq!(res.text(), "every worker is full and 1 calls wait already\n");
    // The second waited its 500 ms.
    let res = second.read(false);
    assert_eq!((res.status, res.header("retry-after")), (503, Some("1")));
    assert_eq!(res.text(), "every worker stayed full for 500 ms\n");
    assert_eq!(w.seen().len(), 1, "neither reached the worker");
    // One that waits while the held call ends goes next, on its connection.
    let mut next = send_call(&hiku, "/run/f");
    wait_for("the next call waiting", || waiting(&hiku) == 1.0);
    w.open_gate();
    assert_eq!(held.read(false).status, 200);
    let res = next.read(false);
    assert_eq!((res.status, res.text().as_str()), (200, "x"));
    assert_eq!(w.connections(), 1, "the capacity caps the connections");
    let scrape = scrape(&hiku);
    assert_eq!(sample(&scrape, "hiku_decisions_total", Some(("decision", "queued"))), 1.0);
    assert_eq!(sample(&scrape, "hiku_worker_capacity", Some(("worker", w.url.as_str()))), 1.0);
    assert_eq!(sample(&scrape, "hiku_queue_waiting", None), 0.0);
    assert_eq!(sample(&scrape, "hiku_calls_total", Some(("class", "5xx"))), 2.0);
    assert_eq!(in_flight(&hiku), [0]);
}

on_both_drivers!(thousands_of_calls_at_once_wait_for_room_rather_than_being_refused);
fn thousands_of_calls_at_once_wait_for_room_rather_than_being_refused(driver: Driver) {
    // As a load generator starts: every connection opened and calling at
    // once, more calls than the workers take (here 8) by far. A waiting
    // call holds nothing its connection does not hold already: by default
    // they all wait (queue.timeout_ms bounds how long), none is refused
    // with a 503 its client would come back with at once, again and again.
    let w = Worker::start();
    let extra = serde_json::json!({"workers_max_inflight": 8});
    let hiku = Hiku::on(driver).cores(1).start_with("least-connections", &[&w.url], extra);
    let mut clients: Vec<Client> = (0..1500).map(|_| hiku.client()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("POST /run/f{} HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx", i % 40).as_bytes());
    }
    let statuses: Vec<u16> = clients.iter_mut().map(|c| c.read(false).status).collect();
    let refused = statuses.iter().filter(|&&s| s != 200).count();
    assert_eq!(refused, 0, "{refused} of 1500 calls were not answered 200");
}

on_both_drivers!(a_client_that_leaves_takes_its_call_out_of_the_queue);
fn a_client_that_leaves_takes_its_call_out_of_the_queue(driver: Driver) {
    let w = Worker::start();
    let extra = serde_json::json!({"workers_max_inflight": 1, "queue": {"timeout_ms": 60000}});
    let hiku = Hiku::on(driver).start_with("pull-based", &[&w.url], extra);
    let mut held = held_call(&hiku, &w);
    let leaving = send_call(&hiku, "/run/gone");
    wait_for("the call waiting", || waiting(&hiku) == 1.0);
    drop(leaving);
    wait_for("the call taken out of the queue", || waiting(&hiku) == 0.0);
    w.open_gate();
    assert_eq!(held.read(false).status, 200);
    assert_eq!(hiku.post("/run/f", b"x").status, 200);
    let targets: Vec<String> = w.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(targets, ["/run/f?mode=hold", "/run/f"], "the call whose client left never ran");
}

on_both_drivers!(every_balancer_skips_full_workers);
fn every_balancer_skips_full_workers(driver: Driver) {
    for balancer in BALANCERS {
        let (small, large) = (Worker::start(), Worker::start());
        let workers = serde_json::json!([{"url": small.url, "max_inflight": 1}, {"url": large.url, "max_inflight": 3}]);
        let hiku = Hiku::on(driver).start_with(balancer, &[], serde_json::json!({"workers": workers}));
        let status = hiku.get("/status").json();
        let capacities: Vec<_> = status["workers"].as_array().unwrap().iter().map(|w| w["capacity"].clone()).collect();
        assert_eq!(capacities, [1, 3], "{balancer}");
        let mut calls: Vec<Client> = (0..4).map(|i| send_call(&hiku, &format!("/run/f{i}?mode=hold"))).collect();
        wait_for("four calls held", || small.held() + large.held() == 4);
        assert_eq!((small.held(), large.held()), (1, 3), "{balancer}");
        calls.push(send_call(&hiku, "/run/f9"));
        wait_for("the fifth call waiting", || waiting(&hiku) == 1.0);
        assert_eq!(hiku.get("/status").json()["waiting"], 1, "{balancer}");
        small.open_gate();
        large.open_gate();
        for mut c in calls {
            assert_eq!(c.read(false).status, 200, "{balancer}");
        }
        assert_eq!(in_flight(&hiku), [0, 0], "{balancer}");
    }
}

on_both_drivers!(under_load_no_worker_passes_its_capacity_and_no_call_is_lost);
fn under_load_no_worker_passes_its_capacity_and_no_call_is_lost(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let extra = serde_json::json!({"workers_max_inflight": 2, "queue": {"limit": 1000, "timeout_ms": 20000}});
    for balancer in ["pull-based", "least-connections"] {
        let hiku = Hiku::on(driver).start_with(balancer, &[&a.url, &b.url], extra.clone());
        let threads: Vec<_> = (0..24)
            .map(|t| {
                let addr = hiku.addr;
                std::thread::spawn(move || {
                    let mut c = Client::connect(addr);
                    (0..10)
                        .map(|i| {
                            let body = format!("{t}-{i}");
                            let res = c.request("POST", &format!("/run/f{}", i % 3), &[], body.as_bytes());
                            (res.status, res.text() == body)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap().iter().all(|&r| r == (200, true)), "{balancer}: a call failed");
        }
        assert!(a.most_active() <= 2 && b.most_active() <= 2, "{balancer}: {} {}", a.most_active(), b.most_active());
        assert!(sample(&scrape(&hiku), "hiku_decisions_total", Some(("decision", "queued"))) > 0.0, "{balancer}");
        assert_eq!((in_flight(&hiku), waiting(&hiku)), (vec![0, 0], 0.0), "{balancer}");
    }
}

on_both_drivers!(a_worker_that_frees_a_slot_takes_a_waiting_call_it_holds_warm_first);
fn a_worker_that_frees_a_slot_takes_a_waiting_call_it_holds_warm_first(driver: Driver) {
    let w = Worker::start();
    // One core: its queue holds both waiting calls.
    let hiku =
        Hiku::on(driver).cores(1).start_with("pull-based", &[&w.url], serde_json::json!({"workers_max_inflight": 1}));
    let mut held = held_call(&hiku, &w);
    let mut g = send_call(&hiku, "/run/g");
    wait_for("g waiting", || waiting(&hiku) == 1.0);
    let mut f = send_call(&hiku, "/run/f");
    wait_for("f waiting", || waiting(&hiku) == 2.0);
    w.open_gate();
    for c in [&mut held, &mut g, &mut f] {
        assert_eq!(c.read(false).status, 200);
    }
    let order: Vec<String> = w.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(order, ["/run/f?mode=hold", "/run/f", "/run/g"], "f, warm, went before the older g");
    assert_eq!(sample(&scrape(&hiku), "hiku_decisions_total", Some(("decision", "warm"))), 1.0);
}
