//! A steady stream of calls over keep-alive connections, every one
//! accounted for: answered (by status) or lost (no answer at all: the
//! connection broke, or nothing came within [`CALL_TIMEOUT`]). What the
//! soaks send.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::functions;
use crate::throughput::options::BODY;
use crate::throughput::{blast, idle};

/// A call unanswered this long is lost.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer's status and body.
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// One request (`method`, `path`, no body) on a new connection that the
/// server closes after: its answer.
pub async fn request_once(target: SocketAddr, method: &str, path: &str) -> Result<Answer, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(target).await?;
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: soak\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(CALL_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer"))?
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{method} {path}: {text}"))?;
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| format!("{method} {path}: {head}"))?;
    Ok(Answer { status, body: body.to_string() })
}

/// Answers by status, and calls lost.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub answered: BTreeMap<u16, u64>,
    pub lost: u64,
}

/// Sends `calls` calls over `connections` keep-alive connections.
pub async fn load(target: SocketAddr, connections: usize, calls: u64) -> Tally {
    let next = Arc::new(AtomicU64::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..connections.max(1) {
        clients.spawn(client(target, Arc::clone(&next), calls));
    }
    let mut tally = Tally::default();
    while let Some(done) = clients.join_next().await {
        let Ok(part) = done else { continue };
        for (code, n) in part.answered {
            *tally.answered.entry(code).or_default() += n;
        }
        tally.lost += part.lost;
    }
    tally
}

/// One client connection, sending calls until `calls` have been taken.
async fn client(target: SocketAddr, next: Arc<AtomicU64>, calls: u64) -> Tally {
    let names = functions::names();
    let mut tally = Tally::default();
    let mut stream: Option<TcpStream> = None;
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= calls {
            return tally;
        }
        let open = match stream.take() {
            Some(s) => Some(s),
            None => TcpStream::connect(target).await.ok(),
        };
        let Some(open) = open else {
            tally.lost += 1;
            continue;
        };
        let request = blast::request(&target, &names[n as usize % names.len()], BODY);
        match tokio::time::timeout(CALL_TIMEOUT, idle::call(open, request)).await {
            Ok(Some((code, kept))) => {
                *tally.answered.entry(code).or_default() += 1;
                stream = kept;
            }
            _ => tally.lost += 1,
        }
    }
}
