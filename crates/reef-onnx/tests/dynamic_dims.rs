//! Named dynamic input dimensions (ONNX `dim_param`s past dimension 0):
//! fixed by `import_with_dims`, and every misuse named in the error.

use prost::Message;
use reef_model::ModelError;
use reef_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use reef_onnx::proto::*;
use reef_onnx::{import, import_with_dims, DimValues};

fn dim(d: &str) -> Dimension {
    Dimension {
        value: Some(match d.parse::<i64>() {
            Ok(v) => dimension::Value::DimValue(v),
            Err(_) => dimension::Value::DimParam(d.into()),
        }),
        denotation: String::new(),
    }
}

fn input(name: &str, dims: &[&str]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: dims.iter().map(|d| dim(d)).collect(),
                }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

/// `a + b` over inputs shaped like a transformer's: [batch, sequence, 4]
/// and [batch, sequence, 1].
fn model() -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                op_type: "Add".into(),
                name: "add".into(),
                input: vec!["a".into(), "b".into()],
                output: vec!["y".into()],
                ..Default::default()
            }],
            name: "dyn".into(),
            input: vec![
                input("a", &["batch", "sequence", "4"]),
                input("b", &["batch", "sequence", "1"]),
            ],
            output: vec![ValueInfoProto {
                name: "y".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn dims(kv: &[(&str, usize)]) -> DimValues {
    kv.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

#[test]
fn named_dimensions_take_the_given_values() {
    let g = import_with_dims(&model(), Some(3), &dims(&[("sequence", 7)])).unwrap();
    assert_eq!(g.values[g.inputs[0]].shape, [3, 7, 4]);
    assert_eq!(g.values[g.inputs[1]].shape, [3, 7, 1]);
    assert_eq!(g.values[g.outputs[0]].shape, [3, 7, 4]);
}

#[test]
fn missing_unknown_and_batch_names_are_errors() {
    match import(&model(), Some(1)).unwrap_err() {
        ModelError::Unsupported { node, reason, .. } => {
            assert_eq!(node, "a");
            assert!(
                reason.contains("dimension 1 is dynamic ('sequence')")
                    && reason.contains("dims = { sequence = N }")
                    && reason.contains("--dim sequence=N"),
                "{reason}"
            );
        }
        e => panic!("expected unsupported, got {e}"),
    }
    let e = import_with_dims(&model(), None, &dims(&[("sequence", 5), ("seq", 5)]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dimension 'seq' is given a value") && e.contains("'sequence'"),
        "{e}"
    );
    let e = import_with_dims(&model(), None, &dims(&[("batch", 2), ("sequence", 5)]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("dimension 0 ('batch') is the batch"), "{e}");
}
