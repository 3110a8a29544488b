//! The paper's k6 workload as data: which function each call goes to, how
//! long each virtual user thinks, and when each one starts. Pure and seeded:
//! the same seed gives every scheduler the same sequence.
//!
//! As the paper's script (`evaluation/load_test.js`) does in its init code,
//! which k6 runs once per virtual user, **every user draws its own sample**
//! of 40 functions from the trace and renormalises their weights, and maps
//! the function at sample position `i` onto `<benchmark i % 8>-<copy i / 8>`
//! (copy-major): [`user_choices`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::functions::{COPIES, TABLE_I};
use crate::rng::{derive_seed, WeightedChoice};

/// Virtual users in each phase; a phase keeps the earlier phases' users.
pub const PHASE_VUS: [usize; 3] = [20, 50, 100];

/// Think time between calls, uniform in this range (paper-scale ms).
pub const THINK_MS: (f64, f64) = (100.0, 1000.0);

/// The request body of every call.
pub const PAYLOAD: &[u8] = br#"{"param0": "value0"}"#;

/// The Azure Functions 2021 trace's per-function probabilities, shipped in
/// `perf/data/` (its README says where the figures come from).
pub const DEFAULT_PROBABILITIES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/azure_function_probabilities.json");

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

/// The function (an index into [`crate::functions::names`]) that sample
/// position `i` is called as: copy-major, as the script's `benchmarkMap`
/// (`index = copy * 8 + benchmark`).
pub fn function_of_position(i: usize) -> usize {
    let benchmarks = TABLE_I.len();
    (i % benchmarks) * COPIES + i / benchmarks
}

/// Seeds of the users' samples: a stream apart from their call sequences.
const SAMPLE_STREAM: u64 = 0x5a3d_1e5e_ed00_0001;

/// Each virtual user's choice over the 40 functions (indexes into
/// [`crate::functions::names`]): its own sample of the trace, drawn with
/// `seed` and its number, weights renormalised, positions mapped
/// copy-major. `None` if the trace has too few weighted functions.
pub fn user_choices(probabilities: &[f64], seed: u64, users: usize) -> Option<Vec<WeightedChoice>> {
    let functions = TABLE_I.len() * COPIES;
    (0..users)
        .map(|vu| {
            let sample = sample_weights(probabilities, functions, derive_seed(seed ^ SAMPLE_STREAM, vu as u64))?;
            let mut weights = vec![0.0; functions];
            for (position, weight) in sample.into_iter().enumerate() {
                weights[function_of_position(position)] = weight;
            }
            WeightedChoice::new(&weights)
        })
        .collect()
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
        let path = Path::new(DEFAULT_PROBABILITIES);
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
    fn positions_map_copy_major_onto_all_forty_names() {
        let names = crate::functions::names();
        let at = |i: usize| names[function_of_position(i)].as_str();
        assert_eq!([at(0), at(1), at(7), at(8), at(39)], ["chameleon-0", "dd-0", "pyaes-0", "chameleon-1", "pyaes-4"]);
        let mut all: Vec<usize> = (0..40).map(function_of_position).collect();
        all.sort();
        assert_eq!(all, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn every_user_draws_its_own_sample() {
        let probabilities = load_probabilities(Path::new(DEFAULT_PROBABILITIES)).unwrap();
        let choices = user_choices(&probabilities, 1, 100).unwrap();
        assert_eq!(choices.len(), 100);
        assert_eq!(user_choices(&probabilities, 1, 100).unwrap(), choices, "the same seed, the same samples");
        let distinct: std::collections::HashSet<String> = choices.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(distinct.len(), 100, "each user has a sample of its own");
        assert_ne!(user_choices(&probabilities, 2, 1).unwrap()[0], choices[0]);
        // Over many calls of many users, no single function dominates the
        // way one shared sample can make it (one seed put 37% on one).
        let mut counts = [0u32; 40];
        for (vu, choice) in choices.iter().enumerate() {
            let mut rng = fastrand::Rng::with_seed(vu as u64);
            for _ in 0..1000 {
                counts[choice.pick(&mut rng)] += 1;
            }
        }
        let top = *counts.iter().max().unwrap() as f64 / 100_000.0;
        assert!(top < 0.2, "the busiest function got {top:.2} of the calls");
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
