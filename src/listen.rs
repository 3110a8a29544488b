//! Listening and accepting: one listening socket per shard, all bound to
//! the same address with SO_REUSEPORT (and `admin.listen`'s, taken by the
//! first shard), the accept loops that hand each connection to the
//! connection loop, the connections other shards move here, and the stop
//! of all of it when the process drains.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::conn::Conn;
use crate::runtime::{self, TcpListener};
use crate::serve;
use crate::shard::Shard;
use crate::shutdown;

const LISTEN_BACKLOG: i32 = 4096;
/// Connections taken from the backlog at once, after each the driver
/// accepted ([`runtime::accept_now`]): a turn of the shard serves its
/// busy connections once, and accepts up to this many new ones (a quarter
/// of a full backlog: 64 a turn kept the last of 4000 connections opened
/// at once waiting 5-6 turns for their first call).
const ACCEPT_BATCH: usize = 1024;
/// How long a core at `limits.max_connections` waits before looking again.
const FULL_PAUSE: Duration = Duration::from_millis(10);

/// How long a bind waits for an address in use to come free: a hiku that
/// was just killed holds its sockets a little longer (its io_uring ring
/// lets go of them after the process is gone), and a restart at once must
/// not fail on that.
const IN_USE_WAIT: Duration = Duration::from_secs(2);

/// Runs `bind` until it does not find its address in use, for at most
/// `IN_USE_WAIT`. Blocks: at start, before the shards run.
fn retry_while_in_use<T>(mut bind: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let start = Instant::now();
    loop {
        match bind() {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && start.elapsed() < IN_USE_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            bound => return bound,
        }
    }
}

/// Binds one listening socket per core to `addr`, all with SO_REUSEPORT so
/// the kernel spreads connections over the cores. With port 0 the first
/// socket picks the port and the others share it.
///
/// Every interface (`[::]`) is IPv6 and IPv4 at once; where the kernel has
/// no IPv6, it is IPv4's (`0.0.0.0`).
pub(crate) fn bind_listeners(addr: SocketAddr, cores: usize) -> io::Result<(SocketAddr, Vec<Socket>)> {
    match retry_while_in_use(|| bind_group(addr, cores)) {
        Err(e) if addr.ip() == Ipv6Addr::UNSPECIFIED && no_ipv6(&e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            retry_while_in_use(|| bind_group(v4, cores))
        }
        bound => bound,
    }
}

/// Whether `e` says this kernel has no IPv6 (or no IPv6 address to bind).
fn no_ipv6(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL))
}

/// A socket for `addr`; on every IPv6 interface, IPv4 too (whatever
/// `net.ipv6.bindv6only` says), as Go's listeners are.
fn socket_for(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.ip() == Ipv6Addr::UNSPECIFIED {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

fn bind_group(addr: SocketAddr, cores: usize) -> io::Result<(SocketAddr, Vec<Socket>)> {
    if addr.port() != 0 {
        // Any process of this user that also sets SO_REUSEPORT could join
        // the port and take half the connections: a socket without it finds
        // out whether the port is in use first (another hiku, say).
        let probe = socket_for(addr)?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let mut bound = addr;
    let mut sockets = Vec::with_capacity(cores);
    for _ in 0..cores {
        let socket = socket_for(bound)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nodelay(true)?;
        socket.bind(&bound.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        // The epoll driver accepts with a plain accept4: it must not block.
        socket.set_nonblocking(true)?;
        if bound.port() == 0 {
            bound = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))?;
        }
        sockets.push(socket);
    }
    Ok((bound, sockets))
}

/// Binds the `admin.listen` socket (one, taken by the first shard).
pub(crate) fn bind_admin(addr: SocketAddr) -> io::Result<(SocketAddr, Socket)> {
    retry_while_in_use(|| bind_one(addr))
}

fn bind_one(addr: SocketAddr) -> io::Result<(SocketAddr, Socket)> {
    let socket = socket_for(addr)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    let bound = socket.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP socket"))?;
    Ok((bound, socket))
}

/// Serves a shard's connections: those it accepts on `listener` (and on
/// `admin`, if it has `admin.listen`'s), and those other shards move to it,
/// until the process drains; then waits for the process to exit (its
/// connections' tasks go on until then).
pub(crate) async fn accept_all(
    shard: Rc<Shard>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    max_connections: usize,
) {
    if shard.cores > 1 {
        runtime::spawn(adopt_moved(Rc::clone(&shard)));
    }
    let fds = [Some(listener.as_raw_fd()), admin.as_ref().map(|a| a.as_raw_fd())];
    runtime::spawn(watch_for_drain(Rc::clone(&shard), fds));
    runtime::spawn(serve::wake_parked(Rc::clone(&shard)));
    if let Some(admin) = admin {
        runtime::spawn(accept_loop(Rc::clone(&shard), admin, max_connections, true));
    }
    accept_loop(shard, listener, max_connections, false).await;
    // Draining: the connections' tasks go on until the process exits
    // (crate::shutdown), which ending here would cut short.
    std::future::pending::<()>().await;
}

/// Accepts connections and serves them while fewer than `max_connections`
/// are open in the process; past that, new ones wait in the listen backlog
/// (and the one each core has accepted already, unserved, until there is
/// room). After each accept, up to [`ACCEPT_BATCH`] more are taken from the
/// backlog without waiting.
/// Connections from `admin.listen` are marked `admin`.
async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, max_connections: usize, admin: bool) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                serve_accepted(&shard, stream, peer, max_connections, admin).await;
                for _ in 1..ACCEPT_BATCH {
                    // An error here (a connection reset while queued, say)
                    // ends the batch; the driver's next accept reports what lasts.
                    let Ok(Some((stream, peer))) = runtime::accept_now(&listener) else { break };
                    serve_accepted(&shard, stream, peer, max_connections, admin).await;
                }
            }
            // Only once the watcher has shut the listeners down: it holds
            // their descriptor numbers, which closing would free for reuse.
            Err(_) if shard.listeners_shut.get() => return,
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                log::warn!("accept failed: {e}");
                runtime::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves a connection just accepted, once there is room for it.
async fn serve_accepted(
    shard: &Rc<Shard>,
    stream: runtime::TcpStream,
    peer: SocketAddr,
    max_connections: usize,
    admin: bool,
) {
    while shutdown::open_connections() >= max_connections && !shutdown::draining() {
        runtime::sleep(FULL_PAUSE).await;
    }
    let _ = stream.set_nodelay(true);
    shard.counters().accepted(admin);
    let mut conn = Conn::new(stream, peer, admin, shutdown::OpenConnection::new(), shard.handoff.count());
    if !admin && shard.config().front.proxy_protocol {
        conn.expect_proxy_header();
    }
    serve::spawn(Rc::clone(shard), conn);
}

/// Serves the connections other shards move here.
async fn adopt_moved(shard: Rc<Shard>) {
    loop {
        let moved = shard.handoff.next().await;
        match runtime::attach(moved.fd) {
            Ok(stream) => {
                let conn = Conn::new(stream, moved.peer, moved.admin, moved.open, shard.handoff.count());
                serve::spawn(Rc::clone(&shard), conn);
            }
            Err(e) => log::warn!("a connection moved here could not be adopted: {e}"),
        }
    }
}

/// When the process drains: stops the accept loop (shutting the listener
/// down wakes it; it then closes the listener) and closes the parked
/// connections; later ones are closed instead of parked.
async fn watch_for_drain(shard: Rc<Shard>, listeners: [Option<RawFd>; 2]) {
    while !shutdown::draining() {
        runtime::sleep(shutdown::LOOK_EVERY).await;
    }
    if let Some(log) = &shard.access {
        log.drained();
    }
    for listener in listeners.into_iter().flatten() {
        // SAFETY: shutdown(2) on a listener, which its accept loop keeps
        // open until `listeners_shut` says this is done.
        unsafe { libc::shutdown(listener, libc::SHUT_RDWR) };
    }
    shard.listeners_shut.set(true);
    shard.parking.sweep(Instant::now() + Duration::from_secs(86_400 * 365));
}
