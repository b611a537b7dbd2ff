//! How sure an RT mean increase is: the 95% confidence half-width of a
//! mode's RT mean minus the baseline's, from the requests' records.
//!
//! The modes of one run replay the same workload with the same seeds, so
//! an open-loop RT request of a mode pairs with the baseline's request of
//! the same task and scheduled arrival. Their differences carry none of the
//! spread that comes from the mix of models and from where requests fall
//! (a request of a 3 ms model against one of a 1 ms model), so the
//! interval from the differences' spread is the tighter and the right one.
//! Where fewer than nine in ten requests pair up (closed-loop RT tasks,
//! whose arrivals follow their answers), the half-width comes from the two
//! samples' variances instead (Welch's).

use crate::schema::RequestRecord;
use reef_sched::Priority;
use std::collections::HashMap;

/// The 95% quantile of the normal distribution (two-sided).
const Z95: f64 = 1.959_964;

/// The uncertainty of one mode's RT mean against the baseline's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanSpread {
    /// Half-width of the 95% confidence interval of the difference of the
    /// means, ms.
    pub half_width_ms: f64,
    /// RT requests paired with the baseline's (0 when the interval comes
    /// from the unpaired samples).
    pub pairs: u64,
}

/// The RT requests a comparison counts: measured (past the warm-up) and
/// answered.
fn measured_rt(records: &[RequestRecord]) -> impl Iterator<Item = &RequestRecord> {
    records
        .iter()
        .filter(|r| r.priority == Priority::Rt && r.ok && !r.warmup)
}

/// A request's pairing key: its task and scheduled arrival (whole
/// nanoseconds, so that the same float from the same seed keys alike).
fn key(r: &RequestRecord) -> (usize, i64) {
    (r.task, (r.arrival_ms * 1e6).round() as i64)
}

/// Sample mean and variance (n - 1 in the denominator); `None` below two
/// values.
fn mean_var(v: &[f64]) -> Option<(f64, f64)> {
    if v.len() < 2 {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Some((mean, var))
}

/// The spread of `mode`'s RT mean latency minus `base`'s, from the
/// measured RT requests of each; `None` with fewer than two on either
/// side.
pub fn rt_mean_spread(mode: &[RequestRecord], base: &[RequestRecord]) -> Option<MeanSpread> {
    let base_by_key: HashMap<(usize, i64), f64> =
        measured_rt(base).map(|r| (key(r), r.latency_ms)).collect();
    let ours: Vec<&RequestRecord> = measured_rt(mode).collect();
    let diffs: Vec<f64> = ours
        .iter()
        .filter_map(|r| base_by_key.get(&key(r)).map(|b| r.latency_ms - b))
        .collect();
    let most = ours.len().max(base_by_key.len());
    if diffs.len() >= 2 && diffs.len() * 10 >= most * 9 {
        let (_, var) = mean_var(&diffs)?;
        return Some(MeanSpread {
            half_width_ms: Z95 * (var / diffs.len() as f64).sqrt(),
            pairs: diffs.len() as u64,
        });
    }
    let a: Vec<f64> = ours.iter().map(|r| r.latency_ms).collect();
    let b: Vec<f64> = measured_rt(base).map(|r| r.latency_ms).collect();
    let (_, va) = mean_var(&a)?;
    let (_, vb) = mean_var(&b)?;
    Some(MeanSpread {
        half_width_ms: Z95 * (va / a.len() as f64 + vb / b.len() as f64).sqrt(),
        pairs: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::record;
    use rand::{Rng, SeedableRng};

    fn rt(task: usize, arrival: f64, lat: f64) -> RequestRecord {
        RequestRecord {
            task,
            ..record(Priority::Rt, arrival, lat)
        }
    }

    /// Two models (1 ms and 3 ms) alternating: the baseline's latencies
    /// spread widely, and a mode adds 0.05 ms give or take 0.01 to each
    /// request. Paired, the interval is the differences' (tiny); the same
    /// latencies at arrivals that do not pair give Welch's (wide). Both
    /// checked against the formulas computed here.
    #[test]
    fn paired_requests_give_the_differences_spread_and_unpaired_give_welchs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let n = 400;
        let base: Vec<RequestRecord> = (0..n)
            .map(|i| rt(i % 2, 200.0 + i as f64, if i % 2 == 0 { 1.0 } else { 3.0 }))
            .collect();
        let added: Vec<f64> = (0..n)
            .map(|_| 0.05 + rng.random_range(-0.01..0.01))
            .collect();
        let mode: Vec<RequestRecord> = base
            .iter()
            .zip(&added)
            .map(|(b, d)| rt(b.task, b.arrival_ms, b.latency_ms + d))
            .collect();
        let paired = rt_mean_spread(&mode, &base).expect("enough requests");
        assert_eq!(paired.pairs, n as u64);
        let (_, var) = mean_var(&added).unwrap();
        let want = Z95 * (var / n as f64).sqrt();
        assert!(
            (paired.half_width_ms - want).abs() < 1e-12,
            "{paired:?} against {want}"
        );
        assert!(paired.half_width_ms < 0.002, "{paired:?}");

        let shifted: Vec<RequestRecord> = mode
            .iter()
            .map(|r| rt(r.task, r.arrival_ms + 0.5, r.latency_ms))
            .collect();
        let unpaired = rt_mean_spread(&shifted, &base).expect("enough requests");
        assert_eq!(unpaired.pairs, 0);
        let lat = |v: &[RequestRecord]| v.iter().map(|r| r.latency_ms).collect::<Vec<_>>();
        let (_, va) = mean_var(&lat(&shifted)).unwrap();
        let (_, vb) = mean_var(&lat(&base)).unwrap();
        let want = Z95 * (va / n as f64 + vb / n as f64).sqrt();
        assert!((unpaired.half_width_ms - want).abs() < 1e-12);
        assert!(unpaired.half_width_ms > 0.1, "{unpaired:?}");
    }

    /// Warm-up, failed and BE requests count on neither side; fewer than
    /// two measured RT requests give no interval.
    #[test]
    fn only_measured_rt_requests_count() {
        let mut base = vec![rt(0, 200.0, 2.0), rt(0, 201.0, 2.2)];
        let mut mode = vec![rt(0, 200.0, 2.1), rt(0, 201.0, 2.5)];
        // Noise that must not count: warm-up, a failure, BE work.
        base.push(rt(0, 50.0, 90.0));
        mode.push(rt(0, 50.0, 1.0));
        mode.push(RequestRecord {
            ok: false,
            ..rt(0, 202.0, 70.0)
        });
        mode.push(record(Priority::Be, 203.0, 40.0));
        let s = rt_mean_spread(&mode, &base).expect("two pairs");
        assert_eq!(s.pairs, 2);
        // Differences 0.1 and 0.3: variance 0.02.
        let want = Z95 * (0.02f64 / 2.0).sqrt();
        assert!((s.half_width_ms - want).abs() < 1e-9, "{s:?}");
        assert_eq!(rt_mean_spread(&mode[..1], &base), None);
    }
}
