//! A client connection that writes raw bytes and reads answers, and the
//! answers as it read them.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::http::{header, read_message, Kind};
use super::DEADLINE;

/// An answer as the client got it.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The worker that answered.
    pub fn worker(&self) -> &str {
        self.header("x-worker").unwrap_or_else(|| panic!("no X-Worker in a {} answer: {}", self.status, self.text()))
    }
}

/// A client connection that writes raw bytes and reads answers.
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::from_stream(TcpStream::connect(addr).unwrap())
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Client { writer: stream.try_clone().unwrap(), reader: BufReader::new(stream) }
    }

    /// A second handle on the socket, for writing from another thread.
    pub fn writer(&self) -> TcpStream {
        self.writer.try_clone().unwrap()
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).unwrap();
    }

    /// Reads the next answer (to a HEAD request if `head`); interim 1xx
    /// answers are returned like any other.
    pub fn read(&mut self, head: bool) -> Response {
        let msg =
            read_message(&mut self.reader, Kind::Response { head }).expect("an answer before the connection closed");
        let mut start = msg.start.splitn(3, ' ');
        Response {
            version: start.next().unwrap().to_string(),
            status: start.next().unwrap().parse().unwrap(),
            headers: msg.headers,
            body: msg.body,
            chunked: msg.chunked,
        }
    }

    /// Sends a request with a Content-Length body and reads its answer.
    pub fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: hiku\r\n");
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        self.send(&raw);
        self.read(method == "HEAD")
    }

    /// Whether the server closed the connection (waits for it, up to the deadline).
    pub fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.reader.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => panic!("unexpected bytes after the answer"),
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}
