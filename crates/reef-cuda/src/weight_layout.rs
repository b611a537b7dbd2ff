//! How weights are laid out in GPU memory. Two load-time rewrites of the
//! plan's weight blob, each bit-for-bit invisible in the results:
//! - **TF32 rounding**: in `tf32` precision the tensor cores see every GEMM
//!   operand through `cvt.rna.tf32.f32`. For a weight that only TF32 GEMMs
//!   read (the weights of convolutions with c/groups > 1, and the B operand
//!   of matmuls), rounding it once at upload gives the kernels the same
//!   bits, so they can skip that conversion in their K loop (the `_w`
//!   families).
//! - **K-major matmul weights**: a rounded matmul B stored row-major along
//!   N (ONNX's `MatMul(x, W)` with W [K, N]) is stored transposed, [N, K],
//!   and its matmuls read it with unit K stride. Both operands then load in
//!   16-byte copies along K into the K-major shared-memory layout that the
//!   wgmma tiles read (a B row-major along N goes there in transposing
//!   4-byte copies); the `mma.sync` tiles read either layout without bank
//!   conflicts.
//!
//! A weight that any other kernel also reads, or that is a model input or
//! output, is left as it is.

use reef_plan::kernel::{KernelOp, MatMulSpec};
use reef_plan::plan::{BufferId, Loc};
use reef_plan::Plan;
use std::collections::HashSet;
use std::ops::Range;

/// The weight buffers a model stores rounded to TF32, and those of them
/// stored K-major.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct WeightLayout {
    /// Stored rounded to TF32 (read only by TF32 GEMMs as their weight).
    pub rounded: HashSet<BufferId>,
    /// Matmul B weights stored transposed, [N, K] per batch block (a subset
    /// of `rounded`); their matmuls read B with `ldb_k = 1, ldb_n = K`.
    pub k_major: HashSet<BufferId>,
}

/// A [`WeightLayout`] applied to one plan, in byte ranges of its blob
/// ([`WeightLayout::key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LayoutKey {
    /// Ranges rounded to TF32, sorted.
    rounded: Vec<(usize, usize)>,
    /// Ranges stored transposed: (start, end, k, n), sorted.
    transposed: Vec<(usize, usize, usize, usize)>,
}

impl WeightLayout {
    /// The layout of `plan`'s weights: rounding where allowed, and with
    /// `k_major` the matmul B weights that can be stored K-major.
    pub fn choose(plan: &Plan, k_major: bool) -> Self {
        let rounded = choose_rounded(plan);
        // Rounding twice is harmless, transposing twice is not: a buffer
        // whose bytes another rounded buffer also covers (an alias of the
        // same weight) stays as it is.
        let shared = |b: BufferId| {
            let Some(r) = weight_range(plan, b) else {
                return true;
            };
            rounded.iter().any(|&o| {
                o != b && weight_range(plan, o).is_some_and(|x| x.start < r.end && r.start < x.end)
            })
        };
        let k_major = if k_major {
            rounded
                .iter()
                .copied()
                .filter(|&b| k_major_shape(plan, b).is_some() && !shared(b))
                .collect()
        } else {
            HashSet::new()
        };
        WeightLayout { rounded, k_major }
    }

    /// B's (K, N) strides for a matmul `m` reading buffer `b` as B: unit K
    /// stride where `b` is stored K-major, else the plan's.
    pub fn b_strides(&self, b: BufferId, m: &MatMulSpec) -> (usize, usize) {
        if self.k_major.contains(&b) {
            (1, m.k)
        } else {
            (m.ldb_k, m.ldb_n)
        }
    }

    /// Whether nothing is rewritten (the plan's blob is uploaded as it is).
    pub fn is_empty(&self) -> bool {
        self.rounded.is_empty() && self.k_major.is_empty()
    }

    /// What this layout does to `plan`'s blob, in byte ranges: two plans
    /// whose blobs hold the same bytes and whose keys are equal have the
    /// same laid-out blob ([`WeightLayout::blob`]), whatever their buffer
    /// numbering.
    pub fn key(&self, plan: &Plan) -> LayoutKey {
        let mut rounded: Vec<(usize, usize)> = self
            .rounded
            .iter()
            .filter_map(|&b| weight_range(plan, b))
            .map(|r| (r.start, r.end))
            .collect();
        rounded.sort_unstable();
        rounded.dedup();
        let mut transposed: Vec<(usize, usize, usize, usize)> = self
            .k_major
            .iter()
            .filter_map(|&b| {
                let (k, n) = k_major_shape(plan, b)?;
                let r = weight_range(plan, b)?;
                Some((r.start, r.end, k, n))
            })
            .collect();
        transposed.sort_unstable();
        LayoutKey {
            rounded,
            transposed,
        }
    }

    /// The plan's weight blob with this layout's buffers rounded and
    /// transposed.
    pub fn blob(&self, plan: &Plan) -> Vec<u8> {
        let mut blob = plan.weights.to_vec();
        for &b in &self.rounded {
            let Some(bytes) = weight_range(plan, b).and_then(|r| blob.get_mut(r)) else {
                continue;
            };
            for w in bytes.chunks_exact_mut(4) {
                let v = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
                w.copy_from_slice(&reef_exec::cpu::round_tf32(v).to_le_bytes());
            }
        }
        for &b in &self.k_major {
            let (Some((k, n)), Some(r)) = (k_major_shape(plan, b), weight_range(plan, b)) else {
                continue;
            };
            let Some(bytes) = blob.get_mut(r) else {
                continue;
            };
            transpose_blocks(bytes, k, n);
        }
        blob
    }
}

/// Transposes `bytes` (f32 elements, a stack of row-major [k, n] blocks)
/// into a stack of row-major [n, k] blocks, in place.
fn transpose_blocks(bytes: &mut [u8], k: usize, n: usize) {
    let block = 4 * k * n;
    if block == 0 {
        return;
    }
    let mut out = vec![0u8; block];
    for chunk in bytes.chunks_exact_mut(block) {
        for kk in 0..k {
            for nn in 0..n {
                let from = 4 * (kk * n + nn);
                let to = 4 * (nn * k + kk);
                out[to..to + 4].copy_from_slice(&chunk[from..from + 4]);
            }
        }
        chunk.copy_from_slice(&out);
    }
}

/// `(k, n)` when every reader of buffer `b` is a matmul reading it as B
/// row-major along N (`ldb_n = 1`, `ldb_k = n`, n > 1) with the same K and
/// N, in whole [k, n] blocks: batch strides multiples of k * n, and the
/// buffer a whole number of blocks. Such a buffer can be stored as [n, k]
/// blocks and read with `ldb_k = 1, ldb_n = k`.
pub(crate) fn k_major_shape(plan: &Plan, b: BufferId) -> Option<(usize, usize)> {
    let mut shape = None;
    for kernel in &plan.kernels {
        for (i, &input) in kernel.inputs.iter().enumerate() {
            if input != b {
                continue;
            }
            let KernelOp::MatMul(m) = &kernel.op else {
                return None;
            };
            let kn = m.k.checked_mul(m.n)?;
            let dense = i == 1
                && m.ldb_n == 1
                && m.ldb_k == m.n
                && m.n > 1
                && kn > 0
                && m.b_batch_strides.iter().all(|s| s % kn == 0);
            if !dense || shape.is_some_and(|s| s != (m.k, m.n)) {
                return None;
            }
            shape = Some((m.k, m.n));
        }
    }
    let (k, n) = shape?;
    let elems = plan.buffers.get(b)?.bytes() / 4;
    (elems % (k * n) == 0).then_some((k, n))
}

/// The bytes of buffer `b` in the weight blob (None: not a weight).
fn weight_range(plan: &Plan, b: BufferId) -> Option<Range<usize>> {
    let buf = plan.buffers.get(b)?;
    match buf.loc {
        Loc::Weight(off) => Some(off..off + buf.bytes()),
        Loc::Arena(_) => None,
    }
}

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
fn choose_rounded(plan: &Plan) -> HashSet<BufferId> {
    let weight_range = |id: BufferId| weight_range(plan, id);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_weights_read_by_rounding_gemms_alone_are_chosen() {
        // resnet_tiny: every dense conv's weight is chosen (BatchNorm is
        // folded into it); a bias, read by the conv's epilogue, is not.
        let g = reef_zoo::build("resnet_tiny", 1, 0).expect("zoo model");
        let plan = reef_plan::compile(&g).expect("compile");
        let layout = WeightLayout::choose(&plan, false);
        assert!(layout.k_major.is_empty());
        let set = layout.rounded.clone();
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
        let blob = layout.blob(&plan);
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

    /// `plan` as the GPU sees it under `layout`: the rewritten blob, and
    /// the matmuls reading K-major weights with the strides of
    /// [`WeightLayout::b_strides`].
    fn as_laid_out(plan: &Plan, layout: &WeightLayout) -> Plan {
        let mut out = plan.clone();
        out.weights = layout.blob(plan).into();
        for k in &mut out.kernels {
            let b = k.inputs.get(1).copied();
            if let (KernelOp::MatMul(m), Some(b)) = (&mut k.op, b) {
                (m.ldb_k, m.ldb_n) = layout.b_strides(b, m);
            }
        }
        out
    }

    /// Runs `plan` on the CPU backend (GEMM operands rounded to TF32, as
    /// the rounded weights assume) on fixed pseudo-random inputs (token
    /// ids below 100, masks of ones); returns output 0.
    fn run_cpu(plan: Plan) -> Vec<f32> {
        use reef_exec::{Device, Priority, Variant};
        use reef_model::DType;
        let cpu = reef_exec::cpu::CpuDevice::new(None)
            .expect("CPU device")
            .with_tf32(true);
        let inputs = plan.inputs.clone();
        let model = cpu.load(std::sync::Arc::new(plan)).expect("CPU load");
        let mut ctx = model.context().expect("CPU context");
        for (i, io) in inputs.iter().enumerate() {
            let n: usize = io.shape.iter().product();
            let bytes: Vec<u8> = match io.dtype {
                DType::F32 => (0..n)
                    .flat_map(|j| (((j * 37 % 101) as f32) / 50.0 - 1.0).to_le_bytes())
                    .collect(),
                DType::I64 if io.name.contains("mask") => {
                    (0..n).flat_map(|_| 1i64.to_le_bytes()).collect()
                }
                DType::I64 => (0..n)
                    .flat_map(|j| ((j * 37 % 100) as i64).to_le_bytes())
                    .collect(),
                other => panic!("input {} is {other:?}", io.name),
            };
            ctx.write_input(i, &bytes).expect("input");
        }
        let mut lane = cpu.lane(Priority::High).expect("lane");
        reef_exec::run::run_to_end(lane.as_mut(), ctx.as_mut(), 0, Variant::Rt).expect("run");
        ctx.read_output(0)
            .expect("output")
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// A weight of `shape` with values in [-1, 1) drawn from `seed`.
    fn weight(shape: &[usize], seed: u64) -> reef_model::Tensor {
        let n: usize = shape.iter().product();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let data = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect();
        reef_model::Tensor::f32(shape.to_vec(), data).expect("sizes match")
    }

    /// Matmuls over weights stored [K, N] (ONNX `MatMul(x, W)`): two
    /// layers, a weight both read by two matmuls, a batched weight, a
    /// weight that an Add also reads (which must stay as it is), and one
    /// also read through a reshape.
    fn nmajor_graph() -> reef_model::Graph {
        use reef_model::{DType, GraphBuilder, Op};
        let mut b = GraphBuilder::new("nmajor");
        let x = b.input("x", DType::F32, vec![2, 12, 24]).unwrap();
        let w1 = b.initializer("w1", weight(&[24, 40], 1)).unwrap();
        let w2 = b.initializer("w2", weight(&[40, 24], 2)).unwrap();
        let w3 = b.initializer("w3", weight(&[2, 24, 20], 3)).unwrap();
        let w4 = b.initializer("w4", weight(&[24, 24], 4)).unwrap();
        let h = b.node("mm1", Op::MatMul, &[x, w1]).unwrap();
        let h = b.node("relu", Op::Relu, &[h]).unwrap();
        let h = b.node("mm2", Op::MatMul, &[h, w2]).unwrap();
        let g = b.node("mm1_again", Op::MatMul, &[x, w1]).unwrap();
        let g = b.node("mm2_again", Op::MatMul, &[g, w2]).unwrap();
        let h = b.node("sum", Op::Add, &[h, g]).unwrap();
        let y = b.node("mm3", Op::MatMul, &[h, w3]).unwrap();
        let z = b.node("mm4", Op::MatMul, &[x, w4]).unwrap();
        // w5 [24, 20] read as B, and as [20, 24] through a reshape.
        let w5 = b.initializer("w5", weight(&[24, 20], 5)).unwrap();
        let shape = b
            .initializer(
                "w5_shape",
                reef_model::Tensor::i64(vec![2], vec![20, 24]).unwrap(),
            )
            .unwrap();
        let w5r = b
            .node("w5_reshape", Op::Reshape { allowzero: false }, &[w5, shape])
            .unwrap();
        let u = b.node("mm5", Op::MatMul, &[x, w5]).unwrap();
        let u = b.node("mm6", Op::MatMul, &[u, w5r]).unwrap();
        let u = b.node("mm7", Op::MatMul, &[u, w5]).unwrap();
        let y = b.node("plus_w5", Op::Add, &[y, u]).unwrap();
        let v = b.input("v", DType::F32, vec![24, 24]).unwrap();
        let v = b.node("add_w4", Op::Add, &[v, w4]).unwrap();
        b.output(y);
        b.output(z);
        b.output(v);
        b.finish().unwrap()
    }

    #[test]
    fn k_major_matmul_weights_give_the_same_model_output() {
        // Stored K-major and read with the transposed strides, the weights
        // give the model the output it computes with them as they are.
        let plan = reef_plan::compile(&nmajor_graph()).expect("compile");
        let layout = WeightLayout::choose(&plan, true);
        assert!(layout.k_major.is_subset(&layout.rounded));
        let names: std::collections::BTreeSet<&str> = layout
            .k_major
            .iter()
            .map(|&b| plan.buffers[b].name.as_str())
            .collect();
        assert!(names.iter().any(|n| n.contains("w1")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("w3")), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("w4")), "{names:?}");
        // The compiler folds w5's reshape into a copy of its own; where
        // the two are aliases of the same bytes, neither is transposed.
        let id = |name: &str| plan.buffers.iter().position(|b| b.name == name);
        let (w5, w5r) = (id("w5").expect("w5"), id("w5_reshape_out").expect("copy"));
        assert!(layout.k_major.contains(&w5) && layout.k_major.contains(&w5r));
        let mut aliased = plan.clone();
        aliased.buffers[w5r].loc = aliased.buffers[w5].loc;
        let alias_layout = WeightLayout::choose(&aliased, true);
        assert!(!alias_layout.k_major.contains(&w5) && !alias_layout.k_major.contains(&w5r));
        assert!(alias_layout.rounded.contains(&w5) && alias_layout.rounded.contains(&w5r));
        assert_eq!(alias_layout.k_major.len(), layout.k_major.len() - 2);
        // No transposed buffer shares a byte with another rounded one.
        for &b in &layout.k_major {
            let r = weight_range(&plan, b).expect("a weight");
            for &o in layout.rounded.iter().filter(|&&o| o != b) {
                let x = weight_range(&plan, o).expect("a weight");
                assert!(x.end <= r.start || r.end <= x.start, "{b} and {o} overlap");
            }
        }
        for &b in &layout.k_major {
            let (k, n) = k_major_shape(&plan, b).expect("shape");
            let r = weight_range(&plan, b).expect("a weight");
            let blob = layout.blob(&plan);
            let (before, after) = (&plan.weights[r.clone()], &blob[r]);
            let at = |bytes: &[u8], i: usize| {
                reef_exec::cpu::round_tf32(f32::from_le_bytes([
                    bytes[4 * i],
                    bytes[4 * i + 1],
                    bytes[4 * i + 2],
                    bytes[4 * i + 3],
                ]))
            };
            let blocks = before.len() / (4 * k * n);
            for (j, kk, nn) in [(0, 0, 1), (0, k - 1, 0), (blocks - 1, k / 2, n - 1)] {
                let o = j * k * n;
                assert_eq!(
                    at(before, o + kk * n + nn).to_bits(),
                    at(after, o + nn * k + kk).to_bits(),
                    "block {j} ({kk}, {nn})"
                );
            }
        }
        let rounded_only = WeightLayout {
            k_major: HashSet::new(),
            ..layout.clone()
        };
        let want = run_cpu(as_laid_out(&plan, &rounded_only));
        let got = run_cpu(as_laid_out(&plan, &layout));
        assert!(want.iter().any(|&v| v != 0.0), "a non-trivial output");
        assert_eq!(want.len(), got.len());
        let (mut num, mut den) = (0f64, 0f64);
        for (a, b) in want.iter().zip(&got) {
            num += f64::from(a - b).powi(2);
            den += f64::from(*a).powi(2);
        }
        let rel = (num / den.max(1e-30)).sqrt();
        assert!(rel < 1e-6, "relative L2 error {rel}");
        // A layout that transposes the blob but keeps the plan's strides
        // computes something else: the check above can fail.
        let mut wrong = as_laid_out(&plan, &rounded_only);
        wrong.weights = layout.blob(&plan).into();
        let bad = run_cpu(wrong);
        let off: f64 = want
            .iter()
            .zip(&bad)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>();
        assert!((off / den).sqrt() > 1e-3, "the transposed blob matters");
    }
}
