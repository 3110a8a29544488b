//! A fixed-capacity read buffer: bytes are read in at the end and consumed
//! from the front; what is left over (a pipelined request, the next chunk)
//! stays for the next reader.

use futures_lite::{AsyncRead, AsyncReadExt};

pub struct ReadBuf {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    pub fn with_capacity(capacity: usize) -> ReadBuf {
        ReadBuf { buf: vec![0; capacity].into_boxed_slice(), start: 0, end: 0 }
    }

    /// The bytes read and not yet consumed.
    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn is_full(&self) -> bool {
        self.end - self.start == self.buf.len()
    }

    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.end - self.start);
        self.start += n.min(self.end - self.start);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads more bytes after the data; `Ok(0)` at end of stream. Call only
    /// when not full.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, from: &mut R) -> std::io::Result<usize> {
        debug_assert!(!self.is_full());
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = from.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_consumes_and_compacts() {
        futures_lite::future::block_on(async {
            let mut src: &[u8] = b"abcdefgh";
            let mut b = ReadBuf::with_capacity(4);
            assert_eq!(b.fill(&mut src).await.unwrap(), 4);
            assert!(b.is_full());
            b.consume(3);
            assert_eq!(b.data(), b"d");
            assert_eq!(b.fill(&mut src).await.unwrap(), 3);
            assert_eq!(b.data(), b"defg");
            b.consume(4);
            assert!(b.is_empty());
            assert_eq!(b.fill(&mut src).await.unwrap(), 1);
            assert_eq!(b.fill(&mut src).await.unwrap(), 0);
        });
    }
}
