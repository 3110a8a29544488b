//! Moving heads and bodies over sockets: a response head read whole, a
//! body copied through a fixed buffer in its framing, and the watch on a
//! client that leaves while it waits.

use std::io;
use std::time::Duration;

use super::buf::ReadBuf;
use super::chunked::{ChunkError, ChunkedDecoder};
use super::parse::{empty_headers, head_end, parse_response, Framing, MAX_HEAD};
use crate::runtime::{self, TcpStream};

/// Writes of data smaller than this are joined with the head before them.
const COALESCE_LIMIT: usize = 8 * 1024;
/// A client waiting this long for its worker's answer is watched: if it
/// closes its connection, the call is given up (worker connection dropped,
/// lease released). Quicker answers never pay for the watch.
const WATCH_CLIENT_AFTER: Duration = Duration::from_millis(100);

/// How a body copy failed: on the side read from (or nothing came from it
/// in time), the side written to, or in the body's own framing.
pub enum CopyError {
    Read(io::Error),
    ReadTimeout(Duration),
    Write(io::Error),
    Framing(ChunkError),
    /// The body grew past this many bytes.
    TooLarge(u64),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Read(e) => write!(f, "reading: {e}"),
            CopyError::ReadTimeout(within) => write!(f, "nothing to read within {} ms", within.as_millis()),
            CopyError::Write(e) => write!(f, "writing: {e}"),
            CopyError::Framing(e) => e.fmt(f),
            CopyError::TooLarge(limit) => write!(f, "body larger than {limit} bytes"),
        }
    }
}

/// How long a body copy waits for each read, and how large a chunked body
/// may grow (a body with a length was checked before).
#[derive(Clone, Copy)]
pub struct Bounds {
    pub read_within: Duration,
    pub write_within: Duration,
    pub max_bytes: u64,
}

/// Returns when the client, waiting for an answer, has closed its
/// connection; never if it stays, or sends more (a pipelined request).
pub async fn client_gone(client: &TcpStream) {
    runtime::sleep(WATCH_CLIENT_AFTER).await;
    loop {
        if runtime::readable(client).await.is_err() {
            return;
        }
        match runtime::peek(client) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Ok(0) | Err(_) => return,
            Ok(_) => return std::future::pending().await,
        }
    }
}

pub enum HeadError {
    Io(io::Error),
    /// No whole head within the time.
    TimedOut,
    /// The worker closed the connection before sending anything.
    Closed,
    Invalid(String),
}

/// Reads until `buf` holds a complete head (the blank line after the fields).
async fn read_head(from: &mut TcpStream, buf: &mut ReadBuf) -> Result<(), HeadError> {
    let mut scanned = 0;
    loop {
        if let Some(_end) = head_end(buf.data(), scanned) {
            return Ok(());
        }
        scanned = buf.data().len();
        if buf.is_full() || scanned >= MAX_HEAD {
            return Err(HeadError::Invalid("response head too large".into()));
        }
        match buf.fill(from).await {
            Ok(0) if buf.is_empty() => return Err(HeadError::Closed),
            Ok(0) => return Err(HeadError::Invalid("connection closed inside the response head".into())),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// Reads the worker's response head, skipping interim (1xx) responses;
/// gives up if it is not whole `within` the time.
pub async fn read_response_head(up: &mut TcpStream, buf: &mut ReadBuf, within: Duration) -> Result<(), HeadError> {
    match runtime::timeout(within, read_final_head(up, buf)).await {
        Ok(result) => result,
        Err(_) => Err(HeadError::TimedOut),
    }
}

async fn read_final_head(up: &mut TcpStream, buf: &mut ReadBuf) -> Result<(), HeadError> {
    loop {
        read_head(up, buf).await?;
        let mut headers = empty_headers();
        let interim = match parse_response(buf.data(), &mut headers, false) {
            Ok(Some(r)) if r.code == 101 => return Err(HeadError::Invalid("unrequested protocol switch".into())),
            Ok(Some(r)) if r.code < 200 => Some(r.head_len),
            Ok(Some(_)) => None,
            Ok(None) => return Err(HeadError::Invalid("incomplete response head".into())),
            Err(e) => return Err(HeadError::Invalid(e)),
        };
        match interim {
            Some(len) => buf.consume(len),
            None => return Ok(()),
        }
    }
}

/// Where a copied body goes: a socket (a worker, or a client), or memory
/// (a body hiku holds whole before it chooses a worker, or reads itself).
// Only ever awaited on the shard that made it: no `Send` bound is needed.
#[allow(async_fn_in_trait)]
pub trait Sink {
    /// Takes all of `data` (leaving it empty), giving up if nothing of it
    /// is taken `within` the time.
    async fn put(&mut self, data: &mut Vec<u8>, within: Duration) -> Result<(), CopyError>;

    /// Takes the first `n` bytes of `buf` (consuming them).
    async fn put_from(&mut self, buf: &mut ReadBuf, n: usize, within: Duration) -> Result<(), CopyError>;

    /// Whether it wants no more for now: a chunked body stops there, to go
    /// on later from where it stopped.
    fn is_full(&self) -> bool {
        false
    }
}

impl Sink for TcpStream {
    async fn put(&mut self, data: &mut Vec<u8>, within: Duration) -> Result<(), CopyError> {
        if !data.is_empty() {
            match runtime::timeout(within, runtime::write_all(self, data)).await {
                Ok(written) => written.map_err(CopyError::Write)?,
                Err(_) => return Err(CopyError::Write(write_timed_out(within))),
            }
            data.clear();
        }
        Ok(())
    }

    async fn put_from(&mut self, buf: &mut ReadBuf, n: usize, within: Duration) -> Result<(), CopyError> {
        match runtime::timeout(within, buf.write_to(self, n)).await {
            Ok(written) => written.map_err(CopyError::Write),
            Err(_) => Err(CopyError::Write(write_timed_out(within))),
        }
    }
}

/// A body held in memory, after what `into` holds already, until it has
/// grown by `room` bytes.
pub struct HeldBody<'a> {
    into: &'a mut Vec<u8>,
    full_at: usize,
}

impl<'a> HeldBody<'a> {
    pub fn new(into: &'a mut Vec<u8>, room: usize) -> HeldBody<'a> {
        let full_at = into.len().saturating_add(room);
        HeldBody { into, full_at }
    }
}

impl Sink for HeldBody<'_> {
    async fn put(&mut self, data: &mut Vec<u8>, _within: Duration) -> Result<(), CopyError> {
        self.into.append(data);
        Ok(())
    }

    async fn put_from(&mut self, buf: &mut ReadBuf, n: usize, _within: Duration) -> Result<(), CopyError> {
        self.into.extend_from_slice(&buf.data()[..n]);
        buf.consume(n);
        Ok(())
    }

    fn is_full(&self) -> bool {
        self.into.len() >= self.full_at
    }
}

/// How far a body was copied.
#[derive(Debug)]
pub enum Copied {
    /// To its end.
    Whole,
    /// Until the sink was full: the rest of a chunked body, decoded this
    /// far, is still to come.
    Partial(ChunkedDecoder),
}

/// A body to copy: its framing, where decoding it stands if it is chunked
/// (at its start, or where an earlier copy stopped), and whether a chunked
/// one goes out as its data alone (`decode`).
#[derive(Debug, Clone, Copy)]
pub struct Body {
    pub framing: Framing,
    pub chunked: ChunkedDecoder,
    pub decode: bool,
}

impl Body {
    /// A body framed as `framing`, from its start, passed on as it is.
    pub fn new(framing: Framing) -> Body {
        Body { framing, chunked: ChunkedDecoder::default(), decode: false }
    }
}

/// Copies `body` from `src` (whose bytes already read are in `buf`) to
/// `dst`, after `pending` (a head, and perhaps the start of the body),
/// joining small pieces into one write. Leaves in `buf` whatever follows
/// the body, and in `pending` the last piece (at most `COALESCE_LIMIT`
/// bytes) for the caller to send. Gives up when a read brings nothing in
/// time, or a chunked body grows too large; stops a chunked body where
/// `dst` is full.
pub async fn copy_body<S: Sink>(
    src: &mut TcpStream,
    buf: &mut ReadBuf,
    dst: &mut S,
    body: Body,
    pending: &mut Vec<u8>,
    bounds: Bounds,
) -> Result<Copied, CopyError> {
    let Body { framing, mut chunked, decode } = body;
    let within = bounds.read_within;
    let decode = decode && framing == Framing::Chunked;
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    loop {
        let done = match framing {
            Framing::None => true,
            Framing::Length(_) => left == 0,
            Framing::Chunked => chunked.is_done(),
            Framing::Close => false,
        };
        if done {
            return Ok(Copied::Whole);
        }
        if buf.is_empty() {
            // Nothing to pass on yet: let what is pending go before waiting.
            dst.put(pending, bounds.write_within).await?;
            if framing == Framing::Chunked && dst.is_full() {
                return Ok(Copied::Partial(chunked));
            }
            let read = runtime::timeout(within, buf.fill(src)).await.map_err(|_| CopyError::ReadTimeout(within))?;
            if read.map_err(CopyError::Read)? == 0 {
                if framing == Framing::Close {
                    return Ok(Copied::Whole);
                }
                return Err(CopyError::Read(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let data = buf.data();
        let used = match framing {
            Framing::Length(_) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                left -= n as u64;
                n
            }
            Framing::Chunked => {
                let used = chunked
                    .feed(data, |d| {
                        if decode {
                            pending.extend_from_slice(d)
                        }
                    })
                    .map_err(CopyError::Framing)?;
                if chunked.data_len() > bounds.max_bytes {
                    return Err(CopyError::TooLarge(bounds.max_bytes));
                }
                used
            }
            Framing::None | Framing::Close => data.len(),
        };
        if decode {
            // The data went into `pending` as it was decoded.
            if pending.len() > COALESCE_LIMIT {
                dst.put(pending, bounds.write_within).await?;
            }
        } else if pending.len() + used <= COALESCE_LIMIT {
            pending.extend_from_slice(&data[..used]);
        } else {
            dst.put(pending, bounds.write_within).await?;
            dst.put_from(buf, used, bounds.write_within).await?;
            continue;
        }
        buf.consume(used);
    }
}

/// Writes `pending` to `dst` (if anything is pending), giving up if the
/// peer takes none of it `within` the time.
pub async fn flush(dst: &mut TcpStream, pending: &mut Vec<u8>, within: Duration) -> Result<(), CopyError> {
    dst.put(pending, within).await
}

fn write_timed_out(within: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("the peer took nothing for {} ms", within.as_millis()))
}
