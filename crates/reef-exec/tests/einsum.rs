//! ONNX Einsum imported (as transposes, reshapes, a batched MatMul and
//! sums) and run on the CPU backend, against a naive evaluation of the
//! equation that loops over every assignment of the labels.

mod common;

use common::{device, rng, run_plan};
use prost::Message;
use rand::Rng;
use reef_exec::{Device, Variant};
use reef_model::tensor::rel_l2;
use reef_model::Tensor;
use reef_onnx::proto::tensor_shape_proto::{dimension, Dimension};
use reef_onnx::proto::*;
use std::collections::HashMap;
use std::sync::Arc;

fn f32_input(name: &str, dims: &[usize]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(dimension::Value::DimValue(d as i64)),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn einsum_model(eq: &str, shapes: &[&[usize]]) -> Vec<u8> {
    let names: Vec<String> = (0..shapes.len()).map(|i| format!("x{i}")).collect();
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                op_type: "Einsum".into(),
                name: "einsum".into(),
                input: names.clone(),
                output: vec!["y".into()],
                attribute: vec![AttributeProto {
                    name: "equation".into(),
                    r#type: AttributeType::String as i32,
                    s: eq.as_bytes().to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            name: "einsum".into(),
            input: names
                .iter()
                .zip(shapes)
                .map(|(n, s)| f32_input(n, s))
                .collect(),
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

/// Σ over every label assignment of the product of the operands, into the
/// output's labels (explicit `->` only; no ellipsis).
fn naive(eq: &str, inputs: &[(&[usize], &[f32])]) -> (Vec<usize>, Vec<f64>) {
    let (lhs, out) = eq.split_once("->").expect("explicit output");
    let terms: Vec<Vec<char>> = lhs.split(',').map(|t| t.chars().collect()).collect();
    let out: Vec<char> = out.chars().collect();
    let mut size = HashMap::new();
    for (t, (s, _)) in terms.iter().zip(inputs) {
        for (c, &d) in t.iter().zip(*s) {
            size.insert(*c, d);
        }
    }
    let mut all: Vec<char> = size.keys().copied().collect();
    all.sort_unstable();
    let oshape: Vec<usize> = out.iter().map(|c| size[c]).collect();
    let mut y = vec![0f64; oshape.iter().product()];
    let total: usize = all.iter().map(|c| size[c]).product();
    for mut k in 0..total {
        let mut at = HashMap::new();
        for c in all.iter().rev() {
            at.insert(*c, k % size[c]);
            k /= size[c];
        }
        let flat = |labels: &[char]| labels.iter().fold(0, |acc, c| acc * size[c] + at[c]);
        let p: f64 = terms
            .iter()
            .zip(inputs)
            .map(|(t, (_, v))| v[flat(t)] as f64)
            .product();
        y[flat(&out)] += p;
    }
    (oshape, y)
}

#[test]
fn einsum_matches_a_naive_evaluation() {
    let mut r = rng(71);
    let cases: &[(&str, &[&[usize]])] = &[
        ("ij,ij->", &[&[3, 4], &[3, 4]]),
        ("bhqd,bhkd->bhqk", &[&[2, 3, 5, 4], &[2, 3, 6, 4]]),
        ("abc,ad->bd", &[&[2, 3, 4], &[2, 5]]),
        ("ijk->", &[&[3, 4, 5]]),
        ("ijk->ki", &[&[3, 4, 5]]),
        ("i,j->ij", &[&[3], &[4]]),
    ];
    for (eq, shapes) in cases {
        let bytes = einsum_model(eq, shapes);
        let g = reef_onnx::import(&bytes, None).unwrap_or_else(|e| panic!("{eq}: {e}"));
        let data: Vec<Vec<f32>> = shapes
            .iter()
            .map(|s| {
                (0..s.iter().product())
                    .map(|_| r.random_range(-1.0f32..1.0))
                    .collect()
            })
            .collect();
        let plan = Arc::new(reef_plan::compile(&g).unwrap());
        device().load(plan.clone()).unwrap();
        let ins: Vec<Vec<u8>> = data
            .iter()
            .zip(shapes.iter())
            .map(|(d, s)| Tensor::f32(s.to_vec(), d.clone()).unwrap().to_bytes())
            .collect();
        let out = run_plan(&plan, &ins, Variant::Be).remove(0);
        let got =
            Tensor::from_bytes(plan.outputs[0].dtype, plan.outputs[0].shape.clone(), &out).unwrap();
        let refs: Vec<(&[usize], &[f32])> = shapes
            .iter()
            .zip(&data)
            .map(|(s, d)| (*s, d.as_slice()))
            .collect();
        let (shape, want) = naive(eq, &refs);
        assert_eq!(got.shape, shape, "{eq}");
        let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
        let e = rel_l2(got.as_f32().unwrap(), &want);
        assert!(e < 1e-5, "{eq}: relative L2 {e}");
    }
}
