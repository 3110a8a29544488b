//! Compressed time: every duration of the experiment (service times,
//! keep-alive, think time, phases) runs `scale` times as long as in the
//! paper, and every measured time is divided by `scale` to be reported at
//! paper scale. `scale = 1` is real time.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeScale(f64);

impl TimeScale {
    /// `None` unless `scale` is positive and finite.
    pub fn new(scale: f64) -> Option<TimeScale> {
        (scale.is_finite() && scale > 0.0).then_some(TimeScale(scale))
    }

    pub fn factor(self) -> f64 {
        self.0
    }

    /// How long `paper_ms` lasts on this machine.
    pub fn real(self, paper_ms: f64) -> Duration {
        Duration::from_secs_f64((paper_ms * self.0 / 1000.0).max(0.0))
    }

    /// A duration measured on this machine, in ms at paper scale.
    pub fn paper_ms(self, real: Duration) -> f64 {
        real.as_secs_f64() * 1000.0 / self.0
    }
}

/// Paper-scale milliseconds since a fixed instant.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
    scale: TimeScale,
}

impl Clock {
    pub fn new(scale: TimeScale) -> Clock {
        Clock { origin: Instant::now(), scale }
    }

    pub fn now_ms(&self) -> f64 {
        self.scale.paper_ms(self.origin.elapsed())
    }

    /// The real instant at which the clock reads `paper_ms`.
    pub fn instant_at(&self, paper_ms: f64) -> Instant {
        self.origin + self.scale.real(paper_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_both_ways() {
        let s = TimeScale::new(0.1).unwrap();
        assert_eq!(s.real(500.0), Duration::from_millis(50));
        assert_eq!(s.paper_ms(Duration::from_millis(50)), 500.0);
        assert_eq!(TimeScale::new(1.0).unwrap().real(250.0), Duration::from_millis(250));
        assert_eq!(s.real(-1.0), Duration::ZERO);
        assert_eq!(TimeScale::new(0.0), None);
        assert_eq!(TimeScale::new(f64::NAN), None);
    }

    #[test]
    fn the_clock_and_its_instants_agree() {
        let clock = Clock::new(TimeScale::new(0.5).unwrap());
        assert_eq!(clock.instant_at(2000.0) - clock.instant_at(0.0), Duration::from_secs(1));
        assert!(clock.now_ms() >= 0.0);
    }
}
