//! The GPU's SM clock while a mode was measured: samples from a source the
//! caller supplies (NVML on the device's host, `reef bench disb`) and their
//! figures in each mode's result. A GPU that lowers its clock while idle
//! between RT requests makes RT alone slower than RT beside BE work, which
//! keeps the clock up; the figures show where that happened.

use crate::figures::percentile_sorted;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// How often `reef bench disb` samples the clock, ms.
pub const SAMPLE_PERIOD_MS: u64 = 5;

/// A source of SM clock samples.
pub trait ClockSource: Send + Sync {
    /// The SM clock samples (MHz) taken between `from` and `to`.
    fn sm_mhz_between(&self, from: Instant, to: Instant) -> Vec<u32>;
}

/// A clock source for [`crate::RunOptions::clock`].
#[derive(Clone)]
pub struct Clock(pub Arc<dyn ClockSource>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// The SM clock over a mode's measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClockFigures {
    /// Samples in the window.
    pub samples: u64,
    /// Mean, MHz.
    pub mean_mhz: f64,
    /// 10th percentile (nearest rank), MHz.
    pub p10_mhz: f64,
    /// Median (nearest rank), MHz.
    pub p50_mhz: f64,
    /// Lowest sample, MHz.
    pub min_mhz: f64,
    /// Highest sample, MHz.
    pub max_mhz: f64,
}

impl ClockFigures {
    /// The figures of `samples` (None when there are none).
    pub fn of(samples: &[u32]) -> Option<ClockFigures> {
        if samples.is_empty() {
            return None;
        }
        let mut s: Vec<f64> = samples.iter().map(|&v| f64::from(v)).collect();
        s.sort_unstable_by(f64::total_cmp);
        Some(ClockFigures {
            samples: s.len() as u64,
            mean_mhz: s.iter().sum::<f64>() / s.len() as f64,
            p10_mhz: percentile_sorted(&s, 0.10),
            p50_mhz: percentile_sorted(&s, 0.50),
            min_mhz: s[0],
            max_mhz: s[s.len() - 1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_of_samples_by_nearest_rank() {
        assert_eq!(ClockFigures::of(&[]), None);
        let mut samples: Vec<u32> = (1..=10).map(|i| i * 100).collect();
        samples.reverse();
        let f = ClockFigures::of(&samples).expect("ten samples");
        assert_eq!(f.samples, 10);
        assert_eq!(f.mean_mhz, 550.0);
        assert_eq!((f.p10_mhz, f.p50_mhz), (100.0, 500.0));
        assert_eq!((f.min_mhz, f.max_mhz), (100.0, 1000.0));
        let one = ClockFigures::of(&[1980]).expect("one sample");
        assert_eq!(
            (one.p10_mhz, one.p50_mhz, one.min_mhz),
            (1980.0, 1980.0, 1980.0)
        );
    }
}
