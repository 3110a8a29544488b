//! An incremental decoder of the chunked transfer coding (RFC 9112 §7.1).
//! It finds where a chunked body ends, whatever pieces it arrives in, so
//! hiku can relay the body as it is or hand on only the data.

use std::fmt;

/// Longest chunk-size line (size, extensions) and trailer section accepted.
pub const MAX_CHUNK_LINE: usize = 4096;
pub const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size (`digits` so far).
    Size {
        digits: u8,
    },
    /// After the size: optional whitespace and `;extensions` up to CR.
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(&'static str);

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad chunked encoding: {}", self.0)
    }
}

/// Where the decoding of one body stands: `Copy`, so a body read in part
/// by one piece of code can be read on by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being read, then data bytes left in the chunk.
    remaining: u64,
    /// Bytes of the current size line or of the trailer section.
    line: usize,
    /// Data bytes decoded so far.
    data_len: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size { digits: 0 }, remaining: 0, line: 0, data_len: 0 }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The data bytes (framing left out) decoded so far.
    pub fn data_len(&self) -> u64 {
        self.data_len
    }

    /// Consumes framing and data from `input`, passing each run of data to
    /// `data`. Returns how many bytes belong to this body: all of `input`
    /// unless the body ended inside it.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let n = (input.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                data(&input[i..i + n]);
                i += n;
                self.remaining -= n as u64;
                self.data_len += n as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            if self.state == State::Done {
                break;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        self.line += 1;
        self.state = match self.state {
            Size { digits } => match (b as char).to_digit(16) {
                Some(d) if digits < 16 => {
                    self.remaining = self.remaining << 4 | u64::from(d);
                    Size { digits: digits + 1 }
                }
                Some(_) => return Err(ChunkError("chunk size too large")),
                None if digits == 0 => return Err(ChunkError("missing chunk size")),
                None => return self.after_size(b),
            },
            Extension if self.line > MAX_CHUNK_LINE => return Err(ChunkError("chunk extensions too long")),
            Extension => match b {
                b'\r' => SizeLf,
                b'\n' => return Err(ChunkError("bare LF")),
                _ => Extension,
            },
            SizeLf if b != b'\n' => return Err(ChunkError("expected LF")),
            SizeLf => {
                self.line = 0;
                if self.remaining == 0 {
                    TrailerStart
                } else {
                    Data
                }
            }
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => {
                self.line = 0;
                Size { digits: 0 }
            }
            DataCr | DataLf => return Err(ChunkError("chunk data not followed by CRLF")),
            TrailerStart if b == b'\r' => EndLf,
            TrailerStart | TrailerLine if self.line > MAX_TRAILERS => return Err(ChunkError("trailers too long")),
            TrailerStart | TrailerLine => match b {
                b'\r' => TrailerLf,
                b'\n' => return Err(ChunkError("bare LF")),
                _ => TrailerLine,
            },
            TrailerLf if b == b'\n' => TrailerStart,
            EndLf if b == b'\n' => Done,
            TrailerLf | EndLf => return Err(ChunkError("expected LF")),
            Data | Done => unreachable!("handled by feed"),
        };
        Ok(())
    }

    fn after_size(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match b {
            b'\r' => State::SizeLf,
            b';' | b' ' | b'\t' => State::Extension,
            _ => return Err(ChunkError("invalid chunk size")),
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = ChunkedDecoder::default();
        let mut out = Vec::new();
        let mut used = 0;
        for part in input.chunks(piece) {
            used += d.feed(part, |b| out.extend_from_slice(b))?;
            if d.is_done() {
                break;
            }
        }
        assert!(d.is_done(), "not done");
        Ok((out, used))
    }

    #[test]
    fn decodes_in_any_pieces_and_stops_at_the_end() {
        let body = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in 1..body.len() {
            let (data, used) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(data, b"hello, world");
            let mut d = ChunkedDecoder::default();
            d.feed(&body[..piece], |_| {}).unwrap();
            let mut rest = d;
            rest.feed(&body[piece..], |_| {}).unwrap();
            assert!(rest.is_done(), "a copy decodes on where the first stopped");
            assert_eq!(d.is_done(), piece >= body.len() - 4);
            assert_eq!(rest.data_len(), 12);
            assert_eq!(used, body.len() - 4);
        }
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"11111111111111111\r\n",
            b"0\r\nX: 1\n",
            b"5 x\r",
        ] {
            let mut d = ChunkedDecoder::default();
            let r = d.feed(bad, |_| {});
            assert!(r.is_err() || !d.is_done(), "{bad:?}");
        }
        let mut d = ChunkedDecoder::default();
        assert!(d.feed(b"zz", |_| {}).is_err());
        let mut d = ChunkedDecoder::default();
        assert!(d.feed(b"5\r\nhelloX", |_| {}).is_err());
    }

    #[test]
    fn limits_extension_length() {
        let mut d = ChunkedDecoder::default();
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE + 10, b'a');
        assert!(d.feed(&line, |_| {}).is_err());
    }
}
