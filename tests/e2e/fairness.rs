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
