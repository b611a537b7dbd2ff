//! The CPU device, a model resident on it and a task context.

use super::cores::Cores;
use super::lane::CpuLane;
use super::memory::{aligned_copy, bytes_of, bytes_of_mut, zeroed_words};
use super::validate;
use crate::{Context, Device, DeviceKind, ExecError, Lane, ModelHandle, Priority, Result};
use parking_lot::Mutex;
use reef_plan::plan::{IoBinding, Loc};
use reef_plan::Plan;
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// The CPU as a reef device: worker threads are the compute units. Every
/// tile holds one of the device's slots (one per thread) while it runs, RT
/// tiles first ([`Cores`]). RT lanes run their tiles on one rayon pool, BE
/// lanes on another, so BE tiles waiting for a slot never hold up RT tiles.
pub struct CpuDevice {
    pool: Arc<rayon::ThreadPool>,
    be_pool: Arc<rayon::ThreadPool>,
    cores: Arc<Cores>,
    threads: usize,
    lanes: AtomicUsize,
    padding: bool,
    tf32: bool,
}

impl CpuDevice {
    /// A device with `threads` worker threads (default: the available parallelism).
    pub fn new(threads: Option<usize>) -> Result<Self> {
        let threads = match threads {
            Some(0) => {
                return Err(ExecError::Invalid(
                    "a CPU device needs at least one thread".into(),
                ))
            }
            Some(t) => t,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let pool = worker_pool(threads, Priority::High)?;
        let be_pool = worker_pool(threads, Priority::Low)?;
        tracing::debug!(threads, "CPU device ready");
        Ok(Self {
            pool: Arc::new(pool),
            be_pool: Arc::new(be_pool),
            cores: Arc::new(Cores::new(threads)),
            threads,
            lanes: AtomicUsize::new(0),
            padding: false,
            tf32: false,
        })
    }

    /// Emulates GPU occupancy for dynamic kernel padding: contexts of models
    /// loaded afterwards report each RT kernel as occupying one worker, so a
    /// `reef`-mode scheduler pads beside it. Off by default: rayon spreads an
    /// RT kernel's tiles over every worker, so on the CPU padding only
    /// exercises the semantics (CI), it cannot add throughput.
    pub fn with_padding(mut self, on: bool) -> Self {
        self.padding = on;
        self
    }

    /// Emulates the GPU's TF32 tensor-core GEMMs (`REEF_PRECISION=tf32`) in
    /// models loaded afterwards: every operand element of a GEMM that runs on
    /// tensor cores on the GPU is rounded to TF32 with [`round_tf32`]
    /// (`cvt.rna.tf32.f32`) and the products are accumulated in f32, as
    /// there. Those GEMMs are every matmul and every convolution with more
    /// than one input channel per group (c/groups > 1); convolutions with
    /// c/groups == 1 (depthwise) run as direct f32 kernels on the GPU and are
    /// not rounded here either, nor is any other kernel. Rounding applies to
    /// the weights and to the input (pixel) operand; padding zeros stay zero.
    /// Off by default (plain f32; the results are then bit-identical to a
    /// device built without this call).
    ///
    /// [`round_tf32`]: super::round_tf32
    pub fn with_tf32(mut self, on: bool) -> Self {
        self.tf32 = on;
        self
    }

    /// Whether GEMM operands are rounded to TF32 ([`CpuDevice::with_tf32`]).
    pub fn tf32(&self) -> bool {
        self.tf32
    }

    /// A new lane with the concrete type (its preemption flag is reachable
    /// through [`CpuLane::preempt_flag`]).
    pub fn cpu_lane(&self, priority: Priority) -> Result<CpuLane> {
        let id = self.lanes.fetch_add(1, Ordering::Relaxed);
        let pool = match priority {
            Priority::High => &self.pool,
            Priority::Low => &self.be_pool,
        };
        CpuLane::spawn(pool.clone(), self.cores.clone(), priority, id)
    }

    /// Loads a plan, returning the concrete model type.
    pub fn load_cpu(&self, plan: Arc<Plan>) -> Result<Arc<CpuModel>> {
        validate::plan(&plan)?;
        let weights = WeightStore::for_plan(&plan);
        tracing::debug!(model = %plan.name, "loaded on CPU: {}", plan.summary());
        Ok(Arc::new_cyclic(|me| CpuModel {
            plan,
            weights,
            me: me.clone(),
            padding: self.padding,
            tf32: self.tf32,
        }))
    }
}

/// A pool of `threads` workers for lanes of `priority`.
fn worker_pool(threads: usize, priority: Priority) -> Result<rayon::ThreadPool> {
    let prefix = match priority {
        Priority::High => "reef-cpu",
        Priority::Low => "reef-cpu-be",
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{prefix}-{i}"))
        .build()
        .map_err(|e| {
            ExecError::Unavailable(format!("cannot start {threads} CPU worker threads: {e}"))
        })
}

impl Device for CpuDevice {
    fn name(&self) -> String {
        let tf32 = if self.tf32 {
            ", TF32 GEMM operands"
        } else {
            ""
        };
        format!("CPU, {} worker threads{tf32}", self.threads)
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }

    fn compute_units(&self) -> usize {
        self.threads
    }

    fn load(&self, plan: Arc<Plan>) -> Result<Arc<dyn ModelHandle>> {
        Ok(self.load_cpu(plan)?)
    }

    fn lane(&self, priority: Priority) -> Result<Box<dyn Lane>> {
        Ok(Box::new(self.cpu_lane(priority)?))
    }
}

/// Where a CPU model's weights live.
enum WeightStore {
    /// The plan's own blob, which is 8-byte aligned (every element type's
    /// alignment): models whose plans share a blob share it here too.
    Plan,
    /// An aligned copy (the plan's blob is not aligned).
    Copy(Vec<u64>),
}

impl WeightStore {
    fn for_plan(plan: &Plan) -> WeightStore {
        if plan.weights.as_ptr().align_offset(8) == 0 {
            WeightStore::Plan
        } else {
            WeightStore::Copy(aligned_copy(&plan.weights))
        }
    }
}

/// A plan resident on the CPU: the plan and its weights in aligned storage.
pub struct CpuModel {
    plan: Arc<Plan>,
    weights: WeightStore,
    me: Weak<CpuModel>,
    /// Contexts report kernel shapes (padding emulation, see [`CpuDevice::with_padding`]).
    padding: bool,
    /// GEMM operands rounded to TF32 (see [`CpuDevice::with_tf32`]).
    tf32: bool,
}

impl CpuModel {
    /// The weight blob as bytes.
    pub(crate) fn weight_bytes(&self) -> &[u8] {
        match &self.weights {
            WeightStore::Plan => &self.plan.weights,
            WeightStore::Copy(words) => bytes_of(words, self.plan.weights.len()),
        }
    }

    /// Whether this model and `other` read one copy of their weights (their
    /// plans share a blob, [`Plan::share_weights`]).
    pub fn shares_weights_with(&self, other: &CpuModel) -> bool {
        let (a, b) = (self.weight_bytes(), other.weight_bytes());
        !a.is_empty() && std::ptr::eq(a, b)
    }

    /// A fresh context with the concrete type.
    pub fn context_cpu(&self) -> Result<CpuContext> {
        let cpu = self
            .me
            .upgrade()
            .ok_or_else(|| ExecError::Invalid("model was dropped".into()))?;
        let model: Arc<dyn ModelHandle> = cpu.clone();
        let state = Arc::new(CtxState {
            arena: Mutex::new(zeroed_words(self.plan.arena_bytes)),
            progress: AtomicUsize::new(0),
            halted: AtomicBool::new(false),
        });
        Ok(CpuContext { model, cpu, state })
    }
}

impl ModelHandle for CpuModel {
    fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    fn context(&self) -> Result<Box<dyn Context>> {
        Ok(Box::new(self.context_cpu()?))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The part of a context that lanes share with it while kernels are queued.
pub(crate) struct CtxState {
    /// The activation arena (`plan.arena_bytes` bytes, 8-byte aligned).
    pub arena: Mutex<Vec<u64>>,
    /// The first kernel not known complete.
    pub progress: AtomicUsize,
    /// Set when a BE kernel of this context exited early or was skipped:
    /// later BE kernels are skipped until the next `begin`.
    pub halted: AtomicBool,
}

/// One task's state on the CPU. Lanes keep a reference to its state while
/// its kernels are queued, so read outputs only after the lane synchronized
/// (reads lock the arena, so they are never torn, but may see partial work).
pub struct CpuContext {
    model: Arc<dyn ModelHandle>,
    cpu: Arc<CpuModel>,
    state: Arc<CtxState>,
}

impl CpuContext {
    /// The concrete model.
    pub(crate) fn cpu_model(&self) -> &Arc<CpuModel> {
        &self.cpu
    }

    /// The shared state lanes run against.
    pub(crate) fn state(&self) -> &Arc<CtxState> {
        &self.state
    }

    /// The byte range of a binding's buffer in the arena.
    fn range(&self, io: &IoBinding) -> Result<std::ops::Range<usize>> {
        let b = self.cpu.plan.buffers.get(io.buffer);
        match b.map(|b| (b.loc, b.bytes())) {
            Some((Loc::Arena(off), len)) => Ok(off..off + len),
            _ => Err(ExecError::Invalid(format!(
                "tensor '{}' is not bound to an arena buffer",
                io.name
            ))),
        }
    }

    fn binding<'a>(
        list: &'a [IoBinding],
        index: usize,
        what: &str,
        model: &str,
    ) -> Result<&'a IoBinding> {
        list.get(index).ok_or_else(|| {
            ExecError::Invalid(format!(
                "{what} index {index} out of range: model '{model}' has {} {what}s",
                list.len()
            ))
        })
    }
}

impl Context for CpuContext {
    fn model(&self) -> &Arc<dyn ModelHandle> {
        &self.model
    }

    fn write_input(&mut self, index: usize, bytes: &[u8]) -> Result<()> {
        let plan = &self.cpu.plan;
        let io = Self::binding(&plan.inputs, index, "input", &plan.name)?;
        let range = self.range(io)?;
        if bytes.len() != range.len() {
            return Err(ExecError::Invalid(format!(
                "input '{}' ({:?} {:?}) takes {} bytes, got {}",
                io.name,
                io.dtype,
                io.shape,
                range.len(),
                bytes.len()
            )));
        }
        let mut arena = self.state.arena.lock();
        bytes_of_mut(&mut arena, plan.arena_bytes)[range].copy_from_slice(bytes);
        Ok(())
    }

    fn read_output(&mut self, index: usize) -> Result<Vec<u8>> {
        let plan = &self.cpu.plan;
        let io = Self::binding(&plan.outputs, index, "output", &plan.name)?;
        let range = self.range(io)?;
        let arena = self.state.arena.lock();
        Ok(bytes_of(&arena, plan.arena_bytes)[range].to_vec())
    }

    fn poison(&mut self) -> Result<()> {
        self.state.arena.lock().fill(u64::MAX);
        Ok(())
    }

    fn shape(&self, index: usize) -> Option<crate::KernelShape> {
        (self.cpu.padding && index < self.cpu.plan.kernels.len()).then_some(crate::KernelShape {
            tiles: 1,
            rt_blocks: 1,
            per_unit: 1,
        })
    }

    fn progress(&mut self) -> Result<usize> {
        Ok(self.state.progress.load(Ordering::Acquire))
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl CpuModel {
    /// The plan (inherent accessor for the backend).
    pub(crate) fn plan_ref(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// Whether GEMM operands are rounded to TF32 (see [`CpuDevice::with_tf32`]).
    pub(crate) fn tf32(&self) -> bool {
        self.tf32
    }
}
