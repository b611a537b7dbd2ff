//! Import of Resize (opsets 10-19) and Upsample (7-9): the scales or sizes
//! operands (constants) and the attributes are resolved into one
//! [`ResizeAttrs`] holding every axis's scale and output length.
//!
//! Supported: nearest (every `nearest_mode`) and linear interpolation (at
//! most two resized axes), every coordinate mode but `tf_crop_and_resize`,
//! `axes` and `keep_aspect_ratio_policy`. Cubic interpolation and
//! antialiased linear downsampling are reported as unsupported.

use super::{Importer, OPERAND_LIMIT};
use crate::attrs::NodeCtx;
use reef_model::resize::{CoordMode, NearestMode, ResizeAttrs, ResizeMode};
use reef_model::{ModelError, Op, ValueId};

impl Importer {
    pub(super) fn resize(
        &mut self,
        ctx: &NodeCtx,
        inputs: &[Option<ValueId>],
    ) -> Result<(), ModelError> {
        let x = inputs[0].expect("arity checked");
        let in_shape = self.b.shape(x).to_vec();
        let rank = in_shape.len();
        // Upsample and Resize-10 read y / scale and round down.
        let legacy = ctx.op == "Upsample" || self.opset < 11;
        let mode = match ctx.string("mode")?.as_deref().unwrap_or("nearest") {
            "nearest" if legacy => ResizeMode::Nearest(NearestMode::Floor),
            "nearest" => {
                let m = ctx.string("nearest_mode")?;
                let m = m.as_deref().unwrap_or("round_prefer_floor");
                ResizeMode::Nearest(named(ctx, &NearestMode::NAMES, m, "nearest_mode")?)
            }
            "linear" | "bilinear" => ResizeMode::Linear,
            "cubic" => return Err(ctx.unsupported("cubic interpolation is not supported")),
            m => return Err(ctx.err(format!("unknown mode '{m}'"))),
        };
        let coord = if legacy {
            CoordMode::Asymmetric
        } else {
            let c = ctx.string("coordinate_transformation_mode")?;
            match c.as_deref().unwrap_or("half_pixel") {
                m @ ("tf_crop_and_resize" | "tf_half_pixel_for_nn") => {
                    return Err(ctx.unsupported(format!("coordinate mode '{m}' is not supported")))
                }
                m => named(ctx, &CoordMode::NAMES, m, "coordinate_transformation_mode")?,
            }
        };
        let axes: Vec<usize> = match ctx.ints("axes")? {
            None => (0..rank).collect(),
            Some(a) => {
                let mut out = Vec::with_capacity(a.len());
                for &ax in &a {
                    let n = reef_model::shape::norm_axis(ax, rank).ok_or_else(|| {
                        ctx.err(format!("axis {ax} out of range for rank {rank}"))
                    })?;
                    if out.contains(&n) {
                        return Err(ctx.err(format!("axis {ax} given twice")));
                    }
                    out.push(n);
                }
                out
            }
        };
        let (scales_in, sizes_in) = match (ctx.op, self.opset) {
            ("Upsample", v) if v < 9 => (ctx.floats("scales")?, None),
            ("Upsample", _) | (_, 10) => (self.const_f32(ctx, inputs.get(1), "scales")?, None),
            _ => (
                self.const_f32(ctx, inputs.get(2), "scales")?,
                self.const_i64(ctx, inputs.get(3).copied().flatten(), "sizes")?
                    .filter(|s| !s.is_empty()),
            ),
        };
        let mut scales = vec![1.0f64; rank];
        let mut sizes = in_shape.clone();
        let from_sizes = sizes_in.is_some();
        match (scales_in, sizes_in) {
            (Some(_), Some(_)) => return Err(ctx.err("both scales and sizes are given")),
            (None, None) => return Err(ctx.err("neither scales nor sizes is given")),
            (Some(s), None) => {
                if s.len() != axes.len() {
                    return Err(ctx.err(format!("{} scales for {} axes", s.len(), axes.len())));
                }
                for (&a, &v) in axes.iter().zip(&s) {
                    let out = (in_shape[a] as f64 * v as f64).floor();
                    if !(v > 0.0 && v.is_finite()) || out > OPERAND_LIMIT as f64 {
                        return Err(ctx.err(format!("invalid scale {v} for axis {a}")));
                    }
                    scales[a] = v as f64;
                    sizes[a] = out as usize;
                }
            }
            (None, Some(s)) => {
                if s.len() != axes.len() {
                    return Err(ctx.err(format!("{} sizes for {} axes", s.len(), axes.len())));
                }
                if let Some(v) = s.iter().find(|&&v| !(0..=OPERAND_LIMIT).contains(&v)) {
                    return Err(ctx.err(format!("invalid size {v}")));
                }
                let ratio = |i: usize| s[i] as f64 / in_shape[axes[i]].max(1) as f64;
                let policy = ctx.string("keep_aspect_ratio_policy")?;
                let common = match policy.as_deref().unwrap_or("stretch") {
                    "stretch" => None,
                    "not_larger" => Some((0..s.len()).map(ratio).fold(f64::INFINITY, f64::min)),
                    "not_smaller" => Some((0..s.len()).map(ratio).fold(0.0, f64::max)),
                    p => return Err(ctx.err(format!("unknown keep_aspect_ratio_policy '{p}'"))),
                };
                for (i, &a) in axes.iter().enumerate() {
                    match common {
                        None => {
                            scales[a] = ratio(i);
                            sizes[a] = s[i] as usize;
                        }
                        Some(c) => {
                            scales[a] = c;
                            sizes[a] = (c * in_shape[a] as f64).round() as usize;
                        }
                    }
                }
            }
        }
        if let Some(a) = (0..rank).find(|&a| in_shape[a] == 0 && sizes[a] > 0) {
            return Err(ctx.err(format!(
                "axis {a} is empty and cannot be resized to {}",
                sizes[a]
            )));
        }
        let resized = (0..rank)
            .filter(|&a| sizes[a] != in_shape[a] || scales[a] != 1.0)
            .count();
        if mode == ResizeMode::Linear {
            if resized > 2 {
                return Err(ctx.unsupported(format!(
                    "linear interpolation of {resized} axes (at most 2 are supported)"
                )));
            }
            let down = (0..rank).any(|a| sizes[a] < in_shape[a]);
            if ctx.int_or("antialias", 0)? != 0 && down {
                return Err(ctx.unsupported("antialiased downsampling is not supported"));
            }
        }
        let attrs = ResizeAttrs {
            mode,
            coord,
            scales,
            sizes,
            from_sizes,
        };
        self.emit(ctx, Op::Resize(attrs), vec![Some(x)])
    }

    /// A constant f32 operand; `None` when absent or empty.
    fn const_f32(
        &self,
        ctx: &NodeCtx,
        v: Option<&Option<ValueId>>,
        what: &str,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        let Some(&Some(v)) = v else {
            return Ok(None);
        };
        let t = self
            .b
            .constant(v)
            .ok_or_else(|| ctx.unsupported(format!("{what} must be a constant")))?;
        let v: Vec<f32> = t.to_f64_vec().into_iter().map(|x| x as f32).collect();
        Ok((!v.is_empty()).then_some(v))
    }
}

/// The enum value an ONNX string attribute names.
fn named<T: Copy>(
    ctx: &NodeCtx,
    table: &[(T, &str)],
    value: &str,
    attr: &str,
) -> Result<T, ModelError> {
    table
        .iter()
        .find(|(_, n)| *n == value)
        .map(|(m, _)| *m)
        .ok_or_else(|| ctx.err(format!("unknown {attr} '{value}'")))
}
