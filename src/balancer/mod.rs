//! Scheduling strategies: one file per balancer behind the `Balancer` trait.
//!
//! A balancer is shared by every core (`Send + Sync`) and must decide without
//! locks or allocation: it reads the worker-set snapshot it is given, atomic
//! counters, and its own lock-free state.

mod hashing_bounded;
mod idle_queues;
mod kind;
mod least_connections;
mod predictive;
mod pull_based;
mod pull_hashing;
mod random;
mod strategy;

pub(crate) use idle_queues::DEFAULT_MAX_FUNCTIONS;
pub use idle_queues::{hold_epoch, repin_epoch};
pub use kind::BalancerKind;
pub(crate) use predictive::DEFAULT_WORKER_CORES;
#[cfg(test)]
pub(crate) use pull_based::PullBased;
pub use strategy::{Answer, Balancer, Outcome};

#[cfg(test)]
mod tests;
