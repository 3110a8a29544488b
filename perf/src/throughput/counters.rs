//! What the kernel did for a contender over a window: its system calls and
//! context switches, counted by `perf stat` attached to its processes (when
//! perf is installed and allowed to trace; otherwise those numbers are
//! missing), and the machine's reschedule IPIs from `/proc/interrupts`
//! (all processes: the generator's and the upstreams' are in it too, the
//! same for every contender).
//!
//! perf starts with its events disabled and is switched on and off through
//! its control FIFO (`--control fifo:ctl,ack --delay -1`), so the count
//! covers exactly the window, not perf's own start-up.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The events counted per process.
const EVENTS: &str = "raw_syscalls:sys_enter,context-switches";
/// How long perf gets to answer a command on its control FIFO.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// Counts over one window; `None` where it could not be counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub syscalls: Option<u64>,
    pub context_switches: Option<u64>,
    pub reschedule_ipis: Option<u64>,
}

/// Why perf can't be used here, or `None` if it can: it must run and be
/// allowed to trace system calls (root, or a low perf_event_paranoid).
pub fn perf_unusable(perf: &Path) -> Option<String> {
    let output = Command::new(perf).args(["stat", "-x,", "-e", EVENTS, "--", "true"]).stdout(Stdio::null()).output();
    match output {
        Err(e) => Some(format!("{}: {e}", perf.display())),
        Ok(o) if !o.status.success() => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            Some(stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("failed").trim().to_string())
        }
        Ok(o) => {
            let counts = parse_perf_csv(&String::from_utf8_lossy(&o.stderr));
            match counts.iter().any(|(event, n)| event == "raw_syscalls:sys_enter" && n.is_some()) {
                true => None,
                false => Some("perf stat counted no system calls".to_string()),
            }
        }
    }
}

/// A `perf stat` attached to some processes, counting only while enabled.
pub struct PerfStat {
    child: Child,
    ctl: File,
    ack: File,
    output: PathBuf,
}

impl PerfStat {
    /// Attaches perf to `pids`; its FIFOs and output go in `dir`.
    pub fn attach(perf: &Path, pids: &[u32], dir: &Path) -> Result<PerfStat, String> {
        let pid_list = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let stem = format!("perf-{}-{}", std::process::id(), pids.first().copied().unwrap_or(0));
        let (ctl_path, ack_path) = (dir.join(format!("{stem}.ctl")), dir.join(format!("{stem}.ack")));
        let output = dir.join(format!("{stem}.csv"));
        for fifo in [&ctl_path, &ack_path] {
            let _ = std::fs::remove_file(fifo);
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
            // SAFETY: mkfifo(3) on a NUL-terminated path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(format!("mkfifo {}: {}", fifo.display(), std::io::Error::last_os_error()));
            }
        }
        // Read-write opens of a FIFO never block, whoever is at the other end.
        let open = |path: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))
        };
        let (ctl, ack) = (open(&ctl_path)?, open(&ack_path)?);
        let child = Command::new(perf)
            .args(["stat", "-x,", "--delay", "-1", "-e", EVENTS, "-p", &pid_list, "-o"])
            .arg(&output)
            .arg(format!("--control=fifo:{},{}", ctl_path.display(), ack_path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", perf.display()))?;
        Ok(PerfStat { child, ctl, ack, output })
    }

    /// Starts counting; returns once perf says it has.
    pub fn enable(&mut self) -> Result<(), String> {
        self.command("enable")
    }

    /// Stops counting; returns once perf says it has.
    pub fn disable(&mut self) -> Result<(), String> {
        self.command("disable")
    }

    fn command(&mut self, command: &str) -> Result<(), String> {
        self.ctl.write_all(format!("{command}\n").as_bytes()).map_err(|e| format!("perf control: {e}"))?;
        let mut poll = libc::pollfd { fd: self.ack.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) on one valid descriptor.
        let ready = unsafe { libc::poll(&mut poll, 1, ACK_TIMEOUT.as_millis() as libc::c_int) };
        if ready != 1 {
            return Err(format!("perf did not acknowledge {command:?} within {ACK_TIMEOUT:?}"));
        }
        let mut ack = [0u8; 16];
        let n = self.ack.read(&mut ack).map_err(|e| format!("perf control: {e}"))?;
        match ack[..n].starts_with(b"ack") {
            true => Ok(()),
            false => Err(format!("perf answered {:?} to {command:?}", String::from_utf8_lossy(&ack[..n]))),
        }
    }

    /// Ends perf (it prints its counts on SIGINT) and reads them:
    /// (system calls, context switches).
    pub fn finish(mut self) -> (Option<u64>, Option<u64>) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
        let _ = self.child.wait();
        let text = std::fs::read_to_string(&self.output).unwrap_or_default();
        let counts = parse_perf_csv(&text);
        let count = |event: &str| counts.iter().find(|(e, _)| e == event).and_then(|(_, n)| *n);
        (count("raw_syscalls:sys_enter"), count("context-switches"))
    }
}

impl Drop for PerfStat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.output);
    }
}

/// The events of `perf stat -x,` output: (event, count), the count `None`
/// where perf says `<not counted>` or `<not supported>`. Comments and
/// perf's own remarks ("Events enabled") are skipped.
pub fn parse_perf_csv(text: &str) -> Vec<(String, Option<u64>)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let event = fields.get(2)?.trim();
            if event.is_empty() || fields.len() < 4 {
                return None;
            }
            Some((event.to_string(), fields[0].trim().parse().ok()))
        })
        .collect()
}

/// Reschedule interrupts taken so far by all CPUs, from `/proc/interrupts`.
pub fn reschedule_ipis() -> Option<u64> {
    parse_interrupts(&std::fs::read_to_string("/proc/interrupts").ok()?, "RES")
}

/// The sum over CPUs of the interrupt line named `name` (`RES:`), or `None`
/// if there is no such line. The line is the name, one count per CPU,
/// then a description.
pub fn parse_interrupts(text: &str, name: &str) -> Option<u64> {
    let cpus = text.lines().next()?.split_whitespace().filter(|w| w.starts_with("CPU")).count();
    let line = text.lines().find(|l| l.trim_start().strip_prefix(name).is_some_and(|r| r.starts_with(':')))?;
    let counts = line.split_once(':')?.1.split_whitespace().take(cpus);
    counts.map(|c| c.parse::<u64>().ok()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_counts_are_read_by_event() {
        let text = "# started on Sun Nov 29 08:15:12 2026\n\n\
                    4144641,,raw_syscalls:sys_enter,1002001081,100.00,,\n\
                    2,,context-switches,1001999117,100.00,,Events disabled\n\
                    Events enabled\n\
                    <not supported>,,irq_vectors:reschedule_entry,0,100.00,,\n";
        assert_eq!(
            parse_perf_csv(text),
            [
                ("raw_syscalls:sys_enter".to_string(), Some(4144641)),
                ("context-switches".to_string(), Some(2)),
                ("irq_vectors:reschedule_entry".to_string(), None),
            ]
        );
        assert!(parse_perf_csv("").is_empty());
    }

    #[test]
    fn interrupts_are_summed_over_cpus() {
        let text = "           CPU0       CPU1       \n  \
                    0:         39          0   IO-APIC   2-edge      timer\n\
                    NMI:          0          0   Non-maskable interrupts\n\
                    RES:     123456      7890   Rescheduling interrupts\n\
                    CAL:       5000       6000   Function call interrupts\n";
        assert_eq!(parse_interrupts(text, "RES"), Some(131346));
        assert_eq!(parse_interrupts(text, "CAL"), Some(11000));
        assert_eq!(parse_interrupts(text, "TLB"), None);
    }

    #[test]
    fn this_machine_counts_reschedule_interrupts() {
        assert!(reschedule_ipis().is_some(), "{:?}", std::fs::read_to_string("/proc/interrupts"));
    }

    /// Where perf can trace here, it counts a busy process's system calls
    /// while enabled. Skipped (and says so) where it can't.
    #[test]
    fn perf_counts_a_busy_process_while_enabled() {
        let perf = Path::new("perf");
        if let Some(why) = perf_unusable(perf) {
            eprintln!("skipped: perf is not usable here: {why}");
            return;
        }
        let mut busy =
            Command::new("dd").args(["if=/dev/zero", "of=/dev/null", "bs=1"]).stderr(Stdio::null()).spawn().unwrap();
        let dir = std::env::temp_dir();
        let mut stat = PerfStat::attach(perf, &[busy.id()], &dir).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        stat.enable().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        stat.disable().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let (syscalls, switches) = stat.finish();
        busy.kill().unwrap();
        busy.wait().unwrap();
        // dd makes two system calls per byte: far more than none.
        let syscalls = syscalls.expect("counted");
        assert!(syscalls > 1000, "{syscalls}");
        assert!(switches.is_some());
    }
}
