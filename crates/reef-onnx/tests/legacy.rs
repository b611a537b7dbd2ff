//! Older-opset forms (attributes where opset 17 takes inputs, the 2-D
//! coercion of Softmax before opset 13, auto_pad) are imported, exported at
//! opset 17 and evaluated in tract against the original model.

mod common;

use common::{rand_f32, rel_err, rng, tract_run};
use prost::Message;
use reef_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use reef_onnx::proto::*;

fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}
fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}
fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}
fn attr_str(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: s.into(),
        ..Default::default()
    }
}
fn node(op: &str, ins: &[&str], out: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: vec![out.into()],
        attribute,
        ..Default::default()
    }
}
fn vi(name: &str, dims: &[i64], batch: bool) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| Dimension {
            value: Some(if i == 0 && batch {
                dimension::Value::DimParam("N".into())
            } else {
                dimension::Value::DimValue(d)
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}
fn model(
    opset: i64,
    nodes: Vec<NodeProto>,
    init: Vec<TensorProto>,
    input: ValueInfoProto,
    out: &str,
) -> Vec<u8> {
    ModelProto {
        ir_version: 4,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "legacy".into(),
            initializer: init,
            input: vec![input],
            output: vec![ValueInfoProto {
                name: out.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn check(bytes: &[u8], shape: &[usize], seed: u64) {
    let g = reef_onnx::import(bytes, Some(shape[0])).expect("import");
    let re = reef_onnx::export(&g).expect("export");
    let x = rand_f32(&mut rng(seed), shape);
    let want = tract_run(bytes, std::slice::from_ref(&x)).expect("tract runs the original");
    let got = tract_run(&re, &[x]).expect("tract runs reef's export");
    assert_eq!(
        got[0].shape, g.values[g.outputs[0]].shape,
        "reef's inferred shape"
    );
    let e = rel_err(&got[0], &want[0]);
    assert!(e < 1e-5, "relative L2 error {e}");
}

#[test]
fn opset9_attribute_forms() {
    let nodes = vec![
        node(
            "Slice",
            &["x"],
            "s",
            vec![
                attr_ints("starts", &[1, 0]),
                attr_ints("ends", &[5, -1]),
                attr_ints("axes", &[1, 2]),
            ],
        ),
        node("Softmax", &["s"], "sm", vec![attr_int("axis", 1)]),
        node(
            "Clip",
            &["sm"],
            "c",
            vec![attr_float("min", 0.05), attr_float("max", 0.3)],
        ),
        node("Unsqueeze", &["c"], "u", vec![attr_ints("axes", &[1])]),
        node("Squeeze", &["u"], "q", vec![attr_ints("axes", &[1])]),
        node(
            "Pad",
            &["q"],
            "p",
            vec![
                attr_ints("pads", &[0, 1, 0, 0, 2, 1]),
                attr_str("mode", "constant"),
                attr_float("value", 0.7),
            ],
        ),
        node(
            "ReduceMean",
            &["p"],
            "m",
            vec![attr_ints("axes", &[2]), attr_int("keepdims", 0)],
        ),
        node("Dropout", &["m"], "y", vec![attr_float("ratio", 0.5)]),
    ];
    let bytes = model(9, nodes, vec![], vi("x", &[-1, 6, 5], true), "y");
    check(&bytes, &[2, 6, 5], 20);
}

#[test]
fn conv_pool_auto_pad() {
    let mut r = rng(21);
    let w = reef_onnx::convert::tensor_to_proto("w", &rand_f32(&mut r, &[4, 3, 3, 2]));
    let nodes = vec![
        node(
            "Conv",
            &["x", "w"],
            "c",
            vec![
                attr_str("auto_pad", "SAME_UPPER"),
                attr_ints("strides", &[2, 2]),
            ],
        ),
        node(
            "MaxPool",
            &["c"],
            "p",
            vec![
                attr_str("auto_pad", "SAME_LOWER"),
                attr_ints("kernel_shape", &[3, 2]),
            ],
        ),
        node(
            "AveragePool",
            &["p"],
            "a",
            vec![
                attr_str("auto_pad", "VALID"),
                attr_ints("kernel_shape", &[2, 2]),
            ],
        ),
        node("Softmax", &["a"], "y", vec![]),
    ];
    let bytes = model(11, nodes, vec![w], vi("x", &[1, 3, 9, 8], true), "y");
    check(&bytes, &[2, 3, 9, 8], 22);
}

#[test]
fn opset_out_of_range_and_foreign_domains_are_rejected() {
    let bytes = model(
        6,
        vec![node("Relu", &["x"], "y", vec![])],
        vec![],
        vi("x", &[1, 2], false),
        "y",
    );
    let e = reef_onnx::import(&bytes, None).unwrap_err().to_string();
    assert!(e.contains("opset 6"), "{e}");
    let mut n = node("Relu", &["x"], "y", vec![]);
    n.domain = "com.microsoft".into();
    n.name = "r".into();
    let bytes = model(13, vec![n], vec![], vi("x", &[1, 2], false), "y");
    let e = reef_onnx::import(&bytes, None).unwrap_err().to_string();
    assert!(e.contains("'r'") && e.contains("com.microsoft"), "{e}");
    let bytes = model(
        13,
        vec![node("Relu", &["x"], "y", vec![])],
        vec![],
        vi("x", &[1, 2], true),
        "y",
    );
    let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.input[0] = vi("x", &[1, -1], false);
    if let Some(type_proto::Value::TensorType(t)) =
        g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.shape.as_mut().unwrap().dim[1].value = Some(dimension::Value::DimParam("seq".into()));
    }
    let e = reef_onnx::import(&m.encode_to_vec(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("'x'") && e.contains("seq"), "{e}");
    let bytes = model(
        13,
        vec![node("Foo", &["x"], "y", vec![])],
        vec![],
        vi("x", &[1, 2], false),
        "y",
    );
    let e = reef_onnx::import(&bytes, None).unwrap_err().to_string();
    assert!(e.contains("Foo_0") && e.contains("Foo"), "{e}");
}
