//! Every zoo model at batch 1, exported to ONNX and run in tract (the
//! independent reference), against the same graph run through reef's CPU
//! backend: every output finite and within relative L2 error
//! [`MAX_REL_L2`] of tract's.

mod common;

use common::{crops_as_slices, random_inputs, rng, tract_run, CpuRunner};
use reef_model::tensor::rel_l2;
use reef_model::Tensor;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

/// Largest relative L2 error accepted per output.
const MAX_REL_L2: f64 = 1e-4;

/// One model's outcome.
struct Row {
    model: String,
    outputs: usize,
    worst: f64,
    reef_ms: f64,
    tract_ms: f64,
    total_s: f64,
}

/// Builds `name` at batch 1, runs it in reef and in tract on the same random
/// inputs and compares every output.
fn check_model(runner: &CpuRunner, name: &str, seed: u64) -> Result<Row, String> {
    let start = Instant::now();
    let graph = reef_zoo::build(name, 1, seed).map_err(|e| format!("build: {e}"))?;
    let inputs = random_inputs(&graph, &mut rng(seed ^ 0x5eed))?;
    let onnx = reef_onnx::export(&graph).map_err(|e| format!("export: {e}"))?;

    let loaded = runner.load(&graph)?;
    let (ours, reef_time) = runner.run_loaded(&loaded, &inputs)?;
    drop(loaded);
    // tract cannot run BERT's crop-Pads (negative pads); same model as Slices.
    let (onnx, _) = crops_as_slices(&onnx)?;
    let (theirs, tract_time) = tract_run(&onnx, &inputs)?;
    drop(onnx);

    if ours.len() != theirs.len() || ours.len() != graph.outputs.len() {
        return Err(format!(
            "reef gave {} outputs, tract {}, the graph has {}",
            ours.len(),
            theirs.len(),
            graph.outputs.len()
        ));
    }
    let mut worst = 0.0f64;
    for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let out = &graph.values[graph.outputs[k]].name;
        let err = compare_output(a, b).map_err(|e| format!("output {k} '{out}': {e}"))?;
        worst = worst.max(err);
    }
    Ok(Row {
        model: name.to_string(),
        outputs: ours.len(),
        worst,
        reef_ms: reef_time.as_secs_f64() * 1e3,
        tract_ms: tract_time.as_secs_f64() * 1e3,
        total_s: start.elapsed().as_secs_f64(),
    })
}

/// Relative L2 error of reef's output against tract's; fails on a shape or
/// type mismatch, a non-finite value or an error above [`MAX_REL_L2`].
fn compare_output(reef: &Tensor, tract: &Tensor) -> Result<f64, String> {
    if reef.shape != tract.shape {
        return Err(format!(
            "reef shape {:?}, tract shape {:?}",
            reef.shape, tract.shape
        ));
    }
    let (Some(a), Some(b)) = (reef.as_f32(), tract.as_f32()) else {
        return Err(format!(
            "expected f32 outputs, reef gave {}, tract {}",
            reef.dtype(),
            tract.dtype()
        ));
    };
    if let Some(i) = a.iter().position(|x| !x.is_finite()) {
        return Err(format!("reef element {i} is {}", a[i]));
    }
    if let Some(i) = b.iter().position(|x| !x.is_finite()) {
        return Err(format!("tract element {i} is {}", b[i]));
    }
    if b.iter().all(|&x| x == 0.0) {
        return Err("tract's output is all zeros: the comparison would say nothing".into());
    }
    let err = rel_l2(a, b);
    if err > MAX_REL_L2 {
        return Err(format!("relative L2 error {err:.3e} > {MAX_REL_L2:e}"));
    }
    Ok(err)
}

/// Checks each model in turn, prints the table and fails on any error.
fn check_all(models: &[&str]) {
    let runner = CpuRunner::new().expect("CPU backend");
    let mut rows = vec![];
    let mut failures = vec![];
    for (i, name) in models.iter().enumerate() {
        // A panic inside tract (or reef) fails this model, not the others.
        let run = std::panic::catch_unwind(AssertUnwindSafe(|| {
            check_model(&runner, name, 1000 + i as u64)
        }));
        match run {
            Ok(Ok(r)) => rows.push(r),
            Ok(Err(e)) => failures.push(format!("{name}: {e}")),
            Err(p) => failures.push(format!("{name}: panicked: {}", panic_message(&*p))),
        }
    }
    println!(
        "{:<16} {:>7} {:>10} {:>10} {:>10} {:>8}",
        "model", "outputs", "rel L2", "reef ms", "tract ms", "total s"
    );
    for r in &rows {
        println!(
            "{:<16} {:>7} {:>10.2e} {:>10.1} {:>10.1} {:>8.1}",
            r.model, r.outputs, r.worst, r.reef_ms, r.tract_ms, r.total_s
        );
    }
    assert!(
        failures.is_empty(),
        "{} model(s) disagree with tract:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

fn is_tiny(name: &str) -> bool {
    name.ends_with("_tiny")
}

#[test]
fn tiny_zoo_models_match_tract() {
    let models: Vec<&str> = reef_zoo::names()
        .iter()
        .copied()
        .filter(|n| is_tiny(n))
        .collect();
    assert!(!models.is_empty(), "the zoo lists no tiny model");
    check_all(&models);
}

#[test]
fn full_size_zoo_models_match_tract() {
    let models: Vec<&str> = reef_zoo::names()
        .iter()
        .copied()
        .filter(|n| !is_tiny(n))
        .collect();
    assert!(!models.is_empty(), "the zoo lists no full-size model");
    check_all(&models);
}
