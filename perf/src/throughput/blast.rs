//! The throughput generator: closed-loop at full speed, one request
//! outstanding on each of N keep-alive connections, on one thread with one
//! mio (epoll) loop, as wrk does it. Requests are formatted once; each
//! connection reads into a fixed buffer and frames responses with
//! [`ResponseFraming`], so a request costs a write, a read and a parse.
//! Latencies go into an HDR histogram; errors are counted and the
//! connection replaced, and the run goes on.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::http::framing::{ResponseFraming, MAX_HEAD};

/// Read buffer per connection: a head plus room for a body to pass through.
const BUFFER: usize = MAX_HEAD + 8 * 1024;
/// How often timeouts and reconnections are looked at.
const TICK: Duration = Duration::from_millis(10);
/// Wait before reconnecting after a failed connect.
const RECONNECT_DELAY: Duration = Duration::from_millis(10);
/// Largest latency the histogram holds, in microseconds.
const HISTOGRAM_MAX_US: u64 = 60_000_000;

/// What to send, where, for how long.
#[derive(Debug, Clone)]
pub struct Load {
    /// Connections are spread round-robin over these.
    pub targets: Vec<SocketAddr>,
    pub connections: usize,
    /// The path of each request is `/run/<function>`, cycling over these.
    pub functions: Vec<String>,
    pub body: Vec<u8>,
    /// Untimed load before the window, so connections and pools are warm.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// A second window after it, in which only completed requests are
    /// counted ([`Tally::counted_ok`]): the caller counts what the kernel
    /// did in it, with tools that would slow the measured window down.
    /// Zero for none.
    pub counted: Duration,
    /// Every request asks the server to close (`Connection: close`): a new
    /// connection for every call.
    pub close: bool,
    /// A request unanswered this long is an error, and its connection replaced.
    pub timeout: Duration,
}

/// The moments the caller is told about, to take its own readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    WindowStart,
    WindowEnd,
    CountStart,
    CountEnd,
}

/// Errors in the window, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Errors {
    pub connect: u64,
    /// Reset, closed before the whole response, or another read or write error.
    pub io: u64,
    /// A response that is not HTTP as the framing understands it.
    pub protocol: u64,
    /// A complete response with a status other than 2xx.
    pub status: u64,
    pub timeout: u64,
}

impl Errors {
    pub fn total(&self) -> u64 {
        self.connect + self.io + self.protocol + self.status + self.timeout
    }
}

/// What the window measured.
#[derive(Debug, Clone)]
pub struct Tally {
    /// 2xx responses completed in the window.
    pub ok: u64,
    pub errors: Errors,
    /// Latency of each 2xx response, in microseconds.
    pub latency_us: Histogram<u64>,
    pub elapsed: Duration,
    /// 2xx responses completed in the counted window.
    pub counted_ok: u64,
}

impl Tally {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at `quantile` (0-1), in milliseconds.
    pub fn latency_ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// The slowest 2xx response, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        self.latency_us.max() as f64 / 1000.0
    }
}

enum Phase {
    Connecting,
    /// Writing a request; this much of it is written.
    Sending(usize),
    Receiving,
    /// Waiting to reconnect.
    Down(Instant),
}

struct Connection {
    stream: Option<TcpStream>,
    target: usize,
    phase: Phase,
    request: usize,
    sent_at: Instant,
    buffer: Box<[u8]>,
    filled: usize,
    framing: ResponseFraming,
}

/// Why a connection is being replaced.
enum Failure {
    Connect,
    Io,
    Protocol,
    Timeout,
    /// The server said it closes: not an error.
    Closed,
}

struct Generator<'a> {
    load: &'a Load,
    poll: Poll,
    /// `requests[target][function]`, formatted once.
    requests: Vec<Vec<Vec<u8>>>,
    connections: Vec<Connection>,
    next_function: usize,
    measuring: bool,
    ok: u64,
    errors: Errors,
    latency_us: Histogram<u64>,
}

/// Runs the load: warm-up, then the window, then the counted window if
/// any, calling `mark` at the start and end of each. Stops early (with what
/// the window has so far) when `stop` is set.
pub fn run(load: &Load, stop: &AtomicBool, mut mark: impl FnMut(Mark)) -> io::Result<Tally> {
    if load.targets.is_empty() || load.functions.is_empty() || load.connections == 0 {
        return Err(io::Error::new(ErrorKind::InvalidInput, "no target, function or connection"));
    }
    let mut generator = Generator::new(load)?;
    generator.run_for(load.warmup, stop)?;
    if stop.load(Ordering::Relaxed) {
        return Ok(generator.tally(Duration::ZERO));
    }
    mark(Mark::WindowStart);
    generator.start_window();
    let start = Instant::now();
    generator.run_for(load.duration, stop)?;
    let elapsed = start.elapsed();
    mark(Mark::WindowEnd);
    let mut tally = generator.tally(elapsed);
    if !load.counted.is_zero() && !stop.load(Ordering::Relaxed) {
        mark(Mark::CountStart);
        let before = generator.ok;
        generator.run_for(load.counted, stop)?;
        tally.counted_ok = generator.ok - before;
        mark(Mark::CountEnd);
    }
    Ok(tally)
}

/// A POST of `body` to `/run/<function>` on `host`, keep-alive.
pub fn request(host: &SocketAddr, function: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST /run/{function} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

/// [`request`], asking the server to close after answering.
pub fn closing_request(host: &SocketAddr, function: &str, body: &[u8]) -> Vec<u8> {
    let mut request = request(host, function, body);
    let end = request.len() - body.len() - 2;
    request.splice(end..end, *b"Connection: close\r\n");
    request
}

impl<'a> Generator<'a> {
    fn new(load: &'a Load) -> io::Result<Generator<'a>> {
        let requests = load
            .targets
            .iter()
            .map(|target| {
                let format = if load.close { closing_request } else { request };
                load.functions.iter().map(|f| format(target, f, &load.body)).collect()
            })
            .collect();
        let now = Instant::now();
        let connections = (0..load.connections)
            .map(|i| Connection {
                stream: None,
                target: i % load.targets.len(),
                phase: Phase::Down(now),
                request: 0,
                sent_at: now,
                buffer: vec![0; BUFFER].into_boxed_slice(),
                filled: 0,
                framing: ResponseFraming::default(),
            })
            .collect();
        let latency_us = Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3).expect("valid histogram bounds");
        let mut generator = Generator {
            load,
            poll: Poll::new()?,
            requests,
            connections,
            next_function: 0,
            measuring: false,
            ok: 0,
            errors: Errors::default(),
            latency_us,
        };
        for i in 0..load.connections {
            generator.connect(i);
        }
        Ok(generator)
    }

    /// Waits for events (up to a tick) and handles them.
    fn turn(&mut self, events: &mut Events) -> io::Result<()> {
        match self.poll.poll(events, Some(TICK)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let i = event.token().0;
            if event.is_writable() || event.is_error() {
                self.writable(i);
            }
            if event.is_readable() || event.is_read_closed() {
                self.readable(i);
            }
        }
        Ok(())
    }

    /// Keeps the load going for `duration` (or until `stop`).
    fn run_for(&mut self, duration: Duration, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(self.load.connections.clamp(64, 4096));
        let end = Instant::now() + duration;
        let mut last_sweep = Instant::now();
        while Instant::now() < end && !stop.load(Ordering::Relaxed) {
            if last_sweep.elapsed() >= TICK {
                last_sweep = Instant::now();
                self.sweep(last_sweep);
            }
            self.turn(&mut events)?;
        }
        Ok(())
    }

    fn start_window(&mut self) {
        self.measuring = true;
        self.ok = 0;
        self.errors = Errors::default();
        self.latency_us.reset();
    }

    fn tally(&self, elapsed: Duration) -> Tally {
        Tally { ok: self.ok, errors: self.errors, latency_us: self.latency_us.clone(), elapsed, counted_ok: 0 }
    }

    fn connect(&mut self, i: usize) {
        let target = self.load.targets[self.connections[i].target];
        let connection = &mut self.connections[i];
        connection.filled = 0;
        connection.framing = ResponseFraming::default();
        // The timeout counts from here until the first request is sent.
        connection.sent_at = Instant::now();
        let registered = TcpStream::connect(target).and_then(|mut stream| {
            self.poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        match registered {
            Ok(stream) => {
                connection.stream = Some(stream);
                connection.phase = Phase::Connecting;
            }
            Err(_) => self.fail(i, Failure::Connect),
        }
    }

    /// Drops connection `i` (counting why) and starts its replacement.
    fn fail(&mut self, i: usize, failure: Failure) {
        if self.measuring {
            match failure {
                Failure::Connect => self.errors.connect += 1,
                Failure::Io => self.errors.io += 1,
                Failure::Protocol => self.errors.protocol += 1,
                Failure::Timeout => self.errors.timeout += 1,
                Failure::Closed => {}
            }
        }
        let connection = &mut self.connections[i];
        if let Some(mut stream) = connection.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        match failure {
            // A refused connect would spin at full speed: wait a little.
            Failure::Connect => connection.phase = Phase::Down(Instant::now() + RECONNECT_DELAY),
            _ => self.connect(i),
        }
    }

    /// Sends connection `i`'s next request.
    fn send(&mut self, i: usize) {
        let connection = &mut self.connections[i];
        connection.request = self.next_function % self.load.functions.len();
        self.next_function = self.next_function.wrapping_add(1);
        connection.sent_at = Instant::now();
        connection.phase = Phase::Sending(0);
        self.write(i);
    }

    /// Writes what is left of the current request.
    fn write(&mut self, i: usize) {
        let connection = &mut self.connections[i];
        let Phase::Sending(mut written) = connection.phase else { return };
        let Some(stream) = connection.stream.as_mut() else { return };
        let bytes = &self.requests[connection.target][connection.request];
        while written < bytes.len() {
            match stream.write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    connection.phase = Phase::Sending(written);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.fail(i, Failure::Io),
            }
        }
        connection.phase = Phase::Receiving;
    }

    fn writable(&mut self, i: usize) {
        let connection = &mut self.connections[i];
        match connection.phase {
            Phase::Connecting => {
                let Some(stream) = connection.stream.as_ref() else { return };
                // Connected once the peer is known; a failed connect has an error.
                match (stream.take_error(), stream.peer_addr()) {
                    (Ok(None), Ok(_)) => {
                        let _ = stream.set_nodelay(true);
                        self.send(i);
                    }
                    (Ok(None), Err(e)) if e.kind() == ErrorKind::NotConnected => {}
                    _ => self.fail(i, Failure::Connect),
                }
            }
            Phase::Sending(_) => self.write(i),
            Phase::Receiving | Phase::Down(_) => {}
        }
    }

    fn readable(&mut self, i: usize) {
        loop {
            let connection = &mut self.connections[i];
            if !matches!(connection.phase, Phase::Receiving | Phase::Sending(_)) {
                return;
            }
            let Some(stream) = connection.stream.as_mut() else { return };
            let space = connection.buffer.len() - connection.filled;
            match stream.read(&mut connection.buffer[connection.filled..]) {
                Ok(0) => {
                    let done = connection.framing.eof();
                    if let Some(done) = done {
                        self.complete(i, done.status);
                    }
                    return self.fail(i, if done.is_some() { Failure::Closed } else { Failure::Io });
                }
                Ok(n) => {
                    connection.filled += n;
                    // Stop when a response ended (the next one can't come
                    // before the next request) or the socket is drained: with
                    // edge triggering, later bytes raise a new event.
                    if self.frame(i) || n < space {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.fail(i, Failure::Io),
            }
        }
    }

    /// Frames what connection `i` has read; true if a response ended (and
    /// the next request went out, or the connection was replaced).
    fn frame(&mut self, i: usize) -> bool {
        let connection = &mut self.connections[i];
        let progress = match connection.framing.feed(&connection.buffer[..connection.filled]) {
            Ok(progress) => progress,
            Err(_) => {
                self.fail(i, Failure::Protocol);
                return true;
            }
        };
        connection.buffer.copy_within(progress.consumed..connection.filled, 0);
        connection.filled -= progress.consumed;
        let Some(done) = progress.done else {
            if connection.filled == connection.buffer.len() {
                self.fail(i, Failure::Protocol);
                return true;
            }
            return false;
        };
        self.complete(i, done.status);
        // Bytes beyond the response answer nothing we asked.
        if done.close || self.connections[i].filled > 0 {
            self.fail(i, if done.close { Failure::Closed } else { Failure::Protocol });
        } else {
            self.send(i);
        }
        true
    }

    fn complete(&mut self, i: usize, status: u16) {
        if !self.measuring {
            return;
        }
        if (200..300).contains(&status) {
            let us = self.connections[i].sent_at.elapsed().as_micros() as u64;
            let _ = self.latency_us.record(us.clamp(1, HISTOGRAM_MAX_US));
            self.ok += 1;
        } else {
            self.errors.status += 1;
        }
    }

    /// Times out requests unanswered too long, and reconnects those due.
    fn sweep(&mut self, now: Instant) {
        for i in 0..self.connections.len() {
            match self.connections[i].phase {
                Phase::Down(at) if now >= at => self.connect(i),
                Phase::Connecting | Phase::Sending(_) | Phase::Receiving
                    if now.duration_since(self.connections[i].sent_at) > self.load.timeout =>
                {
                    self.fail(i, Failure::Timeout)
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_formatted_once_with_their_length() {
        let host: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let bytes = request(&host, "dd-3", br#"{"param0": "value0"}"#);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /run/dd-3 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Type: application/json\r\n\
             Content-Length: 20\r\n\r\n{\"param0\": \"value0\"}"
        );
        let closing = closing_request(&host, "dd-3", br#"{"param0": "value0"}"#);
        assert!(String::from_utf8(closing)
            .unwrap()
            .ends_with("Content-Length: 20\r\nConnection: close\r\n\r\n{\"param0\": \"value0\"}"));
    }
}
