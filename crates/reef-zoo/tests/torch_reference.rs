//! The tiny zoo graphs, interpreted by a naive f64 evaluator, against the
//! outputs of the upstream PyTorch models running the same weights
//! (fixtures in `tests/data`, see its README). This checks the graphs'
//! semantics, not a backend: layer order, padding, pooling, concat order,
//! attention masking and parameter layouts must all agree with PyTorch.

mod refeval;

use reef_model::tensor::rel_l2;
use reef_model::weights::load_safetensors;
use std::collections::HashMap;

/// The seed the fixtures' weights were exported with.
const SEED: u64 = 3;

fn check(name: &str) {
    let path = format!(
        "{}/tests/data/{name}.torch.safetensors",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let data: HashMap<_, _> = load_safetensors(&bytes).unwrap().into_iter().collect();
    let info = reef_zoo::info(name).unwrap();
    let batch = data[&info.inputs[0].name].shape[0];
    let g = reef_zoo::build(name, batch, SEED).unwrap();
    let outs = refeval::run(&g, &data);
    for (spec, got) in info.outputs.iter().zip(outs) {
        let want = &data[&spec.name];
        assert_eq!(got.shape, want.shape, "{name}: {}", spec.name);
        let got: Vec<f32> = got.v.iter().map(|&v| v as f32).collect();
        let want = want.as_f32().unwrap();
        let err = rel_l2(&got, want);
        let rms =
            (want.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / want.len() as f64).sqrt();
        println!(
            "{name}.{}: rel L2 {err:.2e} (reference rms {rms:.3})",
            spec.name
        );
        assert!(
            rms > 0.05 && rms < 20.0,
            "{name}: degenerate reference output (rms {rms})"
        );
        assert!(err < 1e-4, "{name}.{}: rel L2 {err:.2e} vs PyTorch (if the zoo init changed, regenerate the fixtures)", spec.name);
    }
}

#[test]
fn resnet_tiny_matches_torchvision() {
    check("resnet_tiny");
}

#[test]
fn vgg_tiny_matches_torchvision() {
    check("vgg_tiny");
}

#[test]
fn densenet_tiny_matches_torchvision() {
    check("densenet_tiny");
}

#[test]
fn inception_tiny_matches_torchvision() {
    check("inception_tiny");
}

#[test]
fn mobilenet_tiny_matches_torchvision() {
    check("mobilenet_tiny");
}

#[test]
fn mobilenet_v3_tiny_matches_torchvision() {
    check("mobilenet_v3_tiny");
}

#[test]
fn bert_tiny_matches_transformers() {
    check("bert_tiny");
}
