//! reef's DISB benchmark (the workloads REEF was evaluated with): workload
//! files ([`workload`]), a load generator that drives any
//! [`reef_sched::Service`] ([`runner`]), the figures ([`figures`]) and the
//! throughput ceiling of exclusive RT ([`ceiling`]) in a JSON schema shared
//! with `scripts/torch_disb.py` ([`schema`]), Markdown and JSON reports
//! ([`report`]) and SVG plots ([`plot`]), with the confidence of each RT
//! mean increase ([`spread`]). [`sim`] holds a simulated service for tests
//! and dry runs; [`clock`] the GPU's SM clock over each mode.

pub mod arrivals;
pub mod ceiling;
pub mod clock;
mod direct;
pub mod error;
pub mod figures;
mod http_client;
pub mod inputs;
pub mod plot;
pub mod remote;
pub mod report;
pub mod runner;
pub mod schema;
pub mod sim;
pub mod spread;
#[cfg(test)]
mod test_support;
pub mod trace;
mod wire;
pub mod workload;

pub use ceiling::BE_ALONE;
pub use error::{BenchError, Result};
pub use figures::{
    compare, compare_devices, latency_figures, per_device, percentile_sorted, summarize,
};
pub use runner::{assemble, run_mode, run_workload, PinnedInputs, RunOptions, RT_ALONE};
pub use schema::{
    Comparison, DeviceComparison, DeviceResult, ExclusiveCeiling, LatencyFigures, ModeResult,
    RequestRecord, TaskResult, WorkloadResult, SCHEMA,
};
pub use workload::{Load, TaskSpec, Workload};
