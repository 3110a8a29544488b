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

pub use hashing_bounded::HashingBounded;
pub use idle_queues::{hold_epoch, repin_epoch, IdleQueues, DEFAULT_MAX_FUNCTIONS};
pub use kind::BalancerKind;
pub use least_connections::LeastConnections;
pub use predictive::{Predictive, DEFAULT_WORKER_CORES};
pub use pull_based::PullBased;
pub use pull_hashing::PullHashing;
pub use random::Random;
pub use strategy::{Answer, Balancer, Outcome};

#[cfg(test)]
mod tests;
