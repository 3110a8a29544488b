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
