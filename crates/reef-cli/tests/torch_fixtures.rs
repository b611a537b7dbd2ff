//! reef's CPU backend against PyTorch: the tiny zoo models with weights from
//! seed 3, exported by `reef export`, run by `reef verify` on the inputs of a
//! recorded PyTorch run (crates/reef-zoo/tests/data, made with
//! scripts/torch_zoo.py on torchvision / transformers), both as zoo graphs and
//! through reef's own ONNX export.

use std::process::Command;

fn reef(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run reef");
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn tiny_models_match_pytorch_on_the_cpu_backend() {
    let dir = std::env::temp_dir().join(format!("reef-torch-fixtures-{}", std::process::id()));
    let d = dir.to_str().unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../reef-zoo/tests/data");
    for m in [
        "resnet_tiny",
        "vgg_tiny",
        "densenet_tiny",
        "inception_tiny",
        "mobilenet_tiny",
        "mobilenet_v3_tiny",
        "bert_tiny",
    ] {
        let (ok, out) = reef(&["export", m, "--seed", "3", "--format", "both", "--out", d]);
        assert!(ok, "export {m}: {out}");
        let reference = format!("{data}/{m}.torch.safetensors");
        let weights = format!("{d}/{m}.safetensors");
        let onnx = format!("{d}/{m}.onnx");
        for args in [
            vec![
                "verify",
                "--device",
                "cpu",
                "--tol",
                "1e-5",
                "--reference",
                &reference,
                "--zoo",
                m,
                "--weights",
                &weights,
            ],
            vec![
                "verify",
                "--device",
                "cpu",
                "--tol",
                "1e-5",
                "--reference",
                &reference,
                "--onnx",
                &onnx,
            ],
        ] {
            let (ok, out) = reef(&args);
            println!("{out}");
            assert!(ok, "{m} differs from PyTorch: {out}");
            assert!(out.contains("rel L2"), "no comparison printed: {out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
