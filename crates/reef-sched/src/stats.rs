//! Scheduler counters and latency histograms, shared between the scheduling
//! thread (writer) and front ends (readers of snapshots).

use crate::api::{LatencySummary, SchedStats, SlowDrain, SlowStep, SLOWEST_DRAINS, SLOWEST_STEPS};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Live statistics of one scheduler.
pub struct Stats {
    pub(crate) device: String,
    pub(crate) mode: String,
    pub(crate) rt_depth: AtomicUsize,
    pub(crate) be_depth: Vec<AtomicUsize>,
    pub(crate) completed: [AtomicU64; 2],
    pub(crate) preemptions: AtomicU64,
    pub(crate) kernels_rerun: AtomicU64,
    pub(crate) busy_ns: AtomicU64,
    pub(crate) padded_kernels: AtomicU64,
    pub(crate) pad_launches: AtomicU64,
    pub(crate) start: Instant,
    preempt: Mutex<Histogram<u64>>,
    raise: Mutex<Histogram<u64>>,
    drain_device: Mutex<Histogram<u64>>,
    poll_gap: Mutex<Histogram<u64>>,
    padding: Mutex<Histogram<u64>>,
    /// The slowest preemptions, slowest first.
    slowest: Mutex<Vec<SlowDrain>>,
    /// Task contexts made while serving ([`SchedStats::contexts_made`]).
    pub(crate) contexts_made: AtomicU64,
    /// The scheduling loop's slowest passes, slowest first.
    slowest_steps: Mutex<Vec<SlowStep>>,
}

/// Whether a sample of `us` makes the list `kept` (slowest first, at most
/// `cap` long, each entry's time from `us_of`).
fn among_slowest<T>(kept: &[T], cap: usize, us: f64, us_of: impl Fn(&T) -> f64) -> bool {
    kept.len() < cap || kept.last().is_some_and(|s| us > us_of(s))
}

/// Inserts `item` into `kept` in its place (slowest first) and keeps at
/// most `cap` entries.
fn keep_slowest<T>(kept: &mut Vec<T>, cap: usize, item: T, us_of: impl Fn(&T) -> f64) {
    let us = us_of(&item);
    let at = kept.partition_point(|s| us_of(s) >= us);
    if at < cap {
        kept.insert(at, item);
        kept.truncate(cap);
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("static histogram bounds are valid")
}

fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        count: h.len(),
        mean: h.mean() / 1000.0,
        p50: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99: h.value_at_quantile(0.99) as f64 / 1000.0,
        max: h.max() as f64 / 1000.0,
    }
}

impl Stats {
    pub(crate) fn new(device: String, mode: String, be_queues: usize) -> Stats {
        Stats {
            device,
            mode,
            rt_depth: AtomicUsize::new(0),
            be_depth: (0..be_queues).map(|_| AtomicUsize::new(0)).collect(),
            completed: [AtomicU64::new(0), AtomicU64::new(0)],
            preemptions: AtomicU64::new(0),
            kernels_rerun: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            padded_kernels: AtomicU64::new(0),
            pad_launches: AtomicU64::new(0),
            start: Instant::now(),
            preempt: Mutex::new(hist()),
            raise: Mutex::new(hist()),
            drain_device: Mutex::new(hist()),
            poll_gap: Mutex::new(hist()),
            padding: Mutex::new(hist()),
            slowest: Mutex::new(Vec::new()),
            contexts_made: AtomicU64::new(0),
            slowest_steps: Mutex::new(Vec::new()),
        }
    }

    /// The queue depth counter a request of `priority` counts in (BE: its
    /// model's queue `be_queue`).
    pub(crate) fn depth(&self, priority: crate::api::Priority, be_queue: usize) -> &AtomicUsize {
        match priority {
            crate::api::Priority::Rt => &self.rt_depth,
            crate::api::Priority::Be => &self.be_depth[be_queue],
        }
    }

    /// Records one preemption's latency.
    pub(crate) fn record_preemption(&self, d: Duration, rerun: u64) {
        self.preemptions.fetch_add(1, Ordering::Relaxed);
        self.kernels_rerun.fetch_add(rerun, Ordering::Relaxed);
        let _ = self.preempt.lock().record((d.as_nanos() as u64).max(1));
    }

    /// Records how long one preemption took to raise its flags.
    pub(crate) fn record_raise(&self, d: Duration) {
        let _ = self.raise.lock().record((d.as_nanos() as u64).max(1));
    }

    /// Records one preemption's drain as the device timed it.
    pub(crate) fn record_drain_device(&self, d: Duration) {
        let _ = self
            .drain_device
            .lock()
            .record((d.as_nanos() as u64).max(1));
    }

    /// Records one preemption's longest time between two looks at its
    /// lanes.
    pub(crate) fn record_poll_gap(&self, d: Duration) {
        let _ = self.poll_gap.lock().record((d.as_nanos() as u64).max(1));
    }

    /// Whether a preemption of `d` is among the slowest so far (then
    /// [`Stats::record_slow_drain`] keeps it).
    pub(crate) fn is_slow_drain(&self, d: Duration) -> bool {
        among_slowest(
            &self.slowest.lock(),
            SLOWEST_DRAINS,
            d.as_secs_f64() * 1e6,
            |s| s.us,
        )
    }

    /// Keeps `drain` if it is among the slowest so far.
    pub(crate) fn record_slow_drain(&self, drain: SlowDrain) {
        keep_slowest(&mut self.slowest.lock(), SLOWEST_DRAINS, drain, |s| s.us);
    }

    /// Whether a scheduling pass of `d` is among the slowest so far (then
    /// [`Stats::record_slow_step`] keeps it).
    pub(crate) fn is_slow_step(&self, d: Duration) -> bool {
        among_slowest(
            &self.slowest_steps.lock(),
            SLOWEST_STEPS,
            d.as_secs_f64() * 1e6,
            |s| s.us,
        )
    }

    /// Keeps `step` if it is among the slowest passes so far.
    pub(crate) fn record_slow_step(&self, step: SlowStep) {
        keep_slowest(&mut self.slowest_steps.lock(), SLOWEST_STEPS, step, |s| {
            s.us
        });
    }

    /// Records one padding selection's latency.
    pub(crate) fn record_padding(&self, d: Duration) {
        let _ = self.padding.lock().record((d.as_nanos() as u64).max(1));
    }

    /// A snapshot.
    pub fn snapshot(&self) -> SchedStats {
        let wall = self.start.elapsed().as_nanos().max(1) as f64;
        SchedStats {
            device: self.device.clone(),
            mode: self.mode.clone(),
            rt_queue_depth: self.rt_depth.load(Ordering::Relaxed),
            be_queue_depth: self
                .be_depth
                .iter()
                .map(|d| d.load(Ordering::Relaxed))
                .sum(),
            completed: [
                self.completed[0].load(Ordering::Relaxed),
                self.completed[1].load(Ordering::Relaxed),
            ],
            preemptions: self.preemptions.load(Ordering::Relaxed),
            kernels_rerun: self.kernels_rerun.load(Ordering::Relaxed),
            preempt_latency_us: summary(&self.preempt.lock()),
            preempt_raise_us: summary(&self.raise.lock()),
            drain_device_us: summary(&self.drain_device.lock()),
            drain_poll_gap_us: summary(&self.poll_gap.lock()),
            padding_latency_us: summary(&self.padding.lock()),
            padded_kernels: self.padded_kernels.load(Ordering::Relaxed),
            pad_launches: self.pad_launches.load(Ordering::Relaxed),
            busy_fraction: (self.busy_ns.load(Ordering::Relaxed) as f64 / wall).min(1.0),
            slowest_drains: self.slowest.lock().clone(),
            contexts_made: self.contexts_made.load(Ordering::Relaxed),
            slowest_steps: self.slowest_steps.lock().clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slowest_drains_are_kept_slowest_first() {
        let stats = Stats::new("cpu".into(), "reset".into(), 1);
        let us = |v: u64| Duration::from_micros(v);
        for v in (1..=40).map(|i| (i * 37) % 41) {
            if stats.is_slow_drain(us(v)) {
                stats.record_slow_drain(SlowDrain {
                    us: v as f64,
                    ..SlowDrain::default()
                });
            }
        }
        let kept: Vec<f64> = stats
            .snapshot()
            .slowest_drains
            .iter()
            .map(|s| s.us)
            .collect();
        let want: Vec<f64> = (25..=40).rev().map(|v| v as f64).collect();
        assert_eq!(kept, want);
        assert!(!stats.is_slow_drain(us(25)));
        assert!(stats.is_slow_drain(us(26)));
    }

    #[test]
    fn the_slowest_steps_are_kept_slowest_first() {
        let stats = Stats::new("cpu".into(), "reef".into(), 1);
        let us = |v: u64| Duration::from_micros(v);
        for v in [5u64, 90, 12, 40, 7, 300, 41, 2, 66, 18, 1, 250] {
            if stats.is_slow_step(us(v)) {
                stats.record_slow_step(SlowStep {
                    us: v as f64,
                    ..SlowStep::default()
                });
            }
        }
        let kept: Vec<f64> = stats
            .snapshot()
            .slowest_steps
            .iter()
            .map(|s| s.us)
            .collect();
        assert_eq!(kept, vec![300.0, 250.0, 90.0, 66.0, 41.0, 40.0, 18.0, 12.0]);
        assert!(!stats.is_slow_step(us(12)));
        assert!(stats.is_slow_step(us(13)));
    }
}
