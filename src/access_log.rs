//! The access log (`log.access`): a line per `/run` call, written off the
//! request path.
//!
//! Each shard formats its lines into a buffer of its own (no lock) and
//! hands full buffers, and every 200 ms what it has, to a writer thread
//! that owns the file, so no executor ever waits for the disk. While the
//! process drains, every line is handed over at once, and the exit waits
//! (up to a second) until the writer has written all it was given.
//!
//! A line: `2026-11-29T12:40:01.123Z 127.0.0.1 "POST /run/f" 200
//! http://localhost:5000 12.345`: when the call ended (UTC), the client,
//! the request line, the status hiku answered, the worker (`-` if none)
//! and the milliseconds the call took in hiku.
//!
//! SIGUSR1 reopens the file by its path ([`Writer::reopen`]), as nginx
//! does: rotation renames the file, then signals, and lines go on into the
//! renamed file until the writer has opened the new one; none is lost.

use std::cell::{Cell, RefCell};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A shard hands its buffer over once it holds this much.
const FLUSH_BYTES: usize = 32 * 1024;

/// How often a shard hands over what it has.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The log's file and writer thread, and what the shards handed over.
#[derive(Clone)]
pub(crate) struct Writer {
    tx: Sender<Chunk>,
    counts: Arc<Counts>,
}

/// What the writer thread is given.
enum Chunk {
    /// Lines to append.
    Lines(Vec<u8>),
    /// Open the file by its path again (it was rotated).
    Reopen,
}

/// How far the writer is, for the exit to wait on.
#[derive(Default)]
struct Counts {
    shards: usize,
    /// Shards that handed their buffer over once the drain began.
    drain_flushed: AtomicUsize,
    /// Buffers handed to the writer, and written by it.
    sent: AtomicU64,
    written: AtomicU64,
}

/// Opens (or creates) `path` for appending and starts its writer thread;
/// each of `shards` shards then logs through [`Writer::shard`].
pub(crate) fn open(path: &Path, shards: usize) -> io::Result<Writer> {
    let append = |path: &Path| OpenOptions::new().create(true).append(true).open(path);
    let mut file = append(path)?;
    let (tx, rx) = channel::<Chunk>();
    let path = path.to_path_buf();
    let counts = Arc::new(Counts { shards, ..Counts::default() });
    let written = Arc::clone(&counts);
    std::thread::Builder::new().name("hiku-access-log".into()).spawn(move || {
        let mut failing = false;
        for chunk in rx {
            match chunk {
                Chunk::Lines(lines) => {
                    match file.write_all(&lines) {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            let shown = path.display();
                            log::error!("access log {shown}: {e} (lines are lost until writes work again)");
                            failing = true;
                        }
                        Err(_) => {}
                    }
                    written.written.fetch_add(1, Ordering::Release);
                }
                Chunk::Reopen => match append(&path) {
                    Ok(reopened) => {
                        file = reopened;
                        log::info!("access log {} reopened", path.display());
                    }
                    Err(e) => log::error!(
                        "access log {}: cannot reopen ({e}); lines go on into the file open before",
                        path.display()
                    ),
                },
            }
        }
    })?;
    Ok(Writer { tx, counts })
}

impl Writer {
    /// A shard's side of the log.
    pub(crate) fn shard(&self) -> AccessLog {
        AccessLog::new(self.tx.clone(), Arc::clone(&self.counts))
    }

    /// Opens the file by its path again (after rotation), once the lines
    /// handed over before are written to the one open now.
    pub(crate) fn reopen(&self) {
        let _ = self.tx.send(Chunk::Reopen);
    }

    /// Before the process exits after a drain: waits until every shard has
    /// handed its lines over and the writer has written them, at most `within`.
    pub(crate) fn finish(&self, within: Duration) {
        let c = &self.counts;
        let start = Instant::now();
        let done = || {
            c.drain_flushed.load(Ordering::Acquire) >= c.shards
                && c.written.load(Ordering::Acquire) >= c.sent.load(Ordering::Acquire)
        };
        while !done() && start.elapsed() < within {
            // The drain thread, not an executor.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One shard's side of the log.
pub(crate) struct AccessLog {
    tx: Sender<Chunk>,
    counts: Arc<Counts>,
    /// The drain began: lines go to the writer at once.
    draining: Cell<bool>,
    buf: RefCell<Vec<u8>>,
    /// The second the cached stamp is for, and the stamp (`YYYY-MM-DDTHH:MM:SS`).
    second: Cell<u64>,
    stamp: RefCell<String>,
}

impl AccessLog {
    fn new(tx: Sender<Chunk>, counts: Arc<Counts>) -> AccessLog {
        AccessLog {
            tx,
            counts,
            draining: Cell::new(false),
            buf: RefCell::new(Vec::with_capacity(FLUSH_BYTES * 2)),
            second: Cell::new(u64::MAX),
            stamp: RefCell::new(String::new()),
        }
    }

    /// Logs a call from `client` (`request`: its method and target) that
    /// hiku answered with `status` after `took`, on `worker` if any.
    pub(crate) fn call(&self, client: &str, request: &str, status: u16, worker: Option<&str>, took: Duration) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = now.as_secs();
        if self.second.get() != second {
            self.second.set(second);
            *self.stamp.borrow_mut() = crate::logger::utc(second);
        }
        let mut buf = self.buf.borrow_mut();
        let _ = writeln!(
            buf,
            "{}.{:03}Z {client} \"{request}\" {status} {} {:.3}",
            self.stamp.borrow(),
            now.subsec_millis(),
            worker.unwrap_or("-"),
            took.as_secs_f64() * 1000.0
        );
        let full = buf.len() >= FLUSH_BYTES;
        drop(buf);
        if full || self.draining.get() {
            self.flush();
        }
    }

    /// Hands what the shard has to the writer.
    pub(crate) fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_BYTES * 2));
        self.counts.sent.fetch_add(1, Ordering::Release);
        if self.tx.send(Chunk::Lines(chunk)).is_err() {
            // The writer is gone: count the chunk as done so the exit does not wait for it.
            self.counts.written.fetch_add(1, Ordering::Release);
        }
    }

    /// The drain began: hands everything over (later lines go at once).
    pub(crate) fn drained(&self) {
        self.draining.set(true);
        self.flush();
        self.counts.drain_flushed.fetch_add(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_buffered_and_handed_over_whole() {
        let (tx, rx) = channel();
        let log = AccessLog::new(tx, Arc::default());
        log.call("127.0.0.1", "POST /run/f", 200, Some("http://w:1"), Duration::from_micros(12_345));
        log.call("::1", "GET /run/g?x=1", 502, None, Duration::ZERO);
        assert!(rx.try_recv().is_err(), "buffered until flushed");
        log.flush();
        let Ok(Chunk::Lines(chunk)) = rx.try_recv() else { panic!("lines handed over") };
        let text = String::from_utf8(chunk).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let fields: Vec<&str> = lines[0].split(' ').collect();
        assert_eq!(fields[1..], ["127.0.0.1", "\"POST", "/run/f\"", "200", "http://w:1", "12.345"]);
        assert!(fields[0].ends_with('Z') && fields[0].len() == "2026-11-29T12:40:01.123Z".len(), "{}", fields[0]);
        assert!(lines[1].ends_with(" \"GET /run/g?x=1\" 502 - 0.000"), "{}", lines[1]);
    }

    #[test]
    fn reopen_opens_the_path_again_after_the_lines_before() {
        let dir = std::env::temp_dir().join(format!("hiku-reopen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (path, rotated) = (dir.join("access.log"), dir.join("access.log.1"));
        let writer = open(&path, 1).unwrap();
        let log = writer.shard();
        log.call("127.0.0.1", "POST /run/before", 200, None, Duration::ZERO);
        log.flush();
        std::fs::rename(&path, &rotated).unwrap();
        writer.reopen();
        log.call("127.0.0.1", "POST /run/after", 200, None, Duration::ZERO);
        log.drained();
        writer.finish(Duration::from_secs(5));
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert!(read(&rotated).contains("/run/before") && !read(&rotated).contains("/run/after"), "{}", read(&rotated));
        assert!(read(&path).contains("/run/after") && !read(&path).contains("/run/before"), "{}", read(&path));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
