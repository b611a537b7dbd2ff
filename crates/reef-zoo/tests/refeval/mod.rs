//! A naive f64 interpreter of reef graphs, only for the ops the zoo emits.
//! It exists so the zoo's graphs can be checked against PyTorch outputs
//! without a real backend; it favours obviousness over speed.

use reef_model::op::{ConvAttrs, PoolAttrs};
use reef_model::shape::{broadcast, norm_axis};
use reef_model::tensor::{numel, strides};
use reef_model::{Graph, Op, PoolKind, Tensor};
use std::collections::HashMap;

/// A dense f64 array.
#[derive(Clone, Debug)]
pub struct Arr {
    pub shape: Vec<usize>,
    pub v: Vec<f64>,
}

impl Arr {
    fn from_tensor(t: &Tensor) -> Arr {
        Arr {
            shape: t.shape.clone(),
            v: t.to_f64_vec(),
        }
    }
}

/// Flat index into `in_shape` for each element of `out_shape` (numpy broadcast).
fn bcast_map(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let r = out.len();
    let ist = strides(inp);
    let ost = strides(out);
    (0..numel(out))
        .map(|flat| {
            let mut idx = 0;
            for d in 0..r {
                let q = (flat / ost[d]) % out[d];
                let k = d as isize - (r - inp.len()) as isize;
                if k >= 0 && inp[k as usize] != 1 {
                    idx += q * ist[k as usize];
                }
            }
            idx
        })
        .collect()
}

fn binary(a: &Arr, b: &Arr, f: impl Fn(f64, f64) -> f64) -> Arr {
    let shape = broadcast(&a.shape, &b.shape).expect("broadcast");
    let (ia, ib) = (bcast_map(&shape, &a.shape), bcast_map(&shape, &b.shape));
    Arr {
        v: ia
            .iter()
            .zip(&ib)
            .map(|(&i, &j)| f(a.v[i], b.v[j]))
            .collect(),
        shape,
    }
}

fn conv(x: &Arr, w: &Arr, b: Option<&Arr>, a: &ConvAttrs) -> Arr {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (k, cg, r, s) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let oh = (h + a.pads[0] + a.pads[2] - r) / a.stride[0] + 1;
    let ow = (wd + a.pads[1] + a.pads[3] - s) / a.stride[1] + 1;
    let kg = k / a.groups;
    let mut out = vec![0.0; n * k * oh * ow];
    for ni in 0..n {
        for ki in 0..k {
            let g = ki / kg;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = b.map_or(0.0, |b| b.v[ki]);
                    for ci in 0..cg {
                        let cin = g * cg + ci;
                        for ry in 0..r {
                            let iy = (y * a.stride[0] + ry) as isize - a.pads[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for sx in 0..s {
                                let ix = (xo * a.stride[1] + sx) as isize - a.pads[1] as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                acc += x.v[((ni * c + cin) * h + iy as usize) * wd + ix as usize]
                                    * w.v[((ki * cg + ci) * r + ry) * s + sx];
                            }
                        }
                    }
                    out[((ni * k + ki) * oh + y) * ow + xo] = acc;
                }
            }
        }
    }
    Arr {
        shape: vec![n, k, oh, ow],
        v: out,
    }
}

fn pool(x: &Arr, p: &PoolAttrs) -> Arr {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let oh = (h + p.pads[0] + p.pads[2] - p.kernel[0]) / p.stride[0] + 1;
    let ow = (w + p.pads[1] + p.pads[3] - p.kernel[1]) / p.stride[1] + 1;
    let mut out = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        for y in 0..oh {
            for xo in 0..ow {
                let (mut acc, mut cnt, mut mx) = (0.0, 0usize, f64::NEG_INFINITY);
                for ry in 0..p.kernel[0] {
                    for sx in 0..p.kernel[1] {
                        let iy = (y * p.stride[0] + ry) as isize - p.pads[0] as isize;
                        let ix = (xo * p.stride[1] + sx) as isize - p.pads[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x.v[(plane * h + iy as usize) * w + ix as usize];
                        acc += v;
                        cnt += 1;
                        mx = mx.max(v);
                    }
                }
                out.push(match p.kind {
                    PoolKind::Max => mx,
                    PoolKind::Avg if p.count_include_pad => {
                        acc / (p.kernel[0] * p.kernel[1]) as f64
                    }
                    PoolKind::Avg => acc / cnt as f64,
                });
            }
        }
    }
    Arr {
        shape: vec![n, c, oh, ow],
        v: out,
    }
}

fn matmul(a: &Arr, b: &Arr) -> Arr {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    assert_eq!(a.shape[..ra - 2], b.shape[..rb - 2], "matmul batch dims");
    let batch = numel(&a.shape[..ra - 2]);
    let mut v = vec![0.0; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                v[(bi * m + i) * n + j] = (0..k)
                    .map(|kk| a.v[(bi * m + i) * k + kk] * b.v[(bi * k + kk) * n + j])
                    .sum();
            }
        }
    }
    let mut shape = a.shape[..ra - 2].to_vec();
    shape.extend([m, n]);
    Arr { shape, v }
}

fn transpose(x: &Arr, perm: &[usize]) -> Arr {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let ist = strides(&x.shape);
    let ost = strides(&shape);
    let v = (0..x.v.len())
        .map(|flat| {
            perm.iter()
                .enumerate()
                .map(|(d, &p)| (flat / ost[d]) % shape[d] * ist[p])
                .sum::<usize>()
        })
        .map(|i| x.v[i])
        .collect();
    Arr { shape, v }
}

/// Rows of the last axis, transformed by `f`.
fn rows(x: &Arr, f: impl Fn(&[f64], usize) -> Vec<f64>) -> Arr {
    let len = *x.shape.last().unwrap();
    let v =
        x.v.chunks(len)
            .enumerate()
            .flat_map(|(i, r)| f(r, i))
            .collect();
    Arr {
        shape: x.shape.clone(),
        v,
    }
}

/// Runs `g` on `inputs` (by input name); returns every graph output.
pub fn run(g: &Graph, inputs: &HashMap<String, Tensor>) -> Vec<Arr> {
    let mut vals: HashMap<usize, Arr> = g
        .initializers
        .iter()
        .map(|(&k, t)| (k, Arr::from_tensor(t)))
        .collect();
    for &i in &g.inputs {
        vals.insert(i, Arr::from_tensor(&inputs[&g.values[i].name]));
    }
    for node in &g.nodes {
        let x = |i: usize| -> &Arr { &vals[&node.input(i).unwrap()] };
        let map = |f: &dyn Fn(f64) -> f64| Arr {
            shape: x(0).shape.clone(),
            v: x(0).v.iter().map(|&a| f(a)).collect(),
        };
        let out = match &node.op {
            Op::Conv(a) => conv(x(0), x(1), node.input(2).map(|_| x(2)), a),
            Op::BatchNorm { epsilon } => {
                let (c, inner) = (x(0).shape[1], numel(&x(0).shape[2..]));
                let (g_, b, m, var) = (x(1), x(2), x(3), x(4));
                let v = x(0).v.iter().enumerate().map(|(i, &a)| {
                    let ch = (i / inner) % c;
                    (a - m.v[ch]) / (var.v[ch] + *epsilon as f64).sqrt() * g_.v[ch] + b.v[ch]
                });
                Arr {
                    shape: x(0).shape.clone(),
                    v: v.collect(),
                }
            }
            Op::Relu => map(&|a| a.max(0.0)),
            Op::Clip { .. } => {
                let (lo, hi) = (x(1).v[0], x(2).v[0]);
                map(&|a| a.max(lo).min(hi))
            }
            Op::Tanh => map(&|a| a.tanh()),
            // torch's definitions: x * relu6(x + 3) / 6 and relu6(x + 3) / 6.
            Op::Act(reef_model::Act::HardSwish) => map(&|a| a * (a + 3.0).clamp(0.0, 6.0) / 6.0),
            Op::Act(reef_model::Act::HardSigmoid(alpha, beta)) => {
                let (al, be) = (*alpha as f64, *beta as f64);
                map(&|a| (al * a + be).clamp(0.0, 1.0))
            }
            Op::Erf => map(&|a| reef_model::op::erf(a as f32) as f64),
            Op::Identity | Op::Cast { .. } => x(0).clone(),
            Op::Pool(p) => pool(x(0), p),
            Op::GlobalAvgPool => {
                let (s, inner) = (&x(0).shape, numel(&x(0).shape[2..]));
                let v = x(0)
                    .v
                    .chunks(inner)
                    .map(|c| c.iter().sum::<f64>() / inner as f64)
                    .collect();
                Arr {
                    shape: vec![s[0], s[1], 1, 1],
                    v,
                }
            }
            Op::Add => binary(x(0), x(1), |a, b| a + b),
            Op::Sub => binary(x(0), x(1), |a, b| a - b),
            Op::Mul => binary(x(0), x(1), |a, b| a * b),
            Op::Div => binary(x(0), x(1), |a, b| a / b),
            Op::Concat { axis } => {
                let parts: Vec<&Arr> = (0..node.inputs.len()).map(x).collect();
                let ax = norm_axis(*axis, parts[0].shape.len()).unwrap();
                let outer = numel(&parts[0].shape[..ax]);
                let mut shape = parts[0].shape.clone();
                shape[ax] = parts.iter().map(|p| p.shape[ax]).sum();
                let mut v = Vec::new();
                for o in 0..outer {
                    for p in &parts {
                        let len = numel(&p.shape[ax..]);
                        v.extend_from_slice(&p.v[o * len..(o + 1) * len]);
                    }
                }
                Arr { shape, v }
            }
            Op::Flatten { .. } | Op::Reshape { .. } => {
                let shape = g.values[node.outputs[0]].shape.clone();
                Arr {
                    shape,
                    v: x(0).v.clone(),
                }
            }
            Op::Gemm {
                trans_b: true,
                trans_a: false,
                alpha,
                beta,
            } if *alpha == 1.0 && *beta == 1.0 => {
                let wt = transpose(x(1), &[1, 0]);
                binary(&matmul(x(0), &wt), x(2), |a, b| a + b)
            }
            Op::MatMul => matmul(x(0), x(1)),
            Op::Transpose { perm: Some(p) } => transpose(x(0), p),
            Op::Softmax { axis: -1 } => rows(x(0), |r, _| {
                let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let s: f64 = r.iter().map(|&a| (a - m).exp()).sum();
                r.iter().map(|&a| (a - m).exp() / s).collect()
            }),
            Op::LayerNorm { axis: -1, epsilon } => rows(x(0), |r, _| {
                let n = r.len() as f64;
                let mean = r.iter().sum::<f64>() / n;
                let var = r.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / n;
                let d = (var + *epsilon as f64).sqrt();
                r.iter()
                    .enumerate()
                    .map(|(j, a)| (a - mean) / d * x(1).v[j] + x(2).v[j])
                    .collect()
            }),
            Op::Gather { axis } => {
                let (d, idx) = (x(0), x(1));
                let ax = norm_axis(*axis, d.shape.len()).unwrap();
                let (outer, inner) = (numel(&d.shape[..ax]), numel(&d.shape[ax + 1..]));
                let mut v = Vec::new();
                for o in 0..outer {
                    for &i in &idx.v {
                        let base = (o * d.shape[ax] + i as usize) * inner;
                        v.extend_from_slice(&d.v[base..base + inner]);
                    }
                }
                Arr {
                    shape: g.values[node.outputs[0]].shape.clone(),
                    v,
                }
            }
            Op::Pad { .. } => {
                // Only crops at the end of axes (negative end pads) are used by the zoo.
                let p: Vec<i64> = x(1).v.iter().map(|&a| a as i64).collect();
                let r = x(0).shape.len();
                assert!(
                    p[..r].iter().all(|&a| a == 0) && p[r..].iter().all(|&a| a <= 0),
                    "pads {p:?}"
                );
                let shape: Vec<usize> = (0..r)
                    .map(|d| (x(0).shape[d] as i64 + p[r + d]) as usize)
                    .collect();
                let ist = strides(&x(0).shape);
                let ost = strides(&shape);
                let v = (0..numel(&shape))
                    .map(|flat| {
                        (0..r)
                            .map(|d| (flat / ost[d]) % shape[d] * ist[d])
                            .sum::<usize>()
                    })
                    .map(|i| x(0).v[i])
                    .collect();
                Arr { shape, v }
            }
            op => panic!(
                "reference evaluator: unsupported op {op:?} in node {}",
                node.name
            ),
        };
        assert_eq!(
            out.shape, g.values[node.outputs[0]].shape,
            "node {}",
            node.name
        );
        vals.insert(node.outputs[0], out);
    }
    g.outputs.iter().map(|o| vals[o].clone()).collect()
}
