//! Parked connections: quiet keep-alive connections that a core keeps as a
//! small record each, with no task and no buffer, watched all together on
//! one epoll descriptor of the core's own (the core's driver waits for
//! that one to be readable: a single pending wait, on io_uring or epoll).
//! When one has something to read, it is taken out and served again; a
//! sweep a few times per `timeouts.client_idle` closes those quiet past it.
//!
//! A task per parked connection, waiting for readiness, was some 600 bytes
//! of every idle connection (the task with the connection in it, the
//! driver's entry for its wait, the socket's shared handle); a record here
//! is under a hundred.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Ready connections taken at a time.
const BATCH: usize = 64;

/// A parked connection: its socket, when its time is up, and the rest.
struct Slot<T> {
    fd: OwnedFd,
    deadline: Instant,
    item: T,
}

/// A core's parked connections, each a socket with an item of type `T`
/// (what it takes to serve the connection again).
pub(crate) struct Parking<T> {
    /// The watch on them all; none if the kernel would not make one.
    epoll: io::Result<OwnedFd>,
    /// Nothing waits for the watch: quiet connections are closed instead.
    refused: Cell<bool>,
    slots: RefCell<Vec<Option<Slot<T>>>>,
    /// Places in `slots` free for the next parked connection.
    free: RefCell<Vec<u32>>,
}

impl<T> Parking<T> {
    pub(crate) fn new() -> Parking<T> {
        // SAFETY: epoll_create1(2); the descriptor it returns is ours alone.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        // SAFETY: a descriptor just made, owned by nothing else.
        let epoll = if fd < 0 { Err(io::Error::last_os_error()) } else { Ok(unsafe { OwnedFd::from_raw_fd(fd) }) };
        Parking { epoll, refused: Cell::new(false), slots: RefCell::new(Vec::new()), free: RefCell::new(Vec::new()) }
    }

    /// The descriptor that is readable while a parked connection is.
    pub(crate) fn ready_fd(&self) -> io::Result<RawFd> {
        match &self.epoll {
            Ok(epoll) => Ok(epoll.as_raw_fd()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        }
    }

    /// From now on, quiet connections are closed rather than parked (no
    /// one waits for the watch).
    pub(crate) fn refuse(&self) {
        self.refused.set(true);
    }

    /// Parks the connection on `fd`, with `item`, until `deadline`. If it
    /// cannot be watched, it is closed (and `item` dropped).
    pub(crate) fn park(&self, fd: OwnedFd, deadline: Instant, item: T) -> io::Result<()> {
        let epoll = self.ready_fd()?;
        if self.refused.get() {
            return Err(io::Error::other("parking is off"));
        }
        let mut slots = self.slots.borrow_mut();
        let index = match self.free.borrow_mut().pop() {
            Some(index) => index as usize,
            None => {
                slots.push(None);
                slots.len() - 1
            }
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLONESHOT) as u32,
            u64: index as u64,
        };
        // SAFETY: epoll_ctl(2) adding an open socket to our epoll descriptor.
        if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event) } != 0 {
            self.free.borrow_mut().push(index as u32);
            return Err(io::Error::last_os_error());
        }
        slots[index] = Some(Slot { fd, deadline, item });
        Ok(())
    }

    /// Takes out the parked connections that have something to read (or
    /// were closed by their client), each handed to `wake` with its item.
    pub(crate) fn take_ready(&self, mut wake: impl FnMut(OwnedFd, T)) {
        let Ok(epoll) = self.ready_fd() else { return };
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        loop {
            // SAFETY: epoll_wait(2) without waiting, into an array of BATCH.
            let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), BATCH as i32, 0) };
            let Ok(n) = usize::try_from(n) else { return };
            for event in &events[..n] {
                if let Some(slot) = self.take(event.u64 as usize) {
                    wake(slot.fd, slot.item);
                }
            }
            if n < BATCH {
                return;
            }
        }
    }

    /// Closes the parked connections whose time is up at `now` (the
    /// client reads the end of the stream); returns how many.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let (mut closed, len) = (0, self.slots.borrow().len());
        for i in 0..len {
            let due = self.slots.borrow()[i].as_ref().is_some_and(|s| s.deadline <= now);
            if due && self.take(i).is_some() {
                closed += 1;
            }
        }
        closed
    }

    /// How many connections are parked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.borrow().len() - self.free.borrow().len()
    }

    /// Takes slot `index` out of the watch, if it is parked.
    fn take(&self, index: usize) -> Option<Slot<T>> {
        let slot = self.slots.borrow_mut().get_mut(index)?.take()?;
        if let Ok(epoll) = self.ready_fd() {
            // SAFETY: epoll_ctl(2) removing a socket we watch (and still own).
            unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_DEL, slot.fd.as_raw_fd(), std::ptr::null_mut()) };
        }
        self.free.borrow_mut().push(index as u32);
        Some(slot)
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
    use std::io::{Read, Write};

    fn pair() -> (OwnedFd, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l.accept().unwrap().0.into(), client)
    }

    /// Waits (up to a second) until a parked connection is ready.
    fn wait_ready<T>(parking: &Parking<T>) {
        let fd = parking.ready_fd().unwrap();
        let mut polled = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: poll(2) on one descriptor the parking owns.
        assert_eq!(unsafe { libc::poll(&mut polled, 1, 1000) }, 1, "nothing became ready");
    }

    /// The items of the connections taken out as ready; their sockets
    /// are kept open in `held`.
    fn ready(parking: &Parking<&'static str>, held: &mut Vec<OwnedFd>) -> Vec<&'static str> {
        let mut woken = Vec::new();
        parking.take_ready(|fd, item| {
            held.push(fd);
            woken.push(item)
        });
        woken.sort_unstable();
        woken
    }

    #[test]
    fn a_parked_connection_is_taken_out_when_its_client_sends_or_leaves() {
        let parking = Parking::new();
        let mut held = Vec::new();
        let far = Instant::now() + Duration::from_secs(60);
        let (a, mut a_client) = pair();
        let (b, b_client) = pair();
        let (c, _c_client) = pair();
        parking.park(a, far, "a").unwrap();
        parking.park(b, far, "b").unwrap();
        parking.park(c, far, "c").unwrap();
        assert_eq!((parking.len(), ready(&parking, &mut held)), (3, vec![]));
        a_client.write_all(b"GET").unwrap();
        drop(b_client);
        wait_ready(&parking);
        assert_eq!(ready(&parking, &mut held), ["a", "b"]);
        assert_eq!(parking.len(), 1);
        // Taken out, they are not reported again; their places are reused.
        a_client.write_all(b" /").unwrap();
        assert_eq!(ready(&parking, &mut held), Vec::<&str>::new());
        let (d, mut d_client) = pair();
        parking.park(d, far, "d").unwrap();
        assert_eq!(parking.slots.borrow().len(), 3, "a freed place was reused");
        d_client.write_all(b"x").unwrap();
        wait_ready(&parking);
        assert_eq!(ready(&parking, &mut held), ["d"]);
    }

    #[test]
    fn connections_quiet_too_long_are_closed_and_the_rest_kept() {
        let parking = Parking::new();
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let (a, mut a_client) = pair();
        let (b, _b_client) = pair();
        parking.park(a, t0 + s, "a").unwrap();
        parking.park(b, t0 + 3 * s, "b").unwrap();
        assert_eq!(parking.sweep(t0), 0);
        assert_eq!(parking.sweep(t0 + 2 * s), 1, "a's time is up");
        assert_eq!(a_client.read(&mut [0; 1]).unwrap(), 0, "a's client reads the end");
        assert_eq!(parking.len(), 1);
        assert_eq!(parking.sweep(t0 + 9 * s), 1);
        assert_eq!(parking.len(), 0);
    }

    #[test]
    fn sweeps_come_a_few_times_per_timeout() {
        assert_eq!(sweep_every(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(sweep_every(Duration::from_millis(200)), Duration::from_millis(50));
        assert_eq!(sweep_every(Duration::from_millis(1)), Duration::from_millis(10));
    }
}
