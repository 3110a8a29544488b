//! Messages cut at every possible point must frame the same, and hand the
//! same heads and bodies to a sink.

use super::*;

/// Keeps what a sink is given: the status of each final head, and the body
/// after it.
#[derive(Debug, Default)]
struct Kept {
    statuses: Vec<u16>,
    bodies: Vec<Vec<u8>>,
}

impl Sink for Kept {
    fn head(&mut self, response: &httparse::Response) {
        self.statuses.push(response.code.unwrap());
        self.bodies.push(Vec::new());
    }

    fn body(&mut self, bytes: &[u8]) {
        self.bodies.last_mut().expect("a head before any body").extend_from_slice(bytes);
    }
}

/// Plays the callers' part: offers the unconsumed bytes plus each new
/// piece, keeps what was not consumed. Returns the responses completed
/// (including by `eof`) and the bytes left over.
fn frame_in_pieces(pieces: &[&[u8]], eof: bool, sink: &mut impl Sink) -> Result<(Vec<Done>, Vec<u8>), FramingError> {
    let mut framing = ResponseFraming::default();
    let (mut buffer, mut dones) = (Vec::new(), Vec::new());
    for piece in pieces {
        buffer.extend_from_slice(piece);
        loop {
            let progress = framing.feed_into(&buffer, sink)?;
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

/// Every way of cutting `bytes` in two, and byte by byte: the responses
/// `expected`, each with its body, and nothing left over; the same
/// responses when the bodies are dropped, as the generator does.
fn every_split(bytes: &[u8], eof: bool, expected: &[(Done, &[u8])]) {
    let dones: Vec<Done> = expected.iter().map(|(done, _)| *done).collect();
    let statuses: Vec<u16> = dones.iter().map(|done| done.status).collect();
    let bodies: Vec<Vec<u8>> = expected.iter().map(|(_, body)| body.to_vec()).collect();
    let mut splits: Vec<(String, Vec<&[u8]>)> =
        (0..=bytes.len()).map(|cut| (format!("cut at {cut}"), vec![&bytes[..cut], &bytes[cut..]])).collect();
    splits.push(("byte by byte".to_string(), bytes.chunks(1).collect()));
    for (how, pieces) in &splits {
        let mut kept = Kept::default();
        let (got, left) = frame_in_pieces(pieces, eof, &mut kept).unwrap();
        assert_eq!((got.as_slice(), left.len()), (dones.as_slice(), 0), "{how}");
        assert_eq!(
            (kept.statuses.as_slice(), kept.bodies.as_slice()),
            (statuses.as_slice(), bodies.as_slice()),
            "{how}"
        );
        assert_eq!(frame_in_pieces(pieces, eof, &mut ()).unwrap(), (got, left), "{how}, bodies dropped");
    }
}

const OK: Done = Done { status: 200, close: false };

#[test]
fn content_length_responses_back_to_back() {
    let two = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello worldHTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n";
    every_split(two, false, &[(OK, b"hello world"), (Done { status: 503, close: false }, b"")]);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;name=v\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
    every_split(chunked, false, &[(OK, b"hello world")]);
}

#[test]
fn interim_answers_and_bodiless_statuses() {
    let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n";
    every_split(bytes, false, &[(Done { status: 204, close: false }, b""), (Done { status: 304, close: false }, b"")]);
}

#[test]
fn closing_servers() {
    let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
    every_split(close, false, &[(Done { status: 200, close: true }, b"hi")]);
    let old = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi";
    every_split(old, false, &[(Done { status: 200, close: true }, b"hi")]);
    let old_kept = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nhi";
    every_split(old_kept, false, &[(OK, b"hi")]);
    // No length: the body ends when the server closes.
    let until_close = b"HTTP/1.1 200 OK\r\n\r\nsome body";
    every_split(until_close, true, &[(Done { status: 200, close: true }, b"some body")]);
}

#[test]
fn a_response_cut_short_is_not_complete_at_eof() {
    let mut kept = Kept::default();
    let (dones, _) =
        frame_in_pieces(&[b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello"], true, &mut kept).unwrap();
    assert_eq!((dones.as_slice(), kept.bodies), (&[][..], vec![b"hello".to_vec()]));
    let (dones, left) = frame_in_pieces(&[b"HTTP/1.1 200 OK\r\nContent-Le"], true, &mut ()).unwrap();
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
        assert!(frame_in_pieces(&[bad], false, &mut ()).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &[b'a'; MAX_HEAD]].concat();
    assert_eq!(frame_in_pieces(&[&huge], false, &mut ()).unwrap_err(), FramingError("response head too large".into()));
}

/// A body framed on its own (a request's), offered in two pieces cut at
/// every point, then the next message's first bytes: how much was used,
/// whether it ended, and the body.
fn body_in_pieces(body: Body, bytes: &[u8]) -> Vec<(usize, bool, Vec<u8>)> {
    (0..=bytes.len())
        .map(|cut| {
            let (mut framing, mut kept) = (BodyFraming::new(body), Vec::new());
            let (used, ended) = framing.feed(&bytes[..cut], &mut kept).unwrap();
            let rest = [&bytes[used..cut], &bytes[cut..]].concat();
            match ended {
                true => (used, ended, kept),
                false => {
                    let (more, ended) = framing.feed(&rest, &mut kept).unwrap();
                    (used + more, ended, kept)
                }
            }
        })
        .collect()
}

#[test]
fn request_bodies_by_length_and_chunks_end_where_they_end() {
    let length = b"helloPOST /next";
    assert!(body_in_pieces(Body::Length(5), length).into_iter().all(|got| got == (5, true, b"hello".to_vec())));
    let chunked = b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\nPOST /next";
    let whole = chunked.len() - b"POST /next".len();
    assert!(body_in_pieces(Body::Chunked, chunked).into_iter().all(|got| got == (whole, true, b"abcde".to_vec())));
    // An empty body ends before it begins.
    assert_eq!(BodyFraming::new(Body::Length(0)).feed(b"POST", &mut ()).unwrap(), (0, true));
    // One delimited by closing takes everything, and ends only with the connection.
    let mut until_close = BodyFraming::new(Body::UntilClose);
    assert_eq!(until_close.feed(b"all of it", &mut ()).unwrap(), (9, false));
    assert!(until_close.ends_at_eof() && !BodyFraming::new(Body::Chunked).ends_at_eof());
}
