//! Turning a plan's kernels into launch descriptors: the family to launch,
//! its tile count and its params struct with every device address resolved.
//! Pure host logic (no CUDA calls), so it is tested without a GPU. Every
//! buffer access a kernel can make is validated here against the plan's
//! buffer sizes, so a malformed plan is an error, never a device fault.
//!
//! This module holds the builder and what every op shares; the launches of
//! each group of ops are in the submodules.

mod elementwise;
mod gemm;
mod layout;
mod rows;
mod spatial;

use crate::gather::{gather_table, gather_words, rows_along_pixels};
use crate::geometry::{GemmGeom, GemmTile, TileRules};
use crate::kernels::Family;
use crate::params::*;
use crate::precision::Precision;
use crate::tactics::{GemmProblem, Tactic, TileLimits};
use crate::weight_layout::WeightLayout;
use reef_exec::ExecError;
use reef_model::resize::ResizeMode;
use reef_model::{DType, PadMode, PoolKind};
use reef_plan::kernel::{
    BinOp, CmpOp, KernelOp, ReduceKind, SoftmaxMask, SoftmaxPre, UnaryOp, ATTENTION_MAX_D,
};
use reef_plan::plan::{BufferId, Loc};
use reef_plan::Plan;
use std::sync::Arc;

/// One launch: what to run, on how many tiles, with which parameters.
#[derive(Debug, Clone, Copy)]
pub struct Launch {
    /// Kernel family.
    pub family: Family,
    /// Number of tiles (>= 1).
    pub tiles: u32,
    /// Parameters (header filled except the lane's flag).
    pub params: Params,
}

impl Launch {
    /// Grid size: one block per tile (RT) or at most `resident` persistent blocks (BE).
    pub fn grid(&self, variant: reef_exec::Variant, resident: u32) -> u32 {
        match variant {
            reef_exec::Variant::Rt => self.tiles,
            reef_exec::Variant::Be => self.tiles.min(resident.max(1)),
        }
    }
}

/// Bytes of one kernel's counters in a context's state: a u32 done count and
/// a u32 BE claim cursor.
pub const COUNTER_BYTES: u64 = 8;

/// Set in a BE kernel's done count by a block that abandoned a GEMM tile
/// between K steps (`REEF_ABORTED` in `kernels/common.cu`): the kernel must
/// run again from its first tile.
pub const ABORTED_BIT: u32 = 0x8000_0000;

/// Device addresses of one context: where weights, arena, counters, progress,
/// the concat table and the split-K scratch live.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    /// Base of the model's weight blob.
    pub weights: u64,
    /// Base of the context's arena.
    pub arena: u64,
    /// Base of the per-kernel counter pairs ([`COUNTER_BYTES`] each: tiles
    /// done, BE claim cursor).
    pub counters: u64,
    /// The progress word (u32).
    pub progress: u64,
    /// Base of the context's concat pointer table.
    pub table: u64,
    /// Base of the split-K tile arrival counters (u32 each, kernels in order).
    pub tile_counters: u64,
    /// Base of the split-K workspace (f32 partial tiles, shared by the
    /// kernels of a context, which run one after another).
    pub workspace: u64,
}

impl Addresses {
    /// Placeholder addresses, far apart, for builds that only validate,
    /// size or key launches (no launch ever runs with them).
    pub const PROBE: Addresses = Addresses {
        weights: 1 << 40,
        arena: 2 << 40,
        counters: 3 << 40,
        progress: 4 << 40,
        table: 5 << 40,
        tile_counters: 6 << 40,
        workspace: 7 << 40,
    };
}

/// Everything [`Builder::build_all`] produces.
#[derive(Debug, Clone)]
pub struct Built {
    /// One launch per kernel.
    pub launches: Vec<Launch>,
    /// Concat table words to upload at [`Addresses::table`].
    pub table: Vec<u64>,
    /// Split-K workspace bytes the context must provide (max over kernels).
    pub workspace_bytes: u64,
    /// Index of each kernel's first tile counter (kernels in order), plus
    /// the total at the end: kernel `i` owns counters
    /// `counter_start[i]..counter_start[i + 1]`.
    pub counter_start: Vec<u32>,
    /// Per kernel, for convolutions and matmuls on the GEMM kernels: the
    /// problem, the rules' tactic and the tactic built ([`crate::tactics`]).
    pub gemms: Vec<Option<GemmChoice>>,
}

/// The tactic of one GEMM kernel in a [`Built`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmChoice {
    /// What the kernel computes.
    pub problem: GemmProblem,
    /// What the load-time rules choose.
    pub rule: Tactic,
    /// What was built (the rule, or the builder's override).
    pub used: Tactic,
}

/// Number of u64 words of table (concat pointers, convolution gather
/// tables) a plan needs (per context).
pub fn table_words(plan: &Plan) -> usize {
    plan.kernels
        .iter()
        .map(|k| match &k.op {
            KernelOp::Concat { lens, .. } => 2 * lens.len() + 1,
            // One more word: a gather table starts 16-byte aligned.
            KernelOp::Conv(c) => match gather_words(c) {
                0 => 0,
                w => w + 1,
            },
            _ => 0,
        })
        .sum()
}

fn invalid(kernel: usize, msg: impl std::fmt::Display) -> ExecError {
    ExecError::Invalid(format!("kernel {kernel}: {msg}"))
}

fn to_i32(kernel: usize, what: &str, v: impl TryInto<i32>) -> Result<i32, ExecError> {
    v.try_into()
        .map_err(|_| invalid(kernel, format!("{what} does not fit in i32")))
}

/// The mask layout of a prologue without a mask.
const NO_MASK: SoftmaxMask = SoftmaxMask {
    div: 1,
    modulo: 1,
    ld: 0,
    col_stride: 0,
};

/// A softmax prologue as the kernels read it (`md`: its mask's layout, or
/// [`NO_MASK`]).
fn prologue(
    kernel: usize,
    pre: &SoftmaxPre,
    md: &SoftmaxMask,
) -> Result<PrologueParams, ExecError> {
    let (scale_op, scale) = match pre.scale {
        None => (0, 1.0),
        Some((BinOp::Mul, c)) => (1, c),
        Some((BinOp::Div, c)) => (2, c),
        Some((op, _)) => return Err(invalid(kernel, format!("softmax prologue scale {op:?}"))),
    };
    Ok(PrologueParams {
        scale_op,
        scale,
        mask_div: to_i32(kernel, "mask div", md.div.max(1))?,
        mask_mod: to_i32(kernel, "mask modulo", md.modulo.max(1))?,
        mask_ld: to_i32(kernel, "mask ld", md.ld)?,
        mask_cs: to_i32(kernel, "mask column stride", md.col_stride)?,
    })
}

/// Elements a strided operand reaches: 1 + the highest element it reads,
/// over `(length, stride)` dims (a dim of length 0 counts as 1).
fn reach(dims: &[(usize, usize)]) -> u64 {
    dims.iter()
        .map(|&(len, st)| len.saturating_sub(1) as u64 * st as u64)
        .sum::<u64>()
        + 1
}

fn tiles_for(kernel: usize, n: u64) -> Result<u32, ExecError> {
    let t = n.max(1);
    if t > i32::MAX as u64 {
        return Err(invalid(kernel, format!("{t} tiles exceed the grid limit")));
    }
    Ok(t as u32)
}

fn ew_tiles(kernel: usize, total: u64) -> Result<u32, ExecError> {
    tiles_for(kernel, total.div_ceil(EW_TILE))
}

/// Right-aligns `v` to [`MAX_RANK`], filling with `fill`.
fn right_align<T: Copy>(v: &[T], fill: T) -> [T; MAX_RANK] {
    let mut out = [fill; MAX_RANK];
    out[MAX_RANK - v.len()..].copy_from_slice(v);
    out
}

/// SM count assumed when none is given (an H100 SXM).
pub const DEFAULT_SMS: u32 = 132;

/// Builds launch descriptors for a plan's kernels.
pub struct Builder<'a> {
    plan: &'a Plan,
    addr: Addresses,
    precision: Precision,
    sms: u32,
    wgmma: bool,
    table: Vec<u64>,
    workspace_bytes: u64,
    counter_start: Vec<u32>,
    counters: u64,
    layout: Arc<WeightLayout>,
    split_waves: bool,
    gather_table: bool,
    tall_tiles: bool,
    tactics: Arc<Vec<Option<Tactic>>>,
    gemms: Vec<Option<GemmChoice>>,
}

impl<'a> Builder<'a> {
    /// A builder over `plan` at `addr` with GEMMs in `precision` (a bool
    /// reads as tensor cores on: TF32, or off: exact f32). Validates every
    /// buffer's size limits.
    pub fn new(
        plan: &'a Plan,
        addr: Addresses,
        precision: impl Into<Precision>,
    ) -> Result<Self, ExecError> {
        let precision = precision.into();
        for (i, b) in plan.buffers.iter().enumerate() {
            if b.len > i32::MAX as usize {
                return Err(ExecError::Unsupported(format!(
                    "buffer {i} ({}) has {} elements; the CUDA kernels index with i32",
                    b.name, b.len
                )));
            }
            let end = match b.loc {
                Loc::Weight(off) => {
                    let end = off.checked_add(b.bytes());
                    if end.is_none_or(|e| e > plan.weights.len()) {
                        return Err(ExecError::Invalid(format!(
                            "buffer {i} ({}) lies outside the weight blob",
                            b.name
                        )));
                    }
                    continue;
                }
                Loc::Arena(off) => off.checked_add(b.bytes()),
            };
            if end.is_none_or(|e| e > plan.arena_bytes) {
                return Err(ExecError::Invalid(format!(
                    "buffer {i} ({}) lies outside the arena",
                    b.name
                )));
            }
        }
        Ok(Builder {
            plan,
            addr,
            precision,
            sms: DEFAULT_SMS,
            wgmma: false,
            table: Vec::with_capacity(table_words(plan)),
            workspace_bytes: 0,
            counter_start: Vec::with_capacity(plan.kernels.len() + 1),
            counters: 0,
            layout: Arc::default(),
            split_waves: true,
            gather_table: true,
            tall_tiles: false,
            tactics: Arc::default(),
            gemms: vec![None; plan.kernels.len()],
        })
    }

    /// Per-kernel tactics that replace the rules' choice (indexed by
    /// kernel; `None` or a missing entry keeps the rule). A tactic the
    /// kernel cannot run ([`TileLimits::check`]) fails the build.
    pub fn tactics(mut self, tactics: Arc<Vec<Option<Tactic>>>) -> Self {
        self.tactics = tactics;
        self
    }

    /// Chooses K splits by whole waves ([`crate::geometry::split_k`], the
    /// default) or by filling the resident blocks (false).
    pub fn split_waves(mut self, on: bool) -> Self {
        self.split_waves = on;
        self
    }

    /// Lets TF32 convolutions of 128 or more channels run 128 x 64 tiles
    /// ([`crate::geometry::GemmTile::Tall`]; off by default,
    /// [`crate::CudaOptions::tall_tiles`]).
    pub fn tall_tiles(mut self, on: bool) -> Self {
        self.tall_tiles = on;
        self
    }

    /// Gives gathering convolutions a K-index table ([`gather_table`], the
    /// default) or lets them step (c, r, s) themselves (false).
    pub fn gather_table(mut self, on: bool) -> Self {
        self.gather_table = on;
        self
    }

    /// How the model stores its weights: TF32 GEMMs that read a rounded
    /// weight skip its conversion, and matmuls read K-major weights with
    /// unit K stride.
    pub(crate) fn weight_layout(mut self, layout: Arc<WeightLayout>) -> Self {
        self.layout = layout;
        self
    }

    /// Sets the GPU's SM count (sizes the split-K decisions).
    pub fn sms(mut self, sms: u32) -> Self {
        self.sms = sms.max(1);
        self
    }

    /// Lets TF32 convolutions and matmuls use the wgmma families (sm_90a
    /// GPUs only).
    pub fn wgmma(mut self, on: bool) -> Self {
        self.wgmma = on;
        self
    }

    /// Builds every kernel's launch (in order), the concat table and the
    /// split-K scratch sizes.
    pub fn build_all(mut self) -> Result<Built, ExecError> {
        let n = self.plan.kernels.len();
        let mut launches = Vec::with_capacity(n);
        for i in 0..n {
            self.counter_start.push(self.counter_index(i)?);
            launches.push(self.build(i)?);
        }
        self.counter_start.push(self.counter_index(n)?);
        Ok(Built {
            launches,
            table: self.table,
            workspace_bytes: self.workspace_bytes,
            counter_start: self.counter_start,
            gemms: self.gemms,
        })
    }

    fn counter_index(&self, k: usize) -> Result<u32, ExecError> {
        u32::try_from(self.counters).map_err(|_| invalid(k, "too many split-K tile counters"))
    }

    /// Claims the split-K scratch of `geom` for kernel `k`: returns the
    /// (workspace, counters) addresses to pass (0, 0 without a split).
    fn scratch(&mut self, k: usize, geom: &GemmGeom) -> Result<(u64, u64), ExecError> {
        if geom.splits == 1 {
            return Ok((0, 0));
        }
        let ws = geom.workspace_bytes();
        // Partial-tile offsets are computed in 64 bits on the device, but the
        // per-thread index math uses 32-bit element offsets within a tile.
        if ws > (1u64 << 40) {
            return Err(invalid(k, "split-K workspace too large"));
        }
        self.workspace_bytes = self.workspace_bytes.max(ws);
        let cnt = self.addr.tile_counters + 4 * self.counters;
        self.counters += geom.counters();
        Ok((self.addr.workspace, cnt))
    }

    /// Kernel `k`'s geometry: its tactic override when it has one (checked
    /// against `problem`), else the rules' `rule`; records both.
    fn tactic(
        &mut self,
        k: usize,
        problem: GemmProblem,
        rule: GemmGeom,
    ) -> Result<GemmGeom, ExecError> {
        let limits = TileLimits {
            precision: self.precision,
            wgmma: self.wgmma,
        };
        let (used, g) = match self.tactics.get(k).copied().flatten() {
            Some(t) => {
                if let Some(why) = limits.check(&problem, &t) {
                    return Err(invalid(k, format!("tactic {t}: {why}")));
                }
                (t, t.geometry(&problem))
            }
            None => (Tactic::of(&rule), rule),
        };
        self.gemms[k] = Some(GemmChoice {
            problem,
            rule: Tactic::of(&rule),
            used,
        });
        Ok(g)
    }

    /// Device address of buffer `id`, checking its type and that it holds `elems`.
    fn buf(&self, k: usize, id: BufferId, dtype: DType, elems: u64) -> Result<u64, ExecError> {
        let b = self
            .plan
            .buffers
            .get(id)
            .ok_or_else(|| invalid(k, format!("buffer {id} does not exist")))?;
        if b.dtype != dtype {
            return Err(invalid(
                k,
                format!(
                    "buffer {id} ({}) is {:?}, expected {dtype:?}",
                    b.name, b.dtype
                ),
            ));
        }
        if (b.len as u64) < elems {
            return Err(invalid(
                k,
                format!(
                    "buffer {id} ({}) holds {} elements, needs {elems}",
                    b.name, b.len
                ),
            ));
        }
        Ok(match b.loc {
            Loc::Weight(off) => self.addr.weights + off as u64,
            Loc::Arena(off) => self.addr.arena + off as u64,
        })
    }

    /// Like [`Self::buf`] for untyped element copies of `esz` bytes.
    fn raw(&self, k: usize, id: BufferId, esz: usize, elems: u64) -> Result<u64, ExecError> {
        let b = self
            .plan
            .buffers
            .get(id)
            .ok_or_else(|| invalid(k, format!("buffer {id} does not exist")))?;
        if b.dtype.size() != esz {
            return Err(invalid(
                k,
                format!(
                    "buffer {id} has {}-byte elements, expected {esz}",
                    b.dtype.size()
                ),
            ));
        }
        self.buf(k, id, b.dtype, elems)
    }

    /// `family`, or its twin that reads TF32-rounded weights when kernel
    /// `k`'s weight operand (input 1) is stored rounded.
    fn weights_family(&self, k: usize, family: Family) -> Result<Family, ExecError> {
        Ok(if self.layout.rounded.contains(&self.input(k, 1)?) {
            family.with_tf32_weights()
        } else {
            family
        })
    }

    fn input(&self, k: usize, i: usize) -> Result<BufferId, ExecError> {
        self.plan.kernels[k]
            .inputs
            .get(i)
            .copied()
            .ok_or_else(|| invalid(k, format!("missing input {i}")))
    }

    fn hdr(&self, k: usize, tiles: u32) -> Hdr {
        Hdr {
            flag: 0,
            done: self.addr.counters + COUNTER_BYTES * k as u64,
            progress: self.addr.progress,
            kernel_index: k as u32,
            tiles,
            ..Hdr::default()
        }
    }

    /// A launch that does nothing but complete (for kernels with no work).
    fn noop(&self, k: usize) -> Launch {
        let p = CopyParams {
            hdr: self.hdr(k, 1),
            shape: [1; MAX_RANK],
            esz: 4,
            total: 0,
            ..Default::default()
        };
        Launch {
            family: Family::Copy,
            tiles: 1,
            params: Params::Copy(p),
        }
    }

    /// Builds kernel `k`'s launch.
    pub fn build(&mut self, k: usize) -> Result<Launch, ExecError> {
        let kernel = &self.plan.kernels[k];
        if kernel.inputs.contains(&kernel.output) {
            return Err(invalid(
                k,
                "writes a buffer it reads (kernels must be idempotent)",
            ));
        }
        let io = Io {
            k,
            out_id: kernel.output,
            ninputs: kernel.inputs.len(),
        };
        match &kernel.op {
            KernelOp::Conv(_) | KernelOp::MatMul(_) => self.gemm(&io, &kernel.op),
            KernelOp::ChannelAffine { .. }
            | KernelOp::Binary { .. }
            | KernelOp::Compare { .. }
            | KernelOp::Where { .. }
            | KernelOp::Unary { .. }
            | KernelOp::Not { .. }
            | KernelOp::Cast { .. } => self.elementwise(&io, &kernel.op),
            KernelOp::Softmax { .. }
            | KernelOp::Attention(_)
            | KernelOp::LayerNorm { .. }
            | KernelOp::Reduce { .. }
            | KernelOp::ArgExtreme { .. } => self.rows(&io, &kernel.op),
            KernelOp::Copy { .. }
            | KernelOp::Concat { .. }
            | KernelOp::Gather { .. }
            | KernelOp::GatherElements { .. } => self.layout(&io, &kernel.op),
            KernelOp::Pool(_) | KernelOp::Pad { .. } | KernelOp::Resize { .. } => {
                self.spatial(&io, &kernel.op)
            }
        }
    }
}

/// The kernel a launch is built for: its index, output buffer and input
/// count.
struct Io {
    k: usize,
    out_id: BufferId,
    ninputs: usize,
}

impl Io {
    /// An error unless the kernel has exactly `n` inputs.
    fn expect_inputs(&self, n: usize) -> Result<(), ExecError> {
        if self.ninputs == n {
            Ok(())
        } else {
            Err(invalid(
                self.k,
                format!("expected {n} inputs, got {}", self.ninputs),
            ))
        }
    }
}

/// A host size as the u64 the extent checks compute in.
fn u(v: usize) -> u64 {
    v as u64
}

fn check_esz(k: usize, esz: usize) -> Result<(), ExecError> {
    match esz {
        1 | 2 | 4 | 8 => Ok(()),
        _ => Err(ExecError::Unsupported(format!(
            "kernel {k}: element size {esz}"
        ))),
    }
}

fn to_u32(k: usize, v: u64) -> Result<u32, ExecError> {
    if v > i32::MAX as u64 {
        return Err(invalid(
            k,
            format!("{v} elements exceed the i32 index range"),
        ));
    }
    Ok(v as u32)
}
