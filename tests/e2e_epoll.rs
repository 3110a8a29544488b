//! The end-to-end tests again with hiku forced onto its epoll driver, the
//! one it falls back to where io_uring is blocked.

mod support;

/// The I/O driver forced on hiku (`HIKU_IO`).
const DRIVER: Option<&str> = Some("epoll");

include!("e2e/cases.rs");
