//! GatherElements on the CPU backend against reef-model's reference
//! evaluator (constant folding through `GraphBuilder`), with random data and
//! random indices: the kernel alone (every element size, negative and
//! out-of-range indices), and whole graphs through `reef_plan::compile`
//! (run-time i64 and i32 indices, constant indices lowered to a flat gather).
//! Also LayerNormalization's optional Mean and InvStdDev outputs.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::Rng;
use reef_exec::Variant;
use reef_model::{DType, GraphBuilder, Op, Tensor, TensorData};
use reef_plan::kernel::KernelOp;

/// A random data shape of rank 1..=4 (dims 1..=5), an axis, and an indices
/// shape no longer than the data off the axis (any length along it).
fn random_case(r: &mut StdRng) -> (Vec<usize>, Vec<usize>, usize) {
    let rank = r.random_range(1..=4usize);
    let data: Vec<usize> = (0..rank).map(|_| r.random_range(1..=5)).collect();
    let axis = r.random_range(0..rank);
    let idx = data
        .iter()
        .enumerate()
        .map(|(d, &n)| {
            if d == axis {
                r.random_range(1..=6)
            } else {
                r.random_range(1..=n)
            }
        })
        .collect();
    (data, idx, axis)
}

/// Random indices in `[-len, len)` (both signs).
fn random_indices(r: &mut StdRng, n: usize, len: usize) -> Vec<i64> {
    (0..n)
        .map(|_| r.random_range(-(len as i64)..len as i64))
        .collect()
}

/// The reference: a GatherElements node over constants, folded by the
/// builder with `reef_model::eval`.
fn reference(data: &Tensor, idx: &Tensor, axis: i64) -> Tensor {
    let mut b = GraphBuilder::new("ref");
    let d = b.initializer("data", data.clone()).expect("data");
    let i = b.initializer("idx", idx.clone()).expect("indices");
    let out = b
        .node("ge", Op::GatherElements { axis }, &[d, i])
        .expect("fold");
    b.constant(out).expect("folded to a constant").clone()
}

/// Runs one GatherElements kernel RT and BE (bit-identical) and returns the
/// output bytes.
fn run_kernel(op: KernelOp, x: (DType, Vec<u8>), idx: &[i64], out: (DType, usize)) -> Vec<u8> {
    let mut b = PlanBuilder::new("gather_elements");
    let xb = b.input("x", x.0, &[x.1.len() / x.0.size()]);
    let ib = b.input("idx", DType::I64, &[idx.len()]);
    let ob = b.arena("out", out.0, out.1);
    b.output(ob, &[out.1]);
    b.kernel(op, &[xb, ib], ob);
    let plan = b.build();
    let inputs = vec![x.1, bytes(idx)];
    let rt = run_plan(&plan, &inputs, Variant::Rt);
    let be = run_plan(&plan, &inputs, Variant::Be);
    assert_eq!(rt, be, "RT and BE differ");
    rt.into_iter().next().expect("one output")
}

#[test]
fn kernel_matches_reference_on_random_cases() {
    let mut r = rng(71);
    for case in 0..24 {
        let (ds, is, axis) = random_case(&mut r);
        let n: usize = is.iter().product();
        let idx = random_indices(&mut r, n, ds[axis]);
        let x = randn(&mut r, ds.iter().product());
        let want = reference(
            &Tensor::f32(ds.clone(), x.clone()).unwrap(),
            &Tensor::i64(is.clone(), idx.clone()).unwrap(),
            axis as i64 - ds.len() as i64, // negative axis in the IR
        );
        let op = KernelOp::GatherElements {
            shape: is.clone(),
            data_shape: ds.clone(),
            axis,
            elem_size: 4,
        };
        let got = f32s(&run_kernel(
            op,
            (DType::F32, bytes(&x)),
            &idx,
            (DType::F32, n),
        ));
        let TensorData::F32(w) = &want.data else {
            panic!("reference is not f32")
        };
        let w64: Vec<f64> = w.iter().map(|&v| v as f64).collect();
        // A gather copies: the error must be exactly 0.
        let e = rel_l2(&got, &w64);
        assert!(
            e == 0.0 && got == **w,
            "case {case}: data {ds:?} indices {is:?} axis {axis}: rel L2 {e:e}"
        );
    }
}

#[test]
fn kernel_handles_every_element_size_and_zeroes_out_of_range() {
    let mut r = rng(72);
    let (ds, is, axis) = (vec![3usize, 4, 2], vec![3usize, 5, 2], 1usize);
    let n: usize = is.iter().product();
    let mut idx = random_indices(&mut r, n, ds[axis]);
    idx[3] = 4; // past the end
    idx[7] = -5; // before the start
    let op = |es: usize| KernelOp::GatherElements {
        shape: is.clone(),
        data_shape: ds.clone(),
        axis,
        elem_size: es,
    };
    let vals: Vec<i64> = (0..ds.iter().product::<usize>())
        .map(|_| r.random_range(-1_000_000_000_000i64..1_000_000_000_000))
        .collect();
    let in_range: Vec<i64> = idx
        .iter()
        .map(|&i| if (-4..4).contains(&i) { i } else { 0 })
        .collect();
    let want = reference(
        &Tensor::i64(ds.clone(), vals.clone()).unwrap(),
        &Tensor::i64(is.clone(), in_range).unwrap(),
        axis as i64,
    )
    .to_i64_vec();
    let got: Vec<i64> = pod_vec(&run_kernel(
        op(8),
        (DType::I64, bytes(&vals)),
        &idx,
        (DType::I64, n),
    ));
    for (p, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let expect = if p == 3 || p == 7 { 0 } else { w };
        assert_eq!(g, expect, "i64 element {p}");
    }
    let flags: Vec<u8> = vals.iter().map(|&v| u8::from(v > 0)).collect();
    let got = run_kernel(op(1), (DType::Bool, flags.clone()), &idx, (DType::Bool, n));
    for (p, &g) in got.iter().enumerate() {
        let expect = if p == 3 || p == 7 {
            0
        } else {
            u8::from(want[p] > 0)
        };
        assert_eq!(g, expect, "bool element {p}");
    }
}

/// Compiles a graph of one GatherElements node (data a run-time input;
/// indices a run-time input of `idx_type` or a constant) and runs it.
fn run_graph(
    ds: &[usize],
    is: &[usize],
    axis: i64,
    x: &[f32],
    idx: &[i64],
    idx_type: Option<DType>,
) -> Vec<f32> {
    let mut b = GraphBuilder::new("ge");
    let xv = b.input("x", DType::F32, ds.to_vec()).unwrap();
    let mut inputs = vec![bytes(x)];
    let iv = match idx_type {
        Some(DType::I32) => {
            inputs.push(bytes(&idx.iter().map(|&i| i as i32).collect::<Vec<_>>()));
            b.input("idx", DType::I32, is.to_vec()).unwrap()
        }
        Some(_) => {
            inputs.push(bytes(idx));
            b.input("idx", DType::I64, is.to_vec()).unwrap()
        }
        None => b
            .initializer("idx", Tensor::i64(is.to_vec(), idx.to_vec()).unwrap())
            .unwrap(),
    };
    let out = b
        .node("ge", Op::GatherElements { axis }, &[xv, iv])
        .unwrap();
    b.output(out);
    let g = b.finish().unwrap();
    let plan = std::sync::Arc::new(reef_plan::compile(&g).expect("compile"));
    let kinds: Vec<&str> = plan.kernels.iter().map(|k| k.op.kind()).collect();
    let expected: &[&str] = match idx_type {
        None => &["gather"],
        Some(DType::I32) => &["cast", "gather_elements"],
        Some(_) => &["gather_elements"],
    };
    assert_eq!(kinds, expected, "lowering of {idx_type:?} indices");
    let outs = run_plan(&plan, &inputs, Variant::Be);
    f32s(&outs[0])
}

#[test]
fn compiled_graphs_match_reference_for_every_index_kind() {
    let mut r = rng(73);
    for case in 0..6 {
        let (ds, is, axis) = random_case(&mut r);
        let n: usize = is.iter().product();
        let idx = random_indices(&mut r, n, ds[axis]);
        let x = randn(&mut r, ds.iter().product());
        let want = reference(
            &Tensor::f32(ds.clone(), x.clone()).unwrap(),
            &Tensor::i64(is.clone(), idx.clone()).unwrap(),
            axis as i64,
        );
        let want: Vec<f64> = want.to_f64_vec();
        for kind in [Some(DType::I64), Some(DType::I32), None] {
            let got = run_graph(&ds, &is, axis as i64, &x, &idx, kind);
            let e = rel_l2(&got, &want);
            assert!(
                e == 0.0,
                "case {case} {kind:?}: data {ds:?} indices {is:?} axis {axis}: rel L2 {e:e}"
            );
        }
    }
}

#[test]
fn layer_norm_computes_mean_and_inv_std_dev() {
    let mut r = rng(74);
    let (shape, axis, eps) = (vec![3usize, 4, 10], 1i64, 1e-3f32);
    let (rows, cols) = (3, 40);
    let x: Vec<f32> = randn(&mut r, rows * cols)
        .iter()
        .map(|v| 2.0 * v + 0.5)
        .collect();
    let gamma = randn(&mut r, cols);
    let mut b = GraphBuilder::new("ln");
    let xv = b.input("x", DType::F32, shape.clone()).unwrap();
    let gv = b
        .initializer("gamma", Tensor::f32(vec![4, 10], gamma.clone()).unwrap())
        .unwrap();
    let outs = b
        .node_named(
            "ln",
            Op::LayerNorm { axis, epsilon: eps },
            vec![Some(xv), Some(gv)],
            &["y", "mean", "inv_std"],
        )
        .unwrap();
    assert_eq!(b.shape(outs[1]), [3, 1, 1]);
    for &o in &outs {
        b.output(o);
    }
    let g = b.finish().unwrap();
    let plan = std::sync::Arc::new(reef_plan::compile(&g).expect("compile"));
    let got = run_plan(&plan, &[bytes(&x)], Variant::Be);
    let (mut y, mut mean, mut inv) = (vec![], vec![], vec![]);
    for row in x.chunks(cols) {
        let m = row.iter().map(|&v| v as f64).sum::<f64>() / cols as f64;
        let var = row.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / cols as f64;
        let s = 1.0 / (var + eps as f64).sqrt();
        y.extend(
            row.iter()
                .zip(&gamma)
                .map(|(&v, &g)| (v as f64 - m) * s * g as f64),
        );
        mean.push(m);
        inv.push(s);
    }
    assert_close("y", &f32s(&got[0]), &y);
    assert_close("mean", &f32s(&got[1]), &mean);
    assert_close("inv_std_dev", &f32s(&got[2]), &inv);
}
