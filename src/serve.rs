//! The connection loop: one client connection served start to finish on
//! its shard, a request at a time. It reads each head (within its time and
//! size limits), decides from the head alone what the request is (a call
//! for a worker, [`proxy`]; one of hiku's own endpoints, [`admin`]; an
//! error), parks the connection when it falls quiet, moves it when its
//! shard holds more than its share, and closes it gently.

use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;

use crate::admin;
use crate::conn::{Conn, NextRequest, Planning, HOT_IDLE};
use crate::error::Error;
use crate::http::{self, RequestMeta};
use crate::proxy::{self, Call};
use crate::route::{self, Route};
use crate::runtime;
use crate::scheduler::Unplaced;
use crate::shard::Shard;
use crate::shutdown;

/// Serves `conn` in a task of its own until it closes, or parks it when it
/// falls quiet.
pub(crate) fn spawn(shard: Rc<Shard>, conn: Conn) {
    runtime::spawn(serve_task(shard, conn));
}

/// A connection's task. A bug that panics on some input costs one
/// connection, not the shard. (The serving future, a few KiB, is made
/// inside the task rather than moved into it: each move is a copy.)
async fn serve_task(shard: Rc<Shard>, conn: Conn) {
    match AssertUnwindSafe(serve(Rc::clone(&shard), conn)).catch_unwind().await {
        Ok(Some(conn)) => park(shard, conn),
        Ok(None) => {}
        Err(_) => log::error!("a connection task panicked; its connection was closed"),
    }
}

/// Parks a quiet connection: the shard keeps a small record of it, with
/// no task and no buffer, until it has something to read
/// ([`wake_parked`]), or closes it when `timeouts.client_idle` is up.
fn park(shard: Rc<Shard>, conn: Conn) {
    let left = shard.config().timeouts.client_idle.saturating_sub(HOT_IDLE);
    if left.is_zero() || shutdown::draining() {
        return;
    }
    if let Some((fd, dormant)) = conn.dormant() {
        if let Err(e) = shard.parking.park(fd, Instant::now() + left, dormant) {
            log::debug!("a quiet connection could not be parked, and was closed: {e}");
        }
    }
}

/// Serves the shard's parked connections again as they have something to
/// read (or their client closed them), each in a task of its own.
pub(crate) async fn wake_parked(shard: Rc<Shard>) {
    let watched = match shard.parking.ready_fd().and_then(runtime::watch) {
        Ok(watched) => watched,
        Err(e) => {
            log::error!("cannot watch the parked connections ({e}): quiet connections are closed instead");
            shard.parking.refuse();
            return;
        }
    };
    loop {
        if let Err(e) = runtime::readable(&watched).await {
            log::warn!("waiting for parked connections failed: {e}");
            runtime::sleep(Duration::from_millis(50)).await;
        }
        shard.parking.take_ready(|fd, dormant| match Conn::wake(fd, dormant) {
            Ok(conn) => spawn(Rc::clone(&shard), conn),
            Err(e) => log::warn!("a parked connection could not be served again, and was closed: {e}"),
        });
    }
}

/// Serves one client connection until it closes or can't go on (`None`), or
/// falls quiet between requests (`Some`: to be parked).
async fn serve(shard: Rc<Shard>, mut conn: Conn) -> Option<Conn> {
    if let Err(why) = accept_proxy_header(&shard, &mut conn).await {
        log::debug!("a connection from {} refused: {why}", conn.peer());
        return None;
    }
    loop {
        if conn.may_move() && !shutdown::draining() {
            if let Some(to) = shard.handoff.wanted() {
                match conn.move_to(&shard.handoff, to) {
                    None => return None,
                    Some(stays) => conn = stays,
                }
            }
        }
        shard.refresh_config();
        let config = shard.config();
        match conn.read_head(config.timeouts, config.limits).await {
            Ok(NextRequest::Head) => {}
            Ok(NextRequest::Closed) => return None,
            Ok(NextRequest::Quiet) => return Some(conn),
            Err(e) => {
                conn.send_error(&e, false, None).await;
                break;
            }
        }
        if !serve_one(&shard, &mut conn).await {
            break;
        }
    }
    conn.close().await;
    None
}

/// Reads the PROXY protocol header `conn` must start with, if it must
/// (`front.proxy_protocol`), within `timeouts.client_header`.
async fn accept_proxy_header(shard: &Shard, conn: &mut Conn) -> Result<(), String> {
    let config = shard.config();
    conn.accept_proxy_header(&config.front, config.timeouts.client_header).await
}

/// Serves the request whose head is in `conn`; false to close.
async fn serve_one(shard: &Shard, conn: &mut Conn) -> bool {
    match plan(shard, conn) {
        Plan::Call(call, meta) => proxy::serve(shard, conn, call, meta).await,
        // Rare: boxed, so that its state does not size every connection's task.
        Plan::Local(local, meta) => Box::pin(admin::serve(shard, conn, local, meta)).await,
        Plan::Refused(error, meta) => {
            // A call all the same: counted and logged as one.
            shard.record_refused(conn, Some(error.status()));
            conn.answer_error(&error, meta).await
        }
        Plan::Answer(error, meta) => conn.answer_error(&error, meta).await,
        Plan::Refuse(e) => {
            conn.send_error(&e, false, None).await;
            false
        }
    }
}

/// What to do with a request, decided from its head alone.
enum Plan {
    /// A call for a worker (its head, rewritten, is in `conn`'s outgoing
    /// buffer).
    Call(Call, RequestMeta),
    /// One of hiku's own endpoints.
    Local(admin::Local, RequestMeta),
    /// A call hiku answers itself with an error; the connection stays open
    /// if the request's whole body is in.
    Refused(Error, RequestMeta),
    /// An error for the client, as for `Refused`, of a request that is no
    /// call.
    Answer(Error, RequestMeta),
    /// A head that can't be parsed: answer and close.
    Refuse(Error),
}

/// Parses the head in `conn`, routes it and, for `/run`, leases a worker
/// and writes the head it gets; consumes the head. Not async: the parsed
/// fields (a large array) never live across an await.
fn plan(shard: &Shard, conn: &mut Conn) -> Plan {
    let config = shard.config();
    let mut headers = http::empty_headers();
    let (req, mut planning) = match conn.parse_head(&mut headers, config.limits) {
        Ok(parsed) => parsed,
        Err(e) => return Plan::Refuse(e),
    };
    // Malformed body framing already in view is the client's error: found
    // before a worker is leased (and, for pull-based, a warm entry used up).
    let body = planning.body_in_view(req.framing);
    let meta = RequestMeta {
        framing: req.framing,
        // A draining hiku answers what it was sent, and closes.
        keep_alive: req.keep_alive && !shutdown::draining(),
        version: req.version,
        head: req.is_head(),
        expect_continue: req.expect_continue,
        idempotent: req.is_idempotent(),
        whole_body: body.as_ref().ok().copied().flatten().map(|(len, _)| len),
        added_host: false,
        held_whole: false,
        chunked: http::ChunkedDecoder::default(),
    };
    let head_len = req.head_len;
    let named_by_front = planning.take_forwarded_for(&config.front, req.headers);
    let from =
        route::Sender { on_admin_listener: planning.on_admin_listener(), peer: planning.peer(), headers: req.headers };
    let plan = match route::admit(req.path(), req.query(), &from, &config, &shard.scheduler) {
        Ok(Route::Local(endpoint, arg)) => {
            let forwarded = req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("x-hiku-forwarded"));
            Plan::Local(admin::Local { endpoint, arg: arg.to_string(), forwarded }, meta)
        }
        Err(error) => Plan::Answer(error, meta),
        Ok(Route::Run(function)) => {
            planning.begin_call(function, &req, shard.access.is_some());
            match refused_body(&req, body, config.limits.max_body_bytes) {
                Some(error) => Plan::Refused(error, meta),
                None => plan_call(shard, &mut planning, &req, meta, named_by_front),
            }
        }
    };
    conn.consume_head(head_len);
    plan
}

/// Why a call's body, as its head frames it and as far as it came with the
/// head (`body`), is refused before any worker is asked: framing already
/// broken (400), or over `max_body` bytes (413).
fn refused_body(
    req: &http::Request,
    body: Result<Option<(usize, u64)>, http::ChunkError>,
    max_body: u64,
) -> Option<Error> {
    let too_large = matches!(req.framing, http::Framing::Length(n) if n > max_body)
        || matches!(body, Ok(Some((_, data))) if data > max_body);
    match body {
        Err(e) => Some(Error::BadRequest(e.to_string())),
        Ok(_) if too_large => Some(Error::BodyTooLarge(max_body)),
        Ok(_) => None,
    }
}

/// Places the call `req` on a worker (or decides it waits, or is held
/// first), and writes the head it gets.
fn plan_call(
    shard: &Shard,
    planning: &mut Planning,
    req: &http::Request,
    meta: RequestMeta,
    named_by_front: bool,
) -> Plan {
    let hold = meta.whole_body.is_none() && proxy::holds(req.framing, shard.config().limits.buffer_body_bytes);
    let call = if hold && !shard.scheduler.workers().is_empty() {
        // Placed once its body is in.
        Call::Hold
    } else {
        match shard.place(planning.function()) {
            Ok(lease) => Call::Forward(lease),
            Err(Unplaced::Full) if hold => Call::Hold,
            Err(Unplaced::Full) => Call::Wait,
            Err(Unplaced::NoWorkers) => return Plan::Refused(Error::NoWorkers, meta),
        }
    };
    // A call that waits gets its worker's name in a `Host` hiku adds once
    // it has one.
    let authority = match &call {
        Call::Forward(lease) => lease.worker().url().authority(),
        Call::Hold | Call::Wait => "",
    };
    let added_host = planning.write_request_head(req, authority, named_by_front);
    let meta = RequestMeta { added_host, ..meta };
    Plan::Call(call, meta)
}
