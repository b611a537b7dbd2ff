//! 1-D Conv, ConvTranspose, MaxPool and AveragePool (rank-3 `[N, C, L]` inputs, as audio
//! and sequence models use them): the 2-D op over `[N, C, 1, L]`, between
//! an Unsqueeze and a Squeeze of axis 2. The node's 1-D attributes become
//! their 2-D forms (kernel `[1, k]`, pads `[0, b, 0, e]`, ...), so the 2-D
//! path's checks and `auto_pad` handling apply unchanged; a conv's weight
//! `[K, C/g, k]` is unsqueezed the same way (and folded when constant).

use super::Importer;
use crate::attrs::NodeCtx;
use crate::proto::{AttributeProto, NodeProto};
use reef_model::{ModelError, Op, ValueId};

/// The 2-D form of a 1-D spatial attribute, or why it has none.
fn widen(a: &AttributeProto, op: &str) -> Result<AttributeProto, String> {
    let (want, ints) = match a.name.as_str() {
        "kernel_shape" | "strides" | "dilations" => {
            (1, vec![1, a.ints.first().copied().unwrap_or(0)])
        }
        "output_padding" => (1, vec![0, a.ints.first().copied().unwrap_or(0)]),
        // The spatial length, alone or at the end of the full shape.
        "output_shape" if !a.ints.is_empty() => (a.ints.len(), vec![1, a.ints[a.ints.len() - 1]]),
        "pads" => (
            2,
            vec![
                0,
                a.ints.first().copied().unwrap_or(0),
                0,
                a.ints.get(1).copied().unwrap_or(0),
            ],
        ),
        _ => return Ok(a.clone()),
    };
    if a.ints.len() != want {
        return Err(format!(
            "attribute '{}' has {} values; a 1-D {op} takes {want}",
            a.name,
            a.ints.len()
        ));
    }
    Ok(AttributeProto { ints, ..a.clone() })
}

impl Importer {
    /// Imports a 1-D Conv / MaxPool / AveragePool as its 2-D form.
    pub(super) fn one_d(
        &mut self,
        ctx: &NodeCtx,
        inputs: Vec<Option<ValueId>>,
    ) -> Result<(), ModelError> {
        let unsqueeze = |imp: &mut Importer, v: ValueId, what: &str| {
            let name = imp.fresh(&format!("{}_{what}_2d", ctx.name));
            imp.add(
                &name,
                Op::Unsqueeze {
                    axes: Some(vec![2]),
                },
                vec![Some(v)],
                &name,
            )
        };
        let mut wide = Vec::with_capacity(inputs.len());
        for (i, v) in inputs.iter().enumerate() {
            wide.push(match (i, v) {
                // X, and a conv's weight.
                (0, Some(v)) => Some(unsqueeze(self, *v, "x")?),
                (1, Some(v)) if ctx.op == "Conv" || ctx.op == "ConvTranspose" => {
                    if self.b.shape(*v).len() != 3 {
                        return Err(ctx.err(format!(
                            "weight of shape {:?} for a 1-D convolution",
                            self.b.shape(*v)
                        )));
                    }
                    Some(unsqueeze(self, *v, "w")?)
                }
                _ => *v,
            });
        }
        let attribute = ctx
            .proto
            .attribute
            .iter()
            .map(|a| widen(a, ctx.op))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ctx.err(e))?;
        let out = ctx.proto.output[0].clone();
        let mid = self.fresh(&format!("{}_2d_out", ctx.name));
        let mut output = ctx.proto.output.clone();
        output[0] = mid.clone();
        let proto = NodeProto {
            attribute,
            output,
            ..ctx.proto.clone()
        };
        let inner = NodeCtx {
            name: ctx.name.clone(),
            op: ctx.op,
            proto: &proto,
        };
        self.map_node(&inner, wide)?;
        let y = self.b.value(&mid).expect("the 2-D op defines its output");
        let out = if out.is_empty() {
            self.fresh(&format!("{}_out", ctx.name))
        } else {
            out
        };
        let node = self.fresh(&format!("{}_1d", ctx.name));
        self.add(
            &node,
            Op::Squeeze {
                axes: Some(vec![2]),
            },
            vec![Some(y)],
            &out,
        )?;
        Ok(())
    }
}
