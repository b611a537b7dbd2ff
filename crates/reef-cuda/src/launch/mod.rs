//! Turning a plan's kernels into launch descriptors: the family to launch,
//! its tile count and its params struct with every device address resolved.
//! Pure host logic (no CUDA calls), so it is tested without a GPU. Every
//! buffer access a kernel can make is validated here against the plan's
//! buffer sizes, so a malformed plan is an error, never a device fault.

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
        let out_id = kernel.output;
        if kernel.inputs.contains(&out_id) {
            return Err(invalid(
                k,
                "writes a buffer it reads (kernels must be idempotent)",
            ));
        }
        let ninputs = kernel.inputs.len();
        let expect_inputs = |n: usize| -> Result<(), ExecError> {
            if ninputs == n {
                Ok(())
            } else {
                Err(invalid(k, format!("expected {n} inputs, got {ninputs}")))
            }
        };
        let f32_ = DType::F32;
        let u = |v: usize| v as u64;
        match &kernel.op {
            KernelOp::Conv(c) => {
                expect_inputs(2 + c.has_bias as usize + c.has_residual as usize)?;
                if c.groups == 0 || c.c % c.groups != 0 || c.k % c.groups != 0 {
                    return Err(invalid(k, "channels not divisible by groups"));
                }
                let (kg, cg) = (c.k / c.groups, c.c / c.groups);
                let npix = c.oh * c.ow;
                let total = u(c.n) * u(c.k) * u(npix);
                if total == 0 {
                    return Ok(self.noop(k));
                }
                let x = self.buf(
                    k,
                    self.input(k, 0)?,
                    f32_,
                    u(c.n) * u(c.c) * u(c.h) * u(c.w),
                )?;
                let w = self.buf(k, self.input(k, 1)?, f32_, u(c.k) * u(cg) * u(c.r) * u(c.s))?;
                let mut next = 2;
                let bias = if c.has_bias {
                    next += 1;
                    self.buf(k, self.input(k, next - 1)?, f32_, u(c.k))?
                } else {
                    0
                };
                let residual = if c.has_residual {
                    self.buf(k, self.input(k, next)?, f32_, total)?
                } else {
                    0
                };
                let out = self.buf(k, out_id, f32_, total)?;
                let (act, act_lo, act_hi) = act_code(c.act);
                let crs = u(cg) * u(c.r) * u(c.s);
                let ncols = u(c.n) * u(npix);
                let (family, tiles, geom, ws, cnt) = if cg == 1 {
                    (Family::ConvDw, ew_tiles(k, total)?, None, 0, 0)
                } else {
                    let g = if self.wgmma && self.precision == Precision::Tf32 {
                        GemmGeom::choose_wgmma(
                            u(c.groups),
                            u(kg),
                            ncols,
                            crs,
                            self.sms,
                            self.split_waves,
                        )
                    } else {
                        let rules = TileRules {
                            large: GemmTile::large_ok(self.precision),
                            tall: self.tall_tiles,
                            waves: self.split_waves,
                        };
                        GemmGeom::choose_by(u(c.groups), u(kg), ncols, crs, rules, self.sms)
                    };
                    let problem = GemmProblem {
                        conv: true,
                        outer: u(c.groups),
                        m: u(kg),
                        n: ncols,
                        k: crs,
                    };
                    let g = self.tactic(k, problem, g)?;
                    let (ws, cnt) = self.scratch(k, &g)?;
                    (
                        self.weights_family(k, g.tile.conv_family(self.precision))?,
                        tiles_for(k, g.items())?,
                        Some(g),
                        ws,
                        cnt,
                    )
                };
                let (m_tiles, n_tiles, splits, ksplit) = match geom {
                    Some(g) => (g.m_tiles, g.n_tiles, g.splits, g.ksplit),
                    None => (1, 1, 1, crs.max(1)),
                };
                // 16-byte copies: weight rows along K; input rows along
                // pixels for unpadded stride-1 1x1 convolutions.
                let a_vec = crs % 4 == 0 && w % 16 == 0;
                let b_vec = rows_along_pixels(c) && x % 16 == 0;
                let ktab = if !b_vec && geom.is_some() && self.gather_table && gather_words(c) > 0 {
                    // 16-byte aligned: the kernel loads entries four at a time.
                    if self.table.len() % 2 == 1 {
                        self.table.push(0);
                    }
                    let off = self.table.len();
                    self.table.extend(gather_table(c));
                    self.addr.table + 8 * off as u64
                } else {
                    0
                };
                let i = |what: &str, v: usize| to_i32(k, what, v);
                let p = ConvParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    w,
                    bias,
                    residual,
                    out,
                    ws,
                    cnt,
                    n: i("n", c.n)?,
                    c: i("c", c.c)?,
                    h: i("h", c.h)?,
                    w_: i("w", c.w)?,
                    k: i("k", c.k)?,
                    r: i("r", c.r)?,
                    s: i("s", c.s)?,
                    oh: i("oh", c.oh)?,
                    ow: i("ow", c.ow)?,
                    sh: i("stride", c.stride[0])?,
                    sw: i("stride", c.stride[1])?,
                    ph: i("pad", c.pad[0])?,
                    pw: i("pad", c.pad[1])?,
                    dh: i("dilation", c.dilation[0])?,
                    dw: i("dilation", c.dilation[1])?,
                    groups: i("groups", c.groups)?,
                    kg: i("k/groups", kg)?,
                    cg: i("c/groups", cg)?,
                    crs: to_i32(k, "c/groups*r*s", crs)?,
                    npix: i("oh*ow", npix)?,
                    has_bias: c.has_bias as i32,
                    has_residual: c.has_residual as i32,
                    act,
                    act_lo,
                    act_hi,
                    m_tiles: to_u32(k, m_tiles)?,
                    n_tiles: to_u32(k, n_tiles)?,
                    splits: to_u32(k, splits)?,
                    ksplit: to_i32(k, "K split", ksplit)?,
                    a_vec: a_vec as i32,
                    b_vec: b_vec as i32,
                    pad0: 0,
                    ktab,
                };
                Ok(Launch {
                    family,
                    tiles,
                    params: Params::Conv(p),
                })
            }
            KernelOp::MatMul(m) => {
                expect_inputs(2 + m.has_bias as usize + m.has_residual as usize)?;
                let nb = m.batch.len();
                if nb > MAX_RANK || m.a_batch_strides.len() != nb || m.b_batch_strides.len() != nb {
                    return Err(invalid(k, "bad batch shape or strides"));
                }
                let batch = u(m.batch_count());
                let total = batch * u(m.m) * u(m.n);
                if total == 0 {
                    return Ok(self.noop(k));
                }
                let mut a_dims: Vec<(usize, usize)> = m
                    .batch
                    .iter()
                    .copied()
                    .zip(m.a_batch_strides.iter().copied())
                    .collect();
                // B as stored: K-major where the weight layout transposed it.
                let (ldb_k, ldb_n) = self.layout.b_strides(self.input(k, 1)?, m);
                let mut b_dims: Vec<(usize, usize)> = m
                    .batch
                    .iter()
                    .copied()
                    .zip(m.b_batch_strides.iter().copied())
                    .collect();
                a_dims.extend([(m.m, m.lda_m), (m.k, m.lda_k)]);
                b_dims.extend([(m.k, ldb_k), (m.n, ldb_n)]);
                let need_a = if m.k == 0 { 0 } else { reach(&a_dims) };
                let need_b = if m.k == 0 { 0 } else { reach(&b_dims) };
                let a = self.buf(k, self.input(k, 0)?, f32_, need_a)?;
                let b = self.buf(k, self.input(k, 1)?, f32_, need_b)?;
                let mut next = 2;
                let bias = if m.has_bias {
                    next += 1;
                    let need = reach(&[
                        (m.batch_count(), m.bias_stride_batch),
                        (m.m, m.bias_stride_m),
                        (m.n, m.bias_stride_n),
                    ]);
                    self.buf(k, self.input(k, next - 1)?, f32_, need)?
                } else {
                    0
                };
                let residual = if m.has_residual {
                    self.buf(k, self.input(k, next)?, f32_, total)?
                } else {
                    0
                };
                let out = self.buf(k, out_id, f32_, total)?;
                let g = if self.wgmma
                    && self.precision == Precision::Tf32
                    && m.m >= 128
                    && m.n >= 128
                {
                    GemmGeom::with_tile(
                        GemmTile::WgMat,
                        batch,
                        u(m.m),
                        u(m.n),
                        u(m.k),
                        self.sms,
                        self.split_waves,
                    )
                } else {
                    GemmGeom::choose_with(
                        batch,
                        u(m.m),
                        u(m.n),
                        u(m.k),
                        false,
                        self.sms,
                        self.split_waves,
                    )
                };
                let problem = GemmProblem {
                    conv: false,
                    outer: batch,
                    m: u(m.m),
                    n: u(m.n),
                    k: u(m.k),
                };
                let g = self.tactic(k, problem, g)?;
                let tiles = tiles_for(k, g.items())?;
                let (ws, cnt) = self.scratch(k, &g)?;
                // 16-byte copies need unit inner strides and 4-aligned rows.
                let a_vec = m.lda_k == 1
                    && m.lda_m % 4 == 0
                    && m.a_batch_strides.iter().all(|s| s % 4 == 0)
                    && a % 16 == 0;
                let b_aligned = m.b_batch_strides.iter().all(|s| s % 4 == 0) && b % 16 == 0;
                // B modes (see gemm.cu): 1 = 16-byte rows along N; 2 / 3 =
                // K-major (unit K stride), 4- / 16-byte copies; 0 = gather.
                let b_vec = if ldb_n == 1 && ldb_k % 4 == 0 && b_aligned {
                    1
                } else if ldb_k == 1 && m.n > 1 {
                    if ldb_n % 4 == 0 && b_aligned {
                        3
                    } else {
                        2
                    }
                } else {
                    0
                };
                let i = |what: &str, v: usize| to_i32(k, what, v);
                let arr = |v: &[usize], what: &str| -> Result<[i32; MAX_RANK], ExecError> {
                    let mut out = [0i32; MAX_RANK];
                    for (o, &x) in out.iter_mut().zip(v) {
                        *o = to_i32(k, what, x)?;
                    }
                    Ok(out)
                };
                let (act, act_lo, act_hi) = act_code(m.act);
                let p = MatMulParams {
                    hdr: self.hdr(k, tiles),
                    a,
                    b,
                    bias,
                    residual,
                    out,
                    ws,
                    cnt,
                    batch: arr(&m.batch, "batch")?,
                    a_bs: arr(&m.a_batch_strides, "batch stride")?,
                    b_bs: arr(&m.b_batch_strides, "batch stride")?,
                    nbatch: nb as i32,
                    m: i("m", m.m)?,
                    n: i("n", m.n)?,
                    k: i("k", m.k)?,
                    lda_m: i("lda_m", m.lda_m)?,
                    lda_k: i("lda_k", m.lda_k)?,
                    ldb_k: i("ldb_k", ldb_k)?,
                    ldb_n: i("ldb_n", ldb_n)?,
                    bias_sm: i("bias stride", m.bias_stride_m)?,
                    bias_sn: i("bias stride", m.bias_stride_n)?,
                    bias_sb: i("bias batch stride", m.bias_stride_batch)?,
                    alpha: m.alpha,
                    beta: m.beta,
                    has_bias: m.has_bias as i32,
                    has_residual: m.has_residual as i32,
                    act,
                    act_lo,
                    act_hi,
                    m_tiles: to_u32(k, g.m_tiles)?,
                    n_tiles: to_u32(k, g.n_tiles)?,
                    splits: to_u32(k, g.splits)?,
                    ksplit: to_i32(k, "K split", g.ksplit)?,
                    a_vec: a_vec as i32,
                    b_vec,
                };
                let family = self.weights_family(k, g.tile.matmul_family(self.precision))?;
                Ok(Launch {
                    family,
                    tiles,
                    params: Params::MatMul(p),
                })
            }
            KernelOp::Pool(s) => {
                expect_inputs(1)?;
                let total = u(s.n) * u(s.c) * u(s.oh) * u(s.ow);
                let x = self.buf(
                    k,
                    self.input(k, 0)?,
                    f32_,
                    u(s.n) * u(s.c) * u(s.h) * u(s.w),
                )?;
                let out = self.buf(k, out_id, f32_, total)?;
                let tiles = ew_tiles(k, total)?;
                let i = |what: &str, v: usize| to_i32(k, what, v);
                let p = PoolParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    n: i("n", s.n)?,
                    c: i("c", s.c)?,
                    h: i("h", s.h)?,
                    w: i("w", s.w)?,
                    oh: i("oh", s.oh)?,
                    ow: i("ow", s.ow)?,
                    kh: i("kernel", s.kernel[0])?,
                    kw: i("kernel", s.kernel[1])?,
                    sh: i("stride", s.stride[0])?,
                    sw: i("stride", s.stride[1])?,
                    ph: i("pad", s.pad[0])?,
                    pw: i("pad", s.pad[1])?,
                    dh: i("dilation", s.dilation[0])?,
                    dw: i("dilation", s.dilation[1])?,
                    kind: match s.kind {
                        PoolKind::Max => 0,
                        PoolKind::Avg => 1,
                    },
                    count_include_pad: s.count_include_pad as i32,
                    padded_h: i("padded_h", s.padded_h)?,
                    padded_w: i("padded_w", s.padded_w)?,
                    total: total as u32,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::Pool,
                    tiles,
                    params: Params::Pool(p),
                })
            }
            KernelOp::ChannelAffine {
                outer,
                c,
                inner,
                act,
            } => {
                expect_inputs(3)?;
                let total = u(*outer) * u(*c) * u(*inner);
                let x = self.buf(k, self.input(k, 0)?, f32_, total)?;
                let scale = self.buf(k, self.input(k, 1)?, f32_, u(*c))?;
                let shift = self.buf(k, self.input(k, 2)?, f32_, u(*c))?;
                let out = self.buf(k, out_id, f32_, total)?;
                let tiles = ew_tiles(k, total)?;
                let (act, act_lo, act_hi) = act_code(*act);
                let p = AffineParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    scale,
                    shift,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    c: to_i32(k, "c", (*c).max(1))?,
                    inner: to_i32(k, "inner", (*inner).max(1))?,
                    act,
                    act_lo,
                    act_hi,
                    total: total as u32,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::ChannelAffine,
                    tiles,
                    params: Params::Affine(p),
                })
            }
            KernelOp::Binary {
                op,
                shape,
                a_strides,
                b_strides,
                act,
            } => {
                expect_inputs(2)?;
                let op = match op {
                    BinOp::Add => 0,
                    BinOp::Sub => 1,
                    BinOp::Mul => 2,
                    BinOp::Div => 3,
                    BinOp::Pow => 4,
                    BinOp::Min => 5,
                    BinOp::Max => 6,
                    BinOp::PRelu => 7,
                };
                let ops = [(0, f32_, a_strides), (1, f32_, b_strides)];
                let mut p = self.bcast(k, shape, &ops, out_id, f32_)?;
                let (act, act_lo, act_hi) = act_code(*act);
                (p.op, p.act, p.act_lo, p.act_hi) = (op, act, act_lo, act_hi);
                Ok(Launch {
                    family: Family::Binary,
                    tiles: p.hdr.tiles,
                    params: Params::Bcast(p),
                })
            }
            KernelOp::Compare {
                op,
                dtype,
                shape,
                a_strides,
                b_strides,
            } => {
                expect_inputs(2)?;
                let dcode = match dtype {
                    DType::F32 => 0,
                    DType::I64 => 1,
                    DType::Bool => 2,
                    other => {
                        return Err(ExecError::Unsupported(format!(
                            "kernel {k}: Compare on {other:?}"
                        )))
                    }
                };
                let ops = [(0, *dtype, a_strides), (1, *dtype, b_strides)];
                let mut p = self.bcast(k, shape, &ops, out_id, DType::Bool)?;
                p.op = match op {
                    CmpOp::Equal => 0,
                    CmpOp::Less => 1,
                    CmpOp::Greater => 2,
                    CmpOp::GreaterOrEqual => 3,
                    CmpOp::LessOrEqual => 4,
                    CmpOp::And => 5,
                    CmpOp::Or => 6,
                    CmpOp::Xor => 7,
                };
                p.dtype = dcode;
                Ok(Launch {
                    family: Family::Compare,
                    tiles: p.hdr.tiles,
                    params: Params::Bcast(p),
                })
            }
            KernelOp::Where {
                shape,
                c_strides,
                a_strides,
                b_strides,
            } => {
                expect_inputs(3)?;
                let ops = [
                    (0, DType::Bool, c_strides),
                    (1, f32_, a_strides),
                    (2, f32_, b_strides),
                ];
                let p = self.bcast(k, shape, &ops, out_id, f32_)?;
                Ok(Launch {
                    family: Family::Where,
                    tiles: p.hdr.tiles,
                    params: Params::Bcast(p),
                })
            }
            KernelOp::Unary { op, n } => {
                expect_inputs(1)?;
                let (code, a) = match op {
                    UnaryOp::Act(a) => (0, *a),
                    UnaryOp::Erf => (1, reef_model::Act::None),
                    UnaryOp::Sqrt => (2, reef_model::Act::None),
                    UnaryOp::Exp => (3, reef_model::Act::None),
                    UnaryOp::Neg => (4, reef_model::Act::None),
                    UnaryOp::Fn(f) => (unary_fn_code(*f), reef_model::Act::None),
                };
                let mut p = self.map(k, u(*n), (f32_, f32_))?;
                let (act, act_lo, act_hi) = act_code(a);
                (p.op, p.act, p.act_lo, p.act_hi) = (code, act, act_lo, act_hi);
                Ok(Launch {
                    family: Family::Unary,
                    tiles: p.hdr.tiles,
                    params: Params::Map(p),
                })
            }
            KernelOp::Not { n } => {
                expect_inputs(1)?;
                let p = self.map(k, u(*n), (DType::Bool, DType::Bool))?;
                Ok(Launch {
                    family: Family::Not,
                    tiles: p.hdr.tiles,
                    params: Params::Map(p),
                })
            }
            KernelOp::Cast { from, to, n } => {
                expect_inputs(1)?;
                let code = |d: &DType| -> Result<i32, ExecError> {
                    match d {
                        DType::F32 => Ok(0),
                        DType::I64 => Ok(1),
                        DType::I32 => Ok(2),
                        DType::Bool => Ok(3),
                        other => Err(ExecError::Unsupported(format!(
                            "kernel {k}: Cast involving {other:?}"
                        ))),
                    }
                };
                let (fc, tc) = (code(from)?, code(to)?);
                let mut p = self.map(k, u(*n), (*from, *to))?;
                (p.from, p.to) = (fc, tc);
                Ok(Launch {
                    family: Family::Cast,
                    tiles: p.hdr.tiles,
                    params: Params::Map(p),
                })
            }
            KernelOp::Copy {
                shape,
                offset,
                strides,
                elem_size,
            } => {
                expect_inputs(1)?;
                check_esz(k, *elem_size)?;
                if shape.len() > MAX_RANK || strides.len() != shape.len() {
                    return Err(invalid(k, "bad Copy rank"));
                }
                let total: u64 = shape.iter().map(|&d| u(d)).product();
                let (mut lo, mut hi) = (*offset as i128, *offset as i128);
                for (&d, &s) in shape.iter().zip(strides) {
                    let span = (d.saturating_sub(1) as i128) * s as i128;
                    if span < 0 {
                        lo += span;
                    } else {
                        hi += span;
                    }
                }
                let x_id = self.input(k, 0)?;
                let x = if total == 0 {
                    self.raw(k, x_id, *elem_size, 0)?
                } else {
                    if lo < 0 {
                        return Err(invalid(k, "Copy reads before its input"));
                    }
                    let need = u64::try_from(hi + 1).map_err(|_| invalid(k, "Copy span"))?;
                    self.raw(k, x_id, *elem_size, need)?
                };
                let out = self.raw(k, out_id, *elem_size, total)?;
                let tiles = ew_tiles(k, total)?;
                let shape32: Vec<i32> = shape
                    .iter()
                    .map(|&d| to_i32(k, "shape", d))
                    .collect::<Result<_, _>>()?;
                let p = CopyParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    offset: *offset,
                    strides: right_align(strides, 0),
                    shape: right_align(&shape32, 1),
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::Copy,
                    tiles,
                    params: Params::Copy(p),
                })
            }
            KernelOp::Concat {
                outer,
                inner,
                lens,
                elem_size,
            } => {
                check_esz(k, *elem_size)?;
                if lens.is_empty() {
                    return Err(invalid(k, "Concat of nothing"));
                }
                expect_inputs(lens.len())?;
                let total_len: usize = lens.iter().sum();
                let total = u(*outer) * u(total_len) * u(*inner);
                let out = self.raw(k, out_id, *elem_size, total)?;
                let table_off = self.table.len();
                let mut starts = Vec::with_capacity(lens.len() + 1);
                let mut acc = 0i64;
                for (i, &len) in lens.iter().enumerate() {
                    let ptr = self.raw(
                        k,
                        self.input(k, i)?,
                        *elem_size,
                        u(*outer) * u(len) * u(*inner),
                    )?;
                    self.table.push(ptr);
                    starts.push(acc);
                    acc += len as i64;
                }
                starts.push(acc);
                self.table.extend(starts.iter().map(|&s| s as u64));
                let tiles = ew_tiles(k, total)?;
                let p = ConcatParams {
                    hdr: self.hdr(k, tiles),
                    table: self.addr.table + 8 * table_off as u64,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    inner: to_i32(k, "inner", (*inner).max(1))?,
                    total_len: to_i32(k, "concat length", total_len.max(1))?,
                    nparts: to_i32(k, "parts", lens.len())?,
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::Concat,
                    tiles,
                    params: Params::Concat(p),
                })
            }
            KernelOp::Gather {
                outer,
                axis_len,
                count,
                inner,
                elem_size,
            } => {
                expect_inputs(2)?;
                check_esz(k, *elem_size)?;
                let total = u(*outer) * u(*count) * u(*inner);
                let x = self.raw(
                    k,
                    self.input(k, 0)?,
                    *elem_size,
                    u(*outer) * u(*axis_len) * u(*inner),
                )?;
                let idx = self.buf(k, self.input(k, 1)?, DType::I64, u(*count))?;
                let out = self.raw(k, out_id, *elem_size, total)?;
                let tiles = ew_tiles(k, total)?;
                let p = GatherParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    idx,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    axis_len: to_i32(k, "axis", *axis_len)?,
                    count: to_i32(k, "count", (*count).max(1))?,
                    inner: to_i32(k, "inner", (*inner).max(1))?,
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::Gather,
                    tiles,
                    params: Params::Gather(p),
                })
            }
            KernelOp::GatherElements {
                shape,
                data_shape,
                axis,
                elem_size,
            } => {
                expect_inputs(2)?;
                check_esz(k, *elem_size)?;
                let r = shape.len();
                if r == 0 || r > MAX_RANK || data_shape.len() != r || *axis >= r {
                    return Err(invalid(k, "bad GatherElements rank or axis"));
                }
                if (0..r).any(|d| d != *axis && shape[d] > data_shape[d]) {
                    return Err(invalid(k, "GatherElements indices reach past the data"));
                }
                let total: u64 = shape.iter().map(|&d| u(d)).product();
                let in_total: u64 = data_shape.iter().map(|&d| u(d)).product();
                let x = self.raw(k, self.input(k, 0)?, *elem_size, in_total)?;
                let idx = self.buf(k, self.input(k, 1)?, DType::I64, total)?;
                let out = self.raw(k, out_id, *elem_size, total)?;
                let tiles = ew_tiles(k, total)?;
                let shape32: Vec<i32> = shape
                    .iter()
                    .map(|&d| to_i32(k, "shape", d))
                    .collect::<Result<_, _>>()?;
                let strides: Vec<i64> = reef_model::tensor::strides(data_shape)
                    .iter()
                    .map(|&s| s as i64)
                    .collect();
                let p = GatherElementsParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    idx,
                    out,
                    strides: right_align(&strides, 0),
                    shape: right_align(&shape32, 1),
                    axis: to_i32(k, "axis", MAX_RANK - r + *axis)?,
                    axis_len: to_i32(k, "axis", data_shape[*axis])?,
                    esz: *elem_size as i32,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::GatherElements,
                    tiles,
                    params: Params::GatherElements(p),
                })
            }
            KernelOp::Pad {
                shape,
                in_shape,
                pads_begin,
                mode,
                value,
            } => {
                expect_inputs(1)?;
                let r = shape.len();
                if r > MAX_RANK || in_shape.len() != r || pads_begin.len() != r {
                    return Err(invalid(k, "bad Pad rank"));
                }
                let total: u64 = shape.iter().map(|&d| u(d)).product();
                let in_total: u64 = in_shape.iter().map(|&d| u(d)).product();
                let x = self.buf(k, self.input(k, 0)?, f32_, in_total)?;
                let out = self.buf(k, out_id, f32_, total)?;
                let tiles = ew_tiles(k, total)?;
                let conv = |v: &[usize], what: &str| -> Result<Vec<i32>, ExecError> {
                    v.iter().map(|&d| to_i32(k, what, d)).collect()
                };
                let pads: Vec<i32> = pads_begin
                    .iter()
                    .map(|&d| to_i32(k, "pad", d))
                    .collect::<Result<_, _>>()?;
                let p = PadParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    shape: right_align(&conv(shape, "shape")?, 1),
                    in_shape: right_align(&conv(in_shape, "shape")?, 1),
                    pads: right_align(&pads, 0),
                    mode: match mode {
                        PadMode::Constant => 0,
                        PadMode::Reflect => 1,
                        PadMode::Edge => 2,
                    },
                    value: *value,
                    total: to_u32(k, total)?,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::Pad,
                    tiles,
                    params: Params::Pad(p),
                })
            }
            KernelOp::ArgExtreme {
                max,
                last,
                outer,
                len,
                inner,
            } => {
                expect_inputs(1)?;
                let rows = u(*outer) * u(*inner);
                if rows == 0 {
                    return Ok(self.noop(k));
                }
                if *len == 0 {
                    return Err(invalid(k, "ArgMax / ArgMin over an empty axis"));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, rows * u(*len))?;
                let out = self.buf(k, out_id, DType::I64, rows)?;
                let tiles = tiles_for(k, rows)?;
                let p = ArgExtremeParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    len: to_i32(k, "len", *len)?,
                    inner: to_i32(k, "inner", *inner)?,
                    flags: i32::from(*max) | (i32::from(*last) << 1),
                };
                Ok(Launch {
                    family: Family::ArgExtreme,
                    tiles,
                    params: Params::ArgExtreme(p),
                })
            }
            KernelOp::Resize {
                shape,
                in_shape,
                scales,
                mode,
                coord,
            } => {
                expect_inputs(1)?;
                let r = shape.len();
                if r > MAX_RANK || in_shape.len() != r || scales.len() != r {
                    return Err(invalid(k, "bad Resize rank"));
                }
                let total: u64 = shape.iter().map(|&d| u(d)).product();
                let in_total: u64 = in_shape.iter().map(|&d| u(d)).product();
                let x = self.buf(k, self.input(k, 0)?, f32_, in_total)?;
                let out = self.buf(k, out_id, f32_, total)?;
                let tiles = ew_tiles(k, total)?;
                let conv = |v: &[usize]| -> Result<Vec<i32>, ExecError> {
                    v.iter().map(|&d| to_i32(k, "shape", d)).collect()
                };
                let (mode_code, nearest) = match mode {
                    ResizeMode::Nearest(m) => (0, resize_nearest_code(*m)),
                    ResizeMode::Linear => (1, 0),
                };
                let mut interp = [-1i32; 2];
                if *mode == ResizeMode::Linear {
                    let axes = reef_plan::kernel::resized_axes(shape, in_shape, scales);
                    if axes.len() > 2 {
                        return Err(invalid(k, "linear resize of more than two axes"));
                    }
                    for (slot, a) in interp.iter_mut().zip(axes) {
                        *slot = to_i32(k, "axis", a + MAX_RANK - r)?;
                    }
                }
                let p = ResizeParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    shape: right_align(&conv(shape)?, 1),
                    in_shape: right_align(&conv(in_shape)?, 1),
                    scales: right_align(scales, 1.0),
                    mode: mode_code,
                    coord: resize_coord_code(*coord),
                    nearest,
                    interp,
                    total: to_u32(k, total)?,
                };
                Ok(Launch {
                    family: Family::Resize,
                    tiles,
                    params: Params::Resize(p),
                })
            }
            KernelOp::Softmax {
                outer,
                axis,
                inner,
                pre,
            } => {
                expect_inputs(1 + pre.mask.is_some() as usize)?;
                if (pre.mask.is_some() || pre.scale.is_some()) && *inner != 1 {
                    return Err(invalid(k, "a softmax prologue needs the last axis"));
                }
                let rows = u(*outer) * u(*inner);
                let total = rows * u(*axis);
                if total == 0 {
                    return Ok(self.noop(k));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, total)?;
                let out = self.buf(k, out_id, f32_, total)?;
                let (mask, md) = match &pre.mask {
                    Some(m) => {
                        let need = u(m.extent(*outer, *axis));
                        (self.buf(k, self.input(k, 1)?, f32_, need)?, *m)
                    }
                    None => (0, NO_MASK),
                };
                let pre = prologue(k, pre, &md)?;
                let tiles = tiles_for(k, rows)?;
                let p = SoftmaxParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    mask,
                    outer: to_i32(k, "outer", *outer)?,
                    axis: to_i32(k, "axis", *axis)?,
                    inner: to_i32(k, "inner", *inner)?,
                    pre,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::Softmax,
                    tiles,
                    params: Params::Softmax(p),
                })
            }
            KernelOp::Attention(a) => {
                expect_inputs(3 + a.pre.mask.is_some() as usize)?;
                let Some(total) = a.out_elems() else {
                    return Err(invalid(k, "attention output size overflows"));
                };
                if total == 0 {
                    return Ok(self.noop(k));
                }
                if a.sk == 0 || a.d == 0 || a.d > ATTENTION_MAX_D || a.dv > ATTENTION_MAX_D {
                    return Err(invalid(
                        k,
                        format!(
                            "attention over {} keys of length {} / {} (1 key at least, rows of 1 to {ATTENTION_MAX_D})",
                            a.sk, a.d, a.dv
                        ),
                    ));
                }
                if !a.out_is_dense() {
                    return Err(invalid(k, "attention output strides overlap"));
                }
                // Elements an operand of `rows x cols` per problem reaches.
                let need = |st: &[usize; 4], rows: usize, cols: usize| -> u64 {
                    let dims = [a.batch, a.heads, rows, cols];
                    reach(&std::array::from_fn::<_, 4, _>(|i| (dims[i], st[i])))
                };
                let q = self.buf(k, self.input(k, 0)?, f32_, need(&a.q_strides, a.sq, a.d))?;
                let kb = self.buf(k, self.input(k, 1)?, f32_, need(&a.k_strides, a.sk, a.d))?;
                let v = self.buf(k, self.input(k, 2)?, f32_, need(&a.v_strides, a.sk, a.dv))?;
                let out = self.buf(k, out_id, f32_, u(total))?;
                let rows = a.batch * a.heads * a.sq;
                let (mask, md) = match &a.pre.mask {
                    Some(m) => {
                        let need = u(m.extent(rows, a.sk));
                        (self.buf(k, self.input(k, 3)?, f32_, need)?, *m)
                    }
                    None => (0, NO_MASK),
                };
                let pre = prologue(k, &a.pre, &md)?;
                // Half-height tiles where full ones would not fill every SM
                // twice (batch-1 BERT: 48 full tiles on 132 SMs).
                let problems = u(a.batch * a.heads);
                let full = problems * u(a.sq).div_ceil(ATTENTION_ROWS);
                let tile_rows = if full < 2 * u(self.sms as usize) {
                    ATTENTION_ROWS / 2
                } else {
                    ATTENTION_ROWS
                };
                let row_blocks = u(a.sq).div_ceil(tile_rows);
                let tiles = tiles_for(k, problems * row_blocks)?;
                let strides = |st: &[usize; 4], what: &str| -> Result<[i64; 4], ExecError> {
                    let mut r = [0i64; 4];
                    for (d, &x) in r.iter_mut().zip(st) {
                        *d = i64::try_from(x)
                            .map_err(|_| invalid(k, format!("{what} stride {x}")))?;
                    }
                    Ok(r)
                };
                let p = AttentionParams {
                    hdr: self.hdr(k, tiles),
                    q,
                    k: kb,
                    v,
                    mask,
                    out,
                    qs: strides(&a.q_strides, "Q")?,
                    ks: strides(&a.k_strides, "K")?,
                    vs: strides(&a.v_strides, "V")?,
                    os: strides(&a.out_strides, "output")?,
                    heads: to_i32(k, "heads", a.heads)?,
                    sq: to_i32(k, "query rows", a.sq)?,
                    sk: to_i32(k, "keys", a.sk)?,
                    d: to_i32(k, "key length", a.d)?,
                    dv: to_i32(k, "value length", a.dv)?,
                    row_blocks: to_i32(k, "row blocks", row_blocks)?,
                    tile_rows: tile_rows as i32,
                    pre,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::Attention,
                    tiles,
                    params: Params::Attention(p),
                })
            }
            KernelOp::LayerNorm { rows, cols, eps } => {
                expect_inputs(3)?;
                let total = u(*rows) * u(*cols);
                if total == 0 {
                    return Ok(self.noop(k));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, total)?;
                let gamma = self.buf(k, self.input(k, 1)?, f32_, u(*cols))?;
                let beta = self.buf(k, self.input(k, 2)?, f32_, u(*cols))?;
                let out = self.buf(k, out_id, f32_, total)?;
                let tiles = tiles_for(k, u(*rows))?;
                let p = LayerNormParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    gamma,
                    beta,
                    out,
                    rows: to_i32(k, "rows", *rows)?,
                    cols: to_i32(k, "cols", *cols)?,
                    eps: *eps,
                    pad0: 0,
                };
                Ok(Launch {
                    family: Family::LayerNorm,
                    tiles,
                    params: Params::LayerNorm(p),
                })
            }
            KernelOp::Reduce {
                kind,
                outer,
                len,
                inner,
            } => {
                expect_inputs(1)?;
                let rows = u(*outer) * u(*inner);
                if rows == 0 {
                    return Ok(self.noop(k));
                }
                let x = self.buf(k, self.input(k, 0)?, f32_, rows * u(*len))?;
                let out = self.buf(k, out_id, f32_, rows)?;
                let tiles = tiles_for(k, rows)?;
                let p = ReduceParams {
                    hdr: self.hdr(k, tiles),
                    x,
                    out,
                    outer: to_i32(k, "outer", *outer)?,
                    len: to_i32(k, "len", *len)?,
                    inner: to_i32(k, "inner", *inner)?,
                    kind: match kind {
                        ReduceKind::Mean => 0,
                        ReduceKind::Max => 1,
                        ReduceKind::Min => 2,
                        ReduceKind::Sum => 3,
                        ReduceKind::SumSquare => 4,
                        ReduceKind::SumAbs => 5,
                        ReduceKind::L2 => 6,
                        ReduceKind::SqrtSum => 7,
                    },
                };
                Ok(Launch {
                    family: Family::Reduce,
                    tiles,
                    params: Params::Reduce(p),
                })
            }
        }
    }

    /// Shared part of the broadcasting families: operands `(input, dtype, strides)`.
    fn bcast(
        &self,
        k: usize,
        shape: &[usize],
        operands: &[(usize, DType, &Vec<usize>)],
        out_id: BufferId,
        out_dtype: DType,
    ) -> Result<BcastParams, ExecError> {
        let r = shape.len();
        if r > MAX_RANK {
            return Err(ExecError::Unsupported(format!(
                "kernel {k}: rank {r} > {MAX_RANK}"
            )));
        }
        let total: u64 = shape.iter().map(|&d| d as u64).product();
        let mut ptrs = [0u64; 3];
        let mut strides = [[0i32; MAX_RANK]; 3];
        for (slot, &(input, dtype, st)) in operands.iter().enumerate() {
            if st.len() != r {
                return Err(invalid(
                    k,
                    format!("operand {input} has {} strides for rank {r}", st.len()),
                ));
            }
            let need = if total == 0 {
                0
            } else {
                shape
                    .iter()
                    .zip(st.iter())
                    .map(|(&d, &s)| (d as u64 - 1) * s as u64)
                    .sum::<u64>()
                    + 1
            };
            ptrs[slot] = self.buf(k, self.input(k, input)?, dtype, need)?;
            let st32: Vec<i32> = st
                .iter()
                .map(|&s| to_i32(k, "stride", s))
                .collect::<Result<_, _>>()?;
            strides[slot] = right_align(&st32, 0);
        }
        let shape32: Vec<i32> = shape
            .iter()
            .map(|&d| to_i32(k, "shape", d))
            .collect::<Result<_, _>>()?;
        let out = self.buf(k, out_id, out_dtype, total)?;
        let tiles = ew_tiles(k, total)?;
        // Slot order: binary/compare use (a, b); where uses (cond, a, b).
        let (a, b, c, sa, sb, sc) = if operands.len() == 3 {
            (
                ptrs[1], ptrs[2], ptrs[0], strides[1], strides[2], strides[0],
            )
        } else {
            (ptrs[0], ptrs[1], 0, strides[0], strides[1], [0; MAX_RANK])
        };
        Ok(BcastParams {
            hdr: self.hdr(k, tiles),
            a,
            b,
            c,
            out,
            shape: right_align(&shape32, 1),
            sa,
            sb,
            sc,
            op: 0,
            dtype: 0,
            act: 0,
            act_lo: 0.0,
            act_hi: 0.0,
            total: to_u32(k, total)?,
        })
    }

    /// Shared part of the one-input maps over `n` elements.
    fn map(&self, k: usize, n: u64, (from, to): (DType, DType)) -> Result<MapParams, ExecError> {
        let x = self.buf(k, self.input(k, 0)?, from, n)?;
        let out = self.buf(k, self.plan.kernels[k].output, to, n)?;
        let tiles = ew_tiles(k, n)?;
        Ok(MapParams {
            hdr: self.hdr(k, tiles),
            x,
            out,
            total: to_u32(k, n)?,
            ..Default::default()
        })
    }
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
