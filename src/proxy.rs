//! A `/run/<fn>` call, from its lease to its release: the call waits for a
//! worker with room if it must, or has its body held first; it is
//! forwarded to its worker, sent to another one if the connection fails
//! (before anything was sent) or the worker says it is overloaded, and
//! the answer streamed back; then the balancer hears how it ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balancer::{Answer, Outcome};
use crate::config::{Retries, MAX_RETRIES};
use crate::conn::{self, Conn};
use crate::error::Error;
use crate::http::{self, Bounds, Copied, CopyError, Framing, HeadError, RequestMeta, Version};
use crate::metrics::Decision;
use crate::pool;
use crate::runtime::TcpStream;
use crate::scheduler::{CallEnd, Scheduler, Unplaced};
use crate::shard::Shard;
use crate::worker::{Lease, Worker, WorkerId};

/// A whole request up to this size is sent in one write and kept until the
/// worker answers, so it can be sent again if it is idempotent and a pooled
/// connection turns out closed.
const WHOLE_LIMIT: usize = 64 * 1024;
/// How a call goes on from its head.
pub(crate) enum Call {
    /// To the leased worker.
    Forward(Lease),
    /// Every worker is full: it waits for one with room, then goes like
    /// `Forward` (its head, without a worker's name, is in `conn`).
    Wait,
    /// A small body is still on its way: it is read whole, after the head
    /// in `conn`, before a worker is chosen (nginx's request
    /// buffering), so the call can go again like any request held whole.
    Hold,
}

/// Serves a call whose head is in `conn`; whether the client
/// connection can carry another request.
pub(crate) async fn serve(shard: &Shard, conn: &mut Conn, call: Call, meta: RequestMeta) -> bool {
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
pub(crate) fn holds(framing: Framing, limit: usize) -> bool {
    match framing {
        Framing::Length(n) => n <= limit as u64,
        Framing::Chunked => limit > 0,
        Framing::None | Framing::Close => false,
    }
}

/// Reads the body of a `Call::Hold` after its head, each read within
/// `timeouts.client_body`, then places the call as `plan` would have: to
/// a worker with room, or into the queue. A chunked body that outgrows
/// `limits.buffer_body_bytes` streams on from where holding it stopped.
async fn hold_and_forward(shard: &Shard, conn: &mut Conn, mut meta: RequestMeta) -> bool {
    if meta.expect_continue {
        if conn.send_continue().await.is_err() {
            shard.record_refused(conn, None);
            return false;
        }
        meta.expect_continue = false;
    }
    let config = shard.config();
    let (hold, max) = (config.limits.buffer_body_bytes, config.limits.max_body_bytes);
    match conn.hold_body(meta.framing, hold, max, config.timeouts.client_body).await {
        Ok(Copied::Whole) => meta = RequestMeta { held_whole: true, whole_body: Some(0), ..meta },
        Ok(Copied::Partial(decoder)) => meta.chunked = decoder,
        Err(error) => {
            shard.record_refused(conn, error.as_ref().map(Error::status));
            if let Some(error) = error {
                conn.send_error(&error, false, Some(meta)).await;
            }
            return false;
        }
    }
    match shard.place(conn.function()) {
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
    let waited =
        shard.queue.wait(&shard.scheduler, conn.function(), queue.limit, queue.timeout, conn.client_gone()).await;
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
    /// Nothing of the request went to any worker (no connection could be
    /// made): it is answered like a request whose body is of no use.
    Unsent(Error),
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

/// The workers a call went to (to connect, or to ask), and what is left of
/// its retries: `retries.connect` after connections that failed (nothing
/// was sent), `retries.overload` after answers that the worker is
/// overloaded (a request held whole goes again).
struct Tries {
    tried: [WorkerId; 2 * (MAX_RETRIES as usize + 1)],
    len: usize,
    connects_left: u32,
    bounces_left: u32,
}

impl Tries {
    fn new(retries: Retries) -> Tries {
        Tries {
            tried: [0; 2 * (MAX_RETRIES as usize + 1)],
            len: 0,
            connects_left: retries.connect,
            bounces_left: retries.overload,
        }
    }

    /// The call goes to `worker`.
    fn note(&mut self, worker: WorkerId) {
        if !self.tried[..self.len].contains(&worker) && self.len < self.tried.len() {
            self.tried[self.len] = worker;
            self.len += 1;
        }
    }

    /// The least loaded worker with room not tried yet, after a connection
    /// failed, if a retry is left.
    fn after_connect_failed(&mut self, scheduler: &Scheduler) -> Option<Lease> {
        self.connects_left = self.connects_left.checked_sub(1)?;
        scheduler.select_other(&self.tried[..self.len])
    }

    /// The workers tried so far, if a bounce is left.
    fn bounce_from(&self) -> Option<&[WorkerId]> {
        (self.bounces_left > 0).then_some(&self.tried[..self.len])
    }
}

/// Forwards the request whose head is in `conn` (already rewritten) and
/// whose body follows from the client. Returns whether the client
/// connection can carry another request.
///
/// One loop tries again where that is safe, as each try's end says: a
/// connection that could not be made (nothing sent) goes to another worker
/// (`retries.connect`); a pooled connection the worker had closed gets the
/// request again on a new one if it is idempotent and held whole; an
/// answer that the worker is overloaded sends a request held whole to
/// another worker (`retries.overload`).
///
/// The lease is released as soon as the worker's part is over, before the
/// last bytes go to the client: a client that sends its next call the moment
/// it has the answer must find the worker idle (and, for pull-based, warm).
pub(crate) async fn forward(shard: &Shard, conn: &mut Conn, mut lease: Lease, mut meta: RequestMeta) -> bool {
    let started = Instant::now();
    if conn.stage_whole(meta, WHOLE_LIMIT) {
        meta = RequestMeta { held_whole: true, whole_body: Some(0), ..meta };
    }
    let mut tries = Tries::new(shard.config().retries);
    let mut pooled = true;
    let result = loop {
        let worker = lease.worker();
        tries.note(worker.id());
        let upstream = match pooled.then(|| shard.pool.take(worker)).flatten() {
            Some(stream) => Upstream { stream, reused: true },
            None => match connect(shard, worker).await {
                Ok(stream) => Upstream { stream, reused: false },
                Err(error) => {
                    let Some(next) = tries.after_connect_failed(&shard.scheduler) else {
                        break Err(Failure::Unsent(error));
                    };
                    log::debug!("{error}; trying {} instead", next.worker().url());
                    shard.counters().decision(Decision::Retried);
                    conn.retarget_host(meta, Some(worker), next.worker());
                    let failed = std::mem::replace(&mut lease, next);
                    shard.scheduler.release(conn.function(), failed, Outcome::Failed);
                    // A new connection to the next one too, as the first
                    // try would have made.
                    pooled = false;
                    continue;
                }
            },
        };
        pooled = true;
        match exchange(shard, conn, worker, upstream, meta, tries.bounce_from(), started).await {
            Exchanged::Done(result, end) => {
                if let Some(end) = end {
                    shard.scheduler.call_ended(conn.function(), &lease, end);
                }
                break result;
            }
            Exchanged::Resend => pooled = false,
            Exchanged::Bounced(next) => {
                log::debug!("{} is overloaded; sending the call to {}", worker.url(), next.worker().url());
                shard.counters().decision(Decision::Bounced);
                conn.retarget_host(meta, Some(worker), next.worker());
                let refused = std::mem::replace(&mut lease, next);
                shard.scheduler.refused(conn.function(), refused);
                tries.bounces_left -= 1;
            }
        }
    };
    settle(shard, conn, lease, &result, started);
    conn.drop_answer();
    match result {
        Ok(Relayed { keep_alive, .. }) => conn.finish_answer(shard.config().timeouts.client_send).await && keep_alive,
        Err(Failure::Unsent(error)) => conn.answer_error(&error, meta).await,
        Err(Failure::Answer { error, body_read }) => {
            let keep = body_read && meta.keep_alive;
            conn.send_error(&error, keep, Some(meta)).await && keep
        }
        Err(Failure::ClientGone { .. } | Failure::Close) => false,
    }
}

/// Tells the balancer how the call on `lease` ended (and what a worker's
/// answer said, for one that learns), counts and logs it, and releases
/// the lease.
fn settle(shard: &Shard, conn: &Conn, lease: Lease, result: &Result<Relayed, Failure>, started: Instant) {
    let outcome = match result {
        Ok(Relayed { code, .. }) | Err(Failure::ClientGone { code }) => outcome(*code),
        Err(Failure::Unsent(_) | Failure::Answer { .. } | Failure::Close) => Outcome::Failed,
    };
    if let (Ok(Relayed { answer: Some(answer), .. }), Outcome::Completed) = (result, outcome) {
        shard.scheduler.observe(conn.function(), &lease, *answer);
    }
    let status = match result {
        Ok(Relayed { code, .. }) | Err(Failure::ClientGone { code }) => Some(*code),
        Err(Failure::Unsent(error) | Failure::Answer { error, .. }) => Some(error.status()),
        Err(Failure::Close) => None,
    };
    shard.record_call(conn, Some(lease.worker()), status, started.elapsed());
    shard.scheduler.release(conn.function(), lease, outcome);
}

/// How an exchange with one worker ended: with an answer for the client
/// (or a failure) and what it says of the worker; with the worker saying
/// it is overloaded and the call leased to another; or on a pooled
/// connection the worker had closed, before any answer, with a request
/// that may go again on a new one.
enum Exchanged {
    Done(Result<Relayed, Failure>, Option<CallEnd>),
    Bounced(Lease),
    Resend,
}

/// A connection to a worker, and whether it came from the pool.
struct Upstream {
    stream: TcpStream,
    reused: bool,
}

/// A request sent and its answer's head read: when it was sent (for a
/// balancer that learns), and whether the worker stopped taking the
/// request body before its end.
struct Sent {
    sent_at: Option<Instant>,
    body_cut: bool,
}

/// Why a request got no answer head from its worker: the client's side
/// failed (the exchange ends so), or the worker's did.
enum NoHead {
    Client(Failure),
    Worker(HeadError),
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

/// Opens a new connection to `worker`, within `timeouts.upstream_connect`,
/// and counts how it went for the worker's health.
async fn connect(shard: &Shard, worker: &Arc<Worker>) -> Result<TcpStream, Error> {
    match pool::connect(worker, shard.config().timeouts.upstream_connect).await {
        Ok(stream) => {
            worker.connect_succeeded();
            Ok(stream)
        }
        Err(e) => {
            shard.scheduler.connect_failed(worker);
            Err(Error::WorkerUnreachable { worker: worker.url().to_string(), cause: e.to_string() })
        }
    }
}

/// The error a client gets for a worker's answer head that did not come
/// (within `within`) or is not HTTP.
fn head_error(e: HeadError, worker: &Worker, within: Duration) -> Error {
    let worker = worker.url().to_string();
    match e {
        HeadError::TimedOut => Error::WorkerTimeout { worker, within },
        HeadError::Io(e) => Error::WorkerUnreachable { worker, cause: e.to_string() },
        HeadError::Closed => Error::WorkerUnreachable { worker, cause: "connection closed before a response".into() },
        HeadError::Invalid(cause) => Error::BadResponse { worker, cause },
    }
}

/// Sends the request on `upstream` and relays the worker's answer; with
/// `bounce_from` (the workers tried so far), an answer that the worker is
/// overloaded sends a request held whole to another worker instead, if
/// there is one. The call began at `began`.
async fn exchange(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    upstream: Upstream,
    meta: RequestMeta,
    bounce_from: Option<&[WorkerId]>,
    began: Instant,
) -> Exchanged {
    let Upstream { stream: mut up, reused } = upstream;
    match send_and_read_head(shard, conn, worker, &mut up, meta).await {
        Ok(Sent { sent_at, body_cut }) => {
            let end = call_end(conn.answer(), began.elapsed());
            if let Some(asked) = bounce_from.filter(|_| meta.held_whole && end == CallEnd::Overloaded) {
                if let Some(next) = shard.scheduler.select_other(asked) {
                    // The rest of this answer is never read: the connection goes.
                    conn.drop_answer();
                    return Exchanged::Bounced(next);
                }
            }
            // The rest of a cut-off body is still on its way: close after answering.
            let meta = RequestMeta { keep_alive: meta.keep_alive && !body_cut, ..meta };
            Exchanged::Done(relay_response(shard, conn, worker, up, meta, sent_at).await, Some(end))
        }
        Err(NoHead::Client(failure)) => Exchanged::Done(Err(failure), None),
        Err(NoHead::Worker(e)) => {
            let closed = matches!(e, HeadError::Io(_) | HeadError::Closed);
            if reused && closed {
                // The worker closed a connection it had kept: its other idle
                // ones on this core are likely gone too (it died, say).
                shard.pool.forget(worker);
                // Closed while idle, before any answer: nothing ran, and a
                // request held whole that may run twice goes again.
                if meta.held_whole && meta.idempotent && conn.answer().is_empty() {
                    return Exchanged::Resend;
                }
            }
            let error = head_error(e, worker, shard.config().timeouts.upstream_response);
            Exchanged::Done(Err(Failure::Answer { error, body_read: meta.held_whole }), Some(CallEnd::Failed))
        }
    }
}

/// Sends the request on `up`: whole in one write if it is held whole,
/// else its head and then its body streamed from the client (each read
/// within `timeouts.client_body`, all of it within
/// `limits.max_body_bytes`); then reads the worker's answer head.
async fn send_and_read_head(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    up: &mut TcpStream,
    meta: RequestMeta,
) -> Result<Sent, NoHead> {
    let config = shard.config();
    let within = config.timeouts.upstream_response;
    let sent = if meta.held_whole {
        conn.send_whole(up).await
    } else {
        let bounds = Bounds {
            read_within: config.timeouts.client_body,
            write_within: within,
            max_bytes: config.limits.max_body_bytes,
        };
        conn.send_streaming(up, meta, bounds).await
    };
    match sent {
        Ok(()) => {
            let sent_at = shard.scheduler.learns().then(Instant::now);
            match conn.read_answer_head_unless_gone(up, within).await {
                Some(head) => head.map_err(NoHead::Worker)?,
                None => {
                    // The worker runs the call to its end all the same
                    // (OpenLambda sends it to the sandbox with a context of
                    // its own, which the client's leaving does not cancel):
                    // it keeps its slot until the worker answers, or for the
                    // answer's time limit, so that a capacity or an adaptive
                    // limit never sends the worker more calls than it runs.
                    log::debug!("the client left while {} worked on its call", worker.url());
                    let _ = conn.read_answer_head(up, within).await;
                    return Err(NoHead::Client(Failure::Close));
                }
            }
            Ok(Sent { sent_at, body_cut: false })
        }
        // The worker stopped taking the body: it may have answered early
        // (a 413, say). Relay that answer if there is one.
        Err(CopyError::Write(e)) => match conn.read_answer_head(up, within).await {
            Ok(()) => Ok(Sent { sent_at: None, body_cut: !meta.held_whole }),
            Err(_) => Err(NoHead::Worker(HeadError::Io(e))),
        },
        Err(e) => Err(NoHead::Client(match conn::client_body_error(e) {
            Some(error) => Failure::Answer { error, body_read: false },
            None => Failure::Close,
        })),
    }
}

/// What the answer's head says for a balancer that learns: the worker's
/// `X-Cold-Start` and `X-Service-Ms`, if it sent them, for a request sent at
/// `sent_at` and answered now.
fn answer(headers: http::Headers, sent_at: Instant) -> Answer {
    let elapsed = sent_at.elapsed();
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

/// Relays the answer whose head `conn` read from `up`, all but its last
/// piece, which `conn` keeps for `forward` to send; a worker connection
/// read to the answer's end goes back to the pool.
async fn relay_response(
    shard: &Shard,
    conn: &mut Conn,
    worker: &Worker,
    mut up: TcpStream,
    meta: RequestMeta,
    sent_at: Option<Instant>,
) -> Result<Relayed, Failure> {
    let head = conn.pass_answer_head(meta, |headers| sent_at.map(|at| answer(headers, at)));
    let decode = head.framing == Framing::Chunked && meta.version == Version::Http10;
    let keep_alive = meta.keep_alive && !(head.framing == Framing::Close || decode);
    let timeouts = shard.config().timeouts;
    let bounds =
        Bounds { read_within: timeouts.upstream_response, write_within: timeouts.client_send, max_bytes: u64::MAX };
    match conn.pass_answer_body(&mut up, head.framing, decode, bounds).await {
        Ok(drained) => {
            if head.reusable && drained {
                shard.pool.put(worker, up);
            }
            Ok(Relayed { code: head.code, keep_alive, answer: head.learned })
        }
        Err(e) => {
            // The head is out: all that is left is to cut the answer short.
            log::debug!("response from {} cut short: {e}", worker.url());
            Err(match e {
                CopyError::Write(_) => Failure::ClientGone { code: head.code },
                CopyError::Read(_) | CopyError::ReadTimeout(_) | CopyError::Framing(_) | CopyError::TooLarge(_) => {
                    Failure::Close
                }
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::BalancerKind;
    use crate::worker::WorkerUrl;

    #[test]
    fn a_call_tries_each_worker_once_within_its_retries() {
        let urls = (1..=3).map(|i| (WorkerUrl::parse(&format!("http://w{i}:1")).unwrap(), vec![])).collect();
        let s = Scheduler::new(BalancerKind::LeastConnections, urls);
        let first = s.workers().as_slice()[0].id();
        let mut tries = Tries::new(Retries { connect: 5, overload: 1 });
        tries.note(first);
        tries.note(first);
        assert_eq!(tries.bounce_from(), Some(&[first][..]), "a worker is noted once");
        let mut leases = Vec::new();
        while let Some(next) = tries.after_connect_failed(&s) {
            assert!(!tries.tried[..tries.len].contains(&next.worker().id()), "a worker not tried yet");
            tries.note(next.worker().id());
            leases.push(next);
        }
        assert_eq!((leases.len(), tries.connects_left), (2, 2), "every worker once, then none left");
        // Out of retries: no other worker, and no bounce.
        let mut spent = Tries::new(Retries { connect: 0, overload: 0 });
        spent.note(first);
        assert!(spent.after_connect_failed(&s).is_none());
        assert_eq!(spent.bounce_from(), None);
    }
}
