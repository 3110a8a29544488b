//! End to end: `perf/demo` on a config of free ports starts emulated
//! workers and hiku in front of them, says how to try it, answers a call,
//! and takes everything down on Ctrl-C.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The whole answer to `request` sent to `address` (which closes after it).
fn exchange(address: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_demo_serves_calls_through_emulated_workers_until_interrupted() {
    let dir = std::env::temp_dir().join(format!("hiku-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The binaries the demo runs, side by side, as a release build has them.
    for (name, path) in
        [("hiku", support::hiku_binary()), ("hiku-emulator", env!("CARGO_BIN_EXE_hiku-emulator").into())]
    {
        let link = dir.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(path, link).unwrap();
    }
    let (port, w1, w2) = (free_port(), free_port(), free_port());
    let config = dir.join("config.json");
    let text = format!(
        r#"{{"host": "127.0.0.1", "port": {port}, "balancer": "pull-based",
            "workers": ["http://localhost:{w1}", "http://127.0.0.1:{w2}"]}}"#
    );
    std::fs::write(&config, text).unwrap();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/demo");
    let mut demo = Command::new(script)
        .arg(&config)
        .env("HIKU_DEMO_BIN", &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut said = String::new();
    let started = Instant::now();
    while !said.contains("Ctrl-C stops") {
        assert!(started.elapsed() < Duration::from_secs(30), "the demo said only:\n{said}");
        match lines.next() {
            Some(line) => said += &(line.unwrap() + "\n"),
            None => panic!("the demo ended; it said:\n{said}"),
        }
    }
    let address = format!("127.0.0.1:{port}");
    assert!(said.contains(&format!("hiku is listening on {address}")), "{said}");
    // Each worker by the name the config gives it.
    assert!(said.contains(&format!("http://localhost:{w1}")) && said.contains(&format!("http://127.0.0.1:{w2}")));
    assert!(said.contains(&format!("curl -i -X POST http://{address}/run/dd-0")), "{said}");

    // The call it suggests, through hiku to an emulated worker.
    let call = "POST /run/dd-0 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let answer = exchange(&address, call);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("x-cold-start: true"), "{answer}");
    let status = exchange(&address, "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 200") && status.contains("probe"), "{status}");

    // Ctrl-C: the demo stops, and hiku and the workers with it.
    unsafe { libc::kill(demo.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    loop {
        if let Some(exit) = demo.try_wait().unwrap() {
            assert!(exit.success(), "the demo ended with {exit}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in [port, w1, w2] {
        assert!(TcpStream::connect(("127.0.0.1", p)).is_err(), "port {p} still served after the demo stopped");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
