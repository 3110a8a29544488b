//! A minimal stderr logger for the `log` facade. The level comes from
//! `HIKU_LOG` (error, warn, info, debug, trace; default info).
//!
//! A line starts with its time, RFC 3339 in UTC to the millisecond
//! (`2026-12-07T13:30:01.123Z hiku WARN ...`), unless stderr is the
//! journal: systemd then says so in `JOURNAL_STREAM` (stderr's device and
//! inode), the journal stamps each line itself and reads its level from a
//! syslog priority in front (`<4>hiku WARN ...`), which `journalctl -p`
//! filters on.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr {
    /// Stderr is the journal: priorities, not times.
    journal: bool,
}

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let (level, priority) = match record.level() {
            Level::Error => ("ERROR", 3),
            Level::Warn => ("WARN", 4),
            Level::Info => ("INFO", 6),
            Level::Debug => ("DEBUG", 7),
            Level::Trace => ("TRACE", 7),
        };
        let mut err = std::io::stderr().lock();
        let _ = if self.journal {
            writeln!(err, "<{priority}>hiku {level} {}", record.args())
        } else {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            let (stamp, ms) = (utc(now.as_secs()), now.subsec_millis());
            writeln!(err, "{stamp}.{ms:03}Z hiku {level} {}", record.args())
        };
    }

    fn flush(&self) {}
}

/// Whether stderr is the journal: `JOURNAL_STREAM` (`device:inode`, as
/// systemd sets it) names the file stderr is. A child that inherited the
/// variable but not the stream is not.
fn stderr_is_journal(journal_stream: Option<&str>) -> bool {
    let Some((dev, ino)) = journal_stream.and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    // SAFETY: fstat on fd 2 into a zeroed local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(2, &mut st) } != 0 {
        return false;
    }
    st.st_dev as u64 == dev && st.st_ino as u64 == ino
}

/// Installs the logger; call once, first thing in `main`.
pub fn init() {
    let level = std::env::var("HIKU_LOG").ok().and_then(|l| l.parse().ok()).unwrap_or(LevelFilter::Info);
    let journal = stderr_is_journal(std::env::var("JOURNAL_STREAM").ok().as_deref());
    static PLAIN: Stderr = Stderr { journal: false };
    static JOURNAL: Stderr = Stderr { journal: true };
    if log::set_logger(if journal { &JOURNAL } else { &PLAIN }).is_ok() {
        log::set_max_level(level);
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) for seconds since the Unix epoch.
pub(crate) fn utc(secs: u64) -> String {
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
        assert_eq!(utc(0), "1970-01-01T00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(utc(1_796_041_201), "2026-11-30T12:20:01");
        assert_eq!(utc(4_102_444_799), "2099-12-31T23:59:59");
    }

    #[test]
    fn the_journal_is_stderr_only_when_its_device_and_inode_are() {
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(2, &mut st) }, 0);
        let ours = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(stderr_is_journal(Some(&ours)));
        let other = format!("{}:{}", st.st_dev, st.st_ino.wrapping_add(1));
        for value in [None, Some(""), Some("x:y"), Some("12"), Some(other.as_str())] {
            assert!(!stderr_is_journal(value), "{value:?}");
        }
    }
}
