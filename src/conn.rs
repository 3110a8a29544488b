//! What one core owns ([`Shard`]) and one client connection with its
//! buffers ([`Conn`]), and the answers hiku writes itself.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::Error;
use crate::http::{self, ReadBuf, Version};
use crate::pool::Pool;
use crate::proxy::RequestMeta;
use crate::runtime::{self, TcpStream};
use crate::scheduler::Scheduler;

/// Bytes of worker responses read at a time per connection.
const RESPONSE_BUFFER: usize = http::MAX_HEAD;

/// What one core owns.
pub struct Shard {
    pub scheduler: Arc<Scheduler>,
    pub pool: Pool,
    pub cores: usize,
}

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
    pub client_ip: String,
}

impl Conn {
    pub fn new(client: TcpStream, peer: SocketAddr) -> Conn {
        Conn {
            client,
            rbuf: ReadBuf::with_capacity(http::MAX_HEAD),
            ubuf: ReadBuf::with_capacity(RESPONSE_BUFFER),
            out: Vec::with_capacity(4096),
            function: String::new(),
            client_ip: peer.ip().to_canonical().to_string(),
        }
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

    /// Tells a client that waits for it (`Expect: 100-continue`) to send its body.
    pub async fn send_continue(&mut self) -> std::io::Result<()> {
        runtime::write_static(&mut self.client, b"HTTP/1.1 100 Continue\r\n\r\n").await
    }
}
