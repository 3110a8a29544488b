//! The paper's k6 workload as data: which function each call goes to, how
//! long each virtual user thinks, and when each one starts. Pure and seeded:
//! the same seed gives every scheduler the same sequence.

use std::collections::BTreeMap;
use std::path::Path;

use crate::rng::{derive_seed, WeightedChoice};

/// Virtual users in each phase; a phase keeps the earlier phases' users.
pub const PHASE_VUS: [usize; 3] = [20, 50, 100];

/// Think time between calls, uniform in this range (paper-scale ms).
pub const THINK_MS: (f64, f64) = (100.0, 1000.0);

/// The request body of every call.
pub const PAYLOAD: &[u8] = br#"{"param0": "value0"}"#;

/// Per-function invocation probabilities from the Azure Functions 2021
/// trace (`{"<hash>": {"probability": p}}`), in the file's key order.
pub fn load_probabilities(path: &Path) -> Result<Vec<f64>, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        probability: f64,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // A BTreeMap orders the keys, so the sample below can't depend on how
    // the file happens to be written.
    let entries: BTreeMap<String, Entry> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(entries.into_values().map(|e| e.probability).collect())
}

/// Weights for `count` functions: that many distinct trace functions drawn
/// with `seed`, renormalised to sum to 1. `None` if the trace has too few
/// functions or the drawn ones have no weight at all.
pub fn sample_weights(probabilities: &[f64], count: usize, seed: u64) -> Option<Vec<f64>> {
    if probabilities.len() < count {
        return None;
    }
    // A partial Fisher-Yates shuffle: the first `count` slots are the sample.
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    for i in 0..count {
        let j = rng.usize(i..order.len());
        order.swap(i, j);
    }
    let drawn: Vec<f64> = order[..count].iter().map(|&i| probabilities[i]).collect();
    let total: f64 = drawn.iter().sum();
    (total > 0.0 && total.is_finite()).then(|| drawn.iter().map(|p| p / total).collect())
}

/// The phase in which virtual user `vu` (from 0) joins.
pub fn joining_phase(vu: usize) -> usize {
    PHASE_VUS.iter().position(|&n| vu < n).unwrap_or(PHASE_VUS.len())
}

/// One virtual user's own random sequence of calls and think times.
pub struct UserScript {
    rng: fastrand::Rng,
}

impl UserScript {
    pub fn new(seed: u64, vu: usize) -> UserScript {
        UserScript { rng: fastrand::Rng::with_seed(derive_seed(seed, vu as u64)) }
    }

    /// The next call's function (an index into the weights) and the think
    /// time after it, in paper-scale ms.
    pub fn next(&mut self, choice: &WeightedChoice) -> (usize, f64) {
        let function = choice.pick(&mut self.rng);
        let think = THINK_MS.0 + self.rng.f64() * (THINK_MS.1 - THINK_MS.0);
        (function, think)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_file_loads_and_40_weights_sum_to_one() {
        let path = Path::new(crate::DEFAULT_PROBABILITIES);
        let probabilities = load_probabilities(path).unwrap();
        assert_eq!(probabilities.len(), 424);
        let weights = sample_weights(&probabilities, 40, 1).unwrap();
        assert_eq!(weights.len(), 40);
        assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(sample_weights(&probabilities, 40, 1), Some(weights.clone()));
        assert_ne!(sample_weights(&probabilities, 40, 2), Some(weights));
    }

    #[test]
    fn sampling_draws_distinct_entries_and_renormalises() {
        // Distinct powers of two: the sum tells which entries were drawn.
        let probabilities: Vec<f64> = (0..10).map(|i| f64::from(1u32 << i)).collect();
        let weights = sample_weights(&probabilities, 10, 3).unwrap();
        let mut drawn: Vec<f64> = weights.iter().map(|w| w * 1023.0).collect();
        drawn.sort_by(f64::total_cmp);
        let rounded: Vec<f64> = drawn.iter().map(|d| d.round()).collect();
        assert_eq!(rounded, probabilities);
        assert_eq!(sample_weights(&probabilities, 11, 3), None);
    }

    #[test]
    fn users_join_by_phase() {
        assert_eq!([joining_phase(0), joining_phase(19), joining_phase(20)], [0, 0, 1]);
        assert_eq!([joining_phase(49), joining_phase(50), joining_phase(99)], [1, 2, 2]);
    }

    #[test]
    fn a_user_script_repeats_for_the_same_seed_and_user() {
        let choice = WeightedChoice::new(&[0.2, 0.3, 0.5]).unwrap();
        let run = |seed, vu| {
            let mut script = UserScript::new(seed, vu);
            (0..50).map(|_| script.next(&choice)).collect::<Vec<_>>()
        };
        assert_eq!(run(5, 7), run(5, 7));
        assert_ne!(run(5, 7), run(5, 8));
        assert!(run(5, 7).iter().all(|&(f, t)| f < 3 && (100.0..1000.0).contains(&t)));
    }
}
