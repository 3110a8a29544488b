//! Signals, and stopping without losing a call. SIGTERM or SIGINT first
//! tells a front, if `shutdown_announce_ms` says so (`/health` answers 503
//! for that long while every call is still served, so the front's checks
//! take the instance out before it stops taking connections), then starts a
//! drain: every shard closes its listener (new connections are refused),
//! closes its parked keep-alive connections, and answers what is in flight
//! with `Connection: close`; the process exits 0 once no connection is
//! left, or when `shutdown_grace_ms` is up. A second SIGTERM or SIGINT
//! exits at once. SIGHUP reloads the config (what [`on_reload`] was given);
//! SIGUSR1 reopens the access log after rotation ([`on_reopen`]); SIGPIPE
//! is ignored by the Rust runtime already.
//!
//! The signals are blocked in every thread and taken by one thread of
//! their own with `sigwait`, so no handler runs inside a shard. The shards
//! learn of the drain from an atomic flag they look at a few times a
//! second, off the request path.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The process's state: signals and the exit are the process's, not a shard's.
static DRAINING: AtomicBool = AtomicBool::new(false);
/// SIGTERM or SIGINT came: the process is on its way out (announcing it,
/// then draining).
static STOPPING: AtomicBool = AtomicBool::new(false);
static OPEN: AtomicUsize = AtomicUsize::new(0);
/// What SIGHUP does, and what the exit waits for, once the app has said.
static ON_RELOAD: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();
static BEFORE_EXIT: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();
/// What SIGUSR1 does.
static ON_REOPEN: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// What SIGHUP does from now on (run in a thread of its own): until this
/// is called, SIGHUP is ignored.
pub(crate) fn on_reload(reload: impl Fn() + Send + Sync + 'static) {
    let _ = ON_RELOAD.set(Box::new(reload));
}

/// What SIGUSR1 does from now on (reopen the access log): until this is
/// called, SIGUSR1 is ignored.
pub(crate) fn on_reopen(reopen: impl Fn() + Send + Sync + 'static) {
    let _ = ON_REOPEN.set(Box::new(reopen));
}

/// What a drained process does last before it exits (the access log's
/// last lines, say).
pub(crate) fn before_exit(finish: impl Fn() + Send + Sync + 'static) {
    let _ = BEFORE_EXIT.set(Box::new(finish));
}

/// How often the shards look for a drain, and the exit for a drained process.
pub(crate) const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Whether the process is draining.
pub(crate) fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

/// Whether the process is stopping: it tells a front (`/health` says 503)
/// before it drains, or drains.
pub(crate) fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// Client connections open in the process.
pub(crate) fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// Counts a client connection as open while it lives.
#[derive(Debug)]
pub(crate) struct OpenConnection(());

impl OpenConnection {
    #[allow(clippy::new_without_default)]
    pub(crate) fn new() -> OpenConnection {
        OPEN.fetch_add(1, Ordering::Relaxed);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The signals hiku takes.
fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1] {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks SIGTERM, SIGINT, SIGHUP and SIGUSR1 in this thread (and so in every thread
/// it starts after) and takes them in a thread of their own. Call before
/// any other thread starts.
pub fn handle_signals(grace: Duration, announce: Duration) {
    let set = signal_set();
    // SAFETY: pthread_sigmask with a valid set, on this thread.
    let blocked = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if blocked != 0 {
        log::warn!("cannot block signals ({}): SIGTERM will not drain", std::io::Error::from_raw_os_error(blocked));
        return;
    }
    let started = std::thread::Builder::new().name("hiku-signals".into()).spawn(move || loop {
        let mut signal = 0;
        // SAFETY: sigwait on a valid set, into a local.
        if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
            continue;
        }
        match signal {
            libc::SIGHUP => {
                // A thread of its own: resolving new workers may take a
                // while, and a SIGTERM meanwhile must not wait for it.
                let Some(reload) = ON_RELOAD.get() else {
                    log::info!("SIGHUP before hiku started serving: ignored");
                    continue;
                };
                let reload = std::thread::Builder::new().name("hiku-reload".into()).spawn(reload);
                if let Err(e) = reload {
                    log::error!("SIGHUP: cannot start the reload: {e}");
                }
            }
            libc::SIGUSR1 => match ON_REOPEN.get() {
                // Quick: it hands the access log's writer a message.
                Some(reopen) => reopen(),
                None => log::info!("SIGUSR1: no access log to reopen"),
            },
            _ if STOPPING.swap(true, Ordering::Relaxed) => {
                log::warn!("{}: exiting now, {} connections open", name(signal), open_connections());
                std::process::exit(1);
            }
            _ => {
                let signal = name(signal);
                let stop = move || {
                    if !announce.is_zero() {
                        log::info!("{signal}: /health answers 503 for {} ms, then drains", announce.as_millis());
                        // A thread of its own (hiku-drain): sleeping blocks no executor.
                        std::thread::sleep(announce);
                    }
                    log::info!(
                        "{signal}: draining: no new connections, {} open, waiting up to {} ms for them",
                        open_connections(),
                        grace.as_millis()
                    );
                    DRAINING.store(true, Ordering::Relaxed);
                    exit_when_drained(grace);
                };
                let waiting = std::thread::Builder::new().name("hiku-drain".into()).spawn(stop);
                if let Err(e) = waiting {
                    log::warn!("cannot wait for the drain ({e}): exiting now");
                    std::process::exit(1);
                }
            }
        }
    });
    if let Err(e) = started {
        log::warn!("cannot start the signal thread ({e}): SIGTERM will not drain");
    }
}

fn name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}

/// Exits 0 once no client connection is open, or when `grace` is up.
fn exit_when_drained(grace: Duration) {
    let start = Instant::now();
    loop {
        let open = open_connections();
        if open == 0 {
            log::info!("drained in {} ms; exiting", start.elapsed().as_millis());
            if let Some(finish) = BEFORE_EXIT.get() {
                finish();
            }
            std::process::exit(0);
        }
        if start.elapsed() >= grace {
            log::warn!("{open} connections still open after {} ms; exiting", grace.as_millis());
            if let Some(finish) = BEFORE_EXIT.get() {
                finish();
            }
            std::process::exit(0);
        }
        // A thread of its own (hiku-drain), not a shard's: sleeping here
        // blocks no executor.
        std::thread::sleep(LOOK_EVERY.min(grace.saturating_sub(start.elapsed())));
    }
}
