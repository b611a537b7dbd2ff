//! ConvTranspose (2-D; 1-D through `one_d`), written as ops reef already
//! runs: the input with `stride - 1` zeros inserted between elements (a
//! reshape to `[N, C, H, 1, W, 1]`, a zero Pad of the unit axes, a reshape
//! back), padded by `dilation * (k - 1) - pad` on each side (negative:
//! cropped; `output_padding` at the end), then a stride-1 Conv with the
//! weight transposed per group and flipped in space (computed here, so the
//! weight must be a constant). For stride 1 the zero insertion is skipped.
//! The stride-s convolution does s² times the work a direct kernel would.

use super::{Importer, SPATIAL_LIMIT};
use crate::attrs::NodeCtx;
use reef_model::op::ConvAttrs;
use reef_model::{ModelError, Op, PadMode, Tensor, ValueId};

impl Importer {
    pub(super) fn conv_transpose(
        &mut self,
        ctx: &NodeCtx,
        inputs: &[Option<ValueId>],
    ) -> Result<(), ModelError> {
        let x = inputs[0].expect("arity checked");
        let wv = inputs[1].expect("arity checked");
        let xs = self.b.shape(x).to_vec();
        let ws = self.b.shape(wv).to_vec();
        if xs.len() != 4 || ws.len() != 4 {
            return Err(ctx.unsupported(format!(
                "only 1-D and 2-D ConvTranspose are supported (input {xs:?}, weight {ws:?})"
            )));
        }
        let w = self
            .b
            .constant(wv)
            .ok_or_else(|| ctx.unsupported("the weight must be a constant"))?
            .to_f64_vec();
        let groups = ctx.int_or("group", 1)?;
        let (cin, cout_g, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
        if !(1..=SPATIAL_LIMIT).contains(&groups) || xs[1] != cin || cin % groups as usize != 0 {
            return Err(ctx.err(format!(
                "input channels {} and weight {ws:?} do not fit group {groups}",
                xs[1]
            )));
        }
        let g = groups as usize;
        let two = |name: &str, default: usize| -> Result<[usize; 2], ModelError> {
            Ok(match ctx.usizes(name, 2, 0, SPATIAL_LIMIT)? {
                Some(v) => [v[0], v[1]],
                None => [default; 2],
            })
        };
        let kernel = two("kernel_shape", 0)?;
        if kernel != [0, 0] && kernel != [kh, kw] {
            return Err(ctx.err(format!(
                "kernel_shape {kernel:?} differs from the weight's {ws:?}"
            )));
        }
        let stride = two("strides", 1)?;
        let dil = two("dilations", 1)?;
        let out_pad = two("output_padding", 0)?;
        if stride.contains(&0) || dil.contains(&0) || kh == 0 || kw == 0 {
            return Err(ctx.err("strides, dilations and the kernel must be positive"));
        }
        let k = [kh, kw];
        let (h, wd) = (xs[2], xs[3]);
        // Output length without padding, per axis.
        let full = |i: usize, len: usize| {
            (stride[i] * (len.max(1) - 1) + out_pad[i] + (k[i] - 1) * dil[i] + 1) as i64
        };
        let auto = ctx.string("auto_pad")?;
        let auto = auto.as_deref().unwrap_or("NOTSET");
        let shape_attr = ctx.ints("output_shape")?;
        let mut pads = [0i64; 4]; // begin h, begin w, end h, end w
        let wanted: Option<[i64; 2]> = match (&shape_attr, auto) {
            (Some(s), _) if s.len() >= 2 => Some([s[s.len() - 2], s[s.len() - 1]]),
            (Some(s), _) => {
                return Err(ctx.err(format!("output_shape {s:?} has fewer than 2 values")))
            }
            (None, "SAME_UPPER" | "SAME_LOWER") => {
                Some([(h * stride[0]) as i64, (wd * stride[1]) as i64])
            }
            (None, "NOTSET") => {
                let p = ctx
                    .usizes("pads", 4, 0, SPATIAL_LIMIT)?
                    .unwrap_or(vec![0; 4]);
                pads = [p[0] as i64, p[1] as i64, p[2] as i64, p[3] as i64];
                None
            }
            (None, "VALID") => None,
            (None, a) => return Err(ctx.err(format!("invalid auto_pad '{a}'"))),
        };
        if let Some(out) = wanted {
            for (i, len) in [h, wd].into_iter().enumerate() {
                let total = full(i, len) - out[i];
                // Floor division, as ONNX's reference (the total may be negative).
                let small = total.div_euclid(2);
                let large = total - small;
                // The odd element goes to the end for SAME_UPPER, else to the start.
                let (b, e) = if auto == "SAME_UPPER" {
                    (small, large)
                } else {
                    (large, small)
                };
                pads[i] = b;
                pads[i + 2] = e;
            }
        }

        // The direct convolution's weight: [Cout, Cin/g, kh, kw], flipped.
        let cin_g = cin / g;
        let cout = cout_g * g;
        let mut wt = vec![0f32; cout * cin_g * kh * kw];
        for gi in 0..g {
            for i in 0..cin_g {
                for o in 0..cout_g {
                    for a in 0..kh {
                        for b in 0..kw {
                            let src = (((gi * cin_g + i) * cout_g + o) * kh + a) * kw + b;
                            let dst = ((((gi * cout_g + o) * cin_g + i) * kh + (kh - 1 - a)) * kw)
                                + (kw - 1 - b);
                            wt[dst] = w[src] as f32;
                        }
                    }
                }
            }
        }
        let wt = self.constant(
            &format!("{}_weight_direct", ctx.name),
            Tensor::f32(vec![cout, cin_g, kh, kw], wt)?,
        )?;

        let mut y = x;
        let [sh, sw] = stride;
        if sh > 1 || sw > 1 {
            let split = [0, cin as i64, h as i64, 1, wd as i64, 1];
            y = self.reshaped(ctx, y, &split, "split")?;
            let p = [0, 0, 0, 0, 0, 0, 0, 0, 0, sh as i64 - 1, 0, sw as i64 - 1];
            y = self.zero_padded(ctx, y, &p, "zeros")?;
            let merged = [0, cin as i64, (h * sh) as i64, (wd * sw) as i64];
            y = self.reshaped(ctx, y, &merged, "spread")?;
        }
        // Around the spread input: d (k - 1) - pad, minus the stride - 1
        // trailing zeros of the spread, plus output_padding at the end.
        let edge = |i: usize| (dil[i] * (k[i] - 1)) as i64;
        let p = [
            0,
            0,
            edge(0) - pads[0],
            edge(1) - pads[1],
            0,
            0,
            edge(0) - pads[2] + out_pad[0] as i64 - (sh as i64 - 1),
            edge(1) - pads[3] + out_pad[1] as i64 - (sw as i64 - 1),
        ];
        if p.iter().any(|&v| v != 0) {
            y = self.zero_padded(ctx, y, &p, "pad")?;
        }
        let attrs = ConvAttrs {
            kernel: k,
            stride: [1, 1],
            pads: [0; 4],
            dilation: dil,
            groups: g,
        };
        let mut ins = vec![Some(y), Some(wt)];
        if let Some(b) = inputs.get(2).copied().flatten() {
            ins.push(Some(b));
        }
        self.emit(ctx, Op::Conv(attrs), ins)
    }

    /// `y` padded with zeros by `pads` (begins, then ends; negative crops).
    fn zero_padded(
        &mut self,
        ctx: &NodeCtx,
        y: ValueId,
        pads: &[i64],
        what: &str,
    ) -> Result<ValueId, ModelError> {
        let n = self.fresh(&format!("{}_{what}", ctx.name));
        let op = Op::Pad {
            mode: PadMode::Constant,
            pads: Some(pads.to_vec()),
            value: 0.0,
        };
        self.add(&n, op, vec![Some(y)], &n)
    }
}
