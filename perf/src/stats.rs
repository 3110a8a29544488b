//! Statistics on plain numbers, for every report: percentiles, means and
//! medians, the coefficient of variation and the paper's load imbalance,
//! and rows grouped by a key.

/// The `p`-th percentile (0-100) of ascending `sorted` values, linearly
/// interpolated between the two nearest ranks (as numpy's default); NaN if
/// there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]), "percentile needs sorted values");
    match sorted.len() {
        0 => f64::NAN,
        n => {
            let rank = (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
            sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
        }
    }
}

/// The arithmetic mean; NaN if there are no values.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// The median, the mean of the middle two for an even count; NaN values
/// (a number a round could not give) are left out; NaN if none is left.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.into_iter().filter(|v| !v.is_nan()).collect();
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The coefficient of variation: population standard deviation over mean;
/// `None` when the mean is zero (or there are no values).
pub fn cv(values: &[f64]) -> Option<f64> {
    let m = mean(values);
    if values.is_empty() || m == 0.0 {
        return None;
    }
    let variance = values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / values.len() as f64;
    Some(variance.sqrt() / m)
}

/// Load imbalance as the paper defines it: for each second, the CV of the
/// calls assigned to each of `workers` workers in that second, averaged
/// over the seconds in which any call was assigned. `assignments` holds
/// (second, worker index) per call; `None` if there was no call.
pub fn load_cv(assignments: impl IntoIterator<Item = (usize, usize)>, workers: usize) -> Option<f64> {
    let mut per_second: Vec<Vec<f64>> = Vec::new();
    for (second, worker) in assignments {
        if second >= per_second.len() {
            per_second.resize(second + 1, vec![0.0; workers]);
        }
        per_second[second][worker] += 1.0;
    }
    let cvs: Vec<f64> = per_second.iter().filter_map(|counts| cv(counts)).collect();
    (!cvs.is_empty()).then(|| mean(&cvs))
}

/// `items` grouped by a key (contender and connections, say), the groups
/// in the order their keys first appear.
pub fn groups<'a, T, K: PartialEq>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<(K, Vec<&'a T>)> {
    let mut groups: Vec<(K, Vec<&T>)> = Vec::new();
    for item in items {
        let k = key(item);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, group)) => group.push(item),
            None => groups.push((k, vec![item])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let values = [10.0, 20.0, 30.0, 40.0, 50.0];
        assert_eq!(percentile(&values, 0.0), 10.0);
        assert_eq!(percentile(&values, 50.0), 30.0);
        assert_eq!(percentile(&values, 100.0), 50.0);
        assert_eq!(percentile(&values, 75.0), 40.0);
        assert_eq!(percentile(&values, 12.5), 15.0);
        assert_eq!(percentile(&values, 62.5), 35.0);
        assert!((percentile(&values, 90.0) - 46.0).abs() < 1e-9);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn p99_of_one_to_a_hundred() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), 50.5);
        assert!((percentile(&values, 99.0) - 99.01).abs() < 1e-9);
        assert!((percentile(&values, 95.0) - 95.05).abs() < 1e-9);
    }

    #[test]
    fn medians_skip_what_a_round_could_not_measure() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median([f64::NAN, 5.0, 7.0]), 6.0);
        assert!(median([f64::NAN]).is_nan());
        assert!(median([]).is_nan());
    }

    #[test]
    fn groups_keep_the_order_their_keys_first_appear_in() {
        let rows = [("b", 1), ("a", 2), ("b", 3)];
        let grouped = groups(&rows, |r| r.0);
        let values: Vec<(&str, Vec<i32>)> =
            grouped.iter().map(|(k, g)| (*k, g.iter().map(|r| r.1).collect())).collect();
        assert_eq!(values, [("b", vec![1, 3]), ("a", vec![2])]);
    }

    #[test]
    fn mean_and_coefficient_of_variation() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        // Population sd of (2, 4, 4, 4, 5, 5, 7, 9) is 2, the mean 5.
        assert_eq!(cv(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]), Some(0.4));
        assert_eq!(cv(&[3.0, 3.0]), Some(0.0));
        assert_eq!(cv(&[0.0, 0.0]), None);
        assert_eq!(cv(&[]), None);
    }

    #[test]
    fn load_cv_averages_the_seconds_with_calls() {
        // Second 0: counts (2, 2) -> 0. Second 1: none, skipped.
        // Second 2: counts (3, 1) -> sd 1 / mean 2 = 0.5. Average 0.25.
        let calls = [(0, 0), (0, 1), (0, 0), (0, 1), (2, 0), (2, 0), (2, 0), (2, 1)];
        assert_eq!(load_cv(calls, 2), Some(0.25));
        // A worker that gets nothing counts as zero: (4, 0, 0) has cv sqrt(2).
        assert!((load_cv([(0, 0); 4], 3).unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(load_cv([], 3), None);
    }
}
