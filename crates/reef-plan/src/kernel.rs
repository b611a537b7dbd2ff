//! The kernel set: the contract between the compiler and every backend. Each
//! [`KernelOp`] says exactly what one launch computes; the CPU backend and
//! both CUDA variants (RT and BE) must compute the same function, and a
//! kernel never writes a buffer it reads (kernels are idempotent, so a killed
//! kernel can simply run again).

use reef_model::{Act, DType, Reduction, UnaryFn};
use serde::{Deserialize, Serialize};

/// Highest tensor rank the strided kernels handle.
pub const MAX_RANK: usize = 6;

/// 2-D convolution over NCHW with a fused epilogue:
/// `out[n,k,y,x] = act(Σ_{c,r,s} in[n, g*C/G + c, y*sh - ph + r*dh, x*sw - pw + s*dw] · w[k,c,r,s]
///                 + bias[k] + residual[n,k,y,x])`, zero padding.
/// Inputs: `x`, `w` (`[K, C/groups, R, S]`), then `bias` if `has_bias`, then
/// `residual` (same shape as the output) if `has_residual`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub k: usize,
    /// Kernel height.
    pub r: usize,
    /// Kernel width.
    pub s: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Stride (y, x).
    pub stride: [usize; 2],
    /// Padding at the top and left (bottom/right padding is implied by oh/ow).
    pub pad: [usize; 2],
    /// Dilation (y, x).
    pub dilation: [usize; 2],
    /// Groups (depthwise when groups == c == k).
    pub groups: usize,
    /// A bias input follows the weight.
    pub has_bias: bool,
    /// A residual input follows (added before the activation).
    pub has_residual: bool,
    /// Activation.
    pub act: Act,
}

/// Batched matrix product with a fused epilogue:
/// `out[b,i,j] = act(alpha · Σ_k A[b,i,k] · B[b,k,j] + beta · bias[i,j] + residual[b,i,j])`.
/// A is read at `a_off(b) + i*lda_m + k*lda_k`, B at `b_off(b) + k*ldb_k + j*ldb_n`,
/// where the batch offset of A is `Σ_d idx_d · a_batch_strides[d]` over the batch
/// shape (0 strides broadcast), likewise for B. Output is contiguous `[batch.., m, n]`.
/// Bias is read at `p*bias_stride_batch + i*bias_stride_m + j*bias_stride_n`
/// (`p`: the flat batch index; 0 strides broadcast).
/// Inputs: `a`, `b`, then `bias` if `has_bias`, then `residual` if `has_residual`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatMulSpec {
    /// Batch shape (possibly empty).
    pub batch: Vec<usize>,
    /// Batch strides of A in elements (one per batch dim).
    pub a_batch_strides: Vec<usize>,
    /// Batch strides of B in elements.
    pub b_batch_strides: Vec<usize>,
    /// Rows of the output.
    pub m: usize,
    /// Columns of the output.
    pub n: usize,
    /// Reduction length.
    pub k: usize,
    /// A's stride along m.
    pub lda_m: usize,
    /// A's stride along k.
    pub lda_k: usize,
    /// B's stride along k.
    pub ldb_k: usize,
    /// B's stride along n.
    pub ldb_n: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the bias.
    pub beta: f32,
    /// A bias input follows.
    pub has_bias: bool,
    /// Bias stride along m (0 broadcasts).
    pub bias_stride_m: usize,
    /// Bias stride along n (0 broadcasts).
    pub bias_stride_n: usize,
    /// Bias stride per flat batch index (0: the same bias for every batch).
    #[serde(default)]
    pub bias_stride_batch: usize,
    /// A residual input (contiguous, output-shaped) follows.
    pub has_residual: bool,
    /// Activation.
    pub act: Act,
}

impl MatMulSpec {
    /// A plain `[m, k] x [k, n]` product: row-major operands, no batch, unit
    /// scales, no bias, residual or activation (set what differs with
    /// struct update syntax).
    pub fn row_major(m: usize, n: usize, k: usize) -> Self {
        MatMulSpec {
            batch: vec![],
            a_batch_strides: vec![],
            b_batch_strides: vec![],
            m,
            n,
            k,
            lda_m: k,
            lda_k: 1,
            ldb_k: n,
            ldb_n: 1,
            alpha: 1.0,
            beta: 1.0,
            has_bias: false,
            bias_stride_m: 0,
            bias_stride_n: 0,
            bias_stride_batch: 0,
            has_residual: false,
            act: Act::None,
        }
    }

    /// Number of matrices in the batch.
    pub fn batch_count(&self) -> usize {
        self.batch.iter().product()
    }
}

/// 2-D max or average pooling over NCHW. Inputs: `x`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Max or average.
    pub kind: reef_model::PoolKind,
    /// Batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Window (y, x).
    pub kernel: [usize; 2],
    /// Stride (y, x).
    pub stride: [usize; 2],
    /// Padding top, left.
    pub pad: [usize; 2],
    /// Dilation (y, x).
    pub dilation: [usize; 2],
    /// Average divides by the full window (padding counted) instead of the
    /// number of in-bounds cells. Cells past the bottom/right padding (ceil
    /// mode) are never counted.
    pub count_include_pad: bool,
    /// Padded height (h + top + bottom padding), bounds the counted window.
    pub padded_h: usize,
    /// Padded width.
    pub padded_w: usize,
}

/// What a softmax kernel applies to each input element before the softmax:
/// `v = x * c` or `x / c` (`scale`), then `v + mask` (`mask`). This is
/// BERT's `scores / sqrt(d) + attention_mask`, absorbed into the softmax with
/// the same f32 operations in the same order as the separate kernels.
/// Only for softmax over the last axis (`inner == 1`).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct SoftmaxPre {
    /// [`BinOp::Mul`] or [`BinOp::Div`] by a constant.
    pub scale: Option<(BinOp, f32)>,
    /// An additive mask (the kernel's second input).
    pub mask: Option<SoftmaxMask>,
}

/// Where a softmax mask element lies: element `j` of softmax row `r` adds
/// `mask[((r / div) % modulo) * ld + j * col_stride]` (a mask broadcast over
/// the rows, e.g. `[batch, 1, 1, seq]` over `[batch, heads, seq, seq]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoftmaxMask {
    /// Rows that share one mask row.
    pub div: usize,
    /// Distinct mask rows (cycled).
    pub modulo: usize,
    /// Elements between mask rows.
    pub ld: usize,
    /// Elements between mask columns (0: one value per row).
    pub col_stride: usize,
}

impl SoftmaxMask {
    /// Mask elements a softmax of `rows` rows of `axis` elements reads.
    pub fn extent(&self, rows: usize, axis: usize) -> usize {
        if rows == 0 || axis == 0 {
            return 0;
        }
        // Mask rows run 0..=(rows - 1) / div, cycled at modulo.
        let max_row = ((rows - 1) / self.div.max(1)).min(self.modulo.max(1) - 1);
        max_row
            .saturating_mul(self.ld)
            .saturating_add((axis - 1).saturating_mul(self.col_stride))
            .saturating_add(1)
    }

    /// The mask offset of element `j` of row `r`.
    pub fn offset(&self, r: usize, j: usize) -> usize {
        r / self.div.max(1) % self.modulo.max(1) * self.ld + j * self.col_stride
    }
}

impl SoftmaxPre {
    /// Applies the prologue to element `j` of row `r` (`mask`: the mask input).
    pub fn apply(&self, x: f32, r: usize, j: usize, mask: &[f32]) -> f32 {
        let mut v = x;
        if let Some((op, c)) = self.scale {
            v = if op == BinOp::Div { v / c } else { v * c };
        }
        if let Some(m) = &self.mask {
            v += mask[m.offset(r, j)];
        }
        v
    }
}

/// Elementwise binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    /// a + b.
    Add,
    /// a - b.
    Sub,
    /// a * b.
    Mul,
    /// a / b.
    Div,
    /// powf(a, b).
    Pow,
    /// min(a, b); NaN if either is.
    Min,
    /// max(a, b); NaN if either is.
    Max,
    /// a < 0 ? a b : a (PRelu, b the slope).
    PRelu,
}

impl BinOp {
    /// Applies the operator to one pair (the reference every backend matches).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Pow => a.powf(b),
            BinOp::Min | BinOp::Max if a.is_nan() || b.is_nan() => f32::NAN,
            BinOp::Min => a.min(b),
            BinOp::Max => a.max(b),
            BinOp::PRelu => {
                if a < 0.0 {
                    a * b
                } else {
                    a
                }
            }
        }
    }
}

/// Elementwise comparisons and logical operators (bool output, one byte per
/// element).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CmpOp {
    /// a == b.
    Equal,
    /// a < b.
    Less,
    /// a > b.
    Greater,
    /// a >= b.
    GreaterOrEqual,
    /// a <= b.
    LessOrEqual,
    /// a && b (nonzero is true).
    And,
    /// a || b.
    Or,
    /// a != b as truth values.
    Xor,
}

/// Elementwise unary operators on f32.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    /// An activation (Relu, Clip, Gelu, Sigmoid, Tanh; None copies).
    Act(Act),
    /// erf(x).
    Erf,
    /// sqrt(x).
    Sqrt,
    /// exp(x).
    Exp,
    /// -x.
    Neg,
    /// A function of [`UnaryFn`] (Abs, Log, Floor, ...).
    Fn(UnaryFn),
}

/// What one reduction kernel computes over its axis. An ONNX reduction over
/// several separate runs of axes is a kernel per run ([`ReduceKind::for_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceKind {
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
    /// Sum.
    Sum,
    /// Sum of squares.
    SumSquare,
    /// Sum of absolute values.
    SumAbs,
    /// Square root of the sum of squares.
    L2,
    /// Square root of the sum (the last run of an L2 over several runs).
    SqrtSum,
}

impl ReduceKind {
    /// The kernel for one run of a [`Reduction`] over several runs of axes:
    /// `first` reads the input, `last` writes the output (both for one run).
    pub fn for_run(r: Reduction, first: bool, last: bool) -> ReduceKind {
        match r {
            Reduction::Mean => ReduceKind::Mean,
            Reduction::Max => ReduceKind::Max,
            Reduction::Min => ReduceKind::Min,
            Reduction::Sum => ReduceKind::Sum,
            Reduction::SumSquare if first => ReduceKind::SumSquare,
            Reduction::L1 if first => ReduceKind::SumAbs,
            Reduction::SumSquare | Reduction::L1 => ReduceKind::Sum,
            Reduction::L2 => match (first, last) {
                (true, true) => ReduceKind::L2,
                (true, false) => ReduceKind::SumSquare,
                (false, true) => ReduceKind::SqrtSum,
                (false, false) => ReduceKind::Sum,
            },
        }
    }

    /// The value each element contributes before combining.
    pub fn pre(self, x: f32) -> f32 {
        match self {
            ReduceKind::SumSquare | ReduceKind::L2 => x * x,
            ReduceKind::SumAbs => x.abs(),
            _ => x,
        }
    }

    /// The result from the combined value of `len` elements.
    pub fn post(self, acc: f32, len: usize) -> f32 {
        match self {
            ReduceKind::Mean => acc / len as f32,
            ReduceKind::L2 | ReduceKind::SqrtSum => acc.sqrt(),
            _ => acc,
        }
    }
}

/// A broadcast operand view: element `idx` of the output reads
/// `Σ_d idx_d · strides[d]` (0 strides broadcast). Shapes and strides are
/// padded on the left to the output rank.
pub type Strides = Vec<usize>;

/// The axes a resize interpolates along: those whose length or scale
/// changes.
pub fn resized_axes(shape: &[usize], in_shape: &[usize], scales: &[f64]) -> Vec<usize> {
    (0..shape.len())
        .filter(|&d| {
            shape[d] != in_shape.get(d).copied().unwrap_or(0) || scales.get(d) != Some(&1.0)
        })
        .collect()
}

/// Whether `(a, ia)` wins over `(b, ib)` in an ArgMax (`max`) or ArgMin:
/// the larger (smaller) value, ties to the smaller index (the larger with
/// `last`). A NaN never wins and is never beaten. The reference every
/// backend matches.
pub fn arg_beats(a: f32, ia: usize, b: f32, ib: usize, max: bool, last: bool) -> bool {
    if a != b {
        if max {
            a > b
        } else {
            a < b
        }
    } else if last {
        ia > ib
    } else {
        ia < ib
    }
}

/// What one kernel computes. See each variant for its inputs, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum KernelOp {
    /// Convolution; inputs `x, w, [bias], [residual]`.
    Conv(ConvSpec),
    /// Matrix product; inputs `a, b, [bias], [residual]`.
    MatMul(MatMulSpec),
    /// Pooling; inputs `x`.
    Pool(PoolSpec),
    /// `out[o, c, i] = act(x[o, c, i] · scale[c] + shift[c])` over `[outer, c, inner]`
    /// (unfused BatchNorm); inputs `x, scale, shift`.
    ChannelAffine {
        /// Product of leading dims.
        outer: usize,
        /// Channels.
        c: usize,
        /// Product of trailing dims.
        inner: usize,
        /// Activation.
        act: Act,
    },
    /// `out = act(a op b)` with broadcasting over `shape`; inputs `a, b`.
    Binary {
        /// Operator.
        op: BinOp,
        /// Output shape (rank ≤ [`MAX_RANK`]).
        shape: Vec<usize>,
        /// A's strides.
        a_strides: Strides,
        /// B's strides.
        b_strides: Strides,
        /// Activation applied after the operator.
        act: Act,
    },
    /// `out = (a op b) as u8`, f32 or i64 operands (`dtype`); inputs `a, b`.
    Compare {
        /// Operator.
        op: CmpOp,
        /// Operand type.
        dtype: DType,
        /// Output shape.
        shape: Vec<usize>,
        /// A's strides.
        a_strides: Strides,
        /// B's strides.
        b_strides: Strides,
    },
    /// `out = cond != 0 ? a : b`, cond bool (u8), a/b f32; inputs `cond, a, b`.
    Where {
        /// Output shape.
        shape: Vec<usize>,
        /// Condition strides.
        c_strides: Strides,
        /// A's strides.
        a_strides: Strides,
        /// B's strides.
        b_strides: Strides,
    },
    /// `out[i] = f(x[i])` over `n` f32 elements; inputs `x`.
    Unary {
        /// Function.
        op: UnaryOp,
        /// Elements.
        n: usize,
    },
    /// Logical not over `n` bool bytes; inputs `x`.
    Not {
        /// Elements.
        n: usize,
    },
    /// Strided copy of elements of `elem_size` bytes (Transpose, Slice,
    /// Expand, materialised views): `out[idx] = x[offset + Σ_d idx_d · strides[d]]`
    /// over `shape`, output contiguous. Strides may be negative or 0. Inputs `x`.
    Copy {
        /// Output shape.
        shape: Vec<usize>,
        /// Element offset of the first read.
        offset: i64,
        /// Input strides per output dim.
        strides: Vec<i64>,
        /// Bytes per element (1, 4 or 8).
        elem_size: usize,
    },
    /// Concatenation of inputs viewed as `[outer, len_i, inner]` into
    /// `[outer, Σ len_i, inner]`; elements of `elem_size` bytes. Inputs: all parts.
    Concat {
        /// Product of dims before the axis.
        outer: usize,
        /// Product of dims after the axis.
        inner: usize,
        /// Axis length of each input.
        lens: Vec<usize>,
        /// Bytes per element.
        elem_size: usize,
    },
    /// `out[o, j, i] = x[o, idx[j], i]` with x viewed as `[outer, axis_len, inner]`
    /// and `count` i64 indices (negative wrap; out-of-range gives 0). Inputs `x, idx`.
    Gather {
        /// Product of dims before the axis.
        outer: usize,
        /// Length of the gathered axis.
        axis_len: usize,
        /// Number of indices.
        count: usize,
        /// Product of dims after the axis.
        inner: usize,
        /// Bytes per element.
        elem_size: usize,
    },
    /// Element-wise gather along an axis (ONNX GatherElements): `x` has shape
    /// `data_shape`, the i64 indices and the output have shape `shape` (same
    /// rank, at most [`MAX_RANK`], `shape[d] <= data_shape[d]` off the axis),
    /// and `out[p] = x[p with p_axis replaced by idx[p]]`, all row-major.
    /// Negative indices wrap; out-of-range ones give 0. Elements of
    /// `elem_size` bytes. Inputs `x, idx`.
    GatherElements {
        /// Output and indices shape.
        shape: Vec<usize>,
        /// Shape of `x`.
        data_shape: Vec<usize>,
        /// The gathered axis (< rank).
        axis: usize,
        /// Bytes per element (1, 4 or 8).
        elem_size: usize,
    },
    /// Constant/reflect/edge padding of f32 `in_shape` to `shape`; `pads_begin`
    /// per dim (may be negative = crop). Inputs `x`.
    Pad {
        /// Output shape.
        shape: Vec<usize>,
        /// Input shape.
        in_shape: Vec<usize>,
        /// Leading pad per dim.
        pads_begin: Vec<i64>,
        /// Mode.
        mode: reef_model::PadMode,
        /// Constant value.
        value: f32,
    },
    /// Resize of f32 `in_shape` to `shape` (same rank): along every axis the
    /// output index maps to an input coordinate by `coord` with `scales[d]`
    /// ([`reef_model::resize`]); nearest reads one element, linear blends
    /// the two neighbours along each axis whose length or scale changes (at
    /// most two). Inputs `x`.
    Resize {
        /// Output shape.
        shape: Vec<usize>,
        /// Input shape.
        in_shape: Vec<usize>,
        /// Scale per axis.
        scales: Vec<f64>,
        /// Interpolation.
        mode: reef_model::resize::ResizeMode,
        /// Coordinate transformation.
        coord: reef_model::resize::CoordMode,
    },
    /// Softmax over the middle axis of `[outer, axis, inner]`, of each
    /// element after the prologue `pre`; inputs `x` (and the mask, when
    /// `pre.mask` is set).
    Softmax {
        /// Product of leading dims.
        outer: usize,
        /// Softmax axis length.
        axis: usize,
        /// Product of trailing dims.
        inner: usize,
        /// Scale and additive mask applied first (none: plain softmax).
        #[serde(default)]
        pre: SoftmaxPre,
    },
    /// Layer normalisation of each row of `[rows, cols]`:
    /// `(x - mean) / sqrt(var + eps) · gamma + beta` (biased variance); inputs
    /// `x, gamma, beta` (gamma and beta have `cols` elements).
    LayerNorm {
        /// Rows.
        rows: usize,
        /// Row length.
        cols: usize,
        /// Epsilon.
        eps: f32,
    },
    /// Reduction over the middle axis of `[outer, len, inner]`; inputs `x`.
    Reduce {
        /// Mean or max.
        kind: ReduceKind,
        /// Product of leading dims.
        outer: usize,
        /// Reduced length.
        len: usize,
        /// Product of trailing dims.
        inner: usize,
    },
    /// Index (i64) of the largest or smallest element along the middle axis
    /// of f32 `[outer, len, inner]` into `[outer, inner]`; ties pick the
    /// first index, or the last with `last`. Inputs `x`.
    ArgExtreme {
        /// Largest (else smallest).
        max: bool,
        /// Ties pick the last index.
        last: bool,
        /// Product of leading dims.
        outer: usize,
        /// Reduced length (at least 1).
        len: usize,
        /// Product of trailing dims.
        inner: usize,
    },
    /// Fused attention (QK^T, scale, mask, softmax and PV in one kernel).
    Attention(AttentionSpec),
    /// Type conversion of `n` elements; inputs `x`.
    Cast {
        /// From.
        from: DType,
        /// To.
        to: DType,
        /// Elements.
        n: usize,
    },
}

impl KernelOp {
    /// Short kind name (kernel family), e.g. "conv".
    pub fn kind(&self) -> &'static str {
        match self {
            KernelOp::Conv(_) => "conv",
            KernelOp::MatMul(_) => "matmul",
            KernelOp::Attention(_) => "attention",
            KernelOp::Pool(_) => "pool",
            KernelOp::ChannelAffine { .. } => "channel_affine",
            KernelOp::Binary { .. } => "binary",
            KernelOp::Compare { .. } => "compare",
            KernelOp::Where { .. } => "where",
            KernelOp::Unary { .. } => "unary",
            KernelOp::Not { .. } => "not",
            KernelOp::Copy { .. } => "copy",
            KernelOp::Concat { .. } => "concat",
            KernelOp::Gather { .. } => "gather",
            KernelOp::GatherElements { .. } => "gather_elements",
            KernelOp::Pad { .. } => "pad",
            KernelOp::Resize { .. } => "resize",
            KernelOp::Softmax { .. } => "softmax",
            KernelOp::LayerNorm { .. } => "layernorm",
            KernelOp::Reduce { .. } => "reduce",
            KernelOp::ArgExtreme { .. } => "arg_extreme",
            KernelOp::Cast { .. } => "cast",
        }
    }

    /// A one-line description for profiles: the op and its sizes, e.g.
    /// `conv 3x3/2 64->128 28x28 n1` or `matmul 12x[128x64x128]`.
    pub fn describe(&self) -> String {
        match self {
            KernelOp::Conv(c) => {
                let g = if c.groups == 1 {
                    String::new()
                } else {
                    format!(" g{}", c.groups)
                };
                format!(
                    "conv {}x{}/{} {}->{}{g} {}x{} n{}",
                    c.r, c.s, c.stride[0], c.c, c.k, c.oh, c.ow, c.n
                )
            }
            KernelOp::MatMul(m) => {
                let b = m.batch_count();
                let lead = if b > 1 {
                    format!("{b}x")
                } else {
                    String::new()
                };
                format!("matmul {lead}[{}x{}x{}]", m.m, m.n, m.k)
            }
            KernelOp::Attention(a) => format!(
                "attention {}x{}x[{}x{}x{}/{}]",
                a.batch, a.heads, a.sq, a.sk, a.d, a.dv
            ),
            other => other.kind().to_string(),
        }
    }

    /// Floating-point operations (multiply-add = 2), for reports.
    pub fn flops(&self) -> u64 {
        match self {
            KernelOp::Conv(c) => {
                2 * (c.n * c.k * c.oh * c.ow) as u64 * (c.c / c.groups * c.r * c.s) as u64
            }
            KernelOp::MatMul(m) => 2 * (m.batch_count() * m.m * m.n) as u64 * m.k as u64,
            KernelOp::Attention(a) => [a.batch, a.heads, a.sq, a.sk, a.d + a.dv]
                .iter()
                .fold(2u64, |x, &y| x.saturating_mul(y as u64)),
            _ => 0,
        }
    }
}

/// The longest query, key and value rows an [`AttentionSpec`] may have (the
/// GPU kernel keeps a block's queries and one key chunk in shared memory).
pub const ATTENTION_MAX_D: usize = 128;

/// Fused scaled-dot-product attention over `batch x heads` problems: for
/// query row `i` of problem `(b, h)`,
/// `out[b, h, i, :] = Σ_j softmax_j(pre(q[b, h, i, :] · k[b, h, j, :])) · v[b, h, j, :]`
/// where `pre` is the scale and mask of [`SoftmaxPre`] (mask row
/// `(b · heads + h) · sq + i`, as the unfused softmax over `[.., sq, sk]`
/// sees it). Every operand is read, and the output written, through element
/// strides over `(b, h, row, col)`, so head splits and the merge transpose
/// after it cost no copies. All arithmetic is f32 (no TF32 rounding).
/// Inputs `q, k, v, [mask]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttentionSpec {
    /// Leading problem dimension.
    pub batch: usize,
    /// Second problem dimension.
    pub heads: usize,
    /// Query rows per problem.
    pub sq: usize,
    /// Keys (and values) per problem.
    pub sk: usize,
    /// Query and key length.
    pub d: usize,
    /// Value (and output) length.
    pub dv: usize,
    /// Q's element strides over `(b, h, i, d)`.
    pub q_strides: [usize; 4],
    /// K's element strides over `(b, h, j, d)`.
    pub k_strides: [usize; 4],
    /// V's element strides over `(b, h, j, e)`.
    pub v_strides: [usize; 4],
    /// The output's element strides over `(b, h, i, e)`; a permutation of a
    /// dense layout (validated: no two elements share a place).
    pub out_strides: [usize; 4],
    /// Scale and additive mask applied to each score first.
    pub pre: SoftmaxPre,
}

impl AttentionSpec {
    /// The output's elements (`batch · heads · sq · dv`).
    pub fn out_elems(&self) -> Option<usize> {
        [self.batch, self.heads, self.sq, self.dv]
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
    }

    /// Whether the output strides place every element of the
    /// `[batch, heads, sq, dv]` output at its own offset below
    /// [`AttentionSpec::out_elems`] (a permutation of a dense layout).
    pub fn out_is_dense(&self) -> bool {
        let dims = [self.batch, self.heads, self.sq, self.dv];
        if dims.contains(&0) {
            return true;
        }
        // Sorted by stride (size-1 dims anywhere), each stride must equal
        // the product of the dims below it.
        let mut order: Vec<usize> = (0..4).filter(|&i| dims[i] > 1).collect();
        order.sort_by_key(|&i| self.out_strides[i]);
        let mut expect = 1usize;
        for i in order {
            if self.out_strides[i] != expect {
                return false;
            }
            expect = expect.saturating_mul(dims[i]);
        }
        true
    }
}

/// One launch of the schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kernel {
    /// Name (the graph nodes it came from).
    pub name: String,
    /// What it computes.
    pub op: KernelOp,
    /// Buffers read, in the op's order.
    pub inputs: Vec<crate::plan::BufferId>,
    /// Buffer written.
    pub output: crate::plan::BufferId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_extent_covers_its_highest_row_not_its_last() {
        // Rows 0..3 cycle over mask rows 0, 1, 0: the last row reads mask
        // row 0, yet row 1 is read too.
        let m = SoftmaxMask {
            div: 1,
            modulo: 2,
            ld: 10,
            col_stride: 1,
        };
        assert_eq!(m.extent(3, 4), 10 + 3 + 1);
        assert_eq!(m.extent(1, 4), 4);
        assert_eq!(m.extent(0, 4), 0);
        // Rows that never reach the last mask row.
        let m = SoftmaxMask { modulo: 8, ..m };
        assert_eq!(m.extent(3, 4), 2 * 10 + 3 + 1);
    }

    #[test]
    fn attention_output_layouts_must_not_overlap() {
        let a = |out_strides| AttentionSpec {
            batch: 2,
            heads: 3,
            sq: 4,
            sk: 5,
            d: 6,
            dv: 7,
            q_strides: [0; 4],
            k_strides: [0; 4],
            v_strides: [0; 4],
            out_strides,
            pre: SoftmaxPre::default(),
        };
        // [b, h, i, e] dense, and BERT's merged [b, i, h, e].
        assert!(a([84, 28, 7, 1]).out_is_dense());
        assert!(a([84, 7, 21, 1]).out_is_dense());
        assert_eq!(a([84, 7, 21, 1]).out_elems(), Some(168));
        // Heads written over each other, or a gap between rows.
        assert!(!a([84, 0, 7, 1]).out_is_dense());
        assert!(!a([168, 56, 14, 1]).out_is_dense());
    }

    #[test]
    fn describe_names_the_op_and_its_sizes() {
        let conv = KernelOp::Conv(ConvSpec {
            n: 1,
            c: 64,
            h: 56,
            w: 56,
            k: 128,
            r: 3,
            s: 3,
            oh: 28,
            ow: 28,
            stride: [2, 2],
            pad: [1, 1],
            dilation: [1, 1],
            groups: 1,
            has_bias: true,
            has_residual: false,
            act: Act::Relu,
        });
        assert_eq!(conv.describe(), "conv 3x3/2 64->128 28x28 n1");
        let affine = KernelOp::ChannelAffine {
            outer: 1,
            c: 3,
            inner: 4,
            act: Act::None,
        };
        assert_eq!(affine.describe(), affine.kind());
    }
}
