//! HTTP/1.1 as a proxy needs it (RFC 9110, RFC 9112): request and response
//! heads parsed with httparse into borrowed views, message framing, and the
//! rewriting of heads between client and worker. Never panics on input.

mod buf;
mod chunked;

pub use buf::{recycle, spare, ReadBuf};
pub use chunked::{ChunkError, ChunkedDecoder};

use crate::error::Error;

/// Largest request or response head (request line, fields, blank line).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one head.
pub const MAX_HEADERS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes the connection (responses only).
    Close,
}

pub type Headers<'h, 'b> = &'h [httparse::Header<'b>];

pub fn empty_headers<'b>() -> [httparse::Header<'b>; MAX_HEADERS] {
    [httparse::EMPTY_HEADER; MAX_HEADERS]
}

/// A parsed request head, borrowing the read buffer.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    pub method: &'b str,
    pub target: &'b str,
    pub version: Version,
    pub headers: Headers<'h, 'b>,
    /// Bytes of the head, blank line included.
    pub head_len: usize,
    pub framing: Framing,
    /// Whether the client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    pub expect_continue: bool,
}

impl<'b> Request<'_, 'b> {
    /// The target in origin form (path and query): an absolute-form target
    /// (RFC 9112 §3.2.2, `http://host/run/f`) loses its scheme and authority.
    pub fn origin_target(&self) -> &'b str {
        let t = self.target;
        match ["http://", "https://"].into_iter().find_map(|scheme| strip_prefix_ignore_case(t, scheme)) {
            Some(authority_on) => authority_on.find(['/', '?']).map_or("/", |i| &authority_on[i..]),
            None => t,
        }
    }

    /// The path without the query.
    pub fn path(&self) -> &'b str {
        self.origin_target().split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &'b str {
        self.origin_target().split_once('?').map_or("", |(_, q)| q)
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }

    /// Whether sending the request twice means the same as sending it once
    /// (RFC 9110 §9.2.2), so it may be sent again on a fresh connection.
    pub fn is_idempotent(&self) -> bool {
        matches!(self.method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
    }
}

/// `s` without `prefix` (ASCII, any case), if it starts with it. Compares
/// bytes: `s` comes from the network and may be any UTF-8.
pub fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| &s[prefix.len()..])
}

fn head_too_large(fields: usize) -> Error {
    Error::HeadTooLarge { bytes: MAX_HEAD, fields }
}

/// Parses a request head, with at most as many fields as `headers` holds;
/// `Ok(None)` means more bytes are needed.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<Request<'h, 'b>>, Error> {
    let headers_len = headers.len();
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(head_too_large(headers_len)),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(head_too_large(headers_len)),
        Err(e) => return Err(Error::BadRequest(format!("malformed request: {e}"))),
    };
    if head_len > MAX_HEAD {
        return Err(head_too_large(headers_len));
    }
    let (Some(method), Some(target), Some(v)) = (req.method, req.path, req.version) else {
        return Err(Error::BadRequest("malformed request line".into()));
    };
    let version = if v == 0 { Version::Http10 } else { Version::Http11 };
    let headers: Headers<'h, 'b> = req.headers;
    if version == Version::Http11 && !headers.iter().any(|h| h.name.eq_ignore_ascii_case("host")) {
        // RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
        return Err(Error::BadRequest("HTTP/1.1 request without Host".into()));
    }
    let framing = request_framing(version, headers)?;
    Ok(Some(Request {
        method,
        target,
        version,
        headers,
        head_len,
        framing,
        keep_alive: keep_alive(version, headers),
        // RFC 9110 §10.1.1: an HTTP/1.0 client's Expect is ignored.
        expect_continue: version == Version::Http11
            && headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("expect") && h.value.eq_ignore_ascii_case(b"100-continue")),
    }))
}

/// RFC 9112 §6.1 and §6.3, strictly: ambiguous framing is rejected rather
/// than guessed, since a proxy and its worker must agree on where a request ends.
fn request_framing(version: Version, headers: Headers) -> Result<Framing, Error> {
    let length = content_length(headers).map_err(Error::BadRequest)?;
    match transfer_coding(headers) {
        Coding::Absent => Ok(length.map_or(Framing::None, Framing::Length)),
        _ if version == Version::Http10 => Err(Error::BadRequest("Transfer-Encoding in an HTTP/1.0 request".into())),
        _ if length.is_some() => Err(Error::BadRequest("both Content-Length and Transfer-Encoding".into())),
        Coding::Chunked => Ok(Framing::Chunked),
        Coding::ChunkedAfterOthers => Err(Error::NotImplemented("transfer codings other than chunked".into())),
        Coding::NotChunkedLast => Err(Error::BadRequest("Transfer-Encoding does not end in chunked".into())),
    }
}

enum Coding {
    Absent,
    Chunked,
    ChunkedAfterOthers,
    NotChunkedLast,
}

fn transfer_coding(headers: Headers) -> Coding {
    let mut last: Option<&[u8]> = None;
    let mut count = 0;
    for token in list_values(headers, "transfer-encoding") {
        last = Some(token);
        count += 1;
    }
    match last {
        None => Coding::Absent,
        Some(t) if t.eq_ignore_ascii_case(b"chunked") && count == 1 => Coding::Chunked,
        Some(t) if t.eq_ignore_ascii_case(b"chunked") => Coding::ChunkedAfterOthers,
        Some(_) => Coding::NotChunkedLast,
    }
}

/// The Content-Length, if any; repeated equal values are one value
/// (RFC 9110 §8.6), differing or malformed ones an error.
fn content_length(headers: Headers) -> Result<Option<u64>, String> {
    let mut length = None;
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case("content-length")) {
        for v in h.value.split(|&b| b == b',') {
            let v = v.trim_ascii();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(format!("invalid Content-Length {:?}", String::from_utf8_lossy(h.value)));
            }
            let n: u64 = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok()).ok_or("invalid Content-Length")?;
            if length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values".into());
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// The comma-separated elements of every field named `name`, trimmed.
fn list_values<'a>(headers: Headers<'a, 'a>, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

fn connection_has(headers: Headers, token: &str) -> bool {
    list_values(headers, "connection").any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless told "close"; HTTP/1.0 only with "keep-alive".
fn keep_alive(version: Version, headers: Headers) -> bool {
    match version {
        Version::Http11 => !connection_has(headers, "close"),
        Version::Http10 => connection_has(headers, "keep-alive") && !connection_has(headers, "close"),
    }
}

/// Fields a proxy must not forward (RFC 9110 §7.6.1), plus the ones hiku
/// rewrites itself: framing, `Expect` and `X-Forwarded-For`.
fn is_hop_by_hop(name: &str, headers: Headers) -> bool {
    const HOP: [&str; 12] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "content-length",
        "expect",
        "x-forwarded-for",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) || connection_has(headers, name)
}

/// If all of a request body framed as `framing` is in `data`: the bytes it
/// takes there, and the bytes of data it holds (less, if chunked).
pub fn buffered_body_len(data: &[u8], framing: Framing) -> Result<Option<(usize, u64)>, ChunkError> {
    Ok(match framing {
        Framing::None => Some((0, 0)),
        Framing::Length(n) => usize::try_from(n).ok().filter(|&n| n <= data.len()).map(|len| (len, n)),
        Framing::Chunked => {
            let mut d = ChunkedDecoder::default();
            let used = d.feed(data, |_| {})?;
            d.is_done().then_some((used, d.data_len()))
        }
        Framing::Close => None,
    })
}

/// A parsed response head, borrowing the read buffer.
#[derive(Debug)]
pub struct Response<'h, 'b> {
    pub code: u16,
    pub reason: &'b str,
    pub headers: Headers<'h, 'b>,
    pub head_len: usize,
    pub framing: Framing,
    /// Whether the worker lets the connection be reused after this response.
    pub keep_alive: bool,
}

/// Parses a response head to a request that was (`head_request`) a HEAD;
/// `Ok(None)` means more bytes are needed. Errors are the worker's.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    head_request: bool,
) -> Result<Option<Response<'h, 'b>>, String> {
    let mut res = httparse::Response::new(headers);
    let head_len = match res.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(_) | Err(httparse::Error::TooManyHeaders) => return Err("response head too large".into()),
        Err(e) => return Err(format!("malformed response: {e}")),
    };
    let (Some(code), Some(v)) = (res.code, res.version) else {
        return Err("malformed status line".into());
    };
    let version = if v == 0 { Version::Http10 } else { Version::Http11 };
    let headers: Headers<'h, 'b> = res.headers;
    let length = content_length(headers)?;
    // RFC 9112 §6.3, in order.
    let framing = if head_request || (100..200).contains(&code) || code == 204 || code == 304 {
        Framing::None
    } else {
        match transfer_coding(headers) {
            Coding::Chunked => Framing::Chunked,
            Coding::Absent => length.map_or(Framing::Close, Framing::Length),
            // hiku relays bodies as they are and re-states their framing;
            // a coding it would drop can't be passed on.
            Coding::ChunkedAfterOthers | Coding::NotChunkedLast => {
                return Err("a transfer coding other than chunked".into())
            }
        }
    };
    Ok(Some(Response {
        code,
        reason: res.reason.unwrap_or(""),
        headers,
        head_len,
        framing,
        keep_alive: keep_alive(version, headers) && framing != Framing::Close,
    }))
}

fn put_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn put_framing(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(n) => {
            let mut digits = itoa_buf();
            put_header(out, "Content-Length", fmt_u64(&mut digits, n));
        }
        Framing::Chunked => put_header(out, "Transfer-Encoding", b"chunked"),
        Framing::None | Framing::Close => {}
    }
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Writes the head hiku sends a worker for `req`: same method, target and
/// end-to-end fields; `X-Forwarded-For` extended with `client_ip`; framing
/// re-stated; HTTP/1.1 with keep-alive. Returns whether it added a `Host`
/// (the worker's authority, for a client that sent none).
pub fn write_request_head(out: &mut Vec<u8>, req: &Request, worker_authority: &str, client_ip: &[u8]) -> bool {
    out.extend_from_slice(req.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.origin_target().as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_host = false;
    for h in req.headers {
        if !is_hop_by_hop(h.name, req.headers) {
            has_host |= h.name.eq_ignore_ascii_case("host");
            put_header(out, h.name, h.value);
        }
    }
    if !has_host {
        put_header(out, "Host", worker_authority.as_bytes());
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for v in req.headers.iter().filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for")) {
        out.extend_from_slice(v.value.trim_ascii());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(client_ip);
    out.extend_from_slice(b"\r\n");
    put_framing(out, req.framing);
    out.extend_from_slice(b"\r\n");
    !has_host
}

/// In a head [`write_request_head`] wrote adding a `Host` of `old`, makes
/// it `new`: the request goes to another worker.
pub fn retarget_host(out: &mut Vec<u8>, old: &str, new: &str) {
    let line = |authority: &str| [b"\r\nHost: ", authority.as_bytes(), b"\r\n"].concat();
    let old = line(old);
    if let Some(at) = out.windows(old.len()).position(|w| w == old) {
        out.splice(at..at + old.len(), line(new));
    }
}

/// Writes the head hiku sends the client for a worker's response, with
/// `framing` as hiku will send the body and the connection kept or closed.
pub fn write_response_head(out: &mut Vec<u8>, res: &Response, framing: Framing, keep_alive: bool, client: Version) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = itoa_buf();
    out.extend_from_slice(fmt_u64(&mut digits, res.code.into()));
    out.push(b' ');
    out.extend_from_slice(res.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in res.headers {
        // A HEAD/304 answer's Content-Length describes the body not sent: keep it.
        let keep_length = res.framing == Framing::None && h.name.eq_ignore_ascii_case("content-length");
        if keep_length || !is_hop_by_hop(h.name, res.headers) {
            put_header(out, h.name, h.value);
        }
    }
    put_framing(out, framing);
    put_connection(out, keep_alive, client);
    out.extend_from_slice(b"\r\n");
}

fn put_connection(out: &mut Vec<u8>, keep_alive: bool, client: Version) {
    match (keep_alive, client) {
        (false, _) => put_header(out, "Connection", b"close"),
        (true, Version::Http10) => put_header(out, "Connection", b"keep-alive"),
        (true, Version::Http11) => {}
    }
}

/// A complete response generated by hiku itself (errors, admin, status).
pub fn write_local_response(
    out: &mut Vec<u8>,
    code: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    client: Version,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut digits = itoa_buf();
    out.extend_from_slice(fmt_u64(&mut digits, code.into()));
    out.push(b' ');
    out.extend_from_slice(reason(code).as_bytes());
    out.extend_from_slice(b"\r\n");
    put_header(out, "Server", b"hiku");
    if code == 401 {
        put_header(out, "WWW-Authenticate", b"Bearer");
    }
    if code == 503 {
        // No worker, or none with room: worth trying again in a moment.
        put_header(out, "Retry-After", b"1");
    }
    if !body.is_empty() || code != 204 {
        put_header(out, "Content-Type", content_type.as_bytes());
        put_framing(out, Framing::Length(body.len() as u64));
    }
    put_connection(out, keep_alive, client);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests;
