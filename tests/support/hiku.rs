//! The `hiku` binary: started on an I/O driver given by the test, on a
//! config file of its own in a scratch directory; signalled, waited for,
//! killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::{wait_for, Client, Response, DEADLINE};

/// Every balancer hiku has, by its name in the config.
pub const BALANCERS: [&str; 6] =
    ["pull-based", "hashing-bounded", "least-connections", "random", "pull-hashing", "predictive"];

/// The I/O driver hiku is started on (`HIKU_IO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `HIKU_IO` not set: hiku picks, io_uring where the kernel allows it.
    Auto,
    /// `HIKU_IO=epoll`: the driver hiku falls back to where io_uring is
    /// blocked.
    Epoll,
}

impl Driver {
    /// What `HIKU_IO` is set to, if anything.
    pub fn env(self) -> Option<&'static str> {
        match self {
            Driver::Auto => None,
            Driver::Epoll => Some("epoll"),
        }
    }

    /// The `hiku` binary on this driver, run with arguments; a config file
    /// is written first.
    pub fn command(self, config: &str, args: &[&str]) -> (Command, PathBuf) {
        let dir = scratch_dir();
        let path = dir.join("hiku.json");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hiku"));
        cmd.args(args).arg("-c").arg(&path).env("HIKU_LOG", "warn");
        if let Some(driver) = self.env() {
            cmd.env("HIKU_IO", driver);
        }
        (cmd, path)
    }
}

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir =
        std::env::temp_dir().join(format!("hiku-e2e-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Cores the tests run hiku on: two where there are two, to cover shards
/// sharing state.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(2)
}

/// [`Driver::command`] on [`Driver::Auto`], for tests not run per driver
/// (tests/cli.rs).
pub fn hiku_command(config: &str, args: &[&str]) -> (Command, PathBuf) {
    Driver::Auto.command(config, args)
}

/// A config on a free port with `balancer` and `workers`, `extra` keys added
/// (over those two, if it has them).
pub fn config(balancer: &str, workers: &[&str], extra: serde_json::Value) -> String {
    let mut config = serde_json::json!({ "host": "127.0.0.1", "port": 0, "balancer": balancer, "workers": workers });
    config.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    config.to_string()
}

/// Writes a config for `workers` with `extra` keys where `hiku` reads it
/// (for a reload).
pub fn rewrite_config(hiku: &Hiku, balancer: &str, workers: &[&str], extra: serde_json::Value) {
    std::fs::write(hiku.config_path(), config(balancer, workers, extra)).unwrap();
}

/// How to start hiku: on which driver, on how many cores. From [`Hiku::on`].
#[derive(Debug, Clone, Copy)]
pub struct Launch {
    driver: Driver,
    cores: usize,
}

impl Launch {
    /// On `cores` cores instead of [`cores()`].
    pub fn cores(self, cores: usize) -> Launch {
        Launch { cores, ..self }
    }

    /// Starts hiku with `balancer` in front of `workers` (URLs).
    pub fn start(self, balancer: &str, workers: &[&str]) -> Hiku {
        self.start_with(balancer, workers, serde_json::json!({}))
    }

    /// Starts hiku with `balancer` in front of `workers`, with `extra` keys
    /// in its config.
    pub fn start_with(self, balancer: &str, workers: &[&str], extra: serde_json::Value) -> Hiku {
        self.start_config(&config(balancer, workers, extra))
    }

    /// Starts hiku on a config of its own.
    pub fn start_config(self, config: &str) -> Hiku {
        let (mut cmd, path) = self.driver.command(config, &["start", "--cores", &self.cores.to_string()]);
        let stderr = path.with_file_name("stderr.log");
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(&stderr).unwrap()).spawn().expect("hiku starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(DEADLINE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("hiku did not start: {}", std::fs::read_to_string(&stderr).unwrap_or_default())
        });
        let addr = line.strip_prefix("listening on ").and_then(|a| a.parse().ok()).expect("listening on <addr>");
        Hiku { child, addr, stderr }
    }
}

/// A running hiku, killed on drop.
pub struct Hiku {
    child: Child,
    pub addr: SocketAddr,
    stderr: PathBuf,
}

impl Hiku {
    /// How hiku is to be started on `driver`: `Hiku::on(driver).start(..)`.
    pub fn on(driver: Driver) -> Launch {
        Launch { driver, cores: cores() }
    }

    /// Starts hiku on [`Driver::Auto`] with `balancer` in front of `workers`
    /// (URLs), for tests not run per driver (tests/cli.rs); the end-to-end
    /// tests say their driver with [`Hiku::on`].
    pub fn start(balancer: &str, workers: &[&str]) -> Hiku {
        Hiku::on(Driver::Auto).start(balancer, workers)
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// One request on a fresh connection.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> Response {
        self.client().request(method, target, &[], body)
    }

    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, b"")
    }

    pub fn post(&self, target: &str, body: &[u8]) -> Response {
        self.request("POST", target, body)
    }

    /// The config file hiku was started with (a reload re-reads it).
    pub fn config_path(&self) -> PathBuf {
        self.stderr.with_file_name("hiku.json")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The peak resident set size of the process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM in /proc/<pid>/status");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` to the hiku process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits (up to the deadline) for hiku to exit; its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_for("hiku to exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }
}

impl Drop for Hiku {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.stderr.parent().unwrap());
    }
}
