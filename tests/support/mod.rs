//! What the end-to-end tests run against: the real `hiku` binary on
//! `127.0.0.1:0`, test workers that speak HTTP/1.1 and record what they
//! were sent, and a client that writes raw bytes and reads answers.
//!
//! Everything waits on conditions with a deadline; nothing sleeps a fixed
//! time to let something happen.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Longest any test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds; fails the test after `DEADLINE`.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir =
        std::env::temp_dir().join(format!("hiku-e2e-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Cores the tests run hiku on: two where there are two, to cover shards
/// sharing state.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(2)
}

/// The `hiku` binary, run with arguments; a config file is written first.
pub fn hiku_command(config: &str, args: &[&str]) -> (Command, PathBuf) {
    let dir = scratch_dir();
    let path = dir.join("hiku.json");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hiku"));
    cmd.args(args).arg("-c").arg(&path).env("HIKU_LOG", "warn");
    if let Some(driver) = crate::DRIVER {
        cmd.env("HIKU_IO", driver);
    }
    (cmd, path)
}

/// A running hiku, killed on drop.
pub struct Hiku {
    child: Child,
    pub addr: SocketAddr,
    stderr: PathBuf,
}

impl Hiku {
    /// Starts hiku with `balancer` in front of `workers` (URLs).
    pub fn start(balancer: &str, workers: &[&str]) -> Hiku {
        let config = serde_json::json!({ "host": "127.0.0.1", "port": 0, "balancer": balancer, "workers": workers });
        Hiku::start_config(&config.to_string(), cores())
    }

    pub fn start_config(config: &str, cores: usize) -> Hiku {
        let (mut cmd, path) = hiku_command(config, &["start", "--cores", &cores.to_string()]);
        let stderr = path.with_file_name("stderr.log");
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr).unwrap()).spawn().expect("hiku starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("hiku did not start: {}", std::fs::read_to_string(&stderr).unwrap_or_default())
        });
        let addr = line.strip_prefix("listening on ").and_then(|a| a.parse().ok()).expect("listening on <addr>");
        Hiku { child, addr, stderr }
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        self.client().request(method, target, &[], body)
    }

    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, b"")
    }

    pub fn post(&self, target: &str, body: &[u8]) -> Response {
        self.request("POST", target, body)
    }

    /// The config file hiku was started with (a reload re-reads it).
    pub fn config_path(&self) -> PathBuf {
        self.stderr.with_file_name("hiku.json")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The peak resident set size of the process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` to the hiku process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits (up to the deadline) for hiku to exit; its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_for("hiku to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Hiku {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.stderr.parent().unwrap());
    }
}

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

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
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
/// - `size=N`: N bytes of a pattern instead of the echo.
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

/// `n` bytes of a repeating, position-dependent pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Request,
    /// A response to a request of this method.
    Response {
        head: bool,
    },
}

struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    chunked: bool,
}

/// Reads one message; `None` at a clean end of stream. Panics on anything
/// malformed: hiku must send well-formed HTTP.
fn read_message(r: &mut BufReader<TcpStream>, kind: Kind) -> Option<Message> {
    let mut start = String::new();
    if r.read_line(&mut start).ok()? == 0 {
        return None;
    }
    let start = start.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("a header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or_else(|| panic!("bad header line {line:?}"));
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let code: u16 = match kind {
        Kind::Response { .. } => start.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status code"),
        Kind::Request => 0,
    };
    let chunked = header(&headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let length = header(&headers, "content-length").map(|l| l.parse::<usize>().expect("a valid Content-Length"));
    let mut body = Vec::new();
    let bodiless =
        matches!(kind, Kind::Response { head: true }) || (100..200).contains(&code) || code == 204 || code == 304;
    if bodiless {
    } else if chunked {
        loop {
            let mut line = String::new();
            r.read_line(&mut line).expect("a chunk size");
            let size = usize::from_str_radix(line.trim_end().split(';').next().unwrap(), 16).expect("hex chunk size");
            if size == 0 {
                loop {
                    let mut trailer = String::new();
                    r.read_line(&mut trailer).expect("a trailer line");
                    if trailer.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..]).expect("chunk data");
            let mut crlf = [0; 2];
            r.read_exact(&mut crlf).expect("CRLF after chunk data");
            assert_eq!(&crlf, b"\r\n");
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body).expect("the whole body");
    } else if kind != Kind::Request {
        r.read_to_end(&mut body).expect("a body up to the close");
    }
    Some(Message { start, headers, body, chunked })
}

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
