use proptest::prelude::*;

use super::*;
use crate::error::Error;

/// (target, framing, keep-alive, expect 100-continue, head length)
type Parsed = (String, Framing, bool, bool, usize);

fn req(raw: &[u8]) -> Result<Option<Parsed>, Error> {
    let mut h = empty_headers();
    Ok(parse_request(raw, &mut h)?
        .map(|r| (r.target.to_string(), r.framing, r.keep_alive, r.expect_continue, r.head_len)))
}

fn status(raw: &[u8]) -> u16 {
    req(raw).unwrap_err().status()
}

#[test]
fn parses_requests_and_their_framing() {
    let (target, framing, keep, expect, len) =
        req(b"POST /run/f?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello").unwrap().unwrap();
    assert_eq!((target.as_str(), framing, keep, expect, len), ("/run/f?x=1", Framing::Length(5), true, false, 56));
    let r = req(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!((r.1, r.3), (Framing::Chunked, true));
    let r = req(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\nConnection: close\r\n\r\n").unwrap().unwrap();
    assert_eq!((r.1, r.2), (Framing::Length(3), false));
    let r = req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
    assert_eq!((r.1, r.2), (Framing::None, false));
    let r = req(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().unwrap();
    assert!(r.2);
    assert!(req(b"GET / HTTP/1.1\r\nHost: h\r\n").unwrap().is_none());
    // RFC 9110 §10.1.1: Expect from an HTTP/1.0 client is ignored.
    let r = req(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").unwrap().unwrap();
    assert!(!r.3);
}

#[test]
fn absolute_form_targets_are_routed_and_forwarded_in_origin_form() {
    let raw = b"POST http://hiku:9020/run/f?x=1 HTTP/1.1\r\nHost: hiku:9020\r\n\r\n";
    let mut h = empty_headers();
    let r = parse_request(raw, &mut h).unwrap().unwrap();
    assert_eq!((r.origin_target(), r.path(), r.query()), ("/run/f?x=1", "/run/f", "x=1"));
    let mut out = Vec::new();
    assert!(!write_request_head(&mut out, &r, "w:1", b"1.2.3.4"));
    assert!(out.starts_with(b"POST /run/f?x=1 HTTP/1.1\r\n"), "{}", String::from_utf8_lossy(&out));
    for (target, origin) in
        [("HTTP://h", "/"), ("http://h?q", "?q"), ("/a?b", "/a?b"), ("*", "*"), ("https://h/€", "/€")]
    {
        let raw = format!("OPTIONS {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut h = empty_headers();
        assert_eq!(parse_request(raw.as_bytes(), &mut h).unwrap().unwrap().origin_target(), origin, "{target}");
    }
}

#[test]
fn rejects_ambiguous_or_malformed_requests() {
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    assert_eq!(status(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(status(b"GARBAGE\r\n\r\n"), 400);
    let mut big = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
    big.resize(MAX_HEAD + 1, b'a');
    assert_eq!(status(&big), 431);
    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(status(&many), 431);
}

#[test]
fn rewrites_the_request_for_the_worker() {
    let raw = b"POST /run/f HTTP/1.1\r\nHost: sched\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
        Keep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\nUpgrade: h2c\r\nX-Ok: yes\r\nExpect: 100-continue\r\n\
        Transfer-Encoding: chunked\r\n\r\n";
    let mut h = empty_headers();
    let r = parse_request(raw, &mut h).unwrap().unwrap();
    let mut out = Vec::new();
    assert!(!write_request_head(&mut out, &r, "w:1", b"127.0.0.1"));
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /run/f HTTP/1.1\r\nHost: sched\r\nX-Ok: yes\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let raw = b"GET /run/f HTTP/1.0\r\n\r\n";
    let mut h = empty_headers();
    let r = parse_request(raw, &mut h).unwrap().unwrap();
    let mut out = Vec::new();
    assert!(write_request_head(&mut out, &r, "w:1", b"::1"));
    assert_eq!(
        String::from_utf8(out.clone()).unwrap(),
        "GET /run/f HTTP/1.1\r\nHost: w:1\r\nX-Forwarded-For: ::1\r\n\r\n"
    );
    // Sent to another worker instead, the added Host follows.
    retarget_host(&mut out, "w:1", "other:2");
    assert_eq!(String::from_utf8(out).unwrap(), "GET /run/f HTTP/1.1\r\nHost: other:2\r\nX-Forwarded-For: ::1\r\n\r\n");
}

fn res(raw: &[u8], head: bool) -> (u16, Framing, bool) {
    let mut h = empty_headers();
    let r = parse_response(raw, &mut h, head).unwrap().unwrap();
    (r.code, r.framing, r.keep_alive)
}

#[test]
fn frames_responses() {
    assert_eq!(res(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false), (200, Framing::Length(2), true));
    assert_eq!(res(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true), (200, Framing::None, true));
    assert_eq!(res(b"HTTP/1.1 204 No Content\r\n\r\n", false), (204, Framing::None, true));
    assert_eq!(res(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false), (304, Framing::None, true));
    assert_eq!(res(b"HTTP/1.1 100 Continue\r\n\r\n", false), (100, Framing::None, true));
    assert_eq!(res(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false), (200, Framing::Chunked, true));
    assert_eq!(res(b"HTTP/1.1 200 OK\r\n\r\n", false), (200, Framing::Close, false));
    assert!(!res(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", false).2);
    assert!(!res(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).2);
    let mut h = empty_headers();
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", &mut h, false).is_err());
    let mut h = empty_headers();
    assert!(parse_response(b"HTTP/1.1 200 OK\r\n", &mut h, false).unwrap().is_none());
    // Codings hiku can't pass on are the worker's error, not a body to read
    // until a close that a keep-alive worker never sends.
    for te in ["gzip, chunked", "chunked, chunked", "gzip"] {
        let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
        let mut h = empty_headers();
        assert!(parse_response(raw.as_bytes(), &mut h, false).is_err(), "{te}");
    }
}

#[test]
fn rewrites_the_response_for_the_client() {
    let raw = b"HTTP/1.1 201 Created\r\nX-Worker: 1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut h = empty_headers();
    let r = parse_response(raw, &mut h, false).unwrap().unwrap();
    let mut out = Vec::new();
    write_response_head(&mut out, &r, Framing::Chunked, true, Version::Http11);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 201 Created\r\nX-Worker: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut out = Vec::new();
    write_response_head(&mut out, &r, Framing::Close, false, Version::Http10);
    assert_eq!(String::from_utf8(out).unwrap(), "HTTP/1.1 201 Created\r\nX-Worker: 1\r\nConnection: close\r\n\r\n");
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
    let mut h = empty_headers();
    let r = parse_response(raw, &mut h, true).unwrap().unwrap();
    let mut out = Vec::new();
    write_response_head(&mut out, &r, Framing::None, true, Version::Http10);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n"
    );
}

#[test]
fn writes_local_responses() {
    let mut out = Vec::new();
    write_local_response(&mut out, 404, "text/plain", b"nope\n", false, Version::Http11);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 404 Not Found\r\nServer: hiku\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n"
    );
}

proptest! {
    /// The parsers never panic, whatever the bytes.
    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), head in any::<bool>()) {
        let mut h = empty_headers();
        let _ = parse_request(&bytes, &mut h);
        let mut h = empty_headers();
        let _ = parse_response(&bytes, &mut h, head);
        let mut d = ChunkedDecoder::default();
        let _ = d.feed(&bytes, |_| {});
    }

    /// Mutations of a valid request never panic either.
    #[test]
    fn mutated_requests_never_panic(pos in 0usize..80, byte in any::<u8>()) {
        let mut raw = b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let i = pos % raw.len();
        raw[i] = byte;
        let mut h = empty_headers();
        let _ = parse_request(&raw, &mut h);
    }
}

proptest! {
    /// Any data, cut into any chunks (with extensions and a trailer) and fed
    /// in any pieces, decodes to itself; bytes after the body are left.
    #[test]
    fn chunked_bodies_round_trip(
        data in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(1usize..300, 1..20),
        piece in 1usize..64,
        extension in any::<bool>(),
    ) {
        let mut encoded = Vec::new();
        let mut rest = &data[..];
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap()).min(rest.len());
            encoded.extend_from_slice(format!("{n:x}").as_bytes());
            if extension {
                encoded.extend_from_slice(b";name=value");
            }
            encoded.extend_from_slice(b"\r\n");
            encoded.extend_from_slice(&rest[..n]);
            encoded.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        encoded.extend_from_slice(b"0\r\nX-Trailer: 1\r\n\r\n");
        let body_len = encoded.len();
        encoded.extend_from_slice(b"NEXT");
        let mut decoder = ChunkedDecoder::default();
        let mut decoded = Vec::new();
        let mut used = 0;
        for p in encoded.chunks(piece) {
            if decoder.is_done() {
                break;
            }
            used += decoder.feed(p, |d| decoded.extend_from_slice(d)).unwrap();
        }
        prop_assert!(decoder.is_done());
        prop_assert_eq!(used, body_len);
        prop_assert_eq!(decoded, data);
    }
}
