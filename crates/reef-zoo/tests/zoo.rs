//! Structure tests of the zoo: every model builds at batch 1 and 2 with the
//! documented inputs and outputs, parameter counts equal the upstream
//! (torchvision / transformers) counts, and names follow the upstream
//! `state_dict` keys.

use reef_model::weights::{named_weights, replace_weights};
use reef_model::{DType, Graph, ModelError, Op, Tensor};
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Upstream parameter counts (BN running statistics excluded, as PyTorch
/// counts `parameters()`), and the count of BN running-stat elements.
const FULL: &[(&str, usize)] = &[
    ("resnet18", 11_689_512),
    ("resnet50", 25_557_032),
    ("resnet152", 60_192_808),
    ("vgg19", 143_667_240),
    ("densenet201", 20_013_928),
    // torchvision's 27,161,264 minus AuxLogits (conv0 98,560 + conv1
    // 2,459,136 + fc 769,000 = 3,326,696).
    ("inception_v3", 23_834_568),
    ("mobilenet_v2", 3_504_872),
    ("mobilenet_v3_large", 5_483_032),
    ("bert_base", 109_482_240),
];

fn is_running_stat(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// (trainable parameter count, running-stat count).
fn counts(g: &Graph) -> (usize, usize) {
    let mut p = 0;
    let mut r = 0;
    for (name, t) in named_weights(g) {
        if is_running_stat(&name) {
            r += t.len();
        } else {
            p += t.len();
        }
    }
    (p, r)
}

fn output_shapes(g: &Graph) -> Vec<Vec<usize>> {
    g.outputs.iter().map(|&o| g.shape(o).to_vec()).collect()
}

fn check_io(g: &Graph, name: &str, batch: usize) {
    let info = reef_zoo::info(name).unwrap();
    assert_eq!(g.name, name);
    assert_eq!(g.inputs.len(), info.inputs.len(), "{name}");
    for (&v, s) in g.inputs.iter().zip(&info.inputs) {
        let vi = &g.values[v];
        let mut want = s.shape.clone();
        want[0] = batch;
        assert_eq!(
            (&vi.name, vi.dtype, &vi.shape),
            (&s.name, s.dtype, &want),
            "{name} input"
        );
    }
    assert_eq!(g.outputs.len(), info.outputs.len(), "{name}");
    for (&v, s) in g.outputs.iter().zip(&info.outputs) {
        let vi = &g.values[v];
        let mut want = s.shape.clone();
        want[0] = batch;
        assert_eq!(
            (&vi.name, vi.dtype, &vi.shape),
            (&s.name, s.dtype, &want),
            "{name} output"
        );
    }
}

/// Every weight exists once, is finite and not constant; BN statistics are
/// in the documented ranges.
fn check_weights(g: &Graph, name: &str) {
    let w = named_weights(g);
    let mut seen = HashSet::new();
    for (n, t) in &w {
        assert!(seen.insert(n.clone()), "{name}: {n} twice");
        let v = t.as_f32().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{name}: {n} not finite");
        if v.len() > 1 {
            assert!(v.iter().any(|&x| x != v[0]), "{name}: {n} is constant");
        }
        if n.ends_with(".running_var") {
            assert!(v.iter().all(|&x| (0.5..=1.5).contains(&x)), "{name}: {n}");
        }
        if n.ends_with(".running_mean") {
            assert!(v.iter().all(|&x| x.abs() <= 0.1), "{name}: {n}");
        }
    }
}

#[test]
fn names_and_info_agree() {
    let names = reef_zoo::names();
    assert_eq!(names.len(), 16);
    for &n in names {
        let i = reef_zoo::info(n).unwrap_or_else(|| panic!("no info for {n}"));
        assert_eq!(i.name, n);
        assert!(!i.description.is_empty());
        assert!(i.inputs.iter().chain(&i.outputs).all(|s| s.shape[0] == 1));
    }
    assert!(reef_zoo::info("resnet19").is_none());
    assert!(
        matches!(reef_zoo::build("resnet19", 1, 0), Err(ModelError::UnknownModel(n)) if n == "resnet19")
    );
    assert!(reef_zoo::build("resnet_tiny", 0, 0).is_err());
    let bert = reef_zoo::info("bert_base").unwrap();
    assert_eq!(bert.inputs[0].int_range, Some((0, 30522)));
    assert_eq!(bert.inputs[1].int_range, Some((0, 2)));
}

#[test]
fn tiny_models_build_fast_at_batch_1_and_2() {
    for name in reef_zoo::names().iter().filter(|n| n.ends_with("_tiny")) {
        let t = Instant::now();
        let g1 = reef_zoo::build(name, 1, 11).unwrap();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{name}: {} nodes, {} parameters, built in {ms:.1} ms",
            g1.nodes.len(),
            counts(&g1).0
        );
        check_io(&g1, name, 1);
        check_weights(&g1, name);
        let g2 = reef_zoo::build(name, 2, 11).unwrap();
        check_io(&g2, name, 2);
        // Same seed: same weights at every batch size; with_batch agrees with build.
        assert_eq!(named_weights(&g1), named_weights(&g2), "{name}");
        assert_eq!(
            output_shapes(&g1.with_batch(2).unwrap()),
            output_shapes(&g2),
            "{name}"
        );
        let g3 = reef_zoo::build(name, 1, 12).unwrap();
        assert_ne!(
            named_weights(&g1),
            named_weights(&g3),
            "{name}: seed ignored"
        );
    }
}

#[test]
fn tiny_parameter_counts() {
    // Computed by hand from the architectures (see each config in lib.rs).
    let resnet_tiny = {
        let conv = |ci: usize, co: usize, k: usize| ci * co * k * k;
        let bn = |c: usize| 2 * c;
        let stem = conv(3, 8, 7) + bn(8);
        let basic = |ci: usize, co: usize, down: bool| {
            conv(ci, co, 3)
                + bn(co)
                + conv(co, co, 3)
                + bn(co)
                + if down { conv(ci, co, 1) + bn(co) } else { 0 }
        };
        stem + 2 * basic(8, 8, false)
            + basic(8, 16, true)
            + basic(16, 32, true)
            + basic(32, 64, true)
            + 64 * 10
            + 10
    };
    let vgg_tiny = (3 * 8 * 9 + 8)
        + (8 * 16 * 9 + 16)
        + (16 * 32 * 9 + 32)
        + (32 * 32 * 9 + 32)
        + (128 * 64 + 64)
        + (64 * 64 + 64)
        + (64 * 10 + 10);
    let bert_tiny = {
        let h = 64;
        let emb = 1000 * h + 64 * h + 2 * h + 2 * h;
        let layer = 4 * (h * h + h) + 2 * h + (h * 256 + 256) + (256 * h + h) + 2 * h;
        emb + 2 * layer + h * h + h
    };
    for (name, want) in [
        ("resnet_tiny", resnet_tiny),
        ("vgg_tiny", vgg_tiny),
        ("bert_tiny", bert_tiny),
    ] {
        assert_eq!(
            counts(&reef_zoo::build(name, 1, 0).unwrap()).0,
            want,
            "{name}"
        );
    }
}

#[test]
fn parameter_names_follow_upstream_state_dicts() {
    let shapes = |name: &str| -> HashMap<String, Vec<usize>> {
        named_weights(&reef_zoo::build(name, 1, 0).unwrap())
            .into_iter()
            .map(|(n, t)| (n, t.shape))
            .collect()
    };
    let expect = |m: &HashMap<String, Vec<usize>>, model: &str, keys: &[(&str, &[usize])]| {
        for (k, s) in keys {
            assert_eq!(m.get(*k).map(|v| v.as_slice()), Some(*s), "{model}: {k}");
        }
    };
    let r = shapes("resnet_tiny");
    expect(
        &r,
        "resnet_tiny",
        &[
            ("conv1.weight", &[8, 3, 7, 7]),
            ("bn1.running_var", &[8]),
            ("layer1.1.conv2.weight", &[8, 8, 3, 3]),
            ("layer2.0.downsample.0.weight", &[16, 8, 1, 1]),
            ("layer2.0.downsample.1.bias", &[16]),
            ("fc.weight", &[10, 64]),
        ],
    );
    assert!(!r.contains_key("layer1.0.downsample.0.weight"));
    let v = shapes("vgg_tiny");
    expect(
        &v,
        "vgg_tiny",
        &[
            ("features.0.weight", &[8, 3, 3, 3]),
            ("features.3.bias", &[16]),
            ("features.8.weight", &[32, 32, 3, 3]),
            ("classifier.0.weight", &[64, 128]),
            ("classifier.6.bias", &[10]),
        ],
    );
    let d = shapes("densenet_tiny");
    expect(
        &d,
        "densenet_tiny",
        &[
            ("features.conv0.weight", &[16, 3, 7, 7]),
            ("features.denseblock1.denselayer2.norm1.weight", &[24]),
            (
                "features.denseblock1.denselayer2.conv1.weight",
                &[16, 24, 1, 1],
            ),
            (
                "features.denseblock1.denselayer2.conv2.weight",
                &[8, 16, 3, 3],
            ),
            ("features.transition1.conv.weight", &[16, 32, 1, 1]),
            ("features.norm5.running_mean", &[32]),
            ("classifier.weight", &[10, 32]),
        ],
    );
    let i = shapes("inception_tiny");
    expect(
        &i,
        "inception_tiny",
        &[
            ("Conv2d_1a_3x3.conv.weight", &[4, 3, 3, 3]),
            ("Conv2d_1a_3x3.bn.running_var", &[4]),
            ("Mixed_5b.branch_pool.conv.weight", &[4, 24, 1, 1]),
            ("Mixed_6b.branch7x7_2.conv.weight", &[16, 16, 1, 7]),
            ("Mixed_7b.branch3x3_2b.conv.weight", &[48, 48, 3, 1]),
            ("Mixed_7c.branch3x3dbl_1.conv.weight", &[56, 256, 1, 1]),
            ("fc.weight", &[10, 256]),
        ],
    );
    let m = shapes("mobilenet_tiny");
    expect(
        &m,
        "mobilenet_tiny",
        &[
            ("features.0.0.weight", &[32, 3, 3, 3]),
            ("features.1.conv.0.0.weight", &[32, 1, 3, 3]),
            ("features.1.conv.1.weight", &[8, 32, 1, 1]),
            ("features.1.conv.2.running_var", &[8]),
            ("features.2.conv.0.0.weight", &[48, 8, 1, 1]),
            ("features.2.conv.1.0.weight", &[48, 1, 3, 3]),
            ("features.2.conv.2.weight", &[16, 48, 1, 1]),
            ("features.2.conv.3.weight", &[16]),
            ("features.6.0.weight", &[1280, 24, 1, 1]),
            ("classifier.1.weight", &[10, 1280]),
        ],
    );
    let m = shapes("mobilenet_v3_tiny");
    expect(
        &m,
        "mobilenet_v3_tiny",
        &[
            ("features.0.0.weight", &[16, 3, 3, 3]),
            ("features.0.1.weight", &[16]),
            ("features.1.block.0.0.weight", &[16, 1, 3, 3]),
            ("features.1.block.1.fc1.weight", &[8, 16, 1, 1]),
            ("features.1.block.1.fc1.bias", &[8]),
            ("features.1.block.1.fc2.weight", &[16, 8, 1, 1]),
            ("features.1.block.2.0.weight", &[16, 16, 1, 1]),
            ("features.1.block.2.1.running_mean", &[16]),
            ("features.2.block.0.0.weight", &[64, 16, 1, 1]),
            ("features.2.block.1.0.weight", &[64, 1, 3, 3]),
            ("features.2.block.2.0.weight", &[24, 64, 1, 1]),
            ("features.4.block.0.0.weight", &[96, 24, 1, 1]),
            ("features.4.block.1.0.weight", &[96, 1, 5, 5]),
            ("features.4.block.2.fc1.weight", &[24, 96, 1, 1]),
            ("features.4.block.2.fc2.bias", &[96]),
            ("features.4.block.3.0.weight", &[40, 96, 1, 1]),
            ("features.6.0.weight", &[240, 40, 1, 1]),
            ("classifier.0.weight", &[128, 240]),
            ("classifier.3.weight", &[10, 128]),
        ],
    );
    let b = shapes("bert_tiny");
    expect(
        &b,
        "bert_tiny",
        &[
            ("embeddings.word_embeddings.weight", &[1000, 64]),
            ("embeddings.position_embeddings.weight", &[64, 64]),
            ("embeddings.token_type_embeddings.weight", &[2, 64]),
            ("embeddings.LayerNorm.bias", &[64]),
            ("encoder.layer.1.attention.self.key.weight", &[64, 64]),
            ("encoder.layer.1.attention.output.LayerNorm.weight", &[64]),
            ("encoder.layer.0.intermediate.dense.weight", &[256, 64]),
            ("encoder.layer.0.output.dense.weight", &[64, 256]),
            ("pooler.dense.bias", &[64]),
        ],
    );
}

/// Every parameter must feed a node directly (none was folded away into a
/// detached constant), so replacing it changes the computation.
#[test]
fn parameters_are_live_and_replaceable() {
    for name in reef_zoo::names().iter().filter(|n| n.ends_with("_tiny")) {
        let mut g = reef_zoo::build(name, 1, 5).unwrap();
        let used: HashSet<usize> = g
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().flatten().copied())
            .collect();
        let w = named_weights(&g);
        for (n, _) in &w {
            assert!(
                used.contains(&g.value_by_name(n).unwrap()),
                "{name}: {n} feeds no node"
            );
        }
        // All initializers are parameters, i64 shape/pad constants, or scalars.
        for (v, t) in &g.initializers {
            let ok = t.dtype() == DType::I64
                || t.shape.is_empty()
                || w.iter().any(|(n, _)| *n == g.values[*v].name);
            assert!(ok, "{name}: unexpected constant {}", g.values[*v].name);
        }
        let other = named_weights(&reef_zoo::build(name, 1, 6).unwrap());
        replace_weights(&mut g, &other).unwrap();
        assert_eq!(named_weights(&g), other);
        let (n0, t0) = &w[0];
        let bad = vec![(
            n0.clone(),
            Tensor::f32(vec![t0.len() + 1], vec![0.5; t0.len() + 1]).unwrap(),
        )];
        assert!(replace_weights(&mut g, &bad)
            .unwrap_err()
            .to_string()
            .contains(n0.as_str()));
    }
}

#[test]
fn bert_graph_uses_eager_attention_ops() {
    let g = reef_zoo::build("bert_tiny", 3, 0).unwrap();
    let count = |f: &dyn Fn(&Op) -> bool| g.nodes.iter().filter(|n| f(&n.op)).count();
    assert_eq!(count(&|o| matches!(o, Op::Softmax { axis: -1 })), 2);
    assert_eq!(count(&|o| matches!(o, Op::Erf)), 2);
    assert_eq!(
        count(&|o| matches!(o, Op::Gemm { trans_b: true, .. })),
        2 * 6 + 1
    );
    assert_eq!(count(&|o| matches!(o, Op::LayerNorm { .. })), 1 + 2 * 2);
    let min = g.constant(g.value_by_name("mask.min").unwrap()).unwrap();
    assert_eq!(min.as_f32().unwrap(), &[f32::MIN]);
    let score = g
        .nodes
        .iter()
        .find(|n| n.name == "encoder.layer.0.attention.self.scores")
        .unwrap();
    assert_eq!(g.shape(score.outputs[0]), &[3, 2, 16, 16]);
}

#[test]
fn full_models_match_upstream_parameter_counts() {
    for &(name, want) in FULL {
        let t = Instant::now();
        let g = reef_zoo::build(name, 1, 1).unwrap();
        let secs = t.elapsed().as_secs_f64();
        let (p, r) = counts(&g);
        println!(
            "{name}: {} nodes, {p} parameters + {r} BN running stats, built in {secs:.2} s",
            g.nodes.len()
        );
        assert_eq!(p, want, "{name}");
        check_io(&g, name, 1);
        let g2 = g.with_batch(2).unwrap();
        check_io(&g2, name, 2);
    }
}
