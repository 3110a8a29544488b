//! A client connection that writes raw bytes and reads answers, the
//! answers as it read them, and what tests ask hiku through it (calls left
//! held at a worker, `/status`, `/metrics`).

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::http::{header, read_message, Kind};
use super::{wait_for, Hiku, Worker, DEADLINE};

/// An answer as the client got it.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The worker that answered.
    pub fn worker(&self) -> &str {
        self.header("x-worker").unwrap_or_else(|| panic!("no X-Worker in a {} answer: {}", self.status, self.text()))
    }
}

/// A client connection that writes raw bytes and reads answers.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Client { writer: stream.try_clone().unwrap(), reader: BufReader::new(stream) }
    }

    /// A second handle on the socket, for writing from another thread.
    pub fn writer(&self) -> TcpStream {
        self.writer.try_clone().unwrap()
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).unwrap();
    }

    /// Reads the next answer (to a HEAD request if `head`); interim 1xx
    /// answers are returned like any other.
    pub fn read(&mut self, head: bool) -> Response {
        let msg =
            read_message(&mut self.reader, Kind::Response { head }).expect("an answer before the connection closed");
        let mut start = msg.start.splitn(3, ' ');
        Response {
            version: start.next().unwrap().to_string(),
            status: start.next().unwrap().parse().unwrap(),
            headers: msg.headers,
            body: msg.body,
            chunked: msg.chunked,
        }
    }

    /// Sends a request with a Content-Length body and reads its answer.
    pub fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: hiku\r\n");
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        self.send(&raw);
        self.read(method == "HEAD")
    }

    /// Whether the server closed the connection (waits for it, up to the deadline).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes after the answer"),
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

/// Sends a call and returns its connection, to read the answer later.
pub fn send_call(hiku: &Hiku, target: &str) -> Client {
    let mut c = hiku.client();
    c.send(format!("POST {target} HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx").as_bytes());
    c
}

/// Sends a call that the worker holds until its gate opens.
pub fn held_call(hiku: &Hiku, w: &Worker) -> Client {
    let mut c = hiku.client();
    c.send(b"POST /run/f?mode=hold HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx");
    wait_for("the call held", || w.held() == 1);
    c
}

/// The calls in flight at each worker, as `/status` says.
pub fn in_flight(hiku: &Hiku) -> Vec<u64> {
    let status = hiku.get("/status").json();
    status["workers"].as_array().unwrap().iter().map(|w| w["in_flight"].as_u64().unwrap()).collect()
}

/// `/metrics`, parsed as Prometheus parses it.
pub fn scrape(hiku: &Hiku) -> prometheus_parse::Scrape {
    let res = hiku.get("/metrics");
    assert_eq!(res.status, 200);
    let lines = res.text().lines().map(|l| Ok(l.to_string())).collect::<Vec<_>>();
    prometheus_parse::Scrape::parse(lines.into_iter()).expect("the Prometheus text format")
}

/// The value of the sample `name` (with `label`, if given) in a scrape.
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
    use prometheus_parse::Value;
    let found =
        scrape.samples.iter().find(|s| s.metric == name && label.map_or(true, |(k, v)| s.labels.get(k) == Some(v)));
    match found.unwrap_or_else(|| panic!("no {name} {label:?}")).value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}
