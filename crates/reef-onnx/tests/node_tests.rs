//! Imports every ONNX backend node test of the ops reef supports: each must
//! import or fail with a clean `Unsupported` error, never panic. Execution is
//! wired by the backends; here inputs/outputs are decoded and the imported
//! graph's input and output shapes are checked against the test data.

use reef_model::ModelError;
use reef_onnx::node_tests::{list_cases, load_data_sets, locate, prepare, read_model, Summary};
use reef_onnx::node_tests::{CaseResult, Outcome};

#[test]
fn node_tests_import() {
    let Some(dir) = locate() else {
        println!("SKIPPED: ONNX node tests not found (set REEF_ONNX_NODE_TESTS or `pip install onnx==1.17.0`)");
        return;
    };
    let cases = list_cases(&dir).expect("list node tests");
    assert!(
        !cases.is_empty(),
        "no node tests of supported ops under {}",
        dir.display()
    );
    let mut results = vec![];
    for case in cases {
        let prepared = read_model(&case).and_then(|m| {
            let sets = load_data_sets(&case)?;
            let set = sets
                .first()
                .ok_or_else(|| ModelError::Graph("no data set".into()))?;
            prepare(&m, set)
        });
        let outcome = match prepared {
            Ok(p) => {
                for why in &p.skipped {
                    println!("note: {}: {why}", case.name);
                }
                // The imported graph must agree with the test data's shapes.
                let (g, set) = (&p.graph, &p);
                let mut why = None;
                for (t, &v) in set.inputs.iter().zip(&g.inputs) {
                    if t.shape != g.values[v].shape || t.dtype() != g.values[v].dtype {
                        why = Some(format!(
                            "input {} is {:?}, data {:?}",
                            g.values[v].name, g.values[v], t
                        ));
                    }
                }
                for (t, &v) in set.outputs.iter().zip(&g.outputs) {
                    if t.shape != g.values[v].shape || t.dtype() != g.values[v].dtype {
                        why = Some(format!(
                            "output {} inferred {:?}, data {:?}",
                            g.values[v].name, g.values[v], t
                        ));
                    }
                }
                match why {
                    Some(w) => Outcome::Failed(w),
                    None => Outcome::Passed,
                }
            }
            Err(e @ ModelError::Unsupported { .. }) => Outcome::Unsupported(e.to_string()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        results.push(CaseResult { case, outcome });
    }
    println!("{}", Summary(&results));
    let failed: Vec<_> = results
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Failed(w) => Some(format!("{}: {w}", r.case.name)),
            _ => None,
        })
        .collect();
    for r in &results {
        if let Outcome::Unsupported(w) = &r.outcome {
            println!("unsupported {}: {w}", r.case.name);
        }
    }
    assert!(
        failed.is_empty(),
        "{} node tests failed to import cleanly:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
