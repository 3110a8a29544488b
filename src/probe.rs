//! The one small HTTP client hiku has: a request without a body, sent with
//! `Connection: close`, and its answer's status (and body). It runs on a
//! shard's runtime ([`ask`]: `/status` probing the workers) or on a thread
//! of its own with blocking sockets ([`ask_blocking`]: the health probes,
//! `hiku reload`).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::http::{self, Framing, ReadBuf};
use crate::runtime::{self, TcpStream};

/// The most of an answer [`ask_blocking`] reads.
const MOST: u64 = 1 << 20;

/// How long a worker's `GET /status` may take to answer.
pub(crate) const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// A request: its method, path, `Host`, and admin token if any.
pub(crate) struct Ask<'a> {
    method: &'static str,
    path: &'a str,
    host: &'a str,
    token: Option<&'a str>,
    /// `X-Hiku-Forwarded: 1`: a change passed on by a peer, to go no further.
    forwarded: bool,
}

impl<'a> Ask<'a> {
    pub(crate) fn get(path: &'a str, host: &'a str) -> Ask<'a> {
        Ask { method: "GET", path, host, token: None, forwarded: false }
    }

    pub(crate) fn post(path: &'a str, host: &'a str) -> Ask<'a> {
        Ask { method: "POST", path, host, token: None, forwarded: false }
    }

    /// With `Authorization: Bearer <token>`, if there is one.
    pub(crate) fn token(self, token: Option<&'a str>) -> Ask<'a> {
        Ask { token, ..self }
    }

    /// Marked as passed on by a peer (`X-Hiku-Forwarded: 1`).
    pub(crate) fn forwarded(self) -> Ask<'a> {
        Ask { forwarded: true, ..self }
    }

    fn bytes(&self) -> Vec<u8> {
        let Ask { method, path, host, token, forwarded } = self;
        let mut token = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        if *forwarded {
            token.push_str("X-Hiku-Forwarded: 1\r\n");
        }
        let length = if *method == "GET" { "" } else { "Content-Length: 0\r\n" };
        format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{token}{length}Connection: close\r\n\r\n").into_bytes()
    }
}

/// An answer: its status, and its body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// The answer's head at the start of `data`, if it is whole: its status,
/// its length, and how long the whole answer is (`None`: until the
/// connection closes).
fn head(data: &[u8]) -> Result<Option<(u16, usize, Option<u64>)>, String> {
    let mut headers = http::empty_headers();
    match http::parse_response(data, &mut headers, false) {
        Ok(Some(res)) => {
            let whole = match res.framing {
                Framing::Length(n) => Some(res.head_len as u64 + n),
                Framing::None => Some(res.head_len as u64),
                Framing::Chunked | Framing::Close => None,
            };
            Ok(Some((res.code, res.head_len, whole)))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(format!("a broken answer: {e}")),
    }
}

/// Sends `ask` to the first of `addrs` that takes a connection and reads
/// its answer's status, all within `within`.
pub(crate) async fn ask(addrs: &[SocketAddr], ask: &Ask<'_>, within: Duration) -> Result<u16, String> {
    let exchange = async {
        let mut stream = connect(addrs).await?;
        runtime::write_all(&mut stream, &mut ask.bytes()).await.map_err(|e| format!("cannot send: {e}"))?;
        let mut buf = ReadBuf::new();
        loop {
            if let Some((status, _, _)) = head(buf.data())? {
                return Ok(status);
            }
            if buf.is_full() {
                return Err("the answer's head is too large".to_string());
            }
            match buf.fill(&mut stream).await {
                Ok(0) => return Err("connection closed before an answer".to_string()),
                Ok(_) => {}
                Err(e) => return Err(format!("no answer: {e}")),
            }
        }
    };
    match runtime::timeout(within, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}

async fn connect(addrs: &[SocketAddr]) -> Result<TcpStream, String> {
    let mut last = "the host resolved to no address".to_string();
    for addr in addrs {
        match TcpStream::connect_addr(*addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Sends `ask` to `addr` and reads the whole answer (as long as its head
/// says, or to the end; up to a MiB), each step within `within`. Blocks: for threads of their own, never a shard.
pub(crate) fn ask_blocking(addr: SocketAddr, ask: &Ask<'_>, within: Duration) -> Result<Reply, String> {
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, within).map_err(|e| format!("cannot reach {addr}: {e}"))?;
    stream.set_read_timeout(Some(within)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(within)).map_err(|e| e.to_string())?;
    stream.write_all(&ask.bytes()).map_err(|e| format!("cannot send to {addr}: {e}"))?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    let (status, head_len) = loop {
        let read = match stream.read(&mut chunk) {
            Ok(read) => read,
            // A signal came (the process takes its own on a thread of theirs): read again.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("no answer from {addr}: {e}")),
        };
        answer.extend_from_slice(&chunk[..read]);
        let done = read == 0 || answer.len() as u64 >= MOST;
        match head(&answer)? {
            Some((status, head_len, Some(whole))) if answer.len() as u64 >= whole || done => {
                answer.truncate(whole.min(answer.len() as u64) as usize);
                break (status, head_len);
            }
            Some((status, head_len, _)) if done => break (status, head_len),
            None if done => return Err(format!("a broken answer from {addr}")),
            _ => {}
        }
    };
    let body = String::from_utf8_lossy(&answer[head_len..]).trim_end().to_string();
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_small_and_close() {
        let get = String::from_utf8(Ask::get("/status", "w:1").bytes()).unwrap();
        assert_eq!(get, "GET /status HTTP/1.1\r\nHost: w:1\r\nConnection: close\r\n\r\n");
        let post = String::from_utf8(Ask::post("/admin/reload", "h:2").token(Some("t")).bytes()).unwrap();
        assert_eq!(
            post,
            "POST /admin/reload HTTP/1.1\r\nHost: h:2\r\nAuthorization: Bearer t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_blocking_ask_reads_the_status_and_body() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = [0u8; 1024];
            let n = s.read(&mut got).unwrap();
            s.write_all(b"HTTP/1.1 422 Unprocessable Entity\r\nContent-Length: 9\r\n\r\n{\"a\": 1}\n").unwrap();
            String::from_utf8_lossy(&got[..n]).into_owned()
        });
        let reply = ask_blocking(addr, &Ask::post("/admin/reload", "x"), Duration::from_secs(5)).unwrap();
        assert_eq!((reply.status, reply.body.as_str()), (422, "{\"a\": 1}"));
        assert!(server.join().unwrap().starts_with("POST /admin/reload HTTP/1.1\r\n"));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(ask_blocking(closed, &Ask::get("/", "x"), Duration::from_secs(1)).is_err());
    }
}
