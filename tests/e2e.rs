//! End-to-end: the real `hiku` binary in front of test workers, checked on
//! the wire, endpoint by endpoint, on the I/O driver hiku picks by itself
//! (io_uring where the kernel allows it).

mod support;

/// The I/O driver forced on hiku (`HIKU_IO`), if any.
const DRIVER: Option<&str> = None;

include!("e2e/cases.rs");
