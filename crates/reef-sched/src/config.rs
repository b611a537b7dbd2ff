//! Scheduler configuration.

use crate::api::Mode;

/// How a scheduler behaves; every limit is configurable.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SchedConfig {
    /// Scheduling policy.
    pub mode: Mode,
    /// BE kernels in flight per BE lane (REEF keeps this at 2 so that little
    /// is buffered on the device when a preemption comes).
    pub be_depth: usize,
    /// Number of BE queues (each with its own low-priority lane); BE models
    /// are spread over them.
    pub be_queues: usize,
    /// Most RT requests waiting before new ones are refused.
    pub rt_capacity: usize,
    /// Most BE requests waiting per BE queue before new ones are refused.
    pub be_capacity: usize,
    /// Largest batch a request may carry.
    pub max_batch: usize,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            mode: Mode::Reset,
            be_depth: 2,
            be_queues: 4,
            rt_capacity: 1024,
            be_capacity: 256,
            max_batch: 64,
        }
    }
}

impl SchedConfig {
    /// Checks the limits; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.be_depth == 0 {
            return Err("be_depth must be at least 1".into());
        }
        if self.be_queues == 0 || self.be_queues > 32 {
            return Err(format!(
                "be_queues must be in 1..=32, got {}",
                self.be_queues
            ));
        }
        if self.rt_capacity == 0 || self.be_capacity == 0 {
            return Err("queue capacities must be at least 1".into());
        }
        if self.max_batch == 0 {
            return Err("max_batch must be at least 1".into());
        }
        Ok(())
    }
}
