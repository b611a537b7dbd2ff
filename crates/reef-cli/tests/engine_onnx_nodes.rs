//! ONNX backend node tests of every op reef supports, run through reef's
//! full path: import, `reef_plan::compile`, load on the CPU backend, write
//! the inputs, run every kernel on an RT lane, read the outputs, compare
//! with ONNX's expected outputs (see `reef_onnx::node_tests`).
//!
//! The data ships with the `onnx` Python package (`pip install
//! onnx==1.17.0`, pinned in `.ci/requirements.txt`); without it the test
//! says so and skips.

mod common;

use common::CpuRunner;
use reef_onnx::node_tests::{self, Outcome};

/// Cases known to fail because of a reef bug not fixed yet, with why.
/// They are reported but do not fail the test; every other failure does.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

#[test]
fn onnx_node_tests_pass_on_the_cpu_backend() {
    let Some(dir) = node_tests::locate() else {
        println!("SKIP: ONNX node-test data not found (pip install onnx==1.17.0)");
        return;
    };
    let runner = CpuRunner::new().expect("CPU backend");
    let exec = |g: &reef_model::Graph, inputs: &[reef_model::Tensor]| runner.run(g, inputs);
    let results = node_tests::run_all(&dir, &exec).expect("node-test data readable");
    assert!(
        !results.is_empty(),
        "no node-test case selected under {}",
        dir.display()
    );
    println!("ONNX node tests from {}", dir.display());
    node_tests::print_summary(&results);

    for r in &results {
        if let Outcome::Unsupported(why) = &r.outcome {
            println!("unsupported {}: {why}", r.case.name);
        }
    }

    let known = |name: &str| KNOWN_FAILURES.iter().find(|(n, _)| *n == name);
    let mut unexpected = vec![];
    let mut fixed = vec![];
    for r in &results {
        match (&r.outcome, known(&r.case.name)) {
            (Outcome::Failed(why), None) => unexpected.push(format!("{}: {why}", r.case.name)),
            (Outcome::Passed, Some(_)) => fixed.push(r.case.name.as_str()),
            _ => {}
        }
    }
    if !KNOWN_FAILURES.is_empty() {
        println!("known failures ({}), not enforced:", KNOWN_FAILURES.len());
        for (name, why) in KNOWN_FAILURES {
            println!("  {name}: {why}");
        }
    }
    for name in &fixed {
        println!("now passing, remove from KNOWN_FAILURES: {name}");
    }
    assert!(
        unexpected.is_empty(),
        "{} node test(s) failed:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
