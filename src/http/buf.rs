//! A fixed-capacity read buffer: bytes are read in at the end and consumed
//! from the front; what is left over (a pipelined request, the next chunk)
//! stays for the next reader.
//!
//! Buffers come from a per-core stock of spare ones and go back to it when
//! a connection has nothing buffered and goes idle, so an idle keep-alive
//! connection holds no buffer.

use std::cell::RefCell;

use crate::runtime::{self, TcpStream};

/// The size of every buffer in the stock.
pub const BUF_SIZE: usize = super::parse::MAX_HEAD;
/// Spare buffers kept per core (1 MiB); more are freed. Enough for the
/// exchanges in flight on a busy core; kept small because every one pins
/// its page of the allocator.
const SPARE_MAX: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of `BUF_SIZE` bytes' capacity from this core's stock.
pub fn spare() -> Vec<u8> {
    SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_else(|| Vec::with_capacity(BUF_SIZE))
}

/// Gives a buffer back to this core's stock (one that grew is freed).
pub fn recycle(mut buf: Vec<u8>) {
    if buf.capacity() != BUF_SIZE {
        return;
    }
    buf.clear();
    SPARE.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < SPARE_MAX {
            s.push(buf);
        }
    });
}

pub struct ReadBuf {
    /// The bytes read are `buf[start..]`; reads append after `buf.len()`.
    buf: Vec<u8>,
    start: usize,
    capacity: usize,
}

impl Default for ReadBuf {
    fn default() -> ReadBuf {
        ReadBuf::new()
    }
}

impl ReadBuf {
    /// A buffer of `BUF_SIZE` bytes, taken from the stock at its first read.
    pub fn new() -> ReadBuf {
        ReadBuf { buf: Vec::new(), start: 0, capacity: BUF_SIZE }
    }

    /// Gives the memory back to the stock if nothing is buffered.
    pub fn release(&mut self) {
        if self.is_empty() {
            recycle(std::mem::take(&mut self.buf));
            self.start = 0;
        }
    }

    /// The bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.data().is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.data().len() >= self.capacity
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.data().len());
        self.start += n.min(self.data().len());
        if self.is_empty() {
            self.clear();
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.buf.clear();
    }

    /// Makes room after the data: takes a buffer from the stock (released,
    /// or taken by a cancelled read), or compacts.
    fn make_room(&mut self) {
        if self.buf.capacity() < self.capacity {
            self.buf = spare();
            self.start = 0;
        } else if self.buf.len() == self.buf.capacity() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Reads more bytes after the data; `Ok(0)` at end of stream. Call only
    /// when not full. A read that is cancelled loses the data.
    pub async fn fill(&mut self, from: &mut TcpStream) -> std::io::Result<usize> {
        debug_assert!(!self.is_full());
        self.make_room();
        runtime::read_more(from, &mut self.buf).await
    }

    /// Like [`ReadBuf::fill`], but gives up when nothing arrives `within`
    /// the time (`Ok(None)`, nothing lost).
    pub async fn fill_within(
        &mut self,
        from: &mut TcpStream,
        within: std::time::Duration,
        canceller: &mut runtime::Canceller,
    ) -> std::io::Result<Option<usize>> {
        debug_assert!(!self.is_full());
        self.make_room();
        runtime::read_more_within(from, &mut self.buf, within, canceller).await
    }

    /// Writes the first `n` bytes of the data to `to` and consumes them.
    pub async fn write_to(&mut self, to: &mut TcpStream, n: usize) -> std::io::Result<()> {
        let (start, end) = (self.start, self.start + n);
        debug_assert!(end <= self.buf.len());
        runtime::write_range(to, &mut self.buf, start, end).await?;
        self.consume(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumes_and_compacts() {
        let mut b = ReadBuf { buf: Vec::with_capacity(4), start: 0, capacity: 4 };
        b.buf.extend_from_slice(b"abcd");
        assert!(b.is_full());
        b.consume(3);
        assert_eq!(b.data(), b"d");
        assert!(!b.is_full());
        b.make_room();
        assert_eq!(b.data(), b"d");
        assert_eq!(b.buf.capacity() - b.buf.len(), 3);
        b.consume(1);
        assert!(b.is_empty());
        // A cancelled read took the buffer: the capacity comes back.
        b.buf = Vec::new();
        b.make_room();
        assert!(b.buf.capacity() >= 4);
    }

    #[test]
    fn idle_buffers_go_back_to_the_stock() {
        let mut b = ReadBuf::new();
        b.make_room();
        b.buf.extend_from_slice(b"pipelined");
        b.release();
        assert_eq!(b.data(), b"pipelined", "buffered bytes are kept");
        b.consume(9);
        let ptr = b.buf.as_ptr();
        b.release();
        assert_eq!(b.buf.capacity(), 0);
        let next = spare();
        assert_eq!(next.as_ptr(), ptr, "the next buffer is the one given back");
        recycle(vec![0; 10]);
        assert_ne!(spare().capacity(), 10, "odd sizes are not kept");
    }
}
