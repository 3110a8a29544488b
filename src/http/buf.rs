//! A fixed-capacity read buffer: bytes are read in at the end and consumed
//! from the front; what is left over (a pipelined request, the next chunk)
//! stays for the next reader.

use std::os::fd::AsRawFd;

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
    pub async fn fill<R: AsyncRead + AsRawFd + Unpin>(&mut self, from: &mut R) -> std::io::Result<usize> {
        debug_assert!(!self.is_full());
        if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let space = &mut self.buf[self.end..];
        // Bytes already waiting are taken with one non-blocking recv. Only
        // when there are none does the stream wait (glommio arms an io_uring
        // poll on every read it does, which costs a wake-up per message).
        // SAFETY: a valid fd and a buffer we own, of the length given.
        let n = unsafe { libc::recv(from.as_raw_fd(), space.as_mut_ptr().cast(), space.len(), libc::MSG_DONTWAIT) };
        let n = if n >= 0 {
            n as usize
        } else {
            match std::io::Error::last_os_error() {
                e if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                    from.read(space).await?
                }
                e => return Err(e),
            }
        };
        self.end += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// A socket whose async read is a plain blocking read.
    struct Sock(UnixStream);

    impl AsyncRead for Sock {
        fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
            Poll::Ready(self.get_mut().0.read(buf))
        }
    }

    impl AsRawFd for Sock {
        fn as_raw_fd(&self) -> std::os::fd::RawFd {
            self.0.as_raw_fd()
        }
    }

    #[test]
    fn fills_consumes_and_compacts() {
        let (mut tx, rx) = UnixStream::pair().unwrap();
        let mut rx = Sock(rx);
        futures_lite::future::block_on(async {
            let mut b = ReadBuf::with_capacity(4);
            tx.write_all(b"abcdefgh").unwrap();
            assert_eq!(b.fill(&mut rx).await.unwrap(), 4);
            assert!(b.is_full());
            b.consume(3);
            assert_eq!(b.data(), b"d");
            assert_eq!(b.fill(&mut rx).await.unwrap(), 3);
            assert_eq!(b.data(), b"defg");
            b.consume(4);
            assert!(b.is_empty());
            assert_eq!(b.fill(&mut rx).await.unwrap(), 1);
            assert_eq!(b.data(), b"h");
            drop(tx);
            assert_eq!(b.fill(&mut rx).await.unwrap(), 0);
        });
    }
}
