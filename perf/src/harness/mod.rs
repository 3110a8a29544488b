//! The plumbing every measurement shares, below their own logic: starting
//! processes that never outlive a run ([`process`]), the emulator's
//! workers, trivial upstreams and a scheduler in front of them
//! ([`cluster`]), a tier of hiku instances behind HAProxy ([`tier`] on
//! [`front`]), a scratch directory for their configs and logs
//! ([`workdir`]), and what a process has cost, from `/proc` ([`procstat`]).

pub mod cluster;
pub mod front;
pub mod process;
pub mod procstat;
pub mod shipped_front;
pub mod tier;
pub mod workdir;
