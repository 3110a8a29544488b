//! Reading one HTTP/1.1 message (a request or an answer) off a socket.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

pub(super) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Kind {
    Request,
    /// A response to a request of this method.
    Response {
        head: bool,
    },
}

pub(super) struct Message {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunked: bool,
}

/// Reads one message; `None` at a clean end of stream. Panics on anything
/// malformed: hiku must send well-formed HTTP.
pub(super) fn read_message(r: &mut BufReader<TcpStream>, kind: Kind) -> Option<Message> {
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
