// The end-to-end tests, included by tests/e2e.rs and tests/e2e_epoll.rs:
// the real `hiku` binary in front of test workers, checked on the wire,
// endpoint by endpoint.

use std::collections::HashSet;

use support::{
    dead_url, held_call, in_flight, pattern, rewrite_config, sample, scrape, send_call, urls, wait_for, workers, Client,
    Hiku, Worker, BALANCERS,
};

// ---- /run/<fn>: forwarding ----

#[test]
fn forwards_method_target_headers_and_body_and_relays_the_answer() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("least-connections", &[&w.url]);
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

#[test]
fn run_paths_need_exactly_two_segments() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&w.url]);
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

#[test]
fn no_workers_is_a_503() {
    let hiku = Hiku::on(DRIVER).start("pull-based", &[]);
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f", &[], b"x");
    assert_eq!(res.status, 503);
    assert!(res.text().contains("no workers"), "{}", res.text());
    assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 503, "the connection stays usable");
}

#[test]
fn an_unreachable_worker_is_a_502_naming_it() {
    // A port that was just free: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    for balancer in BALANCERS {
        let hiku = Hiku::on(DRIVER).start(balancer, &[&dead]);
        let mut c = hiku.client();
        let res = c.request("POST", "/run/f", &[], b"payload");
        assert_eq!(res.status, 502, "{balancer}");
        assert!(res.text().contains(&dead), "{balancer}: {}", res.text());
        assert_eq!(c.request("POST", "/run/f", &[], b"again").status, 502, "{balancer}: keep-alive after a 502");
    }
}

#[test]
fn a_worker_that_closes_without_answering_is_a_502_and_not_warm() {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&a.url, &b.url]);
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

#[test]
fn a_request_that_may_have_reached_the_worker_is_not_sent_twice() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("least-connections", &[&w.url]);
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

#[test]
fn a_keep_alive_connection_idle_past_its_hot_wait_is_served() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
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

#[test]
fn stray_bytes_from_a_worker_never_reach_another_request() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
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

#[test]
fn transfer_codings_hiku_cannot_relay_are_a_502() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f?mode=gzip", &[], b"x");
    assert_eq!(res.status, 502);
    assert!(res.text().contains(&w.url) && res.text().contains("transfer coding"), "{}", res.text());
    assert_eq!(c.request("POST", "/run/f", &[], b"next").body, b"next");
}

#[test]
fn absolute_form_targets_are_forwarded_in_origin_form() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let res = hiku.post(&format!("http://{}/run/f?x=1", hiku.addr), b"abs");
    assert_eq!((res.status, res.body.as_slice()), (200, &b"abs"[..]));
    assert_eq!(w.last().target, "/run/f?x=1");
}

// ---- bodies and framing ----

#[test]
fn large_bodies_stream_both_ways_by_length_and_chunked() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let body = pattern(20 << 20);
    let mut c = hiku.client();
    // Content-Length in, Content-Length out.
    let res = c.request("POST", "/run/big", &[], &body);
    assert_eq!((res.status, res.body.len()), (200, body.len()));
    assert!(res.body == body);
    // Chunked in (odd-sized chunks), chunked out.
    let mut raw = b"POST /run/big?mode=chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in body.chunks(100_003) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    c.send(&raw);
    let res = c.read(false);
    assert_eq!(res.status, 200);
    assert!(res.chunked, "a chunked answer is relayed chunked");
    assert!(res.body == body);
    assert!(w.last().body == body, "the worker got the decoded body");
    assert_eq!(w.last().header("transfer-encoding"), Some("chunked"));
    // A large answer to a small request.
    let res = c.request("GET", "/run/big?size=5000000", &[], b"");
    assert!(res.body == pattern(5_000_000));
}

#[test]
fn a_100_mb_body_each_way_is_streamed_not_held() {
    const SIZE: usize = 100_000_000;
    let w = Worker::start();
    // Over the default limit (64 MiB): raised.
    let hiku = Hiku::on(DRIVER).start_with("pull-based", &[&w.url], serde_json::json!({"limits": {"max_body_bytes": 200_000_000}}));
    let before = hiku.peak_rss_kib();
    let mut c = hiku.client();
    let head = format!("POST /run/big?size={SIZE} HTTP/1.1\r\nHost: h\r\nContent-Length: {SIZE}\r\n\r\n");
    c.send(head.as_bytes());
    let piece = pattern(1 << 20);
    let mut sent = 0;
    while sent < SIZE {
        let n = piece.len().min(SIZE - sent);
        c.send(&piece[..n]);
        sent += n;
    }
    let res = c.read(false);
    assert_eq!((res.status, res.body.len()), (200, SIZE));
    assert!(res.body == pattern(SIZE));
    assert_eq!(w.last().body.len(), SIZE);
    let grown = hiku.peak_rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "hiku's peak RSS grew by {grown} KiB relaying 100 MB each way");
}

#[test]
fn answers_without_a_body() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("least-connections", &[&w.url]);
    let mut c = hiku.client();
    let head = c.request("HEAD", "/run/f?size=1234", &[], b"");
    assert_eq!((head.status, head.header("content-length"), head.body.len()), (200, Some("1234"), 0));
    let none = c.request("GET", "/run/f?code=204", &[], b"");
    assert_eq!((none.status, none.body.len()), (204, 0));
    let not_modified = c.request("GET", "/run/f?code=304&size=10", &[], b"");
    assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    // After all three, the connection is still in step.
    assert_eq!(c.request("POST", "/run/f", &[], b"next").body, b"next");
}

#[test]
fn predictive_keeps_a_function_on_its_warm_worker_and_relays_the_workers_signals() {
    let ws = workers(3);
    let hiku = Hiku::on(DRIVER).start("predictive", &urls(&ws));
    let mut c = hiku.client();
    let first = c.request("POST", "/run/f?mode=signals", &[], b"x");
    assert_eq!((first.status, first.header("x-cold-start")), (200, Some("false")));
    assert_eq!(first.header("x-service-ms"), Some("2.5"));
    let warm = first.worker().to_string();
    // One call at a time: the instance the first call left is idle and
    // young, so every later call goes to it.
    for i in 0..20 {
        let res = c.request("POST", "/run/f?mode=signals", &[], b"x");
        assert_eq!((res.status, res.worker()), (200, warm.as_str()), "call {i}");
    }
    // A worker that says nothing is served as well.
    assert_eq!(c.request("POST", "/run/g", &[], b"y").status, 200);
}

#[test]
fn keep_alive_reuses_worker_connections() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&w.url]);
    let mut c = hiku.client();
    for i in 0..50 {
        let body = format!("call {i}");
        assert_eq!(c.request("POST", "/run/f", &[], body.as_bytes()).body, body.as_bytes());
    }
    // One client connection is served on one core, which reuses its pooled
    // connection to the worker.
    assert_eq!(w.connections(), 1, "one connection to the worker for 50 sequential calls");
    assert_eq!(w.last().earlier_on_connection, 49);
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let mut c = hiku.client();
    let mut raw = Vec::new();
    for i in 0..10 {
        raw.extend_from_slice(format!("POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n{i}").as_bytes());
    }
    c.send(&raw);
    for i in 0..10 {
        assert_eq!(c.read(false).body, i.to_string().as_bytes());
    }
}

#[test]
fn connection_close_and_http_1_0() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&w.url]);
    // Connection: close from the client.
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f", &[("Connection", "close")], b"x");
    assert_eq!((res.status, res.header("connection")), (200, Some("close")));
    assert!(c.is_closed());
    // An HTTP/1.0 client gets a chunked answer decoded and the connection closed.
    let mut c = hiku.client();
    c.send(b"POST /run/f?mode=chunked HTTP/1.0\r\nContent-Length: 5\r\n\r\nhello");
    let res = c.read(false);
    assert_eq!((res.status, res.chunked, res.body.as_slice()), (200, false, &b"hello"[..]));
    assert!(c.is_closed());
    // HTTP/1.0 with keep-alive stays open.
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi");
    let res = c.read(false);
    assert_eq!((res.body.as_slice(), res.header("connection")), (&b"hi"[..], Some("keep-alive")));
    c.send(b"GET /run/f?size=3 HTTP/1.0\r\n\r\n");
    assert_eq!(c.read(false).body.len(), 3);
    assert!(c.is_closed());
}

#[test]
fn answers_delimited_by_close_are_relayed() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f?mode=close", &[], b"until the end");
    assert_eq!((res.status, res.body.as_slice()), (200, &b"until the end"[..]));
    assert!(c.is_closed(), "the client learns where the body ends from the close");
}

#[test]
fn expect_100_continue() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 300000\r\n\r\n");
    let interim = c.read(false);
    assert_eq!(interim.status, 100);
    c.send(&pattern(300_000));
    let res = c.read(false);
    assert_eq!(res.status, 200);
    assert!(res.body == pattern(300_000));
    assert_eq!(w.last().header("expect"), None, "hiku answered the expectation itself");
    // A worker's own interim answer is not passed on twice.
    let res = c.request("POST", "/run/f?mode=continue", &[], b"x");
    assert_eq!((res.status, res.body.as_slice()), (200, &b"x"[..]));
}

#[test]
fn malformed_and_ambiguous_requests_are_refused() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let cases: [(&[u8], u16); 6] = [
        (b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400),
        (b"POST /run/f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
        (b"POST /run/f HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 400),
        (b"GARBAGE\x01 /x\r\n\r\n", 400),
        (b"POST /run/f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ];
    for (raw, status) in cases {
        let mut c = hiku.client();
        c.send(raw);
        let res = c.read(false);
        assert_eq!(res.status, status, "{}", String::from_utf8_lossy(raw));
        assert!(c.is_closed(), "{}", String::from_utf8_lossy(raw));
    }
    let mut c = hiku.client();
    let mut huge = b"GET /run/f HTTP/1.1\r\nHost: h\r\nX-Big: ".to_vec();
    huge.resize(40_000, b'a');
    c.send(&huge);
    assert_eq!(c.read(false).status, 431);
    assert!(w.seen().is_empty(), "nothing malformed reached the worker");
}

#[test]
fn error_answers_to_head_have_no_body() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let empty = Hiku::on(DRIVER).start("random", &[]);
    for (hiku, target, status) in [(&hiku, "/nope", 404), (&hiku, "/run/a/b", 400), (&empty, "/run/f", 503)] {
        let mut c = hiku.client();
        let res = c.request("HEAD", target, &[], b"");
        assert_eq!(res.status, status, "{target}");
        assert!(res.header("content-length").is_some_and(|l| l != "0"), "{target}: the length of the body not sent");
        // The connection is still in step: the next answer is read whole.
        assert_eq!(c.request("GET", "/status", &[], b"").status, 200, "{target}");
    }
}

#[test]
fn input_that_once_panicked_gets_an_answer_and_hiku_stays_up() {
    let w = Worker::start();
    let mut hiku = Hiku::on(DRIVER).start("pull-based", &[&w.url]);
    for _ in 0..4 {
        let res = hiku.get("/admin/workers/add?workers=123456%E2%82%AC");
        assert_eq!(res.status, 400, "{}", res.text());
        assert!(res.text().contains("123456€"), "{}", res.text());
    }
    assert!(hiku.is_running(), "{}", hiku.stderr());
    assert_eq!(hiku.post("/run/f", b"").status, 200);
}

#[test]
fn http_1_0_expect_gets_no_interim_answer() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    // Give hiku the head alone first, so it decides whether to send 100.
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b"hello");
    let res = c.read(false);
    assert_eq!((res.status, res.body.as_slice()), (200, &b"hello"[..]));
}

#[test]
fn errors_before_a_large_body_are_answered_not_reset() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let empty = Hiku::on(DRIVER).start("random", &[]);
    const SIZE: usize = 4 << 20;
    for (hiku, target, status) in [(&hiku, "/run/a/b", 400), (&hiku, "/nowhere", 404), (&empty, "/run/f", 503)] {
        let mut c = hiku.client();
        let mut writer = c.writer();
        let sender = std::thread::spawn(move || {
            let head = format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: {SIZE}\r\n\r\n");
            let mut raw = head.into_bytes();
            raw.extend_from_slice(&pattern(SIZE));
            // hiku may stop reading after it answers; that is fine.
            let _ = std::io::Write::write_all(&mut writer, &raw);
        });
        let res = c.read(false);
        assert_eq!(res.status, status, "{target}: {}", res.text());
        sender.join().unwrap();
    }
    // A local endpoint with a body over its limit: 413.
    let res = hiku.post("/destroySandbox/f", &pattern(100_000));
    assert_eq!(res.status, 413);
}

#[test]
fn local_endpoints_honour_expect_100_continue() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&w.url]);
    let mut c = hiku.client();
    let body = format!("{{\"host\": \"{}\"}}", &w.url[7..]);
    c.send(
        format!(
            "POST /destroySandbox/f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read(false).status, 100);
    c.send(body.as_bytes());
    let res = c.read(false);
    assert_eq!((res.status, res.json()), (200, serde_json::json!({"removed": false})));
}

// ---- /status ----

#[test]
fn status_reports_balancer_cores_load_and_probes() {
    let live = Worker::start();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let hiku = Hiku::on(DRIVER).start("hashing-bounded", &[&live.url]);
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
    assert_eq!(json["cores"], support::cores());
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

// ---- /admin/workers ----

#[test]
fn admin_adds_and_removes_workers_in_every_list_form() {
    let ws = workers(3);
    let [a, b, c] = [ws[0].url.as_str(), ws[1].url.as_str(), ws[2].url.as_str()];
    let hiku = Hiku::on(DRIVER).start("least-connections", &[a]);
    let list = |res: support::Response| {
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

#[test]
fn workers_change_while_requests_are_in_flight() {
    for balancer in BALANCERS {
        let (a, b) = (Worker::start(), Worker::start());
        let hiku = Hiku::on(DRIVER).start(balancer, &[&a.url]);
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

// ---- balancers on the wire ----

#[test]
fn pull_based_repicks_the_worker_that_just_finished_a_function() {
    let ws = workers(3);
    let hiku = Hiku::on(DRIVER).start("pull-based", &urls(&ws));
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

#[test]
fn hashing_bounded_keeps_a_function_on_one_worker() {
    let ws = workers(4);
    let hiku = Hiku::on(DRIVER).start("hashing-bounded", &urls(&ws));
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

#[test]
fn least_connections_avoids_a_busy_worker() {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(DRIVER).start("least-connections", &[&a.url, &b.url]);
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

#[test]
fn random_uses_every_worker() {
    let ws = workers(3);
    let hiku = Hiku::on(DRIVER).start("random", &urls(&ws));
    let picked: HashSet<String> = (0..60).map(|_| hiku.post("/run/f", b"").worker().to_string()).collect();
    assert_eq!(picked.len(), 3);
}

// ---- /destroySandbox ----

#[test]
fn destroy_sandbox_removes_one_idle_entry() {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&a.url, &b.url]);
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
    let hiku = Hiku::on(DRIVER).start("random", &[&a.url]);
    let res = hiku.client().request(
        "POST",
        "/destroySandbox/f",
        &[],
        format!("{{\"host\": \"{}\"}}", &a.url[7..]).as_bytes(),
    );
    assert_eq!((res.status, res.json()), (200, serde_json::json!({"removed": false})));
}

#[test]
fn destroy_sandbox_sends_the_next_call_elsewhere() {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&a.url, &b.url]);
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

// ---- time limits and retries ----

#[test]
fn a_client_that_sends_half_a_head_gets_a_408_and_is_closed() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"timeouts_ms": {"client_header": 300}}));
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

#[test]
fn an_idle_keep_alive_connection_is_closed_silently() {
    let w = Worker::start();
    // Shorter and longer than the wait with a buffer ready (500 ms).
    for idle in [200, 800] {
        let hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"timeouts_ms": {"client_idle": idle}}));
        let mut c = hiku.client();
        assert_eq!(c.request("POST", "/run/f", &[], b"one").body, b"one");
        assert!(c.is_closed(), "client_idle {idle}: closed without a word");
        // A connection that never sends anything goes the same way.
        assert!(hiku.client().is_closed(), "client_idle {idle}: a silent new connection");
    }
}

#[test]
fn a_body_that_stops_coming_gets_a_408_and_releases_the_worker() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start_with("least-connections", &[&w.url], serde_json::json!({"timeouts_ms": {"client_body": 300}}));
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

#[test]
fn a_worker_that_never_answers_is_a_504_and_its_lease_is_released() {
    let w = Worker::start();
    let hiku =
        Hiku::on(DRIVER).start_with("least-connections", &[&w.url], serde_json::json!({"timeouts_ms": {"upstream_response": 300}}));
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f?mode=hold", &[], b"x");
    assert_eq!(res.status, 504, "{}", res.text());
    assert_eq!(res.text(), format!("worker {} sent no response within 300 ms\n", w.url));
    assert_eq!(in_flight(&hiku), [0], "the lease is released");
    w.open_gate();
    // The connection the worker held is not reused: the next call is answered.
    assert_eq!(c.request("POST", "/run/f", &[], b"next").body, b"next");
}

#[test]
fn a_refused_connection_is_tried_on_another_worker() {
    let (dead, live) = (dead_url(), Worker::start());
    for balancer in BALANCERS {
        let hiku = Hiku::on(DRIVER).start(balancer, &[&dead, &live.url]);
        let mut c = hiku.client();
        for i in 0..20 {
            let res = c.request("POST", &format!("/run/f{i}"), &[], b"x");
            assert_eq!((res.status, res.worker()), (200, live.url.as_str()), "{balancer}: {}", res.text());
        }
        // HTTP/1.0 without a Host: the Host hiku adds names the worker it went to.
        let before = live.requests();
        let mut c = hiku.client();
        for i in 0..10 {
            c.send(format!("POST /run/h{i} HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx").as_bytes());
            assert_eq!(c.read(false).status, 200, "{balancer}");
        }
        assert_eq!(live.requests(), before + 10);
        let hosts: Vec<String> = live.seen().iter().rev().take(10).map(|s| s.header("host").unwrap_or("").to_string()).collect();
        assert!(hosts.iter().all(|h| *h == live.addr.to_string()), "{balancer}: {hosts:?}");
        assert_eq!(in_flight(&hiku), [0, 0], "{balancer}");
    }
    // Without retries, some calls land on the dead worker and fail.
    let hiku = Hiku::on(DRIVER).start_with("random", &[&dead, &live.url], serde_json::json!({"retries": {"connect": 0}}));
    let failed = (0..40).filter(|i| hiku.post(&format!("/run/f{i}"), b"x").status == 502).count();
    assert!(failed > 0, "random put no call on the dead worker in 40");
}

#[test]
fn an_overloaded_worker_bounces_the_call_to_another_once() {
    let (busy, free) = (Worker::start(), Worker::start());
    busy.refuse(429, false);
    let hiku = Hiku::on(DRIVER).start("random", &[&busy.url, &free.url]);
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

#[test]
fn calls_that_may_have_run_or_cannot_be_sent_again_are_not_bounced() {
    let (busy, free) = (Worker::start(), Worker::start());
    let count = || busy.seen().len() + free.seen().len();
    // A 503 without Retry-After may come from a call that failed as it ran.
    busy.refuse(503, false);
    let hiku = Hiku::on(DRIVER).start("random", &[&busy.url, &free.url]);
    for i in 0..20 {
        let before = count();
        let res = hiku.post(&format!("/run/f{i}"), b"x");
        assert_eq!(count(), before + 1, "{}: sent once", res.status);
    }
    assert!(!busy.seen().is_empty(), "random sent none of 20 calls to the busy worker");
    // retries.overload 0: a 429 is passed on.
    busy.refuse(429, true);
    free.refuse(429, true);
    let hiku = Hiku::on(DRIVER).start_with("random", &[&busy.url, &free.url], serde_json::json!({"retries": {"overload": 0}}));
    let before = count();
    assert_eq!(hiku.post("/run/f", b"x").status, 429);
    assert_eq!(count(), before + 1);
    // A body too large to hold is streamed, so it cannot go again.
    let hiku = Hiku::on(DRIVER).start("random", &[&busy.url, &free.url]);
    let before = count();
    let res = hiku.post("/run/f", &support::pattern(200 * 1024));
    assert_eq!((res.status, count()), (429, before + 1));
}

/// Sends a POST of `body` to `target` as Python's `http.client` does: the
/// head in one write, the body in another (in pieces, if `chunked`) after a
/// pause.
fn post_split(c: &mut Client, target: &str, body: &[u8], chunked: bool) -> support::Response {
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

#[test]
fn a_body_sent_after_its_head_is_held_and_bounced_or_retried_like_any_other() {
    let (busy, free, dead) = (Worker::start(), Worker::start(), dead_url());
    busy.refuse(429, true);
    let (mut bounced, mut retried) = (0.0, 0.0);
    for balancer in BALANCERS {
        for other in [&busy.url, &dead] {
            let hiku = Hiku::on(DRIVER).start(balancer, &[other, &free.url]);
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
    let hiku = Hiku::on(DRIVER).start_with("least-connections", &[&busy.url, &free.url], serde_json::json!({}));
    for chunked in [false, true] {
        let res = post_split(&mut hiku.client(), "/run/big", &pattern(40_000), chunked);
        assert_eq!((res.status, res.worker()), (200, free.url.as_str()), "chunked {chunked}");
        assert!(res.body == pattern(40_000), "chunked {chunked}");
    }
}

#[test]
fn a_body_past_buffer_body_bytes_streams_and_is_not_sent_again() {
    let (busy, free) = (Worker::start(), Worker::start());
    busy.refuse(429, true);
    free.refuse(429, true);
    let count = || busy.seen().len() + free.seen().len();
    for (limit, size, chunked) in [(0, 10, false), (1000, 1001, false), (1000, 3000, true)] {
        let extra = serde_json::json!({"limits": {"buffer_body_bytes": limit}});
        let hiku = Hiku::on(DRIVER).start_with("random", &[&busy.url, &free.url], extra);
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
    let hiku = Hiku::on(DRIVER).start_with("random", &[&free.url], serde_json::json!({"limits": {"buffer_body_bytes": 1000}}));
    let res = post_split(&mut hiku.client(), "/run/f", &pattern(5000), true);
    assert_eq!(res.status, 200);
    assert!(res.body == pattern(5000));
}

#[test]
fn a_held_body_answers_expect_and_time_limits() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"timeouts_ms": {"client_body": 300}}));
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
    let hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"limits": {"max_body_bytes": 100}}));
    let res = post_split(&mut hiku.client(), "/run/f", &pattern(300), true);
    assert_eq!(res.status, 413, "{}", res.text());
    assert_eq!(w.seen().len(), before, "no worker had the call");
    // With no worker at all, the answer does not wait for the body.
    let empty = Hiku::on(DRIVER).start("random", &[]);
    let mut c = empty.client();
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n");
    assert_eq!(c.read(false).status, 503);
}

fn waiting(hiku: &Hiku) -> f64 {
    sample(&scrape(hiku), "hiku_queue_waiting", None)
}

#[test]
fn calls_wait_for_a_full_worker_in_a_bounded_queue_then_get_a_503() {
    let w = Worker::start();
    let extra = serde_json::json!({"workers_max_inflight": 1, "queue": {"limit": 1, "timeout_ms": 500}});
    // One core, so that the next call finds the held call's connection idle.
    let hiku = Hiku::on(DRIVER).cores(1).start_with("pull-based", &[&w.url], extra);
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

#[test]
fn a_client_that_leaves_takes_its_call_out_of_the_queue() {
    let w = Worker::start();
    let extra = serde_json::json!({"workers_max_inflight": 1, "queue": {"timeout_ms": 60000}});
    let hiku = Hiku::on(DRIVER).start_with("pull-based", &[&w.url], extra);
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

#[test]
fn every_balancer_skips_full_workers() {
    for balancer in BALANCERS {
        let (small, large) = (Worker::start(), Worker::start());
        let workers = serde_json::json!([{"url": small.url, "max_inflight": 1}, {"url": large.url, "max_inflight": 3}]);
        let hiku = Hiku::on(DRIVER).start_with(balancer, &[], serde_json::json!({"workers": workers}));
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

#[test]
fn under_load_no_worker_passes_its_capacity_and_no_call_is_lost() {
    let (a, b) = (Worker::start(), Worker::start());
    let extra = serde_json::json!({"workers_max_inflight": 2, "queue": {"limit": 1000, "timeout_ms": 20000}});
    for balancer in ["pull-based", "least-connections"] {
        let hiku = Hiku::on(DRIVER).start_with(balancer, &[&a.url, &b.url], extra.clone());
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

#[test]
fn a_worker_that_frees_a_slot_takes_a_waiting_call_it_holds_warm_first() {
    let w = Worker::start();
    // One core: its queue holds both waiting calls.
    let hiku = Hiku::on(DRIVER).cores(1).start_with("pull-based", &[&w.url], serde_json::json!({"workers_max_inflight": 1}));
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

// ---- signals and draining ----

fn refuses_connections(hiku: &Hiku) -> bool {
    std::net::TcpStream::connect(hiku.addr).is_err()
}

#[test]
fn sigterm_lets_calls_in_flight_finish_closes_the_rest_and_exits_0() {
    let w = Worker::start();
    let mut hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let mut idle = hiku.client();
    assert_eq!(idle.request("POST", "/run/f", &[], b"warm").status, 200);
    let mut busy = held_call(&hiku, &w);
    hiku.signal(libc::SIGTERM);
    wait_for("new connections refused", || refuses_connections(&hiku));
    assert!(idle.is_closed(), "an idle keep-alive connection is closed");
    assert!(hiku.is_running(), "a call is in flight");
    w.open_gate();
    let res = busy.read(false);
    assert_eq!((res.status, res.body.as_slice(), res.header("connection")), (200, &b"x"[..], Some("close")));
    assert_eq!(hiku.wait_exit().code(), Some(0));
}

#[test]
fn a_drain_ends_when_its_grace_is_up_and_a_second_signal_at_once() {
    let w = Worker::start();
    let mut hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"shutdown_grace_ms": 300}));
    let mut busy = held_call(&hiku, &w);
    hiku.signal(libc::SIGINT);
    assert_eq!(hiku.wait_exit().code(), Some(0), "exits when the grace is up");
    assert!(busy.is_closed());
    w.open_gate();

    let w = Worker::start();
    let mut hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let _busy = held_call(&hiku, &w);
    hiku.signal(libc::SIGTERM);
    wait_for("new connections refused", || refuses_connections(&hiku));
    hiku.signal(libc::SIGTERM);
    assert_eq!(hiku.wait_exit().code(), Some(1), "the second signal");
    assert!(hiku.stderr().contains("exiting now, 1 connections open"), "{}", hiku.stderr());
    w.open_gate();
}

#[test]
fn sighup_does_not_stop_hiku() {
    let w = Worker::start();
    let mut hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    let mut c = hiku.client();
    for i in 0..5 {
        hiku.signal(libc::SIGHUP);
        assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 200, "after SIGHUP {i}");
    }
    assert!(hiku.is_running());
    assert!(!refuses_connections(&hiku));
}

#[test]
fn sighup_reloads_workers_balancer_capacity_and_timeouts_and_keeps_a_bad_file_out() {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(DRIVER).start_with("random", &[&a.url], serde_json::json!({"timeouts_ms": {"upstream_response": 300}}));
    assert_eq!(hiku.post("/run/f?mode=hold", b"x").status, 504, "300 ms to answer");
    let extra = serde_json::json!({"timeouts_ms": {"upstream_response": 20000}, "workers_max_inflight": 5});
    rewrite_config(&hiku, "least-connections", &[&b.url], extra);
    hiku.signal(libc::SIGHUP);
    wait_for("the new balancer", || hiku.get("/status").json()["balancer"] == "least-connections");
    let status = hiku.get("/status").json();
    assert_eq!(status["workers"].as_array().unwrap().len(), 1);
    assert_eq!((status["workers"][0]["url"].as_str(), status["workers"][0]["capacity"].as_u64()), (Some(b.url.as_str()), Some(5)));
    // The new time limit: a call that takes 500 ms is answered.
    let mut held = send_call(&hiku, "/run/f?mode=hold");
    wait_for("the call held", || b.held() == 1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    b.open_gate();
    let res = held.read(false);
    assert_eq!((res.status, res.worker()), (200, b.url.as_str()));
    // A file that does not load is refused: hiku runs on as it was.
    std::fs::write(hiku.config_path(), "{\"balancer\": \"round-robin\"}").unwrap();
    hiku.signal(libc::SIGHUP);
    wait_for("the refusal logged", || hiku.stderr().contains("config reload refused"));
    assert!(hiku.stderr().contains("round-robin"), "{}", hiku.stderr());
    assert_eq!(hiku.get("/status").json()["balancer"], "least-connections");
    assert_eq!(hiku.post("/run/f", b"x").status, 200);
}

#[test]
fn admin_reload_and_hiku_reload_say_what_changed_or_why_not() {
    let (a, b) = (Worker::start(), Worker::start());
    let admin = serde_json::json!({"admin": {"token": "t0k"}});
    let hiku = Hiku::on(DRIVER).start_with("pull-based", &[&a.url], admin.clone());
    rewrite_config(&hiku, "pull-based", &[&a.url, &b.url], admin.clone());
    assert_eq!(hiku.post("/admin/reload", b"").status, 401, "an admin endpoint");
    let auth = [("Authorization", "Bearer t0k")];
    let res = hiku.client().request("POST", "/admin/reload", &auth, b"");
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(res.json(), serde_json::json!({"reloaded": true, "changes": [format!("worker added: {}", b.url)]}));
    // What takes a restart is kept, and said.
    let mut moved = admin.clone();
    moved.as_object_mut().unwrap().insert("port".into(), 1.into());
    rewrite_config(&hiku, "pull-based", &[&a.url, &b.url], moved);
    let res = hiku.client().request("POST", "/admin/reload", &auth, b"");
    assert_eq!(res.json()["changes"], serde_json::json!(["port: takes a restart (kept)"]));
    // A bad file: 422, naming the problem.
    std::fs::write(hiku.config_path(), "{\"workers\": [\"localhost:5000\"]}").unwrap();
    let res = hiku.client().request("POST", "/admin/reload", &auth, b"");
    assert_eq!(res.status, 422);
    assert!(res.text().starts_with("config reload refused, running as before: "), "{}", res.text());
    assert!(res.text().contains("localhost:5000"), "{}", res.text());
    // `hiku reload` asks the same, at the address and with the token of
    // the file it is given.
    let mut ask = admin.clone();
    ask.as_object_mut().unwrap().extend(serde_json::json!({"host": "127.0.0.1", "port": hiku.addr.port(), "workers": [&a.url]}).as_object().unwrap().clone());
    std::fs::write(hiku.config_path(), ask.to_string()).unwrap();
    let reload = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hiku"));
        cmd.args(["reload", "-c"]).arg(hiku.config_path()).args(args).output().unwrap()
    };
    let out = reload(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("worker removed: {}", b.url)), "{said}");
    assert_eq!(hiku.get("/status").json()["workers"].as_array().unwrap().len(), 1);
    // A file with a new token: hiku still takes the old one, given with
    // --token, and the new one from then on.
    ask.as_object_mut().unwrap().insert("admin".into(), serde_json::json!({"token": "n3w"}));
    std::fs::write(hiku.config_path(), ask.to_string()).unwrap();
    let out = reload(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));
    let addr = hiku.addr.to_string();
    let out = reload(&["--token", "t0k", "--addr", &addr]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("admin.token: new values"));
    assert_eq!(hiku.client().request("POST", "/admin/reload", &[("Authorization", "Bearer n3w")], b"").status, 200);
}

#[test]
fn a_client_that_leaves_while_its_worker_works_frees_the_worker() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("least-connections", &[&w.url]);
    let c = held_call(&hiku, &w);
    assert_eq!(in_flight(&hiku), [1]);
    drop(c);
    wait_for("the lease released", || in_flight(&hiku) == [0]);
    w.open_gate();
    // A client that sends its next request before the answer (pipelining)
    // is not taken for one that left, however long the worker takes.
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("least-connections", &[&w.url]);
    let mut c = held_call(&hiku, &w);
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\ny");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(in_flight(&hiku), [1]);
    w.open_gate();
    assert_eq!(c.read(false).body, b"x");
    assert_eq!(c.read(false).body, b"y");
}

// ---- shards ----

/// Runs `f` on a thread pinned to the core it starts on: every connection
/// it opens has its SYN processed there.
fn from_one_core<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: sched_getcpu(3), and a zeroed cpu_set_t with one CPU
            // set for this thread.
            unsafe {
                let cpu = libc::sched_getcpu() as usize;
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
            }
            f()
        })
        .join()
        .unwrap()
    })
}

fn open_by_shard(hiku: &Hiku) -> Vec<f64> {
    let scrape = scrape(hiku);
    (0..2).map(|i| sample(&scrape, "hiku_connections_open", Some(("shard", &i.to_string())))).collect()
}

#[test]
fn keep_alive_connections_opened_at_once_are_shared_out_among_the_shards() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).cores(2).start_with("random", &[&w.url], serde_json::json!({}));
    from_one_core(|| {
        // As a load generator opens its connections: from one core, all at
        // once, and each then calls again and again.
        let mut clients: Vec<Client> = (0..40).map(|_| hiku.client()).collect();
        let call = |clients: &mut Vec<Client>| {
            for (i, c) in clients.iter_mut().enumerate() {
                let res = c.request("POST", &format!("/run/f{i}"), &[], b"x");
                assert_eq!((res.status, res.body.as_slice()), (200, &b"x"[..]));
            }
        };
        call(&mut clients);
        wait_for("the connections shared out between the shards", || {
            call(&mut clients);
            // The 40, and the scrape's own connection on either.
            let open = open_by_shard(&hiku);
            open.iter().sum::<f64>() == 41.0 && (open[0] - open[1]).abs() <= 8.0
        });
        // Each connection goes on answering where it is now.
        call(&mut clients);
        assert_eq!(w.seen().len() % 40, 0, "every call reached the worker once");
    });
}

// ---- limits ----

#[test]
fn heads_and_bodies_over_the_limits_are_refused() {
    let w = Worker::start();
    let limits = serde_json::json!({"limits": {"max_header_bytes": 2048, "max_headers": 5, "max_body_bytes": 1000}});
    let hiku = Hiku::on(DRIVER).start_with("least-connections", &[&w.url], limits);
    let big = "v".repeat(2100);
    let res = hiku.client().request("POST", "/run/f", &[("X-Big", &big)], b"x");
    assert_eq!((res.status, res.text()), (431, "request head larger than 2048 bytes or 5 fields\n".to_string()));
    let fine = "v".repeat(1500);
    assert_eq!(hiku.client().request("POST", "/run/f", &[("X-Big", &fine)], b"x").status, 200);
    let many = [("A", "1"), ("B", "2"), ("C", "3"), ("D", "4"), ("E", "5")];
    assert_eq!(hiku.client().request("POST", "/run/f", &many, b"x").status, 431, "Host and 5 more");
    assert_eq!(hiku.client().request("POST", "/run/f", &many[..3], b"x").status, 200);

    // A Content-Length over the limit is refused before the body is read.
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n");
    let res = c.read(false);
    assert_eq!((res.status, res.text()), (413, "body larger than 1000 bytes\n".to_string()));
    // A chunked body is counted, whole with the head or as it streams.
    for (size, status) in [(900, 200), (1500, 413)] {
        for streamed in [false, true] {
            let head = b"POST /run/f HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
            let chunks = format!("64\r\n{}\r\n", "b".repeat(100)).repeat(size / 100) + "0\r\n\r\n";
            let mut c = hiku.client();
            if streamed {
                c.send(head);
                std::thread::sleep(std::time::Duration::from_millis(50));
                c.send(chunks.as_bytes());
            } else {
                c.send(&[&head[..], chunks.as_bytes()].concat());
            }
            assert_eq!(c.read(false).status, status, "{size} bytes chunked, streamed: {streamed}");
        }
    }
    wait_for("leases released", || in_flight(&hiku) == [0]);
}

#[test]
fn past_max_connections_new_ones_wait_in_the_backlog() {
    use std::io::{Read, Write};
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"limits": {"max_connections": 2}}));
    let mut first = hiku.client();
    let mut second = hiku.client();
    assert_eq!(first.request("POST", "/run/f", &[], b"1").status, 200);
    assert_eq!(second.request("POST", "/run/f", &[], b"2").status, 200);
    let mut third = std::net::TcpStream::connect(hiku.addr).expect("the backlog takes it");
    third.write_all(b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nConnection: close\r\n\r\n3").unwrap();
    third.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    let mut answer = Vec::new();
    let waited = third.read_to_end(&mut answer).unwrap_err();
    assert!(matches!(waited.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{waited}");
    assert!(answer.is_empty(), "answered past the limit");
    drop(first);
    third.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    third.read_to_end(&mut answer).unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
}

// ---- admin protection ----

#[test]
fn an_admin_token_guards_the_admin_endpoints() {
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"admin": {"token": "s3cret"}}));
    let add = format!("/admin/workers/add?workers={}", w.url);
    for auth in [None, Some("Bearer wrong"), Some("Bearer s3cre"), Some("Basic s3cret"), Some("Bearer s3cret2")] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
        let res = hiku.client().request("POST", &add, &headers, b"");
        assert_eq!(res.status, 401, "{auth:?}");
        assert_eq!(res.header("www-authenticate"), Some("Bearer"), "{auth:?}");
    }
    for auth in ["Bearer s3cret", "bearer  s3cret"] {
        let res = hiku.client().request("POST", &add, &[("Authorization", auth)], b"");
        assert_eq!(res.status, 200, "{auth}: {}", res.text());
    }
    // /run and /status stay open; the directory is an admin endpoint.
    assert_eq!(hiku.post("/run/f", b"x").status, 200);
    assert_eq!(hiku.get("/status").status, 200);
    assert_eq!(hiku.get("/admin/instances").status, 401);
    let res = hiku.client().request("GET", "/admin/instances", &[("Authorization", "Bearer s3cret")], b"");
    assert_eq!(res.status, 200);
}

#[test]
fn metrics_count_calls_decisions_workers_and_durations_in_the_prometheus_format() {
    let ws = workers(2);
    let hiku = Hiku::on(DRIVER).start("pull-based", &urls(&ws));
    let mut c = hiku.client();
    let first = c.request("POST", "/run/f", &[], b"x").worker().to_string();
    c.request("POST", "/run/f", &[], b"x");
    c.request("POST", "/run/g?code=500", &[], b"x");
    let host = first.trim_start_matches("http://");
    hiku.post("/destroySandbox/f", format!(r#"{{"host": "{host}"}}"#).as_bytes());
    let res = hiku.get("/metrics");
    assert!(res.header("content-type").unwrap().starts_with("text/plain"), "{:?}", res.header("content-type"));
    let scrape = scrape(&hiku);
    let value = |name: &str, label: Option<(&str, &str)>| sample(&scrape, name, label);
    assert_eq!(value("hiku_calls_total", Some(("class", "2xx"))), 2.0);
    assert_eq!(value("hiku_calls_total", Some(("class", "5xx"))), 1.0);
    // The second f took the instance the first left; f and g started cold.
    assert_eq!(value("hiku_decisions_total", Some(("decision", "warm"))), 1.0);
    assert_eq!(value("hiku_decisions_total", Some(("decision", "fallback"))), 2.0);
    assert_eq!(value("hiku_destroy_sandbox_total", Some(("removed", "true"))), 1.0);
    assert_eq!(value("hiku_worker_in_flight", Some(("worker", first.as_str()))), 0.0);
    let assigned: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "hiku_worker_assigned_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => 0.0,
        })
        .sum();
    assert_eq!(assigned, 3.0);
    // g's 500 counts as a failure of its worker (one series per worker).
    let failures: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "hiku_worker_failures_total")
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) => v,
            _ => f64::NAN,
        })
        .collect();
    assert_eq!((failures.len(), failures.iter().sum::<f64>()), (2, 1.0));
    let calls = scrape.samples.iter().find(|s| s.metric == "hiku_call_duration_seconds").expect("the call histogram");
    match &calls.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert_eq!(buckets.last().map(|b| b.count), Some(3.0), "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
}

#[test]
fn the_instance_directory_follows_calls_and_destroyed_sandboxes() {
    let ws = workers(2);
    let hiku = Hiku::on(DRIVER).start("pull-based", &urls(&ws));
    let mut c = hiku.client();
    let worker_of_f = c.request("POST", "/run/f", &[], b"x").worker().to_string();
    c.request("POST", "/run/g", &[], b"x");
    let dir = hiku.get("/admin/instances").json();
    assert_eq!(dir["functions"]["f"]["workers"], serde_json::json!([{"url": worker_of_f, "idle": 1}]));
    assert_eq!(dir["functions"]["g"]["idle"], 1);
    let only_f = hiku.get("/admin/instances?function=f").json();
    assert_eq!(only_f["functions"].as_object().unwrap().len(), 1);
    // The worker reports f's instance destroyed: the directory forgets it.
    let host = worker_of_f.trim_start_matches("http://");
    let res = hiku.post("/destroySandbox/f", format!(r#"{{"host": "{host}"}}"#).as_bytes());
    assert_eq!(res.text(), r#"{"removed":true}"#);
    let dir = hiku.get("/admin/instances").json();
    assert!(dir["functions"].get("f").is_none(), "{dir}");
    assert_eq!(dir["functions"]["g"]["idle"], 1);
}

#[test]
fn destroy_sandbox_is_taken_only_from_workers() {
    // A worker at 127.0.0.2 (nothing needs to listen there for this).
    let worker = "http://127.0.0.2:9";
    let body = br#"{"host": "127.0.0.2:9"}"#;
    let hiku = Hiku::on(DRIVER).start("pull-based", &[worker]);
    let res = hiku.post("/destroySandbox/f", body);
    assert_eq!((res.status, res.text()), (403, "destroySandbox is taken only from workers, not from 127.0.0.1\n".into()));
    // From the worker's own address it is taken.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.2:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&hiku.addr.into()).unwrap();
    let mut c = Client::from_stream(socket.into());
    let res = c.request("POST", "/destroySandbox/f", &[], body);
    assert_eq!((res.status, res.text()), (200, r#"{"removed":false}"#.to_string()));
    // Unless the config says anyone may.
    let open = Hiku::on(DRIVER).start_with("pull-based", &[worker], serde_json::json!({"destroy_sandbox": {"only_from_workers": false}}));
    assert_eq!(open.post("/destroySandbox/f", body).status, 200);
}

#[test]
fn admin_listen_serves_admin_and_status_there_alone() {
    let w = Worker::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut hiku = Hiku::on(DRIVER).start_with("random", &[&w.url], serde_json::json!({"admin": {"listen": admin.to_string()}}));
    // The main address: /run, and no admin endpoint.
    assert_eq!(hiku.post("/run/f", b"x").status, 200);
    for path in ["/status", "/admin/workers/add?workers=http://a:1", "/admin/workers/remove?workers=http://a:1"] {
        assert_eq!(hiku.get(path).status, 404, "{path} on the main address");
    }
    // The admin address: the admin endpoints, and no /run.
    let mut c = Client::connect(admin);
    assert_eq!(c.request("GET", "/status", &[], b"").status, 200);
    let res = c.request("POST", "/admin/workers/add?workers=http://127.0.0.1:1", &[], b"");
    assert_eq!(res.status, 200, "{}", res.text());
    assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 404);
    // A drain closes it too.
    hiku.signal(libc::SIGTERM);
    wait_for("the admin address refuses", || std::net::TcpStream::connect(admin).is_err());
    drop(c);
    assert_eq!(hiku.wait_exit().code(), Some(0));
}

#[test]
fn a_worker_that_dies_mid_answer_cuts_the_answer_and_frees_its_lease() {
    use std::io::{Read, Write};
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start("pull-based", &[&w.url]);
    for mode in ["half", "reset"] {
        let mut c = std::net::TcpStream::connect(hiku.addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        c.write_all(format!("GET /run/f?mode={mode}&size=200000 HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer[..answer.len().min(200)]).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{mode}: {text}");
        let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = answer.len() - head_end;
        assert!(body < 200_000, "{mode}: the answer is cut short ({body} bytes), and the connection closed");
        wait_for("the lease released", || in_flight(&hiku) == [0]);
    }
    // The worker's next answer (on a new connection) is relayed whole.
    assert_eq!(hiku.post("/run/f", b"fine").body, b"fine");
}

#[test]
fn a_full_function_table_still_routes_a_new_function_warm() {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(DRIVER).start_with("pull-based", &[&a.url, &b.url], serde_json::json!({"limits": {"max_functions": 8}}));
    // Far more functions than the table holds, each leaving a warm instance.
    for i in 0..100 {
        assert_eq!(hiku.post(&format!("/run/old{i}"), b"x").status, 200);
    }
    // A new function goes where its warm instance is, every time: with both
    // workers idle, anything else would pick either.
    let first = hiku.post("/run/fresh", b"x").worker().to_string();
    for _ in 0..20 {
        assert_eq!(hiku.post("/run/fresh", b"x").worker(), first);
    }
}

/// A worker address that takes no more connections: a listener with a
/// backlog of one, filled, that never accepts (new connects hang).
fn blackhole() -> (socket2::Socket, Vec<std::net::TcpStream>, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue; the connects past it are left hanging.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(_) => break,
        }
    }
    (socket, fillers, format!("http://{addr}"))
}

#[test]
fn a_connect_that_hangs_times_out_and_goes_to_another_worker() {
    let (_listener, _fillers, hole) = blackhole();
    let live = Worker::start();
    let timeouts = serde_json::json!({"timeouts_ms": {"upstream_connect": 200}});
    let hiku = Hiku::on(DRIVER).start_with("least-connections", &[&hole, &live.url], timeouts.clone());
    for i in 0..6 {
        let res = hiku.post(&format!("/run/f{i}"), b"x");
        assert_eq!((res.status, res.worker()), (200, live.url.as_str()), "{}", res.text());
    }
    let alone = Hiku::on(DRIVER).start_with("least-connections", &[&hole], timeouts);
    let res = alone.post("/run/f", b"x");
    assert_eq!(res.status, 502, "{}", res.text());
    assert!(res.text().contains(&hole) && res.text().contains("no connection within 200 ms"), "{}", res.text());
}

#[test]
fn a_client_gone_mid_answer_costs_its_connection_only() {
    use std::io::{Read, Write};
    let w = Worker::start();
    let mut hiku = Hiku::on(DRIVER).start("random", &[&w.url]);
    for _ in 0..3 {
        // A large answer, and the client closes (with unread bytes: a reset)
        // after its first bytes: hiku's next writes fail (EPIPE, no SIGPIPE).
        let mut c = std::net::TcpStream::connect(hiku.addr).unwrap();
        c.write_all(b"GET /run/f?size=20000000 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let mut first = [0u8; 4096];
        assert!(c.read(&mut first).unwrap() > 0);
        drop(c);
    }
    wait_for("the leases released", || in_flight(&hiku) == [0]);
    assert!(hiku.is_running());
    assert_eq!(hiku.post("/run/f", b"still here").body, b"still here");
}

#[test]
fn a_client_that_stops_reading_is_closed_and_frees_the_worker() {
    use std::io::{Read, Write};
    let w = Worker::start();
    let hiku = Hiku::on(DRIVER).start_with("least-connections", &[&w.url], serde_json::json!({"timeouts_ms": {"client_send": 300}}));
    // A small receive buffer (which also stops the kernel growing it), so
    // the socket buffers cannot take the whole answer while nobody reads.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&hiku.addr.into()).unwrap();
    let mut c: std::net::TcpStream = socket.into();
    c.write_all(b"GET /run/f?size=50000000 HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
    // Read nothing: hiku's writes stall once the socket buffers are full.
    // (The call must be under way first: before hiku takes it, nothing is
    // in flight either.)
    wait_for("the call at the worker", || w.requests() == 1);
    wait_for("the lease released", || in_flight(&hiku) == [0]);
    // What was buffered can still be read; then the connection is closed.
    c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.starts_with(b"HTTP/1.1 200") && got.len() < 50_000_000, "{} bytes", got.len());
}

// ---- access log ----

#[test]
fn the_access_log_has_a_line_per_call_and_loses_none_at_shutdown() {
    let w = Worker::start();
    let path = std::env::temp_dir().join(format!("hiku-access-{}-{}.log", std::process::id(), support::cores()));
    let _ = std::fs::remove_file(&path);
    let mut hiku = Hiku::on(DRIVER).start_with("pull-based", &[&w.url], serde_json::json!({"log": {"access": path}}));
    let mut c = hiku.client();
    assert_eq!(c.request("POST", "/run/f", &[], b"x").status, 200);
    // Written within the flush interval while hiku runs.
    wait_for("the first line", || std::fs::read_to_string(&path).is_ok_and(|t| t.lines().count() == 1));
    assert_eq!(c.request("GET", "/run/g?code=404", &[], b"").status, 404);
    // The last line is still in the shard's buffer: the drain writes it.
    drop(c);
    hiku.signal(libc::SIGTERM);
    assert_eq!(hiku.wait_exit().code(), Some(0));
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(first[1..6], ["127.0.0.1", "\"POST", "/run/f\"", "200", w.url.as_str()], "{}", lines[0]);
    assert!(first[0].ends_with('Z') && first[6].parse::<f64>().is_ok(), "{}", lines[0]);
    assert!(lines[1].contains(" \"GET /run/g?code=404\" 404 "), "{}", lines[1]);
    let _ = std::fs::remove_file(&path);
}

// ---- health ----

#[test]
fn a_dead_worker_is_ejected_and_taken_back_once_it_answers() {
    let live = Worker::start();
    let dead = dead_url();
    let config = serde_json::json!({"retries": {"connect": 0}});
    let hiku = Hiku::on(DRIVER).start_with("least-connections", &[&live.url, &dead], config);
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

#[test]
fn active_probes_eject_a_dead_worker_before_any_call_reaches_it() {
    let live = Worker::start();
    let dead = dead_url();
    let config = serde_json::json!({"health": {"interval_ms": 100}, "retries": {"connect": 0}});
    let hiku = Hiku::on(DRIVER).start_with("random", &[&live.url, &dead], config);
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

#[test]
fn a_reload_that_sets_health_interval_starts_the_probes() {
    let live = Worker::start();
    let dead = dead_url();
    let hiku = Hiku::on(DRIVER).start_with("random", &[&live.url, &dead], serde_json::json!({}));
    let ejected = || sample(&scrape(&hiku), "hiku_worker_ejected", Some(("worker", dead.as_str()))) == 1.0;
    assert!(!ejected(), "no call, no probe: nothing found it dead");
    rewrite_config(&hiku, "random", &[&live.url, &dead], serde_json::json!({"health": {"interval_ms": 100}}));
    hiku.signal(libc::SIGHUP);
    wait_for("the dead worker ejected by the probes the reload started", ejected);
}
