//! A fixed-capacity read buffer: bytes are read in at the end and consumed
//! from the front; what is left over (a pipelined request, the next chunk)
//! stays for the next reader.

use crate::runtime::{self, TcpStream};

pub struct ReadBuf {
    /// The bytes read are `buf[start..]`; reads append after `buf.len()`.
    buf: Vec<u8>,
    start: usize,
    capacity: usize,
}

impl ReadBuf {
    pub fn with_capacity(capacity: usize) -> ReadBuf {
        ReadBuf { buf: Vec::with_capacity(capacity), start: 0, capacity }
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

    /// Makes room after the data: compacts, or gets the capacity back after
    /// a cancelled read took the buffer.
    fn make_room(&mut self) {
        if self.buf.capacity() < self.capacity {
            self.buf = Vec::with_capacity(self.capacity);
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
        let mut b = ReadBuf::with_capacity(4);
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
        assert_eq!(b.buf.capacity(), 4);
    }
}
