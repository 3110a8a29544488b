//! What a process has cost, from `/proc` (proc(5)): CPU time of all its
//! threads from `/proc/<pid>/stat`, peak resident memory from
//! `/proc/<pid>/status`, and its children (nginx's workers).

/// From `/proc/<pid>/stat`: the parent and the CPU time of every thread of
/// the process, dead ones included, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    pub utime: u64,
    pub stime: u64,
}

/// Parses a `stat` line. The command name (field 2) is in parentheses and
/// may hold spaces and parentheses itself, so fields are counted from the
/// last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; ppid is 4, utime 14, stime 15.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat { ppid: u32::try_from(field(4)?).ok()?, utime: field(14)?, stime: field(15)? })
}

/// `VmHWM` (peak resident set) from a `status` text, in kB.
pub fn parse_peak_rss_kb(text: &str) -> Option<u64> {
    parse_status_kb(text, "VmHWM:")
}

/// A `status` field given in kB (`VmRSS:`, `VmHWM:`).
fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().strip_suffix("kB")?.trim().parse().ok()
}

pub fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn peak_rss_kb(pid: u32) -> Option<u64> {
    parse_peak_rss_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// The resident set now (`VmRSS`), in kB.
pub fn rss_kb(pid: u32) -> Option<u64> {
    parse_status_kb(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS:")
}

/// Clock ticks per second, the unit of `utime` and `stime`.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a constant.
    match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as u64,
        _ => 100,
    }
}

/// CPU seconds used so far by all of `pids` (a process gone counts 0).
pub fn cpu_seconds(pids: &[u32]) -> f64 {
    let ticks: u64 = pids.iter().filter_map(|&p| stat(p)).map(|s| s.utime + s.stime).sum();
    ticks as f64 / ticks_per_second() as f64
}

/// The sum of the peak resident sets of `pids`, in MB.
pub fn peak_rss_mb(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| peak_rss_kb(p)).sum::<u64>() as f64 / 1024.0
}

/// The sum of the resident sets of `pids` now, in MB.
pub fn rss_mb(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| rss_kb(p)).sum::<u64>() as f64 / 1024.0
}

/// The processes whose parent is `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let pids = entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|&child| stat(child).is_some_and(|s| s.ppid == pid)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        let line = "4242 (nginx: worker (1) x) S 4241 4241 4241 0 -1 4194624 1529 0 0 0 \
                    1234 567 0 0 20 0 1 0 98765 12345678 900 18446744073709551615 1 1 0 0 0 0 0 \
                    4096 16384 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(parse_stat(line), Some(Stat { ppid: 4241, utime: 1234, stime: 567 }));
        assert_eq!(parse_stat("12 (cut short) S 1 2 3"), None);
        assert_eq!(parse_stat("no name at all"), None);
    }

    #[test]
    fn peak_rss_is_read_in_kb() {
        let status = "Name:\thiku\nVmPeak:\t  123456 kB\nVmHWM:\t    8832 kB\nVmRSS:\t    8000 kB\n";
        assert_eq!(parse_peak_rss_kb(status), Some(8832));
        assert_eq!(parse_status_kb(status, "VmRSS:"), Some(8000));
        assert_eq!(parse_peak_rss_kb("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn this_process_has_a_stat_a_peak_and_a_parent() {
        let me = std::process::id();
        let stat = stat(me).unwrap();
        assert_eq!(stat.ppid, std::os::unix::process::parent_id());
        assert!(peak_rss_kb(me).unwrap() > 0);
        assert!(rss_kb(me).unwrap() > 0);
        let child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let found = children(me).contains(&child.id());
        let mut child = child;
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(found, "the child {} is not among {me}'s children", child.id());
    }
}
