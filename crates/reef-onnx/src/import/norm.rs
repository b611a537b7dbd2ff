//! InstanceNormalization and GroupNormalization, written as ops reef already
//! runs: X reshaped to `[N, groups, rest]`, a LayerNormalization of the last
//! axis (unit scale, no bias), reshaped back, and a per-channel scale and
//! bias as a BatchNormalization with mean 0, variance 1 and epsilon 0 (one
//! channel-affine kernel, exactly `x * scale + bias`). Scale and bias must
//! be constants.

use super::Importer;
use crate::attrs::NodeCtx;
use reef_model::{ModelError, Op, Tensor, ValueId};

impl Importer {
    /// InstanceNormalization (groups = channels) or GroupNormalization
    /// (`num_groups`; opset 18 scales per group, 21 per channel).
    pub(super) fn group_norm(
        &mut self,
        ctx: &NodeCtx,
        inputs: &[Option<ValueId>],
    ) -> Result<(), ModelError> {
        let x = inputs[0].expect("arity checked");
        let shape = self.b.shape(x).to_vec();
        if shape.len() < 3 {
            return Err(ctx.err(format!(
                "input must be [N, C, spatial...], got shape {shape:?}"
            )));
        }
        let c = shape[1];
        let instance = ctx.op == "InstanceNormalization";
        let groups = if instance {
            c
        } else {
            let g = ctx
                .int("num_groups")?
                .ok_or_else(|| ctx.err("missing attribute 'num_groups'"))?;
            if g < 1 || c as i64 % g != 0 {
                return Err(ctx.err(format!("num_groups {g} does not divide {c} channels")));
            }
            g as usize
        };
        let eps = ctx.float_or("epsilon", 1e-5)?;
        let param = |imp: &Importer, i: usize, what: &str| -> Result<Vec<f32>, ModelError> {
            let t = inputs[i]
                .and_then(|v| imp.b.constant(v))
                .ok_or_else(|| ctx.unsupported(format!("{what} must be a constant")))?;
            Ok(t.to_f64_vec().into_iter().map(|v| v as f32).collect())
        };
        let (scale, bias) = (param(self, 1, "scale")?, param(self, 2, "bias")?);
        // Per channel: opset 18's GroupNormalization gives one value per group.
        let per_channel = |v: Vec<f32>, what: &str| -> Result<Vec<f32>, ModelError> {
            if v.len() == c {
                Ok(v)
            } else if !instance && v.len() == groups {
                Ok((0..c).map(|i| v[i / (c / groups)]).collect())
            } else {
                Err(ctx.err(format!(
                    "{what} has {} values for {c} channels in {groups} groups",
                    v.len()
                )))
            }
        };
        let scale = per_channel(scale, "scale")?;
        let bias = per_channel(bias, "bias")?;

        let xg = self.reshaped(ctx, x, &[0, groups as i64, -1], "grouped")?;
        let one = self.constant(
            &format!("{}_unit_scale", ctx.name),
            Tensor::f32(vec![1], vec![1.0])?,
        )?;
        let n = self.fresh(&format!("{}_normalized", ctx.name));
        let normed = self.add(
            &n,
            Op::LayerNorm {
                axis: -1,
                epsilon: eps,
            },
            vec![Some(xg), Some(one)],
            &n,
        )?;
        let mut back: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        back[0] = 0; // the batch, copied from the input (re-batching keeps working)
        let y = self.reshaped(ctx, normed, &back, "ungrouped")?;
        let mut ins = vec![Some(y)];
        for (what, v) in [
            ("scale", scale),
            ("bias", bias),
            ("mean", vec![0.0; c]),
            ("var", vec![1.0; c]),
        ] {
            ins.push(Some(self.constant(
                &format!("{}_{what}", ctx.name),
                Tensor::f32(vec![c], v)?,
            )?));
        }
        self.emit(ctx, Op::BatchNorm { epsilon: 0.0 }, ins)
    }
}
