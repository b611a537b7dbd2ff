//! Kernel parameter structs, passed by value to the generic kernels. Each is
//! `#[repr(C)]` and mirrors the struct of the same name in `kernels/*.cu`
//! field for field: only u64 pointers, i64/i32/u32/f32 scalars and fixed
//! arrays, ordered largest alignment first, with explicit padding so the
//! layouts carry no implicit padding (checked by `bytemuck::Pod`) and their
//! sizes are multiples of 8 (checked by the tests against values recomputed
//! from the C declarations).

use bytemuck::{Pod, Zeroable};
use cudarc::driver::DeviceRepr;

/// Highest rank of the strided kernels (mirrors `REEF_MAX_RANK`).
pub const MAX_RANK: usize = 6;
/// Threads per block of the element-wise families (`REEF_EW_THREADS`).
pub const EW_THREADS: u32 = 256;
/// Output elements per element-wise tile (`REEF_EW_TILE`).
pub const EW_TILE: u64 = 1024;
/// Threads per block of the row families (`REEF_ROW_THREADS`).
pub const ROW_THREADS: u32 = 256;
/// Threads per block of the fused attention family (`REEF_ATT_THREADS`):
/// two key groups of four warps.
pub const ATTENTION_THREADS: u32 = 256;
/// Dynamic shared memory of a fused attention block: Q transposed (128 x
/// 36 floats), then per key group a key chunk transposed (128 x 33), a
/// value chunk (32 x 128), a chunk's probabilities (32 x 36) and the merge's
/// 32 row maxima and 32 sums (`REEF_ATT_*` in `attention.cu`).
pub const ATTENTION_SMEM: u32 = (128 * 36 + 2 * (128 * 33 + 32 * 128 + 32 * 36 + 64)) * 4;
/// Query rows of a full fused attention tile (`REEF_ATT_ROWS`); tiles have
/// half that where full ones would not fill the GPU twice.
pub const ATTENTION_ROWS: u64 = 32;
/// Threads per block of the 64 x 64 GEMM families (`REEF_GEMM_THREADS`, `CfgM`).
pub const GEMM_THREADS: u32 = 128;
/// Threads per block of the 128 x 128 GEMM families (`CfgL`).
pub const GEMM_L_THREADS: u32 = 256;
/// K step of every GEMM configuration (`GK`); split ranges are multiples of it.
pub const GEMM_K: u64 = 16;

/// Common header of every params struct (mirrors `Hdr`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
pub struct Hdr {
    /// Device address of the lane's preemption flag (i32).
    pub flag: u64,
    /// Device address of this kernel's counter pair (u32 each): tiles (RT:
    /// blocks) done, then the BE claim cursor.
    pub done: u64,
    /// Device address of the context's progress word (u32).
    pub progress: u64,
    /// Padding launches: device address of the padded RT kernel's done
    /// counter (u32); 0 for every other launch.
    pub guard: u64,
    /// Index of the kernel in the plan.
    pub kernel_index: u32,
    /// Number of tiles.
    pub tiles: u32,
    /// Padding launches: the padded RT kernel's block count (it has completed
    /// when its done counter reaches this).
    pub guard_tiles: u32,
    /// Padding launches: a block claims no tile after this many nanoseconds
    /// (0: no limit).
    pub budget_ns: u32,
    /// Direct BE launches with the lane's told word
    /// ([`CudaOptions::be_told`](crate::CudaOptions::be_told)): its device
    /// address (a host-mapped u32), which the grid's last block to leave
    /// sets to [`Hdr::seq`]; 0 for every other launch.
    pub told: u64,
    /// The launch's number on its lane (what the last block writes to the
    /// told word).
    pub seq: u32,
    /// Unused (keeps the header a multiple of 8 bytes).
    pub spare: u32,
}

/// Size of [`Hdr`] in bytes (the C struct's, too).
pub const HDR_BYTES: usize = 5 * 8 + 6 * 4;

/// Activation encoding shared by the kernels: (code, lo, hi).
pub fn act_code(act: reef_model::Act) -> (i32, f32, f32) {
    use reef_model::Act;
    match act {
        Act::None => (0, 0.0, 0.0),
        Act::Relu => (1, 0.0, 0.0),
        Act::Clip(lo, hi) => (2, lo, hi),
        Act::Gelu => (3, 0.0, 0.0),
        Act::Sigmoid => (4, 0.0, 0.0),
        Act::Tanh => (5, 0.0, 0.0),
        Act::LeakyRelu(alpha) => (6, alpha, 0.0),
        Act::Elu(alpha) => (7, alpha, 0.0),
        Act::Selu(alpha, gamma) => (8, alpha, gamma),
        Act::Celu(alpha) => (9, alpha, 0.0),
        Act::HardSigmoid(alpha, beta) => (10, alpha, beta),
        Act::HardSwish => (11, 0.0, 0.0),
        Act::Softplus => (12, 0.0, 0.0),
        Act::Softsign => (13, 0.0, 0.0),
        Act::ThresholdedRelu(alpha) => (14, alpha, 0.0),
        Act::GeluTanh => (15, 0.0, 0.0),
        Act::Mish => (16, 0.0, 0.0),
    }
}

/// Code of a [`reef_model::UnaryFn`] in the unary family's `op` (codes 0-4
/// are the activation, erf, sqrt, exp and neg; elementwise.cu's unary_tile).
pub fn unary_fn_code(f: reef_model::UnaryFn) -> i32 {
    use reef_model::UnaryFn;
    match f {
        UnaryFn::Abs => 5,
        UnaryFn::Log => 6,
        UnaryFn::Reciprocal => 7,
        UnaryFn::Floor => 8,
        UnaryFn::Ceil => 9,
        UnaryFn::Round => 10,
        UnaryFn::Sin => 11,
        UnaryFn::Cos => 12,
        UnaryFn::Sign => 13,
    }
}

/// Code of a [`reef_model::resize::CoordMode`] in [`ResizeParams::coord`]
/// (elementwise.cu's reef_resize_source).
pub fn resize_coord_code(c: reef_model::resize::CoordMode) -> i32 {
    use reef_model::resize::CoordMode;
    match c {
        CoordMode::HalfPixel => 0,
        CoordMode::HalfPixelSymmetric => 1,
        CoordMode::PytorchHalfPixel => 2,
        CoordMode::AlignCorners => 3,
        CoordMode::Asymmetric => 4,
    }
}

/// Code of a [`reef_model::resize::NearestMode`] in
/// [`ResizeParams::nearest`] (elementwise.cu's reef_resize_nearest).
pub fn resize_nearest_code(m: reef_model::resize::NearestMode) -> i32 {
    use reef_model::resize::NearestMode;
    match m {
        NearestMode::RoundPreferFloor => 0,
        NearestMode::RoundPreferCeil => 1,
        NearestMode::Floor => 2,
        NearestMode::Ceil => 3,
    }
}

/// Convolution (families conv_tc_l, conv_tc, conv_ffma, conv_dw). `ws` and
/// `cnt` are the split-K workspace and this kernel's per-tile arrival
/// counters (0 when `splits` == 1); `ksplit` is the K range of one split.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct ConvParams {
    pub hdr: Hdr,
    pub x: u64,
    pub w: u64,
    pub bias: u64,
    pub residual: u64,
    pub out: u64,
    pub ws: u64,
    pub cnt: u64,
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w_: i32,
    pub k: i32,
    pub r: i32,
    pub s: i32,
    pub oh: i32,
    pub ow: i32,
    pub sh: i32,
    pub sw: i32,
    pub ph: i32,
    pub pw: i32,
    pub dh: i32,
    pub dw: i32,
    pub groups: i32,
    pub kg: i32,
    pub cg: i32,
    pub crs: i32,
    pub npix: i32,
    pub has_bias: i32,
    pub has_residual: i32,
    pub act: i32,
    pub act_lo: f32,
    pub act_hi: f32,
    pub m_tiles: u32,
    pub n_tiles: u32,
    pub splits: u32,
    pub ksplit: i32,
    pub a_vec: i32,
    pub b_vec: i32,
    pub pad0: u32,
    /// The K-index gather table ([`crate::gather::gather_entry`] entries,
    /// one per K index up to a whole K step), or 0: the kernel steps
    /// (c, r, s) itself.
    pub ktab: u64,
}

/// Batched matrix product (families matmul_tc, matmul_ffma);
/// split-K fields as in [`ConvParams`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct MatMulParams {
    pub hdr: Hdr,
    pub a: u64,
    pub b: u64,
    pub bias: u64,
    pub residual: u64,
    pub out: u64,
    pub ws: u64,
    pub cnt: u64,
    pub batch: [i32; MAX_RANK],
    pub a_bs: [i32; MAX_RANK],
    pub b_bs: [i32; MAX_RANK],
    pub nbatch: i32,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub lda_m: i32,
    pub lda_k: i32,
    pub ldb_k: i32,
    pub ldb_n: i32,
    pub bias_sm: i32,
    pub bias_sn: i32,
    pub alpha: f32,
    pub beta: f32,
    pub has_bias: i32,
    pub has_residual: i32,
    pub act: i32,
    pub act_lo: f32,
    pub act_hi: f32,
    pub m_tiles: u32,
    pub n_tiles: u32,
    pub splits: u32,
    pub ksplit: i32,
    pub a_vec: i32,
    pub b_vec: i32,
    /// Bias stride per flat batch index.
    pub bias_sb: i32,
}

/// Pooling (family pool).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct PoolParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    pub n: i32,
    pub c: i32,
    pub h: i32,
    pub w: i32,
    pub oh: i32,
    pub ow: i32,
    pub kh: i32,
    pub kw: i32,
    pub sh: i32,
    pub sw: i32,
    pub ph: i32,
    pub pw: i32,
    pub dh: i32,
    pub dw: i32,
    pub kind: i32,
    pub count_include_pad: i32,
    pub padded_h: i32,
    pub padded_w: i32,
    pub total: u32,
    pub pad0: u32,
}

/// Per-channel affine (family channel_affine).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct AffineParams {
    pub hdr: Hdr,
    pub x: u64,
    pub scale: u64,
    pub shift: u64,
    pub out: u64,
    pub outer: i32,
    pub c: i32,
    pub inner: i32,
    pub act: i32,
    pub act_lo: f32,
    pub act_hi: f32,
    pub total: u32,
    pub pad0: u32,
}

/// Broadcasting element-wise ops (families binary, compare, where); shapes
/// right-aligned to [`MAX_RANK`] with leading 1s and 0 strides.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct BcastParams {
    pub hdr: Hdr,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub out: u64,
    pub shape: [i32; MAX_RANK],
    pub sa: [i32; MAX_RANK],
    pub sb: [i32; MAX_RANK],
    pub sc: [i32; MAX_RANK],
    pub op: i32,
    pub dtype: i32,
    pub act: i32,
    pub act_lo: f32,
    pub act_hi: f32,
    pub total: u32,
}

/// One-input maps (families unary, lnot, cast).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct MapParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    pub op: i32,
    pub act: i32,
    pub from: i32,
    pub to: i32,
    pub act_lo: f32,
    pub act_hi: f32,
    pub total: u32,
    pub pad0: u32,
}

/// Strided copy (family copy); shape right-aligned with leading 1s.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct CopyParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    pub offset: i64,
    pub strides: [i64; MAX_RANK],
    pub shape: [i32; MAX_RANK],
    pub esz: i32,
    pub total: u32,
}

/// Concatenation (family concat); `table` is a per-context device array of
/// part pointers followed by the parts' axis starts.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct ConcatParams {
    pub hdr: Hdr,
    pub table: u64,
    pub out: u64,
    pub outer: i32,
    pub inner: i32,
    pub total_len: i32,
    pub nparts: i32,
    pub esz: i32,
    pub total: u32,
}

/// Gather along an axis (family gather).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct GatherParams {
    pub hdr: Hdr,
    pub x: u64,
    pub idx: u64,
    pub out: u64,
    pub outer: i32,
    pub axis_len: i32,
    pub count: i32,
    pub inner: i32,
    pub esz: i32,
    pub total: u32,
}

/// Element-wise gather along an axis (family gather_elements): the output
/// shape right-aligned with leading 1s, the data's element strides
/// right-aligned with leading 0s, `axis` in the aligned rank.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct GatherElementsParams {
    pub hdr: Hdr,
    pub x: u64,
    pub idx: u64,
    pub out: u64,
    pub strides: [i64; MAX_RANK],
    pub shape: [i32; MAX_RANK],
    pub axis: i32,
    pub axis_len: i32,
    pub esz: i32,
    pub total: u32,
}

/// Padding (family pad); shapes right-aligned with leading 1s.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct PadParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    pub shape: [i32; MAX_RANK],
    pub in_shape: [i32; MAX_RANK],
    pub pads: [i32; MAX_RANK],
    pub mode: i32,
    pub value: f32,
    pub total: u32,
    pub pad0: u32,
}

/// Resize (family resize); shapes and scales right-aligned with leading
/// 1s. `interp`: the right-aligned axes a linear resize blends (-1: none).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct ResizeParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    pub shape: [i32; MAX_RANK],
    pub in_shape: [i32; MAX_RANK],
    pub scales: [f64; MAX_RANK],
    pub mode: i32,
    pub coord: i32,
    pub nearest: i32,
    pub interp: [i32; 2],
    pub total: u32,
}

/// ArgMax / ArgMin over the middle axis (family arg_extreme); `flags` bit 0
/// ArgMax, bit 1 ties to the last index.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct ArgExtremeParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    pub outer: i32,
    pub len: i32,
    pub inner: i32,
    pub flags: i32,
}

/// Softmax over the middle axis (family softmax).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct SoftmaxParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    /// The prologue's mask (0: none).
    pub mask: u64,
    pub outer: i32,
    pub axis: i32,
    pub inner: i32,
    pub pre: PrologueParams,
    pub pad0: u32,
}

/// A softmax prologue (scale, then mask) as the softmax and attention
/// kernels read it: the row's input is `x * scale` or `x / scale`, plus the
/// mask element of (row r, column j) at
/// `((r / mask_div) % mask_mod) * mask_ld + j * mask_cs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable, PartialEq)]
pub struct PrologueParams {
    /// Scale: 0 none, 1 multiply, 2 divide.
    pub scale_op: i32,
    /// The scale's constant.
    pub scale: f32,
    /// Rows that share one mask row.
    pub mask_div: i32,
    /// Mask rows before they repeat.
    pub mask_mod: i32,
    /// Elements between mask rows.
    pub mask_ld: i32,
    /// Elements between mask columns.
    pub mask_cs: i32,
}

/// Fused attention (family attention): strides over `(b, h, row, col)`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct AttentionParams {
    pub hdr: Hdr,
    pub q: u64,
    pub k: u64,
    pub v: u64,
    /// The prologue's mask (0: none).
    pub mask: u64,
    pub out: u64,
    pub qs: [i64; 4],
    pub ks: [i64; 4],
    pub vs: [i64; 4],
    pub os: [i64; 4],
    pub heads: i32,
    pub sq: i32,
    pub sk: i32,
    pub d: i32,
    pub dv: i32,
    /// Tiles per (batch, head) problem: `ceil(sq / tile_rows)`.
    pub row_blocks: i32,
    /// Query rows per tile: [`ATTENTION_ROWS`], or half that.
    pub tile_rows: i32,
    pub pre: PrologueParams,
    pub pad0: u32,
}

/// Layer normalisation (family layernorm).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct LayerNormParams {
    pub hdr: Hdr,
    pub x: u64,
    pub gamma: u64,
    pub beta: u64,
    pub out: u64,
    pub rows: i32,
    pub cols: i32,
    pub eps: f32,
    pub pad0: u32,
}

/// Reduction over the middle axis (family reduce).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
#[allow(missing_docs)]
pub struct ReduceParams {
    pub hdr: Hdr,
    pub x: u64,
    pub out: u64,
    pub outer: i32,
    pub len: i32,
    pub inner: i32,
    pub kind: i32,
}

macro_rules! device_repr {
    ($($t:ty),*) => {$(
        // SAFETY: `$t` is `#[repr(C)]`, `Pod` (no padding, no pointers Rust
        // owns: device addresses are plain u64) and mirrors the C struct of
        // the same name field for field, so its bytes are exactly the kernel
        // parameter the CUDA code expects.
        unsafe impl DeviceRepr for $t {}
    )*};
}
device_repr!(
    ConvParams,
    MatMulParams,
    PoolParams,
    AffineParams,
    BcastParams,
    MapParams,
    CopyParams,
    ConcatParams,
    GatherParams,
    GatherElementsParams,
    PadParams,
    ResizeParams,
    ArgExtremeParams,
    SoftmaxParams,
    AttentionParams,
    LayerNormParams,
    ReduceParams
);

/// The parameters of one launch, by family struct.
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub enum Params {
    Conv(ConvParams),
    MatMul(MatMulParams),
    Pool(PoolParams),
    Affine(AffineParams),
    Bcast(BcastParams),
    Map(MapParams),
    Copy(CopyParams),
    Concat(ConcatParams),
    Gather(GatherParams),
    GatherElements(GatherElementsParams),
    Pad(PadParams),
    Resize(ResizeParams),
    ArgExtreme(ArgExtremeParams),
    Softmax(SoftmaxParams),
    Attention(AttentionParams),
    LayerNorm(LayerNormParams),
    Reduce(ReduceParams),
}

impl Params {
    /// The common header.
    pub fn hdr_mut(&mut self) -> &mut Hdr {
        match self {
            Params::Conv(p) => &mut p.hdr,
            Params::MatMul(p) => &mut p.hdr,
            Params::Pool(p) => &mut p.hdr,
            Params::Affine(p) => &mut p.hdr,
            Params::Bcast(p) => &mut p.hdr,
            Params::Map(p) => &mut p.hdr,
            Params::Copy(p) => &mut p.hdr,
            Params::Concat(p) => &mut p.hdr,
            Params::Gather(p) => &mut p.hdr,
            Params::GatherElements(p) => &mut p.hdr,
            Params::Pad(p) => &mut p.hdr,
            Params::Resize(p) => &mut p.hdr,
            Params::ArgExtreme(p) => &mut p.hdr,
            Params::Softmax(p) => &mut p.hdr,
            Params::Attention(p) => &mut p.hdr,
            Params::LayerNorm(p) => &mut p.hdr,
            Params::Reduce(p) => &mut p.hdr,
        }
    }

    /// The common header.
    pub fn hdr(&self) -> &Hdr {
        bytemuck::from_bytes(&self.bytes()[..std::mem::size_of::<Hdr>()])
    }

    /// The raw bytes passed as the kernel's single argument.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Params::Conv(p) => bytemuck::bytes_of(p),
            Params::MatMul(p) => bytemuck::bytes_of(p),
            Params::Pool(p) => bytemuck::bytes_of(p),
            Params::Affine(p) => bytemuck::bytes_of(p),
            Params::Bcast(p) => bytemuck::bytes_of(p),
            Params::Map(p) => bytemuck::bytes_of(p),
            Params::Copy(p) => bytemuck::bytes_of(p),
            Params::Concat(p) => bytemuck::bytes_of(p),
            Params::Gather(p) => bytemuck::bytes_of(p),
            Params::GatherElements(p) => bytemuck::bytes_of(p),
            Params::Pad(p) => bytemuck::bytes_of(p),
            Params::Resize(p) => bytemuck::bytes_of(p),
            Params::ArgExtreme(p) => bytemuck::bytes_of(p),
            Params::Softmax(p) => bytemuck::bytes_of(p),
            Params::Attention(p) => bytemuck::bytes_of(p),
            Params::LayerNorm(p) => bytemuck::bytes_of(p),
            Params::Reduce(p) => bytemuck::bytes_of(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    // Sizes recomputed by hand from the C declarations (u64 = 8, i32/u32/f32 = 4).
    #[test]
    fn sizes_match_the_c_structs() {
        assert_eq!(size_of::<Hdr>(), HDR_BYTES);
        assert_eq!(size_of::<ConvParams>(), HDR_BYTES + 8 * 8 + 32 * 4);
        assert_eq!(
            size_of::<MatMulParams>(),
            HDR_BYTES + 7 * 8 + 18 * 4 + 24 * 4
        );
        assert_eq!(size_of::<PoolParams>(), HDR_BYTES + 2 * 8 + 18 * 4 + 2 * 4);
        assert_eq!(size_of::<AffineParams>(), HDR_BYTES + 4 * 8 + 8 * 4);
        assert_eq!(size_of::<BcastParams>(), HDR_BYTES + 4 * 8 + 24 * 4 + 6 * 4);
        assert_eq!(size_of::<MapParams>(), HDR_BYTES + 2 * 8 + 8 * 4);
        assert_eq!(
            size_of::<CopyParams>(),
            HDR_BYTES + 3 * 8 + 6 * 8 + 6 * 4 + 2 * 4
        );
        assert_eq!(size_of::<ConcatParams>(), HDR_BYTES + 2 * 8 + 6 * 4);
        assert_eq!(size_of::<GatherParams>(), HDR_BYTES + 3 * 8 + 6 * 4);
        assert_eq!(size_of::<PadParams>(), HDR_BYTES + 2 * 8 + 18 * 4 + 4 * 4);
        assert_eq!(
            size_of::<ResizeParams>(),
            HDR_BYTES + 2 * 8 + 12 * 4 + 6 * 8 + 6 * 4
        );
        assert_eq!(offset_of!(ResizeParams, scales), HDR_BYTES + 2 * 8 + 12 * 4);
        assert_eq!(size_of::<SoftmaxParams>(), HDR_BYTES + 3 * 8 + 10 * 4);
        // The prologue: six 4-byte fields right after the last i32 of each
        // kernel's own fields, as `Prologue` sits in both C structs.
        assert_eq!(size_of::<PrologueParams>(), 6 * 4);
        assert_eq!(offset_of!(SoftmaxParams, pre), HDR_BYTES + 3 * 8 + 3 * 4);
        assert_eq!(
            offset_of!(AttentionParams, pre),
            HDR_BYTES + 5 * 8 + 16 * 8 + 7 * 4
        );
        assert_eq!(
            size_of::<AttentionParams>(),
            HDR_BYTES + 5 * 8 + 16 * 8 + 14 * 4
        );
        assert_eq!(offset_of!(AttentionParams, qs), HDR_BYTES + 5 * 8);
        assert_eq!(
            offset_of!(AttentionParams, heads),
            HDR_BYTES + 5 * 8 + 16 * 8
        );
        assert_eq!(size_of::<LayerNormParams>(), HDR_BYTES + 4 * 8 + 4 * 4);
        assert_eq!(size_of::<ReduceParams>(), HDR_BYTES + 2 * 8 + 4 * 4);
        assert_eq!(size_of::<ArgExtremeParams>(), HDR_BYTES + 2 * 8 + 4 * 4);
    }

    #[test]
    fn layouts_start_with_the_header_and_are_8_aligned() {
        assert_eq!(offset_of!(ConvParams, x), 64);
        assert_eq!(offset_of!(ConvParams, ws), 104);
        assert_eq!(offset_of!(ConvParams, n), 120);
        assert_eq!(offset_of!(ConvParams, splits), 120 + 27 * 4);
        assert_eq!(offset_of!(MatMulParams, batch), 120);
        assert_eq!(offset_of!(MatMulParams, nbatch), 120 + 72);
        assert_eq!(offset_of!(MatMulParams, splits), 120 + 72 + 19 * 4);
        assert_eq!(offset_of!(CopyParams, offset), 80);
        assert_eq!(offset_of!(CopyParams, strides), 88);
        assert_eq!(offset_of!(CopyParams, shape), 136);
        assert_eq!(offset_of!(BcastParams, shape), 96);
        assert_eq!(offset_of!(Hdr, kernel_index), 32);
        assert_eq!(offset_of!(Hdr, told), 48);
        for (size, align) in [
            (size_of::<ConvParams>(), align_of::<ConvParams>()),
            (size_of::<MatMulParams>(), align_of::<MatMulParams>()),
            (size_of::<CopyParams>(), align_of::<CopyParams>()),
            (size_of::<BcastParams>(), align_of::<BcastParams>()),
            (size_of::<PadParams>(), align_of::<PadParams>()),
            (size_of::<ResizeParams>(), align_of::<ResizeParams>()),
        ] {
            assert_eq!(align, 8);
            assert_eq!(size % 8, 0);
        }
    }

    #[test]
    fn header_is_reachable_through_params() {
        let mut p = Params::Softmax(SoftmaxParams::default());
        p.hdr_mut().kernel_index = 7;
        p.hdr_mut().flag = 0xdead_beef;
        assert_eq!(p.hdr().kernel_index, 7);
        assert_eq!(p.hdr().flag, 0xdead_beef);
        assert_eq!(p.bytes().len(), size_of::<SoftmaxParams>());
    }

    #[test]
    fn gather_elements_params_match_the_c_struct() {
        let h = size_of::<Hdr>();
        assert_eq!(
            size_of::<GatherElementsParams>(),
            h + 3 * 8 + 6 * 8 + 6 * 4 + 4 * 4
        );
        assert_eq!(offset_of!(GatherElementsParams, x), h);
        assert_eq!(offset_of!(GatherElementsParams, strides), h + 24);
        assert_eq!(offset_of!(GatherElementsParams, shape), h + 72);
        assert_eq!(offset_of!(GatherElementsParams, total), h + 108);
        assert_eq!(align_of::<GatherElementsParams>(), 8);
    }
}
