//! A small reference evaluator for the ops that appear in shape computations
//! and constant sub-graphs. The builder uses it to fold constants eagerly; the
//! compute ops (Conv, MatMul, pooling, ...) are left to the backends.

use crate::error::{ModelError, Result};
use crate::graph::{Graph, Node};
use crate::op::Op;
use crate::shape::{infer_node, norm_axis, slice_params};
use crate::tensor::{numel, strides, DType, Tensor};

/// Largest constant the folder will materialise (elements).
pub const FOLD_LIMIT: usize = 1 << 24;

/// True for ops the folder can evaluate.
pub fn foldable(op: &Op) -> bool {
    matches!(
        op,
        Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Relu
            | Op::Sqrt
            | Op::Exp
            | Op::Neg
            | Op::Sigmoid
            | Op::Tanh
            | Op::Erf
            | Op::Act(_)
            | Op::Unary(_)
            | Op::Min
            | Op::Max
            | Op::PRelu
            | Op::Equal
            | Op::Less
            | Op::Greater
            | Op::GreaterOrEqual
            | Op::LessOrEqual
            | Op::And
            | Op::Or
            | Op::Xor
            | Op::Not
            | Op::Where
            | Op::Shape { .. }
            | Op::Gather { .. }
            | Op::GatherElements { .. }
            | Op::Unsqueeze { .. }
            | Op::Squeeze { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::Reshape { .. }
            | Op::Flatten { .. }
            | Op::Slice
            | Op::Constant(_)
            | Op::ConstantOfShape(_)
            | Op::Range
            | Op::Identity
            | Op::Expand
            | Op::Transpose { .. }
            | Op::Clip { .. }
    )
}

/// Index into a broadcast operand: maps an output multi-index to a flat index.
fn bcast_index(out_shape: &[usize], in_shape: &[usize]) -> Vec<usize> {
    let r = out_shape.len();
    let ist = strides(in_shape);
    let mut st = vec![0; r];
    for i in 0..in_shape.len() {
        let o = r - in_shape.len() + i;
        st[o] = if in_shape[i] == 1 { 0 } else { ist[i] };
    }
    let n = numel(out_shape);
    let ost = strides(out_shape);
    (0..n)
        .map(|flat| {
            let mut rem = flat;
            let mut idx = 0;
            for d in 0..r {
                let q = rem / ost[d];
                rem %= ost[d];
                idx += q * st[d];
            }
            idx
        })
        .collect()
}

/// Gathers `src` through a strided view: out[i] = src[offset + Σ idx_d · stride_d].
fn strided_gather(src: &[f64], shape: &[usize], offset: i64, st: &[i64]) -> Vec<f64> {
    let n = numel(shape);
    let ost = strides(shape);
    (0..n)
        .map(|flat| {
            let mut rem = flat;
            let mut idx = offset;
            for d in 0..shape.len() {
                let q = rem / ost[d];
                rem %= ost[d];
                idx += q as i64 * st[d];
            }
            src[idx as usize]
        })
        .collect()
}

/// GatherElements on a row-major `data` of shape `data_shape`: for every
/// position `p` of `indices` (shape `idx_shape`, same rank),
/// `out[p] = data[p with p_axis replaced by indices[p]]`; negative indices
/// count from the end. The reference every backend matches. Errors name the
/// first index out of range.
pub fn gather_elements<T: Copy>(
    data_shape: &[usize],
    data: &[T],
    idx_shape: &[usize],
    indices: &[i64],
    axis: usize,
) -> std::result::Result<Vec<T>, String> {
    let r = data_shape.len();
    if idx_shape.len() != r || axis >= r {
        return Err(format!(
            "indices {idx_shape:?} and data {data_shape:?} differ in rank or axis {axis} is out of range"
        ));
    }
    if numel(data_shape) != data.len() || numel(idx_shape) != indices.len() {
        return Err("data or indices do not match their shapes".into());
    }
    let dst = strides(data_shape);
    let ist = strides(idx_shape);
    let len = data_shape[axis] as i64;
    let mut out = Vec::with_capacity(indices.len());
    for (p, &i) in indices.iter().enumerate() {
        let j = if i < 0 { i + len } else { i };
        if !(0..len).contains(&j) {
            return Err(format!(
                "index {i} (element {p} of the indices) is out of bounds for axis {axis} of size {len}"
            ));
        }
        let mut src = 0;
        for d in 0..r {
            let c = if d == axis {
                j as usize
            } else {
                p / ist[d] % idx_shape[d]
            };
            if c >= data_shape[d] {
                return Err(format!(
                    "indices {idx_shape:?} reach past data {data_shape:?}"
                ));
            }
            src += c * dst[d];
        }
        out.push(data[src]);
    }
    Ok(out)
}

/// Evaluates `node` on constant inputs. Returns `Ok(None)` when the op is not
/// foldable or its result would be too large.
pub fn eval_node(g: &Graph, node: &Node) -> Result<Option<Vec<Tensor>>> {
    if !foldable(&node.op) {
        return Ok(None);
    }
    let infos = infer_node(g, node)?;
    let (odt, oshape) = infos[0].clone();
    if numel(&oshape) > FOLD_LIMIT {
        return Ok(None);
    }
    let inp = |i: usize| -> Option<&Tensor> { node.input(i).and_then(|v| g.constant(v)) };
    let all_const = node
        .inputs
        .iter()
        .flatten()
        .all(|&v| g.constant(v).is_some());
    if let Op::Shape { start, end } = &node.op {
        let s = &g.values[node.input(0).unwrap()].shape;
        let r = s.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (a, b) = (clamp(*start), clamp(end.unwrap_or(r)));
        let v: Vec<i64> = s[a..b.max(a)].iter().map(|&d| d as i64).collect();
        return Ok(Some(vec![Tensor::i64_vec(&v)]));
    }
    if !all_const {
        return Ok(None);
    }
    let x = |i: usize| inp(i).map(|t| t.to_f64_vec()).unwrap_or_default();
    let sh = |i: usize| inp(i).map(|t| t.shape.clone()).unwrap_or_default();
    let bin = |f: &dyn Fn(f64, f64) -> f64| -> Vec<f64> {
        let (a, b) = (x(0), x(1));
        let ia = bcast_index(&oshape, &sh(0));
        let ib = bcast_index(&oshape, &sh(1));
        ia.iter().zip(&ib).map(|(&i, &j)| f(a[i], b[j])).collect()
    };
    let int = matches!(odt, DType::I64 | DType::I32);
    let un = |f: &dyn Fn(f64) -> f64| -> Vec<f64> { x(0).into_iter().map(f).collect() };
    let v: Vec<f64> = match &node.op {
        Op::Add => bin(&|a, b| a + b),
        Op::Sub => bin(&|a, b| a - b),
        Op::Mul => bin(&|a, b| a * b),
        Op::Div => bin(&|a, b| {
            if int {
                if b == 0.0 {
                    0.0
                } else {
                    (a / b).trunc()
                }
            } else {
                (a as f32 / b as f32) as f64
            }
        }),
        Op::Pow => bin(&|a, b| (a as f32).powf(b as f32) as f64),
        Op::Equal => bin(&|a, b| (a == b) as u8 as f64),
        Op::Less => bin(&|a, b| (a < b) as u8 as f64),
        Op::Greater => bin(&|a, b| (a > b) as u8 as f64),
        Op::GreaterOrEqual => bin(&|a, b| (a >= b) as u8 as f64),
        Op::LessOrEqual => bin(&|a, b| (a <= b) as u8 as f64),
        Op::And => bin(&|a, b| (a != 0.0 && b != 0.0) as u8 as f64),
        Op::Or => bin(&|a, b| (a != 0.0 || b != 0.0) as u8 as f64),
        Op::Xor => bin(&|a, b| ((a != 0.0) != (b != 0.0)) as u8 as f64),
        Op::Not => un(&|a| (a == 0.0) as u8 as f64),
        Op::Relu => un(&|a| a.max(0.0)),
        Op::Sqrt => un(&|a| (a as f32).sqrt() as f64),
        Op::Exp => un(&|a| (a as f32).exp() as f64),
        Op::Neg => un(&|a| -a),
        Op::Sigmoid => un(&|a| crate::op::Act::Sigmoid.apply(a as f32) as f64),
        Op::Tanh => un(&|a| (a as f32).tanh() as f64),
        Op::Erf => un(&|a| crate::op::erf(a as f32) as f64),
        Op::Act(act) => un(&|a| act.apply(a as f32) as f64),
        Op::Unary(f) => un(&|a| f.apply(a as f32) as f64),
        Op::Min => bin(&|a, b| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }
        }),
        Op::Max => bin(&|a, b| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        }),
        Op::PRelu => bin(&|a, b| {
            if a < 0.0 {
                (a as f32 * b as f32) as f64
            } else {
                a
            }
        }),
        Op::Clip { min, max } => {
            let lo = inp(1)
                .map(|t| t.to_f64_vec()[0])
                .or(min.map(|v| v as f64))
                .unwrap_or(f64::NEG_INFINITY);
            let hi = inp(2)
                .map(|t| t.to_f64_vec()[0])
                .or(max.map(|v| v as f64))
                .unwrap_or(f64::INFINITY);
            un(&|a| a.max(lo).min(hi))
        }
        Op::Where => {
            let (c, a, b) = (x(0), x(1), x(2));
            let ic = bcast_index(&oshape, &sh(0));
            let ia = bcast_index(&oshape, &sh(1));
            let ib = bcast_index(&oshape, &sh(2));
            (0..ic.len())
                .map(|k| if c[ic[k]] != 0.0 { a[ia[k]] } else { b[ib[k]] })
                .collect()
        }
        Op::Identity
        | Op::Reshape { .. }
        | Op::Flatten { .. }
        | Op::Unsqueeze { .. }
        | Op::Squeeze { .. }
        | Op::Cast { .. } => {
            let v = x(0);
            if let (
                Op::Cast {
                    to: DType::I64 | DType::I32,
                },
                DType::F32,
            ) = (&node.op, inp(0).unwrap().dtype())
            {
                v.into_iter().map(|a| a.trunc()).collect()
            } else {
                v
            }
        }
        Op::Constant(t) => t.to_f64_vec(),
        Op::ConstantOfShape(t) => {
            vec![t.to_f64_vec().first().copied().unwrap_or(0.0); numel(&oshape)]
        }
        Op::Range => {
            let first = |v: Vec<f64>| v.first().copied().unwrap_or(0.0);
            let (s, d) = (first(x(0)), first(x(2)));
            (0..numel(&oshape)).map(|i| s + i as f64 * d).collect()
        }
        Op::Expand => {
            let v = x(0);
            bcast_index(&oshape, &sh(0))
                .into_iter()
                .map(|i| v[i])
                .collect()
        }
        Op::Concat { axis } => {
            let ax = norm_axis(*axis, oshape.len()).unwrap();
            let outer = numel(&oshape[..ax]);
            let inner = numel(&oshape[ax + 1..]);
            let mut out = Vec::with_capacity(numel(&oshape));
            let parts: Vec<(Vec<f64>, usize)> =
                (0..node.inputs.len()).map(|i| (x(i), sh(i)[ax])).collect();
            for o in 0..outer {
                for (p, len) in &parts {
                    out.extend_from_slice(&p[o * len * inner..(o + 1) * len * inner]);
                }
            }
            out
        }
        Op::Gather { axis } => {
            let s = sh(0);
            let ax = norm_axis(*axis, s.len()).unwrap();
            let (data, idx) = (x(0), inp(1).unwrap().to_i64_vec());
            let outer = numel(&s[..ax]);
            let inner = numel(&s[ax + 1..]);
            let dim = s[ax] as i64;
            let mut out = Vec::with_capacity(numel(&oshape));
            for o in 0..outer {
                for &i in &idx {
                    let i = if i < 0 { i + dim } else { i };
                    if i < 0 || i >= dim {
                        return Err(ModelError::node(
                            &node.name,
                            "Gather",
                            format!("index {i} out of range for axis of size {dim}"),
                        ));
                    }
                    let base = (o * s[ax] + i as usize) * inner;
                    out.extend_from_slice(&data[base..base + inner]);
                }
            }
            out
        }
        Op::GatherElements { axis } => {
            let s = sh(0);
            let ax = norm_axis(*axis, s.len()).ok_or_else(|| {
                ModelError::node(&node.name, "GatherElements", "axis out of range")
            })?;
            let idx = inp(1).map(|t| t.to_i64_vec()).unwrap_or_default();
            gather_elements(&s, &x(0), &sh(1), &idx, ax)
                .map_err(|r| ModelError::node(&node.name, "GatherElements", r))?
        }
        Op::Slice => {
            let s = sh(0);
            let p = slice_params(
                &s,
                &x(1).iter().map(|&v| v as i64).collect::<Vec<_>>(),
                &x(2).iter().map(|&v| v as i64).collect::<Vec<_>>(),
                inp(3).map(|t| t.to_i64_vec()).as_deref(),
                inp(4).map(|t| t.to_i64_vec()).as_deref(),
            )
            .map_err(|r| ModelError::node(&node.name, "Slice", r))?;
            let ist: Vec<i64> = strides(&s).iter().map(|&v| v as i64).collect();
            let mut st = ist.clone();
            let mut off = 0i64;
            for (ax, start, step, _) in p {
                off += start * ist[ax];
                st[ax] = ist[ax] * step;
            }
            strided_gather(&x(0), &oshape, off, &st)
        }
        Op::Transpose { perm } => {
            let s = sh(0);
            let p: Vec<usize> = perm.clone().unwrap_or_else(|| (0..s.len()).rev().collect());
            let ist = strides(&s);
            let st: Vec<i64> = p.iter().map(|&i| ist[i] as i64).collect();
            strided_gather(&x(0), &oshape, 0, &st)
        }
        _ => return Ok(None),
    };
    Ok(Some(vec![Tensor::from_f64(odt, oshape, v)]))
}
