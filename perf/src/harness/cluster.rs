//! The processes of one run: the emulator's workers or trivial upstreams,
//! and a scheduler in front of them, started, waited for, and killed
//! however the run ends ([`process`](super::process) says how).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Child;

use crate::emulator::model::Stats;
use crate::harness::process::{command, until_listening, START_DEADLINE};
use crate::http::{self, Conn};

/// What the emulator is told, beyond where to report evictions.
#[derive(Debug, Clone)]
pub struct EmulatorArgs {
    pub binary: PathBuf,
    pub workers: usize,
    pub memory_mb: u64,
    pub paused_mb: u64,
    pub destroy_ms: f64,
    pub code_refresh_s: f64,
    pub time_scale: f64,
    pub seed: u64,
    /// A fault in the first worker's reports (`hiku-emulator --fault`).
    pub fault: Option<crate::emulator::Fault>,
    /// Whether answers carry the hint headers (`hiku-emulator --no-hints` if not).
    pub hints: bool,
}

/// A running emulator and its workers' URLs.
pub struct Emulator {
    _child: Child,
    pub urls: Vec<String>,
}

/// A running scheduler and the `host:port` it listens on.
pub struct Scheduler {
    child: Child,
    pub address: String,
}

impl Scheduler {
    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends it `signal`.
    pub fn signal(&self, signal: libc::c_int) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child, which has not been reaped.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }

    /// Waits for it to exit, at most `within`; its status.
    pub async fn exited(&mut self, within: Duration) -> Result<std::process::ExitStatus, String> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.map_err(|e| e.to_string()),
            Err(_) => Err(format!("still running after {within:?}")),
        }
    }
}

fn error(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Starts the emulator and reads its workers' URLs from its stdout.
pub async fn start_emulator(args: &EmulatorArgs, scheduler_url: &str) -> Result<Emulator, String> {
    let mut child = command(&args.binary)
        .args(["--workers", &args.workers.to_string(), "--memory-mb", &args.memory_mb.to_string()])
        .args(["--paused-mb", &args.paused_mb.to_string(), "--code-refresh-s", &args.code_refresh_s.to_string()])
        .args(["--destroy-ms", &args.destroy_ms.to_string(), "--time-scale", &args.time_scale.to_string()])
        .args(["--seed", &args.seed.to_string(), "--scheduler", scheduler_url])
        .args(args.fault.map(|f| ["--fault", f.name()]).into_iter().flatten())
        .args((!args.hints).then_some("--no-hints"))
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| error(&format!("starting {}", args.binary.display()), e))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut urls = Vec::new();
    let read = async {
        while urls.len() < args.workers {
            match lines.next_line().await {
                Ok(Some(line)) => urls.extend(line.strip_prefix("worker ").map(str::to_string)),
                Ok(None) => return Err("the emulator exited before listing its workers".to_string()),
                Err(e) => return Err(error("reading the emulator's output", e)),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(START_DEADLINE, read).await {
        Ok(Ok(())) => Ok(Emulator { _child: child, urls }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("the emulator listed no workers within {START_DEADLINE:?}")),
    }
}

/// Starts `binary start -c <config> [extra...]`, with `env` added to its
/// environment and its output in `log`, and waits until its port accepts
/// connections.
pub async fn start_scheduler(
    binary: &Path,
    config: &Path,
    extra: &[String],
    env: &[(String, String)],
    address: &str,
    log: &Path,
) -> Result<Scheduler, String> {
    let log_file = std::fs::File::create(log).map_err(|e| error(&log.display().to_string(), e))?;
    let log_err = log_file.try_clone().map_err(|e| error(&log.display().to_string(), e))?;
    let mut child = command(binary)
        .arg("start")
        .arg("-c")
        .arg(config)
        .args(extra)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .map_err(|e| error(&format!("starting {}", binary.display()), e))?;
    until_listening(&mut child, &binary.display().to_string(), address, log, || true).await?;
    Ok(Scheduler { child, address: address.to_string() })
}

/// Starts `hiku-upstream` with `servers` servers from `port` on (0: any
/// ports) and reads their URLs.
pub async fn start_upstreams(binary: &Path, servers: usize, port: u16) -> Result<(Child, Vec<String>), String> {
    let mut child = command(binary)
        .args(["--servers", &servers.to_string(), "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", binary.display()))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let mut urls = Vec::new();
    let read = async {
        while urls.len() < servers {
            match lines.next_line().await {
                Ok(Some(line)) => urls.extend(line.strip_prefix("upstream ").map(str::to_string)),
                Ok(None) => return Err("the upstreams exited before listing their URLs".to_string()),
                Err(e) => return Err(format!("reading the upstreams' output: {e}")),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(START_DEADLINE, read).await {
        Ok(Ok(())) => Ok((child, urls)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("the upstreams listed no URLs within {START_DEADLINE:?}")),
    }
}

/// A worker's `GET /stats`.
pub async fn worker_stats(url: &str) -> Result<Stats, String> {
    let host = http::authority(url).ok_or_else(|| format!("bad worker URL {url}"))?;
    let fetch = async {
        let mut conn = Conn::new(TcpStream::connect(host).await?);
        conn.write_all(&http::get(host, "/stats")).await?;
        conn.read_response().await
    };
    let response = tokio::time::timeout(START_DEADLINE, fetch)
        .await
        .map_err(|_| format!("{url}/stats: no answer"))?
        .map_err(|e| error(&format!("{url}/stats"), e))?;
    serde_json::from_slice(&response.body).map_err(|e| error(&format!("{url}/stats"), e))
}
