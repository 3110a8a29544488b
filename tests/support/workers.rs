//! The test workers: HTTP/1.1 servers on `127.0.0.1:0` that answer as the
//! query of each call says and record what they were sent.

use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::http::{header, read_message, Kind};
use super::pattern;

/// A request as a test worker received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Requests this worker had served on the same connection before.
    pub earlier_on_connection: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
}

#[derive(Default)]
struct WorkerState {
    connections: AtomicUsize,
    requests: AtomicUsize,
    seen: Mutex<VecDeque<Seen>>,
    /// Requests waiting at the gate (`?mode=hold`), and whether it is open.
    held: Mutex<(usize, bool)>,
    gate: Condvar,
    strays: AtomicUsize,
    stop: AtomicBool,
    /// While nonzero, every call is answered with this status, and with
    /// `Retry-After: 1` if `refuse_retry_after` (an overloaded worker).
    refuse: AtomicU16,
    refuse_retry_after: AtomicBool,
    /// Calls being served now, and the most ever served at once.
    active: AtomicUsize,
    most_active: AtomicUsize,
    /// While nonzero, a call that comes while this many are served is
    /// answered at once with `fail_code` (and not served): a worker that
    /// fails calls past a number at once, as one short of memory does.
    fail_past: AtomicUsize,
    fail_code: AtomicU16,
    failed: AtomicUsize,
}

/// A test worker on `127.0.0.1:0`: a thread per connection, keep-alive,
/// bodies by Content-Length or chunked. It answers `GET /status` with 200
/// and anything else by echoing the request body, as the query says:
///
/// - `mode=chunked`: the echo goes out chunked; `mode=close`: delimited by
///   closing the connection; `mode=drop`: no answer, the connection closes;
///   `mode=hold`: the answer waits until `open_gate`; `mode=continue`: a
///   `100 Continue` first;
/// - `mode=half`: half the body, then the connection closes; `mode=reset`:
///   half the body, then a reset;
/// - `mode=extra`: after the answer, stray bytes on the connection (counted
///   by `strays`); `mode=gzip`: the echo with `Transfer-Encoding: gzip,
///   chunked`;
/// - `code=N`: that status (204 and 304 without a body);
/// - `size=N`: N bytes of a pattern instead of the echo;
/// - `ms=N`: the answer waits N ms (the call's work).
///
/// Every answer carries `X-Worker: <url>` and `X-Custom: yes`.
pub struct Worker {
    pub url: String,
    pub addr: SocketAddr,
    state: Arc<WorkerState>,
}

impl Worker {
    pub fn start() -> Worker {
        Worker::start_at("127.0.0.1:0")
    }

    /// A worker listening at `addr` (which must be free).
    pub fn start_at(addr: &str) -> Worker {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let state = Arc::new(WorkerState::default());
        let (s, u) = (Arc::clone(&state), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                // As Go's net/http does; without it, Nagle would hold back
                // a small write after an answer (the strays) until hiku's ACK.
                let _ = stream.set_nodelay(true);
                s.connections.fetch_add(1, Ordering::Relaxed);
                let (s, u) = (Arc::clone(&s), u.clone());
                std::thread::spawn(move || serve_worker_connection(stream, &s, &u));
            }
        });
        Worker { url, addr, state }
    }

    /// Connections hiku opened to this worker.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::Relaxed)
    }

    /// Requests received (`/status` probes included).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// The requests received, oldest first (at most the last 1000).
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().iter().cloned().collect()
    }

    pub fn last(&self) -> Seen {
        self.state.seen.lock().unwrap().back().cloned().expect("the worker got a request")
    }

    /// The most calls (not `/status`) it served at once.
    pub fn most_active(&self) -> usize {
        self.state.most_active.load(Ordering::Relaxed)
    }

    /// Times stray bytes were sent after an answer (`mode=extra`).
    pub fn strays(&self) -> usize {
        self.state.strays.load(Ordering::Relaxed)
    }

    /// Answers every call that comes while `n` are being served with
    /// `code` at once (0: never again), with `Retry-After: 1` for a 503.
    pub fn fail_past(&self, n: usize, code: u16) {
        self.state.fail_code.store(code, Ordering::Relaxed);
        self.state.fail_past.store(n, Ordering::Relaxed);
    }

    /// Calls answered so for coming past `fail_past`.
    pub fn failed(&self) -> usize {
        self.state.failed.load(Ordering::Relaxed)
    }

    /// Requests waiting at the gate.
    pub fn held(&self) -> usize {
        self.state.held.lock().unwrap().0
    }

    /// Answers every call (not `/status`) with `code`, with `Retry-After: 1`
    /// if `retry_after`, until `refuse(0, ..)`: an overloaded worker.
    pub fn refuse(&self, code: u16, retry_after: bool) {
        self.state.refuse_retry_after.store(retry_after, Ordering::Relaxed);
        self.state.refuse.store(code, Ordering::Relaxed);
    }

    pub fn open_gate(&self) {
        self.state.held.lock().unwrap().1 = true;
        self.state.gate.notify_all();
    }
}

/// `n` workers.
pub fn workers(n: usize) -> Vec<Worker> {
    (0..n).map(|_| Worker::start()).collect()
}

/// The URLs of `workers`.
pub fn urls(workers: &[Worker]) -> Vec<&str> {
    workers.iter().map(|w| w.url.as_str()).collect()
}

/// A URL where nothing listens (a port that was just free).
pub fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.open_gate();
        self.state.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn query_param<'a>(target: &'a str, key: &str) -> Option<&'a str> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

fn serve_worker_connection(stream: TcpStream, state: &WorkerState, url: &str) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut served = 0;
    loop {
        let Some(msg) = read_message(&mut reader, Kind::Request) else { return };
        state.requests.fetch_add(1, Ordering::Relaxed);
        let (method, target) = {
            let mut parts = msg.start.split(' ');
            (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string())
        };
        let seen = Seen {
            method: method.clone(),
            target: target.clone(),
            headers: msg.headers.clone(),
            body: msg.body.clone(),
            earlier_on_connection: served,
        };
        served += 1;
        if target != "/status" {
            let mut log = state.seen.lock().unwrap();
            if log.len() == 1000 {
                log.pop_front();
            }
            log.push_back(seen);
        }
        let past = state.fail_past.load(Ordering::Relaxed);
        if past != 0 && target != "/status" && state.active.load(Ordering::SeqCst) >= past {
            state.failed.fetch_add(1, Ordering::Relaxed);
            let code = state.fail_code.load(Ordering::Relaxed);
            let retry = if code == 503 { "Retry-After: 1\r\n" } else { "" };
            let answer = format!("HTTP/1.1 {code} Failed\r\nX-Worker: {url}\r\n{retry}Content-Length: 6\r\n\r\nfailed");
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let active = (target != "/status").then(|| Active::enter(state));
        let refuse = state.refuse.load(Ordering::Relaxed);
        if refuse != 0 && target != "/status" {
            let retry = if state.refuse_retry_after.load(Ordering::Relaxed) { "Retry-After: 1\r\n" } else { "" };
            drop(active);
            let answer = format!("HTTP/1.1 {refuse} Busy\r\nX-Worker: {url}\r\n{retry}Content-Length: 4\r\n\r\nbusy");
            if writer.write_all(answer.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let mode = query_param(&target, "mode").unwrap_or("");
        match mode {
            "drop" => return,
            "hold" => {
                let mut held = state.held.lock().unwrap();
                held.0 += 1;
                while !held.1 {
                    held = state.gate.wait(held).unwrap();
                }
                held.0 -= 1;
            }
            "continue" => writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap(),
            _ => {}
        }
        if let Some(ms) = query_param(&target, "ms").and_then(|ms| ms.parse().ok()) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let code: u16 = query_param(&target, "code").and_then(|c| c.parse().ok()).unwrap_or(200);
        let body = match query_param(&target, "size").and_then(|s| s.parse::<usize>().ok()) {
            Some(n) => pattern(n),
            None if target == "/status" => b"ok".to_vec(),
            None => msg.body,
        };
        let mut head = format!("HTTP/1.1 {code} Whatever\r\nX-Worker: {url}\r\nX-Custom: yes\r\n");
        let no_body = method == "HEAD" || code == 204 || code == 304;
        let close =
            mode == "close" || header(&msg.headers, "connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        if mode == "signals" {
            // What an OpenLambda worker emulated by perf/ says of a call.
            head.push_str("X-Cold-Start: false\r\nX-Service-Ms: 2.5\r\n");
        }
        match mode {
            "chunked" => head.push_str("Transfer-Encoding: chunked\r\n"),
            "gzip" => head.push_str("Transfer-Encoding: gzip, chunked\r\n"),
            "close" => head.push_str("Connection: close\r\n"),
            _ if code == 204 => {}
            _ => head.push_str(&format!("Content-Length: {}\r\n", body.len())),
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !no_body {
            if mode == "chunked" || mode == "gzip" {
                for piece in body.chunks(64 * 1024) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(&body);
            }
        }
        // Done before the answer goes: hiku ends the call only after it.
        drop(active);
        if mode == "half" || mode == "reset" {
            // Half of the body, then the end: a close, or a reset.
            let _ = writer.write_all(&out[..out.len() - body.len() / 2]);
            if mode == "reset" {
                let _ = socket2::SockRef::from(&writer).set_linger(Some(std::time::Duration::ZERO));
            } else {
                let _ = writer.shutdown(Shutdown::Both);
            }
            return;
        }
        if writer.write_all(&out).is_err() || close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
        if mode == "extra" {
            let _ = writer.write_all(b"HTTP/1.1 408 Stray\r\nContent-Length: 0\r\n\r\n");
            state.strays.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts a call as being served until dropped (after its answer is out).
struct Active<'a>(&'a WorkerState);

impl<'a> Active<'a> {
    fn enter(state: &'a WorkerState) -> Active<'a> {
        let now = state.active.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_active.fetch_max(now, Ordering::SeqCst);
        Active(state)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}
