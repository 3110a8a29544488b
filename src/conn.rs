//! One client connection with its buffers ([`Conn`]), and the rules that
//! keep them: its request heads and bodies read within their limits, the
//! request passed on to a worker and the worker's answer passed back, the
//! answers hiku writes itself, a quiet connection parked with no buffer
//! and a closing one lingered. Its fields are its own: serve, proxy and
//! admin ask it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::config::{Front, Limits, Timeouts};
use crate::error::Error;
use crate::handoff::{self, Handoff, OnShard};
use crate::http::{
    self, Body, Bounds, ChunkError, Copied, CopyError, Framing, HeadError, HeldBody, ReadBuf, Request, RequestMeta,
    Sink, Version,
};
use crate::proxy_protocol;
use crate::runtime::{self, Canceller, TcpStream};
use crate::shutdown::{self, OpenConnection};
use crate::worker::Worker;

/// How long a connection waits for its next request with a read (and its
/// buffer) posted. One still quiet after that gives its buffers back to the
/// core's stock and is parked: its task ends, and the core keeps a small
/// record of it until it is readable (a new task when it wakes, but an idle
/// connection holds a few hundred bytes).
pub(crate) const HOT_IDLE: Duration = Duration::from_millis(500);

/// How long a connection hiku closes keeps being read (and the bytes
/// dropped), so that a client still sending does not get a reset that
/// destroys the answer before it is read (RFC 9112 §9.6).
const LINGER: Duration = Duration::from_secs(2);

/// What a slow body did not send in time.
const BODY_BYTE: &str = "next byte of the request body";

/// One client connection and its buffers, reused from request to request.
pub(crate) struct Conn {
    client: TcpStream,
    /// Bytes from the client.
    rbuf: ReadBuf,
    /// Bytes from the worker.
    ubuf: ReadBuf,
    /// Heads (and small bodies) on their way out.
    out: Vec<u8>,
    /// The function of the call being served.
    function: String,
    /// Its method and target, with an access log.
    request_line: String,
    /// Who the client is.
    who: Client,
    /// Whether the client has sent all of the request being served (or of
    /// the last one): a connection closed then needs no lingering.
    input_done: bool,
    /// It came in on `admin.listen`.
    admin: bool,
    /// It must start with a PROXY protocol header (`front.proxy_protocol`),
    /// not read yet.
    awaits_proxy_header: bool,
    /// Request heads it has read on this shard: one that stays may move to
    /// another shard between calls.
    requests: u32,
    /// Cancels the read posted between requests; made for that wait and
    /// dropped when the connection goes quiet, as a parked connection
    /// posts none (with the table of reads it cancelled, it is 176 bytes).
    canceller: Option<Canceller>,
    open: OpenConnection,
    _on_shard: OnShard,
}

/// What a parked connection keeps beside its socket: who its client is,
/// where it came in, and its counts.
pub(crate) struct Dormant {
    ip: IpAddr,
    socket_peer: IpAddr,
    admin: bool,
    requests: u32,
    _open: OpenConnection,
    on_shard: OnShard,
}

/// The client's address (an IPv4-mapped IPv6 one as IPv4), and as text:
/// the connection's peer, or the client a trusted front names; and the
/// connection's own peer.
struct Client {
    ip: IpAddr,
    text: String,
    socket_peer: IpAddr,
}

impl Client {
    /// The client is `ip` (reusing the text's buffer).
    fn set(&mut self, ip: IpAddr) {
        use std::fmt::Write;
        self.ip = ip.to_canonical();
        self.text.clear();
        let _ = write!(self.text, "{}", self.ip);
    }
}

/// What waiting for a request came to.
pub(crate) enum NextRequest {
    /// A whole head is in the read buffer.
    Head,
    /// The client closed the connection first.
    Closed,
    /// Nothing came for a while: the connection holds no buffer, and is
    /// best parked.
    Quiet,
}

impl Conn {
    /// A connection from `peer` (on `admin.listen`: `admin`), counted open
    /// in the process by `open` and on its shard by `on_shard`.
    pub(crate) fn new(
        client: TcpStream,
        peer: SocketAddr,
        admin: bool,
        open: OpenConnection,
        on_shard: OnShard,
    ) -> Conn {
        let ip = peer.ip().to_canonical();
        Conn {
            client,
            rbuf: ReadBuf::new(),
            ubuf: ReadBuf::new(),
            out: Vec::new(),
            function: String::new(),
            request_line: String::new(),
            who: Client { ip, text: ip.to_string(), socket_peer: ip },
            input_done: false,
            admin,
            awaits_proxy_header: false,
            requests: 0,
            canceller: None,
            open,
            _on_shard: on_shard,
        }
    }

    /// It must start with a PROXY protocol header.
    pub(crate) fn expect_proxy_header(&mut self) {
        self.awaits_proxy_header = true;
    }

    /// The client (as a trusted front names it).
    pub(crate) fn peer(&self) -> IpAddr {
        self.who.ip
    }

    /// The client as text, for the access log.
    pub(crate) fn client_ip(&self) -> &str {
        &self.who.text
    }

    /// The function of the call being served.
    pub(crate) fn function(&self) -> &str {
        &self.function
    }

    /// The call's method and target (with an access log).
    pub(crate) fn request_line(&self) -> &str {
        &self.request_line
    }

    /// Reads the PROXY protocol header the connection must start with (if
    /// it must), from a front `front` trusts, within `within`, and takes
    /// the client it names as the connection's peer.
    pub(crate) async fn accept_proxy_header(&mut self, front: &Front, within: Duration) -> Result<(), String> {
        if !std::mem::take(&mut self.awaits_proxy_header) {
            return Ok(());
        }
        if !front.trusts(self.who.ip) {
            return Err("not a trusted front (front.trusted_proxies)".into());
        }
        let (client, rbuf) = (&mut self.client, &mut self.rbuf);
        let read = async {
            loop {
                match proxy_protocol::parse(rbuf.data()) {
                    Ok(Some(header)) => return Ok(header),
                    Ok(None) if rbuf.is_full() => return Err("a PROXY header too long".to_string()),
                    Ok(None) => {}
                    Err(e) => return Err(e.to_string()),
                }
                match rbuf.fill(client).await {
                    Ok(0) => return Err("closed before its PROXY header".into()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        };
        let header =
            runtime::timeout(within, read).await.map_err(|_| format!("no PROXY header within {within:?}"))??;
        self.rbuf.consume(header.len);
        if let Some(client) = header.source {
            self.who.set(client.ip());
        }
        Ok(())
    }

    /// Whether it may move to another shard now: it has served a few
    /// calls, and nothing of the next one is buffered.
    pub(crate) fn may_move(&self) -> bool {
        self.requests >= handoff::SETTLED && self.rbuf.is_empty()
    }

    /// Between two calls: sends this connection to shard `to`, still
    /// counted open in the process on the way. `Some`: it could not go, and
    /// is served here.
    pub(crate) fn move_to(self, handoff: &Handoff, to: usize) -> Option<Conn> {
        let Conn { client, who, admin, open, .. } = self;
        let peer = SocketAddr::new(who.ip, 0);
        match handoff.send(to, &client, peer, admin, open) {
            Ok(()) => None,
            Err((e, open)) => {
                log::warn!("a connection could not move to shard {to}: {e}");
                Some(Conn::new(client, peer, admin, open, handoff.count()))
            }
        }
    }

    /// Waits for the next request's head, whole in the read buffer: its
    /// first bytes within `timeouts.client_idle` (the connection goes
    /// quiet sooner, see [`HOT_IDLE`]), the rest within
    /// `timeouts.client_header` of them. A head over `limits`, or bytes no
    /// head starts with, is an error to answer before closing.
    pub(crate) async fn read_head(&mut self, timeouts: Timeouts, limits: Limits) -> Result<NextRequest, Error> {
        self.input_done = false;
        if self.rbuf.is_empty() {
            match self.wait_request(timeouts.client_idle).await {
                Ok(Some(0)) | Err(_) => return Ok(NextRequest::Closed),
                Ok(None) => return Ok(NextRequest::Quiet),
                Ok(Some(_)) => {}
            }
        }
        let mut scanned = 0;
        // Set at the first wait: a head that came whole costs no clock reading.
        let mut deadline = None;
        loop {
            if http::head_end(self.rbuf.data(), scanned).is_some() {
                self.requests = self.requests.saturating_add(1);
                return Ok(NextRequest::Head);
            }
            if !self.rbuf.is_empty() {
                // Reject garbage early instead of waiting for a blank line.
                let mut headers = http::empty_headers();
                parse_head(self.rbuf.data(), &mut headers, limits)?;
            }
            scanned = self.rbuf.data().len();
            if self.rbuf.is_full() {
                return Err(head_too_large(limits));
            }
            let deadline = *deadline.get_or_insert_with(|| Instant::now() + timeouts.client_header);
            let left = deadline.saturating_duration_since(Instant::now());
            match runtime::timeout(left, self.rbuf.fill(&mut self.client)).await {
                Ok(Ok(0) | Err(_)) => return Ok(NextRequest::Closed),
                Ok(Ok(_)) => {}
                Err(_) => {
                    let within = timeouts.client_header;
                    return Err(Error::ClientTimeout { what: "whole request head", within });
                }
            }
        }
    }

    /// Between requests, with nothing buffered: gives the buffers of the
    /// last exchange back and waits for the next request's first bytes
    /// (`Some(0)`: the client closed). It waits `HOT_IDLE` (or `idle`, if
    /// shorter) with a read (and its buffer) posted, as a new connection or
    /// a keep-alive client under load sends at once; `None` if nothing came
    /// by then: the connection holds no buffer.
    async fn wait_request(&mut self, idle: Duration) -> io::Result<Option<usize>> {
        self.ubuf.release();
        http::recycle(std::mem::take(&mut self.out));
        let hot = HOT_IDLE.min(idle);
        let canceller = self.canceller.get_or_insert_with(Canceller::new);
        let read = self.rbuf.fill_within(&mut self.client, hot, canceller).await?;
        match read {
            Some(_) => self.out = http::spare(),
            None => {
                // Quiet: what only a call in progress needs goes too.
                self.rbuf.release();
                self.canceller = None;
                self.function = String::new();
                self.request_line = String::new();
            }
        }
        Ok(read)
    }

    /// The request head whole at the front of the read buffer, parsed
    /// within `limits` into `headers`, and the rest of the connection, to
    /// act on while the head is read. Consume the head after
    /// ([`Conn::consume_head`]).
    pub(crate) fn parse_head<'h, 'c>(
        &'c mut self,
        headers: &'h mut [httparse::Header<'c>],
        limits: Limits,
    ) -> Result<(Request<'h, 'c>, Planning<'c>), Error> {
        let data = self.rbuf.data();
        let req =
            parse_head(data, headers, limits)?.ok_or_else(|| Error::BadRequest("incomplete request head".into()))?;
        let planning = Planning {
            after_head: &data[req.head_len..],
            who: &mut self.who,
            admin: self.admin,
            function: &mut self.function,
            request_line: &mut self.request_line,
            out: &mut self.out,
            input_done: &mut self.input_done,
        };
        Ok((req, planning))
    }

    /// Drops the head [`Conn::parse_head`] read.
    pub(crate) fn consume_head(&mut self, head_len: usize) {
        self.rbuf.consume(head_len);
    }

    /// A quiet connection (no buffer, nothing read) as its socket and what
    /// it takes to serve it again ([`Conn::wake`]), to be parked; `None`
    /// if the socket could not be taken from the runtime (it is closed).
    pub(crate) fn dormant(self) -> Option<(OwnedFd, Dormant)> {
        debug_assert!(self.rbuf.is_empty(), "a quiet connection has read nothing");
        let Conn { client, who, admin, requests, open, _on_shard, .. } = self;
        // The runtime's own descriptor closes as `client` drops.
        let fd =
            runtime::dup(client.as_raw_fd()).map_err(|e| log::debug!("a quiet connection was closed: {e}")).ok()?;
        let dormant =
            Dormant { ip: who.ip, socket_peer: who.socket_peer, admin, requests, _open: open, on_shard: _on_shard };
        Some((fd, dormant))
    }

    /// The connection parked as `fd` and `dormant`, with something to read.
    pub(crate) fn wake(fd: OwnedFd, dormant: Dormant) -> io::Result<Conn> {
        let Dormant { ip, socket_peer, admin, requests, _open: open, on_shard } = dormant;
        let mut conn = Conn::new(runtime::attach(fd)?, SocketAddr::new(socket_peer, 0), admin, open, on_shard);
        conn.who.set(ip);
        conn.requests = requests;
        Ok(conn)
    }

    /// Closes the connection: plainly if the client sent all of its last
    /// request, as anything it sends now is a request it was told would not
    /// be read; otherwise our side first, then what the client still sends
    /// is dropped until it closes too or `LINGER` runs out.
    pub(crate) async fn close(mut self) {
        if self.input_done && self.rbuf.is_empty() {
            return;
        }
        if runtime::shutdown_write(&mut self.client).await.is_err() {
            return;
        }
        let (client, rbuf) = (&mut self.client, &mut self.rbuf);
        let drain = async {
            loop {
                rbuf.clear();
                if matches!(rbuf.fill(client).await, Ok(0) | Err(_)) {
                    return Ok(());
                }
            }
        };
        let _: Result<io::Result<()>, _> = runtime::timeout(LINGER, drain).await;
    }

    /// Sends a response of hiku's own; false if the client is gone.
    pub(crate) async fn send(
        &mut self,
        code: u16,
        content_type: &str,
        body: &[u8],
        keep_alive: bool,
        meta: Option<RequestMeta>,
    ) -> bool {
        let version = meta.map_or(Version::Http11, |m| m.version);
        self.out.clear();
        http::write_local_response(&mut self.out, code, content_type, body, keep_alive, version);
        if meta.is_some_and(|m| m.head) {
            self.out.truncate(self.out.len() - body.len());
        }
        let sent = runtime::write_all(&mut self.client, &mut self.out).await.is_ok();
        self.out.clear();
        sent
    }

    /// Sends `error` as text; `meta` is the request's, if it was parsed
    /// (a HEAD request gets the head alone).
    pub(crate) async fn send_error(&mut self, error: &Error, keep_alive: bool, meta: Option<RequestMeta>) -> bool {
        log::debug!("answering {}: {error}", error.status());
        let body = format!("{error}\n");
        self.send(error.status(), "text/plain; charset=utf-8", body.as_bytes(), keep_alive, meta).await
    }

    /// Answers `error` to a request whose body is of no use (nothing of it
    /// went to a worker): at once, without waiting for a body not sent yet.
    /// The connection stays open only if the whole body was already read
    /// (it is skipped).
    pub(crate) async fn answer_error(&mut self, error: &Error, meta: RequestMeta) -> bool {
        let keep_alive = match meta.whole_body {
            Some(n) => {
                self.rbuf.consume(n);
                meta.keep_alive
            }
            None => false,
        };
        self.send_error(error, keep_alive, Some(meta)).await && keep_alive
    }

    /// Tells a client that waits for it (`Expect: 100-continue`) to send its body.
    pub(crate) async fn send_continue(&mut self) -> io::Result<()> {
        runtime::write_static(&mut self.client, b"HTTP/1.1 100 Continue\r\n\r\n").await
    }

    /// Reads the body of a request to one of hiku's own endpoints (its
    /// data, if chunked), refused (413) past `max` bytes, each read within
    /// `within`; a client that waits for it is told to send it.
    /// `Err(None)`: the client is gone; `Err(Some(e))`: answer `e`, close.
    pub(crate) async fn read_small_body(
        &mut self,
        meta: RequestMeta,
        max: u64,
        within: Duration,
    ) -> Result<Vec<u8>, Option<Error>> {
        if matches!(meta.framing, Framing::Length(n) if n > max) {
            return Err(Some(Error::BodyTooLarge(max)));
        }
        if meta.expect_continue && meta.whole_body.is_none() && self.send_continue().await.is_err() {
            return Err(None);
        }
        let mut body = Vec::new();
        let room = usize::try_from(max).unwrap_or(usize::MAX).saturating_add(1);
        let bounds = Bounds { read_within: within, write_within: within, max_bytes: max };
        read_body(&mut self.client, &mut self.rbuf, HeldBody::new(&mut body, room), meta.framing, true, bounds).await?;
        self.input_done = true;
        Ok(body)
    }

    /// Reads the body of a call after its head in the outgoing buffer, as
    /// it was sent, each read within `within`: whole, or a chunked one
    /// until `hold` bytes of it are held (then it streams on, from where
    /// decoding stopped); refused (413) past `max` bytes of data.
    /// `Err(None)`: the client is gone; `Err(Some(e))`: answer `e`, close.
    pub(crate) async fn hold_body(
        &mut self,
        framing: Framing,
        hold: usize,
        max: u64,
        within: Duration,
    ) -> Result<Copied, Option<Error>> {
        let bounds = Bounds { read_within: within, write_within: within, max_bytes: max };
        let held = HeldBody::new(&mut self.out, hold);
        let copied = read_body(&mut self.client, &mut self.rbuf, held, framing, false, bounds).await?;
        if matches!(copied, Copied::Whole) {
            self.input_done = true;
        }
        Ok(copied)
    }

    /// Returns when the client, waiting for an answer, has closed its
    /// connection (see [`http::client_gone`]).
    pub(crate) async fn client_gone(&self) {
        http::client_gone(&self.client).await
    }

    /// Names `to` in the `Host` hiku added to the outgoing head for a client
    /// that sent none (naming `from`, or no worker yet), as the call moves
    /// to another worker.
    pub(crate) fn retarget_host(&mut self, meta: RequestMeta, from: Option<&Worker>, to: &Worker) {
        if meta.added_host {
            let from = from.map_or("", |w| w.url().authority());
            http::retarget_host(&mut self.out, from, to.url().authority());
        }
    }

    /// Makes the whole request, body too, ready to send in one write if it
    /// is not already (`meta.held_whole`) and its body is in and small enough
    /// (at most `limit` bytes in all); whether it is.
    pub(crate) fn stage_whole(&mut self, meta: RequestMeta, limit: usize) -> bool {
        if meta.held_whole {
            return true;
        }
        match meta.whole_body {
            Some(n) if self.out.len() + n <= limit => {
                self.out.extend_from_slice(&self.rbuf.data()[..n]);
                self.rbuf.consume(n);
                true
            }
            _ => false,
        }
    }

    /// Sends the request made whole by [`Conn::stage_whole`] on `up`; it
    /// stays in the outgoing buffer, to be sent again.
    pub(crate) async fn send_whole(&mut self, up: &mut TcpStream) -> Result<(), CopyError> {
        runtime::write_all(up, &mut self.out).await.map_err(CopyError::Write)?;
        self.input_done = true;
        Ok(())
    }

    /// Sends the head in the outgoing buffer on `up`, then streams the body
    /// from the client after it (from where `meta.chunked` says a held part
    /// stopped), read and written within `bounds`.
    pub(crate) async fn send_streaming(
        &mut self,
        up: &mut TcpStream,
        meta: RequestMeta,
        bounds: Bounds,
    ) -> Result<(), CopyError> {
        if meta.expect_continue {
            self.send_continue().await.map_err(CopyError::Read)?;
        }
        let body = Body { chunked: meta.chunked, ..Body::new(meta.framing) };
        http::copy_body(&mut self.client, &mut self.rbuf, up, body, &mut self.out, bounds).await?;
        http::flush(up, &mut self.out, bounds.write_within).await?;
        self.input_done = true;
        Ok(())
    }

    /// Reads the worker's answer head from `up`, within `within`.
    pub(crate) async fn read_answer_head(&mut self, up: &mut TcpStream, within: Duration) -> Result<(), HeadError> {
        http::read_response_head(up, &mut self.ubuf, within).await
    }

    /// Like [`Conn::read_answer_head`], unless the client leaves first
    /// (`None`).
    pub(crate) async fn read_answer_head_unless_gone(
        &mut self,
        up: &mut TcpStream,
        within: Duration,
    ) -> Option<Result<(), HeadError>> {
        let (client, ubuf) = (&self.client, &mut self.ubuf);
        let head = async { Some(http::read_response_head(up, ubuf, within).await) };
        let gone = async {
            http::client_gone(client).await;
            None
        };
        futures_lite::future::or(head, gone).await
    }

    /// The answer read so far: its head first, once it is whole.
    pub(crate) fn answer(&self) -> &[u8] {
        self.ubuf.data()
    }

    /// Forgets the answer read so far (its connection goes).
    pub(crate) fn drop_answer(&mut self) {
        self.ubuf.clear();
    }

    /// Writes the head of the answer at the front of the answer buffer,
    /// rewritten for the client of the request `meta` describes, to the
    /// outgoing buffer, and consumes it. `learn` reads what it wants of the
    /// worker's head first.
    pub(crate) fn pass_answer_head<T>(
        &mut self,
        meta: RequestMeta,
        learn: impl FnOnce(http::Headers) -> T,
    ) -> AnswerHead<T> {
        self.out.clear();
        let mut headers = http::empty_headers();
        let res = match http::parse_response(self.ubuf.data(), &mut headers, meta.head) {
            Ok(Some(r)) => r,
            _ => unreachable!("read_answer_head parsed this head"),
        };
        let to_client = match res.framing {
            Framing::Chunked if meta.version == Version::Http10 => Framing::Close,
            f => f,
        };
        // A drain that began while the worker worked closes this connection too.
        let keep = meta.keep_alive && to_client != Framing::Close && !shutdown::draining();
        http::write_response_head(&mut self.out, &res, to_client, keep, meta.version);
        let head =
            AnswerHead { code: res.code, framing: res.framing, reusable: res.keep_alive, learned: learn(res.headers) };
        let head_len = res.head_len;
        self.ubuf.consume(head_len);
        head
    }

    /// Relays the answer's body (framed as `framing`; decoded, if chunked,
    /// with `decode`) from `up` to the client, within `bounds`, all but its
    /// last piece, which is left for [`Conn::finish_answer`]. Whether the
    /// worker's connection holds nothing more of it after.
    pub(crate) async fn pass_answer_body(
        &mut self,
        up: &mut TcpStream,
        framing: Framing,
        decode: bool,
        bounds: Bounds,
    ) -> Result<bool, CopyError> {
        let body = Body { decode, ..Body::new(framing) };
        http::copy_body(up, &mut self.ubuf, &mut self.client, body, &mut self.out, bounds).await?;
        Ok(self.ubuf.is_empty())
    }

    /// Sends what is left of the answer within `within`; whether it went.
    pub(crate) async fn finish_answer(&mut self, within: Duration) -> bool {
        http::flush(&mut self.client, &mut self.out, within).await.is_ok()
    }
}

/// A worker's answer head as passed on: its status, framing, whether the
/// worker's connection may be reused, and what `learn` read of it.
pub(crate) struct AnswerHead<T> {
    pub(crate) code: u16,
    pub(crate) framing: Framing,
    pub(crate) reusable: bool,
    pub(crate) learned: T,
}

/// What of a connection a request's head is read into, while the head
/// (in the read buffer) is borrowed.
pub(crate) struct Planning<'c> {
    after_head: &'c [u8],
    who: &'c mut Client,
    admin: bool,
    function: &'c mut String,
    request_line: &'c mut String,
    out: &'c mut Vec<u8>,
    input_done: &'c mut bool,
}

impl Planning<'_> {
    /// How much of a body framed as `framing` came with the head: its bytes
    /// and its data's, if all of it did (noted: the request is all in).
    pub(crate) fn body_in_view(&mut self, framing: Framing) -> Result<Option<(usize, u64)>, ChunkError> {
        let body = http::buffered_body_len(self.after_head, framing);
        *self.input_done = matches!(body, Ok(Some(_)));
        body
    }

    /// It came in on `admin.listen`.
    pub(crate) fn on_admin_listener(&self) -> bool {
        self.admin
    }

    /// The function of the call [`Planning::begin_call`] began.
    pub(crate) fn function(&self) -> &str {
        self.function
    }

    /// The client, as far as is known.
    pub(crate) fn peer(&self) -> IpAddr {
        self.who.ip
    }

    /// Behind a front that names the client in `X-Forwarded-For` (nginx):
    /// believed from a trusted `front` only, request by request; whether
    /// the front named the client of this request.
    pub(crate) fn take_forwarded_for(&mut self, front: &Front, headers: http::Headers) -> bool {
        let named = front.forwarded_for && !self.admin && front.trusts(self.who.socket_peer);
        if named {
            let client = http::last_forwarded_for(headers).unwrap_or(self.who.socket_peer);
            if client.to_canonical() != self.who.ip {
                self.who.set(client);
            }
        }
        named
    }

    /// The request is a call of `function`; its request line is kept for
    /// the access log, if there is one (`logged`).
    pub(crate) fn begin_call(&mut self, function: &str, req: &Request, logged: bool) {
        self.function.clear();
        self.function.push_str(function);
        if logged {
            self.request_line.clear();
            self.request_line.push_str(req.method);
            self.request_line.push(' ');
            self.request_line.push_str(req.origin_target());
        }
    }

    /// Writes the head of `req` for a worker (`authority`, or none yet) in
    /// the outgoing buffer, the address hiku took the request from joining
    /// `X-Forwarded-For`: the front's, when the front named the client
    /// there already (`named_by_front`). Whether hiku added a `Host`.
    pub(crate) fn write_request_head(&mut self, req: &Request, authority: &str, named_by_front: bool) -> bool {
        self.out.clear();
        let mut front_ip = [0u8; 48];
        let from_ip =
            if named_by_front { ip_text(self.who.socket_peer, &mut front_ip) } else { self.who.text.as_bytes() };
        http::write_request_head(self.out, req, authority, from_ip)
    }
}

/// `ip` as text, written into `buf`.
fn ip_text(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    &buf[..len]
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
) -> Result<Option<Request<'h, 'b>>, Error> {
    match http::parse_request(data, &mut headers[..limits.max_headers]) {
        Ok(Some(req)) if req.head_len > limits.max_header_bytes => Err(head_too_large(limits)),
        Ok(None) if data.len() >= limits.max_header_bytes => Err(head_too_large(limits)),
        Err(Error::HeadTooLarge { .. }) => Err(head_too_large(limits)),
        parsed => parsed,
    }
}

/// Reads a request body framed as `framing` (its head consumed) from
/// `client` (its bytes read already in `rbuf`) into `held`: as it was sent,
/// or, if chunked and `decode`, its data alone. Each read must come within
/// `bounds.read_within`; a chunked body stops once `held` is full (the
/// caller checks a length against it before) and is refused (413) past
/// `bounds.max_bytes` of data.
async fn read_body(
    client: &mut TcpStream,
    rbuf: &mut ReadBuf,
    mut held: HeldBody<'_>,
    framing: Framing,
    decode: bool,
    bounds: Bounds,
) -> Result<Copied, Option<Error>> {
    let mut last = Vec::new();
    let body = Body { decode, ..Body::new(framing) };
    let copied = http::copy_body(client, rbuf, &mut held, body, &mut last, bounds).await;
    let _ = held.put(&mut last, bounds.read_within).await;
    copied.map_err(client_body_error)
}

/// What a client's request body that could not be read whole comes to: an
/// error to answer (and close), or none (the client is gone). A failed
/// write is the client's only for hiku's own sinks, which never fail.
pub(crate) fn client_body_error(e: CopyError) -> Option<Error> {
    match e {
        CopyError::ReadTimeout(within) => Some(Error::ClientTimeout { what: BODY_BYTE, within }),
        CopyError::Read(_) | CopyError::Write(_) => None,
        CopyError::Framing(e) => Some(Error::BadRequest(e.to_string())),
        CopyError::TooLarge(limit) => Some(Error::BodyTooLarge(limit)),
    }
}
