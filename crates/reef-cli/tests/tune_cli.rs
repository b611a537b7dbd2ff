//! `reef tune` and `REEF_TACTICS` from the command line: bad values are
//! named, and without a GPU the command says it needs one (on a machine with
//! a GPU that check is skipped, saying so).

use std::process::Command;

fn reef(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .output()
        .expect("run reef");
    let text = String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

#[test]
fn tune_rejects_a_zero_batch() {
    let (ok, out) = reef(
        &["tune", "--models", "resnet_tiny", "--batches", "1,0"],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("--batches"), "{out}");
}

#[test]
fn tune_without_a_gpu_says_it_needs_one() {
    if reef_cuda::cuda_available() {
        println!("SKIP: a GPU is present; this checks the message without one");
        return;
    }
    let (ok, out) = reef(&["tune", "--models", "resnet_tiny", "--batches", "1"], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("needs a CUDA GPU"), "{out}");
}

#[test]
fn a_bad_tactics_setting_is_named_before_any_device_work() {
    for args in [
        &["tune", "--models", "resnet_tiny"][..],
        &[
            "bench",
            "models",
            "--models",
            "resnet_tiny",
            "--batches",
            "1",
            "--iters",
            "1",
        ][..],
    ] {
        let (ok, out) = reef(args, &[("REEF_TACTICS", "fastest")]);
        assert!(!ok, "{args:?}: {out}");
        assert!(
            out.contains("REEF_TACTICS") && out.contains("fastest") && out.contains("round:R"),
            "{args:?}: {out}"
        );
    }
}
