//! Limits: request heads, bodies and connections past `limits`.

use crate::support::{in_flight, wait_for, Driver, Hiku, Worker};

on_both_drivers!(heads_and_bodies_over_the_limits_are_refused);
fn heads_and_bodies_over_the_limits_are_refused(driver: Driver) {
    let w = Worker::start();
    let limits = serde_json::json!({"limits": {"max_header_bytes": 2048, "max_headers": 5, "max_body_bytes": 1000}});
    let hiku = Hiku::on(driver).start_with("least-connections", &[&w.url], limits);
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

on_both_drivers!(past_max_connections_new_ones_wait_in_the_backlog);
fn past_max_connections_new_ones_wait_in_the_backlog(driver: Driver) {
    use std::io::{Read, Write};
    let w = Worker::start();
    let hiku = Hiku::on(driver).start_with("random", &[&w.url], serde_json::json!({"limits": {"max_connections": 2}}));
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
