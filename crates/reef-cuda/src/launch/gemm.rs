//! Launch descriptors of the GEMMs: convolutions (implicit GEMM) and matmuls, with their tile
//! geometry, K splits and tactics.

use super::*;

impl Builder<'_> {
    /// The launch of kernel `io.k`, one of this module's ops.
    pub(super) fn gemm(&mut self, io: &Io, op: &KernelOp) -> Result<Launch, ExecError> {
        let (k, out_id) = (io.k, io.out_id);
        let expect_inputs = |n: usize| io.expect_inputs(n);
        let f32_ = DType::F32;
        match op {
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
                let a_vec = crs.is_multiple_of(4) && w % 16 == 0;
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
            _ => Err(invalid(k, "not a gemm kernel")),
        }
    }
}
