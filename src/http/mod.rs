//! HTTP/1.1 as a proxy needs it (RFC 9110, RFC 9112): request and response
//! heads parsed with httparse into borrowed views ([`parse`]), message
//! framing, the rewriting of heads between client and worker ([`mod@write`]),
//! chunked bodies ([`chunked`]), the read buffers ([`buf`]), and moving
//! heads and bodies over sockets ([`io`]). Never panics on input.

mod buf;
mod chunked;
mod io;
mod meta;
mod parse;
mod write;

pub use buf::{recycle, spare, ReadBuf};
pub use chunked::{ChunkError, ChunkedDecoder};
pub use io::{
    client_gone, copy_body, flush, read_response_head, Body, Bounds, Copied, CopyError, HeadError, HeldBody, Sink,
};
pub use meta::RequestMeta;
pub use parse::{
    buffered_body_len, empty_headers, head_end, last_forwarded_for, parse_request, parse_response,
    strip_prefix_ignore_case, Framing, Headers, Request, Response, Version, MAX_HEAD, MAX_HEADERS,
};
pub use write::{reason, retarget_host, write_local_response, write_request_head, write_response_head};

#[cfg(test)]
mod tests;
