//! Where a message ends, fed in pieces as they arrive (RFC 9112 §6.3): the
//! harness's one framer. [`ResponseFraming`] reads a response's head and
//! then its body, by `Content-Length`, chunked, or the server closing;
//! [`BodyFraming`] reads a body whose framing the caller already knows (a
//! request's, from its head). Only the head is buffered by the caller; body
//! bytes go to a [`Sink`], which keeps them ([`Conn`](super::Conn) does) or
//! drops them (`()`, as the throughput generator does, so that a response of
//! any size passes through a fixed read buffer).

/// Largest response head; a trivial upstream's is under 100 bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Header fields parsed in a head.
const MAX_HEADERS: usize = 32;
/// Longest chunk-size or trailer line.
const MAX_LINE: usize = 1024;

/// The framing a response was cut by, and whether the server will close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub status: u16,
    /// The server closes after this response (`Connection: close`, or
    /// HTTP/1.0 without keep-alive, or a body delimited by closing).
    pub close: bool,
}

/// What one call to [`ResponseFraming::feed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input used; the rest must be offered again, with more
    /// after it, unless `done` is set (then it begins the next response).
    pub consumed: usize,
    pub done: Option<Done>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramingError(pub String);

impl From<FramingError> for std::io::Error {
    fn from(e: FramingError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e.0)
    }
}

/// How a body ends (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// After this many bytes.
    Length(u64),
    /// After the last chunk and the trailer (RFC 9112 §7.1); chunk
    /// extensions and trailer fields are ignored.
    Chunked,
    /// When the connection does (responses only).
    UntilClose,
}

/// What a caller keeps of a message as it is framed: the final response
/// head (not interim 1xx ones) and the body's bytes, in order, without the
/// chunked coding. Both are dropped by default.
pub trait Sink {
    fn head(&mut self, _response: &httparse::Response) {}
    fn body(&mut self, _bytes: &[u8]) {}
}

/// Keeps nothing.
impl Sink for () {}

/// Keeps the body.
impl Sink for Vec<u8> {
    fn body(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Body bytes still to come.
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailer,
    UntilClose,
    Ended,
}

/// One body's parser.
#[derive(Debug, Clone)]
pub struct BodyFraming {
    state: State,
}

/// One connection's response parser; reusable for the next response once
/// one is done.
#[derive(Debug, Clone, Default)]
pub struct ResponseFraming {
    /// `None` while the head is read.
    body: Option<BodyFraming>,
    status: u16,
    close: bool,
}

fn error(message: impl Into<String>) -> FramingError {
    FramingError(message.into())
}

/// The first CRLF-terminated line of `bytes`: (line, length with CRLF).
fn line(bytes: &[u8]) -> Result<Option<(&[u8], usize)>, FramingError> {
    match bytes.windows(2).position(|w| w == b"\r\n") {
        Some(end) => Ok(Some((&bytes[..end], end + 2))),
        None if bytes.len() > MAX_LINE => Err(error("line too long")),
        None => Ok(None),
    }
}

impl BodyFraming {
    pub fn new(body: Body) -> BodyFraming {
        let state = match body {
            Body::Length(0) => State::Ended,
            Body::Length(length) => State::Length(length),
            Body::Chunked => State::ChunkSize,
            Body::UntilClose => State::UntilClose,
        };
        BodyFraming { state }
    }

    /// Consumes what it can of `bytes`, handing the body's bytes to `sink`,
    /// and stops where the body ends: how many bytes it used (the rest must
    /// be offered again, with more after it, unless the body ended: then it
    /// follows the message), and whether the body ended.
    pub fn feed(&mut self, bytes: &[u8], sink: &mut impl Sink) -> Result<(usize, bool), FramingError> {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            match self.state {
                State::Length(remaining) => {
                    let n = remaining.min(rest.len() as u64);
                    sink.body(&rest[..n as usize]);
                    at += n as usize;
                    if n < remaining {
                        self.state = State::Length(remaining - n);
                        return Ok((at, false));
                    }
                    self.state = State::Ended;
                }
                State::ChunkSize => match line(rest)? {
                    Some((text, n)) => {
                        at += n;
                        let size = text.split(|&b| b == b';').next().unwrap_or(&[]);
                        let size = std::str::from_utf8(size).ok().and_then(|s| u64::from_str_radix(s.trim(), 16).ok());
                        self.state = match size.ok_or_else(|| error("bad chunk size"))? {
                            0 => State::Trailer,
                            size => State::ChunkData(size),
                        };
                    }
                    None => return Ok((at, false)),
                },
                State::ChunkData(remaining) => {
                    let n = remaining.min(rest.len() as u64);
                    sink.body(&rest[..n as usize]);
                    at += n as usize;
                    if n < remaining {
                        self.state = State::ChunkData(remaining - n);
                        return Ok((at, false));
                    }
                    self.state = State::ChunkEnd;
                }
                State::ChunkEnd => match rest.len() {
                    0 | 1 => return Ok((at, false)),
                    _ if &rest[..2] == b"\r\n" => {
                        at += 2;
                        self.state = State::ChunkSize;
                    }
                    _ => return Err(error("chunk data not followed by CRLF")),
                },
                State::Trailer => match line(rest)? {
                    Some((text, n)) => {
                        at += n;
                        if text.is_empty() {
                            self.state = State::Ended;
                        }
                    }
                    None => return Ok((at, false)),
                },
                State::UntilClose => {
                    sink.body(rest);
                    return Ok((bytes.len(), false));
                }
                State::Ended => return Ok((at, true)),
            }
        }
    }

    /// Whether the connection's end ends the body: only one delimited by
    /// closing; any other is cut short.
    pub fn ends_at_eof(&self) -> bool {
        self.state == State::UntilClose
    }
}

impl ResponseFraming {
    /// Consumes what it can of `bytes`, stopping at the end of a response;
    /// the body's bytes are dropped.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, FramingError> {
        self.feed_into(bytes, &mut ())
    }

    /// [`feed`](Self::feed), handing the response's head and body to `sink`.
    pub fn feed_into(&mut self, bytes: &[u8], sink: &mut impl Sink) -> Result<Progress, FramingError> {
        let mut at = 0;
        loop {
            let Some(body) = &mut self.body else {
                match self.head(&bytes[at..], sink)? {
                    Some(n) => at += n,
                    None => return Ok(Progress { consumed: at, done: None }),
                }
                continue;
            };
            let (n, ended) = body.feed(&bytes[at..], sink)?;
            let done = ended.then(|| self.finish());
            return Ok(Progress { consumed: at + n, done });
        }
    }

    /// The connection reached its end: completes a response delimited by
    /// closing, else `None` (a response cut short, or none begun).
    pub fn eof(&mut self) -> Option<Done> {
        self.body.as_ref().is_some_and(BodyFraming::ends_at_eof).then(|| self.finish())
    }

    /// Parses a head at the start of `bytes`: `None` if it is incomplete,
    /// else its length. After a final (not 1xx) head, the body is next.
    fn head(&mut self, bytes: &[u8], sink: &mut impl Sink) -> Result<Option<usize>, FramingError> {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut fields);
        let n = match response.parse(bytes).map_err(|e| error(format!("bad response head: {e}")))? {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial if bytes.len() > MAX_HEAD => return Err(error("response head too large")),
            httparse::Status::Partial => return Ok(None),
        };
        let status = response.code.unwrap_or(0);
        // Interim answers precede the real one (RFC 9110 §15.2).
        if (100..200).contains(&status) {
            return Ok(Some(n));
        }
        self.status = status;
        let (mut length, mut chunked, mut close, mut keep_alive) = (None, false, false, false);
        for field in response.headers.iter() {
            let value = std::str::from_utf8(field.value).map_err(|_| error("header value not UTF-8"))?.trim();
            if field.name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<u64>().map_err(|_| error(format!("bad content-length {value:?}")))?);
            } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            } else if field.name.eq_ignore_ascii_case("connection") {
                close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
                keep_alive |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("keep-alive"));
            }
        }
        self.close = close || (response.version == Some(0) && !keep_alive);
        let body = match (status, chunked, length) {
            (204 | 304, _, _) => Body::Length(0),
            (_, true, _) => Body::Chunked,
            (_, false, Some(length)) => Body::Length(length),
            (_, false, None) => {
                self.close = true;
                Body::UntilClose
            }
        };
        sink.head(&response);
        self.body = Some(BodyFraming::new(body));
        Ok(Some(n))
    }

    fn finish(&mut self) -> Done {
        let done = Done { status: self.status, close: self.close };
        *self = ResponseFraming::default();
        done
    }
}

#[cfg(test)]
#[path = "framing_tests.rs"]
mod tests;
