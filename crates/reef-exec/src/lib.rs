//! reef's executors. A [`Device`] loads a [`Plan`] into a [`ModelHandle`]
//! (weights resident), makes [`Context`]s (one task's activation arena, input
//! and output buffers, progress record) and [`Lane`]s (a stream of kernel
//! launches with a priority and a preemption flag).
//!
//! Semantics every backend keeps (the scheduler relies on them):
//! - kernels enqueued on one lane run in order; lanes run concurrently;
//! - a kernel enqueued as [`Variant::Be`] checks its lane's preemption flag at
//!   entry and between tiles and exits early when it is set, leaving the task's
//!   progress at its index; a BE kernel that completes sets the context's
//!   progress to its index + 1 (so progress is exact: every kernel below it
//!   completed, none at or above it did);
//! - [`Variant::Rt`] kernels never check the flag;
//! - RT and BE variants of a kernel compute bit-identical results;
//! - a BE kernel that a padding launch or a preemption left part-done is
//!   finished by the next launch of the same kernel on the same context when
//!   no [`Lane::begin`] came in between ([`Lane::resume`] keeps that state),
//!   so padding work and work done before a preemption are not lost
//!   (backends that cannot keep partial tiles re-run the whole kernel, which
//!   is correct because kernels are idempotent).
//!
//! Dynamic kernel padding: before enqueueing RT kernel `i`, the scheduler
//! asks the RT lane for a [`PadSlot`] ([`Lane::pad_slot`]); a BE lane then
//! enqueues BE kernels with [`Lane::enqueue_pad`]. A padding launch starts
//! with RT kernel `i`, runs tiles only while RT kernel `i` has not completed
//! (and its budget lasts, the flag is down, and the previous kernel of its
//! own task completed), and never completes the RT task's work for it: the
//! RT kernel's latency bound is one BE tile.

pub mod cpu;

pub mod error;
pub mod host_pool;
pub mod run;
pub mod shared;

pub use error::{ExecError, Result};
pub use reef_plan::Plan;
pub use shared::SharedRegion;

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

/// Launch shape of one kernel of a context's plan, for padding decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelShape {
    /// Independent tiles (work items) of the kernel.
    pub tiles: u32,
    /// Blocks of the RT variant's launch (one per tile on the GPU).
    pub rt_blocks: u32,
    /// Blocks of this kernel that fit on one compute unit at once.
    pub per_unit: u32,
}

impl KernelShape {
    /// Compute units the RT variant occupies in its first wave (of
    /// `units`). GPUs spread a launch's blocks breadth first (one per SM
    /// before any SM gets a second), so a launch of `b` blocks touches
    /// `min(b, units)` units however many would fit on one.
    pub fn units_used(&self, units: usize) -> usize {
        (self.rt_blocks as usize).min(units)
    }
}

/// The start of one RT kernel on an RT lane, which padding launches on other
/// lanes of the same device follow (see [`Lane::pad_slot`]). Backend-specific.
pub struct PadSlot {
    /// The backend's marker (an event and a completion counter on CUDA).
    pub inner: Box<dyn Any + Send>,
    /// Index of the RT kernel in its plan.
    pub index: usize,
}

/// Which compiled variant of a kernel to launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Real-time: fastest, never preempted.
    Rt,
    /// Best-effort: preemptible at tile granularity, resumable.
    Be,
}

/// Priority of a lane (a CUDA stream priority, or the CPU worker's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Highest priority (RT work).
    High,
    /// Lowest priority (BE work).
    Low,
}

/// The kind of device behind a [`Device`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// The CPU backend.
    Cpu,
    /// An NVIDIA GPU through CUDA.
    Cuda,
}

/// What a lane is made for, beyond its priority ([`Device::lane_with`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneOptions {
    /// RT work waits for this BE lane's drains (the scheduler's drain-first
    /// order): the backend may spend some of the lane's throughput to
    /// shorten them. The CUDA backend then gives the lane a told word and
    /// raises its flag through the preemption relay, run once per raise
    /// (both cost BE throughput, about 2% each on the H100); the CPU
    /// backend ignores it.
    pub quick_drain: bool,
}

/// A compute device: loads models and makes lanes.
pub trait Device: Send + Sync {
    /// Human-readable description (e.g. "NVIDIA H100 80GB HBM3, 132 SMs").
    fn name(&self) -> String;
    /// Backend kind.
    fn kind(&self) -> DeviceKind;
    /// Number of parallel compute units (SMs, or CPU worker threads).
    fn compute_units(&self) -> usize;
    /// Uploads the plan's weights and prepares its kernels.
    fn load(&self, plan: Arc<Plan>) -> Result<Arc<dyn ModelHandle>>;
    /// A new lane with its own preemption flag.
    fn lane(&self, priority: Priority) -> Result<Box<dyn Lane>>;
    /// A new lane made for `options`; the default ignores them
    /// ([`Device::lane`]).
    fn lane_with(&self, priority: Priority, options: LaneOptions) -> Result<Box<dyn Lane>> {
        let _ = options;
        self.lane(priority)
    }
    /// Raises the preemption flags of several lanes of this device at once
    /// (what an RT arrival does to every busy BE lane), in the backend's
    /// fastest way; the default raises them one by one with
    /// [`Lane::set_preempt`]. Clearing stays per lane.
    fn raise_preempt(&self, lanes: &mut [&mut dyn Lane]) -> Result<()> {
        for l in lanes.iter_mut() {
            l.set_preempt(true)?;
        }
        Ok(())
    }
    /// A pool of at most `max_bytes` of pinned host buffers that this
    /// device uploads inputs from directly ([`host_pool::HostPool`]);
    /// `None` where uploads gain nothing from it (the default, and the CPU
    /// backend).
    fn host_pool(&self, max_bytes: usize) -> Option<Arc<host_pool::HostPool>> {
        let _ = max_bytes;
        None
    }
    /// Maps `byte_size` bytes of device memory that another process
    /// exported as the CUDA IPC handle `raw_handle`
    /// ([`shared::IPC_HANDLE_BYTES`] bytes) on this device. The default (the
    /// CPU backend) has no device memory to share and says so.
    fn open_shared(&self, raw_handle: &[u8], byte_size: usize) -> Result<Arc<dyn SharedRegion>> {
        let _ = (raw_handle, byte_size);
        Err(ExecError::Unavailable(format!(
            "CUDA shared memory needs a CUDA device; this is {}",
            self.name()
        )))
    }
    /// The backend's own event counts so far, by name (the CUDA device's
    /// preemption relay: raises relayed and raised by the driver), for
    /// benchmarks to report; none by default.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The backend's own histograms so far (the CUDA device's drain probe,
    /// compiled in with `REEF_NVRTC_DEFINES=REEF_DRAIN_PROBE`), for
    /// benchmarks to report as differences between two reads; none by
    /// default.
    fn histograms(&self) -> Result<Vec<DeviceHistogram>> {
        Ok(Vec::new())
    }
}

/// Counts of a backend's own measurements in equal buckets
/// ([`Device::histograms`]); the last bucket also counts everything beyond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceHistogram {
    /// What it measures.
    pub name: &'static str,
    /// Each bucket's width, nanoseconds.
    pub bucket_ns: u64,
    /// Counts by bucket.
    pub counts: Vec<u64>,
}

impl DeviceHistogram {
    /// The counts added since `before` (an earlier read of the same
    /// histogram; counts only grow).
    pub fn since(&self, before: &DeviceHistogram) -> DeviceHistogram {
        DeviceHistogram {
            counts: self
                .counts
                .iter()
                .zip(before.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            ..self.clone()
        }
    }

    /// How many were counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper edge of the bucket holding quantile `q` (0..=1),
    /// nanoseconds; `None` when nothing was counted.
    pub fn quantile_ns(&self, q: f64) -> Option<u64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some((i as u64 + 1) * self.bucket_ns);
            }
        }
        Some(self.counts.len() as u64 * self.bucket_ns)
    }
}

/// A model resident on a device.
pub trait ModelHandle: Send + Sync {
    /// The plan it runs.
    fn plan(&self) -> &Arc<Plan>;
    /// A fresh task context (arena, I/O, progress).
    fn context(&self) -> Result<Box<dyn Context>>;
    /// Downcasting support for backends.
    fn as_any(&self) -> &dyn Any;
}

/// One task's state on the device: activations, inputs, outputs, progress.
/// Contexts are reused across tasks of the same model.
pub trait Context: Send {
    /// The model it belongs to.
    fn model(&self) -> &Arc<dyn ModelHandle>;
    /// Copies input `index` (raw little-endian bytes, exact size) in.
    fn write_input(&mut self, index: usize, bytes: &[u8]) -> Result<()>;
    /// Copies input `index` from `len` bytes at `offset` of a shared device
    /// region (exact size). The default reads them to host memory and calls
    /// [`Context::write_input`]; a backend that can copy device to device
    /// overrides it.
    fn write_input_shared(
        &mut self,
        index: usize,
        region: &dyn SharedRegion,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        shared::write_input_via_host(self, index, region, offset, len)
    }
    /// Copies output `index` out (raw little-endian bytes). Call only after
    /// the lane that ran the task synchronized.
    fn read_output(&mut self, index: usize) -> Result<Vec<u8>>;
    /// Fills the arena with a poison value (NaN bytes) to catch unwritten outputs.
    fn poison(&mut self) -> Result<()>;
    /// The first kernel not known complete (exact after the lane synchronized).
    fn progress(&mut self) -> Result<usize>;
    /// Launch shape of kernel `index` (None: the backend does not say, and
    /// the scheduler does not pad with or beside it).
    fn shape(&self, index: usize) -> Option<KernelShape> {
        let _ = index;
        None
    }
    /// A short description of how kernel `index` launches on this backend
    /// (on CUDA: its kernel family, and "multi-wave" where its BE variant
    /// runs more tiles than fit on the GPU at once), for profiles. None where
    /// the backend does not say (the default).
    fn launch_label(&self, index: usize) -> Option<String> {
        let _ = index;
        None
    }
    /// Downcasting support for backends.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// An in-order queue of kernel launches with its own preemption flag.
pub trait Lane: Send {
    /// Priority it was made with.
    fn priority(&self) -> Priority;
    /// Prepares `ctx` to run kernels from `from` on (resets the progress
    /// record to `from` and any per-kernel completion counters at or above it).
    fn begin(&mut self, ctx: &mut dyn Context, from: usize) -> Result<()>;
    /// Enqueues kernel `index` of the context's plan; returns without waiting.
    fn enqueue(&mut self, ctx: &mut dyn Context, index: usize, variant: Variant) -> Result<()>;
    /// How many enqueued kernels have retired (completed or exited), without blocking.
    fn retired(&mut self) -> Result<u64>;
    /// A lower bound of [`Lane::retired`] that asks the device nothing: the
    /// count as of the last query (or the live count where reading it costs
    /// no device call). For decisions that must not wait on the driver,
    /// such as which lanes to flag when RT work arrives.
    fn retired_seen(&self) -> u64;
    /// Total kernels enqueued so far.
    fn enqueued(&self) -> u64;
    /// Blocks until every enqueued kernel retired; reports a device fault.
    fn synchronize(&mut self) -> Result<()>;
    /// Whether every enqueued kernel retired, without blocking (a device
    /// fault is an error). The default compares [`Lane::retired`] with
    /// [`Lane::enqueued`]; backends with a cheaper exact query override it.
    fn is_idle(&mut self) -> Result<bool> {
        Ok(self.retired()? == self.enqueued())
    }
    /// Whether every kernel launched on this lane has left the device's
    /// compute units, without blocking: what ends a preemption's drain.
    /// Weaker than [`Lane::is_idle`]: the stream may still be finishing its
    /// bookkeeping and nothing is marked retired, so reading the lane's
    /// results or resuming its task still waits for [`Lane::synchronize`].
    /// Lowering its flag is safe once drained (no kernel of the lane reads
    /// the flag any more). The default is [`Lane::is_idle`]; the CUDA lane
    /// with its told word on reads a word its BE kernels' last blocks
    /// write to host memory.
    fn drained(&mut self) -> Result<bool> {
        self.is_idle()
    }
    /// The device address of this lane's preemption flag, for backends that
    /// raise several lanes' flags in one operation
    /// ([`Device::raise_preempt`]); None where flags are not device words.
    fn flag_address(&self) -> Option<u64> {
        None
    }
    /// Raises (true) or clears (false) the lane's preemption flag. Raising
    /// makes queued and running BE kernels of this lane exit at their next check.
    fn set_preempt(&mut self, on: bool) -> Result<()>;
    /// Lets a context that was preempted (or padded) run BE kernels again
    /// from its progress on, keeping the tiles its first unfinished kernel
    /// completed where the backend tracks them (a backend that abandoned a
    /// tile midway runs that kernel again from its first tile). Returns the
    /// context's progress ([`Context::progress`]): the kernel the task
    /// resumes from, read with the same device round trip. The default only
    /// reads the progress (state on the device is already consistent).
    fn resume(&mut self, ctx: &mut dyn Context) -> Result<usize> {
        ctx.progress()
    }
    /// Times the drain of this lane, whose flag [`Device::raise_preempt`]
    /// has just raised: from the flag's write on the device to the end of
    /// the lane's last enqueued launch (zero if that ended first). Read it
    /// with [`Lane::read_drain_timer`] once the lane is idle. A drain still
    /// unread is dropped. The default does nothing (no device timer).
    fn start_drain_timer(&mut self) -> Result<()> {
        Ok(())
    }
    /// The drain [`Lane::start_drain_timer`] timed, once the lane is idle
    /// (then the timer is free again); `None` before that, without a
    /// start, or where the backend has no timer (the default).
    fn read_drain_timer(&mut self) -> Result<Option<Duration>> {
        Ok(None)
    }
    /// Starts a device timer at this point of the lane's queue (a timing
    /// still unread is dropped). With [`Lane::stop_timer`] after the next
    /// launches and [`Lane::read_timer`] once they ran, it gives the
    /// device's time between the two points: for an RT task launched on an
    /// idle lane, how long its first kernel took from the moment the device
    /// reached the task, its wait for BE blocks to leave included. The
    /// default does nothing (no device timer).
    fn start_timer(&mut self) -> Result<()> {
        Ok(())
    }
    /// Stops the timer [`Lane::start_timer`] started, at this point of the
    /// queue. The default does nothing.
    fn stop_timer(&mut self) -> Result<()> {
        Ok(())
    }
    /// The timed span once the device passed the stop (then the timer is
    /// free again); `None` before that, without a stopped timer, or where
    /// the backend has no device timer (the default).
    fn read_timer(&mut self) -> Result<Option<Duration>> {
        Ok(None)
    }
    /// Marks the start of RT kernel `index` of `ctx`, to be called right
    /// before enqueueing it; padding launches on other lanes follow the mark.
    /// None: this backend cannot pad.
    fn pad_slot(&mut self, ctx: &mut dyn Context, index: usize) -> Result<Option<PadSlot>> {
        let _ = (ctx, index);
        Ok(None)
    }
    /// Enqueues BE kernel `index` of `ctx` as padding beside the RT kernel of
    /// `slot`, on at most `blocks` blocks (compute units' worth of work); a
    /// block claims no tile once `budget` has passed since it started (zero:
    /// no budget, only the RT kernel's completion bounds it). Returns without
    /// waiting.
    fn enqueue_pad(
        &mut self,
        ctx: &mut dyn Context,
        index: usize,
        slot: &PadSlot,
        blocks: u32,
        budget: Duration,
    ) -> Result<()> {
        let _ = (ctx, index, slot, blocks, budget);
        Err(ExecError::Invalid("this backend cannot pad".into()))
    }
    /// Runs every kernel of `ctx` as `variant` with all of them queued
    /// before the first one starts, and returns the device's time from the
    /// first kernel's start to the last one's end: the run without the
    /// host's launch rate in it. None where the backend has no device timer
    /// (the default) or could not queue the run ahead. Waits for the run.
    fn run_device_timed(
        &mut self,
        ctx: &mut dyn Context,
        variant: Variant,
    ) -> Result<Option<Duration>> {
        let _ = (ctx, variant);
        Ok(None)
    }
    /// As [`Lane::run_device_timed`], with the device's time split per
    /// kernel: entry `i` runs from the end of kernel `i - 1` (the run's
    /// start for the first) to the end of kernel `i`, so a kernel's share of
    /// the run in order, gaps included. None where the backend has no device
    /// timer (the default). Waits for the run.
    fn run_device_timed_kernels(
        &mut self,
        ctx: &mut dyn Context,
        variant: Variant,
    ) -> Result<Option<Vec<Duration>>> {
        let _ = (ctx, variant);
        Ok(None)
    }
    /// Times the RT variant of every kernel of `ctx` run alone, `reps` times
    /// (median per kernel), after one untimed run (a freshly loaded model's
    /// first run pays for first touches of its buffers, not its kernels).
    /// The default times each kernel on the host around a synchronize;
    /// backends with device timers override it.
    fn profile(&mut self, ctx: &mut dyn Context, reps: usize) -> Result<Vec<Duration>> {
        let n = ctx.model().plan().kernels.len();
        self.begin(ctx, 0)?;
        for i in 0..n {
            self.enqueue(ctx, i, Variant::Rt)?;
        }
        self.synchronize()?;
        let mut times = vec![Vec::with_capacity(reps); n];
        for _ in 0..reps.max(1) {
            self.begin(ctx, 0)?;
            for (i, t) in times.iter_mut().enumerate() {
                let t0 = std::time::Instant::now();
                self.enqueue(ctx, i, Variant::Rt)?;
                self.synchronize()?;
                t.push(t0.elapsed());
            }
        }
        Ok(times
            .into_iter()
            .map(|mut v| {
                v.sort();
                v[v.len() / 2]
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceHistogram;

    fn hist(counts: Vec<u64>) -> DeviceHistogram {
        DeviceHistogram {
            name: "h",
            bucket_ns: 250,
            counts,
        }
    }

    #[test]
    fn a_histograms_quantiles_are_its_buckets_upper_edges() {
        let h = hist(vec![0, 50, 48, 0, 2]);
        assert_eq!(h.total(), 100);
        assert_eq!(h.quantile_ns(0.0), Some(500));
        assert_eq!(h.quantile_ns(0.5), Some(500));
        assert_eq!(h.quantile_ns(0.51), Some(750));
        assert_eq!(h.quantile_ns(0.98), Some(750));
        assert_eq!(h.quantile_ns(0.99), Some(1250));
        assert_eq!(h.quantile_ns(1.0), Some(1250));
        assert_eq!(hist(vec![0; 4]).quantile_ns(0.5), None);
    }

    #[test]
    fn since_takes_an_earlier_read_away() {
        let before = hist(vec![1, 2, 3]);
        let after = hist(vec![1, 5, 4]);
        assert_eq!(after.since(&before).counts, vec![0, 3, 1]);
        assert_eq!(after.since(&hist(vec![])).counts, after.counts);
    }
}
