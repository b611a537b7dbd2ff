//! Scheduler counters and latency histograms, shared between the scheduling
//! thread (writer) and front ends (readers of snapshots).

use crate::api::{LatencySummary, SchedStats, SlowDrain, SLOWEST_DRAINS};
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
        let slowest = self.slowest.lock();
        slowest.len() < SLOWEST_DRAINS
            || slowest.last().is_some_and(|s| d.as_secs_f64() * 1e6 > s.us)
    }

    /// Keeps `drain` if it is among the slowest so far.
    pub(crate) fn record_slow_drain(&self, drain: SlowDrain) {
        let mut slowest = self.slowest.lock();
        let at = slowest.partition_point(|s| s.us >= drain.us);
        if at < SLOWEST_DRAINS {
            slowest.insert(at, drain);
            slowest.truncate(SLOWEST_DRAINS);
        }
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
}
