//! The importer must never panic: random bytes, truncated and bit-flipped
//! valid models, and structurally mutated models (attributes, dims, inputs,
//! op types set to hostile values) must all come back as `Ok` or `Err`.
//! Uses `import_unguarded` so that a panic fails the test instead of being
//! caught by `import`'s guard.

use prost::Message;
use rand::seq::{IndexedMutRandom, IndexedRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_model::op::ConvAttrs;
use reef_model::{DType, GraphBuilder, Op, PadMode, Tensor};
use reef_onnx::proto::{ModelProto, TensorProto};
use reef_onnx::{import, import_unguarded};

fn seed_model() -> Vec<u8> {
    let mut b = GraphBuilder::new("seed");
    let x = b.input("x", DType::F32, vec![1, 2, 6, 6]).unwrap();
    let w = b
        .initializer(
            "w",
            Tensor::f32(vec![3, 2, 3, 3], (0..54).map(|i| i as f32 * 0.01).collect()).unwrap(),
        )
        .unwrap();
    let conv = ConvAttrs {
        kernel: [3, 3],
        stride: [1, 1],
        pads: [1, 1, 1, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let c = b.node("conv", Op::Conv(conv), &[x, w]).unwrap();
    let shape = b.initializer("shape", Tensor::i64_vec(&[1, -1])).unwrap();
    let r = b
        .node("reshape", Op::Reshape { allowzero: false }, &[c, shape])
        .unwrap();
    let st = b.initializer("st", Tensor::i64_vec(&[2])).unwrap();
    let en = b.initializer("en", Tensor::i64_vec(&[50])).unwrap();
    let ax = b.initializer("ax", Tensor::i64_vec(&[1])).unwrap();
    let s = b.node("slice", Op::Slice, &[r, st, en, ax]).unwrap();
    let pads = b
        .initializer("pads", Tensor::i64_vec(&[0, 1, 0, 2]))
        .unwrap();
    let p = b
        .node(
            "pad",
            Op::Pad {
                mode: PadMode::Reflect,
                pads: None,
                value: 0.0,
            },
            &[s, pads],
        )
        .unwrap();
    let e = b.initializer("eshape", Tensor::i64_vec(&[2, 1])).unwrap();
    let ex = b.node("expand", Op::Expand, &[p, e]).unwrap();
    let sm = b.node("softmax", Op::Softmax { axis: 1 }, &[ex]).unwrap();
    let u = b
        .node(
            "unsq",
            Op::Unsqueeze {
                axes: Some(vec![0]),
            },
            &[sm],
        )
        .unwrap();
    let m = b
        .node(
            "mean",
            Op::Reduce {
                kind: reef_model::Reduction::Mean,
                axes: Some(vec![-1]),
                keepdims: true,
                noop_with_empty_axes: false,
            },
            &[u],
        )
        .unwrap();
    let idx = b.initializer("idx", Tensor::i64_vec(&[0, 1])).unwrap();
    let g = b.node("gather", Op::Gather { axis: 1 }, &[m, idx]).unwrap();
    let t = b
        .node(
            "transpose",
            Op::Transpose {
                perm: Some(vec![2, 1, 0]),
            },
            &[g],
        )
        .unwrap();
    b.output(t);
    reef_onnx::export(&b.finish().unwrap()).unwrap()
}

const HOSTILE: &[i64] = &[
    -1,
    0,
    1,
    2,
    3,
    -7,
    1 << 20,
    1 << 40,
    1 << 62,
    i64::MAX,
    i64::MIN,
];
const OPS: &[&str] = &[
    "Conv",
    "Reshape",
    "Slice",
    "Pad",
    "Expand",
    "Softmax",
    "Unsqueeze",
    "Squeeze",
    "ReduceMean",
    "ReduceSum",
    "ReduceL2",
    "Split",
    "Resize",
    "Upsample",
    "ConvTranspose",
    "InstanceNormalization",
    "LeakyRelu",
    "Max",
    "PRelu",
    "Gather",
    "Transpose",
    "MaxPool",
    "AveragePool",
    "Concat",
    "ConstantOfShape",
    "Range",
    "Flatten",
    "Gemm",
    "MatMul",
    "Clip",
    "Shape",
    "Cast",
    "Where",
    "LayerNormalization",
    "BatchNormalization",
    "Dropout",
    "Foo",
];

fn mutate_tensor(r: &mut ChaCha8Rng, t: &mut TensorProto) {
    match r.random_range(0..4) {
        0 => {
            t.dims = (0..r.random_range(0..5))
                .map(|_| *HOSTILE.choose(r).unwrap())
                .collect()
        }
        1 => t.data_type = r.random_range(-1..25),
        2 => {
            if !t.raw_data.is_empty() {
                let n = t.raw_data.len();
                t.raw_data.truncate(r.random_range(0..n));
            }
        }
        _ => {
            // Overwrite an element of an i64 tensor with a hostile value.
            if t.data_type == 7 && t.raw_data.len() >= 8 {
                let i = r.random_range(0..t.raw_data.len() / 8) * 8;
                t.raw_data[i..i + 8].copy_from_slice(&HOSTILE.choose(r).unwrap().to_le_bytes());
            }
        }
    }
}

fn mutate(r: &mut ChaCha8Rng, m: &mut ModelProto) {
    let g = m.graph.as_mut().unwrap();
    for _ in 0..r.random_range(1..4) {
        match r.random_range(0..8) {
            0 => {
                if let Some(n) = g.node.choose_mut(r) {
                    if let Some(a) = n.attribute.choose_mut(r) {
                        a.i = *HOSTILE.choose(r).unwrap();
                        for v in a.ints.iter_mut() {
                            if r.random_bool(0.5) {
                                *v = *HOSTILE.choose(r).unwrap();
                            }
                        }
                        if r.random_bool(0.2) {
                            a.r#type = r.random_range(0..16);
                        }
                        if r.random_bool(0.2) {
                            a.ints.truncate(r.random_range(0..3));
                        }
                    }
                }
            }
            1 => {
                if let Some(t) = g.initializer.choose_mut(r) {
                    mutate_tensor(r, t);
                }
            }
            2 => {
                if let Some(n) = g.node.choose_mut(r) {
                    n.op_type = OPS.choose(r).unwrap().to_string();
                }
            }
            3 => {
                let names: Vec<String> = g
                    .initializer
                    .iter()
                    .map(|t| t.name.clone())
                    .chain(["".into(), "x".into()])
                    .collect();
                if let Some(n) = g.node.choose_mut(r) {
                    if let Some(i) = n.input.choose_mut(r) {
                        *i = names.choose(r).unwrap().clone();
                    }
                    if r.random_bool(0.3) {
                        n.input.push(names.choose(r).unwrap().clone());
                    }
                }
            }
            4 => {
                use reef_onnx::proto::tensor_shape_proto::dimension::Value;
                if let Some(reef_onnx::proto::type_proto::Value::TensorType(tt)) =
                    g.input[0].r#type.as_mut().and_then(|t| t.value.as_mut())
                {
                    if let Some(s) = tt.shape.as_mut() {
                        if let Some(d) = s.dim.choose_mut(r) {
                            d.value = Some(Value::DimValue(*HOSTILE.choose(r).unwrap()));
                        }
                    }
                }
            }
            5 => m.opset_import[0].version = r.random_range(5..24),
            6 => {
                if !g.node.is_empty() {
                    let i = r.random_range(0..g.node.len());
                    g.node.remove(i);
                }
            }
            _ => {
                if let Some(n) = g.node.choose_mut(r) {
                    n.attribute.clear();
                }
            }
        }
        if m.opset_import.is_empty() {
            break;
        }
    }
}

#[test]
fn random_and_truncated_bytes_are_errors() {
    let mut r = ChaCha8Rng::seed_from_u64(7);
    for _ in 0..2000 {
        let n = r.random_range(0..256);
        let bytes: Vec<u8> = (0..n).map(|_| r.random()).collect();
        let _ = import_unguarded(&bytes, None);
    }
    let valid = seed_model();
    import_unguarded(&valid, None).expect("the seed model imports");
    for cut in (0..valid.len()).step_by(7) {
        assert!(import(&valid[..cut], None).is_err() || cut == 0 || cut == valid.len());
        let _ = import_unguarded(&valid[..cut], None);
    }
    for _ in 0..2000 {
        let mut b = valid.clone();
        for _ in 0..r.random_range(1..5) {
            let i = r.random_range(0..b.len());
            b[i] ^= 1 << r.random_range(0..8);
        }
        let _ = import_unguarded(&b, Some(r.random_range(1..4)));
    }
    let e = import(b"\x0a\xff\xff", None).unwrap_err().to_string();
    assert!(e.contains("malformed"), "{e}");
}

#[test]
fn structurally_mutated_models_are_errors_not_panics() {
    let valid = ModelProto::decode(seed_model().as_slice()).unwrap();
    let mut r = ChaCha8Rng::seed_from_u64(11);
    let mut errors = 0;
    for _ in 0..3000 {
        let mut m = valid.clone();
        mutate(&mut r, &mut m);
        if import_unguarded(&m.encode_to_vec(), Some(r.random_range(1..3))).is_err() {
            errors += 1;
        }
    }
    println!("{errors} of 3000 mutated models were rejected");
    assert!(errors > 0);
}
