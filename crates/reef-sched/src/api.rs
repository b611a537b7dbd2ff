//! The scheduler's public API: what the server, the benchmark and the CLI use.

use reef_model::{DType, Tensor};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Criticality of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Real-time: runs as if alone, preempts BE work.
    Rt,
    /// Best-effort: uses what RT work leaves.
    Be,
}

impl std::str::FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rt" | "realtime" | "real-time" => Ok(Priority::Rt),
            "be" | "besteffort" | "best-effort" => Ok(Priority::Be),
            _ => Err(format!("unknown priority '{s}' (expected 'rt' or 'be')")),
        }
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Priority::Rt => "rt",
            Priority::Be => "be",
        })
    }
}

/// Scheduling policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One task at a time, RT first, no preemption.
    Seq,
    /// Every queue on its own lane, all at once, no preemption.
    Stream,
    /// Preempt queued BE kernels, wait for running ones.
    Wait,
    /// Reset-based preemption.
    Reset,
    /// Reset-based preemption plus dynamic kernel padding.
    Reef,
}

impl Mode {
    /// Whether the mode preempts BE work and so feeds BE lanes a few
    /// kernels at a time (`wait`, `reset`, `reef`); the others launch whole
    /// BE tasks.
    pub fn preempts(self) -> bool {
        matches!(self, Mode::Wait | Mode::Reset | Mode::Reef)
    }

    /// Whether the mode raises device preemption flags (`reset`, `reef`).
    pub fn raises_flags(self) -> bool {
        matches!(self, Mode::Reset | Mode::Reef)
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "seq" => Mode::Seq,
            "stream" => Mode::Stream,
            "wait" => Mode::Wait,
            "reset" => Mode::Reset,
            "reef" => Mode::Reef,
            _ => {
                return Err(format!(
                    "unknown mode '{s}' (expected seq, stream, wait, reset or reef)"
                ))
            }
        })
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Seq => "seq",
            Mode::Stream => "stream",
            Mode::Wait => "wait",
            Mode::Reset => "reset",
            Mode::Reef => "reef",
        })
    }
}

/// One tensor a model takes or gives, as clients see it. `shape[0]` is the
/// batch dimension, reported as -1 (any batch up to the configured maximum).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TensorInfo {
    /// Name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape; -1 marks the variable batch dimension.
    pub shape: Vec<i64>,
}

/// What the scheduler knows of a loaded model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelInfo {
    /// Name requests use.
    pub name: String,
    /// Priority of requests that do not name one.
    pub default_priority: Priority,
    /// Inputs.
    pub inputs: Vec<TensorInfo>,
    /// Outputs.
    pub outputs: Vec<TensorInfo>,
    /// Ready to serve.
    pub ready: bool,
}

/// One input of a request: a tensor in host memory, or one already on a
/// device in a region another process shares (Triton's CUDA shared memory).
#[derive(Debug, Clone)]
pub enum Input {
    /// In host memory.
    Host(Tensor),
    /// In a shared device region.
    Shared(SharedInput),
}

/// A tensor in a shared device region: `dtype` and `shape`, its bytes at
/// `offset` of `region`.
#[derive(Debug, Clone)]
pub struct SharedInput {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// The region.
    pub region: Arc<dyn reef_exec::SharedRegion>,
    /// Offset of the tensor's first byte in the region.
    pub offset: usize,
}

impl SharedInput {
    /// The tensor's size in bytes.
    pub fn byte_len(&self) -> usize {
        reef_model::tensor::numel(&self.shape).saturating_mul(self.dtype.size())
    }
}

impl Input {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            Input::Host(t) => t.dtype(),
            Input::Shared(s) => s.dtype,
        }
    }

    /// Shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            Input::Host(t) => &t.shape,
            Input::Shared(s) => &s.shape,
        }
    }

    /// The tensor, where it is in host memory.
    pub fn host(&self) -> Option<&Tensor> {
        match self {
            Input::Host(t) => Some(t),
            Input::Shared(_) => None,
        }
    }
}

impl From<Tensor> for Input {
    fn from(t: Tensor) -> Self {
        Input::Host(t)
    }
}

/// An inference request.
#[derive(Debug, Clone)]
pub struct InferRequest {
    /// Model name.
    pub model: String,
    /// Inputs in the model's input order.
    pub inputs: Vec<Input>,
    /// Priority; `None` takes the model's default.
    pub priority: Option<Priority>,
    /// When the request arrived (latency is measured from here).
    pub arrival: Instant,
}

/// Timing and scheduling facts of one finished task.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TaskStats {
    /// Arrival to the task's start on the device: waiting in the queue,
    /// then writing the inputs (`input` of it). Its kernels launch next.
    pub queued: Duration,
    /// Writing the inputs to the device (the end of `queued`).
    pub input: Duration,
    /// Reading the outputs back (the end of `latency`).
    pub output: Duration,
    /// Arrival to result.
    pub latency: Duration,
    /// Times the task was preempted.
    pub preemptions: u32,
    /// Kernels run more than once because of preemption.
    pub kernels_rerun: u32,
    /// An RT task launched on an idle RT lane, where the backend has a lane
    /// timer (CUDA's timing events; the CPU backend's lane clock): the
    /// device's time from reaching the task to the end of its first kernel. Beside its value for the same model alone,
    /// it shows how long the RT work waited for BE blocks to leave the
    /// compute units (what a preemption costs RT). `None` otherwise.
    pub first_kernel: Option<Duration>,
    /// Index of the device that answered, as [`Service::device_stats`]
    /// numbers devices: 0 from a single [`crate::Scheduler`] (and from any
    /// service of one device); the device index from a
    /// [`crate::multi::MultiScheduler`], which sets it for the device whose
    /// ticket it forwards (after a failover, the device that answered).
    pub device: usize,
}

/// A finished inference.
#[derive(Debug, Clone)]
pub struct InferResponse {
    /// Outputs in the model's output order.
    pub outputs: Vec<Tensor>,
    /// Priority it ran at.
    pub priority: Priority,
    /// Timing.
    pub stats: TaskStats,
    /// Where the request was on the client's clock, when it crossed to a
    /// remote service (`None` from an in-process scheduler).
    pub remote: Option<RemoteTiming>,
}

/// A remote request's points of passage on the client's clock: the server
/// reports its handler's start and end, and the client maps them onto its
/// own [`Instant`]s (through the wall clock, so the figures hold where the
/// client and the server share a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteTiming {
    /// The client began the call (the request leaves for the transport).
    pub sent: Instant,
    /// The server's handler started (the transport delivered the request).
    pub handler_start: Instant,
    /// The server's handler had the answer ready for encoding.
    pub handler_end: Instant,
    /// The reply reached the client, before the client read its outputs
    /// (out of shared memory, or out of the message).
    pub replied: Instant,
}

/// Why a request failed.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum SchedError {
    /// No such model.
    #[error("unknown model '{0}'")]
    UnknownModel(String),
    /// The request does not fit the model (names what is wrong).
    #[error("{0}")]
    InvalidInput(String),
    /// Queue full: try again later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The task was cancelled (client gone or shutdown).
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The model is not ready (loading or unloaded).
    #[error("model '{0}' is not ready")]
    NotReady(String),
    /// Device or internal failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Receives the result of a submitted request. Dropping it cancels a BE task
/// that has not finished.
pub type Ticket = tokio::sync::oneshot::Receiver<Result<InferResponse, SchedError>>;

/// Counters and gauges a scheduler exposes for metrics (a snapshot).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SchedStats {
    /// Device description.
    pub device: String,
    /// Scheduling mode.
    pub mode: String,
    /// RT tasks waiting.
    pub rt_queue_depth: usize,
    /// BE tasks waiting, summed over BE queues.
    pub be_queue_depth: usize,
    /// Tasks finished, by priority (rt, be).
    pub completed: [u64; 2],
    /// Preemptions performed.
    pub preemptions: u64,
    /// Kernels run again after a preemption.
    pub kernels_rerun: u64,
    /// Preemption latency (RT task noticed by the scheduler to every BE lane
    /// idle, the drain alone), microseconds:
    /// count, p50, p99, max.
    pub preempt_latency_us: LatencySummary,
    /// The scheduler's own start of each of those preemptions: from the RT
    /// task noticed to the flags' raise handed to the driver (in `wait`
    /// mode, which raises no flag, to the lanes chosen), microseconds.
    /// The rest of `preempt_latency_us` is the drain and seeing it end.
    pub preempt_raise_us: LatencySummary,
    /// The same drains as the device timed them (from the flags' write on
    /// the device to the last flagged lane's end), microseconds; empty
    /// unless [`SchedConfig::time_drains`](crate::SchedConfig::time_drains)
    /// is on and the device has timers. What `preempt_latency_us` adds to
    /// it is the host's part: the flag write's submission and seeing the
    /// lanes idle. (With the CUDA told word on, a lane can count as drained
    /// before its stream reaches the timer's stop, so a drain's device time
    /// may exceed its recorded latency by that margin.)
    pub drain_device_us: LatencySummary,
    /// Per preemption, the longest time between two looks at its draining
    /// lanes (the first from the raise), microseconds. Drain first, the
    /// scheduler looks in a tight loop, so a long gap is its thread kept
    /// from the core (or one look that took long); with RT work launched
    /// first it looks once per pass of its loop, between RT launches.
    pub drain_poll_gap_us: LatencySummary,
    /// Padding-selection latency, microseconds.
    pub padding_latency_us: LatencySummary,
    /// RT kernels launched with BE padding beside them (`reef` mode).
    pub padded_kernels: u64,
    /// BE padding launches.
    pub pad_launches: u64,
    /// Fraction of wall time since start the device had a task running.
    pub busy_fraction: f64,
    /// The slowest preemptions so far (at most [`SLOWEST_DRAINS`]),
    /// slowest first, each with what its flagged lanes had in flight: which
    /// kernels set the tail of `preempt_latency_us`.
    pub slowest_drains: Vec<SlowDrain>,
    /// Task contexts (a model's device memory for one task in flight) made
    /// while serving because the model's pool had none free: each one
    /// allocates on the scheduling thread (RT) or the BE I/O thread.
    pub contexts_made: u64,
    /// The scheduling loop's slowest passes so far (at most
    /// [`SLOWEST_STEPS`]), slowest first, each split into its phases: where
    /// the thread that launches RT work was held (`stream`, `wait`,
    /// `reset` and `reef` modes; a `seq` pass runs a whole task).
    pub slowest_steps: Vec<SlowStep>,
}

/// How many of the scheduling loop's slowest passes
/// [`SchedStats::slowest_steps`] keeps.
pub const SLOWEST_STEPS: usize = 8;

/// One of the scheduling loop's slowest passes ([`SchedStats::slowest_steps`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SlowStep {
    /// The pass, microseconds.
    pub us: f64,
    /// When it began, milliseconds since the scheduler started.
    pub at_ms: f64,
    /// RT tasks queued and running when it began.
    pub rt_queued: usize,
    /// RT tasks on the RT lane when it began.
    pub rt_running: usize,
    /// Its phases in order, each with its time in microseconds (phases
    /// that took under a microsecond are left out).
    pub phases: Vec<(String, f64)>,
}

/// How many of the slowest preemptions [`SchedStats::slowest_drains`]
/// keeps.
pub const SLOWEST_DRAINS: usize = 16;

/// One of the slowest preemptions ([`SchedStats::slowest_drains`]).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SlowDrain {
    /// Its latency (as in [`SchedStats::preempt_latency_us`]),
    /// microseconds.
    pub us: f64,
    /// Its raise (as in [`SchedStats::preempt_raise_us`]), microseconds.
    pub raise_us: f64,
    /// How many times the scheduler looked at the flagged lanes.
    pub polls: u32,
    /// The longest time between two of those looks (the first counted from
    /// the raise), microseconds ([`SchedStats::drain_poll_gap_us`]).
    pub max_poll_gap_us: f64,
    /// What each flagged lane had in flight when the flags went up.
    pub lanes: Vec<DrainedWork>,
}

/// A flagged lane's work at a preemption.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DrainedWork {
    /// The BE task's model.
    pub model: String,
    /// The task's oldest kernel that may not have finished (its index in
    /// the model's plan).
    pub kernel: usize,
    /// That kernel's name (the graph nodes it came from).
    pub name: String,
    /// That kernel's op (`KernelOp::kind`).
    pub op: String,
    /// Launches the lane had in flight.
    pub in_flight: u64,
}

/// Statistics of one device of a [`Service`] (one entry per device; a
/// single-device service has one, index 0).
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceStats {
    /// Device index (0-based, as placement and routing number devices).
    pub index: usize,
    /// Device description.
    pub device: String,
    /// In rotation: new requests may be routed to it.
    pub healthy: bool,
    /// The device scheduler's own counters and gauges.
    pub stats: SchedStats,
}

/// Summary of a latency histogram.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LatencySummary {
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

/// Builds a model's graph for a given batch size (zoo builder or ONNX re-import).
pub type GraphSource =
    std::sync::Arc<dyn Fn(usize) -> Result<reef_model::Graph, String> + Send + Sync>;

/// What a front end (server, benchmark, CLI) needs from a scheduler.
pub trait Service: Send + Sync {
    /// Models served, with their I/O.
    fn models(&self) -> Vec<ModelInfo>;
    /// Queues a request. Fails at once (unknown model, bad input, queue full);
    /// otherwise the ticket yields the result.
    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError>;
    /// Loads (or reloads) a model. `source` builds its graph for a batch size
    /// (the scheduler compiles one plan per batch size it sees).
    fn load_model(
        &self,
        name: &str,
        source: GraphSource,
        default_priority: Priority,
    ) -> Result<(), SchedError>;
    /// Unloads a model; queued requests for it are answered with NotReady.
    fn unload_model(&self, name: &str) -> Result<(), SchedError>;
    /// A snapshot of counters and histograms.
    fn stats(&self) -> SchedStats;
    /// A snapshot per device, by index. The default describes a service of
    /// one device, always healthy, with [`Service::stats`] as its statistics.
    fn device_stats(&self) -> Vec<DeviceStats> {
        let stats = self.stats();
        vec![DeviceStats {
            index: 0,
            device: stats.device.clone(),
            healthy: true,
            stats,
        }]
    }
    /// Stops: finishes RT tasks, cancels BE tasks, answers everything queued.
    fn shutdown(&self);
    /// Whether the service takes requests: false while it is still starting
    /// ([`crate::starting::Starting`]); a started scheduler always does.
    fn ready(&self) -> bool {
        true
    }
    /// Pinned host buffers that front ends decode input tensors into, so
    /// that their upload is a direct copy ([`reef_exec::host_pool`]);
    /// `None` when the service has none (the default).
    fn host_pool(&self) -> Option<Arc<reef_exec::host_pool::HostPool>> {
        None
    }
    /// Maps `byte_size` bytes of device memory that another process
    /// exported as the CUDA IPC handle `raw_handle` on device `device` (as
    /// [`Service::device_stats`] numbers devices), for requests to name as
    /// inputs ([`Input::Shared`]) and outputs. The default has no device to
    /// map it on.
    fn open_shared(
        &self,
        device: usize,
        raw_handle: &[u8],
        byte_size: usize,
    ) -> Result<Arc<dyn reef_exec::SharedRegion>, SchedError> {
        let _ = (device, raw_handle, byte_size);
        Err(SchedError::InvalidInput(
            "this service cannot map CUDA shared memory".into(),
        ))
    }
}
