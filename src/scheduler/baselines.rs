//! Each function's baseline: the shortest it has taken lately to answer,
//! on any worker, which the workers' adaptive limits measure their calls
//! against (`worker::Limit`). A table of atomics indexed by hash, sized
//! once, in two-way sets (a function new to a full set takes the place of
//! the one with fewer answers): no lock, no allocation. A collision costs a
//! function its baseline, which it learns again; never correctness.

use std::sync::atomic::{AtomicU64, Ordering};

use ahash::RandomState;

/// Slots in the table (two per set).
const SLOTS: usize = 1 << 13;

/// A function's baseline counts once it has answered this often: its first
/// answers were likely cold starts.
const SETTLED: u64 = 8;

/// A baseline rises toward longer answers by this share of the difference
/// (1/16384) each time, so one set long ago gives way, and falls to any
/// shorter answer at once.
const CREEP_SHIFT: u32 = 14;

/// Bits of the baseline (µs) in a slot's value; the count of answers is
/// above, up to [`MOST_ANSWERS`] (so that a function's slot, once settled
/// and steady, is only read, not written, by every core).
const BASE_BITS: u32 = 48;
const BASE_MASK: u64 = (1 << BASE_BITS) - 1;
const MOST_ANSWERS: u64 = 255;

const SEEDS: [u64; 4] = [0x6261_7365_6c69_6e65, 0x9e37_79b9_7f4a_7c15, 0xbf58_476d_1ce4_e5b9, 0x94d0_49bb_1331_11eb];

#[derive(Default)]
struct Slot {
    /// The function's hash, made odd (0: empty).
    tag: AtomicU64,
    /// Its baseline in µs, and how many answers it has seen.
    value: AtomicU64,
}

pub(crate) struct Baselines {
    hasher: RandomState,
    slots: Box<[Slot]>,
}

impl Default for Baselines {
    fn default() -> Self {
        Baselines {
            hasher: RandomState::with_seeds(SEEDS[0], SEEDS[1], SEEDS[2], SEEDS[3]),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
        }
    }
}

impl Baselines {
    /// Learns from an answer of `function` that took `took_us`; the
    /// baseline to measure it against (as it was before), or 0 while the
    /// function has not answered often enough.
    pub(crate) fn observe(&self, function: &str, took_us: u64) -> u64 {
        let tag = self.hasher.hash_one(function) | 1;
        let set = (tag >> 1) as usize % (SLOTS / 2) * 2;
        let ways = &self.slots[set..set + 2];
        let took_us = took_us.clamp(1, BASE_MASK);
        let Some(slot) = ways.iter().find(|s| s.tag.load(Ordering::Relaxed) == tag) else {
            // New here: it takes the way that has seen fewer answers.
            let answers = |s: &Slot| s.value.load(Ordering::Relaxed) >> BASE_BITS;
            let slot = ways.iter().min_by_key(|s| answers(s)).expect("two ways");
            slot.tag.store(tag, Ordering::Relaxed);
            slot.value.store(1 << BASE_BITS | took_us, Ordering::Relaxed);
            return 0;
        };
        let value = slot.value.load(Ordering::Relaxed);
        let (base, answers) = (value & BASE_MASK, value >> BASE_BITS);
        let next = if took_us < base { took_us } else { base + ((took_us - base) >> CREEP_SHIFT) };
        let updated = (answers + 1).min(MOST_ANSWERS) << BASE_BITS | next.max(1);
        if updated != value {
            slot.value.store(updated, Ordering::Relaxed);
        }
        if answers >= SETTLED {
            base
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_baseline_counts_once_settled_falls_at_once_and_rises_slowly() {
        let b = Baselines::default();
        // A cold start first, then warm answers around 100 ms.
        assert_eq!(b.observe("f", 300_000), 0);
        for took in [120_000, 100_000, 110_000, 105_000, 130_000, 100_000, 140_000] {
            assert_eq!(b.observe("f", took), 0, "not settled yet");
        }
        // The shortest, crept up by 1/16384 of each longer answer since.
        let base = b.observe("f", 200_000);
        assert!((100_000..100_010).contains(&base), "{base}");
        assert!(b.observe("f", 90_000) >= base, "measured against the one before it falls");
        assert_eq!(b.observe("f", 90_000), 90_000);
        // Answers three times as long raise it by 1/16384 of the difference each.
        for _ in 0..1000 {
            b.observe("f", 270_000);
        }
        let base = b.observe("f", 270_000);
        assert!((90_000..110_000).contains(&base), "{base}");
        assert_eq!(b.observe("g", 50_000), 0, "each function has its own");
    }

    #[test]
    fn a_full_set_gives_the_way_with_fewer_answers_to_a_new_function() {
        let b = Baselines::default();
        for i in 0..3 * SLOTS {
            b.observe(&format!("f{i}"), 1000);
        }
        for _ in 0..SETTLED {
            b.observe("busy", 1000);
        }
        assert_eq!(b.observe("busy", 2000), 1000, "settled and kept");
    }
}
