//! Starting processes so that they never outlive a measurement: they are
//! killed when their handles drop, and by the kernel if this process dies
//! first; Ctrl-C drops them too.

use std::io;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long a process gets to come up.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// A command whose process dies with us, even if we are killed outright.
pub fn command(binary: &Path) -> Command {
    command_dying_with(binary, libc::SIGKILL)
}

/// A command whose process is killed when dropped, and sent `signal` if we
/// die first (SIGTERM for a process that must take its own children down).
pub fn command_dying_with(binary: &Path, signal: libc::c_int) -> Command {
    let mut command = Command::new(binary);
    command.kill_on_drop(true).stdin(Stdio::null());
    // SAFETY: prctl is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Runs `work` to its end or until Ctrl-C; dropping it (on Ctrl-C, too)
/// kills every process it started.
pub fn until_interrupted<T>(work: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(async {
        tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    })
}

/// Waits until `child` (started as `name`, its output in `log`) takes
/// connections on `address` and `ready` says it is up: an error with the
/// log's last lines if it exits first, or is not up within
/// [`START_DEADLINE`].
pub async fn until_listening(
    child: &mut Child,
    name: &str,
    address: &str,
    log: &Path,
    mut ready: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + START_DEADLINE;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{name} exited ({status}) before listening; its log:\n{}", tail(log)));
        }
        if ready() && TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{name} did not listen on {address} within {START_DEADLINE:?}; its log:\n{}",
                tail(log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last lines of a log, for an error message.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A free port on 127.0.0.1 for a process to listen on. The emulator must
/// know the scheduler's address before the scheduler (which needs the
/// workers' URLs) starts, so the port is picked first and released; another
/// process could take it in between, which the readiness check would not
/// notice, but nothing else on this machine binds ports at random.
pub fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| format!("finding a free port: {e}"))?.port())
}

/// Raises this process's soft limit on open files to the hard limit: a
/// descriptor per connection, and there may be ten thousand. Children
/// (the upstreams, the proxies) inherit it.
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
