//! The load side: the paper's k6 workload as data ([`workload`]), and the
//! virtual users that play it against the scheduler and record every call
//! ([`loadgen`]).

pub mod loadgen;
pub mod workload;
