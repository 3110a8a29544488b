//! The trivial upstream of `perf/throughput`: HTTP/1.1 keep-alive servers
//! that answer every request `200 hello world`, on one thread with one mio
//! event loop for all of their ports, so that what the measurement sees is
//! the proxy's cost, not the upstream's. Per request: one head parse, the
//! body skipped by `Content-Length`, one preformatted answer written.

use std::io::{self, ErrorKind, Read, Write};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

/// The answer to every request.
pub const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world";
const ANSWER_CLOSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world";
/// A request with a transfer coding: refused (the proxies send lengths).
const NOT_IMPLEMENTED: &[u8] = b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// Connections the kernel queues for each server until it accepts them, as
/// the proxies' own listeners (and Go's, the kernel's `somaxconn`): mio's
/// 1024 overflowed when a proxy opened a thousand connections at once, and
/// every SYN dropped cost that connection a second.
const BACKLOG: i32 = 4096;
/// Bytes read at a time.
const READ_SIZE: usize = 16 * 1024;

/// One connection's requests and answers, apart from its socket.
#[derive(Default)]
struct Exchange {
    /// Bytes read and not yet parsed.
    input: Vec<u8>,
    /// Answers not yet written.
    output: Vec<u8>,
    /// Body bytes of the current request still to skip.
    body_left: u64,
    /// The current request's answer waits for its body; `Some(true)` if
    /// the connection closes after it.
    answer_pending: Option<bool>,
    /// Close once `output` is written.
    closing: bool,
}

impl Exchange {
    /// Answers the complete requests in `input` and drops them.
    fn answer(&mut self) {
        let mut at = 0;
        while !self.closing {
            let rest = &self.input[at..];
            if self.body_left > 0 {
                let n = self.body_left.min(rest.len() as u64);
                self.body_left -= n;
                at += n as usize;
                if self.body_left > 0 {
                    break;
                }
            }
            if let Some(close) = self.answer_pending.take() {
                self.output.extend_from_slice(if close { ANSWER_CLOSE } else { ANSWER });
                self.closing = close;
                continue;
            }
            match parse_head(&self.input[at..]) {
                Head::Partial if self.input.len() - at > MAX_HEAD => self.refuse(BAD_REQUEST),
                Head::Partial => break,
                Head::Bad => self.refuse(BAD_REQUEST),
                Head::Chunked => self.refuse(NOT_IMPLEMENTED),
                Head::Complete { length, body, close } => {
                    at += length;
                    self.body_left = body;
                    self.answer_pending = Some(close);
                }
            }
        }
        self.input.drain(..at.min(self.input.len()));
    }

    fn refuse(&mut self, answer: &[u8]) {
        self.output.extend_from_slice(answer);
        self.closing = true;
    }
}

struct Connection {
    stream: TcpStream,
    exchange: Exchange,
}

/// What became of a connection after an event.
enum Fate {
    Open,
    Closed,
}

impl Connection {
    /// Reads what arrived (through the loop's one `scratch` buffer),
    /// answers every complete request, writes.
    fn readable(&mut self, scratch: &mut [u8]) -> io::Result<Fate> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Ok(Fate::Closed),
                Ok(n) => {
                    self.exchange.input.extend_from_slice(&scratch[..n]);
                    self.exchange.answer();
                    // Edge-triggered: a short read drained the socket, and
                    // anything arriving later raises a new event.
                    if self.exchange.closing || n < scratch.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.writable()
    }

    /// Writes what is pending.
    fn writable(&mut self) -> io::Result<Fate> {
        let output = &mut self.exchange.output;
        while !output.is_empty() {
            match self.stream.write(output) {
                Ok(n) => {
                    output.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Fate::Open),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(if self.exchange.closing { Fate::Closed } else { Fate::Open })
    }
}

/// A request head at the start of some bytes.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    Partial,
    Bad,
    Chunked,
    /// Its length, its body's length, and whether the client closes after it.
    Complete {
        length: usize,
        body: u64,
        close: bool,
    },
}

fn parse_head(bytes: &[u8]) -> Head {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut fields);
    let length = match request.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Head::Partial,
        Err(_) => return Head::Bad,
    };
    let (mut body, mut close, mut keep_alive) = (0, false, false);
    for field in request.headers.iter() {
        let value = std::str::from_utf8(field.value).unwrap_or("").trim();
        if field.name.eq_ignore_ascii_case("content-length") {
            match value.parse() {
                Ok(n) => body = n,
                Err(_) => return Head::Bad,
            }
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            return Head::Chunked;
        } else if field.name.eq_ignore_ascii_case("connection") {
            close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
            keep_alive |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("keep-alive"));
        }
    }
    let close = close || (request.version == Some(0) && !keep_alive);
    Head::Complete { length, body, close }
}

/// Binds `count` listeners on 127.0.0.1, any free ports.
pub fn bind(count: usize) -> io::Result<Vec<TcpListener>> {
    bind_from(count, 0)
}

/// `count` listeners on 127.0.0.1 from `port` on (0: ports the OS picks),
/// each with a backlog of [`BACKLOG`].
pub fn bind_from(count: usize, port: u16) -> io::Result<Vec<TcpListener>> {
    (0..count)
        .map(|i| {
            let port = if port == 0 { 0 } else { port.checked_add(i as u16).ok_or(io::ErrorKind::InvalidInput)? };
            let listener = TcpListener::bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))?;
            // SAFETY: listen(2) again on our listening socket: Linux takes
            // the new backlog.
            if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), BACKLOG) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(listener)
        })
        .collect()
}

/// Serves the listeners until the process ends.
pub fn serve(mut listeners: Vec<TcpListener>) -> io::Result<()> {
    let mut poll = Poll::new()?;
    for (i, listener) in listeners.iter_mut().enumerate() {
        poll.registry().register(listener, Token(i), Interest::READABLE)?;
    }
    let first = listeners.len();
    let mut connections: Vec<Option<Connection>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; READ_SIZE];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            let token = event.token().0;
            if token < first {
                accept(&poll, &listeners[token], first, &mut connections, &mut free)?;
                continue;
            }
            let slot = token - first;
            let Some(connection) = connections.get_mut(slot).and_then(Option::as_mut) else { continue };
            let fate = match (event.is_readable() || event.is_read_closed(), event.is_writable()) {
                (true, _) => connection.readable(&mut scratch),
                (false, true) => connection.writable(),
                (false, false) => Ok(Fate::Open),
            };
            if !matches!(fate, Ok(Fate::Open)) || event.is_error() {
                connections[slot] = None;
                free.push(slot);
            }
        }
    }
}

fn accept(
    poll: &Poll,
    listener: &TcpListener,
    first: usize,
    connections: &mut Vec<Option<Connection>>,
    free: &mut Vec<usize>,
) -> io::Result<()> {
    loop {
        let mut stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Out of descriptors or a connection reset before accept: the
            // listener stays usable.
            Err(_) => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let slot = free.pop().unwrap_or_else(|| {
            connections.push(None);
            connections.len() - 1
        });
        poll.registry().register(&mut stream, Token(first + slot), Interest::READABLE | Interest::WRITABLE)?;
        connections[slot] = Some(Connection { stream, exchange: Exchange::default() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_the_body_length_and_whether_to_close() {
        let post = b"POST /run/dd-0 HTTP/1.1\r\nHost: u\r\nContent-Length: 20\r\n\r\n{\"param0\": \"value0\"}";
        assert_eq!(parse_head(post), Head::Complete { length: 56, body: 20, close: false });
        assert_eq!(parse_head(&post[..30]), Head::Partial);
        let close = b"GET /status HTTP/1.1\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_head(close), Head::Complete { length: close.len(), body: 0, close: true });
        assert_eq!(parse_head(b"GET / HTTP/1.0\r\n\r\n"), Head::Complete { length: 18, body: 0, close: true });
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), Head::Chunked);
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), Head::Bad);
    }

    #[test]
    fn pipelined_requests_split_anywhere_get_one_answer_each() {
        let requests: &[u8] = b"POST /run/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\n\
                                POST /run/c HTTP/1.1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc\
                                GET /never HTTP/1.1\r\n\r\n";
        let expected = [ANSWER, ANSWER, ANSWER_CLOSE].concat();
        for cut in 0..=requests.len() {
            let mut exchange = Exchange::default();
            for piece in [&requests[..cut], &requests[cut..]] {
                exchange.input.extend_from_slice(piece);
                exchange.answer();
            }
            assert_eq!(String::from_utf8_lossy(&exchange.output), String::from_utf8_lossy(&expected), "cut at {cut}");
            assert!(exchange.closing, "cut at {cut}");
        }
    }

    #[test]
    fn a_transfer_coding_is_refused_and_closes() {
        let mut exchange = Exchange::default();
        exchange.input.extend_from_slice(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        exchange.answer();
        assert_eq!((exchange.output.as_slice(), exchange.closing), (NOT_IMPLEMENTED, true));
    }
}
