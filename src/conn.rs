//! One client connection with its buffers ([`Conn`]): reading its
//! requests and bodies, and the answers hiku writes itself.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::error::Error;
use crate::handoff::{Handoff, OnShard};
use crate::http::{
    self, Bounds, ChunkedDecoder, Copied, CopyError, Framing, Held, ReadBuf, RequestMeta, Sink, Version,
};
use crate::parking::Spot;
use crate::runtime::{self, Canceller, TcpStream};
use crate::shutdown::Open;
use crate::worker::Worker;

/// How long a connection waits for its next request with a read (and its
/// buffer) posted. One still quiet after that gives its buffers back to the
/// core's stock and is parked: its task ends, and a small one waits for
/// readiness alone (one more step and a new task when it wakes, but an idle
/// connection holds a few hundred bytes).
pub const HOT_IDLE: Duration = Duration::from_millis(500);

/// What a slow body did not send in time.
pub const BODY_BYTE: &str = "next byte of the request body";

/// One client connection and its buffers, reused from request to request.
pub struct Conn {
    pub client: TcpStream,
    /// Bytes from the client.
    pub rbuf: ReadBuf,
    /// Bytes from the worker.
    pub ubuf: ReadBuf,
    /// Heads (and small bodies) on their way out.
    pub out: Vec<u8>,
    /// The function of the request being served.
    pub function: String,
    /// Its method and target, with an access log.
    pub request_line: String,
    /// The client's address (an IPv4-mapped IPv6 one as IPv4), and as text:
    /// the connection's peer, or the client a trusted front names.
    pub peer: IpAddr,
    pub client_ip: String,
    /// The connection's own peer.
    pub socket_peer: IpAddr,
    /// Whether the client has sent all of the request being served (or of
    /// the last one): a connection closed then needs no lingering.
    pub input_done: bool,
    /// It came in on `admin.listen`.
    pub admin: bool,
    /// It must start with a PROXY protocol header (`front.proxy_protocol`),
    /// not read yet.
    pub awaits_proxy_header: bool,
    /// Calls it has served on this shard: one that stays may move to
    /// another shard between calls.
    pub served: u32,
    canceller: Canceller,
    /// Its place among the shard's parked connections, once it was parked.
    pub spot: Option<Rc<Spot>>,
    open: Open,
    _on_shard: OnShard,
}

impl Conn {
    /// A connection from `peer`, counted open in the process by `open`
    /// and on its shard by `on_shard`.
    pub fn new(client: TcpStream, peer: SocketAddr, open: Open, on_shard: OnShard) -> Conn {
        Conn {
            client,
            rbuf: ReadBuf::new(),
            ubuf: ReadBuf::new(),
            out: Vec::new(),
            function: String::new(),
            request_line: String::new(),
            peer: peer.ip().to_canonical(),
            client_ip: peer.ip().to_canonical().to_string(),
            socket_peer: peer.ip().to_canonical(),
            input_done: false,
            admin: false,
            awaits_proxy_header: false,
            served: 0,
            canceller: Canceller::new(),
            spot: None,
            open,
            _on_shard: on_shard,
        }
    }

    /// The client is `ip`, as a front says (reusing the text's buffer).
    pub fn set_peer(&mut self, ip: IpAddr) {
        use std::fmt::Write;
        self.peer = ip.to_canonical();
        self.client_ip.clear();
        let _ = write!(self.client_ip, "{}", self.peer);
    }

    /// Between requests, with nothing buffered: gives the buffers of the
    /// last exchange back and waits for the next request's first bytes
    /// (`Some(0)`: the client closed). It waits `HOT_IDLE` (or `idle`, if
    /// shorter) with a read (and its buffer) posted, as a new connection or
    /// a keep-alive client under load sends at once; `None` if nothing came
    /// by then: the connection holds no buffer, and is best
    /// parked for the rest of `idle`.
    pub async fn wait_request(&mut self, idle: Duration) -> std::io::Result<Option<usize>> {
        self.ubuf.release();
        http::recycle(std::mem::take(&mut self.out));
        let hot = HOT_IDLE.min(idle);
        let read = self.rbuf.fill_within(&mut self.client, hot, &mut self.canceller).await?;
        match read {
            Some(_) => self.out = http::spare(),
            None => self.rbuf.release(),
        }
        Ok(read)
    }

    /// Sends a response of hiku's own; false if the client is gone.
    pub async fn send(
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
    pub async fn send_error(&mut self, error: &Error, keep_alive: bool, meta: Option<RequestMeta>) -> bool {
        log::debug!("answering {}: {error}", error.status());
        let body = format!("{error}\n");
        self.send(error.status(), "text/plain; charset=utf-8", body.as_bytes(), keep_alive, meta).await
    }

    /// Answers `error` to a request whose body is of no use (nothing of it
    /// went to a worker): at once, without waiting for a body not sent yet.
    /// The connection stays open only if the whole body was already read
    /// (it is skipped).
    pub async fn answer_error(&mut self, error: &Error, meta: RequestMeta) -> bool {
        let keep_alive = match meta.whole_body {
            Some(n) => {
                self.rbuf.consume(n);
                meta.keep_alive
            }
            None => false,
        };
        self.send_error(error, keep_alive, Some(meta)).await && keep_alive
    }

    /// Between two calls: sends this connection to shard `to`, still
    /// counted open in the process on the way. `Some`: it could not go, and
    /// is served here.
    pub fn move_to(self, handoff: &Handoff, to: usize) -> Option<Conn> {
        let Conn { client, peer, admin, open, .. } = self;
        let on_the_way = (SocketAddr::new(peer, 0), admin, open);
        match handoff.send(to, &client, on_the_way) {
            Ok(()) => None,
            Err((e, open)) => {
                log::warn!("a connection could not move to shard {to}: {e}");
                let mut conn = Conn::new(client, SocketAddr::new(peer, 0), open, handoff.count());
                conn.admin = admin;
                Some(conn)
            }
        }
    }

    /// Names `to` in the `Host` hiku added to the head in `out` for a
    /// client that sent none (naming `from`, or no worker yet), as the call
    /// moves to another worker.
    pub fn retarget_host(&mut self, meta: RequestMeta, from: Option<&Worker>, to: &Worker) {
        if meta.added_host {
            let from = from.map_or("", |w| w.url().authority());
            http::retarget_host(&mut self.out, from, to.url().authority());
        }
    }

    /// Reads the request body framed as `framing` (its head consumed) into
    /// `into`: as it was sent (`raw`), or, if chunked, its data alone. Each
    /// read must come `within` the time. A chunked body stops once `into`
    /// has grown by `limit` bytes (the caller checks a length against it
    /// before) and is refused (413) past `max_data` bytes of data.
    /// `Err(None)`: the client is gone; `Err(Some(e))`: answer `e`, close.
    pub async fn read_body(
        &mut self,
        framing: Framing,
        raw: bool,
        into: &mut Vec<u8>,
        (limit, max_data): (usize, u64),
        within: Duration,
    ) -> Result<Copied, Option<Error>> {
        let mut held = Held::new(into, limit);
        let bounds = Bounds { read_within: within, write_within: within, max_bytes: max_data };
        let mut last = Vec::new();
        let body = (framing, ChunkedDecoder::default());
        let copied = http::copy_body(&mut self.client, &mut self.rbuf, &mut held, body, !raw, &mut last, bounds).await;
        let _ = held.put(&mut last, within).await;
        copied.map_err(|e| match e {
            CopyError::ReadTimeout(within) => Some(Error::ClientTimeout { what: BODY_BYTE, within }),
            CopyError::Read(_) | CopyError::Write(_) => None,
            CopyError::Framing(e) => Some(Error::BadRequest(e.to_string())),
            CopyError::TooLarge(limit) => Some(Error::BodyTooLarge(limit)),
        })
    }

    /// Tells a client that waits for it (`Expect: 100-continue`) to send its body.
    pub async fn send_continue(&mut self) -> std::io::Result<()> {
        runtime::write_static(&mut self.client, b"HTTP/1.1 100 Continue\r\n\r\n").await
    }
}
