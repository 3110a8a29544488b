//! Admin protection: the admin token and the admin address. Also here, as
//! they were in this section of the one file the tests were in before:
//! `/metrics`, the instance directory, destroySandbox taken only from
//! workers, and workers and clients that die, hang or stall.

use crate::support::{in_flight, sample, scrape, urls, wait_for, workers, Client, Driver, Hiku, Worker};

on_both_drivers!(an_admin_token_guards_the_admin_endpoints);
fn an_admin_token_guards_the_admin_endpoints(driver: Driver) {
    let w = Worker::start();
    let hiku = Hiku::on(driver).start_with("random", &[&w.url], serde_json::json!({"admin": {"token": "s3cret"}}));
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

on_both_drivers!(metrics_count_calls_decisions_workers_and_durations_in_the_prometheus_format);
fn metrics_count_calls_decisions_workers_and_durations_in_the_prometheus_format(driver: Driver) {
    let ws = workers(2);
    let hiku = Hiku::on(driver).start("pull-based", &urls(&ws));
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

on_both_drivers!(the_instance_directory_follows_calls_and_destroyed_sandboxes);
fn the_instance_directory_follows_calls_and_destroyed_sandboxes(driver: Driver) {
    let ws = workers(2);
    let hiku = Hiku::on(driver).start("pull-based", &urls(&ws));
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

on_both_drivers!(destroy_sandbox_is_taken_only_from_workers);
fn destroy_sandbox_is_taken_only_from_workers(driver: Driver) {
    // A worker at 127.0.0.2 (nothing needs to listen there for this).
    let worker = "http://127.0.0.2:9";
    let body = br#"{"host": "127.0.0.2:9"}"#;
    let hiku = Hiku::on(driver).start("pull-based", &[worker]);
    let res = hiku.post("/destroySandbox/f", body);
    assert_eq!(
        (res.status, res.text()),
        (403, "destroySandbox is taken only from workers, not from 127.0.0.1\n".into())
    );
    // From the worker's own address it is taken.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&"127.0.0.2:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    socket.connect(&hiku.addr.into()).unwrap();
    let mut c = Client::from_stream(socket.into());
    let res = c.request("POST", "/destroySandbox/f", &[], body);
    assert_eq!((res.status, res.text()), (200, r#"{"removed":false}"#.to_string()));
    // Unless the config says anyone may.
    let open = Hiku::on(driver).start_with(
        "pull-based",
        &[worker],
        serde_json::json!({"destroy_sandbox": {"only_from_workers": false}}),
    );
    assert_eq!(open.post("/destroySandbox/f", body).status, 200);
}

on_both_drivers!(admin_listen_serves_admin_and_status_there_alone);
fn admin_listen_serves_admin_and_status_there_alone(driver: Driver) {
    let w = Worker::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut hiku =
        Hiku::on(driver).start_with("random", &[&w.url], serde_json::json!({"admin": {"listen": admin.to_string()}}));
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

on_both_drivers!(a_worker_that_dies_mid_answer_cuts_the_answer_and_frees_its_lease);
fn a_worker_that_dies_mid_answer_cuts_the_answer_and_frees_its_lease(driver: Driver) {
    use std::io::{Read, Write};
    let w = Worker::start();
    let hiku = Hiku::on(driver).start("pull-based", &[&w.url]);
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

on_both_drivers!(a_full_function_table_still_routes_a_new_function_warm);
fn a_full_function_table_still_routes_a_new_function_warm(driver: Driver) {
    let (a, b) = (Worker::start(), Worker::start());
    let hiku = Hiku::on(driver).start_with(
        "pull-based",
        &[&a.url, &b.url],
        serde_json::json!({"limits": {"max_functions": 8}}),
    );
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

on_both_drivers!(a_connect_that_hangs_times_out_and_goes_to_another_worker);
fn a_connect_that_hangs_times_out_and_goes_to_another_worker(driver: Driver) {
    let (_listener, _fillers, hole) = blackhole();
    let live = Worker::start();
    let timeouts = serde_json::json!({"timeouts_ms": {"upstream_connect": 200}});
    let hiku = Hiku::on(driver).start_with("least-connections", &[&hole, &live.url], timeouts.clone());
    for i in 0..6 {
        let res = hiku.post(&format!("/run/f{i}"), b"x");
        assert_eq!((res.status, res.worker()), (200, live.url.as_str()), "{}", res.text());
    }
    let alone = Hiku::on(driver).start_with("least-connections", &[&hole], timeouts);
    let res = alone.post("/run/f", b"x");
    assert_eq!(res.status, 502, "{}", res.text());
    assert!(res.text().contains(&hole) && res.text().contains("no connection within 200 ms"), "{}", res.text());
}

on_both_drivers!(a_client_gone_mid_answer_costs_its_connection_only);
fn a_client_gone_mid_answer_costs_its_connection_only(driver: Driver) {
    use std::io::{Read, Write};
    let w = Worker::start();
    let mut hiku = Hiku::on(driver).start("random", &[&w.url]);
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

on_both_drivers!(a_client_that_stops_reading_is_closed_and_frees_the_worker);
fn a_client_that_stops_reading_is_closed_and_frees_the_worker(driver: Driver) {
    use std::io::{Read, Write};
    let w = Worker::start();
    let hiku = Hiku::on(driver).start_with(
        "least-connections",
        &[&w.url],
        serde_json::json!({"timeouts_ms": {"client_send": 300}}),
    );
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
