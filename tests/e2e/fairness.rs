//! Fair service in one shard: connections that arrive while many others
//! keep it busy wait a bounded number of turns, not one turn each.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{Driver, Hiku, Worker};

/// Connections that call again and again, keeping the shard busy.
const BUSY: usize = 100;
/// Connections opened at once while they do, each with one request.
const ARRIVING: usize = 400;

on_both_drivers!(connections_arriving_at_a_busy_shard_are_served_within_a_few_turns);
fn connections_arriving_at_a_busy_shard_are_served_within_a_few_turns(driver: Driver) {
    let w = Worker::start();
    let extra = serde_json::json!({"adaptive": {"enabled": false}});
    let hiku = Hiku::on(driver).cores(1).start_with("least-connections", &[&w.url], extra);
    // The calls the busy connections have had answered: the clock this
    // test reads, in turns of the shard rather than in seconds.
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let busy: Vec<_> = (0..BUSY)
        .map(|i| {
            let (mut client, answered, stop) = (hiku.client(), Arc::clone(&answered), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = format!("{i}-{n}");
                    let res = client.request("POST", &format!("/run/busy{i}"), &[], body.as_bytes());
                    assert_eq!((res.status, res.text()), (200, body));
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while answered.load(Ordering::Relaxed) < 20 * BUSY as u64 {
        std::thread::sleep(Duration::from_millis(10));
    }

    // Connected by the kernel at once, each then sends a request hiku
    // answers itself (a path it does not serve: the test worker, a thread
    // per connection, would not take 400 new ones at once): they wait in
    // the listen backlog until the shard accepts them. Each answer is
    // seen from one thread polling them all, so that no thread of the test
    // starting late makes a wait look longer.
    let mut arriving: Vec<TcpStream> = (0..ARRIVING).map(|_| TcpStream::connect(hiku.addr).unwrap()).collect();
    let mut sent = Vec::with_capacity(ARRIVING);
    for (i, stream) in arriving.iter_mut().enumerate() {
        sent.push(answered.load(Ordering::Relaxed));
        stream.write_all(format!("GET /new{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes()).unwrap();
    }
    let mut waits = vec![None; ARRIVING];
    let deadline = Instant::now() + Duration::from_secs(60);
    while waits.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "not every arriving connection was answered");
        let mut polled: Vec<libc::pollfd> = arriving
            .iter()
            .zip(&waits)
            .map(|(s, wait)| libc::pollfd {
                fd: if wait.is_none() { s.as_raw_fd() } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: poll(2) on descriptors the test owns, `polled.len()` of them.
        assert!(unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, 100) } >= 0);
        let now = answered.load(Ordering::Relaxed);
        for i in (0..ARRIVING).filter(|&i| polled[i].revents != 0) {
            let mut start = [0u8; 12];
            arriving[i].read_exact(&mut start).unwrap();
            assert_eq!(&start, b"HTTP/1.1 404", "connection {i}");
            waits[i] = Some(now - sent[i]);
        }
    }
    let mut waits: Vec<u64> = waits.into_iter().flatten().collect();
    stop.store(true, Ordering::Relaxed);
    busy.into_iter().for_each(|t| t.join().unwrap());

    // A call takes a few turns (read, send, answer, write), in each of which
    // every busy connection moves on by one step: the busy connections have
    // a few calls answered each while one call goes through. One connection
    // accepted a turn makes the last arrival wait ARRIVING turns (about
    // ARRIVING / 4 calls of every busy connection); accepting the backlog in
    // batches, a few.
    waits.sort_unstable();
    let (median, slowest) = (waits[waits.len() / 2], waits[waits.len() - 1]);
    assert!(
        slowest <= 16 * BUSY as u64,
        "the last arriving connection waited while the busy ones had {slowest} calls answered \
         ({} each; the median arrival {median})",
        slowest / BUSY as u64
    );
}

/// Connections each calling again as soon as answered.
const MANY: usize = 4000;
/// Calls answered in all while they do: ten of each connection's.
const CALLS: u64 = 10 * MANY as u64;

on_both_drivers!(many_busy_connections_each_wait_about_one_turn_of_the_others);
fn many_busy_connections_each_wait_about_one_turn_of_the_others(driver: Driver) {
    // The test holds both ends of each connection to hiku's worker as
    // well as the client's: twice MANY descriptors and some.
    raise_open_file_limit(3 * MANY as u64);
    let stop = Arc::new(AtomicBool::new(false));
    let (url, worker) = polling_worker(Arc::clone(&stop));
    let extra = serde_json::json!({"adaptive": {"enabled": false}});
    let hiku = Hiku::on(driver).cores(1).start_with("least-connections", &[&url], extra);
    // All connected (waiting in hiku's backlog) before the first call, as
    // a load generator's connections are.
    let mut clients: Vec<Peer> = (0..MANY).map(|_| Peer::new(TcpStream::connect(hiku.addr).unwrap())).collect();
    let request = b"POST /run/f HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nhi";
    // When each connection's call went out, on the clock this test reads:
    // calls answered, in all.
    let mut sent = vec![0u64; MANY];
    for client in &mut clients {
        client.send(request);
    }
    let (mut answered, mut slowest) = (0u64, (0u64, 0usize));
    let deadline = Instant::now() + Duration::from_secs(300);
    while answered < CALLS {
        assert!(Instant::now() < deadline, "only {answered} calls answered");
        for i in ready(clients.iter().map(|c| c.stream.as_raw_fd())) {
            while clients[i].receive() {
                slowest = slowest.max((answered - sent[i], i));
                answered += 1;
                sent[i] = answered;
                clients[i].send(request);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    worker.join().unwrap();

    // Served in turn, a call waits while each other connection has about
    // one call answered: MANY (up to twice that where an answer just
    // misses the test's look at its connection). Completions posted out of
    // turn (io_uring's DEFER_TASKRUN, ~20 a wait) made some wait 6-8 times
    // that; a backlog accepted 64 at a time, the last connections' first
    // calls 5-6.
    let (wait, connection) = slowest;
    assert!(
        wait <= 3 * MANY as u64,
        "connection {connection}'s call waited while {wait} others were answered ({:.1} turns of all {MANY})",
        wait as f64 / MANY as f64
    );
}

/// Raises this process's soft limit on open files to at least `needed`.
fn raise_open_file_limit(needed: u64) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit(2) and setrlimit(2) on a struct the test owns.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        assert!(limit.rlim_max >= needed, "this test needs {needed} open files; the hard limit is {}", limit.rlim_max);
        limit.rlim_cur = limit.rlim_cur.max(needed);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}

/// One end of a keep-alive connection carrying messages framed by
/// `Content-Length`, non-blocking.
struct Peer {
    stream: TcpStream,
    read: Vec<u8>,
}

impl Peer {
    fn new(stream: TcpStream) -> Peer {
        stream.set_nonblocking(true).unwrap();
        Peer { stream, read: Vec::new() }
    }

    fn send(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("write: {e}"),
            }
        }
    }

    /// Reads what has come; true if a whole message has, which is taken
    /// (a response must say 200).
    fn receive(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.read.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("read: {e}"),
            }
        }
        let Some(end) = self.read.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
        let head = String::from_utf8_lossy(&self.read[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
            .unwrap_or(0);
        if self.read.len() < end + 4 + length {
            return false;
        }
        assert!(!head.starts_with("http/") || head.starts_with("http/1.1 200"), "{head}");
        self.read.drain(..end + 4 + length);
        true
    }
}

/// The indices of `fds` that are readable, waiting up to 100 ms for one.
fn ready(fds: impl Iterator<Item = std::os::fd::RawFd>) -> Vec<usize> {
    let mut polled: Vec<libc::pollfd> = fds.map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: poll(2) on `polled.len()` descriptors the caller owns.
    assert!(unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, 100) } >= 0);
    (0..polled.len()).filter(|&i| polled[i].revents != 0).collect()
}

/// A worker answering every call at once with 200, all its connections
/// served by one thread (the test's thread-per-connection worker would
/// put a thousand threads between hiku and the clock), until `stop`.
fn polling_worker(stop: Arc<AtomicBool>) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    // std's backlog of 128 would drop the SYNs of hiku's first burst of
    // connections, each a second's wait: room for all of them.
    // SAFETY: listen(2) again on a listening socket the test owns only
    // changes its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 4096) }, 0);
    let url = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let mut peers: Vec<Peer> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let fds = std::iter::once(listener.as_raw_fd()).chain(peers.iter().map(|p| p.stream.as_raw_fd()));
            for i in ready(fds) {
                if i == 0 {
                    while let Ok((stream, _)) = listener.accept() {
                        peers.push(Peer::new(stream));
                    }
                    continue;
                }
                while peers[i - 1].receive() {
                    peers[i - 1].send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            }
        }
    });
    (url, thread)
}
