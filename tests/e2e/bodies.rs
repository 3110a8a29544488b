//! Bodies and framing: bodies by length, chunked and up to the close, both
//! ways; keep-alive, pipelining, HTTP/1.0, `Expect: 100-continue`, and
//! malformed or ambiguous requests.

use std::sync::Mutex;

use crate::support::{pattern, urls, workers, Driver, Hiku, Worker};

on_both_drivers!(large_bodies_stream_both_ways_by_length_and_chunked);
fn large_bodies_stream_both_ways_by_length_and_chunked(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
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

on_both_drivers!(a_100_mb_body_each_way_is_streamed_not_held);
fn a_100_mb_body_each_way_is_streamed_not_held(driver: Driver) {
    // The test process holds some 400 MB here (the body, its echo, the
    // worker's copies): the runs on the two drivers, now in one process,
    // take turns, as they did when each driver had a process of its own.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    const SIZE: usize = 100_000_000;
    let w = Worker::start();
    // Over the default limit (64 MiB): raised.
    let hiku = Hiku::on(driver).start_with(
        "pull-based",
        &[&w.url],
        serde_json::json!({"limits": {"max_body_bytes": 200_000_000}}),
    );
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

on_both_drivers!(answers_without_a_body);
fn answers_without_a_body(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("least-connections", &[&w.url]);
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

on_both_drivers!(predictive_keeps_a_function_on_its_warm_worker_and_relays_the_workers_signals);
fn predictive_keeps_a_function_on_its_warm_worker_and_relays_the_workers_signals(driver: Driver) {
    let ws = workers(3);
    let hiku = Hiku::on(driver).start("predictive", &urls(&ws));
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

on_both_drivers!(keep_alive_reuses_worker_connections);
fn keep_alive_reuses_worker_connections(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("pull-based", &[&w.url]);
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

on_both_drivers!(pipelined_requests_are_answered_in_order);
fn pipelined_requests_are_answered_in_order(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
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

on_both_drivers!(connection_close_and_http_1_0);
fn connection_close_and_http_1_0(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("pull-based", &[&w.url]);
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

on_both_drivers!(answers_delimited_by_close_are_relayed);
fn answers_delimited_by_close_are_relayed(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let mut c = hiku.client();
    let res = c.request("POST", "/run/f?mode=close", &[], b"until the end");
    assert_eq!((res.status, res.body.as_slice()), (200, &b"until the end"[..]));
    assert!(c.is_closed(), "the client learns where the body ends from the close");
}

on_both_drivers!(expect_100_continue);
fn expect_100_continue(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
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

on_both_drivers!(malformed_and_ambiguous_requests_are_refused);
fn malformed_and_ambiguous_requests_are_refused(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
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

on_both_drivers!(error_answers_to_head_have_no_body);
fn error_answers_to_head_have_no_body(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let empty = Hiku::on(driver).start("random", &[]);
    for (hiku, target, status) in [(&hiku, "/nope", 404), (&hiku, "/run/a/b", 400), (&empty, "/run/f", 503)] {
        let mut c = hiku.client();
        let res = c.request("HEAD", target, &[], b"");
        assert_eq!(res.status, status, "{target}");
        assert!(res.header("content-length").is_some_and(|l| l != "0"), "{target}: the length of the body not sent");
        // The connection is still in step: the next answer is read whole.
        assert_eq!(c.request("GET", "/status", &[], b"").status, 200, "{target}");
    }
}

on_both_drivers!(input_that_once_panicked_gets_an_answer_and_hiku_stays_up);
fn input_that_once_panicked_gets_an_answer_and_hiku_stays_up(driver: Driver) {
    let w = Worker::start();
    let mut hiku = Hiku::on(driver).start("pull-based", &[&w.url]);
    for _ in 0..4 {
        let res = hiku.get("/admin/workers/add?workers=123456%E2%82%AC");
        assert_eq!(res.status, 400, "{}", res.text());
        assert!(res.text().contains("123456€"), "{}", res.text());
    }
    assert!(hiku.is_running(), "{}", hiku.stderr());
    assert_eq!(hiku.post("/run/f", b"").status, 200);
}

on_both_drivers!(http_1_0_expect_gets_no_interim_answer);
fn http_1_0_expect_gets_no_interim_answer(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let mut c = hiku.client();
    c.send(b"POST /run/f HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    // Give hiku the head alone first, so it decides whether to send 100.
    std::thread::sleep(std::time::Duration::from_millis(50));
    c.send(b"hello");
    let res = c.read(false);
    assert_eq!((res.status, res.body.as_slice()), (200, &b"hello"[..]));
}

on_both_drivers!(errors_before_a_large_body_are_answered_not_reset);
fn errors_before_a_large_body_are_answered_not_reset(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("random", &[&w.url]);
    let empty = Hiku::on(driver).start("random", &[]);
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

on_both_drivers!(local_endpoints_honour_expect_100_continue);
fn local_endpoints_honour_expect_100_continue(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("pull-based", &[&w.url]);
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
