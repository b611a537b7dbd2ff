//! ONNX backend node tests of GatherElements and LayerNormalization (with
//! its Mean and InvStdDev outputs) executed on the CPU backend: import,
//! `reef_plan::compile`, run, compare with ONNX's expected outputs (the
//! `reef_onnx::node_tests` harness). The data ships with the `onnx` Python
//! package; without it the test says so and skips.

mod common;

use common::{device, run_plan};
use reef_exec::{Device, Variant};
use reef_model::{Graph, Tensor};
use reef_onnx::node_tests::{self, Outcome, Summary};
use std::sync::Arc;

/// Compiles and runs `g` on the CPU backend (BE variant, preemption checks on).
fn exec(g: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
    let plan = Arc::new(reef_plan::compile(g).map_err(|e| format!("compile: {e}"))?);
    // Loading validates the plan; report that as an error, not a panic.
    device()
        .load(plan.clone())
        .map_err(|e| format!("load: {e}"))?;
    let bytes: Vec<Vec<u8>> = inputs.iter().map(Tensor::to_bytes).collect();
    run_plan(&plan, &bytes, Variant::Be)
        .into_iter()
        .zip(&plan.outputs)
        .map(|(b, o)| Tensor::from_bytes(o.dtype, o.shape.clone(), &b).map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn gather_elements_and_layer_norm_node_tests_pass() {
    let Some(dir) = node_tests::locate() else {
        println!("SKIP: ONNX node-test data not found (pip install onnx==1.17.0)");
        return;
    };
    let cases: Vec<_> = node_tests::list_cases(&dir)
        .expect("node tests readable")
        .into_iter()
        .filter(|c| matches!(c.op, "GatherElements" | "LayerNormalization"))
        .collect();
    assert!(!cases.is_empty(), "no cases under {}", dir.display());
    let results: Vec<_> = cases
        .into_iter()
        .map(|case| {
            let outcome = node_tests::run_case(&case, &exec);
            node_tests::CaseResult { case, outcome }
        })
        .collect();
    println!("{}", Summary(&results));
    let bad: Vec<String> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .map(|r| format!("{}: {:?}", r.case.name, r.outcome))
        .collect();
    assert!(
        bad.is_empty(),
        "{} case(s) did not pass:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
