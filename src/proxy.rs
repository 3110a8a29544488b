//! Forwarding one `/run/<fn>` request to its worker and the answer back,
//! streaming bodies through fixed buffers.

use std::io;
use std::time::{Duration, Instant};

use crate::balancer::{Answer, Outcome};
use crate::conn::{Conn, Shard};
use crate::error::Error;
use crate::http::{self, ChunkError, ChunkedDecoder, Framing, ReadBuf, Version};
use crate::metrics::Decision;
use crate::runtime::{self, TcpStream};
use crate::worker::{Lease, Worker, WorkerId};

/// A whole request up to this size is sent in one write and kept until the
/// worker answers, so it can be sent again if it is idempotent and a pooled
/// connection turns out closed.
const WHOLE_LIMIT: usize = 64 * 1024;
/// Writes of data smaller than this are joined with the head before them.
const COALESCE_LIMIT: usize = 8 * 1024;
/// A client waiting this long for its worker's answer is watched: if it
/// closes its connection, the call is given up (worker connection dropped,
/// lease released). Quicker answers never pay for the watch.
const WATCH_CLIENT_AFTER: Duration = Duration::from_millis(100);

/// What hiku needs to know of the client's request once its head is gone.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    pub framing: Framing,
    pub keep_alive: bool,
    pub version: Version,
    pub head: bool,
    pub expect_continue: bool,
    /// Whether the request may be sent again (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// The length of the body if all of it arrived with the head.
    pub whole_body: Option<usize>,
    /// hiku added a `Host` naming the worker (the client sent none).
    pub added_host: bool,
    /// The whole request, body too, is in `conn.out` (it was held, or sent
    /// once and bounced).
    pub in_out: bool,
    /// Where decoding a chunked body stands when it streams: at its start,
    /// or where holding it stopped (the part held is in `conn.out`).
    pub chunked: ChunkedDecoder,
}

/// How a body copy failed: on the side read from (or nothing came from it
/// in time), the side written to, or in the body's own framing.
enum CopyError {
    Read(io::Error),
    ReadTimeout(Duration),
    Write(io::Error),
    Framing(ChunkError),
    /// The body grew past this many bytes.
    TooLarge(u64),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Read(e) => write!(f, "reading: {e}"),
            CopyError::ReadTimeout(within) => write!(f, "nothing to read within {} ms", within.as_millis()),
            CopyError::Write(e) => write!(f, "writing: {e}"),
            CopyError::Framing(e) => e.fmt(f),
            CopyError::TooLarge(limit) => write!(f, "body larger than {limit} bytes"),
        }
    }
}

/// Why an exchange with the worker ended early.
enum Failure {
    /// Before any answer went to the client: it gets an error response.
    /// `body_read` says whether the request body was fully read, so the
    /// client connection may stay open.
    Answer { error: Error, body_read: bool },
    /// The client went away while the worker's answer (status `code`) was
    /// relayed: close. The worker did its part.
    ClientGone { code: u16 },
    /// The client went away before the worker answered, or the worker's
    /// answer broke off: close.
    Close,
}

/// How a request ended for the balancer: a worker that answered 2xx or 3xx
/// ran the function and now holds a warm idle instance of it. An error
/// status (a 404 for an unknown function, a 500 for a sandbox that failed
/// to start, a 429 for an overloaded worker) says nothing of the kind.
fn outcome(code: u16) -> Outcome {
    if (200..400).contains(&code) {
        Outcome::Completed
    } else {
        Outcome::Failed
    }
}

/// Forwards the request whose head is in `conn.out` (already rewritten) and
/// whose body follows in `conn.rbuf`/the client stream. Returns whether the
/// client connection can carry another request.
///
/// The lease is released as soon as the worker's part is over, before the
/// last bytes go to the client: a client that sends its next call the moment
/// it has the answer must find the worker idle (and, for pull-based, warm).
pub async fn forward(shard: &Shard, conn: &mut Conn, mut lease: Lease, mut meta: RequestMeta) -> bool {
    let started = Instant::now();
    // The workers that answered "overloaded", and the one asked now.
    let mut asked: [WorkerId; crate::config::MAX_RETRIES as usize + 1] = Default::default();
    let mut bounces = 0;
    let result = loop {
        let upstream = match shard.pool.take(lease.worker()) {
            Some(pooled) => (pooled, true),
            None => match connect(shard, conn, &mut lease, meta, &asked[..bounces]).await {
                Ok(fresh) => (fresh, false),
                Err(error) => {
                    account(shard, conn, &lease, Some(error.status()), started);
                    shard.scheduler.release(&conn.function, lease, Outcome::Failed);
                    return conn.answer_error(&error, meta).await;
                }
            },
        };
        asked[bounces] = lease.worker().id();
        let may_bounce = bounces < shard.config().retries.overload as usize;
        let bounce_from = may_bounce.then_some(&asked[..=bounces]);
        match exchange(shard, conn, lease.worker(), upstream, meta, bounce_from).await {
            Exchanged::Done(result) => break result,
            Exchanged::Bounced(next) => {
                log::debug!("{} is overloaded; sending the call to {}", lease.worker().url(), next.worker().url());
                shard.counters().decision(Decision::Bounced);
                if meta.added_host {
                    let (from, to) = (lease.worker().url().authority(), next.worker().url().authority());
                    http::retarget_host(&mut conn.out, from, to);
                }
                let refused = std::mem::replace(&mut lease, next);
                shard.scheduler.unused(&conn.function, refused);
                // The whole request, body too, is in `conn.out` now: none
                // of it is left in `conn.rbuf`.
                meta.in_out = true;
                meta.whole_body = Some(0);
                bounces += 1;
            }
        }
    };
    let outcome = match result {
        Ok((code, _, _)) | Err(Failure::ClientGone { code }) => outcome(code),
        Err(Failure::Answer { .. } | Failure::Close) => Outcome::Failed,
    };
    if let (Ok((_, _, Some(answer))), Outcome::Completed) = (&result, outcome) {
        shard.scheduler.observe(&conn.function, &lease, *answer);
    }
    let status = match &result {
        Ok((code, _, _)) | Err(Failure::ClientGone { code }) => Some(*code),
        Err(Failure::Answer { error, .. }) => Some(error.status()),
        Err(Failure::Close) => None,
    };
    account(shard, conn, &lease, status, started);
    shard.scheduler.release(&conn.function, lease, outcome);
    conn.ubuf.clear();
    match result {
        Ok((_, keep_alive, _)) => {
            let within = shard.config().timeouts.client_send;
            flush(&mut conn.client, &mut conn.out, within).await.is_ok() && keep_alive
        }
        Err(Failure::Answer { error, body_read }) => {
            let keep = body_read && meta.keep_alive;
            conn.send_error(&error, keep, Some(meta)).await && keep
        }
        Err(Failure::ClientGone { .. } | Failure::Close) => false,
    }
}

/// How an exchange with one worker ended: with an answer for the client
/// (or a failure), or with the worker saying it is overloaded and the
/// call leased to another.
enum Exchanged {
    Done(Result<(u16, bool, Option<Answer>), Failure>),
    Bounced(Lease),
}

/// Whether the response head at the front of `head` says the worker is
/// overloaded and did not run the call: a 429, or a 503 with `Retry-After`
/// (a 503 without one may come from a call that failed as it ran).
fn overloaded(head: &[u8]) -> bool {
    match head.get(9..12) {
        Some(b"429") => true,
        Some(b"503") => {
            let mut headers = http::empty_headers();
            match http::parse_response(head, &mut headers, false) {
                Ok(Some(r)) => r.headers.iter().any(|h| h.name.eq_ignore_ascii_case("retry-after")),
                _ => false,
            }
        }
        _ => false,
    }
}

/// Counts a call that ended with `status` (none: the connection was cut)
/// in the metrics, and logs it if there is an access log.
fn account(shard: &Shard, conn: &Conn, lease: &Lease, status: Option<u16>, started: Instant) {
    let took = started.elapsed();
    if let Some(status) = status {
        shard.counters().call(status, took);
    }
    if let Some(log) = &shard.access {
        let worker = Some(lease.worker().url().as_str());
        log.call(&conn.client_ip, &conn.request_line, status.unwrap_or(0), worker, took);
    }
}

/// Opens a connection to the leased worker. One that fails or times out
/// sent nothing, so the call goes to another worker, the least loaded one
/// not tried yet (nor in `avoid`: those that bounced it), up to
/// `retries.connect` times: the lease moves with it (and a `Host` hiku
/// added for a client that sent none is changed too).
async fn connect(
    shard: &Shard,
    conn: &mut Conn,
    lease: &mut Lease,
    meta: RequestMeta,
    avoid: &[WorkerId],
) -> Result<TcpStream, Error> {
    const MOST: usize = 2 * (crate::config::MAX_RETRIES as usize + 1);
    let mut tried: [WorkerId; MOST] = [0; MOST];
    tried[..avoid.len()].copy_from_slice(avoid);
    let mut attempts = avoid.len();
    let retries = shard.config().retries.connect as usize;
    loop {
        let worker = lease.worker();
        let cause = match crate::pool::connect(worker, shard.config().timeouts.upstream_connect).await {
            Ok(stream) => {
                worker.connect_succeeded();
                return Ok(stream);
            }
            Err(e) => {
                shard.scheduler.connect_failed(worker);
                e.to_string()
            }
        };
        tried[attempts] = worker.id();
        attempts += 1;
        let error = Error::WorkerUnreachable { worker: worker.url().to_string(), cause };
        let next = match attempts - avoid.len() <= retries {
            true => shard.scheduler.select_other(&tried[..attempts]),
            false => None,
        };
        let Some(next) = next else { return Err(error) };
        log::debug!("{error}; trying {} instead", next.worker().url());
        shard.counters().decision(Decision::Retried);
        if meta.added_host {
            http::retarget_host(&mut conn.out, worker.url().authority(), next.worker().url().authority());
        }
        let failed = std::mem::replace(lease, next);
        shard.scheduler.release(&conn.function, failed, Outcome::Failed);
    }
}

/// Sends the request on `upstream` (and whether it is a reused connection),
/// relays the response; returns the worker's status code, whether the
/// client connection stays open, and (for a balancer that learns) what the
/// answer said. With `bounce_from` (the workers asked so far), an answer
/// that the worker is overloaded sends a request hiku holds whole to
/// another worker instead, if there is one.
async fn exchange(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    upstream: (TcpStream, bool),
    meta: RequestMeta,
    bounce_from: Option<&[WorkerId]>,
) -> Exchanged {
    let result = match send_and_read_head(shard, conn, worker, upstream, meta).await {
        Ok((up, whole, sent_at, body_cut)) => {
            if let Some(asked) = bounce_from.filter(|_| whole && overloaded(conn.ubuf.data())) {
                if let Some(next) = shard.scheduler.select_other(asked) {
                    // The rest of this answer is never read: the connection goes.
                    conn.ubuf.clear();
                    return Exchanged::Bounced(next);
                }
            }
            let sent = sent_at.map(|at| (at, at.elapsed()));
            // The rest of a cut-off body is still on its way: close after answering.
            let meta = RequestMeta { keep_alive: meta.keep_alive && !body_cut, ..meta };
            relay_response(shard, conn, worker, up, meta, sent).await
        }
        Err(failure) => Err(failure),
    };
    Exchanged::Done(result)
}

/// Sends the request on `upstream` and reads the worker's response head
/// into `conn.ubuf`. Returns the connection, whether the whole request was
/// sent from `conn.out` (so it is there to send again), when it was sent
/// (for a balancer that learns), and whether the worker stopped taking the
/// request body before its end.
async fn send_and_read_head(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    upstream: (TcpStream, bool),
    meta: RequestMeta,
) -> Result<(TcpStream, bool, Option<Instant>, bool), Failure> {
    let learns = shard.scheduler.learns();
    let mut sent_at = None;
    let unreachable = |cause: String| Error::WorkerUnreachable { worker: worker.url().to_string(), cause };
    // A small request that is whole in the buffer is sent in one write. If
    // it is idempotent it is sent again on a fresh connection when a reused
    // one fails before any answer (the worker closed it while idle); any
    // other request may have reached the worker, and must not run twice.
    let whole = match meta.in_out {
        true => Some(0),
        false => meta.whole_body.filter(|&n| conn.out.len() + n <= WHOLE_LIMIT),
    };
    if let Some(n) = whole {
        conn.out.extend_from_slice(&conn.rbuf.data()[..n]);
        conn.rbuf.consume(n);
    }
    let resend = whole.is_some() && meta.idempotent;
    let mut first = Some(upstream);
    let mut body_cut = false;
    let within = shard.config().timeouts.upstream_response;
    let timed_out = || Error::WorkerTimeout { worker: worker.url().to_string(), within };
    let upstream = loop {
        let (mut up, reused) = match first.take() {
            Some(first) => first,
            None => match crate::pool::connect(worker, shard.config().timeouts.upstream_connect).await {
                Ok(up) => (up, false),
                Err(e) => {
                    return Err(Failure::Answer { error: unreachable(e.to_string()), body_read: whole.is_some() })
                }
            },
        };
        let sent = match whole {
            Some(_) => runtime::write_all(&mut up, &mut conn.out).await.map_err(CopyError::Write),
            None => send_streaming(conn, &mut up, meta, shard).await,
        };
        let result = match sent {
            Ok(()) => {
                conn.input_done = true;
                sent_at = learns.then(Instant::now);
                let (client, ubuf) = (&conn.client, &mut conn.ubuf);
                let head = async { Some(read_response_head(&mut up, ubuf, within).await) };
                let gone = async {
                    client_gone(client).await;
                    None
                };
                match futures_lite::future::or(head, gone).await {
                    Some(head) => head,
                    None => {
                        log::debug!("the client left while {} worked on its call", worker.url());
                        return Err(Failure::Close);
                    }
                }
            }
            // The worker stopped taking the body: it may have answered early
            // (a 413, say). Relay that answer if there is one.
            Err(CopyError::Write(e)) => match read_response_head(&mut up, &mut conn.ubuf, within).await {
                Ok(()) => {
                    body_cut = whole.is_none();
                    Ok(())
                }
                Err(_) => Err(HeadError::Io(e)),
            },
            Err(CopyError::Read(_)) => return Err(Failure::Close),
            Err(CopyError::ReadTimeout(within)) => {
                let error = Error::ClientTimeout { what: crate::conn::BODY_BYTE, within };
                return Err(Failure::Answer { error, body_read: false });
            }
            Err(CopyError::Framing(e)) => {
                return Err(Failure::Answer { error: Error::BadRequest(e.to_string()), body_read: false })
            }
            Err(CopyError::TooLarge(limit)) => {
                return Err(Failure::Answer { error: Error::BodyTooLarge(limit), body_read: false })
            }
        };
        if reused && matches!(result, Err(HeadError::Io(_) | HeadError::Closed)) {
            // The worker closed a connection it had kept: its other idle
            // ones on this core are likely gone too (it died, say).
            shard.pool.forget(worker);
        }
        match result {
            Ok(()) => break up,
            // A pooled connection the worker closed while idle: send again.
            Err(HeadError::Io(_) | HeadError::Closed) if reused && resend && conn.ubuf.is_empty() => continue,
            Err(e) => {
                let error = match e {
                    HeadError::TimedOut => timed_out(),
                    HeadError::Io(e) => unreachable(e.to_string()),
                    HeadError::Closed => unreachable("connection closed before a response".into()),
                    HeadError::Invalid(cause) => Error::BadResponse { worker: worker.url().to_string(), cause },
                };
                return Err(Failure::Answer { error, body_read: whole.is_some() });
            }
        }
    };
    Ok((upstream, whole.is_some(), sent_at, body_cut))
}

/// What the answer's head says for a balancer that learns: the worker's
/// `X-Cold-Start` and `X-Service-Ms`, if it sent them, for a request sent at
/// `sent_at` and answered `elapsed` later.
fn answer(headers: http::Headers, (sent_at, elapsed): (Instant, Duration)) -> Answer {
    let value = |name: &str| {
        let header = headers.iter().find(|h| h.name.eq_ignore_ascii_case(name))?;
        std::str::from_utf8(header.value).ok().map(str::trim)
    };
    let cold = value("x-cold-start").and_then(|v| match v {
        _ if v.eq_ignore_ascii_case("true") => Some(true),
        _ if v.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    });
    let service_ms =
        value("x-service-ms").and_then(|v| v.parse::<f64>().ok()).filter(|ms| ms.is_finite() && *ms >= 0.0);
    Answer { sent_at, elapsed, cold, service_ms }
}

/// How long a body copy waits for each read, and how large a chunked body
/// may grow (a body with a length was checked before).
#[derive(Clone, Copy)]
struct Bounds {
    read_within: Duration,
    write_within: Duration,
    max_bytes: u64,
}

/// Returns when the client, waiting for an answer, has closed its
/// connection; never if it stays, or sends more (a pipelined request).
pub(crate) async fn client_gone(client: &TcpStream) {
    runtime::sleep(WATCH_CLIENT_AFTER).await;
    loop {
        if runtime::readable(client).await.is_err() {
            return;
        }
        match runtime::peek(client) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(0) | Err(_) => return,
            Ok(_) => return std::future::pending().await,
        }
    }
}

/// Sends the head in `conn.out`, then streams the body from the client,
/// each read within `timeouts.client_body`, all of it within
/// `limits.max_body_bytes`.
async fn send_streaming(
    conn: &mut Conn,
    up: &mut TcpStream,
    meta: RequestMeta,
    shard: &Shard,
) -> Result<(), CopyError> {
    if meta.expect_continue {
        conn.send_continue().await.map_err(CopyError::Read)?;
    }
    let timeouts = shard.config().timeouts;
    let bounds = Bounds {
        read_within: timeouts.client_body,
        write_within: timeouts.upstream_response,
        max_bytes: shard.config().limits.max_body_bytes,
    };
    let body = (meta.framing, meta.chunked);
    copy_body(&mut conn.client, &mut conn.rbuf, up, body, false, &mut conn.out, bounds).await?;
    flush(up, &mut conn.out, timeouts.upstream_response).await
}

enum HeadError {
    Io(io::Error),
    /// No whole head within the time.
    TimedOut,
    /// The worker closed the connection before sending anything.
    Closed,
    Invalid(String),
}

/// Reads until `buf` holds a complete head (the blank line after the fields).
async fn read_head(from: &mut TcpStream, buf: &mut ReadBuf) -> Result<(), HeadError> {
    let mut scanned = 0;
    loop {
        if let Some(_end) = head_end(buf.data(), scanned) {
            return Ok(());
        }
        scanned = buf.data().len();
        if buf.is_full() || scanned >= http::MAX_HEAD {
            return Err(HeadError::Invalid("response head too large".into()));
        }
        match buf.fill(from).await {
            Ok(0) if buf.is_empty() => return Err(HeadError::Closed),
            Ok(0) => return Err(HeadError::Invalid("connection closed inside the response head".into())),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// Reads the worker's response head, skipping interim (1xx) responses;
/// gives up if it is not whole `within` the time.
async fn read_response_head(up: &mut TcpStream, buf: &mut ReadBuf, within: Duration) -> Result<(), HeadError> {
    match runtime::timeout(within, read_final_head(up, buf)).await {
        Ok(result) => result,
        Err(_) => Err(HeadError::TimedOut),
    }
}

async fn read_final_head(up: &mut TcpStream, buf: &mut ReadBuf) -> Result<(), HeadError> {
    loop {
        read_head(up, buf).await?;
        let mut headers = http::empty_headers();
        let interim = match http::parse_response(buf.data(), &mut headers, false) {
            Ok(Some(r)) if r.code == 101 => return Err(HeadError::Invalid("unrequested protocol switch".into())),
            Ok(Some(r)) if r.code < 200 => Some(r.head_len),
            Ok(Some(_)) => None,
            Ok(None) => return Err(HeadError::Invalid("incomplete response head".into())),
            Err(e) => return Err(HeadError::Invalid(e)),
        };
        match interim {
            Some(len) => buf.consume(len),
            None => return Ok(()),
        }
    }
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

/// Relays the response whose head is at the front of `conn.ubuf`, all but
/// its last piece, which is left in `conn.out` for `forward` to send.
async fn relay_response(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    mut up: TcpStream,
    meta: RequestMeta,
    sent: Option<(Instant, Duration)>,
) -> Result<(u16, bool, Option<Answer>), Failure> {
    conn.out.clear();
    let (code, head_len, framing, worker_keep_alive, answer) = {
        let mut headers = http::empty_headers();
        let res = match http::parse_response(conn.ubuf.data(), &mut headers, meta.head) {
            Ok(Some(r)) => r,
            _ => unreachable!("read_response_head parsed this head"),
        };
        let to_client = match res.framing {
            Framing::Chunked if meta.version == Version::Http10 => Framing::Close,
            f => f,
        };
        // A drain that began while the worker worked closes this connection too.
        let keep = meta.keep_alive && to_client != Framing::Close && !crate::shutdown::draining();
        http::write_response_head(&mut conn.out, &res, to_client, keep, meta.version);
        (res.code, res.head_len, res.framing, res.keep_alive, sent.map(|s| answer(res.headers, s)))
    };
    conn.ubuf.consume(head_len);
    let decode = framing == Framing::Chunked && meta.version == Version::Http10;
    let client_keep = meta.keep_alive && !(framing == Framing::Close || decode);
    let timeouts = shard.config().timeouts;
    let bounds =
        Bounds { read_within: timeouts.upstream_response, write_within: timeouts.client_send, max_bytes: u64::MAX };
    let body = (framing, ChunkedDecoder::default());
    let copied = copy_body(&mut up, &mut conn.ubuf, &mut conn.client, body, decode, &mut conn.out, bounds).await;
    if let Err(e) = copied {
        // The head is out: all that is left is to cut the answer short.
        log::debug!("response from {} cut short: {e}", worker.url());
        return Err(match e {
            CopyError::Write(_) => Failure::ClientGone { code },
            CopyError::Read(_) | CopyError::ReadTimeout(_) | CopyError::Framing(_) | CopyError::TooLarge(_) => {
                Failure::Close
            }
        });
    }
    if worker_keep_alive && conn.ubuf.is_empty() {
        shard.pool.put(worker, up);
    }
    Ok((code, client_keep, answer))
}

/// Copies a body framed as `framing` from `src` (whose bytes already read
/// are in `buf`) to `dst`, after `pending` (a head, and perhaps the start
/// of the body, decoded as far as `chunked` says), joining small pieces
/// into one write. With `decode`, a chunked body goes out as its data alone.
/// Leaves in `buf` whatever follows the body, and in `pending` the last
/// piece (at most `COALESCE_LIMIT` bytes) for the caller to send. Gives up
/// when a read brings nothing in time, or a chunked body grows too large.
async fn copy_body(
    src: &mut TcpStream,
    buf: &mut ReadBuf,
    dst: &mut TcpStream,
    (framing, mut chunked): (Framing, ChunkedDecoder),
    decode: bool,
    pending: &mut Vec<u8>,
    bounds: Bounds,
) -> Result<(), CopyError> {
    let within = bounds.read_within;
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        let done = match framing {
            Framing::None => true,
            Framing::Length(_) => left == 0,
            Framing::Chunked => chunked.is_done(),
            Framing::Close => false,
        };
        if done {
            return Ok(());
        }
        if buf.is_empty() {
            // Nothing to pass on yet: let what is pending go before waiting.
            flush(dst, pending, bounds.write_within).await?;
            let read = runtime::timeout(within, buf.fill(src)).await.map_err(|_| CopyError::ReadTimeout(within))?;
            if read.map_err(CopyError::Read)? == 0 {
                if framing == Framing::Close {
                    return Ok(());
                }
                return Err(CopyError::Read(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let data = buf.data();
        let used = match framing {
            Framing::Length(_) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                left -= n as u64;
                n
            }
            Framing::Chunked => {
                let used = chunked
                    .feed(data, |d| {
                        if decode {
                            pending.extend_from_slice(d)
                        }
                    })
                    .map_err(CopyError::Framing)?;
                if chunked.data_len() > bounds.max_bytes {
                    return Err(CopyError::TooLarge(bounds.max_bytes));
                }
                used
            }
            Framing::None | Framing::Close => data.len(),
        };
        if decode {
            // The data went into `pending` as it was decoded.
            if pending.len() > COALESCE_LIMIT {
                flush(dst, pending, bounds.write_within).await?;
            }
        } else if pending.len() + used <= COALESCE_LIMIT {
            pending.extend_from_slice(&data[..used]);
        } else {
            flush(dst, pending, bounds.write_within).await?;
            match runtime::timeout(bounds.write_within, buf.write_to(dst, used)).await {
                Ok(written) => written.map_err(CopyError::Write)?,
                Err(_) => return Err(CopyError::Write(write_timed_out(bounds.write_within))),
            }
            continue;
        }
        buf.consume(used);
    }
}

/// Writes `pending` to `dst` (if anything is pending), giving up if the
/// peer takes none of it `within` the time.
async fn flush(dst: &mut TcpStream, pending: &mut Vec<u8>, within: Duration) -> Result<(), CopyError> {
    if !pending.is_empty() {
        match runtime::timeout(within, runtime::write_all(dst, pending)).await {
            Ok(written) => written.map_err(CopyError::Write)?,
            Err(_) => return Err(CopyError::Write(write_timed_out(within))),
        }
        pending.clear();
    }
    Ok(())
}

fn write_timed_out(within: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("the peer took nothing for {} ms", within.as_millis()))
}
