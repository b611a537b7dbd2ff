//! `reef verify`: runs a model (zoo or ONNX file) on a device with the inputs
//! of a reference run (e.g. PyTorch's, from `scripts/torch_zoo.py --out`) and
//! compares every output with the reference by relative L2 error.

use crate::device::{self, DeviceChoice};
use anyhow::{bail, Context, Result};
use reef_exec::{run::run_to_end, Priority, Variant};
use reef_model::tensor::rel_l2;
use reef_model::{DType, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `reef verify`.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Reference inputs and outputs (safetensors, tensors named like the graph's inputs and outputs).
    #[arg(long)]
    pub reference: PathBuf,
    /// Check this ONNX file.
    #[arg(long, conflicts_with = "zoo")]
    pub onnx: Option<PathBuf>,
    /// Check this zoo model.
    #[arg(long)]
    pub zoo: Option<String>,
    /// Weights for the zoo model (safetensors with torch parameter names).
    #[arg(long, requires = "zoo")]
    pub weights: Option<PathBuf>,
    /// Device.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// Largest relative L2 error accepted per output.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Value of a named dynamic input dimension of the ONNX file, past the
    /// batch (repeatable), e.g. `--dim sequence=128`.
    #[arg(long = "dim", value_name = "NAME=N", value_parser = parse_dim, requires = "onnx")]
    pub dims: Vec<(String, usize)>,
}

/// Parses `NAME=N` (N at least 1).
fn parse_dim(s: &str) -> Result<(String, usize), String> {
    let (name, v) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=N"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("'{s}' names no dimension"));
    }
    match v.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok((name.to_string(), n)),
        _ => Err(format!(
            "'{v}' is not a dimension size (a whole number, at least 1)"
        )),
    }
}

/// Runs the check; returns whether every output is within tolerance.
pub fn run(a: VerifyArgs) -> Result<bool> {
    let bytes = std::fs::read(&a.reference)
        .with_context(|| format!("reading {}", a.reference.display()))?;
    let reference: HashMap<String, Tensor> = reef_model::weights::load_safetensors(&bytes)?
        .into_iter()
        .collect();
    let batch = reference
        .values()
        .find_map(|t| t.shape.first().copied())
        .unwrap_or(1);
    let graph = match (&a.onnx, &a.zoo) {
        (Some(p), None) => {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let dims: reef_onnx::DimValues = a.dims.iter().cloned().collect();
            reef_onnx::import_with_dims(&b, Some(batch), &dims)?
        }
        (None, Some(name)) => {
            let mut g = reef_zoo::build(name, batch, 0)?;
            if let Some(w) = &a.weights {
                let wb = std::fs::read(w).with_context(|| format!("reading {}", w.display()))?;
                reef_model::weights::replace_weights(
                    &mut g,
                    &reef_model::weights::load_safetensors(&wb)?,
                )?;
            }
            g
        }
        _ => bail!("give either --onnx FILE or --zoo NAME"),
    };
    let dev = device::open(a.device, None)?;
    let plan = Arc::new(reef_plan::compile(&graph)?);
    let h = dev.load(plan.clone())?;
    let mut ctx = h.context()?;
    ctx.poison()?;
    for (i, io) in plan.inputs.iter().enumerate() {
        let t = reference
            .get(&io.name)
            .with_context(|| format!("the reference has no input '{}'", io.name))?;
        let t = if t.dtype() != io.dtype && io.dtype == DType::I64 {
            Tensor::i64(t.shape.clone(), t.to_i64_vec())?
        } else {
            t.clone()
        };
        if t.shape != io.shape || t.dtype() != io.dtype {
            bail!(
                "reference input '{}' is {} {:?}, the model takes {} {:?}",
                io.name,
                t.dtype(),
                t.shape,
                io.dtype,
                io.shape
            );
        }
        ctx.write_input(i, &t.bytes())?;
    }
    let mut lane = dev.lane(Priority::High)?;
    run_to_end(lane.as_mut(), ctx.as_mut(), 0, Variant::Rt)?;
    println!(
        "{} on {}: {}",
        a.onnx
            .as_ref()
            .map(|p| p.display().to_string())
            .or(a.zoo.clone())
            .unwrap_or_default(),
        dev.name(),
        plan.summary()
    );
    let mut ok = true;
    for (i, io) in plan.outputs.iter().enumerate() {
        let got = Tensor::from_bytes(io.dtype, io.shape.clone(), &ctx.read_output(i)?)?;
        let Some(want) = reference.get(&io.name) else {
            println!("{:<24} no reference output of this name; skipped", io.name);
            continue;
        };
        let err = match (got.as_f32(), want.as_f32()) {
            (Some(g), Some(w)) => rel_l2(g, w),
            _ if got == *want => 0.0,
            _ => f64::INFINITY,
        };
        let pass = err <= a.tol;
        ok &= pass;
        println!(
            "{:<24} {:?} rel L2 {:.2e} {}",
            io.name,
            io.shape,
            err,
            if pass { "ok" } else { "FAIL" }
        );
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::parse_dim;

    #[test]
    fn dims_parse_as_name_equals_size() {
        assert_eq!(parse_dim("sequence=128"), Ok(("sequence".into(), 128)));
        assert_eq!(parse_dim(" seq = 7 "), Ok(("seq".into(), 7)));
        assert!(parse_dim("sequence").unwrap_err().contains("not NAME=N"));
        assert!(parse_dim("=4").unwrap_err().contains("names no dimension"));
        assert!(parse_dim("s=0").unwrap_err().contains("at least 1"));
        assert!(parse_dim("s=-3").unwrap_err().contains("at least 1"));
    }
}
