//! The shards: one per core, each accepting on its own SO_REUSEPORT
//! listener (pinned shards: steered away from the core that took the
//! connection's SYN, [`crate::steering`]) and serving its connections start
//! to finish, routing each request to the proxy or to hiku's own endpoints.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;
use socket2::{Domain, Protocol, Socket, Type};

use crate::admin;
use crate::config::{Config, Limits, Timeouts};
use crate::conn::{BodyRead, Conn, Shard, HOT_IDLE};
use crate::error::Error;
use crate::http::{self, Framing};
use crate::metrics::Decision;
use crate::parking::Parking;
use crate::pool::Pool;
use crate::proxy::{self, RequestMeta};
use crate::runtime::{self, Driver, TcpListener};
use crate::scheduler::{Scheduler, Unplaced};
use crate::shutdown;
use crate::worker::Lease;

const LISTEN_BACKLOG: i32 = 4096;
/// Largest body hiku reads for its own endpoints (`destroySandbox`, admin).
const LOCAL_BODY_LIMIT: u64 = 64 * 1024;
/// How long a connection hiku closes keeps being read (and the bytes
/// dropped), so that a client still sending does not get a reset that
/// destroys the answer before it is read (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(2);
/// How often each core closes idle connections to removed or closed workers.
const POOL_SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a core at `limits.max_connections` waits before looking again.
const FULL_PAUSE: Duration = Duration::from_millis(10);
/// How often each core gives the memory it freed back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Where a request goes, by its path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Run(&'a str),
    DestroySandbox(&'a str),
    Status,
    AddWorkers,
    RemoveWorkers,
    Instances,
    Reload,
    Metrics,
    /// A `/run` or `/destroySandbox` path without exactly two segments.
    BadPath,
    NotFound,
}

fn route(path: &str) -> Route<'_> {
    match path {
        "/status" => return Route::Status,
        "/admin/workers/add" => return Route::AddWorkers,
        "/admin/workers/remove" => return Route::RemoveWorkers,
        "/admin/instances" => return Route::Instances,
        "/admin/reload" => return Route::Reload,
        "/metrics" => return Route::Metrics,
        _ => {}
    }
    let mut segments = path.trim_matches('/').split('/');
    let first = segments.next().unwrap_or("");
    if first != "run" && first != "destroySandbox" {
        return Route::NotFound;
    }
    match (segments.next(), segments.next()) {
        (Some(f), None) if !f.is_empty() && first == "run" => Route::Run(f),
        (Some(f), None) if !f.is_empty() => Route::DestroySandbox(f),
        _ => Route::BadPath,
    }
}

/// Serves `conn` in a task of its own until it closes, or parks it when it
/// falls quiet.
fn spawn_serve(shard: Rc<Shard>, conn: Conn) {
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

/// Waits, in a task of a few hundred bytes (a serving task is a few KiB),
/// until a quiet connection has something to read, then serves it again.
/// The shard's [parking](crate::parking) shuts it down if nothing comes
/// before `timeouts.client_idle` is up.
fn park(shard: Rc<Shard>, mut conn: Conn) {
    let left = shard.config().timeouts.client_idle.saturating_sub(HOT_IDLE);
    if left.is_zero() || shutdown::draining() {
        return;
    }
    let parked = shard.parking.park(&mut conn.spot, conn.client.as_raw_fd(), Instant::now() + left);
    runtime::spawn(async move {
        let ready = runtime::readable(&conn.client).await;
        let shut = parked.was_shut();
        drop(parked);
        if ready.is_ok() && !shut {
            spawn_serve(shard, conn);
        }
    });
}

/// Serves one client connection until it closes or can't go on (`None`), or
/// falls quiet between requests (`Some`: to be parked).
async fn serve(shard: Rc<Shard>, mut conn: Conn) -> Option<Conn> {
    loop {
        conn.input_done = false;
        if conn.served >= crate::handoff::SETTLED && conn.rbuf.is_empty() && !shutdown::draining() {
            if let Some(to) = shard.handoff.wanted() {
                match conn.move_to(&shard.handoff, to) {
                    None => return None,
                    Some(stays) => conn = stays,
                }
            }
        }
        shard.refresh_config();
        let config = shard.config();
        match read_request_head(&mut conn, config.timeouts, config.limits).await {
            Ok(Head::Ready) => {}
            Ok(Head::Closed) => return None,
            Ok(Head::Quiet) => return Some(conn),
            Err(e) => {
                conn.send_error(&e, false, None).await;
                break;
            }
        }
        if !serve_one(&shard, &mut conn).await {
            break;
        }
        conn.served += 1;
    }
    // A client that sent all of its last request gets a plain close, as
    // anything it sends now is a request it was told would not be read.
    if !(conn.input_done && conn.rbuf.is_empty()) {
        linger_close(&mut conn).await;
    }
    None
}

/// Closes our side, then drops what the client still sends until it closes
/// too or `LINGER` runs out.
async fn linger_close(conn: &mut Conn) {
    if runtime::shutdown_write(&mut conn.client).await.is_err() {
        return;
    }
    let drain = async {
        loop {
            conn.rbuf.clear();
            if matches!(conn.rbuf.fill(&mut conn.client).await, Ok(0) | Err(_)) {
                return Ok(());
            }
        }
    };
    let _: Result<io::Result<()>, _> = runtime::timeout(LINGER, drain).await;
}

/// What waiting for a request head came to.
enum Head {
    /// A whole head is in `conn.rbuf`.
    Ready,
    /// The client closed the connection first.
    Closed,
    /// Nothing came for a while: the connection holds no buffer.
    Quiet,
}

/// The answer to a head over `limits`.
fn head_too_large(limits: Limits) -> Error {
    Error::HeadTooLarge { bytes: limits.max_header_bytes, fields: limits.max_headers }
}

/// Parses the request head at the start of `data` within `limits`.
fn parse_head<'h, 'b>(
    data: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
    limits: Limits,
) -> Result<Option<http::Request<'h, 'b>>, Error> {
    match http::parse_request(data, &mut headers[..limits.max_headers]) {
        Ok(Some(req)) if req.head_len > limits.max_header_bytes => Err(head_too_large(limits)),
        Ok(None) if data.len() >= limits.max_header_bytes => Err(head_too_large(limits)),
        Err(Error::HeadTooLarge { .. }) => Err(head_too_large(limits)),
        parsed => parsed,
    }
}

/// Waits for a complete request head in `conn.rbuf`: the rest of it must
/// come within `timeouts.client_header` of its first bytes.
async fn read_request_head(conn: &mut Conn, timeouts: Timeouts, limits: Limits) -> Result<Head, Error> {
    if conn.rbuf.is_empty() {
        match conn.wait_request(timeouts.client_idle).await {
            Ok(Some(0)) | Err(_) => return Ok(Head::Closed),
            Ok(None) => return Ok(Head::Quiet),
            Ok(Some(_)) => {}
        }
    }
    let mut scanned = 0;
    // Set at the first wait: a head that came whole costs no clock reading.
    let mut deadline = None;
    loop {
        if proxy::head_end(conn.rbuf.data(), scanned).is_some() {
            return Ok(Head::Ready);
        }
        if !conn.rbuf.is_empty() {
            // Reject garbage early instead of waiting for a blank line.
            let mut headers = http::empty_headers();
            parse_head(conn.rbuf.data(), &mut headers, limits)?;
        }
        scanned = conn.rbuf.data().len();
        if conn.rbuf.is_full() {
            return Err(head_too_large(limits));
        }
        let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeouts.client_header);
        let left = deadline.saturating_duration_since(Instant::now());
        match runtime::timeout(left, conn.rbuf.fill(&mut conn.client)).await {
            Ok(Ok(0) | Err(_)) => return Ok(Head::Closed),
            Ok(Ok(_)) => {}
            Err(_) => return Err(Error::ClientTimeout { what: "whole request head", within: timeouts.client_header }),
        }
    }
}

/// Serves the request whose head is in `conn.rbuf`; false to close.
async fn serve_one(shard: &Shard, conn: &mut Conn) -> bool {
    match plan(shard, conn) {
        Plan::Forward(lease, meta) => proxy::forward(shard, conn, lease, meta).await,
        // Only when workers are full: boxed like a local answer.
        Plan::Wait(meta) => Box::pin(wait_and_forward(shard, conn, meta)).await,
        // Only for a body that came after its head: boxed too.
        Plan::Hold(meta) => Box::pin(hold_and_forward(shard, conn, meta)).await,
        // Rare: boxed, so that its state does not size every connection's task.
        Plan::Local(local, meta) => Box::pin(serve_local(shard, conn, local, meta)).await,
        Plan::Refuse(e) => {
            conn.send_error(&e, false, None).await;
            false
        }
    }
}

/// What to do with a request, decided from its head alone.
enum Plan {
    /// To the leased worker: the rewritten head is in `conn.out`.
    Forward(Lease, RequestMeta),
    /// Every worker is full: the call waits for one with room, then goes
    /// like `Forward` (the head, without a worker's name, is in `conn.out`).
    Wait(RequestMeta),
    /// A small body is still on its way: it is read whole, after the head
    /// in `conn.out`, before a worker is chosen (nginx's request
    /// buffering), so the call can go again like any request held whole.
    Hold(RequestMeta),
    Local(Local, RequestMeta),
    /// A head that can't be parsed: answer and close.
    Refuse(Error),
}

/// Whether `peer` is an address of a worker (as its name resolved).
fn from_a_worker(shard: &Shard, peer: IpAddr) -> bool {
    shard.scheduler.workers().iter().any(|w| w.addrs().iter().any(|a| a.ip().to_canonical() == peer))
}

/// Whether an admin request may go on: no `admin.token`, or it carries
/// `Authorization: Bearer <token>` (compared in constant time).
fn admin_allowed(config: &Config, headers: &[httparse::Header]) -> bool {
    let Some(token) = &config.admin_token else { return true };
    let given = headers.iter().filter(|h| h.name.eq_ignore_ascii_case("authorization")).map(|h| h.value);
    given.into_iter().any(|value| {
        let value = value.trim_ascii();
        match value.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => {
                constant_time_eq(value[7..].trim_ascii_start(), token.as_bytes())
            }
            _ => false,
        }
    })
}

/// `a == b`, taking the same time whatever the bytes (the length of `b`,
/// the secret, leaks only as the loop count over the longer of the two).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

/// Parses the head in `conn.rbuf`, routes it and, for `/run`, leases a
/// worker and writes the head it gets; consumes the head. Not async: the
/// parsed fields (a large array) never live across an await.
fn plan(shard: &Shard, conn: &mut Conn) -> Plan {
    let mut headers = http::empty_headers();
    let req = match parse_head(conn.rbuf.data(), &mut headers, shard.config().limits) {
        Ok(Some(req)) => req,
        Ok(None) => return Plan::Refuse(Error::BadRequest("incomplete request head".into())),
        Err(e) => return Plan::Refuse(e),
    };
    // Malformed body framing already in view is the client's error: found
    // before a worker is leased (and, for pull-based, a warm entry used up).
    let body = http::buffered_body_len(&conn.rbuf.data()[req.head_len..], req.framing);
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
        in_out: false,
        chunked: http::ChunkedDecoder::default(),
    };
    conn.input_done = meta.whole_body.is_some();
    let head_len = req.head_len;
    let mut route = route(req.path());
    // With admin.listen, its endpoints are there alone, and nothing else is.
    let admin_route = matches!(
        route,
        Route::Status | Route::Metrics | Route::AddWorkers | Route::RemoveWorkers | Route::Instances | Route::Reload
    );
    if shard.config().admin_listen.is_some() && admin_route != conn.admin {
        route = Route::NotFound;
    }
    let local = match route {
        Route::Run(function) => {
            let max_body = shard.config().limits.max_body_bytes;
            if let Err(e) = body {
                Local::Error(Error::BadRequest(e.to_string()))
            } else if matches!(req.framing, Framing::Length(n) if n > max_body)
                || matches!(body, Ok(Some((_, data))) if data > max_body)
            {
                Local::Error(Error::BodyTooLarge(max_body))
            } else {
                conn.function.clear();
                conn.function.push_str(function);
                if shard.access.is_some() {
                    conn.request_line.clear();
                    conn.request_line.push_str(req.method);
                    conn.request_line.push(' ');
                    conn.request_line.push_str(req.origin_target());
                }
                let hold = meta.whole_body.is_none() && holds(req.framing, shard.config().limits.buffer_body_bytes);
                // A held call is placed once its body is in.
                let placed = match hold && !shard.scheduler.workers().is_empty() {
                    true => Err(Unplaced::Full),
                    false => place(shard, function),
                };
                if matches!(placed, Err(Unplaced::NoWorkers)) {
                    account_refused(shard, conn, Some(Error::NoWorkers.status()));
                    Local::Error(Error::NoWorkers)
                } else {
                    // A call that waits gets its worker's name in a `Host`
                    // hiku adds once it has one.
                    let authority = placed.as_ref().map_or("", |lease| lease.worker().url().authority());
                    conn.out.clear();
                    let added_host =
                        http::write_request_head(&mut conn.out, &req, authority, conn.client_ip.as_bytes());
                    conn.rbuf.consume(head_len);
                    let meta = RequestMeta { added_host, ..meta };
                    return match placed {
                        Ok(lease) => Plan::Forward(lease, meta),
                        Err(_) if hold => Plan::Hold(meta),
                        Err(_) => Plan::Wait(meta),
                    };
                }
            }
        }
        Route::DestroySandbox(_) if shard.config().destroy_only_from_workers && !from_a_worker(shard, conn.peer) => {
            Local::Error(Error::Forbidden(format!("destroySandbox is taken only from workers, not from {}", conn.peer)))
        }
        Route::DestroySandbox(function) => Local::DestroySandbox(function.to_string()),
        Route::Status => Local::Status,
        Route::Metrics => Local::Metrics,
        Route::AddWorkers | Route::RemoveWorkers | Route::Instances | Route::Reload
            if !admin_allowed(&shard.config(), req.headers) =>
        {
            Local::Error(Error::Unauthorized)
        }
        Route::AddWorkers => Local::AddWorkers(req.query().to_string()),
        Route::RemoveWorkers => Local::RemoveWorkers(req.query().to_string()),
        Route::Instances => Local::Instances(req.query().to_string()),
        Route::Reload => Local::Reload,
        Route::BadPath => {
            Local::Error(Error::BadRequest(format!("could not find a function name in path {}", req.path())))
        }
        Route::NotFound => Local::Error(Error::NotFound(format!("no such endpoint: {}", req.path()))),
    };
    conn.rbuf.consume(head_len);
    Plan::Local(local, meta)
}

/// A request hiku answers itself.
enum Local {
    DestroySandbox(String),
    Status,
    AddWorkers(String),
    RemoveWorkers(String),
    Instances(String),
    Reload,
    Metrics,
    Error(Error),
}

/// The balancer's choice for a call of `function`, counted (and one in
/// `DECISION_SAMPLE` timed) for `/metrics`.
fn place(shard: &Shard, function: &str) -> Result<Lease, Unplaced> {
    let untimed = shard.untimed.get();
    shard.untimed.set(if untimed + 1 >= crate::metrics::DECISION_SAMPLE { 0 } else { untimed + 1 });
    let timed = (untimed == 0).then(Instant::now);
    let lease = shard.scheduler.place(function)?;
    if let Some(at) = timed {
        shard.counters().decision_time(at.elapsed());
    }
    count_decision(shard, &lease);
    Ok(lease)
}

/// Counts whether a call took a warm instance, for balancers that know.
fn count_decision(shard: &Shard, lease: &Lease) {
    if shard.scheduler.tracks_warm() {
        let decision = if lease.hint() > 0 { Decision::Warm } else { Decision::Fallback };
        shard.counters().decision(decision);
    }
}

/// Counts a `/run` call that no worker had, answered with `status` by hiku
/// itself (none: the client left), and logs it if there is an access log.
fn account_refused(shard: &Shard, conn: &Conn, status: Option<u16>) {
    if let Some(status) = status {
        shard.counters().call(status, Duration::ZERO);
    }
    if let Some(log) = &shard.access {
        log.call(&conn.client_ip, &conn.request_line, status.unwrap_or(0), None, Duration::ZERO);
    }
}

/// Whether a `/run` body framed as `framing` that did not come with its
/// head is held whole before the call goes to a worker: one of at most
/// `limit` bytes by its length, or any chunked one (read up to `limit`,
/// then streamed).
fn holds(framing: Framing, limit: usize) -> bool {
    match framing {
        Framing::Length(n) => n <= limit as u64,
        Framing::Chunked => limit > 0,
        Framing::None | Framing::Close => false,
    }
}

/// Reads the body of a `Plan::Hold` call into `conn.out` (after its head),
/// each read within `timeouts.client_body`, then places the call as
/// `plan` would have: to a worker with room, or into the queue. A chunked
/// body that outgrows `limits.buffer_body_bytes` streams on from where
/// holding it stopped.
async fn hold_and_forward(shard: &Shard, conn: &mut Conn, mut meta: RequestMeta) -> bool {
    if meta.expect_continue {
        if conn.send_continue().await.is_err() {
            account_refused(shard, conn, None);
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
        Ok(BodyRead::Whole) => {
            conn.input_done = true;
            meta.in_out = true;
            meta.whole_body = Some(0);
        }
        Ok(BodyRead::Partial(decoder)) => meta.chunked = decoder,
        Err(error) => {
            account_refused(shard, conn, error.as_ref().map(Error::status));
            if let Some(error) = error {
                conn.send_error(&error, false, Some(meta)).await;
            }
            return false;
        }
    }
    match place(shard, &conn.function) {
        Ok(lease) => {
            if meta.added_host {
                http::retarget_host(&mut conn.out, "", lease.worker().url().authority());
            }
            proxy::forward(shard, conn, lease, meta).await
        }
        Err(Unplaced::Full) => wait_and_forward(shard, conn, meta).await,
        Err(Unplaced::NoWorkers) => {
            account_refused(shard, conn, Some(Error::NoWorkers.status()));
            conn.answer_error(&Error::NoWorkers, meta).await
        }
    }
}

/// Waits in the core's queue for a worker with room, then forwards the
/// call; a full queue or a wait past `queue.timeout_ms` is a **503**. A
/// client that leaves meanwhile takes its call out of the queue.
async fn wait_and_forward(shard: &Shard, conn: &mut Conn, meta: RequestMeta) -> bool {
    let queue = shard.config().queue;
    let gone = proxy::client_gone(&conn.client);
    let waited = shard.queue.wait(&shard.scheduler, &conn.function, queue.limit, queue.timeout, gone).await;
    match waited {
        Some(Ok(lease)) => {
            shard.counters().decision(Decision::Queued);
            count_decision(shard, &lease);
            if meta.added_host {
                http::retarget_host(&mut conn.out, "", lease.worker().url().authority());
            }
            proxy::forward(shard, conn, lease, meta).await
        }
        Some(Err(error)) => {
            account_refused(shard, conn, Some(error.status()));
            conn.answer_error(&error, meta).await
        }
        None => {
            log::debug!("a client left while its call waited for a worker");
            account_refused(shard, conn, None);
            false
        }
    }
}

async fn serve_local(shard: &Shard, conn: &mut Conn, local: Local, meta: RequestMeta) -> bool {
    let local = match local {
        Local::Error(e) => return conn.answer_error(&e, meta).await,
        local => local,
    };
    let body = match read_small_body(conn, meta, shard.config().timeouts).await {
        Ok(body) => {
            conn.input_done = true;
            body
        }
        Err(None) => return false,
        Err(Some(e)) => {
            conn.send_error(&e, false, Some(meta)).await;
            return false;
        }
    };
    let answer = match local {
        Local::Status => Ok(admin::status(shard).await),
        Local::Metrics => {
            let open: Vec<usize> = shard.handoff.open().collect();
            let text = shard.metrics.render(&shard.scheduler, &open);
            let ok = conn.send(200, "text/plain; version=0.0.4", text.as_bytes(), meta.keep_alive, Some(meta)).await;
            return ok && meta.keep_alive;
        }
        Local::AddWorkers(query) => admin::add_workers(&shard.scheduler, &query).await,
        Local::RemoveWorkers(query) => admin::remove_workers(&shard.scheduler, &query),
        Local::Instances(query) => Ok(admin::instances(&shard.scheduler, &query)),
        Local::Reload => reload(shard).await,
        Local::DestroySandbox(function) => admin::destroy_sandbox(&shard.scheduler, &function, &body).map(|removed| {
            shard.counters().sandbox_destroyed(removed);
            serde_json::json!({ "removed": removed }).to_string()
        }),
        Local::Error(_) => unreachable!("answered above"),
    };
    match answer {
        Ok(json) => {
            conn.send(200, "application/json", json.as_bytes(), meta.keep_alive, Some(meta)).await && meta.keep_alive
        }
        Err(e) => conn.send_error(&e, meta.keep_alive, Some(meta)).await && meta.keep_alive,
    }
}

/// `/admin/reload`: re-reads the config file (off the executor: it
/// resolves new workers' names) and says what changed, or why the file
/// was refused (**422**, hiku running as before).
async fn reload(shard: &Shard) -> Result<String, Error> {
    let live = Arc::clone(&shard.live);
    let outcome =
        runtime::blocking(move || live.reload()).await.unwrap_or_else(|e| Err(format!("the reload did not run: {e}")));
    crate::reload::log_outcome(outcome.clone());
    match outcome {
        Ok(changes) => Ok(serde_json::json!({ "reloaded": true, "changes": changes }).to_string()),
        Err(e) => Err(Error::ConfigRefused(e)),
    }
}

/// Reads a body of at most `LOCAL_BODY_LIMIT` bytes (its data, if
/// chunked), each read within `timeouts.client_body`. `Err(None)`: the
/// client is gone; `Err(Some(e))`: answer `e` and close.
async fn read_small_body(conn: &mut Conn, meta: RequestMeta, timeouts: Timeouts) -> Result<Vec<u8>, Option<Error>> {
    if matches!(meta.framing, Framing::Length(n) if n > LOCAL_BODY_LIMIT) {
        return Err(Some(Error::BodyTooLarge(LOCAL_BODY_LIMIT)));
    }
    if meta.expect_continue && meta.whole_body.is_none() && conn.send_continue().await.is_err() {
        return Err(None);
    }
    let mut body = Vec::new();
    let limits = (LOCAL_BODY_LIMIT as usize + 1, LOCAL_BODY_LIMIT);
    conn.read_body(meta.framing, false, &mut body, limits, timeouts.client_body).await?;
    Ok(body)
}

/// Binds one listening socket per core to `addr`, all with SO_REUSEPORT so
/// the kernel spreads connections over the cores. With port 0 the first
/// socket picks the port and the others share it.
fn bind_listeners(addr: SocketAddr, cores: usize) -> io::Result<(SocketAddr, Vec<Socket>)> {
    if addr.port() != 0 {
        // Any process of this user that also sets SO_REUSEPORT could join
        // the port and take half the connections: a socket without it finds
        // out whether the port is in use first (another hiku, say).
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let mut bound = addr;
    let mut sockets = Vec::with_capacity(cores);
    for _ in 0..cores {
        let socket = Socket::new(Domain::for_address(bound), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nodelay(true)?;
        socket.bind(&bound.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        // The epoll driver accepts with a plain accept4: it must not block.
        socket.set_nonblocking(true)?;
        if bound.port() == 0 {
            bound = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))?;
        }
        sockets.push(socket);
    }
    Ok((bound, sockets))
}

/// Binds the `admin.listen` socket (one, taken by the first shard).
fn bind_admin(addr: SocketAddr) -> io::Result<(SocketAddr, Socket)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    let bound = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))?;
    Ok((bound, socket))
}

/// Serves `config` (read from `path`, which reloads re-read) on `cores`
/// shards, each pinned to a core of its own if `pin`, until the process ends.
pub fn run(config: &Config, path: Option<&std::path::Path>, cores: usize, pin: bool) -> Result<(), String> {
    let driver = Driver::choose()?;
    crate::sys::raise_limits();
    let addr = config.listen_addr().map_err(|e| e.to_string())?;
    let (bound, sockets) = bind_listeners(addr, cores).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if let Some(pinned) = runtime::pinned_cores(cores).filter(|_| pin) {
        if let Err(e) = crate::steering::steer_away_from_syn_core(&sockets[0], pinned) {
            log::warn!("new connections are spread by the kernel's hash, not steered by core: {e}");
        }
    }
    let admin = match config.admin_addr().map_err(|e| e.to_string())? {
        Some(addr) => Some(bind_admin(addr).map_err(|e| format!("cannot listen on admin.listen {addr}: {e}"))?),
        None => None,
    };
    let balancer = config.balancer.build_with(config.limits.max_functions, config.worker_cores);
    let scheduler = Scheduler::with_balancer(config.balancer, balancer, crate::scheduler::resolve(&config.workers))
        .with_health(config.health)
        .with_cores(cores);
    scheduler.set_capacities(config.capacities());
    let scheduler = Arc::new(scheduler);
    crate::scheduler::probe_actively(Arc::downgrade(&scheduler));
    log::info!(
        "hiku {} on {bound}: {} balancer, {} workers, {cores} {} cores, {driver}",
        env!("CARGO_PKG_VERSION"),
        config.balancer,
        config.workers.len(),
        if pin { "pinned" } else { "unpinned" }
    );
    println!("listening on {bound}");
    // The admin listener goes to the first shard.
    let mut admin = admin.map(|(admin_bound, socket)| {
        log::info!("/admin and /status on {admin_bound} only");
        println!("admin listening on {admin_bound}");
        socket
    });
    let (shards, inboxes) = crate::handoff::Shards::new(cores);
    let inputs: Vec<_> = sockets.into_iter().zip(inboxes).map(|(s, inbox)| (s, admin.take(), inbox)).collect();
    let max_connections = config.limits.max_connections.unwrap_or_else(|| crate::sys::open_file_limit() / 2).max(1);
    let live = crate::reload::Live::new(path.map(Into::into), config.clone(), Arc::clone(&scheduler));
    let config = live.config();
    let metrics = Arc::new(crate::metrics::Metrics::new(cores));
    let access = match &config.access_log {
        Some(path) => Some(
            crate::access_log::open(path, cores)
                .map_err(|e| format!("cannot open log.access {}: {e}", path.display()))?,
        ),
        None => None,
    };
    if let Some(writer) = access.clone() {
        shutdown::before_exit(move || writer.finish(Duration::from_secs(1)));
    }
    let reloads = Arc::clone(&live);
    shutdown::on_reload(move || crate::reload::log_outcome(reloads.reload()));
    runtime::run_shards(inputs, driver, pin, move |i, (socket, admin, inbox)| {
        let scheduler = Arc::clone(&scheduler);

        let live = Arc::clone(&live);
        let metrics = Arc::clone(&metrics);
        let access = access.clone();
        async move {
            let adopt = |socket: Socket| TcpListener::from_std(socket.into());
            let (listener, admin) = match (adopt(socket), admin.map(adopt).transpose()) {
                (Ok(l), Ok(a)) => (l, a),
                (Err(e), _) | (_, Err(e)) => {
                    log::error!("shard {i}: cannot adopt its listener: {e}");
                    shards.retire(i);
                    return;
                }
            };
            // The function table's pins nest in this one (no fence per
            // request); trim_memory lets the epoch move on every second.
            crate::balancer::hold_epoch();
            let parking = Parking::default();
            let pool = Pool::default();
            let listeners_shut = std::cell::Cell::new(false);
            let untimed = std::cell::Cell::new(0);
            let access = access.map(|writer| writer.shard());
            let queue = crate::queue::Queue::new(i);
            let shard = Rc::new(Shard {
                scheduler,
                pool,
                cores,
                config: std::cell::RefCell::new(Rc::new(Config::clone(&live.config()))),
                config_generation: std::cell::Cell::new(live.generation()),
                live,
                parking,
                listeners_shut,
                metrics,
                core: i,
                untimed,
                access,
                queue,
                handoff: crate::handoff::Handoff::new(shards, i, inbox),
            });
            runtime::spawn(dispatch_waiting_calls(Rc::clone(&shard)));
            if cores > 1 {
                runtime::spawn(weigh_share(Rc::clone(&shard)));
                runtime::spawn(adopt_moved(Rc::clone(&shard)));
            }
            if shard.access.is_some() {
                runtime::spawn(flush_access_log(Rc::clone(&shard)));
            }
            runtime::spawn(sweep_pool(Rc::clone(&shard)));
            runtime::spawn(close_idle(Rc::clone(&shard)));
            runtime::spawn(trim_memory());
            let fds = [Some(listener.as_raw_fd()), admin.as_ref().map(|a| a.as_raw_fd())];
            runtime::spawn(watch_for_drain(Rc::clone(&shard), fds));
            if let Some(admin) = admin {
                runtime::spawn(accept_loop(Rc::clone(&shard), admin, max_connections, true));
            }
            accept_loop(shard, listener, max_connections, false).await;
            // Draining: the connections' tasks go on until the process
            // exits (crate::shutdown), which ending here would cut short.
            std::future::pending::<()>().await;
        }
    })
}

/// Accepts connections and serves them while fewer than `max_connections`
/// are open in the process; past that, new ones wait in the listen backlog
/// (and the one each core has accepted already, unserved, until there is
/// room).
/// Connections from `admin.listen` are marked `admin`.
async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, max_connections: usize, admin: bool) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                while shutdown::open_connections() >= max_connections && !shutdown::draining() {
                    runtime::sleep(FULL_PAUSE).await;
                }
                let _ = stream.set_nodelay(true);
                let mut conn = Conn::new(stream, peer, shutdown::Open::new(), shard.handoff.count());
                conn.admin = admin;
                spawn_serve(Rc::clone(&shard), conn);
            }
            // Only once the watcher has shut the listeners down: it holds
            // their descriptor numbers, which closing would free for reuse.
            Err(_) if shard.listeners_shut.get() => return,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                log::warn!("accept failed: {e}");
                runtime::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Weighs this shard's share of the connections now and then.
async fn weigh_share(shard: Rc<Shard>) {
    loop {
        runtime::sleep(crate::handoff::LOOK_EVERY).await;
        shard.handoff.look();
    }
}

/// Serves the connections other shards move here.
async fn adopt_moved(shard: Rc<Shard>) {
    loop {
        let moved = shard.handoff.next().await;
        let stream = std::net::TcpStream::from(moved.fd);
        match runtime::TcpStream::from_std(stream) {
            Ok(stream) => {
                let mut conn = Conn::new(stream, moved.peer, moved.open, shard.handoff.count());
                conn.admin = moved.admin;
                spawn_serve(Rc::clone(&shard), conn);
            }
            Err(e) => log::warn!("a connection moved here could not be adopted: {e}"),
        }
    }
}

/// Places the core's waiting calls as workers get room.
async fn dispatch_waiting_calls(shard: Rc<Shard>) {
    shard.queue.dispatch_forever(&shard.scheduler).await
}

/// When the process drains: stops the accept loop (shutting the listener
/// down wakes it; it then closes the listener) and closes the parked
/// connections; later ones are closed instead of parked.
async fn watch_for_drain(shard: Rc<Shard>, listeners: [Option<RawFd>; 2]) {
    while !shutdown::draining() {
        runtime::sleep(shutdown::LOOK_EVERY).await;
    }
    if let Some(log) = &shard.access {
        log.drained();
    }
    for listener in listeners.into_iter().flatten() {
        // SAFETY: shutdown(2) on a listener, which its accept loop keeps
        // open until `listeners_shut` says this is done.
        unsafe { libc::shutdown(listener, libc::SHUT_RDWR) };
    }
    shard.listeners_shut.set(true);
    shard.parking.sweep(Instant::now() + Duration::from_secs(86_400 * 365));
}

async fn close_idle(shard: Rc<Shard>) {
    loop {
        // As often as the client_idle in force asks (a reload may change it).
        runtime::sleep(crate::parking::sweep_every(shard.config().timeouts.client_idle)).await;
        shard.parking.sweep(Instant::now());
    }
}

async fn flush_access_log(shard: Rc<Shard>) {
    while let Some(log) = &shard.access {
        runtime::sleep(crate::access_log::FLUSH_EVERY).await;
        log.flush();
    }
}

async fn trim_memory() {
    loop {
        runtime::sleep(TRIM_EVERY).await;
        crate::balancer::repin_epoch();
        crate::sys::return_free_memory();
    }
}

async fn sweep_pool(shard: Rc<Shard>) {
    loop {
        runtime::sleep(POOL_SWEEP_EVERY).await;
        shard.pool.sweep(&shard.scheduler.workers());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        for other in [&b""[..], b"s3cre", b"s3cret2", b"S3cret", b"s3cre\xff"] {
            assert!(!constant_time_eq(other, b"s3cret"), "{other:?}");
        }
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn routes_like_the_go_original() {
        assert_eq!(route("/run/f"), Route::Run("f"));
        assert_eq!(route("/run/f/"), Route::Run("f"));
        assert_eq!(route("/run/"), Route::BadPath);
        assert_eq!(route("/run"), Route::BadPath);
        assert_eq!(route("/run/f/g"), Route::BadPath);
        assert_eq!(route("/run//f"), Route::BadPath);
        assert_eq!(route("/destroySandbox/f"), Route::DestroySandbox("f"));
        assert_eq!(route("/status"), Route::Status);
        assert_eq!(route("/admin/workers/add"), Route::AddWorkers);
        assert_eq!(route("/admin/workers/remove"), Route::RemoveWorkers);
        assert_eq!(route("/admin/instances"), Route::Instances);
        assert_eq!(route("/admin/reload"), Route::Reload);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/"), Route::NotFound);
        assert_eq!(route("/runner/f"), Route::NotFound);
        assert_eq!(route("/status/x"), Route::NotFound);
    }
}
