//! What the end-to-end tests run against: the real `hiku` binary on
//! `127.0.0.1:0`, test workers that speak HTTP/1.1 and record what they
//! were sent, and a client that writes raw bytes and reads answers.
//!
//! - `hiku`: starting the binary on the I/O driver a test names
//!   (`Hiku::on(driver)`), its config, signalling and stopping it;
//! - `workers`: the test worker servers;
//! - `clients`: the raw HTTP client and the answers it reads, and what
//!   tests ask hiku through it (`/status`, `/metrics`, held calls);
//! - `http`: reading one HTTP/1.1 message off a socket, for workers and
//!   clients alike;
//! - `front`: HAProxy on the shipped tier config, in front of instances.
//!
//! What the modules offer is re-exported here (`support::Hiku`,
//! `support::Worker`, ...). Test crates take this in with `mod support;`
//! (or a `#[path]` to this file).
//!
//! Everything waits on conditions with a deadline; nothing sleeps a fixed
//! time to let something happen.

#![allow(dead_code)]

mod clients;
mod front;
mod hiku;
mod http;
mod workers;

use std::time::{Duration, Instant};

// A test crate may use only some of them.
#[allow(unused_imports)]
pub use self::{clients::*, front::*, hiku::*, workers::*};

/// Longest any test waits for anything.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds; fails the test after `DEADLINE`.
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// `n` bytes of a repeating, position-dependent pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}
