//! Launch descriptors of the kernels over image windows: pooling, padding and resizing.

use super::*;

impl Builder<'_> {
    /// The launch of kernel `io.k`, one of this module's ops.
    pub(super) fn spatial(&mut self, io: &Io, op: &KernelOp) -> Result<Launch, ExecError> {
        let (k, out_id) = (io.k, io.out_id);
        let expect_inputs = |n: usize| io.expect_inputs(n);
        let f32_ = DType::F32;
        match op {
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
            _ => Err(invalid(k, "not a spatial kernel")),
        }
    }
}
