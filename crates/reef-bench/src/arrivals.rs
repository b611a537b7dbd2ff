//! Open-loop arrival schedules, fixed before the run starts.

use crate::workload::Load;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};
use std::time::Duration;

/// Arrival offsets from the start of the run for an open-loop load, sorted,
/// all below `duration`; `None` for a closed-loop (`continuous`) load.
/// Periodic arrivals start at 0; Poisson arrivals are seeded.
pub fn schedule(load: &Load, duration: Duration, seed: u64) -> Option<Vec<Duration>> {
    let end = duration.as_secs_f64();
    let mut out: Vec<Duration> = match load {
        Load::Continuous => return None,
        Load::Periodic { frequency } => {
            if frequency.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Some(Vec::new());
            }
            let n = (end * frequency).ceil() as u64;
            (0..n)
                .map(|k| k as f64 / frequency)
                .filter(|&t| t < end)
                .map(Duration::from_secs_f64)
                .collect()
        }
        Load::Poisson { rate } => {
            let Ok(exp) = Exp::new(*rate) else {
                return Some(Vec::new());
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut t = 0.0;
            let mut v = Vec::new();
            loop {
                t += exp.sample(&mut rng);
                if t >= end || !t.is_finite() {
                    break;
                }
                v.push(Duration::from_secs_f64(t));
            }
            v
        }
        Load::Trace { arrivals_ms, .. } => arrivals_ms
            .iter()
            .flatten()
            .filter(|ms| ms.is_finite() && **ms >= 0.0 && **ms < end * 1000.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0))
            .collect(),
    };
    out.sort();
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_is_exact() {
        let s = schedule(
            &Load::Periodic { frequency: 100.0 },
            Duration::from_secs(2),
            0,
        )
        .unwrap_or_default();
        assert_eq!(s.len(), 200);
        assert_eq!(s[1], Duration::from_millis(10));
        assert!(s.iter().all(|t| *t < Duration::from_secs(2)));
    }

    #[test]
    fn poisson_has_the_rate_and_is_seeded() {
        let load = Load::Poisson { rate: 50.0 };
        let a = schedule(&load, Duration::from_secs(200), 3).unwrap_or_default();
        let b = schedule(&load, Duration::from_secs(200), 3).unwrap_or_default();
        let c = schedule(&load, Duration::from_secs(200), 4).unwrap_or_default();
        assert_eq!(a, b);
        assert_ne!(a, c);
        // 10000 expected, sd 100: 5 sd.
        assert!((9500..10500).contains(&a.len()), "{}", a.len());
        assert!(a.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn trace_is_sorted_and_cut_at_the_end() {
        let load = Load::Trace {
            arrivals_ms: Some(vec![30.0, 5.0, 2500.0, 1000.0]),
            path: None,
        };
        let s = schedule(&load, Duration::from_secs(2), 0).unwrap_or_default();
        assert_eq!(
            s,
            vec![
                Duration::from_millis(5),
                Duration::from_millis(30),
                Duration::from_millis(1000)
            ]
        );
        assert!(schedule(&Load::Continuous, Duration::from_secs(1), 0).is_none());
    }
}
