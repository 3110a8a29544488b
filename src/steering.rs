//! Which shard takes a new connection: a classic BPF program on the
//! `SO_REUSEPORT` group of the shards' listeners, for pinned shards.
//!
//! The kernel's own choice is a hash of the connection's addresses, blind
//! to load: half the new connections go to a shard whose core may be busy
//! while another is idle. The one core known to be busy is the one that
//! processed the connection's SYN: the client's own core for a client on
//! this machine (a load generator, a local front such as HAProxy), or the
//! core taking the NIC's interrupts. A shard there competes with that work
//! for its core, and every step of the connection wakes it there. So a new
//! connection goes to a shard chosen at random among the others; one whose
//! SYN came in on a core without a shard goes to any shard at random.
//! Against the hash, a connection from a remote client loses at most the
//! warmth of its packets in that core's cache, which the hash keeps for
//! only one connection in as many as there are shards anyway.
//! Keep-alive connections a client opens all at once are shared out again
//! afterwards ([`crate::handoff`]). Measured with a new connection per call
//! (`perf/throughput --new-connection`, the generator on the same two
//! cores), pinned hiku served 1.5-1.7x the calls of the kernel's hash
//! (README, "Pinned or not").

use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;

/// Attaches the program to the reuseport group of `socket`, whose sockets
/// (in the order they were bound) are the shards pinned to the cores
/// `cores`, one each. Fewer than two shards have nothing to choose.
pub(crate) fn steer_away_from_syn_core(socket: &impl AsRawFd, cores: Range<usize>) -> io::Result<()> {
    let (Ok(first), Ok(shards)) = (u32::try_from(cores.start), u32::try_from(cores.len())) else {
        return Err(io::Error::other("core numbers out of range"));
    };
    if shards < 2 {
        return Ok(());
    }
    let program = program(first, shards);
    let fprog = libc::sock_fprog { len: program.len() as u16, filter: program.as_ptr().cast_mut() };
    // SAFETY: setsockopt(2) on an open socket with a program that outlives
    // the call (the kernel copies it).
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// The program: returns the index of the socket (shard) to take the
/// connection, for `shards` shards on the cores from `first` on.
fn program(first: u32, shards: u32) -> [libc::sock_filter; 12] {
    let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let load = |what: i32| op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, (libc::SKF_AD_OFF + what) as u32, 0, 0);
    // Where the SYN came in on a core without a shard.
    const ANY: u8 = 9;
    [
        // A = the SYN's core - first: the index of the shard there.
        load(libc::SKF_AD_CPU),
        op(libc::BPF_ALU | libc::BPF_SUB | libc::BPF_K, first, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, shards, ANY - 3, 0),
        op(libc::BPF_MISC | libc::BPF_TAX, 0, 0, 0),
        // One of the other shards: a random index among shards - 1, moved
        // past the SYN core's own.
        load(libc::SKF_AD_RANDOM),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, shards - 1, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_X, 0, 0, 1),
        op(libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K, 1, 0, 0),
        op(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
        // ANY: a random shard.
        load(libc::SKF_AD_RANDOM),
        op(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, shards, 0, 0),
        op(libc::BPF_RET | libc::BPF_A, 0, 0, 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use socket2::{Domain, Socket, Type};
    use std::net::{SocketAddr, TcpStream};

    /// A reuseport group of `n` listeners on a free loopback port.
    fn group(n: usize) -> (Vec<Socket>, SocketAddr) {
        let mut addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let sockets: Vec<Socket> = (0..n)
            .map(|_| {
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                s.set_reuse_port(true).unwrap();
                s.bind(&addr.into()).unwrap();
                s.listen(128).unwrap();
                s.set_nonblocking(true).unwrap();
                addr = s.local_addr().unwrap().as_socket().unwrap();
                s
            })
            .collect();
        (sockets, addr)
    }

    /// Connects `count` times from this thread; how many each listener got.
    fn spread(sockets: &[Socket], addr: SocketAddr, count: usize) -> Vec<usize> {
        let clients: Vec<TcpStream> = (0..count).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut got = vec![0; sockets.len()];
        for (i, s) in sockets.iter().enumerate() {
            while s.accept().is_ok() {
                got[i] += 1;
            }
        }
        drop(clients);
        got
    }

    /// Runs `f` on a thread pinned to the core this one is on.
    fn on_one_core<R: Send>(f: impl FnOnce(usize) -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: sched_getcpu(3) has no preconditions; the set is
                // a zeroed cpu_set_t with one CPU set, for this thread.
                let cpu = unsafe { libc::sched_getcpu() } as usize;
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
                }
                f(cpu)
            })
            .join()
            .unwrap()
        })
    }

    #[test]
    fn a_connection_goes_to_a_shard_not_on_the_core_of_its_syn() {
        on_one_core(|cpu| {
            // A loopback SYN is processed on the connecting thread's core.
            // Shard 0 is on this core: every connection goes to shard 1.
            let (sockets, addr) = group(2);
            steer_away_from_syn_core(&sockets[0], cpu..cpu + 2).unwrap();
            assert_eq!(spread(&sockets, addr, 20), [0, 20]);
            // With three, the others share: shard `own` is on this core.
            let own = cpu.min(1);
            let (sockets, addr) = group(3);
            steer_away_from_syn_core(&sockets[0], cpu - own..cpu - own + 3).unwrap();
            let got = spread(&sockets, addr, 60);
            assert_eq!(got[own], 0, "{got:?}");
            assert_eq!(got.iter().filter(|&&n| n > 0).count(), 2, "{got:?}");
            // This core has no shard: any, at random.
            let (sockets, addr) = group(2);
            steer_away_from_syn_core(&sockets[0], cpu + 1..cpu + 3).unwrap();
            let got = spread(&sockets, addr, 40);
            assert!(got[0] > 0 && got[1] > 0, "{got:?}");
        });
    }

    #[test]
    fn one_shard_has_nothing_to_steer() {
        let (sockets, addr) = group(1);
        steer_away_from_syn_core(&sockets[0], 0..1).unwrap();
        assert_eq!(spread(&sockets, addr, 3), [3]);
    }
}
