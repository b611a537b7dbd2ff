//! Import of the ONNX ops that become several reef nodes: Split (one Slice
//! per output) and the variadic Sum, Mean, Max and Min (a chain of binary
//! nodes, Mean divided by the input count at the end).

use super::{Importer, OPERAND_LIMIT};
use crate::attrs::NodeCtx;
use reef_model::{ModelError, Op, Tensor, ValueId};

impl Importer {
    /// Split along `axis` into the node's outputs: sizes from the `split`
    /// input (opset 13+) or attribute (older), else `num_outputs` (opset 18)
    /// or the output count, in equal parts (the last one smaller when the
    /// axis does not divide, as opset 18 says).
    pub(super) fn split(
        &mut self,
        ctx: &NodeCtx,
        inputs: &[Option<ValueId>],
    ) -> Result<(), ModelError> {
        let x = inputs[0].expect("arity checked");
        let shape = self.b.shape(x).to_vec();
        let rank = shape.len() as i64;
        let axis = ctx.int_or("axis", 0)?;
        if axis < -rank || axis >= rank {
            return Err(ctx.err(format!("axis {axis} out of range for rank {rank}")));
        }
        let axis = axis.rem_euclid(rank.max(1));
        let dim = shape[axis as usize] as i64;
        let outs = ctx.proto.output.len();
        let given = if self.opset < 13 {
            ctx.ints("split")?
        } else {
            self.const_i64(ctx, inputs.get(1).copied().flatten(), "split")?
        };
        let sizes = match given {
            Some(s) => {
                if s.len() != outs {
                    return Err(ctx.err(format!("split has {} sizes for {outs} outputs", s.len())));
                }
                let total = s.iter().try_fold(0i64, |a, &v| {
                    (0..=OPERAND_LIMIT).contains(&v).then(|| a.checked_add(v))?
                });
                if total != Some(dim) {
                    return Err(ctx.err(format!(
                        "split sizes {s:?} do not add up to the axis length {dim}"
                    )));
                }
                s
            }
            None => {
                let parts = match ctx.int("num_outputs")? {
                    Some(n) if n as usize != outs || n < 1 => {
                        return Err(ctx.err(format!(
                            "num_outputs is {n} but the node has {outs} outputs"
                        )))
                    }
                    Some(n) => n,
                    None => outs as i64,
                };
                let chunk = (dim + parts - 1) / parts;
                if self.opset < 18 && dim % parts != 0 {
                    return Err(ctx.err(format!(
                        "axis length {dim} does not split into {parts} equal parts"
                    )));
                }
                (0..parts)
                    .map(|i| (dim - i * chunk).clamp(0, chunk))
                    .collect()
            }
        };
        let mut start = 0;
        for (i, (&len, out)) in sizes.iter().zip(&ctx.proto.output).enumerate() {
            let end = start + len;
            if !out.is_empty() {
                let base = format!("{}_{i}", ctx.name);
                let ins = vec![
                    Some(x),
                    Some(self.constant(&format!("{base}_starts"), Tensor::i64_vec(&[start]))?),
                    Some(self.constant(&format!("{base}_ends"), Tensor::i64_vec(&[end]))?),
                    Some(self.constant(&format!("{base}_axes"), Tensor::i64_vec(&[axis]))?),
                ];
                let node = self.fresh(&base);
                self.add(&node, Op::Slice, ins, out)?;
            }
            start = end;
        }
        Ok(())
    }

    /// Sum, Mean, Max or Min of one or more broadcasting inputs.
    pub(super) fn variadic(
        &mut self,
        ctx: &NodeCtx,
        inputs: Vec<Option<ValueId>>,
    ) -> Result<(), ModelError> {
        let ins: Vec<ValueId> = inputs
            .iter()
            .enumerate()
            .map(|(i, v)| v.ok_or_else(|| ctx.err(format!("input #{i} is missing"))))
            .collect::<Result<_, _>>()?;
        let step = match ctx.op {
            "Sum" | "Mean" => Op::Add,
            "Max" => Op::Max,
            _ => Op::Min,
        };
        let mean = ctx.op == "Mean";
        if ins.len() == 1 {
            return self.emit(ctx, Op::Identity, inputs);
        }
        let out = match ctx.proto.output[0].as_str() {
            "" => self.fresh(&format!("{}_out", ctx.name)),
            s => s.to_string(),
        };
        let mut acc = ins[0];
        for (i, &v) in ins.iter().enumerate().skip(1) {
            let last = i + 1 == ins.len() && !mean;
            let node = self.fresh(&format!("{}_{i}", ctx.name));
            let name = if last {
                out.clone()
            } else {
                self.fresh(&format!("{}_part{i}", ctx.name))
            };
            acc = self.add(&node, step.clone(), vec![Some(acc), Some(v)], &name)?;
        }
        if mean {
            let n = self.constant(
                &format!("{}_count", ctx.name),
                Tensor::scalar_f32(ins.len() as f32),
            )?;
            let node = self.fresh(&format!("{}_mean", ctx.name));
            self.add(&node, Op::Div, vec![Some(acc), Some(n)], &out)?;
        }
        Ok(())
    }
}
