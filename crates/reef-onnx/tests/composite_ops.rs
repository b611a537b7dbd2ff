//! Ops reef imports as several nodes: Split (Slices), the variadic Sum /
//! Mean / Max / Min (chains of binary ops), 1-D Conv and pooling (the 2-D
//! ops between an Unsqueeze and a Squeeze), Instance / Group normalization
//! (LayerNormalization and a channel affine), ConvTranspose (zero
//! insertion, padding and a flipped convolution) and Einsum (transposes,
//! reshapes, a batched MatMul and sums). Evaluated in
//! tract against the original model; bad attributes are errors that name
//! the node and the reason.

mod common;

use common::{rand_f32, rel_err, rng, tract_run};
use prost::Message;
use reef_model::ModelError;
use reef_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use reef_onnx::proto::*;

fn attr(name: &str, ty: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: ty as i32,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: v.to_vec(),
        ..attr(name, AttributeType::Ints)
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        i,
        ..attr(name, AttributeType::Int)
    }
}

fn node(op: &str, ins: &[&str], outs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: format!("{op}_node"),
        input: ins.iter().map(|s| s.to_string()).collect(),
        output: outs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

fn f32_input(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(dimension::Value::DimValue(d)),
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

fn model(opset: i64, nodes: Vec<NodeProto>, inputs: &[(&str, &[i64])], outs: &[&str]) -> Vec<u8> {
    model_with(opset, nodes, vec![], inputs, outs)
}

fn model_with(
    opset: i64,
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    inputs: &[(&str, &[i64])],
    outs: &[&str],
) -> Vec<u8> {
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(GraphProto {
            node: nodes,
            name: "composite".into(),
            initializer,
            input: inputs.iter().map(|(n, d)| f32_input(n, d)).collect(),
            output: outs
                .iter()
                .map(|o| ValueInfoProto {
                    name: o.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Imports, exports at opset 17, and checks that tract computes the same
/// outputs from reef's export as from the original.
fn check(bytes: &[u8], shapes: &[&[usize]], seed: u64) {
    let g = reef_onnx::import(bytes, None).expect("import");
    let re = reef_onnx::export(&g).expect("export");
    let mut r = rng(seed);
    let xs: Vec<_> = shapes.iter().map(|s| rand_f32(&mut r, s)).collect();
    let want = tract_run(bytes, &xs).expect("tract runs the original");
    let got = tract_run(&re, &xs).expect("tract runs reef's export");
    assert_eq!(got.len(), want.len());
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.shape, g.values[g.outputs[i]].shape, "output {i} shape");
        let e = rel_err(a, b);
        assert!(e < 1e-6, "output {i}: relative L2 error {e}");
    }
}

fn node_err(bytes: &[u8]) -> (String, String) {
    match reef_onnx::import(bytes, None).unwrap_err() {
        ModelError::Node { node, reason, .. } => (node, reason),
        e => panic!("expected a node error, got {e}"),
    }
}

#[test]
fn split_forms_match_tract() {
    // Opset 11: sizes as an attribute, on axis -1.
    let n = node(
        "Split",
        &["x"],
        &["a", "b"],
        vec![int("axis", -1), ints("split", &[2, 5])],
    );
    check(
        &model(11, vec![n], &[("x", &[3, 7])], &["a", "b"]),
        &[&[3, 7]],
        1,
    );
    // Opset 11 without sizes: equal parts.
    let n = node("Split", &["x"], &["a", "b", "c"], vec![int("axis", 1)]);
    check(
        &model(11, vec![n], &[("x", &[2, 6, 2])], &["a", "b", "c"]),
        &[&[2, 6, 2]],
        2,
    );
}

#[test]
fn variadic_ops_match_tract() {
    let ins = ["x", "y", "z"];
    let shapes: [(&str, &[i64]); 3] = [("x", &[2, 3, 4]), ("y", &[3, 1]), ("z", &[4])];
    for (i, op) in ["Sum", "Mean", "Max", "Min"].into_iter().enumerate() {
        let n = node(op, &ins, &["o"], vec![]);
        check(
            &model(13, vec![n], &shapes, &["o"]),
            &[&[2, 3, 4], &[3, 1], &[4]],
            10 + i as u64,
        );
    }
}

#[test]
fn bad_split_and_activation_attributes_are_named_errors() {
    let split = |attrs| {
        model(
            11,
            vec![node("Split", &["x"], &["a", "b"], attrs)],
            &[("x", &[3, 7])],
            &["a", "b"],
        )
    };
    let (n, why) = node_err(&split(vec![int("axis", 1), ints("split", &[2, 4])]));
    assert_eq!(n, "Split_node");
    assert!(why.contains("do not add up to the axis length 7"), "{why}");
    let (_, why) = node_err(&split(vec![ints("split", &[7])]));
    assert!(why.contains("1 sizes for 2 outputs"), "{why}");
    let (_, why) = node_err(&split(vec![int("axis", 1)]));
    assert!(why.contains("7 does not split into 2 equal parts"), "{why}");
    let (_, why) = node_err(&split(vec![int("axis", 2)]));
    assert!(why.contains("axis 2 out of range"), "{why}");
    let n = node("Split", &["x"], &["a", "b"], vec![int("num_outputs", 3)]);
    let (_, why) = node_err(&model(18, vec![n], &[("x", &[3, 7])], &["a", "b"]));
    assert!(why.contains("num_outputs is 3"), "{why}");

    let gelu = AttributeProto {
        s: b"erf".to_vec(),
        ..attr("approximate", AttributeType::String)
    };
    let n = node("Gelu", &["x"], &["y"], vec![gelu]);
    let (n, why) = node_err(&model(20, vec![n], &[("x", &[3, 7])], &["y"]));
    assert_eq!(n, "Gelu_node");
    assert!(why.contains("'none' or 'tanh'"), "{why}");
    let alpha = AttributeProto {
        f: 0.0,
        ..attr("alpha", AttributeType::Float)
    };
    let n = node("Celu", &["x"], &["y"], vec![alpha]);
    let (_, why) = node_err(&model(12, vec![n], &[("x", &[3, 7])], &["y"]));
    assert!(why.contains("alpha must be finite and nonzero"), "{why}");
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        f,
        ..attr(name, AttributeType::Float)
    }
}

#[test]
fn one_d_conv_and_pools_match_tract() {
    let mut r = rng(30);
    let w = reef_onnx::convert::tensor_to_proto("w", &rand_f32(&mut r, &[6, 2, 3]));
    let b = reef_onnx::convert::tensor_to_proto("b", &rand_f32(&mut r, &[6]));
    let nodes = vec![
        node(
            "Conv",
            &["x", "w", "b"],
            &["c"],
            vec![
                int("group", 2),
                ints("strides", &[2]),
                ints("pads", &[2, 1]),
                ints("dilations", &[2]),
            ],
        ),
        node(
            "MaxPool",
            &["c"],
            &["m"],
            vec![ints("kernel_shape", &[2]), ints("strides", &[1])],
        ),
        node(
            "AveragePool",
            &["m"],
            &["y"],
            vec![
                ints("kernel_shape", &[3]),
                AttributeProto {
                    s: b"SAME_UPPER".to_vec(),
                    ..attr("auto_pad", AttributeType::String)
                },
            ],
        ),
    ];
    let bytes = model_with(13, nodes, vec![w, b], &[("x", &[2, 4, 19])], &["y"]);
    check(&bytes, &[&[2, 4, 19]], 31);

    let bad = node("Conv", &["x", "w"], &["y"], vec![ints("strides", &[1, 1])]);
    let w = reef_onnx::convert::tensor_to_proto("w", &rand_f32(&mut r, &[6, 4, 3]));
    let bytes = model_with(13, vec![bad], vec![w], &[("x", &[2, 4, 19])], &["y"]);
    let (_, why) = node_err(&bytes);
    assert!(
        why.contains("'strides' has 2 values; a 1-D Conv takes 1"),
        "{why}"
    );
}

#[test]
fn instance_and_group_norms_match_tract() {
    let mut r = rng(40);
    let proto = |name: &str, shape: &[usize], r: &mut rand_chacha::ChaCha8Rng| {
        reef_onnx::convert::tensor_to_proto(name, &rand_f32(r, shape))
    };
    let n = node(
        "InstanceNormalization",
        &["x", "s", "b"],
        &["y"],
        vec![float("epsilon", 1e-3)],
    );
    let init = vec![proto("s", &[4], &mut r), proto("b", &[4], &mut r)];
    let bytes = model_with(13, vec![n], init, &[("x", &[2, 4, 5, 3])], &["y"]);
    check(&bytes, &[&[2, 4, 5, 3]], 41);
    // GroupNormalization (opset 18: scale and bias per group); its values are
    // checked by ONNX's node tests, tract has no GroupNormalization.
    let n = node(
        "GroupNormalization",
        &["x", "s", "b"],
        &["y"],
        vec![int("num_groups", 2)],
    );
    let init = vec![proto("s", &[2], &mut r), proto("b", &[2], &mut r)];
    let bytes = model_with(18, vec![n], init, &[("x", &[2, 6, 4, 3])], &["y"]);
    let g = reef_onnx::import(&bytes, None).expect("import");
    assert_eq!(g.values[g.outputs[0]].shape, [2, 6, 4, 3]);
    let n = node(
        "GroupNormalization",
        &["x", "s", "b"],
        &["y"],
        vec![int("num_groups", 4)],
    );
    let init = vec![proto("s", &[2], &mut r), proto("b", &[2], &mut r)];
    let bytes = model_with(18, vec![n], init, &[("x", &[2, 6, 4, 3])], &["y"]);
    let (_, why) = node_err(&bytes);
    assert!(
        why.contains("num_groups 4 does not divide 6 channels"),
        "{why}"
    );
}

#[test]
fn conv_transpose_matches_tract() {
    let mut r = rng(50);
    // 2-D: stride 2x3, pads, output_padding, dilation, two groups and a bias.
    let w = reef_onnx::convert::tensor_to_proto("w", &rand_f32(&mut r, &[4, 3, 3, 2]));
    let b = reef_onnx::convert::tensor_to_proto("b", &rand_f32(&mut r, &[6]));
    let n = node(
        "ConvTranspose",
        &["x", "w", "b"],
        &["y"],
        vec![
            int("group", 2),
            ints("strides", &[2, 3]),
            ints("pads", &[1, 0, 0, 1]),
            ints("output_padding", &[1, 2]),
            ints("dilations", &[2, 1]),
        ],
    );
    let bytes = model_with(13, vec![n], vec![w, b], &[("x", &[2, 4, 5, 4])], &["y"]);
    check(&bytes, &[&[2, 4, 5, 4]], 51);
    // 1-D, as in audio decoders.
    let w = reef_onnx::convert::tensor_to_proto("w", &rand_f32(&mut r, &[3, 2, 4]));
    let n = node(
        "ConvTranspose",
        &["x", "w"],
        &["y"],
        vec![ints("strides", &[2]), ints("pads", &[1, 1])],
    );
    let bytes = model_with(13, vec![n], vec![w], &[("x", &[1, 3, 9])], &["y"]);
    check(&bytes, &[&[1, 3, 9]], 52);
}

#[test]
fn einsum_matches_tract() {
    let eq = |e: &str| AttributeProto {
        s: e.as_bytes().to_vec(),
        ..attr("equation", AttributeType::String)
    };
    let cases: &[(&str, &[&[i64]])] = &[
        ("bhqd,bhkd->bhqk", &[&[2, 3, 5, 4], &[2, 3, 6, 4]]),
        ("ij,jk", &[&[3, 4], &[4, 5]]),
        ("...ij,...jk->...ik", &[&[2, 3, 4, 5], &[3, 5, 6]]),
        ("bij,bjk->bik", &[&[2, 3, 4], &[2, 4, 5]]),
        ("i,j->ij", &[&[3], &[4]]),
        ("ij,ij->i", &[&[3, 4], &[3, 4]]),
        ("abc,cd->abd", &[&[2, 3, 4], &[4, 5]]),
        ("abc,ad->bd", &[&[2, 3, 4], &[2, 5]]),
        ("ij->ji", &[&[3, 4]]),
        ("ijk->ik", &[&[3, 4, 5]]),
    ];
    for (i, (e, shapes)) in cases.iter().enumerate() {
        let names = ["x", "y"];
        let n = node("Einsum", &names[..shapes.len()], &["o"], vec![eq(e)]);
        let inputs: Vec<(&str, &[i64])> =
            names.iter().copied().zip(shapes.iter().copied()).collect();
        let bytes = model(13, vec![n], &inputs, &["o"]);
        let dims: Vec<Vec<usize>> = shapes
            .iter()
            .map(|s| s.iter().map(|&d| d as usize).collect())
            .collect();
        let refs: Vec<&[usize]> = dims.iter().map(|d| d.as_slice()).collect();
        check(&bytes, &refs, 60 + i as u64);
    }
    let n = node("Einsum", &["x"], &["o"], vec![eq("ii->i")]);
    let bytes = model(13, vec![n], &[("x", &[3, 3])], &["o"]);
    match reef_onnx::import(&bytes, None).unwrap_err() {
        ModelError::Unsupported { reason, .. } => {
            assert!(reason.contains("label 'i' repeats"), "{reason}")
        }
        e => panic!("expected unsupported, got {e}"),
    }
    let n = node("Einsum", &["x", "y"], &["o"], vec![eq("ij,jk->ik")]);
    let bytes = model(13, vec![n], &[("x", &[3, 4]), ("y", &[5, 6])], &["o"]);
    let (_, why) = node_err(&bytes);
    assert!(why.contains("label 'j' has sizes 4 and 5"), "{why}");
}
