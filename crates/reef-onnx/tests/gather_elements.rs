//! GatherElements and LayerNormalization's optional outputs through ONNX:
//! export -> import round trip, and import errors that name the node, the
//! op and the reason (axis out of range, rank mismatch, constant index out
//! of bounds).

use prost::Message;
use reef_model::{DType, Graph, GraphBuilder, ModelError, Op, Tensor};
use reef_onnx::convert::tensor_to_proto;
use reef_onnx::proto::{AttributeType, ModelProto};

/// x [2, 3, 4] and run-time i64 indices [2, 3, 2] -> GatherElements (axis
/// -1); LayerNormalization of x with Y, Mean and InvStdDev as outputs.
fn graph() -> Graph {
    let mut b = GraphBuilder::new("ge");
    let x = b.input("x", DType::F32, vec![2, 3, 4]).unwrap();
    let i = b.input("idx", DType::I64, vec![2, 3, 2]).unwrap();
    let y = b
        .node_named(
            "ge",
            Op::GatherElements { axis: -1 },
            vec![Some(x), Some(i)],
            &["y"],
        )
        .unwrap()[0];
    let s = b
        .initializer("scale", Tensor::f32(vec![4], vec![1.5; 4]).unwrap())
        .unwrap();
    let ln = b
        .node_named(
            "ln",
            Op::LayerNorm {
                axis: -1,
                epsilon: 1e-4,
            },
            vec![Some(x), Some(s)],
            &["ln_y", "ln_mean", "ln_inv_std"],
        )
        .unwrap();
    b.output(y);
    for v in ln {
        b.output(v);
    }
    b.finish().unwrap()
}

fn exported() -> ModelProto {
    ModelProto::decode(reef_onnx::export(&graph()).unwrap().as_slice()).unwrap()
}

/// Imports `m` with batch 2 (dim 0 of exported inputs is dynamic).
fn import_err(m: &ModelProto) -> (String, String, String) {
    match reef_onnx::import(&m.encode_to_vec(), Some(2)).unwrap_err() {
        ModelError::Node { node, op, reason } => (node, op, reason),
        e => panic!("expected a node error, got {e}"),
    }
}

fn set_axis(m: &mut ModelProto, axis: i64) {
    let g = m.graph.as_mut().unwrap();
    let n = g.node.iter_mut().find(|n| n.name == "ge").unwrap();
    let a = n.attribute.iter_mut().find(|a| a.name == "axis").unwrap();
    assert_eq!(a.r#type, AttributeType::Int as i32);
    a.i = axis;
}

#[test]
fn round_trips_through_onnx() {
    let m = exported();
    let g = reef_onnx::import(&m.encode_to_vec(), Some(2)).unwrap();
    let ge = g.nodes.iter().find(|n| n.name == "ge").unwrap();
    assert_eq!(ge.op, Op::GatherElements { axis: -1 });
    assert_eq!(g.shape(ge.outputs[0]), [2, 3, 2]);
    let ln = g.nodes.iter().find(|n| n.name == "ln").unwrap();
    assert_eq!(ln.outputs.len(), 3);
    assert_eq!(g.shape(ln.outputs[1]), [2, 3, 1]);
    assert_eq!(g.outputs.len(), 4);
}

#[test]
fn bad_axis_rank_and_indices_are_named_errors() {
    for axis in [3, -4] {
        let mut m = exported();
        set_axis(&mut m, axis);
        let (node, op, reason) = import_err(&m);
        assert_eq!((node.as_str(), op.as_str()), ("ge", "GatherElements"));
        assert!(
            reason.contains(&format!("axis {axis} out of range")),
            "{reason}"
        );
    }
    // Indices of rank 2 for rank-3 data.
    let mut m = exported();
    let g = m.graph.as_mut().unwrap();
    let idx = g.input.iter_mut().find(|i| i.name == "idx").unwrap();
    let Some(reef_onnx::proto::type_proto::Value::TensorType(t)) =
        idx.r#type.as_mut().and_then(|t| t.value.as_mut())
    else {
        panic!("indices are not a tensor")
    };
    t.shape.as_mut().unwrap().dim.pop();
    let (node, op, reason) = import_err(&m);
    assert_eq!((node.as_str(), op.as_str()), ("ge", "GatherElements"));
    assert!(reason.contains("rank"), "{reason}");
    // Constant indices with one out of bounds (axis of size 4).
    let mut m = exported();
    let g = m.graph.as_mut().unwrap();
    g.input.retain(|i| i.name != "idx");
    let mut v = vec![0i64; 12];
    v[7] = -5;
    let t = Tensor::i64(vec![2, 3, 2], v).unwrap();
    g.initializer.push(tensor_to_proto("idx", &t));
    let (node, op, reason) = import_err(&m);
    assert_eq!((node.as_str(), op.as_str()), ("ge", "GatherElements"));
    assert!(
        reason.contains("index -5") && reason.contains("element 7") && reason.contains("size 4"),
        "{reason}"
    );
}

#[test]
fn gather_elements_needs_opset_11() {
    let mut m = exported();
    for o in &mut m.opset_import {
        o.version = 10;
    }
    // LayerNormalization is opset 17: keep only GatherElements.
    let g = m.graph.as_mut().unwrap();
    g.node.retain(|n| n.name == "ge");
    g.output.retain(|o| o.name == "y");
    match reef_onnx::import(&m.encode_to_vec(), Some(2)).unwrap_err() {
        ModelError::Unsupported { node, .. } => assert_eq!(node, "ge"),
        e => panic!("expected unsupported, got {e}"),
    }
}
