//! Just enough HTTP/1.1 for both ends of the harness, over a tokio stream:
//! heads parsed by httparse, bodies framed by [`framing`] (`Content-Length`,
//! chunked, or (responses only) the peer closing), and keep-alive as RFC
//! 9112 §9.3 says (1.1 persists unless `Connection: close`; 1.0 only with
//! `keep-alive`).

pub mod framing;

use std::io::{self, ErrorKind};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use self::framing::{Body, BodyFraming, ResponseFraming, Sink};

/// Largest request head accepted; the harness never sends big ones (a
/// response's: [`framing::MAX_HEAD`]).
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a request head.
const MAX_HEADERS: usize = 64;
/// Largest body accepted: calls carry a small JSON payload.
const MAX_BODY: usize = 1024 * 1024;

/// An incoming request with its body read.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub keep_alive: bool,
}

impl Response {
    /// The first field called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }
}

fn find<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, message.into())
}

fn closed_mid_message() -> io::Error {
    io::Error::new(ErrorKind::UnexpectedEof, "connection closed mid-message")
}

/// How a request's body ends (RFC 9112 §6.3): chunked, by its length, or
/// with the head; never by closing.
fn request_body(headers: &[(String, String)]) -> io::Result<Body> {
    if let Some(te) = find(headers, "transfer-encoding") {
        return match te.trim().eq_ignore_ascii_case("chunked") {
            true => Ok(Body::Chunked),
            false => Err(invalid(format!("unsupported transfer-encoding {te:?}"))),
        };
    }
    match find(headers, "content-length") {
        Some(n) => n.trim().parse().map(Body::Length).map_err(|_| invalid(format!("bad content-length {n:?}"))),
        None => Ok(Body::Length(0)),
    }
}

fn keep_alive(minor_version: u8, headers: &[(String, String)]) -> bool {
    let connection = find(headers, "connection").unwrap_or("");
    let has = |token: &str| connection.split(',').any(|t| t.trim().eq_ignore_ascii_case(token));
    if minor_version == 0 {
        has("keep-alive")
    } else {
        !has("close")
    }
}

fn owned(headers: &[httparse::Header]) -> Vec<(String, String)> {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    headers.iter().map(|h| (h.name.to_string(), text(h.value))).collect()
}

/// What [`Conn::read_response`] keeps of a response as it is framed.
#[derive(Default)]
struct Kept {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Sink for Kept {
    fn head(&mut self, response: &httparse::Response) {
        self.headers = owned(response.headers);
    }

    fn body(&mut self, bytes: &[u8]) {
        self.body.extend_from_slice(bytes);
    }
}

/// One connection and the bytes read from it but not yet consumed.
pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Conn<S> {
        Conn { stream, buf: Vec::with_capacity(4096) }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads more or fails: the message is not complete.
    async fn fill_or_eof(&mut self) -> io::Result<()> {
        match self.fill().await? {
            0 => Err(closed_mid_message()),
            _ => Ok(()),
        }
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next request, or `None` if the peer closed between requests.
    pub async fn read_request(&mut self) -> io::Result<Option<Request>> {
        let (head, method, path, minor, headers) = loop {
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut fields);
            match req.parse(&self.buf).map_err(|e| invalid(format!("bad request head: {e}")))? {
                httparse::Status::Complete(n) => {
                    let method = req.method.unwrap_or("").to_string();
                    let path = req.path.unwrap_or("").to_string();
                    break (n, method, path, req.version.unwrap_or(1), owned(req.headers));
                }
                httparse::Status::Partial if self.buf.len() > MAX_HEAD => {
                    return Err(invalid("request head too large"))
                }
                httparse::Status::Partial => {
                    if self.fill().await? == 0 {
                        return match self.buf.is_empty() {
                            true => Ok(None),
                            false => Err(io::Error::new(ErrorKind::UnexpectedEof, "closed mid-head")),
                        };
                    }
                }
            }
        };
        self.buf.drain(..head);
        if find(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        }
        let body = self.read_body(request_body(&headers)?).await?;
        let keep_alive = keep_alive(minor, &headers);
        Ok(Some(Request { method, path, headers, body, keep_alive }))
    }

    /// The response to a request just written (not a HEAD request).
    pub async fn read_response(&mut self) -> io::Result<Response> {
        let mut framing = ResponseFraming::default();
        let mut kept = Kept::default();
        let done = loop {
            let progress = framing.feed_into(&self.buf, &mut kept)?;
            self.buf.drain(..progress.consumed);
            if kept.body.len() > MAX_BODY {
                return Err(invalid("body too large"));
            }
            if let Some(done) = progress.done {
                break done;
            }
            if self.fill().await? == 0 {
                // Only a body delimited by closing ends here.
                break framing.eof().ok_or_else(closed_mid_message)?;
            }
        };
        Ok(Response { status: done.status, headers: kept.headers, body: kept.body, keep_alive: !done.close })
    }

    /// A request's body, read through to its end.
    async fn read_body(&mut self, body: Body) -> io::Result<Vec<u8>> {
        if let Body::Length(n) = body {
            if n > MAX_BODY as u64 {
                return Err(invalid(format!("body of {n} bytes is too large")));
            }
        }
        let mut framing = BodyFraming::new(body);
        let mut kept = Vec::new();
        loop {
            let (used, ended) = framing.feed(&self.buf, &mut kept)?;
            self.buf.drain(..used);
            if kept.len() > MAX_BODY {
                return Err(invalid("body too large"));
            }
            if ended {
                return Ok(kept);
            }
            self.fill_or_eof().await?;
        }
    }
}

/// A complete response with a `Content-Length` body.
pub fn response(status: u16, reason: &str, headers: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\n", body.len()).into_bytes();
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A POST with a JSON body.
pub fn post_json(host: &str, path: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// `host:port` of an `http://host:port[/...]` URL.
pub fn authority(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next().unwrap_or("");
    (!authority.is_empty()).then_some(authority)
}

/// A bodiless GET.
pub fn get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

#[cfg(test)]
mod tests;
