//! Parsing request and response heads with httparse into borrowed views,
//! and their framing (RFC 9112 §6).

use super::chunked::{ChunkError, ChunkedDecoder};
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
pub(super) fn is_hop_by_hop(name: &str, headers: Headers) -> bool {
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

/// The end of a head in `data`, searching from about `from`: the index
/// after the empty line. Bare-LF line ends count, as httparse accepts them.
pub fn head_end(data: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(p) = data[i..].iter().position(|&b| b == b'\n') {
        let nl = i + p;
        match data.get(nl + 1..) {
            Some([b'\n', ..]) => return Some(nl + 2),
            Some([b'\r', b'\n', ..]) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// The last address of the last `X-Forwarded-For` field: the one the
/// nearest proxy added. `None` if there is none, or it is no IP address.
pub fn last_forwarded_for(headers: Headers) -> Option<std::net::IpAddr> {
    let field = headers.iter().rev().find(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))?;
    let last = std::str::from_utf8(field.value).ok()?.rsplit(',').next()?.trim();
    last.parse().ok()
}
