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
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// The log's file and writer thread, and what the shards handed over.
#[derive(Clone)]
pub struct Writer {
    tx: Sender<Vec<u8>>,
    counts: Arc<Counts>,
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
pub fn open(path: &Path, shards: usize) -> io::Result<Writer> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let (tx, rx) = channel::<Vec<u8>>();
    let shown = path.display().to_string();
    let counts = Arc::new(Counts { shards, ..Counts::default() });
    let written = Arc::clone(&counts);
    std::thread::Builder::new().name("hiku-access-log".into()).spawn(move || {
        let mut failing = false;
        for chunk in rx {
            match file.write_all(&chunk) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    log::error!("access log {shown}: {e} (lines are lost until writes work again)");
                    failing = true;
                }
                Err(_) => {}
            }
            written.written.fetch_add(1, Ordering::Release);
        }
    })?;
    Ok(Writer { tx, counts })
}

impl Writer {
    /// A shard's side of the log.
    pub fn shard(&self) -> AccessLog {
        AccessLog::new(self.tx.clone(), Arc::clone(&self.counts))
    }

    /// Before the process exits after a drain: waits until every shard has
    /// handed its lines over and the writer has written them, at most `within`.
    pub fn finish(&self, within: Duration) {
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
pub struct AccessLog {
    tx: Sender<Vec<u8>>,
    counts: Arc<Counts>,
    /// The drain began: lines go to the writer at once.
    draining: Cell<bool>,
    buf: RefCell<Vec<u8>>,
    /// The second the cached stamp is for, and the stamp (`YYYY-MM-DDTHH:MM:SS`).
    second: Cell<u64>,
    stamp: RefCell<String>,
}

impl AccessLog {
    fn new(tx: Sender<Vec<u8>>, counts: Arc<Counts>) -> AccessLog {
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
    pub fn call(&self, client: &str, request: &str, status: u16, worker: Option<&str>, took: Duration) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = now.as_secs();
        if self.second.get() != second {
            self.second.set(second);
            *self.stamp.borrow_mut() = stamp(second);
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
    pub fn flush(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let chunk = std::mem::replace(&mut *buf, Vec::with_capacity(FLUSH_BYTES * 2));
        self.counts.sent.fetch_add(1, Ordering::Release);
        if self.tx.send(chunk).is_err() {
            // The writer is gone: count the chunk as done so the exit does not wait for it.
            self.counts.written.fetch_add(1, Ordering::Release);
        }
    }

    /// The drain began: hands everything over (later lines go at once).
    pub fn drained(&self) {
        self.draining.set(true);
        self.flush();
        self.counts.drain_flushed.fetch_add(1, Ordering::AcqRel);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch.
fn stamp(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), from 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_utc_civil_times() {
        assert_eq!(stamp(0), "1970-01-01T00:00:00");
        assert_eq!(stamp(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(stamp(1_796_041_201), "2026-11-30T12:20:01");
        assert_eq!(stamp(4_102_444_799), "2099-12-31T23:59:59");
    }

    #[test]
    fn lines_are_buffered_and_handed_over_whole() {
        let (tx, rx) = channel();
        let log = AccessLog::new(tx, Arc::default());
        log.call("127.0.0.1", "POST /run/f", 200, Some("http://w:1"), Duration::from_micros(12_345));
        log.call("::1", "GET /run/g?x=1", 502, None, Duration::ZERO);
        assert!(rx.try_recv().is_err(), "buffered until flushed");
        log.flush();
        let text = String::from_utf8(rx.try_recv().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let fields: Vec<&str> = lines[0].split(' ').collect();
        assert_eq!(fields[1..], ["127.0.0.1", "\"POST", "/run/f\"", "200", "http://w:1", "12.345"]);
        assert!(fields[0].ends_with('Z') && fields[0].len() == "2026-11-29T12:40:01.123Z".len(), "{}", fields[0]);
        assert!(lines[1].ends_with(" \"GET /run/g?x=1\" 502 - 0.000"), "{}", lines[1]);
    }
}
