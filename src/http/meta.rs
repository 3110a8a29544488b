//! What hiku keeps of a request once its head is gone.

use super::chunked::ChunkedDecoder;
use super::parse::{Framing, Version};

/// What hiku needs to know of the client's request once its head is gone.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    pub framing: Framing,
    pub keep_alive: bool,
    pub version: Version,
    pub head: bool,
    pub expect_continue: bool,
    /// Whether the request may be sent again (RFC 9110 §9.2.2).
    pub idempotent: bool,
    /// The length of the body if all of it arrived with the head.
    pub whole_body: Option<usize>,
    /// hiku added a `Host` naming the worker (the client sent none).
    pub added_host: bool,
    /// The whole request, body too, is in the connection's outgoing
    /// buffer (it was held, or is small and came whole with its head).
    pub held_whole: bool,
    /// Where decoding a chunked body stands when it streams: at its start,
    /// or where holding it stopped (the part held is in the outgoing buffer).
    pub chunked: ChunkedDecoder,
}
