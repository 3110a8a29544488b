//! The end-to-end tests again with hiku forced onto its epoll driver, the
//! one it falls back to where io_uring is blocked.

mod support;

/// The I/O driver the cases start hiku on.
const DRIVER: support::Driver = support::Driver::Epoll;

include!("e2e/cases.rs");
