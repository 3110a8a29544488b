//! Where a response ends, fed in pieces as they arrive (RFC 9112 §6.3):
//! the generator's parser. Only the head is buffered by the caller; body
//! bytes are counted and dropped, so a response of any size passes through
//! a fixed read buffer.

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    /// Body bytes still to come.
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailer,
    UntilClose,
}

/// One connection's response parser; reusable for the next response once
/// one is done.
#[derive(Debug, Clone)]
pub struct ResponseFraming {
    state: State,
    status: u16,
    close: bool,
}

impl Default for ResponseFraming {
    fn default() -> Self {
        ResponseFraming { state: State::Head, status: 0, close: false }
    }
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

impl ResponseFraming {
    /// Consumes what it can of `bytes`, stopping at the end of a response.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, FramingError> {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            let done = |consumed, done| Ok(Progress { consumed, done });
            match self.state {
                State::Head => match self.head(rest)? {
                    Some((n, finished)) => {
                        at += n;
                        if finished {
                            return done(at, Some(self.finish()));
                        }
                    }
                    None => return done(at, None),
                },
                State::Length(remaining) => {
                    let n = remaining.min(rest.len() as u64);
                    at += n as usize;
                    if n == remaining {
                        return done(at, Some(self.finish()));
                    }
                    self.state = State::Length(remaining - n);
                    return done(at, None);
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
                    None => return done(at, None),
                },
                State::ChunkData(remaining) => {
                    let n = remaining.min(rest.len() as u64);
                    at += n as usize;
                    if n < remaining {
                        self.state = State::ChunkData(remaining - n);
                        return done(at, None);
                    }
                    self.state = State::ChunkEnd;
                }
                State::ChunkEnd => match rest.len() {
                    0 | 1 => return done(at, None),
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
                            return done(at, Some(self.finish()));
                        }
                    }
                    None => return done(at, None),
                },
                State::UntilClose => return done(bytes.len(), None),
            }
        }
    }

    /// The connection reached its end: completes a response delimited by
    /// closing, else `None` (a response cut short, or none begun).
    pub fn eof(&mut self) -> Option<Done> {
        (self.state == State::UntilClose).then(|| self.finish())
    }

    /// Parses a head at the start of `bytes`: `None` if it is incomplete,
    /// else its length and whether the response ends with it.
    fn head(&mut self, bytes: &[u8]) -> Result<Option<(usize, bool)>, FramingError> {
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
            return Ok(Some((n, false)));
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
        self.state = match (status, chunked, length) {
            (204 | 304, _, _) => return Ok(Some((n, true))),
            (_, true, _) => State::ChunkSize,
            (_, false, Some(0)) => return Ok(Some((n, true))),
            (_, false, Some(length)) => State::Length(length),
            (_, false, None) => {
                self.close = true;
                State::UntilClose
            }
        };
        Ok(Some((n, false)))
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
