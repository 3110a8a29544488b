//! End-to-end: the real `hiku` binary in front of test workers, checked on
//! the wire, endpoint by endpoint, on the I/O driver hiku picks by itself
//! (io_uring where the kernel allows it).

mod support;

/// The I/O driver the cases start hiku on.
const DRIVER: support::Driver = support::Driver::Auto;

include!("e2e/cases.rs");
