//! Shape and type inference, one rule per op, with errors that name the node.

use crate::error::{ModelError, Result};
use crate::graph::{Graph, Node, ValueId};
use crate::op::{Op, PoolAttrs};
use crate::tensor::{numel, DType, Tensor};

/// Normalises a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (a >= 0 && (a as usize) < rank.max(1)).then_some(a as usize)
}

/// Numpy broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        out[i] = if da == db {
            da
        } else if da == 1 {
            db
        } else if db == 1 {
            da
        } else {
            return None;
        };
    }
    Some(out)
}

/// Output size of one spatial dimension of a conv or pool.
pub fn out_dim(
    input: usize,
    k: usize,
    stride: usize,
    pad0: usize,
    pad1: usize,
    dil: usize,
    ceil: bool,
) -> Option<usize> {
    if k == 0 || dil == 0 {
        return None;
    }
    let eff = dil.checked_mul(k - 1)? + 1;
    let padded = input + pad0 + pad1;
    if padded < eff || stride == 0 {
        return None;
    }
    let span = padded - eff;
    let mut o = span / stride + 1;
    if ceil && !span.is_multiple_of(stride) {
        o += 1;
        // The last window must start inside the input or left padding.
        if (o - 1) * stride >= input + pad0 {
            o -= 1;
        }
    }
    Some(o)
}

/// Output spatial size of a pool.
pub fn pool_out(p: &PoolAttrs, h: usize, w: usize) -> Option<(usize, usize)> {
    Some((
        out_dim(
            h,
            p.kernel[0],
            p.stride[0],
            p.pads[0],
            p.pads[2],
            p.dilation[0],
            p.ceil_mode,
        )?,
        out_dim(
            w,
            p.kernel[1],
            p.stride[1],
            p.pads[1],
            p.pads[3],
            p.dilation[1],
            p.ceil_mode,
        )?,
    ))
}

/// Resolves an ONNX Reshape target against the input shape.
pub fn reshape_target(
    input: &[usize],
    target: &[i64],
    allowzero: bool,
) -> std::result::Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 => {
                if infer.is_some() {
                    return Err("more than one -1 in the target shape".into());
                }
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*input.get(i).ok_or("0 refers past the input's rank")?),
            d if d < 0 => return Err(format!("invalid dimension {d} in the target shape")),
            d => out.push(d as usize),
        }
    }
    let n = numel(input);
    if let Some(i) = infer {
        let rest: usize = out
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, &d)| d)
            .product();
        if rest == 0 || !n.is_multiple_of(rest) {
            return Err(format!("cannot infer -1: {n} elements into {target:?}"));
        }
        out[i] = n / rest;
    }
    if numel(&out) != n {
        return Err(format!(
            "cannot reshape {input:?} ({n} elements) to {out:?}"
        ));
    }
    Ok(out)
}

/// Resolved Slice parameters per axis: (axis, start, step, count).
pub fn slice_params(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> std::result::Result<Vec<(usize, i64, i64, usize)>, String> {
    if starts.len() != ends.len() {
        return Err("starts and ends differ in length".into());
    }
    let r = shape.len();
    let mut res = vec![];
    for i in 0..starts.len() {
        let ax = match axes {
            Some(a) => norm_axis(*a.get(i).ok_or("axes shorter than starts")?, r)
                .ok_or("axis out of range")?,
            None => i,
        };
        if ax >= r {
            return Err(format!("axis {ax} out of range for rank {r}"));
        }
        let step = steps.map(|s| s.get(i).copied().unwrap_or(1)).unwrap_or(1);
        if step == 0 {
            return Err("step 0".into());
        }
        let dim = shape[ax] as i64;
        let clampi = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
        let mut s = starts[i];
        let mut e = ends[i];
        if s < 0 {
            s += dim;
        }
        if e < 0 {
            e += dim;
        }
        let count = if step > 0 {
            s = clampi(s, 0, dim);
            e = clampi(e, 0, dim);
            if e > s {
                ((e - s) + step - 1) / step
            } else {
                0
            }
        } else {
            s = clampi(s, -1, dim - 1);
            e = clampi(e, -1, dim - 1);
            if s > e {
                ((s - e) + (-step) - 1) / (-step)
            } else {
                0
            }
        };
        res.push((ax, s, step, count as usize));
    }
    Ok(res)
}

/// Checks GatherElements operands of shapes `data` and `indices` against
/// `axis` (may be negative) and returns the normalised axis. The ranks must
/// be equal and at least 1, and off the axis the indices may not be longer
/// than the data.
pub fn gather_elements_axis(
    data: &[usize],
    indices: &[usize],
    axis: i64,
) -> std::result::Result<usize, String> {
    let r = data.len();
    if r == 0 {
        return Err("data must have rank 1 or more, got a scalar".into());
    }
    if indices.len() != r {
        return Err(format!(
            "indices of shape {indices:?} (rank {}) must have the rank of data {data:?} (rank {r})",
            indices.len()
        ));
    }
    let ax = norm_axis(axis, r).ok_or_else(|| {
        format!(
            "axis {axis} out of range for rank {r} (valid: {} to {})",
            -(r as i64),
            r - 1
        )
    })?;
    if let Some(d) = (0..r).find(|&d| d != ax && indices[d] > data[d]) {
        return Err(format!(
            "indices {indices:?} are longer than data {data:?} on dimension {d} (not the axis {ax})"
        ));
    }
    Ok(ax)
}

/// The first index of `indices` outside `[-len, len)`, as (position, value).
pub fn first_out_of_range(indices: &[i64], len: usize) -> Option<(usize, i64)> {
    let n = len as i64;
    indices
        .iter()
        .position(|&i| i < -n || i >= n)
        .map(|p| (p, indices[p]))
}

fn err(node: &Node, reason: impl Into<String>) -> ModelError {
    ModelError::node(&node.name, node.op.name(), reason)
}

fn need(g: &Graph, node: &Node, i: usize) -> Result<ValueId> {
    node.input(i)
        .filter(|&v| v < g.values.len())
        .ok_or_else(|| err(node, format!("missing input #{i}")))
}

/// The constant value of input `i`, required for shape inference.
pub fn const_input<'a>(g: &'a Graph, node: &Node, i: usize, what: &str) -> Result<&'a Tensor> {
    let v = need(g, node, i)?;
    g.constant(v).ok_or_else(|| ModelError::Unsupported {
        node: node.name.clone(),
        op: node.op.name().into(),
        reason: format!("{what} (input '{}') must be a constant", g.values[v].name),
    })
}

fn opt_const_i64(g: &Graph, node: &Node, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
    match node.input(i) {
        None => Ok(None),
        Some(_) => Ok(Some(const_input(g, node, i, what)?.to_i64_vec())),
    }
}

/// Infers (dtype, shape) of every output of `node`.
pub fn infer_node(g: &Graph, node: &Node) -> Result<Vec<(DType, Vec<usize>)>> {
    let sh = |i: usize| -> Result<Vec<usize>> { Ok(g.values[need(g, node, i)?].shape.clone()) };
    let dt = |i: usize| -> Result<DType> { Ok(g.values[need(g, node, i)?].dtype) };
    let f32_only = |i: usize| -> Result<()> {
        let d = dt(i)?;
        if d != DType::F32 {
            return Err(ModelError::Unsupported {
                node: node.name.clone(),
                op: node.op.name().into(),
                reason: format!("input #{i} has type {d}; only f32 is supported"),
            });
        }
        Ok(())
    };
    let one = |d: DType, s: Vec<usize>| Ok(vec![(d, s)]);
    // Nodes whose inputs are all constant are folded on the host (any type);
    // the type restrictions of the kernels apply only to the others.
    let folded = node
        .inputs
        .iter()
        .flatten()
        .all(|&v| v < g.values.len() && g.constant(v).is_some());
    match &node.op {
        Op::Conv(a) => {
            f32_only(0)?;
            let x = sh(0)?;
            let w = sh(1)?;
            if x.len() != 4 || w.len() != 4 {
                return Err(err(
                    node,
                    format!("only 2-D convolution (NCHW) is supported; input {x:?}, weight {w:?}"),
                ));
            }
            if a.groups == 0 || x[1] % a.groups != 0 || w[0] % a.groups != 0 {
                return Err(err(
                    node,
                    format!(
                        "groups {} do not divide channels {} / {}",
                        a.groups, x[1], w[0]
                    ),
                ));
            }
            if w[1] * a.groups != x[1] {
                return Err(err(
                    node,
                    format!(
                        "weight {w:?} expects {} input channels, input has {}",
                        w[1] * a.groups,
                        x[1]
                    ),
                ));
            }
            if [w[2], w[3]] != a.kernel {
                return Err(err(
                    node,
                    format!("kernel_shape {:?} disagrees with weight {w:?}", a.kernel),
                ));
            }
            if let Some(b) = node.input(2) {
                if g.values[b].shape != [w[0]] {
                    return Err(err(
                        node,
                        format!("bias shape {:?}, expected [{}]", g.values[b].shape, w[0]),
                    ));
                }
            }
            let oh = out_dim(
                x[2],
                a.kernel[0],
                a.stride[0],
                a.pads[0],
                a.pads[2],
                a.dilation[0],
                false,
            );
            let ow = out_dim(
                x[3],
                a.kernel[1],
                a.stride[1],
                a.pads[1],
                a.pads[3],
                a.dilation[1],
                false,
            );
            match (oh, ow) {
                (Some(oh), Some(ow)) => one(DType::F32, vec![x[0], w[0], oh, ow]),
                _ => Err(err(
                    node,
                    format!("window {:?} larger than padded input {x:?}", a.kernel),
                )),
            }
        }
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            f32_only(0)?;
            let a = sh(0)?;
            let b = sh(1)?;
            if a.len() != 2 || b.len() != 2 {
                return Err(err(
                    node,
                    format!("inputs must be 2-D, got {a:?} and {b:?}"),
                ));
            }
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(err(node, format!("inner dimensions differ: {a:?} x {b:?}")));
            }
            if let Some(c) = node.input(2) {
                if broadcast(&g.values[c].shape, &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return Err(err(
                        node,
                        format!(
                            "C of shape {:?} does not broadcast to [{m}, {n}]",
                            g.values[c].shape
                        ),
                    ));
                }
            }
            one(DType::F32, vec![m, n])
        }
        Op::MatMul => {
            f32_only(0)?;
            let mut a = sh(0)?;
            let mut b = sh(1)?;
            if a.is_empty() || b.is_empty() {
                return Err(err(node, "scalar operands are not allowed"));
            }
            let a1 = a.len() == 1;
            let b1 = b.len() == 1;
            if a1 {
                a.insert(0, 1);
            }
            if b1 {
                b.push(1);
            }
            let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
            let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
            if k != k2 {
                return Err(err(
                    node,
                    format!("inner dimensions differ: {:?} x {:?}", sh(0)?, sh(1)?),
                ));
            }
            let batch = broadcast(&a[..a.len() - 2], &b[..b.len() - 2]).ok_or_else(|| {
                err(
                    node,
                    format!("batch dimensions do not broadcast: {a:?} x {b:?}"),
                )
            })?;
            let mut out = batch;
            if !a1 {
                out.push(m);
            }
            if !b1 {
                out.push(n);
            }
            one(DType::F32, out)
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Min | Op::Max | Op::PRelu => {
            let (a, b) = (sh(0)?, sh(1)?);
            let out = broadcast(&a, &b)
                .ok_or_else(|| err(node, format!("shapes {a:?} and {b:?} do not broadcast")))?;
            if node.op == Op::PRelu && out != a {
                return Err(err(
                    node,
                    format!("slope of shape {b:?} does not broadcast to X of shape {a:?}"),
                ));
            }
            let (da, db) = (dt(0)?, dt(1)?);
            if da != db && !matches!(node.op, Op::Pow) {
                return Err(err(node, format!("operand types differ: {da} and {db}")));
            }
            one(da, out)
        }
        Op::Equal | Op::Less | Op::Greater | Op::GreaterOrEqual | Op::LessOrEqual => {
            let d = dt(0)?;
            if !folded && (!matches!(d, DType::F32 | DType::I64) || dt(1)? != d) {
                return Err(ModelError::Unsupported {
                    node: node.name.clone(),
                    op: node.op.name().into(),
                    reason: format!("comparisons of {d} and {} operands are not supported (f32 or i64 of one type)", dt(1)?),
                });
            }
            let (a, b) = (sh(0)?, sh(1)?);
            let out = broadcast(&a, &b)
                .ok_or_else(|| err(node, format!("shapes {a:?} and {b:?} do not broadcast")))?;
            one(DType::Bool, out)
        }
        Op::And | Op::Or | Op::Xor => {
            let (da, db) = (dt(0)?, dt(1)?);
            if !folded && (da != DType::Bool || db != DType::Bool) {
                return Err(err(
                    node,
                    format!("logical operators take bool operands, got {da} and {db}"),
                ));
            }
            let (a, b) = (sh(0)?, sh(1)?);
            let out = broadcast(&a, &b)
                .ok_or_else(|| err(node, format!("shapes {a:?} and {b:?} do not broadcast")))?;
            one(DType::Bool, out)
        }
        Op::Not => one(DType::Bool, sh(0)?),
        Op::Where => {
            if !folded {
                f32_only(1)?;
                f32_only(2)?;
            }
            let (c, a, b) = (sh(0)?, sh(1)?, sh(2)?);
            let ab = broadcast(&a, &b).and_then(|ab| broadcast(&c, &ab));
            let out = ab
                .ok_or_else(|| err(node, format!("shapes {c:?}, {a:?}, {b:?} do not broadcast")))?;
            one(dt(1)?, out)
        }
        Op::Relu
        | Op::Sigmoid
        | Op::Tanh
        | Op::Erf
        | Op::Sqrt
        | Op::Exp
        | Op::Neg
        | Op::Act(_)
        | Op::Unary(_)
        | Op::Identity => one(dt(0)?, sh(0)?),
        Op::ArgExtreme { axis, keepdims, .. } => {
            if !folded {
                f32_only(0)?;
            }
            let mut x = sh(0)?;
            let ax = norm_axis(*axis, x.len())
                .ok_or_else(|| err(node, format!("axis {axis} out of range")))?;
            if x[ax] == 0 {
                return Err(err(node, format!("axis {ax} is empty; it has no extreme")));
            }
            if *keepdims {
                x[ax] = 1;
            } else {
                x.remove(ax);
            }
            one(DType::I64, x)
        }
        Op::Resize(a) => {
            if !folded {
                f32_only(0)?;
            }
            let x = sh(0)?;
            if a.sizes.len() != x.len() || a.scales.len() != x.len() {
                return Err(err(
                    node,
                    format!(
                        "{} output sizes and {} scales for an input of rank {}",
                        a.sizes.len(),
                        a.scales.len(),
                        x.len()
                    ),
                ));
            }
            one(DType::F32, a.sizes.clone())
        }
        Op::Clip { .. } => {
            for i in 1..3 {
                if node.input(i).is_some() {
                    const_input(g, node, i, "clip bound")?;
                }
            }
            one(dt(0)?, sh(0)?)
        }
        Op::BatchNorm { .. } => {
            f32_only(0)?;
            let x = sh(0)?;
            if x.len() < 2 {
                return Err(err(
                    node,
                    format!("input must have a channel dimension, got {x:?}"),
                ));
            }
            for i in 1..5 {
                if sh(i)? != [x[1]] {
                    return Err(err(
                        node,
                        format!("parameter #{i} has shape {:?}, expected [{}]", sh(i)?, x[1]),
                    ));
                }
            }
            one(DType::F32, x)
        }
        Op::Pool(p) => {
            f32_only(0)?;
            let x = sh(0)?;
            if x.len() != 4 {
                return Err(err(
                    node,
                    format!("only 2-D pooling (NCHW) is supported; input {x:?}"),
                ));
            }
            let (oh, ow) = pool_out(p, x[2], x[3]).ok_or_else(|| {
                err(
                    node,
                    format!("window {:?} larger than padded input {x:?}", p.kernel),
                )
            })?;
            one(DType::F32, vec![x[0], x[1], oh, ow])
        }
        Op::GlobalAvgPool | Op::GlobalMaxPool => {
            let x = sh(0)?;
            if x.len() < 3 {
                return Err(err(
                    node,
                    format!("input must be N x C x spatial, got {x:?}"),
                ));
            }
            let mut out = x[..2].to_vec();
            out.extend(std::iter::repeat_n(1, x.len() - 2));
            one(dt(0)?, out)
        }
        Op::Concat { axis } => {
            let first = sh(0)?;
            let ax = norm_axis(*axis, first.len())
                .ok_or_else(|| err(node, format!("axis {axis} out of range")))?;
            let mut out = first.clone();
            out[ax] = 0;
            for i in 0..node.inputs.len() {
                let s = sh(i)?;
                if s.len() != first.len()
                    || s.iter().enumerate().any(|(d, &v)| d != ax && v != first[d])
                {
                    return Err(err(
                        node,
                        format!("input #{i} of shape {s:?} does not match {first:?} off axis {ax}"),
                    ));
                }
                out[ax] += s[ax];
            }
            one(dt(0)?, out)
        }
        Op::Flatten { axis } => {
            let x = sh(0)?;
            let a = if *axis < 0 {
                *axis + x.len() as i64
            } else {
                *axis
            };
            if a < 0 || a as usize > x.len() {
                return Err(err(node, format!("axis {axis} out of range for {x:?}")));
            }
            let a = a as usize;
            one(dt(0)?, vec![numel(&x[..a]), numel(&x[a..])])
        }
        Op::Reshape { allowzero } => {
            let x = sh(0)?;
            let t = const_input(g, node, 1, "target shape")?.to_i64_vec();
            one(
                dt(0)?,
                reshape_target(&x, &t, *allowzero).map_err(|r| err(node, r))?,
            )
        }
        Op::Transpose { perm } => {
            let x = sh(0)?;
            let p: Vec<usize> = perm.clone().unwrap_or_else(|| (0..x.len()).rev().collect());
            let mut seen = vec![false; x.len()];
            if p.len() != x.len()
                || p.iter()
                    .any(|&i| i >= x.len() || std::mem::replace(&mut seen[i], true))
            {
                return Err(err(
                    node,
                    format!("perm {p:?} is not a permutation of rank {}", x.len()),
                ));
            }
            one(dt(0)?, p.iter().map(|&i| x[i]).collect())
        }
        Op::Squeeze { axes } => {
            let x = sh(0)?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => opt_const_i64(g, node, 1, "axes")?,
            };
            let out: Vec<usize> = match axes {
                None => x.iter().copied().filter(|&d| d != 1).collect(),
                Some(a) => {
                    let mut drop = vec![false; x.len()];
                    for &ax in &a {
                        let i = norm_axis(ax, x.len())
                            .ok_or_else(|| err(node, format!("axis {ax} out of range")))?;
                        if x[i] != 1 {
                            return Err(err(
                                node,
                                format!("cannot squeeze axis {ax} of size {}", x[i]),
                            ));
                        }
                        drop[i] = true;
                    }
                    x.iter()
                        .enumerate()
                        .filter(|(i, _)| !drop[*i])
                        .map(|(_, &d)| d)
                        .collect()
                }
            };
            one(dt(0)?, out)
        }
        Op::Unsqueeze { axes } => {
            let x = sh(0)?;
            let axes = match axes {
                Some(a) => a.clone(),
                None => {
                    opt_const_i64(g, node, 1, "axes")?.ok_or_else(|| err(node, "missing axes"))?
                }
            };
            let r = x.len() + axes.len();
            let mut ins = vec![false; r];
            for &ax in &axes {
                let i =
                    norm_axis(ax, r).ok_or_else(|| err(node, format!("axis {ax} out of range")))?;
                if std::mem::replace(&mut ins[i], true) {
                    return Err(err(node, format!("axis {ax} repeated")));
                }
            }
            let mut it = x.iter();
            one(
                dt(0)?,
                (0..r)
                    .map(|i| if ins[i] { 1 } else { *it.next().unwrap() })
                    .collect(),
            )
        }
        Op::Gather { axis } => {
            let x = sh(0)?;
            let idx = sh(1)?;
            let ax = norm_axis(*axis, x.len())
                .ok_or_else(|| err(node, format!("axis {axis} out of range")))?;
            if !matches!(dt(1)?, DType::I64 | DType::I32) {
                return Err(err(node, "indices must be int64 or int32"));
            }
            let mut out = x[..ax].to_vec();
            out.extend(&idx);
            out.extend(&x[ax + 1..]);
            one(dt(0)?, out)
        }
        Op::GatherElements { axis } => {
            let x = sh(0)?;
            let idx = sh(1)?;
            if !matches!(dt(1)?, DType::I64 | DType::I32) {
                return Err(err(
                    node,
                    format!("indices must be int64 or int32, got {}", dt(1)?),
                ));
            }
            let ax = gather_elements_axis(&x, &idx, *axis).map_err(|r| err(node, r))?;
            if let Some(t) = g.constant(need(g, node, 1)?) {
                if let Some((p, v)) = first_out_of_range(&t.to_i64_vec(), x[ax]) {
                    return Err(err(
                        node,
                        format!(
                            "index {v} (element {p} of the indices) is out of bounds for axis {ax} of size {}",
                            x[ax]
                        ),
                    ));
                }
            }
            one(dt(0)?, idx)
        }
        Op::Slice => {
            let x = sh(0)?;
            let starts = const_input(g, node, 1, "starts")?.to_i64_vec();
            let ends = const_input(g, node, 2, "ends")?.to_i64_vec();
            let axes = opt_const_i64(g, node, 3, "axes")?;
            let steps = opt_const_i64(g, node, 4, "steps")?;
            let p = slice_params(&x, &starts, &ends, axes.as_deref(), steps.as_deref())
                .map_err(|r| err(node, r))?;
            let mut out = x.clone();
            for (ax, _, _, c) in p {
                out[ax] = c;
            }
            one(dt(0)?, out)
        }
        Op::Shape { start, end } => {
            let r = sh(0)?.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r);
            let s = clamp(*start);
            let e = clamp(end.unwrap_or(r));
            one(DType::I64, vec![(e - s).max(0) as usize])
        }
        Op::Constant(t) => one(t.dtype(), t.shape.clone()),
        Op::ConstantOfShape(t) => {
            let s = const_input(g, node, 0, "shape")?.to_i64_vec();
            if s.iter().any(|&d| d < 0) {
                return Err(err(node, format!("negative dimension in {s:?}")));
            }
            one(t.dtype(), s.iter().map(|&d| d as usize).collect())
        }
        Op::Range => {
            let v: Vec<f64> = (0..3)
                .map(|i| {
                    const_input(g, node, i, "range bound")
                        .map(|t| t.to_f64_vec().first().copied().unwrap_or(0.0))
                })
                .collect::<Result<_>>()?;
            if v[2] == 0.0 {
                return Err(err(node, "delta is 0"));
            }
            let n = ((v[1] - v[0]) / v[2]).ceil().max(0.0) as usize;
            one(dt(0)?, vec![n])
        }
        Op::Cast { to } => one(*to, sh(0)?),
        Op::Softmax { axis } => {
            f32_only(0)?;
            let x = sh(0)?;
            norm_axis(*axis, x.len())
                .ok_or_else(|| err(node, format!("axis {axis} out of range")))?;
            one(DType::F32, x)
        }
        Op::LayerNorm { axis, .. } => {
            f32_only(0)?;
            let x = sh(0)?;
            let ax = norm_axis(*axis, x.len())
                .ok_or_else(|| err(node, format!("axis {axis} out of range")))?;
            let norm = numel(&x[ax..]);
            for i in 1..3 {
                if let Some(v) = node.input(i) {
                    if numel(&g.values[v].shape) != norm && numel(&g.values[v].shape) != 1 {
                        return Err(err(
                            node,
                            format!(
                                "parameter #{i} has shape {:?}, expected {:?}",
                                g.values[v].shape,
                                &x[ax..]
                            ),
                        ));
                    }
                }
            }
            // Mean and InvStdDev keep the leading axes and set the rest to 1.
            let mut stat = x[..ax].to_vec();
            stat.resize(x.len(), 1);
            Ok(vec![
                (DType::F32, x),
                (DType::F32, stat.clone()),
                (DType::F32, stat),
            ])
        }
        Op::Reduce {
            axes,
            keepdims,
            noop_with_empty_axes,
            ..
        } => {
            let x = sh(0)?;
            let axes = match axes {
                Some(a) => Some(a.clone()),
                None => opt_const_i64(g, node, 1, "axes")?,
            };
            let red: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .map(|&ax| {
                        norm_axis(ax, x.len())
                            .ok_or_else(|| err(node, format!("axis {ax} out of range")))
                    })
                    .collect::<Result<_>>()?,
                _ if *noop_with_empty_axes => vec![],
                _ => (0..x.len()).collect(),
            };
            let mut out = vec![];
            for (i, &d) in x.iter().enumerate() {
                if red.contains(&i) {
                    if *keepdims {
                        out.push(1);
                    }
                } else {
                    out.push(d);
                }
            }
            one(dt(0)?, out)
        }
        Op::Expand => {
            let x = sh(0)?;
            let t: Vec<usize> = const_input(g, node, 1, "shape")?
                .to_i64_vec()
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let out = broadcast(&x, &t)
                .ok_or_else(|| err(node, format!("{x:?} cannot expand to {t:?}")))?;
            one(dt(0)?, out)
        }
        Op::Pad { pads, .. } => {
            if !folded {
                f32_only(0)?;
            }
            let x = sh(0)?;
            let p = match pads {
                Some(p) => p.clone(),
                None => const_input(g, node, 1, "pads")?.to_i64_vec(),
            };
            let axes = opt_const_i64(g, node, 3, "axes")?;
            let axes: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&v| {
                        norm_axis(v, x.len())
                            .ok_or_else(|| err(node, format!("axis {v} out of range")))
                    })
                    .collect::<Result<_>>()?,
                None => (0..x.len()).collect(),
            };
            if p.len() != 2 * axes.len() {
                return Err(err(
                    node,
                    format!("pads has {} values, expected {}", p.len(), 2 * axes.len()),
                ));
            }
            let mut out = x.clone();
            for (i, &ax) in axes.iter().enumerate() {
                let d = x[ax] as i64 + p[i] + p[i + axes.len()];
                if d < 0 {
                    return Err(err(node, format!("pads {p:?} make axis {ax} negative")));
                }
                out[ax] = d as usize;
            }
            one(dt(0)?, out)
        }
    }
}
