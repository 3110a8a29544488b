//! The connection loop: one client connection served start to finish on
//! its shard, a request at a time. It reads each head (within its time and
//! size limits), decides from the head alone what the request is (a call
//! for a worker, [`proxy`]; one of hiku's own endpoints, [`admin`]; an
//! error), parks the connection when it falls quiet, moves it when its
//! shard holds more than its share, and closes it gently.

use std::io;
use std::os::fd::AsRawFd;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::FutureExt;

use crate::admin;
use crate::config::{Limits, Timeouts};
use crate::conn::{Conn, HOT_IDLE};
use crate::error::Error;
use crate::handoff;
use crate::http::{self, RequestMeta};
use crate::proxy::{self, Call};
use crate::proxy_protocol;
use crate::route::{self, Route};
use crate::runtime;
use crate::scheduler::Unplaced;
use crate::shard::Shard;
use crate::shutdown;

/// How long a connection hiku closes keeps being read (and the bytes
/// dropped), so that a client still sending does not get a reset that
/// destroys the answer before it is read (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(2);

/// Serves `conn` in a task of its own until it closes, or parks it when it
/// falls quiet.
pub fn spawn(shard: Rc<Shard>, conn: Conn) {
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
/// The shard's parking shuts it down if nothing comes before
/// `timeouts.client_idle` is up.
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
            spawn(shard, conn);
        }
    });
}

/// Serves one client connection until it closes or can't go on (`None`), or
/// falls quiet between requests (`Some`: to be parked).
async fn serve(shard: Rc<Shard>, mut conn: Conn) -> Option<Conn> {
    if conn.awaits_proxy_header {
        conn.awaits_proxy_header = false;
        if let Err(why) = read_proxy_header(&shard, &mut conn).await {
            log::debug!("a connection from {} refused: {why}", conn.peer);
            return None;
        }
    }
    loop {
        conn.input_done = false;
        if conn.served >= handoff::SETTLED && conn.rbuf.is_empty() && !shutdown::draining() {
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

/// Reads the PROXY protocol header a connection must start with, from a
/// front in `front.trusted_proxies`, within `timeouts.client_header`, and
/// takes the client it names as the connection's peer.
async fn read_proxy_header(shard: &Shard, conn: &mut Conn) -> Result<(), String> {
    let config = shard.config();
    if !config.front.trusts(conn.peer) {
        return Err("not a trusted front (front.trusted_proxies)".into());
    }
    let within = config.timeouts.client_header;
    let read = async {
        loop {
            match proxy_protocol::parse(conn.rbuf.data()) {
                Ok(Some(header)) => return Ok(header),
                Ok(None) if conn.rbuf.is_full() => return Err("a PROXY header too long".to_string()),
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            match conn.rbuf.fill(&mut conn.client).await {
                Ok(0) => return Err("closed before its PROXY header".into()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let header = runtime::timeout(within, read).await.map_err(|_| format!("no PROXY header within {within:?}"))??;
    conn.rbuf.consume(header.len);
    if let Some(client) = header.source {
        conn.set_peer(client.ip());
    }
    Ok(())
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
        if http::head_end(conn.rbuf.data(), scanned).is_some() {
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
        Plan::Call(call, meta) => proxy::serve(shard, conn, call, meta).await,
        // Rare: boxed, so that its state does not size every connection's task.
        Plan::Local(local, meta) => Box::pin(admin::serve(shard, conn, local, meta)).await,
        Plan::Answer(error, meta) => conn.answer_error(&error, meta).await,
        Plan::Refuse(e) => {
            conn.send_error(&e, false, None).await;
            false
        }
    }
}

/// What to do with a request, decided from its head alone.
enum Plan {
    /// A call for a worker (its head, rewritten, is in `conn.out`).
    Call(Call, RequestMeta),
    /// One of hiku's own endpoints.
    Local(admin::Local, RequestMeta),
    /// An error for the client; the connection stays open if the request's
    /// whole body is in.
    Answer(Error, RequestMeta),
    /// A head that can't be parsed: answer and close.
    Refuse(Error),
}

/// Parses the head in `conn.rbuf`, routes it and, for `/run`, leases a
/// worker and writes the head it gets; consumes the head. Not async: the
/// parsed fields (a large array) never live across an await.
fn plan(shard: &Shard, conn: &mut Conn) -> Plan {
    let config = shard.config();
    let mut headers = http::empty_headers();
    let req = match parse_head(conn.rbuf.data(), &mut headers, config.limits) {
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
    // Behind a front that names the client in X-Forwarded-For (nginx):
    // believed from a trusted front only, request by request.
    let named_by_front = config.front.forwarded_for && !conn.admin && config.front.trusts(conn.socket_peer);
    if named_by_front {
        let client = http::last_forwarded_for(req.headers).unwrap_or(conn.socket_peer);
        if client.to_canonical() != conn.peer {
            // Field by field: the parsed head still borrows `conn.rbuf`.
            conn.peer = client.to_canonical();
            conn.client_ip.clear();
            let _ = std::fmt::Write::write_fmt(&mut conn.client_ip, format_args!("{}", conn.peer));
        }
    }
    let from = route::Sender { on_admin_listener: conn.admin, peer: conn.peer, headers: req.headers };
    let plan = match route::admit(req.path(), req.query(), &from, &config, &shard.scheduler) {
        Ok(Route::Local(endpoint, arg)) => {
            let forwarded = req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("x-hiku-forwarded"));
            Plan::Local(admin::Local { endpoint, arg: arg.to_string(), forwarded }, meta)
        }
        Err(error) => Plan::Answer(error, meta),
        Ok(Route::Run(function)) => {
            conn.function.clear();
            conn.function.push_str(function);
            if shard.access.is_some() {
                conn.request_line.clear();
                conn.request_line.push_str(req.method);
                conn.request_line.push(' ');
                conn.request_line.push_str(req.origin_target());
            }
            let max_body = config.limits.max_body_bytes;
            let too_large = matches!(req.framing, http::Framing::Length(n) if n > max_body)
                || matches!(body, Ok(Some((_, data))) if data > max_body);
            let refused = match body {
                Err(e) => Some(Error::BadRequest(e.to_string())),
                Ok(_) if too_large => Some(Error::BodyTooLarge(max_body)),
                Ok(_) => None,
            };
            if let Some(error) = refused {
                // A call all the same: counted and logged as one.
                shard.record_refused(conn, Some(error.status()));
                Plan::Answer(error, meta)
            } else {
                let hold = meta.whole_body.is_none() && proxy::holds(req.framing, config.limits.buffer_body_bytes);
                // A held call is placed once its body is in.
                let placed = match hold && !shard.scheduler.workers().is_empty() {
                    true => Err(Unplaced::Full),
                    false => shard.place(function),
                };
                if matches!(placed, Err(Unplaced::NoWorkers)) {
                    shard.record_refused(conn, Some(Error::NoWorkers.status()));
                    Plan::Answer(Error::NoWorkers, meta)
                } else {
                    // A call that waits gets its worker's name in a `Host`
                    // hiku adds once it has one.
                    let authority = placed.as_ref().map_or("", |lease| lease.worker().url().authority());
                    conn.out.clear();
                    // The address hiku took the request from joins X-Forwarded-For:
                    // the front's, when the front named the client there already.
                    let mut front_ip = [0u8; 48];
                    let from_ip = match named_by_front {
                        true => ip_text(conn.socket_peer, &mut front_ip),
                        false => conn.client_ip.as_bytes(),
                    };
                    let added_host = http::write_request_head(&mut conn.out, &req, authority, from_ip);
                    let meta = RequestMeta { added_host, ..meta };
                    let call = match placed {
                        Ok(lease) => Call::Forward(lease),
                        Err(_) if hold => Call::Hold,
                        Err(_) => Call::Wait,
                    };
                    Plan::Call(call, meta)
                }
            }
        }
    };
    conn.rbuf.consume(head_len);
    plan
}

/// `ip` as text, written into `buf`.
fn ip_text(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &buf[..len]
}
