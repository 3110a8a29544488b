//! Responses cut at every possible point must frame the same.

use super::*;

/// Plays the generator's part: offers the unconsumed bytes plus each new
/// piece, keeps what was not consumed. Returns the responses completed
/// (including by `eof`) and the bytes left over.
fn frame_in_pieces(pieces: &[&[u8]], eof: bool) -> Result<(Vec<Done>, Vec<u8>), FramingError> {
    let mut framing = ResponseFraming::default();
    let (mut buffer, mut dones) = (Vec::new(), Vec::new());
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            let progress = framing.feed(&buffer)?;
            buffer.drain(..progress.consumed);
            match progress.done {
                Some(done) => dones.push(done),
                None => break,
            }
        }
    }
    if eof {
        dones.extend(framing.eof());
    }
    Ok((dones, buffer))
}

/// Every way of cutting `bytes` in two, and byte by byte.
fn every_split(bytes: &[u8], eof: bool, expected: &[Done]) {
    for cut in 0..=bytes.len() {
        let (dones, left) = frame_in_pieces(&[&bytes[..cut], &bytes[cut..]], eof).unwrap();
        assert_eq!((dones.as_slice(), left.len()), (expected, 0), "cut at {cut}");
    }
    let single: Vec<&[u8]> = bytes.chunks(1).collect();
    let (dones, left) = frame_in_pieces(&single, eof).unwrap();
    assert_eq!((dones.as_slice(), left.len()), (expected, 0), "byte by byte");
}

const OK: Done = Done { status: 200, close: false };

#[test]
fn content_length_responses_back_to_back() {
    let two = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello worldHTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n";
    every_split(two, false, &[OK, Done { status: 503, close: false }]);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
    every_split(chunked, false, &[OK]);
}

#[test]
fn interim_answers_and_bodiless_statuses() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n";
    every_split(bytes, false, &[Done { status: 204, close: false }, Done { status: 304, close: false }]);
}

#[test]
fn closing_servers() {
    let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
    every_split(close, false, &[Done { status: 200, close: true }]);
    let old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    every_split(old, false, &[Done { status: 200, close: true }]);
    let old_kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi";
    every_split(old_kept, false, &[OK]);
    // No length: the body ends when the server closes.
    let until_close = b"HTTP/1.1 200 OK\r\n\r\nsome body";
    every_split(until_close, true, &[Done { status: 200, close: true }]);
}

#[test]
fn a_response_cut_short_is_not_complete_at_eof() {
    let (dones, _) = frame_in_pieces(&[b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello"], true).unwrap();
    assert_eq!(dones, []);
    let (dones, left) = frame_in_pieces(&[b"HTTP/1.1 200 OK\r\nContent-Le"], true).unwrap();
    assert_eq!((dones.len(), left.len()), (0, 27));
}

#[test]
fn bodies_are_consumed_not_buffered() {
    let mut framing = ResponseFraming::default();
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
    assert_eq!(framing.feed(head).unwrap(), Progress { consumed: head.len(), done: None });
    let block = [b'x'; 4096];
    for _ in 0..24 {
        assert_eq!(framing.feed(&block).unwrap(), Progress { consumed: 4096, done: None });
    }
    // 100000 - 24 * 4096 = 1696 bytes left, then the next response's first bytes.
    assert_eq!(framing.feed(&block).unwrap(), Progress { consumed: 1696, done: Some(OK) });
}

#[test]
fn malformed_responses_are_errors() {
    for bad in [
        &b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY",
        b"SMTP ready\r\n\r\n",
    ] {
        assert!(frame_in_pieces(&[bad], false).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
    assert_eq!(frame_in_pieces(&[&huge], false).unwrap_err(), FramingError("response head too large".into()));
}
