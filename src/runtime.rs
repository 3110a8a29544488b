//! The seam between hiku and its runtime (monoio): which I/O driver the
//! shards run on, their pinned threads, and socket I/O over the owned
//! buffers a completion-based runtime needs. Nothing else in hiku asks
//! which driver it runs on.
//!
//! The driver is chosen once at start: io_uring with `COOP_TASKRUN` and
//! `SINGLE_ISSUER` (the kernel runs a completion's work when the shard's
//! own thread next enters it, with no interrupt and no wake-up from
//! another core), or epoll where io_uring is blocked (seccomp profiles,
//! `kernel.io_uring_disabled`) or asked for with `HIKU_IO=epoll`.
//!
//! Not `DEFER_TASKRUN`: with it, a completion that had to wait for data is
//! posted only while the shard waits for completions, and since Linux 6.13
//! at most about twenty of those per wait, while one that completes at
//! submission is posted at once. At 4096 busy connections on one core the
//! calls behind the deferred ones waited 3-4 times the median (p99.99
//! 1.0-1.45 s, against 0.27-0.41 s without the flag, same binary). Without
//! it, on two cores, hiku answers as many calls a second or more (1.00-1.14
//! times at 64 to 1024 connections) for the same CPU per call or less; on
//! one core, 0.82-0.90 times the calls at 64 and 256 connections, and p99
//! 0.56 times at 1024 (`hiku-perf throughput --quick --rounds 5`).

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

pub(crate) use monoio::io::Canceller;
pub(crate) use monoio::net::{TcpListener, TcpStream};
pub(crate) use monoio::spawn;
pub(crate) use monoio::time::{sleep, timeout};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelableAsyncReadRent};
use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};

/// Submission queue entries per shard's ring.
const RING_ENTRIES: u32 = 1024;
/// The environment variable that forces a driver: `io_uring`, `epoll` or
/// `auto` (the default).
pub(crate) const IO_ENV: &str = "HIKU_IO";

/// The I/O driver every shard runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Driver {
    /// io_uring; `cooperative` when the kernel takes `COOP_TASKRUN` and
    /// `SINGLE_ISSUER` (Linux 6.0+), plain io_uring otherwise.
    IoUring {
        cooperative: bool,
    },
    Epoll,
}

impl fmt::Display for Driver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Driver::IoUring { cooperative: true } => "io_uring",
            Driver::IoUring { cooperative: false } => "io_uring (without cooperative task running)",
            Driver::Epoll => "epoll",
        })
    }
}

impl Driver {
    /// The driver `HIKU_IO` asks for, or the best this kernel allows. An
    /// explicit `io_uring` that the kernel refuses is an error; `auto`
    /// falls back to epoll with a warning.
    pub(crate) fn choose() -> Result<Driver, String> {
        let wanted = std::env::var(IO_ENV).unwrap_or_default();
        match wanted.to_ascii_lowercase().as_str() {
            "epoll" => Ok(Driver::Epoll),
            "io_uring" | "uring" => Driver::probe_uring().map_err(|e| format!("{IO_ENV}={wanted}: {e}")),
            "" | "auto" => Ok(Driver::probe_uring().unwrap_or_else(|e| {
                log::warn!("{e}: running on epoll instead");
                Driver::Epoll
            })),
            _ => Err(format!("{IO_ENV}={wanted:?} is not one of auto, io_uring, epoll")),
        }
    }

    fn probe_uring() -> Result<Driver, String> {
        if uring_builder(true).build(8).is_ok() {
            return Ok(Driver::IoUring { cooperative: true });
        }
        match uring_builder(false).build(8) {
            Ok(_) => Ok(Driver::IoUring { cooperative: false }),
            Err(e) => Err(format!("io_uring is not available: {e}")),
        }
    }
}

fn uring_builder(cooperative: bool) -> io_uring::Builder {
    let mut b = io_uring::IoUring::builder();
    if cooperative {
        b.setup_coop_taskrun().setup_single_issuer();
    }
    b
}

/// Runs `shard(i, input)` for each of `inputs`, each on its own thread
/// with its own runtime on `driver`, pinned to the `i`-th core this process
/// may use if `pin`; returns when all have ended.
pub(crate) fn run_shards<T, F, Fut>(inputs: Vec<T>, driver: Driver, pin: bool, shard: F) -> Result<(), String>
where
    T: Send + 'static,
    F: Fn(usize, T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()>,
{
    let shard = std::sync::Arc::new(shard);
    let cpus = allowed_cpus();
    let blocking = monoio::blocking::DefaultThreadPool::new(1);
    let threads: Vec<_> = inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            let shard = std::sync::Arc::clone(&shard);
            let cpu = cpus.get(i % cpus.len().max(1)).copied().filter(|_| pin);
            let blocking = blocking.clone();
            std::thread::Builder::new()
                .name(format!("hiku-{i}"))
                .spawn(move || -> Result<(), String> {
                    if let Some(cpu) = cpu {
                        pin_to(cpu);
                    }
                    let pool = Box::new(blocking);
                    let fail = |e: io::Error| format!("cannot start the {driver} runtime on shard {i}: {e}");
                    match driver {
                        Driver::IoUring { cooperative } => RuntimeBuilder::<IoUringDriver>::new()
                            .with_entries(RING_ENTRIES)
                            .uring_builder(uring_builder(cooperative))
                            .enable_timer()
                            .attach_thread_pool(pool)
                            .build()
                            .map_err(fail)?
                            .block_on(shard(i, input)),
                        Driver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
                            .enable_timer()
                            .attach_thread_pool(pool)
                            .build()
                            .map_err(fail)?
                            .block_on(shard(i, input)),
                    }
                    Ok(())
                })
                .map_err(|e| format!("cannot start shard thread {i}: {e}"))
        })
        .collect::<Result<_, _>>()?;
    for t in threads {
        t.join().map_err(|_| "a shard thread panicked".to_string())??;
    }
    Ok(())
}

/// The cores `shards` pinned shards run on, shard `i` on the `i`-th, if
/// each has a core of its own and they are numbered in a row.
pub(crate) fn pinned_cores(shards: usize) -> Option<std::ops::Range<usize>> {
    let cpus = allowed_cpus();
    let first = *cpus.first()?;
    let cores = first..first + shards;
    (cpus.len() >= shards && cpus[..shards].iter().copied().eq(cores.clone())).then_some(cores)
}

/// The CPUs in this process's affinity mask (a container's cpuset, say).
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t filled in by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        if libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect()
    }
}

fn pin_to(cpu: usize) {
    // SAFETY: a cpu_set_t with one CPU set, for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            log::warn!("cannot pin a shard to CPU {cpu}: {}", io::Error::last_os_error());
        }
    }
}

/// Runs `f` on the runtime's blocking thread (name resolution, say).
pub(crate) async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
    monoio::spawn_blocking(f).await.map_err(|_| io::Error::other("a blocking task was cancelled"))
}

/// Reads into the spare capacity of `buf` (after its length), growing its
/// length by what was read; `Ok(0)` at end of stream. If the read is
/// cancelled (its future dropped), `buf` is left empty, without capacity.
pub(crate) async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let len = buf.len();
    let cap = buf.capacity();
    debug_assert!(len < cap, "read into a full buffer");
    let (res, slice) = stream.read(mem::take(buf).slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}

/// Like [`read_more`], but gives up when nothing arrives `within` the time:
/// `Ok(None)`, with `buf` as it was. The read is cancelled and its end
/// awaited, so bytes that arrive as it is cancelled are kept, not lost.
pub(crate) async fn read_more_within(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    within: Duration,
    canceller: &mut Canceller,
) -> io::Result<Option<usize>> {
    let len = buf.len();
    let cap = buf.capacity();
    debug_assert!(len < cap, "read into a full buffer");
    let mut read = pin!(stream.cancelable_read(mem::take(buf).slice_mut(len..cap), canceller.handle()));
    let mut timer = pin!(sleep(within));
    let first = poll_fn(|cx| match read.as_mut().poll(cx) {
        Poll::Ready(done) => Poll::Ready(Some(done)),
        Poll::Pending => timer.as_mut().poll(cx).map(|()| None),
    })
    .await;
    let (res, slice) = match first {
        Some(done) => done,
        None => {
            *canceller = mem::take(canceller).cancel();
            read.await
        }
    };
    *buf = slice.into_inner();
    match res {
        Err(e) if e.raw_os_error() == Some(libc::ECANCELED) => Ok(None),
        res => res.map(Some),
    }
}

/// Waits until `stream` has bytes (or end of stream) to read, holding no
/// buffer. Never a stale answer: the epoll driver remembers readiness until
/// a read finds nothing, so it checks with poll(2) first (the relaxed form
/// would return at once, again and again, to a caller that only peeks).
pub(crate) async fn readable(stream: &TcpStream) -> io::Result<()> {
    stream.readable(false).await
}

/// Takes a connection the kernel has queued on `listener` without waiting:
/// `Ok(None)` if there is none. The accept loop drains its backlog with
/// this after each accept the driver completed: on io_uring an accept costs
/// a whole turn of the shard, and with many busy connections a turn is
/// long, so one accept a turn left new connections (and their first
/// requests) waiting seconds in the backlog.
pub(crate) fn accept_now(listener: &TcpListener) -> io::Result<Option<(TcpStream, std::net::SocketAddr)>> {
    // SAFETY: accept4(2) on the listener's descriptor into storage of the
    // size given.
    let accepted = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
            match libc::accept4(listener.as_raw_fd(), storage.cast(), len, flags) {
                fd if fd < 0 => Err(io::Error::last_os_error()),
                fd => Ok(fd),
            }
        })
    };
    let (fd, addr) = match accepted {
        Ok(accepted) => accepted,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    // SAFETY: a descriptor accept4 just returned, owned by nothing else.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let peer = addr.as_socket().ok_or_else(|| io::Error::other("not an IP connection"))?;
    Ok(Some((TcpStream::from_std(stream)?, peer)))
}

/// A descriptor of its own for the socket (or other file) `fd` names: a
/// socket leaves the runtime that way (the runtime closes its own
/// descriptor when its stream is dropped, once its operations are over).
pub(crate) fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(2) duplicating an open descriptor; the copy is owned
    // by the OwnedFd alone.
    let copy = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor just made, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// Gives a socket to the runtime.
pub(crate) fn attach(fd: OwnedFd) -> io::Result<TcpStream> {
    TcpStream::from_std(std::net::TcpStream::from(fd))
}

/// A descriptor that is not a stream (the parked connections' epoll
/// descriptor), watched by the runtime for readability ([`readable`]): the
/// runtime treats it as a stream only to wait for it; nothing reads or
/// writes it.
pub(crate) fn watch(fd: RawFd) -> io::Result<TcpStream> {
    attach(dup(fd)?)
}

/// Peeks at the next byte without waiting: `Ok(0)` at end of stream,
/// `Ok(1)` if data waits, `Err` of kind `WouldBlock` if there is none yet.
pub(crate) fn peek(stream: &TcpStream) -> io::Result<usize> {
    let mut byte = 0u8;
    // SAFETY: a valid fd and a one-byte buffer we own.
    let n = unsafe {
        libc::recv(stream.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Writes all of `buf[range]`. If the write is cancelled, `buf` is left
/// empty, without capacity.
pub(crate) async fn write_range(stream: &mut TcpStream, buf: &mut Vec<u8>, start: usize, end: usize) -> io::Result<()> {
    let (res, slice) = stream.write_all(mem::take(buf).slice(start..end)).await;
    *buf = slice.into_inner();
    res.map(|_| ())
}

/// Writes all of `buf`.
pub(crate) async fn write_all(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = buf.len();
    write_range(stream, buf, 0, len).await
}

/// Writes a constant message.
pub(crate) async fn write_static(stream: &mut TcpStream, msg: &'static [u8]) -> io::Result<()> {
    stream.write_all(msg).await.0.map(|_| ())
}

/// Shuts down the writing half: the peer reads end of stream.
pub(crate) async fn shutdown_write(stream: &mut TcpStream) -> io::Result<()> {
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_is_always_available_and_names_are_checked() {
        std::env::set_var(IO_ENV, "epoll");
        assert_eq!(Driver::choose(), Ok(Driver::Epoll));
        std::env::set_var(IO_ENV, "kqueue");
        assert!(Driver::choose().unwrap_err().contains("auto, io_uring, epoll"));
        std::env::remove_var(IO_ENV);
    }
}
