//! The clock of parked connections: quiet keep-alive connections wait for
//! readiness in small tasks (the connection loop's), and those quiet past
//! `timeouts.client_idle` are closed. Instead of a timer per connection
//! (over a kilobyte each in the runtime's timer wheel), each core keeps a
//! list of its parked connections and sweeps it a few times per timeout: a
//! connection whose time is up is shut down under its parked task, which
//! wakes, reads the end of the stream, and closes it.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// One connection's place on the list, made at its first parking and kept
/// for its life, so that parking allocates nothing after that.
#[derive(Debug)]
pub(crate) struct Spot {
    fd: RawFd,
    deadline: Cell<Instant>,
    /// Parked now: its fd is open and its task waits for readiness.
    parked: Cell<bool>,
    /// On the list (at most once).
    listed: Cell<bool>,
    /// The sweep shut it down: what it reads now came too late to serve.
    shut: Cell<bool>,
}

/// Marks a connection parked until dropped (its task woke, or ended).
pub(crate) struct Parked(Rc<Spot>);

impl Parked {
    /// Whether the sweep shut the connection down (its time was up). A
    /// request read after that came in the race with the close: it must not
    /// run, as the answer could not reach the client.
    pub(crate) fn was_shut(&self) -> bool {
        self.0.shut.get()
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.parked.set(false);
    }
}

/// A core's parked connections.
#[derive(Debug, Default)]
pub(crate) struct Parking {
    list: RefCell<Vec<Rc<Spot>>>,
}

impl Parking {
    /// Parks the connection on `fd` until `deadline`; `spot` is its place,
    /// made on the first call. The connection is parked while the returned
    /// guard lives.
    pub(crate) fn park(&self, spot: &mut Option<Rc<Spot>>, fd: RawFd, deadline: Instant) -> Parked {
        let spot = spot.get_or_insert_with(|| {
            Rc::new(Spot {
                fd,
                deadline: Cell::new(deadline),
                parked: Cell::new(false),
                listed: Cell::new(false),
                shut: Cell::new(false),
            })
        });
        debug_assert_eq!(spot.fd, fd, "a spot belongs to one connection");
        spot.deadline.set(deadline);
        spot.parked.set(true);
        if !spot.listed.replace(true) {
            self.list.borrow_mut().push(Rc::clone(spot));
        }
        Parked(Rc::clone(spot))
    }

    /// Shuts down the parked connections whose time is up at `now`, and
    /// forgets those no longer parked; returns how many it shut down.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let mut shut = 0;
        self.list.borrow_mut().retain(|spot| {
            let keep = spot.parked.get() && spot.deadline.get() > now;
            if spot.parked.get() && !keep {
                // SAFETY: shutdown(2) on a descriptor that is open: a parked
                // connection's task holds it (and clears `parked` first when
                // it lets go).
                unsafe { libc::shutdown(spot.fd, libc::SHUT_RDWR) };
                spot.shut.set(true);
                spot.parked.set(false);
                shut += 1;
            }
            spot.listed.set(keep);
            keep
        });
        shut
    }

    /// How many connections are on the list.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.list.borrow().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How often to sweep for an idle timeout of `idle`: a quarter of it,
/// between 10 ms and a second.
pub(crate) fn sweep_every(idle: Duration) -> Duration {
    (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l.accept().unwrap().0, client)
    }

    #[test]
    fn connections_quiet_too_long_are_shut_down_and_the_rest_kept() {
        let parking = Parking::default();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let (a, mut a_peer) = pair();
        let (b, _b_peer) = pair();
        let (mut spot_a, mut spot_b) = (None, None);
        let parked_a = parking.park(&mut spot_a, a.as_raw_fd(), t0 + s);
        let parked_b = parking.park(&mut spot_b, b.as_raw_fd(), t0 + 3 * s);
        assert_eq!(parking.sweep(t0), 0);
        assert_eq!(parking.len(), 2);
        assert!(!parked_a.was_shut());
        assert_eq!(parking.sweep(t0 + 2 * s), 1, "a's time is up");
        assert!(parked_a.was_shut(), "what a reads now is not served");
        assert_eq!(a_peer.read(&mut [0; 1]).unwrap(), 0, "a's peer reads the end");
        assert_eq!(parking.len(), 1);
        drop(parked_a);

        // b wakes, serves a request, and parks again, later: one place.
        drop(parked_b);
        let parked_b = parking.park(&mut spot_b, b.as_raw_fd(), t0 + 5 * s);
        assert_eq!(parking.len(), 1);
        assert_eq!(parking.sweep(t0 + 4 * s), 0, "its new deadline counts");
        // Woken (not parked): never shut down, and forgotten.
        drop(parked_b);
        assert_eq!(parking.sweep(t0 + 9 * s), 0);
        assert!(parking.is_empty());
        // Parked again after being forgotten: listed again.
        let _parked_b = parking.park(&mut spot_b, b.as_raw_fd(), t0 + 10 * s);
        assert_eq!(parking.len(), 1);
    }

    #[test]
    fn sweeps_come_a_few_times_per_timeout() {
        assert_eq!(sweep_every(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(sweep_every(Duration::from_millis(200)), Duration::from_millis(50));
        assert_eq!(sweep_every(Duration::from_millis(1)), Duration::from_millis(10));
    }
}
