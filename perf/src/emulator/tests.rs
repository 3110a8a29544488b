//! The emulator on loopback, with time compressed 100-fold: answers,
//! headers, keep-alive, and the `destroySandbox` report of a killed instance.

use super::*;

fn config(memory_mb: u64, scheduler: Option<String>) -> Config {
    Config {
        cores: 4,
        memory_mb,
        paused_mb: 64,
        destroy_ms: 10.0,
        code_refresh_s: 600.0,
        sigma: 0.0,
        default_cold_ms: 300.0,
        default_warm_ms: 100.0,
        time_scale: TimeScale::new(0.01).unwrap(),
        seed: 1,
        scheduler,
        fault: None,
        hints: true,
    }
}

fn any_port() -> Address {
    Address { port: 0, name: None }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), f).await.expect("test took over 20 s") })
}

async fn call(conn: &mut Conn<TcpStream>, host: &str, function: &str) -> http::Response {
    conn.write_all(&http::post_json(host, &format!("/run/{function}"), b"{\"param0\": \"value0\"}", true))
        .await
        .unwrap();
    conn.read_response().await.unwrap()
}

#[test]
fn cold_then_warm_on_one_kept_alive_connection() {
    block_on(async {
        let urls = start(config(6144, None), &[any_port()]).await.unwrap();
        let host = http::authority(&urls[0]).unwrap().to_string();
        let mut conn = Conn::new(TcpStream::connect(&host).await.unwrap());

        let first = call(&mut conn, &host, "linpack-0").await;
        assert_eq!((first.status, first.header("X-Cold-Start")), (200, Some("true")));
        assert_eq!(first.header("X-Worker"), Some(urls[0].as_str()));
        let service: f64 = first.header("X-Service-Ms").unwrap().parse().unwrap();
        // Table I: 282 ms cold; the timer can only be late, by a few real ms.
        assert!((282.0..282.0 + 1000.0).contains(&service), "cold service {service} ms");

        let second = call(&mut conn, &host, "linpack-0").await;
        assert_eq!(second.header("X-Cold-Start"), Some("false"));
        let service: f64 = second.header("X-Service-Ms").unwrap().parse().unwrap();
        assert!((58.0..58.0 + 1000.0).contains(&service), "warm service {service} ms");

        let unknown = call(&mut conn, &host, "hello-0").await;
        assert_eq!(unknown.header("X-Cold-Start"), Some("true"));

        conn.write_all(&http::get(&host, "/stats")).await.unwrap();
        let stats: model::Stats = serde_json::from_slice(&conn.read_response().await.unwrap().body).unwrap();
        assert_eq!(stats, model::Stats { cold: 2, warm: 1, ..Default::default() });
    });
}

#[test]
fn without_hints_only_the_body_says_how_a_call_started() {
    block_on(async {
        let urls = start(Config { hints: false, ..config(6144, None) }, &[any_port()]).await.unwrap();
        let host = http::authority(&urls[0]).unwrap().to_string();
        let mut conn = Conn::new(TcpStream::connect(&host).await.unwrap());
        for (cold, cause) in [(true, Some("first")), (false, None)] {
            let answer = call(&mut conn, &host, "linpack-0").await;
            assert_eq!((answer.header("X-Cold-Start"), answer.header("X-Service-Ms")), (None, None));
            let body: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
            assert_eq!((body["cold"].as_bool(), body["cold_cause"].as_str()), (Some(cold), cause), "{body}");
            assert!(body["service_ms"].as_f64().is_some_and(|ms| ms >= 58.0), "{body}");
        }
    });
}

#[test]
fn a_killed_instance_is_reported_to_the_scheduler() {
    block_on(async {
        let scheduler = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheduler_url = format!("http://{}", scheduler.local_addr().unwrap());
        // The code goes stale after 1 paper-scale second (10 real ms): the
        // next call pulls it again, which kills the instance and its sandbox.
        let config = Config { code_refresh_s: 1.0, ..config(6144, Some(scheduler_url)) };
        // A worker the config calls `localhost:<port>` reports that name.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let name = format!("localhost:{port}");
        let urls = start(config, &[Address { port, name: Some(name.clone()) }]).await.unwrap();
        assert_eq!(urls, [format!("http://{name}")]);
        let host = format!("127.0.0.1:{port}");
        let mut conn = Conn::new(TcpStream::connect(&host).await.unwrap());
        call(&mut conn, &host, "dd-0").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second = call(&mut conn, &host, "dd-0").await;
        assert_eq!(second.header("X-Cold-Start"), Some("true"));

        let (stream, _) = scheduler.accept().await.unwrap();
        let mut report = Conn::new(stream);
        let request = report.read_request().await.unwrap().unwrap();
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/destroySandbox/dd-0"));
        let content_type = request.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        assert_eq!(content_type.map(|(_, v)| v.as_str()), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body, serde_json::json!({"host": name}));
    });
}

#[test]
fn status_answers_and_unknown_paths_are_404() {
    block_on(async {
        let urls = start(config(6144, None), &[any_port(), any_port()]).await.unwrap();
        assert_eq!(urls.len(), 2);
        assert_ne!(urls[0], urls[1]);
        for (path, status) in [("/status", 200), ("/nope", 404), ("/run/", 404)] {
            let host = http::authority(&urls[1]).unwrap();
            let mut conn = Conn::new(TcpStream::connect(host).await.unwrap());
            conn.write_all(&http::get(host, path)).await.unwrap();
            assert_eq!(conn.read_response().await.unwrap().status, status, "{path}");
        }
    });
}

#[test]
fn a_hiku_config_names_the_workers_to_emulate_and_where_to_report() {
    let config =
        r#"{"host": "localhost", "port": 9020, "workers": ["http://localhost:5000", "http://127.0.0.1:5001/"]}"#;
    // Each worker goes by the name the config gives it, as OpenLambda
    // reports its configured `worker_url`: the scheduler matches it exactly.
    let named = |port, name: &str| Address { port, name: Some(name.to_string()) };
    let expected =
        (vec![named(5000, "localhost:5000"), named(5001, "127.0.0.1:5001")], "http://localhost:9020".to_string());
    assert_eq!(workers_of_config(config).unwrap(), expected);
    let defaults = r#"{"workers": ["http://localhost"], "host": "0.0.0.0"}"#;
    let expected = (vec![named(80, "localhost:80")], "http://127.0.0.1:9020".to_string());
    assert_eq!(workers_of_config(defaults).unwrap(), expected);
    let remote = workers_of_config(r#"{"workers": ["http://10.0.0.7:5000"]}"#).unwrap_err();
    assert!(remote.contains("http://10.0.0.7:5000 is not on this machine"), "{remote}");
    assert!(workers_of_config("{}").unwrap_err().contains("no \"workers\""));
    assert!(workers_of_config("nope").unwrap_err().contains("not a JSON config"));
}

#[test]
fn a_call_whose_sandbox_the_evictor_destroyed_is_answered_502() {
    block_on(async {
        // Two slots: the second sandbox leaves none free, so the evictor
        // destroys the first, in use (its last resort).
        let config = Config { default_cold_ms: 100_000.0, ..config(1024, None) };
        let urls = start(config, &[any_port()]).await.unwrap();
        let host = http::authority(&urls[0]).unwrap().to_string();
        let first = {
            let host = host.clone();
            tokio::spawn(async move {
                let mut conn = Conn::new(TcpStream::connect(&host).await.unwrap());
                call(&mut conn, &host, "a-0").await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut conn = Conn::new(TcpStream::connect(&host).await.unwrap());
        let second = call(&mut conn, &host, "b-0").await;
        let first = first.await.unwrap();
        assert_eq!((first.status, first.body.as_slice()), (502, b"RoundTrip failed".as_slice()));
        assert_eq!(second.status, 200);
        conn.write_all(&http::get(&host, "/stats")).await.unwrap();
        let stats: model::Stats = serde_json::from_slice(&conn.read_response().await.unwrap().body).unwrap();
        assert_eq!((stats.forced_evictions, stats.failed), (1, 1));
    });
}

#[test]
fn a_vms_pool_is_its_kernels_memory_less_500_mb() {
    // 16, 8 and 6 GiB VMs: 29, 14 and 10 sandbox slots of 512 MB.
    assert_eq!([pool_mb(16), pool_mb(8), pool_mb(6)], [15097, 7298, 5349]);
    assert_eq!([15097 / 512, 7298 / 512, 5349 / 512], [29, 14, 10]);
    assert_eq!(DEFAULT_MEMORY_MB, pool_mb(16));
}

#[test]
fn a_fault_drops_or_misnames_the_first_workers_reports() {
    assert_eq!(Fault::report_host(None, "127.0.0.1:5000"), Some("127.0.0.1:5000".to_string()));
    assert_eq!(Fault::report_host(Some(Fault::LostDestroy), "127.0.0.1:5000"), None);
    assert_eq!(Fault::report_host(Some(Fault::OtherHost), "127.0.0.1:5000"), Some("localhost:5000".to_string()));
    assert_eq!(Fault::report_host(Some(Fault::OtherHost), "localhost:5000"), Some("127.0.0.1:5000".to_string()));
    assert_eq!(Fault::parse("other-host"), Ok(Fault::OtherHost));
    assert_eq!(Fault::parse("lost-destroy").map(Fault::name), Ok("lost-destroy"));
    assert!(Fault::parse("none").is_err());
}

#[test]
fn the_first_worker_with_a_fault_reports_under_another_name() {
    block_on(async {
        let scheduler = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheduler_url = format!("http://{}", scheduler.local_addr().unwrap());
        let config = Config { code_refresh_s: 1.0, fault: Some(Fault::OtherHost), ..config(6144, Some(scheduler_url)) };
        let urls = start(config, &[any_port()]).await.unwrap();
        let host = http::authority(&urls[0]).unwrap().to_string();
        let mut conn = Conn::new(TcpStream::connect(&host).await.unwrap());
        call(&mut conn, &host, "dd-0").await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        call(&mut conn, &host, "dd-0").await;
        let (stream, _) = scheduler.accept().await.unwrap();
        let request = Conn::new(stream).read_request().await.unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let port = host.rsplit_once(':').unwrap().1;
        assert_eq!(body, serde_json::json!({"host": format!("localhost:{port}")}));
    });
}
