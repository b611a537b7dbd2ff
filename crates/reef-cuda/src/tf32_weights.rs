//! Weights stored rounded to TF32: in `tf32` precision the tensor cores see
//! every GEMM operand through `cvt.rna.tf32.f32`. For a weight that only
//! TF32 GEMMs read (the weights of convolutions with c/groups > 1, and the B
//! operand of matmuls), rounding it once at upload gives the kernels the
//! same bits, so they can skip that conversion in their K loop
//! (`a_tf32` / `b_tf32` in the params). Results are bit-identical; a weight
//! that any other kernel also reads, or that is a model output, is left as
//! it is.

use reef_plan::kernel::KernelOp;
use reef_plan::plan::{BufferId, Loc};
use reef_plan::Plan;
use std::collections::HashSet;
use std::ops::Range;

/// Whether input `i` of kernel `op` is a GEMM operand that the TF32 core
/// rounds and that may skip it when stored rounded (conv weights, matmul B).
fn rounding_use(op: &KernelOp, i: usize) -> bool {
    match op {
        KernelOp::Conv(c) => i == 1 && c.groups > 0 && c.c / c.groups > 1,
        KernelOp::MatMul(_) => i == 1,
        _ => false,
    }
}

/// The weight buffers that may be stored rounded to TF32: f32 weights read
/// only as rounding GEMM operands, whose bytes no other read weight buffer
/// shares, and that are not model inputs or outputs.
pub(crate) fn choose(plan: &Plan) -> HashSet<BufferId> {
    let weight_range = |id: BufferId| -> Option<Range<usize>> {
        let b = plan.buffers.get(id)?;
        match b.loc {
            Loc::Weight(off) => Some(off..off + b.bytes()),
            Loc::Arena(_) => None,
        }
    };
    let mut rounding = HashSet::new();
    let mut other = HashSet::new();
    for k in &plan.kernels {
        for (i, &b) in k.inputs.iter().enumerate() {
            if rounding_use(&k.op, i) {
                rounding.insert(b);
            } else {
                other.insert(b);
            }
        }
        other.insert(k.output);
    }
    for io in plan.inputs.iter().chain(&plan.outputs) {
        other.insert(io.buffer);
    }
    let others: Vec<Range<usize>> = other.iter().filter_map(|&b| weight_range(b)).collect();
    rounding
        .into_iter()
        .filter(|&b| {
            !other.contains(&b)
                && plan
                    .buffers
                    .get(b)
                    .is_some_and(|x| x.dtype == reef_model::DType::F32)
                && weight_range(b)
                    .is_some_and(|r| others.iter().all(|o| o.end <= r.start || r.end <= o.start))
        })
        .collect()
}

/// The plan's weight blob with the buffers of `set` rounded to TF32.
pub(crate) fn rounded_blob(plan: &Plan, set: &HashSet<BufferId>) -> Vec<u8> {
    let mut blob = plan.weights.clone();
    for &b in set {
        let (Some(buf), Some(Loc::Weight(off))) =
            (plan.buffers.get(b), plan.buffers.get(b).map(|x| x.loc))
        else {
            continue;
        };
        let Some(bytes) = blob.get_mut(off..off + buf.bytes()) else {
            continue;
        };
        for w in bytes.chunks_exact_mut(4) {
            let v = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            w.copy_from_slice(&reef_exec::cpu::round_tf32(v).to_le_bytes());
        }
    }
    blob
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_weights_read_by_rounding_gemms_alone_are_chosen() {
        // resnet_tiny: every dense conv's weight is chosen (BatchNorm is
        // folded into it); a bias, read by the conv's epilogue, is not.
        let g = reef_zoo::build("resnet_tiny", 1, 0).expect("zoo model");
        let plan = reef_plan::compile(&g).expect("compile");
        let set = choose(&plan);
        assert!(!set.is_empty());
        for k in &plan.kernels {
            for (i, b) in k.inputs.iter().enumerate() {
                if set.contains(b) {
                    assert!(rounding_use(&k.op, i), "{} input {i}", k.name);
                }
            }
            if let KernelOp::Conv(c) = &k.op {
                if c.c / c.groups > 1 {
                    assert!(set.contains(&k.inputs[1]), "{}", k.name);
                }
                if k.inputs.len() > 2 {
                    assert!(!set.contains(&k.inputs[2]), "{} bias", k.name);
                }
            }
        }
        let blob = rounded_blob(&plan, &set);
        assert_eq!(blob.len(), plan.weights.len());
        let mut changed = 0;
        for (i, b) in plan.buffers.iter().enumerate() {
            let Loc::Weight(off) = b.loc else { continue };
            let r = off..off + b.bytes();
            if set.contains(&i) {
                changed += usize::from(blob[r.clone()] != plan.weights[r]);
            } else if !set.iter().any(|&s| {
                let Loc::Weight(o) = plan.buffers[s].loc else {
                    return false;
                };
                o < r.end && r.start < o + plan.buffers[s].bytes()
            }) {
                assert_eq!(blob[r.clone()], plan.weights[r], "buffer {i} changed");
            }
        }
        assert!(changed > 0, "random weights round somewhere");
    }
}
