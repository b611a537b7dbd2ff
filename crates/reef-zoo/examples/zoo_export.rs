//! Writes zoo weights for checking against PyTorch with `scripts/torch_zoo.py`.
//!
//! `cargo run -p reef-zoo --example zoo_export -- DIR [--seed N] [--keys] NAME...`
//! writes `DIR/NAME.safetensors` (the named weights), or with `--keys` only
//! `DIR/NAME.keys.json` (`{"name": [shape...], ...}`) to compare state_dict
//! keys and shapes without moving the weights.

use reef_model::weights::{named_weights, save_safetensors};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(
        args.next()
            .ok_or("usage: zoo_export DIR [--seed N] [--keys] NAME...")?,
    );
    let (mut seed, mut keys, mut names) = (0u64, false, vec![]);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().ok_or("--seed needs a value")?.parse()?,
            "--keys" => keys = true,
            _ => names.push(a),
        }
    }
    std::fs::create_dir_all(&dir)?;
    for name in names {
        let w = named_weights(&reef_zoo::build(&name, 1, seed)?);
        if keys {
            let body: Vec<String> = w
                .iter()
                .map(|(n, t)| format!("{n:?}: {:?}", t.shape))
                .collect();
            std::fs::write(
                dir.join(format!("{name}.keys.json")),
                format!("{{{}}}", body.join(", ")),
            )?;
        } else {
            save_safetensors(&w, dir.join(format!("{name}.safetensors")))?;
        }
        println!("{name}: {} tensors", w.len());
    }
    Ok(())
}
