//! GatherElements in the IR: shape inference (and its errors, which name the
//! node, the op and the reason), constant folding through the reference
//! evaluator, and LayerNormalization's optional output shapes.

use reef_model::{DType, GraphBuilder, ModelError, Op, Tensor};

/// Folds GatherElements over constants; returns the result or the error.
fn fold(data: Tensor, idx: Tensor, axis: i64) -> Result<Tensor, ModelError> {
    let mut b = GraphBuilder::new("t");
    let d = b.initializer("data", data)?;
    let i = b.initializer("idx", idx)?;
    let out = b.node("ge", Op::GatherElements { axis }, &[d, i])?;
    Ok(b.constant(out).expect("folded").clone())
}

/// Infers the output of GatherElements over run-time operands.
fn infer(
    data: &[usize],
    idx: &[usize],
    idx_type: DType,
    axis: i64,
) -> Result<Vec<usize>, ModelError> {
    let mut b = GraphBuilder::new("t");
    let d = b.input("data", DType::F32, data.to_vec())?;
    let i = b.input("idx", idx_type, idx.to_vec())?;
    let out = b.node("ge", Op::GatherElements { axis }, &[d, i])?;
    Ok(b.shape(out).to_vec())
}

fn reason(e: ModelError) -> String {
    match e {
        ModelError::Node { node, op, reason } => {
            assert_eq!((node.as_str(), op.as_str()), ("ge", "GatherElements"));
            reason
        }
        other => panic!("expected a node error, got {other}"),
    }
}

#[test]
fn folds_like_the_onnx_examples() {
    // The examples of the ONNX operator documentation.
    let data = Tensor::f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let idx = Tensor::i64(vec![2, 2], vec![0, 0, 1, 0]).unwrap();
    let got = fold(data, idx, 1).unwrap();
    assert_eq!(
        got,
        Tensor::f32(vec![2, 2], vec![1.0, 1.0, 4.0, 3.0]).unwrap()
    );

    let data = Tensor::f32(vec![3, 3], (1..=9).map(|v| v as f32).collect()).unwrap();
    let idx = Tensor::i32(vec![2, 3], vec![1, 2, 0, 2, 0, 0]).unwrap();
    let got = fold(data.clone(), idx, 0).unwrap();
    assert_eq!(
        got,
        Tensor::f32(vec![2, 3], vec![4.0, 8.0, 3.0, 7.0, 2.0, 3.0]).unwrap()
    );
    // Negative indices and a negative axis.
    let idx = Tensor::i64(vec![3, 1], vec![-1, -3, 1]).unwrap();
    let got = fold(data, idx, -1).unwrap();
    assert_eq!(got, Tensor::f32(vec![3, 1], vec![3.0, 4.0, 8.0]).unwrap());
    // Integer data keeps its type.
    let data = Tensor::i64(vec![4], vec![10, 20, 30, 40]).unwrap();
    let got = fold(data, Tensor::i64(vec![3], vec![3, -4, 1]).unwrap(), 0).unwrap();
    assert_eq!(got, Tensor::i64(vec![3], vec![40, 10, 20]).unwrap());
}

#[test]
fn output_takes_the_indices_shape() {
    assert_eq!(
        infer(&[3, 4, 5], &[2, 9, 5], DType::I64, 1).unwrap(),
        [2, 9, 5]
    );
    assert_eq!(
        infer(&[3, 4, 5], &[3, 4, 1], DType::I32, -1).unwrap(),
        [3, 4, 1]
    );
}

#[test]
fn bad_operands_are_named_errors() {
    let r = reason(infer(&[3, 4], &[3], DType::I64, 0).unwrap_err());
    assert!(r.contains("rank"), "{r}");
    let r = reason(infer(&[3, 4], &[3, 4], DType::I64, 2).unwrap_err());
    assert!(r.contains("axis 2 out of range"), "{r}");
    let r = reason(infer(&[3, 4], &[3, 4], DType::I64, -3).unwrap_err());
    assert!(r.contains("axis -3 out of range"), "{r}");
    let r = reason(infer(&[3, 4], &[4, 4], DType::I64, 1).unwrap_err());
    assert!(r.contains("longer than data"), "{r}");
    let r = reason(infer(&[3, 4], &[3, 4], DType::F32, 1).unwrap_err());
    assert!(r.contains("int64 or int32"), "{r}");
    let data = Tensor::f32(vec![2, 3], vec![0.5; 6]).unwrap();
    for bad in [3, -4] {
        let idx = Tensor::i64(vec![2, 1], vec![0, bad]).unwrap();
        let r = reason(fold(data.clone(), idx, 1).unwrap_err());
        assert!(
            r.contains(&format!("index {bad}")) && r.contains("out of bounds"),
            "{r}"
        );
    }
}

#[test]
fn constant_indices_are_checked_even_with_run_time_data() {
    let mut b = GraphBuilder::new("t");
    let d = b.input("data", DType::F32, vec![2, 3]).unwrap();
    let i = b
        .initializer("idx", Tensor::i64(vec![1, 2], vec![1, 2]).unwrap())
        .unwrap();
    let e = b
        .node("ge", Op::GatherElements { axis: 0 }, &[d, i])
        .unwrap_err();
    let r = reason(e);
    assert!(
        r.contains("index 2") && r.contains("axis 0 of size 2"),
        "{r}"
    );
}

#[test]
fn layer_norm_has_mean_and_inv_std_dev_outputs() {
    let mut b = GraphBuilder::new("t");
    let x = b.input("x", DType::F32, vec![2, 3, 4]).unwrap();
    let s = b
        .initializer("scale", Tensor::f32(vec![4], vec![1.0; 4]).unwrap())
        .unwrap();
    let outs = b
        .node_named(
            "ln",
            Op::LayerNorm {
                axis: -1,
                epsilon: 1e-5,
            },
            vec![Some(x), Some(s)],
            &["y", "mean", "inv_std"],
        )
        .unwrap();
    assert_eq!(b.shape(outs[0]), [2, 3, 4]);
    assert_eq!(b.shape(outs[1]), [2, 3, 1]);
    assert_eq!(b.shape(outs[2]), [2, 3, 1]);
    assert!(outs.iter().all(|&o| b.dtype(o) == DType::F32));
}
