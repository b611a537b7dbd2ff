//! The benchmarks' flags for `reef` mode's BE lanes beside RT work.

use reef_sched::SchedConfig;
use std::time::Duration;

/// `reef` mode: BE lanes that keep running beside RT work.
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct BesideArgs {
    /// `reef` mode: BE lanes that keep running beside RT work, on
    /// low-priority streams (0: BE pauses while RT work runs, padding is
    /// planned per RT kernel).
    #[arg(long, default_value_t = 0)]
    pub beside_lanes: usize,
    /// `reef` mode with --beside-lanes: the longest estimated BE tile (us)
    /// allowed to run beside RT work (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub beside_max_tile_us: u64,
}

impl BesideArgs {
    /// `cfg` with these settings.
    pub fn apply(&self, cfg: SchedConfig) -> SchedConfig {
        SchedConfig {
            beside_lanes: self.beside_lanes,
            beside_max_tile: (self.beside_max_tile_us > 0)
                .then(|| Duration::from_micros(self.beside_max_tile_us)),
            ..cfg
        }
    }
}
