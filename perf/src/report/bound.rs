//! A lower bound on a run's cold starts: the fewest any placement of the
//! same calls could have had under the workers' code refresh.
//!
//! On a worker, a function's first call pulls its code, and so does each
//! call that comes `refresh_ms` or more after the last pull there; a pull
//! kills every instance of the function on that worker, so the call that
//! pulls starts cold. Splitting a function's calls over workers never
//! pulls less: a pull of all the calls on one worker, at time t, has a pull
//! of the part that holds the call at t within (t - refresh, t], and those
//! windows are disjoint. So each function's pulls, were all its calls on one
//! worker, are cold starts no scheduler avoids. The bound leaves out what
//! only adds to it: calls in flight at once (each needs an instance of its
//! own), the autoscaler's kills and evictions for memory.

use std::collections::HashMap;

use crate::load::loadgen::Call;

/// The pulls of calls arriving at `starts` (ascending, ms) on one worker.
fn pulls(starts: &[f64], refresh_ms: Option<f64>) -> u64 {
    let mut last: Option<f64> = None;
    let mut pulls = 0;
    for &t in starts {
        let stale = match (last, refresh_ms) {
            (None, _) => true,
            (Some(at), Some(every)) => t - at >= every,
            (Some(_), None) => false,
        };
        if stale {
            pulls += 1;
            last = Some(t);
        }
    }
    pulls
}

/// The fewest cold starts any placement of `calls`' completed calls could
/// have had (`refresh_ms`: the workers' code refresh, `None` for never).
/// Fewer calls never give more pulls, so the completed calls alone give a
/// bound for them.
pub fn cold_bound(calls: &[Call], refresh_ms: Option<f64>) -> u64 {
    let mut by_function: HashMap<usize, Vec<f64>> = HashMap::new();
    for c in calls.iter().filter(|c| c.completed()) {
        by_function.entry(c.function).or_default().push(c.start_ms);
    }
    by_function
        .into_values()
        .map(|mut starts| {
            starts.sort_by(f64::total_cmp);
            pulls(&starts, refresh_ms)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(function: usize, start_ms: f64) -> Call {
        Call {
            vu: 0,
            function,
            start_ms,
            latency_ms: 1.0,
            status: 200,
            cold: Some(true),
            cold_cause: Some(crate::emulator::model::Cold::First),
            worker: Some("w".to_string()),
            service_ms: Some(1.0),
            cut: false,
        }
    }

    #[test]
    fn each_function_pulls_at_its_first_call_and_each_one_a_refresh_after_the_last_pull() {
        assert_eq!(pulls(&[0.0, 4999.0, 5000.0, 9999.0, 10_000.0], Some(5000.0)), 3);
        assert_eq!(pulls(&[0.0, 4000.0, 8000.0], Some(5000.0)), 2, "the pull at 0, then at 8000");
        assert_eq!(pulls(&[0.0, 1e9], None), 1);
        assert_eq!(pulls(&[], Some(5000.0)), 0);
        let calls = [call(1, 0.0), call(2, 10.0), call(1, 6000.0), call(1, 7000.0), call(2, 100.0)];
        assert_eq!(cold_bound(&calls, Some(5000.0)), 3);
        // A call that did not complete is left out.
        let failed = Call { status: 502, ..call(3, 0.0) };
        assert_eq!(cold_bound(&[failed], Some(5000.0)), 0);
    }
}
