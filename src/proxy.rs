//! A `/run/<fn>` call, from its lease to its release: the call waits for a
//! worker with room if it must, or has its body held first; it is
//! forwarded to its worker, sent to another one if the connection fails
//! (before anything was sent) or the worker says it is overloaded, and
//! the answer streamed back; then the balancer hears how it ended.

use std::time::{Duration, Instant};

use crate::balancer::{Answer, Outcome};
use crate::config::MAX_RETRIES;
use crate::conn::{Conn, BODY_BYTE};
use crate::error::{Error, Side};
use crate::http::{self, Bounds, ChunkedDecoder, Copied, CopyError, Framing, HeadError, RequestMeta, Version};
use crate::metrics::Decision;
use crate::pool;
use crate::runtime::{self, TcpStream};
use crate::scheduler::{CallEnd, Unplaced};
use crate::shard::Shard;
use crate::shutdown;
use crate::worker::{Lease, Worker, WorkerId};

/// A whole request up to this size is sent in one write and kept until the
/// worker answers, so it can be sent again if it is idempotent and a pooled
/// connection turns out closed.
const WHOLE_LIMIT: usize = 64 * 1024;
/// How a call goes on from its head.
pub enum Call {
    /// To the leased worker.
    Forward(Lease),
    /// Every worker is full: it waits for one with room, then goes like
    /// `Forward` (its head, without a worker's name, is in `conn.out`).
    Wait,
    /// A small body is still on its way: it is read whole, after the head
    /// in `conn.out`, before a worker is chosen (nginx's request
    /// buffering), so the call can go again like any request held whole.
    Hold,
}

/// Serves a call whose head is in `conn.out`; whether the client
/// connection can carry another request.
pub async fn serve(shard: &Shard, conn: &mut Conn, call: Call, meta: RequestMeta) -> bool {
    match call {
        Call::Forward(lease) => forward(shard, conn, lease, meta).await,
        // Only when workers are full: boxed, so that its state does not
        // size every connection's task.
        Call::Wait => Box::pin(wait_and_forward(shard, conn, meta)).await,
        // Only for a body that came after its head: boxed too.
        Call::Hold => Box::pin(hold_and_forward(shard, conn, meta)).await,
    }
}

/// Whether a `/run` body framed as `framing` that did not come with its
/// head is held whole before the call goes to a worker: one of at most
/// `limit` bytes by its length, or any chunked one (read up to `limit`,
/// then streamed).
pub fn holds(framing: Framing, limit: usize) -> bool {
    match framing {
        Framing::Length(n) => n <= limit as u64,
        Framing::Chunked => limit > 0,
        Framing::None | Framing::Close => false,
    }
}

/// Reads the body of a `Call::Hold` into `conn.out` (after its head),
/// each read within `timeouts.client_body`, then places the call as
/// `plan` would have: to a worker with room, or into the queue. A chunked
/// body that outgrows `limits.buffer_body_bytes` streams on from where
/// holding it stopped.
async fn hold_and_forward(shard: &Shard, conn: &mut Conn, mut meta: RequestMeta) -> bool {
    if meta.expect_continue {
        if conn.send_continue().await.is_err() {
            shard.record_refused(conn, None);
            return false;
        }
        meta.expect_continue = false;
    }
    let config = shard.config();
    let limits = (config.limits.buffer_body_bytes, config.limits.max_body_bytes);
    let mut out = std::mem::take(&mut conn.out);
    let read = conn.read_body(meta.framing, true, &mut out, limits, config.timeouts.client_body).await;
    conn.out = out;
    match read {
        Ok(Copied::Whole) => {
            conn.input_done = true;
            meta.in_out = true;
            meta.whole_body = Some(0);
        }
        Ok(Copied::Partial(decoder)) => meta.chunked = decoder,
        Err(error) => {
            shard.record_refused(conn, error.as_ref().map(Error::status));
            if let Some(error) = error {
                conn.send_error(&error, false, Some(meta)).await;
            }
            return false;
        }
    }
    match shard.place(&conn.function) {
        Ok(lease) => {
            conn.retarget_host(meta, None, lease.worker());
            forward(shard, conn, lease, meta).await
        }
        Err(Unplaced::Full) => wait_and_forward(shard, conn, meta).await,
        Err(Unplaced::NoWorkers) => {
            shard.record_refused(conn, Some(Error::NoWorkers.status()));
            conn.answer_error(&Error::NoWorkers, meta).await
        }
    }
}

/// Waits in the core's queue for a worker with room, then forwards the
/// call; a full queue or a wait past `queue.timeout_ms` is a **503**. A
/// client that leaves meanwhile takes its call out of the queue.
async fn wait_and_forward(shard: &Shard, conn: &mut Conn, meta: RequestMeta) -> bool {
    let queue = shard.config().queue;
    let gone = http::client_gone(&conn.client);
    let waited = shard.queue.wait(&shard.scheduler, &conn.function, queue.limit, queue.timeout, gone).await;
    match waited {
        Some(Ok(lease)) => {
            shard.counters().decision(Decision::Queued);
            shard.count_decision(&lease);
            conn.retarget_host(meta, None, lease.worker());
            forward(shard, conn, lease, meta).await
        }
        Some(Err(error)) => {
            shard.record_refused(conn, Some(error.status()));
            conn.answer_error(&error, meta).await
        }
        None => {
            log::debug!("a client left while its call waited for a worker");
            shard.record_refused(conn, None);
            false
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
    let mut asked: [WorkerId; MAX_RETRIES as usize + 1] = Default::default();
    let mut bounces = 0;
    let result = loop {
        let upstream = match shard.pool.take(lease.worker()) {
            Some(stream) => Upstream { stream, reused: true },
            None => match connect(shard, conn, &mut lease, meta, &asked[..bounces]).await {
                Ok(stream) => Upstream { stream, reused: false },
                Err(error) => {
                    shard.record_call(conn, Some(lease.worker()), Some(error.status()), started.elapsed());
                    shard.scheduler.release(&conn.function, lease, Outcome::Failed);
                    return conn.answer_error(&error, meta).await;
                }
            },
        };
        asked[bounces] = lease.worker().id();
        let may_bounce = bounces < shard.config().retries.overload as usize;
        let bounce_from = may_bounce.then_some(&asked[..=bounces]);
        match exchange(shard, conn, lease.worker(), upstream, meta, bounce_from, started).await {
            Exchanged::Done(result, end) => {
                if let Some(end) = end {
                    shard.scheduler.call_ended(&conn.function, &lease, end);
                }
                break result;
            }
            Exchanged::Bounced(next) => {
                log::debug!("{} is overloaded; sending the call to {}", lease.worker().url(), next.worker().url());
                shard.counters().decision(Decision::Bounced);
                conn.retarget_host(meta, Some(lease.worker()), next.worker());
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
        Ok(Relayed { code, .. }) | Err(Failure::ClientGone { code }) => outcome(code),
        Err(Failure::Answer { .. } | Failure::Close) => Outcome::Failed,
    };
    if let (Ok(Relayed { answer: Some(answer), .. }), Outcome::Completed) = (&result, outcome) {
        shard.scheduler.observe(&conn.function, &lease, *answer);
    }
    let status = match &result {
        Ok(Relayed { code, .. }) | Err(Failure::ClientGone { code }) => Some(*code),
        Err(Failure::Answer { error, .. }) => Some(error.status()),
        Err(Failure::Close) => None,
    };
    shard.record_call(conn, Some(lease.worker()), status, started.elapsed());
    shard.scheduler.release(&conn.function, lease, outcome);
    conn.ubuf.clear();
    match result {
        Ok(Relayed { keep_alive, .. }) => {
            let within = shard.config().timeouts.client_send;
            http::flush(&mut conn.client, &mut conn.out, within).await.is_ok() && keep_alive
        }
        Err(Failure::Answer { error, body_read }) => {
            let keep = body_read && meta.keep_alive;
            conn.send_error(&error, keep, Some(meta)).await && keep
        }
        Err(Failure::ClientGone { .. } | Failure::Close) => false,
    }
}

/// How an exchange with one worker ended: with an answer for the client
/// (or a failure) and what it says of the worker, or with the worker
/// saying it is overloaded and the call leased to another.
enum Exchanged {
    Done(Result<Relayed, Failure>, Option<CallEnd>),
    Bounced(Lease),
}

/// A connection to a worker, and whether it came from the pool.
struct Upstream {
    stream: TcpStream,
    reused: bool,
}

/// A request on its way: the connection it went on, whether the whole
/// request was sent from `conn.out` (so it is there to send again), when
/// it was sent (for a balancer that learns), how long the call took to its
/// answer's head, and whether the worker stopped taking the request body
/// before its end.
struct Sent {
    upstream: TcpStream,
    whole: bool,
    sent_at: Option<Instant>,
    took: Duration,
    body_cut: bool,
}

/// An answer relayed: the worker's status, whether the client connection
/// stays open, and (for a balancer that learns) what the answer said.
struct Relayed {
    code: u16,
    keep_alive: bool,
    answer: Option<Answer>,
}

/// What the response head at the front of `head`, `took` after the request
/// was sent, says of the worker: it is overloaded, it failed the call (its
/// own 502, 503 or 504), or it answered.
fn call_end(head: &[u8], took: Duration) -> CallEnd {
    match head.get(9..12) {
        _ if overloaded(head) => CallEnd::Overloaded,
        Some(b"502" | b"503" | b"504") => CallEnd::Failed,
        _ => CallEnd::Answered { took },
    }
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
    const MOST: usize = 2 * (MAX_RETRIES as usize + 1);
    let mut tried: [WorkerId; MOST] = [0; MOST];
    tried[..avoid.len()].copy_from_slice(avoid);
    let mut attempts = avoid.len();
    let retries = shard.config().retries.connect as usize;
    loop {
        let worker = lease.worker();
        let cause = match pool::connect(worker, shard.config().timeouts.upstream_connect).await {
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
        conn.retarget_host(meta, Some(worker), next.worker());
        let failed = std::mem::replace(lease, next);
        shard.scheduler.release(&conn.function, failed, Outcome::Failed);
    }
}

/// Sends the request on `upstream` (and whether it is a reused connection),
/// relays the response; returns the worker's status code, whether the
/// client connection stays open, and (for a balancer that learns) what the
/// answer said, and what the answer says of the worker, the call having
/// begun at `began`. With `bounce_from` (the workers asked so far), an
/// answer that the worker is overloaded sends a request hiku holds whole to
/// another worker instead, if there is one.
async fn exchange(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    upstream: Upstream,
    meta: RequestMeta,
    bounce_from: Option<&[WorkerId]>,
    began: Instant,
) -> Exchanged {
    match send_and_read_head(shard, conn, worker, upstream, meta, began).await {
        Ok(Sent { upstream, whole, sent_at, took, body_cut }) => {
            let end = call_end(conn.ubuf.data(), took);
            if let Some(asked) = bounce_from.filter(|_| whole && end == CallEnd::Overloaded) {
                if let Some(next) = shard.scheduler.select_other(asked) {
                    // The rest of this answer is never read: the connection goes.
                    conn.ubuf.clear();
                    return Exchanged::Bounced(next);
                }
            }
            let sent = sent_at.map(|at| (at, at.elapsed()));
            // The rest of a cut-off body is still on its way: close after answering.
            let meta = RequestMeta { keep_alive: meta.keep_alive && !body_cut, ..meta };
            Exchanged::Done(relay_response(shard, conn, worker, upstream, meta, sent).await, Some(end))
        }
        Err(failure) => {
            let end = match &failure {
                Failure::Answer { error, .. } if error.side() == Side::Worker => Some(CallEnd::Failed),
                _ => None,
            };
            Exchanged::Done(Err(failure), end)
        }
    }
}

/// Sends the request on `upstream` and reads the worker's response head
/// into `conn.ubuf`, for a call begun at `began`.
async fn send_and_read_head(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    upstream: Upstream,
    meta: RequestMeta,
    began: Instant,
) -> Result<Sent, Failure> {
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
        let Upstream { stream: mut up, reused } = match first.take() {
            Some(first) => first,
            None => match pool::connect(worker, shard.config().timeouts.upstream_connect).await {
                Ok(stream) => Upstream { stream, reused: false },
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
                let head = async { Some(http::read_response_head(&mut up, ubuf, within).await) };
                let gone = async {
                    http::client_gone(client).await;
                    None
                };
                match futures_lite::future::or(head, gone).await {
                    Some(head) => head,
                    None => {
                        // The worker runs the call to its end all the same
                        // (OpenLambda sends it to the sandbox with a context
                        // of its own, which the client's leaving does not
                        // cancel): it keeps its slot until the worker
                        // answers, or for the answer's time limit, so that a
                        // capacity or an adaptive limit never sends the
                        // worker more calls than it runs.
                        log::debug!("the client left while {} worked on its call", worker.url());
                        let _ = http::read_response_head(&mut up, &mut conn.ubuf, within).await;
                        return Err(Failure::Close);
                    }
                }
            }
            // The worker stopped taking the body: it may have answered early
            // (a 413, say). Relay that answer if there is one.
            Err(CopyError::Write(e)) => match http::read_response_head(&mut up, &mut conn.ubuf, within).await {
                Ok(()) => {
                    body_cut = whole.is_none();
                    Ok(())
                }
                Err(_) => Err(HeadError::Io(e)),
            },
            Err(CopyError::Read(_)) => return Err(Failure::Close),
            Err(CopyError::ReadTimeout(within)) => {
                let error = Error::ClientTimeout { what: BODY_BYTE, within };
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
    Ok(Sent { upstream, whole: whole.is_some(), sent_at, took: began.elapsed(), body_cut })
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
    http::copy_body(&mut conn.client, &mut conn.rbuf, up, body, false, &mut conn.out, bounds).await?;
    http::flush(up, &mut conn.out, timeouts.upstream_response).await
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
) -> Result<Relayed, Failure> {
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
        let keep = meta.keep_alive && to_client != Framing::Close && !shutdown::draining();
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
    let copied = http::copy_body(&mut up, &mut conn.ubuf, &mut conn.client, body, decode, &mut conn.out, bounds).await;
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
    Ok(Relayed { code, keep_alive: client_keep, answer })
}
