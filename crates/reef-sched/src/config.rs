//! Scheduler configuration.

use crate::api::Mode;
use std::time::Duration;

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
    /// `reef` mode's padding: how many BE lanes keep running beside RT work,
    /// their kernels on low-priority streams, so that the GPU's block
    /// scheduler gives them only the room the RT kernels leave (0: BE lanes
    /// stay paused while RT work runs, and padding is planned per RT kernel,
    /// see [`crate::padding`]).
    pub beside_lanes: usize,
    /// With `beside_lanes`: a BE kernel whose estimated tile takes longer than
    /// this waits for the RT work to end instead of running beside it (an RT
    /// block may have to wait for one BE tile). None: no limit.
    pub beside_max_tile: Option<Duration>,
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
            beside_lanes: 0,
            beside_max_tile: None,
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
        if self.beside_lanes > 32 {
            return Err(format!(
                "beside_lanes must be in 0..=32, got {}",
                self.beside_lanes
            ));
        }
        if self.max_batch == 0 {
            return Err("max_batch must be at least 1".into());
        }
        Ok(())
    }
}
