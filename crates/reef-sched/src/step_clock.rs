//! Times each pass of the scheduling loop in phases, so that a pass that
//! held the scheduling thread (and with it every RT launch) says where the
//! time went: the slowest passes are kept in the scheduler's statistics
//! ([`SchedStats::slowest_steps`](crate::api::SchedStats::slowest_steps))
//! and a pass over [`STALL`] is logged as a warning.

use crate::api::SlowStep;
use crate::stats::Stats;
use std::time::{Duration, Instant};

/// A pass of the scheduling loop this long is logged as a stall.
pub(crate) const STALL: Duration = Duration::from_millis(10);

/// The clock of the current pass: its start and the end of each phase.
pub(crate) struct StepClock {
    start: Instant,
    rt_queued: usize,
    rt_running: usize,
    marks: Vec<(&'static str, Instant)>,
}

impl StepClock {
    pub(crate) fn new() -> StepClock {
        StepClock {
            start: Instant::now(),
            rt_queued: 0,
            rt_running: 0,
            marks: Vec::with_capacity(16),
        }
    }

    /// Starts a pass with `rt_queued` RT tasks waiting and `rt_running` on
    /// the RT lane.
    pub(crate) fn begin(&mut self, rt_queued: usize, rt_running: usize) {
        self.start = Instant::now();
        self.rt_queued = rt_queued;
        self.rt_running = rt_running;
        self.marks.clear();
    }

    /// Ends the phase `phase` now.
    pub(crate) fn mark(&mut self, phase: &'static str) {
        self.marks.push((phase, Instant::now()));
    }

    /// Ends the pass: keeps it in `stats` if it is among the slowest, and
    /// logs it if it took [`STALL`] or more.
    pub(crate) fn finish(&mut self, stats: &Stats) {
        let took = self.start.elapsed();
        if !stats.is_slow_step(took) {
            return;
        }
        let step = self.describe(took, stats.start);
        if took >= STALL {
            let slowest = step
                .phases
                .iter()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(p, us)| format!("{p} {:.1} ms", us / 1000.0))
                .unwrap_or_default();
            tracing::warn!(
                ms = took.as_secs_f64() * 1000.0,
                rt_queued = self.rt_queued,
                rt_running = self.rt_running,
                slowest,
                "the scheduling thread was held (one pass of its loop)"
            );
        }
        stats.record_slow_step(step);
    }

    /// The pass as a [`SlowStep`]; repeated phases (one per task started,
    /// say) are summed in the order they first ended.
    fn describe(&self, took: Duration, since: Instant) -> SlowStep {
        let mut phases: Vec<(String, f64)> = Vec::new();
        let mut last = self.start;
        for &(phase, at) in &self.marks {
            let us = at.saturating_duration_since(last).as_secs_f64() * 1e6;
            last = at;
            match phases.iter_mut().find(|(p, _)| p == phase) {
                Some((_, t)) => *t += us,
                None => phases.push((phase.to_string(), us)),
            }
        }
        let marked = last.saturating_duration_since(self.start);
        let rest_us = took.saturating_sub(marked).as_secs_f64() * 1e6;
        if rest_us > 0.0 {
            phases.push(("rest".to_string(), rest_us));
        }
        phases.retain(|(_, us)| *us >= 1.0);
        SlowStep {
            us: took.as_secs_f64() * 1e6,
            at_ms: self.start.saturating_duration_since(since).as_secs_f64() * 1000.0,
            rt_queued: self.rt_queued,
            rt_running: self.rt_running,
            phases,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_split_into_its_phases() {
        let stats = Stats::new("cpu".into(), "reef".into(), 1);
        let mut clock = StepClock::new();
        clock.begin(2, 1);
        std::thread::sleep(Duration::from_millis(3));
        clock.mark("launch_rt");
        std::thread::sleep(Duration::from_millis(1));
        clock.mark("poll_rt");
        std::thread::sleep(Duration::from_millis(2));
        clock.mark("launch_rt");
        clock.finish(&stats);
        let steps = stats.snapshot().slowest_steps;
        assert_eq!(steps.len(), 1);
        let s = &steps[0];
        assert_eq!((s.rt_queued, s.rt_running), (2, 1));
        let names: Vec<&str> = s.phases.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(&names[..2], &["launch_rt", "poll_rt"]);
        // Repeated phases are summed: 3 + 2 ms of sleeps at least.
        assert!(s.phases[0].1 >= 5000.0, "{:?}", s.phases);
        assert!(s.phases[1].1 >= 1000.0, "{:?}", s.phases);
        let sum: f64 = s.phases.iter().map(|(_, us)| us).sum();
        assert!((sum - s.us).abs() < 5.0, "{sum} vs {}", s.us);
    }
}
