//! `reef bench preempt` end to end on the CPU backend: the RT order of the
//! modes (`reset:drain`, REEF's; `reset`, RT first) each preempts a running
//! BE model and reports its rows as JSON and Markdown.

use std::process::Command;

#[test]
fn bench_preempt_reports_a_row_per_model_and_mode() {
    let json = std::env::temp_dir().join(format!("reef-preempt-{}.json", std::process::id()));
    let r = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args([
            "bench",
            "preempt",
            "--device",
            "cpu",
            "--be",
            "bert_tiny,mobilenet_tiny",
            "--rt",
            "resnet_tiny",
            "--modes",
            "reset:drain,reset,reef:drain:depth1",
            "--requests",
            // Enough that some RT request meets running BE work even on a
            // busy CI box (24 once met none there).
            "48",
            "--max-gap-ms",
            "3",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run reef");
    let stdout = String::from_utf8_lossy(&r.stdout);
    assert!(
        r.status.success(),
        "reef bench preempt failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
            .expect("JSON parses");
    let _ = std::fs::remove_file(&json);
    let rows = rows.as_array().expect("a list of rows");
    let mut seen = vec![];
    for row in rows {
        let model = row["be_model"].as_str().expect("be_model");
        let mode = row["mode"].as_str().expect("mode");
        seen.push(format!("{model} {mode}"));
        let f = |k: &str| {
            row[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{model} {mode}: {k}"))
        };
        assert!(f("preemptions") >= 1.0, "{model} {mode}: no preemption");
        assert!(f("rt_mean_ms") > 0.0 && f("rt_alone_mean_ms") > 0.0);
        assert!(f("preempt_p50_us") > 0.0 && f("preempt_p50_us") <= f("preempt_max_us"));
        assert!(f("be_per_s") > 0.0, "{model} {mode}: BE made no progress");
        // The Markdown table on stdout carries the same row.
        assert!(
            stdout.contains(&format!("| {model} | {mode} |")),
            "{model} {mode} missing from:\n{stdout}"
        );
    }
    let want: Vec<String> = ["bert_tiny", "mobilenet_tiny"]
        .iter()
        .flat_map(|m| {
            ["reset:drain", "reset", "reef:drain:depth1"]
                .iter()
                .map(move |mode| format!("{m} {mode}"))
        })
        .collect();
    assert_eq!(seen, want);
}
