//! The balancers by their names in a scheduler's config: hiku's six and
//! the Go original's four, for every measurement that writes a config.

/// The balancers every scheduler is run with: the paper's four in its
/// order, then hiku's own.
pub const BALANCERS: [&str; 6] =
    ["pull-based", "hashing-bounded", "least-connections", "random", "pull-hashing", "predictive"];

/// The Go original's balancers: a baseline is run with these only.
pub const PAPER_BALANCERS: [&str; 4] = ["pull-based", "hashing-bounded", "least-connections", "random"];
