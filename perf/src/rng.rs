//! Seeded randomness: independent streams derived from one run seed, the
//! log-normal service-time noise, and weighted choice.

/// A seed for stream `index` of a run seeded with `seed` (SplitMix64's
/// finaliser over both), so neighbouring indices give unrelated streams.
pub fn derive_seed(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut fastrand::Rng) -> f64 {
    // 1 - f64() lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.f64();
    let u2 = rng.f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A log-normal factor with median 1: `exp(sigma * N(0, 1))`.
pub fn lognormal_noise(rng: &mut fastrand::Rng, sigma: f64) -> f64 {
    (sigma * normal(rng)).exp()
}

/// Picks indices with probability proportional to their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedChoice {
    /// Running sums of the weights.
    cumulative: Vec<f64>,
}

impl WeightedChoice {
    /// `None` if there is no positive weight, or a weight is negative or not finite.
    pub fn new(weights: &[f64]) -> Option<WeightedChoice> {
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return None;
        }
        let cumulative: Vec<f64> = weights.iter().scan(0.0, |sum, w| Some(*sum + w).inspect(|s| *sum = *s)).collect();
        (cumulative.last().copied().unwrap_or(0.0) > 0.0).then_some(WeightedChoice { cumulative })
    }

    pub fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        let total = *self.cumulative.last().expect("at least one weight");
        let x = rng.f64() * total;
        // The first index whose running sum exceeds x: zero weights are never picked.
        self.cumulative.partition_point(|&c| c <= x).min(self.cumulative.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ_and_repeat() {
        assert_eq!(derive_seed(7, 3), derive_seed(7, 3));
        assert_ne!(derive_seed(7, 3), derive_seed(7, 4));
        assert_ne!(derive_seed(7, 3), derive_seed(8, 3));
    }

    #[test]
    fn noise_has_median_one_and_the_given_spread() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut logs: Vec<f64> = (0..20_000).map(|_| lognormal_noise(&mut rng, 0.1).ln()).collect();
        logs.sort_by(f64::total_cmp);
        let median = logs[logs.len() / 2];
        let sd = (logs.iter().map(|l| l * l).sum::<f64>() / logs.len() as f64).sqrt();
        assert!(median.abs() < 0.005, "median of log noise {median}");
        assert!((sd - 0.1).abs() < 0.003, "sd of log noise {sd}");
        assert_eq!(lognormal_noise(&mut rng, 0.0), 1.0);
    }

    #[test]
    fn choice_follows_the_weights_and_skips_zero() {
        let choice = WeightedChoice::new(&[1.0, 0.0, 3.0]).unwrap();
        let mut rng = fastrand::Rng::with_seed(2);
        let mut counts = [0usize; 3];
        for _ in 0..40_000 {
            counts[choice.pick(&mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        let share = counts[2] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "share of the heaviest {share}");
        assert!(WeightedChoice::new(&[0.0, 0.0]).is_none());
        assert!(WeightedChoice::new(&[1.0, -1.0]).is_none());
    }
}
