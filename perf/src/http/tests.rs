//! Framing on an in-memory stream: bytes in, messages out.

use super::*;
use tokio::io::AsyncWriteExt;

/// A connection whose peer has written `bytes` and then closed.
async fn conn_with(bytes: &[u8]) -> Conn<tokio::io::DuplexStream> {
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    theirs.write_all(bytes).await.unwrap();
    drop(theirs);
    Conn::new(ours)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn reads_pipelined_requests_with_both_body_framings() {
    block_on(async {
        let mut conn = conn_with(
            b"POST /run/dd-1 HTTP/1.1\r\nHost: w\r\nContent-Length: 5\r\n\r\nhello\
              POST /run/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n",
        )
        .await;
        let first = conn.read_request().await.unwrap().unwrap();
        assert_eq!((first.method.as_str(), first.path.as_str()), ("POST", "/run/dd-1"));
        assert_eq!((first.body.as_slice(), first.keep_alive), (&b"hello"[..], true));
        let second = conn.read_request().await.unwrap().unwrap();
        assert_eq!((second.body.as_slice(), second.keep_alive), (&b"abcde"[..], false));
        assert!(conn.read_request().await.unwrap().is_none());
    });
}

#[test]
fn http_1_0_persists_only_when_asked() {
    block_on(async {
        let mut conn = conn_with(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").await;
        assert!(!conn.read_request().await.unwrap().unwrap().keep_alive);
        assert!(conn.read_request().await.unwrap().unwrap().keep_alive);
    });
}

#[test]
fn a_request_cut_short_is_an_error() {
    block_on(async {
        let mut conn = conn_with(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc").await;
        assert_eq!(conn.read_request().await.unwrap_err().kind(), ErrorKind::UnexpectedEof);
    });
}

#[test]
fn reads_responses_by_length_chunks_and_close() {
    block_on(async {
        let mut conn = conn_with(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Cold-Start: true\r\nContent-Length: 2\r\n\r\nok\
              HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfail\r\n0\r\n\r\n\
              HTTP/1.1 200 OK\r\n\r\nuntil close",
        )
        .await;
        let first = conn.read_response().await.unwrap();
        assert_eq!(
            (first.status, first.header("x-cold-start"), first.body.as_slice()),
            (200, Some("true"), &b"ok"[..])
        );
        let second = conn.read_response().await.unwrap();
        assert_eq!((second.status, second.body.as_slice(), second.keep_alive), (502, &b"fail"[..], true));
        let third = conn.read_response().await.unwrap();
        assert_eq!((third.body.as_slice(), third.keep_alive), (&b"until close"[..], false));
    });
}

#[test]
fn written_messages_parse_back() {
    block_on(async {
        let mut bytes = post_json("h:1", "/run/f", b"{}", true);
        bytes.extend(response(200, "OK", &[("X-Worker", "http://w")], b"{}", false));
        let mut conn = conn_with(&bytes).await;
        let req = conn.read_request().await.unwrap().unwrap();
        assert_eq!((req.path.as_str(), req.body.as_slice(), req.keep_alive), ("/run/f", &b"{}"[..], true));
        let res = conn.read_response().await.unwrap();
        assert_eq!((res.header("X-Worker"), res.keep_alive), (Some("http://w"), false));
    });
}

/// Reads with `read` from a connection whose peer writes `bytes` through a
/// pipe of `capacity` bytes (so each read gets at most that many), then
/// closes.
fn read_piecewise<T, F: std::future::Future<Output = T>>(
    bytes: Vec<u8>,
    capacity: usize,
    read: impl FnOnce(Conn<tokio::io::DuplexStream>) -> F,
) -> T {
    block_on(async {
        let (ours, mut theirs) = tokio::io::duplex(capacity);
        let write = async move {
            // The reader may stop early (at an error) and drop its end.
            let _ = theirs.write_all(&bytes).await;
        };
        tokio::join!(write, read(Conn::new(ours))).1
    })
}

#[test]
fn messages_arriving_a_byte_at_a_time_read_the_same() {
    let bytes = b"POST /run/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
                  HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Worker: w\r\nContent-Length: 2\r\n\r\nok\
                  HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nfail\r\n0\r\n\r\n\
                  HTTP/1.1 200 OK\r\n\r\nuntil close";
    let (request, first, second, third) = read_piecewise(bytes.to_vec(), 1, |mut conn| async move {
        let request = conn.read_request().await.unwrap().unwrap();
        let first = conn.read_response().await.unwrap();
        let second = conn.read_response().await.unwrap();
        (request, first, second, conn.read_response().await.unwrap())
    });
    assert_eq!((request.path.as_str(), request.body.as_slice()), ("/run/x", &b"abcde"[..]));
    assert_eq!((first.status, first.header("x-worker"), first.body.as_slice()), (200, Some("w"), &b"ok"[..]));
    assert_eq!((second.status, second.body.as_slice(), second.keep_alive), (502, &b"fail"[..], true));
    assert_eq!((third.body.as_slice(), third.keep_alive), (&b"until close"[..], false));
}

#[test]
fn a_response_cut_short_or_malformed_is_an_error() {
    block_on(async {
        for cut in [&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..], b"HTTP/1.1 200 OK\r\nContent-", b""] {
            let error = conn_with(cut).await.read_response().await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::UnexpectedEof, "{:?}", String::from_utf8_lossy(cut));
        }
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let error = conn_with(bad).await.read_response().await.unwrap_err();
        assert_eq!((error.kind(), error.to_string()), (ErrorKind::InvalidData, "bad chunk size".to_string()));
    });
}

#[test]
fn bodies_over_a_mebibyte_are_refused() {
    let big = vec![b'x'; MAX_BODY + 1];
    let by_length = [format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).as_bytes(), &big].concat();
    let by_close = [b"HTTP/1.1 200 OK\r\n\r\n".as_slice(), &big].concat();
    for bytes in [by_length, by_close] {
        let error = read_piecewise(bytes, 64 * 1024, |mut conn| async move { conn.read_response().await.unwrap_err() });
        assert_eq!((error.kind(), error.to_string()), (ErrorKind::InvalidData, "body too large".to_string()));
    }
    let request = [format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", big.len()).as_bytes(), &big].concat();
    let error = read_piecewise(request, 64 * 1024, |mut conn| async move { conn.read_request().await.unwrap_err() });
    assert_eq!(error.kind(), ErrorKind::InvalidData);
    let chunked =
        [b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n".as_slice(), &big, b"\r\n0\r\n\r\n"]
            .concat();
    let error = read_piecewise(chunked, 64 * 1024, |mut conn| async move { conn.read_request().await.unwrap_err() });
    assert_eq!((error.kind(), error.to_string()), (ErrorKind::InvalidData, "body too large".to_string()));
}
