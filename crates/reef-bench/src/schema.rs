//! The result schema: what `reef bench` and `scripts/torch_disb.py` write as JSON.
//! Both must stay equal; a change here is a change there.
//!
//! ```text
//! WorkloadResult {
//!   schema: "reef-disb-result/1", generator: str, device: str|null, started_unix_s: f64,
//!   workload: Workload (the workload file as run),
//!   modes: [ModeResult], comparison: [Comparison],
//!   device_comparison?: [DeviceComparison] (only when a mode ran on several devices),
//!   ceiling?: ExclusiveCeiling (only with both the "rt-alone" and "be-alone" baselines) }
//! ModeResult {
//!   mode: str ("reef", "reset", ..., "rt-alone", "torch-seq-graph", ...),
//!   scheduler: str|null (the scheduler's own mode name), device: str|null,
//!   duration_s, warmup_s, measured_s: f64 (measured = duration - warmup),
//!   submitted: u64, completed_ok: u64, errors: {kind: u64},
//!   rt: LatencyFigures, be: LatencyFigures,
//!   rt_service?: LatencyFigures (RT latency inside the service, from the records' service_ms),
//!   rt_queued?: LatencyFigures (RT arrival to its start on the device, from the records' queued_ms),
//!   rt_input?: LatencyFigures (RT input writes, the end of rt_queued, from the records' input_ms),
//!   rt_first_kernel?: LatencyFigures (RT first kernels on the device, from first_kernel_ms),
//!   rt_client?, rt_request?, rt_response?: LatencyFigures (RT time outside a remote server, from
//!     the records' client_ms, request_ms and response_ms), rt_readback?: LatencyFigures (the
//!     part of rt_response after the reply arrived, from readback_ms),
//!   rt_throughput_rps, be_throughput_rps, total_throughput_rps: f64,
//!   preemptions: u64, kernels_rerun: u64   (summed over the requests' own stats),
//!   sched: SchedFigures|null, sm_clock?: ClockFigures (the GPU's SM clock over the measured
//!     window, where sampled), dispatch_lag_us: LagFigures,
//!   tasks: [TaskResult], records?: [RequestRecord] (only when asked for),
//!   devices?: [DeviceResult] (only when the service had several devices) }
//! DeviceResult { device: usize (index, as the router numbers devices), name: str|null,
//!   completed_ok: u64, rt: LatencyFigures, be: LatencyFigures,
//!   rt_throughput_rps, be_throughput_rps, total_throughput_rps: f64,
//!   sched: SchedFigures|null (that device's scheduler) }
//! LatencyFigures { count: u64, mean_ms, p50_ms, p95_ms, p99_ms, max_ms: f64 (0 when count = 0),
//!   hdr_p50_ms, hdr_p95_ms, hdr_p99_ms, hdr_max_ms: f64|null (HdrHistogram, 3 digits) }
//! TaskResult { task: usize, name: str, model: str, priority: "rt"|"be", load: str,
//!   batch_size: usize, submitted: u64, completed_ok: u64, errors: {kind: u64},
//!   throughput_rps: f64, latency: LatencyFigures }
//! SchedFigures { preemptions: u64, kernels_rerun: u64, completed_rt: u64, completed_be: u64,
//!   preempt_latency_us: Summary, padding_latency_us: Summary, busy_fraction: f64,
//!   padded_kernels: u64, pad_launches: u64 (0 when absent), contexts_made: u64 (0 when absent),
//!   slowest_steps: [SlowStepFigures] (empty when absent) }
//! SlowStepFigures { us: f64 (one pass of the scheduling loop), at_ms: f64 (since the scheduler
//!   started), rt_queued: usize, rt_running: usize, phases: [[str, f64 (us)]] }
//! Summary { count: u64, mean, p50, p99, max: f64 }
//! LagFigures { count: u64, p50_us, p99_us, max_us: f64 }
//! ClockFigures { samples: u64, mean_mhz, p10_mhz, p50_mhz, min_mhz, max_mhz: f64 }
//! RequestRecord { task: usize, priority: "rt"|"be", arrival_ms: f64 (scheduled, from the start),
//!   latency_ms: f64 (from the scheduled arrival to the answer), ok: bool, error: str|null,
//!   warmup: bool, queued_ms: f64|null, input_ms?: f64 (writing the inputs, the end of
//!     queued_ms), output_ms?: f64 (reading the outputs, the end of service_ms),
//!   first_kernel_ms?: f64 (an RT task's first kernel on the device, from the device reaching
//!     the task on an idle RT lane),
//!   preemptions: u32, kernels_rerun: u32,
//!   dispatch_lag_us: f64|null (open loop: submit time minus scheduled arrival),
//!   service_ms?: f64 (the service's own account: the scheduler's in process, the server's
//!     through gRPC),
//!   client_ms?, request_ms?, response_ms?: f64 (through a server on the same host: the
//!     scheduled arrival to the call, the call to the handler's start, the handler's answer to
//!     the runner; with service_ms they add up to latency_ms), readback_ms?: f64 (the end of
//!     response_ms: the reply's arrival to the runner, the client reading the outputs),
//!   device?: usize (the device that answered; only on several devices) }
//! Comparison { mode, baseline: str, rt_mean_ms, rt_p99_ms: f64,
//!   baseline_rt_mean_ms, baseline_rt_p99_ms: f64|null,
//!   rt_mean_increase_pct, rt_p99_increase_pct: f64|null,
//!   rt_mean_increase_ci95_pct: f64|null (95% half-width of rt_mean_increase_pct, points; paired
//!     by task and scheduled arrival where requests pair up), rt_mean_pairs: u64,
//!   be_throughput_rps, total_throughput_rps: f64 }
//! ExclusiveCeiling { rt_occupancy: f64 (the fraction of rt-alone's window its RT work held
//!   the device), rt_rps, be_alone_rps: f64 (the baselines' throughputs),
//!   total_rps: f64 (rt_rps + be_alone_rps * (1 - rt_occupancy)) }
//! DeviceComparison { device: usize, ...Comparison (this mode's figures on that device against
//!   the baseline's figures on the same device) }
//! ```
//! Definitions: percentiles are nearest-rank over the measured requests (sorted
//! latencies `v`, `p(q) = v[ceil(q * n) - 1]`); latency figures cover requests
//! that arrived after the warm-up and succeeded, including those answered after
//! the end (drained); throughputs count successful answers whose completion
//! (arrival + latency) falls in `[warmup_s, duration_s]`, divided by `measured_s`.
//! Per-device figures apply the same definitions to the records a device
//! answered (failed requests have no device), so device counts add up to the
//! mode's and device throughputs to the mode's throughputs. The optional
//! fields are absent from single-device results (and from `torch_disb.py`'s).
//! Error kinds: `unknown_model`, `invalid_input`, `overloaded`, `cancelled`,
//! `not_ready`, `internal`, `dropped` (ticket closed unanswered), `drain_timeout`.

use crate::workload::Workload;
use reef_sched::Priority;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Identifier of this schema version.
pub const SCHEMA: &str = "reef-disb-result/1";

/// Everything one benchmark invocation measured: every mode of one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadResult {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Who wrote it ("reef-bench 0.1.0", "torch_disb.py ...").
    pub generator: String,
    /// Device description.
    pub device: Option<String>,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// The workload as run.
    pub workload: Workload,
    /// One entry per mode, "rt-alone" included when measured.
    pub modes: Vec<ModeResult>,
    /// RT latency of each mode against the "rt-alone" baseline.
    pub comparison: Vec<Comparison>,
    /// Per device of every multi-device mode: its RT latency against the
    /// "rt-alone" baseline's on the same device (empty on one device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_comparison: Vec<DeviceComparison>,
    /// The most a mode that runs no BE work beside RT work can reach, from
    /// the "rt-alone" and "be-alone" baselines (see [`crate::ceiling`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<ExclusiveCeiling>,
}

/// The throughput ceiling of exclusive RT (see [`crate::ceiling`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExclusiveCeiling {
    /// Fraction of rt-alone's measured window in which its RT work held the
    /// device (from the first kernel's launch to the outputs' read).
    pub rt_occupancy: f64,
    /// rt-alone's RT throughput, req/s.
    pub rt_rps: f64,
    /// be-alone's BE throughput, req/s.
    pub be_alone_rps: f64,
    /// `rt_rps + be_alone_rps * (1 - rt_occupancy)`, req/s.
    pub total_rps: f64,
}

/// Figures of one mode (one run of the workload).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModeResult {
    /// Label: a scheduler mode, "rt-alone", or a PyTorch mode.
    pub mode: String,
    /// The scheduler's own mode name (from its stats).
    pub scheduler: Option<String>,
    /// Device description.
    pub device: Option<String>,
    /// Run length.
    pub duration_s: f64,
    /// Warm-up excluded from the figures.
    pub warmup_s: f64,
    /// `duration_s - warmup_s`: the throughput window.
    pub measured_s: f64,
    /// Requests submitted (warm-up included).
    pub submitted: u64,
    /// Requests answered successfully (warm-up included).
    pub completed_ok: u64,
    /// Failed requests by kind (warm-up included).
    pub errors: BTreeMap<String, u64>,
    /// RT latency over all RT tasks.
    pub rt: LatencyFigures,
    /// BE latency over all BE tasks.
    pub be: LatencyFigures,
    /// RT latency inside the service, over the RT requests that reported it
    /// ([`RequestRecord::service_ms`]); absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_service: Option<LatencyFigures>,
    /// RT time from arrival to the start on the device (queue, preemption,
    /// inputs written), over the RT requests that reported it
    /// ([`RequestRecord::queued_ms`]); absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_queued: Option<LatencyFigures>,
    /// RT time writing the inputs to the device, the end of `rt_queued`
    /// ([`RequestRecord::input_ms`]); absent when no request reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_input: Option<LatencyFigures>,
    /// RT time from the scheduled arrival to the client's call, over the RT
    /// requests that crossed to a server ([`RequestRecord::client_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_client: Option<LatencyFigures>,
    /// RT tasks' first kernel on the device, from the device reaching the
    /// task on an idle RT lane to the kernel's end
    /// ([`RequestRecord::first_kernel_ms`]; beside rt-alone's, RT's wait
    /// for BE work); absent when the service timed none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_first_kernel: Option<LatencyFigures>,
    /// RT time from the client's call to the server handler's start
    /// ([`RequestRecord::request_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_request: Option<LatencyFigures>,
    /// RT time from the server handler's answer to the runner
    /// ([`RequestRecord::response_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_response: Option<LatencyFigures>,
    /// The end of `rt_response` after the reply reached the client: its
    /// output reads ([`RequestRecord::readback_ms`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rt_readback: Option<LatencyFigures>,
    /// RT answers per second in the window.
    pub rt_throughput_rps: f64,
    /// BE answers per second in the window.
    pub be_throughput_rps: f64,
    /// All answers per second in the window.
    pub total_throughput_rps: f64,
    /// Preemptions summed over the requests' own stats.
    pub preemptions: u64,
    /// Kernels re-run summed over the requests' own stats.
    pub kernels_rerun: u64,
    /// The scheduler's counters after the run (none for PyTorch).
    pub sched: Option<SchedFigures>,
    /// The GPU's SM clock over the measured window, where the run was given
    /// a clock source ([`crate::RunOptions::clock`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock: Option<crate::clock::ClockFigures>,
    /// How late open-loop requests were submitted after their scheduled arrival.
    pub dispatch_lag_us: LagFigures,
    /// Per task.
    pub tasks: Vec<TaskResult>,
    /// Every request (kept in memory; written only when asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<RequestRecord>,
    /// Per device, by index, when the service had more than one (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceResult>,
}

/// Figures of the requests one device answered (a multi-device run).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceResult {
    /// Device index, as the multi-device router numbers devices.
    pub device: usize,
    /// Device description.
    pub name: Option<String>,
    /// Requests this device answered successfully (warm-up included).
    pub completed_ok: u64,
    /// Latency of the measured RT requests it answered.
    pub rt: LatencyFigures,
    /// Latency of the measured BE requests it answered.
    pub be: LatencyFigures,
    /// Its RT answers per second in the window.
    pub rt_throughput_rps: f64,
    /// Its BE answers per second in the window.
    pub be_throughput_rps: f64,
    /// All its answers per second in the window.
    pub total_throughput_rps: f64,
    /// Its scheduler's counters after the run.
    pub sched: Option<SchedFigures>,
}

/// Latency figures of a set of requests, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyFigures {
    /// Requests measured.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median (nearest rank).
    pub p50_ms: f64,
    /// 95th percentile (nearest rank).
    pub p95_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Maximum.
    pub max_ms: f64,
    /// Median from the HdrHistogram.
    pub hdr_p50_ms: Option<f64>,
    /// 95th percentile from the HdrHistogram.
    pub hdr_p95_ms: Option<f64>,
    /// 99th percentile from the HdrHistogram.
    pub hdr_p99_ms: Option<f64>,
    /// Maximum from the HdrHistogram.
    pub hdr_max_ms: Option<f64>,
}

/// Figures of one task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    /// Index in the workload.
    pub task: usize,
    /// Label.
    pub name: String,
    /// Model.
    pub model: String,
    /// Priority.
    pub priority: Priority,
    /// Load type.
    pub load: String,
    /// Batch size.
    pub batch_size: usize,
    /// Requests submitted.
    pub submitted: u64,
    /// Requests answered successfully.
    pub completed_ok: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Answers per second in the window.
    pub throughput_rps: f64,
    /// Latency of the measured requests.
    pub latency: LatencyFigures,
}

/// The scheduler's own counters after a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SchedFigures {
    /// Preemptions performed.
    pub preemptions: u64,
    /// Kernels run again after a preemption.
    pub kernels_rerun: u64,
    /// RT tasks completed.
    pub completed_rt: u64,
    /// BE tasks completed.
    pub completed_be: u64,
    /// Preemption latency, microseconds.
    pub preempt_latency_us: Summary,
    /// Padding-selection latency, microseconds.
    pub padding_latency_us: Summary,
    /// Fraction of wall time the device was busy.
    pub busy_fraction: f64,
    /// RT kernels given planned padding (`reef` mode).
    #[serde(default)]
    pub padded_kernels: u64,
    /// BE kernels launched as padding: planned launches, or kernels
    /// launched beside RT work (`reef` mode).
    #[serde(default)]
    pub pad_launches: u64,
    /// Task contexts made while serving (the model's pool had none free).
    #[serde(default)]
    pub contexts_made: u64,
    /// The scheduling loop's slowest passes, slowest first.
    #[serde(default)]
    pub slowest_steps: Vec<SlowStepFigures>,
}

/// One of the scheduling loop's slowest passes (mirrors
/// `reef_sched::SlowStep`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowStepFigures {
    /// The pass, microseconds.
    pub us: f64,
    /// When it began, milliseconds since the scheduler started.
    pub at_ms: f64,
    /// RT tasks queued when it began.
    pub rt_queued: usize,
    /// RT tasks on the RT lane when it began.
    pub rt_running: usize,
    /// Its phases in order, microseconds each.
    pub phases: Vec<(String, f64)>,
}

impl SlowStepFigures {
    /// The phase that took longest, with its time (microseconds).
    pub fn longest_phase(&self) -> Option<(&str, f64)> {
        self.phases
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(p, us)| (p.as_str(), *us))
    }
}

/// A latency summary (mirrors `reef_sched::LatencySummary`, which is not deserializable).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

impl From<reef_sched::LatencySummary> for Summary {
    fn from(s: reef_sched::LatencySummary) -> Self {
        Summary {
            count: s.count,
            mean: s.mean,
            p50: s.p50,
            p99: s.p99,
            max: s.max,
        }
    }
}

impl From<&reef_sched::SchedStats> for SchedFigures {
    fn from(s: &reef_sched::SchedStats) -> Self {
        SchedFigures {
            preemptions: s.preemptions,
            kernels_rerun: s.kernels_rerun,
            completed_rt: s.completed[0],
            completed_be: s.completed[1],
            preempt_latency_us: s.preempt_latency_us.into(),
            padding_latency_us: s.padding_latency_us.into(),
            busy_fraction: s.busy_fraction,
            padded_kernels: s.padded_kernels,
            pad_launches: s.pad_launches,
            contexts_made: s.contexts_made,
            slowest_steps: s
                .slowest_steps
                .iter()
                .map(|t| SlowStepFigures {
                    us: t.us,
                    at_ms: t.at_ms,
                    rt_queued: t.rt_queued,
                    rt_running: t.rt_running,
                    phases: t.phases.clone(),
                })
                .collect(),
        }
    }
}

/// Load-generator accuracy: submit time minus scheduled arrival, microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagFigures {
    /// Open-loop requests.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Maximum.
    pub max_us: f64,
}

/// One request as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Task index.
    pub task: usize,
    /// Priority.
    pub priority: Priority,
    /// Scheduled arrival, ms from the start.
    pub arrival_ms: f64,
    /// Scheduled arrival to answer, ms.
    pub latency_ms: f64,
    /// Answered successfully.
    pub ok: bool,
    /// Error kind when not ok.
    pub error: Option<String>,
    /// Arrived during the warm-up.
    pub warmup: bool,
    /// Arrival to first kernel, as the scheduler reports it.
    pub queued_ms: Option<f64>,
    /// Writing the inputs to the device (the end of `queued_ms`), as the
    /// scheduler reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_ms: Option<f64>,
    /// Reading the outputs back (the end of the service's time), as the
    /// scheduler reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_ms: Option<f64>,
    /// The device's time from reaching the task to the end of its first
    /// kernel, where the scheduler timed it
    /// ([`reef_sched::TaskStats::first_kernel`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_kernel_ms: Option<f64>,
    /// Times this request was preempted.
    pub preemptions: u32,
    /// Kernels re-run for this request.
    pub kernels_rerun: u32,
    /// Open loop: submit time minus scheduled arrival, microseconds.
    pub dispatch_lag_us: Option<f64>,
    /// The service's own account of the request, ms: the scheduler's
    /// arrival-to-answer in process; through a reef server, the time inside
    /// the server (handler start to answer, its `reef_timing` response
    /// parameters). `latency_ms` minus this is the hand-off and, through a
    /// server, the client and the transport. `None` when not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ms: Option<f64>,
    /// Through a server on the same host: the scheduled arrival to the
    /// client's call (runner dispatch, client tasks, shared memory writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ms: Option<f64>,
    /// The client's call to the server handler's start: encoding, HTTP/2,
    /// the transport, the server's decoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_ms: Option<f64>,
    /// The handler's answer to the runner: encoding, the transport back,
    /// the client's decoding and hand-off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_ms: Option<f64>,
    /// The end of `response_ms`: the reply's arrival at the client to the
    /// runner (reading the outputs out of shared memory or the message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readback_ms: Option<f64>,
    /// The device that answered (multi-device runs; `None` otherwise and
    /// for failed requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<usize>,
}

/// RT latency of a mode against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Mode label.
    pub mode: String,
    /// Baseline label ("rt-alone").
    pub baseline: String,
    /// RT mean of this mode.
    pub rt_mean_ms: f64,
    /// RT p99 of this mode.
    pub rt_p99_ms: f64,
    /// RT mean of the baseline.
    pub baseline_rt_mean_ms: Option<f64>,
    /// RT p99 of the baseline.
    pub baseline_rt_p99_ms: Option<f64>,
    /// `100 * (mean / baseline mean - 1)`.
    pub rt_mean_increase_pct: Option<f64>,
    /// `100 * (p99 / baseline p99 - 1)`.
    pub rt_p99_increase_pct: Option<f64>,
    /// Half-width of the 95% confidence interval of
    /// `rt_mean_increase_pct`, in percentage points of the baseline mean
    /// ([`crate::spread`]): from the differences of requests paired with
    /// the baseline's (same task, same scheduled arrival) where they pair
    /// up, else from the two samples' variances.
    #[serde(default)]
    pub rt_mean_increase_ci95_pct: Option<f64>,
    /// RT requests paired with the baseline's for that interval (0 when
    /// it comes from unpaired samples or is absent).
    #[serde(default)]
    pub rt_mean_pairs: u64,
    /// BE throughput of this mode.
    pub be_throughput_rps: f64,
    /// Total throughput of this mode.
    pub total_throughput_rps: f64,
}

/// RT latency of a mode on one device against the baseline on the same device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceComparison {
    /// Device index.
    pub device: usize,
    /// The figures: this mode's on the device, the baseline's on the same
    /// device (increases `None` when the baseline measured no RT request there).
    #[serde(flatten)]
    pub figures: Comparison,
}
