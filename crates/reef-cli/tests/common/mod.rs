//! Shared helpers of the engine tests: running a graph through reef's full
//! path (compile, load on the CPU backend, write inputs, run every kernel,
//! read outputs), running ONNX bytes in tract (the independent reference),
//! and seeded random inputs.
#![allow(dead_code)]

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_exec::cpu::CpuDevice;
use reef_exec::run::run_to_end;
use reef_exec::{Device, Lane, ModelHandle, Priority, Variant};
use reef_model::{DType, Graph, Tensor, TensorData};
use reef_onnx::convert::{tensor_from_proto, tensor_to_proto};
use reef_onnx::proto::ModelProto;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tract_onnx::prelude::{
    Datum, DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, Tensor as TTensor,
    TractResult,
};

/// Worker threads of the CPU device (CI machines have 2 cores).
pub const CPU_THREADS: usize = 2;

/// reef's CPU backend with one high-priority lane, reused across runs.
pub struct CpuRunner {
    device: CpuDevice,
    lane: Mutex<Box<dyn Lane>>,
}

/// A graph compiled and loaded on the CPU backend, ready to run.
pub struct Loaded {
    model: Arc<dyn ModelHandle>,
}

impl CpuRunner {
    /// A CPU device with [`CPU_THREADS`] workers and one RT lane.
    pub fn new() -> Result<Self, String> {
        let device = CpuDevice::new(Some(CPU_THREADS)).map_err(|e| format!("CPU device: {e}"))?;
        let lane = device
            .lane(Priority::High)
            .map_err(|e| format!("CPU lane: {e}"))?;
        Ok(Self {
            device,
            lane: Mutex::new(lane),
        })
    }

    /// Compiles `graph` with `reef_plan::compile` and loads the plan.
    pub fn load(&self, graph: &Graph) -> Result<Loaded, String> {
        let plan = reef_plan::compile(graph).map_err(|e| format!("compile: {e}"))?;
        let model = self
            .device
            .load(Arc::new(plan))
            .map_err(|e| format!("load: {e}"))?;
        Ok(Loaded { model })
    }

    /// Runs a loaded model on `inputs` (plan input order): writes them,
    /// runs every kernel as RT on the lane and reads the outputs with the
    /// plan's output types and shapes. Also returns the time from the first
    /// write to the last read.
    pub fn run_loaded(
        &self,
        loaded: &Loaded,
        inputs: &[Tensor],
    ) -> Result<(Vec<Tensor>, Duration), String> {
        let plan = loaded.model.plan().clone();
        if inputs.len() != plan.inputs.len() {
            return Err(format!(
                "{} inputs given, the plan takes {}",
                inputs.len(),
                plan.inputs.len()
            ));
        }
        let mut ctx = loaded
            .model
            .context()
            .map_err(|e| format!("context: {e}"))?;
        // Unwritten outputs show up as NaN instead of stale zeros.
        ctx.poison().map_err(|e| format!("poison: {e}"))?;
        let start = Instant::now();
        for (i, (t, io)) in inputs.iter().zip(&plan.inputs).enumerate() {
            if t.dtype() != io.dtype || t.shape != io.shape {
                return Err(format!(
                    "input {i} '{}' is {:?}{:?}, the plan takes {:?}{:?}",
                    io.name,
                    t.dtype(),
                    t.shape,
                    io.dtype,
                    io.shape
                ));
            }
            ctx.write_input(i, &t.to_bytes())
                .map_err(|e| format!("write input {i} '{}': {e}", io.name))?;
        }
        let n = plan.kernels.len();
        let done = {
            let mut lane = self
                .lane
                .lock()
                .map_err(|_| "the lane lock was poisoned by an earlier panic".to_string())?;
            run_to_end(lane.as_mut(), ctx.as_mut(), 0, Variant::Rt)
                .map_err(|e| format!("run: {e}"))?
        };
        if done != n {
            return Err(format!("run stopped at kernel {done} of {n}"));
        }
        let mut outs = Vec::with_capacity(plan.outputs.len());
        for (i, io) in plan.outputs.iter().enumerate() {
            let bytes = ctx
                .read_output(i)
                .map_err(|e| format!("read output {i} '{}': {e}", io.name))?;
            let t = Tensor::from_bytes(io.dtype, io.shape.clone(), &bytes)
                .map_err(|e| format!("decode output {i} '{}': {e}", io.name))?;
            outs.push(t);
        }
        Ok((outs, start.elapsed()))
    }

    /// Compiles, loads and runs `graph` once on `inputs`.
    pub fn run(&self, graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
        let loaded = self.load(graph)?;
        self.run_loaded(&loaded, inputs).map(|(o, _)| o)
    }
}

fn to_tract(t: &Tensor) -> TractResult<TTensor> {
    match &t.data {
        TensorData::F32(v) => TTensor::from_shape(&t.shape, v),
        TensorData::I64(v) => TTensor::from_shape(&t.shape, v),
        TensorData::I32(v) => TTensor::from_shape(&t.shape, v),
        TensorData::Bool(v) => TTensor::from_shape(&t.shape, v),
    }
}

fn plain<T: Datum + Copy>(t: &TTensor) -> Result<Vec<T>, String> {
    Ok(t.to_plain_array_view::<T>()
        .map_err(|e| e.to_string())?
        .iter()
        .copied()
        .collect())
}

fn from_tract(t: &TTensor) -> Result<Tensor, String> {
    let shape = t.shape().to_vec();
    let r = match t.datum_type() {
        DatumType::F32 => Tensor::f32(shape, plain(t)?),
        DatumType::I64 => Tensor::i64(shape, plain(t)?),
        DatumType::I32 => Tensor::i32(shape, plain(t)?),
        DatumType::Bool => Tensor::bool(shape, plain(t)?),
        d => return Err(format!("tract output type {d:?} not handled")),
    };
    r.map_err(|e| e.to_string())
}

fn datum(d: DType) -> Result<DatumType, String> {
    Ok(match d {
        DType::F32 => f32::datum_type(),
        DType::I64 => i64::datum_type(),
        DType::I32 => i32::datum_type(),
        DType::Bool => bool::datum_type(),
        d => return Err(format!("{d} inputs are not handled by the tract reference")),
    })
}

/// Rewrites every `Pad` whose pads are a constant initializer with no
/// positive entry (a pure crop, valid ONNX: negative pads remove elements)
/// into the equivalent `Slice`, since tract 0.23 panics on negative pads.
/// Returns the new model bytes and how many nodes were rewritten.
pub fn crops_as_slices(bytes: &[u8]) -> Result<(Vec<u8>, usize), String> {
    let mut model = ModelProto::decode(bytes).map_err(|e| format!("decode ONNX: {e}"))?;
    let Some(graph) = model.graph.as_mut() else {
        return Err("ONNX model has no graph".into());
    };
    let mut added = vec![];
    let mut rewritten = 0;
    for (k, node) in graph.node.iter_mut().enumerate() {
        let axes_given = node.input.get(3).is_some_and(|a| !a.is_empty());
        if node.op_type != "Pad" || axes_given {
            continue;
        }
        let Some(pads) = node
            .input
            .get(1)
            .and_then(|n| graph.initializer.iter().find(|t| &t.name == n))
        else {
            continue;
        };
        let pads = tensor_from_proto(pads)
            .map_err(|e| format!("Pad '{}' pads: {e}", node.name))?
            .to_i64_vec();
        if pads.is_empty() || pads.iter().any(|&p| p > 0) {
            continue;
        }
        let rank = pads.len() / 2;
        let starts: Vec<i64> = pads[..rank].iter().map(|&b| -b).collect();
        // A negative end counts from the axis' end; 0 removes nothing.
        let ends: Vec<i64> = pads[rank..]
            .iter()
            .map(|&e| if e == 0 { i64::MAX } else { e })
            .collect();
        let (sn, en) = (format!("crop{k}.starts"), format!("crop{k}.ends"));
        added.push(tensor_to_proto(&sn, &Tensor::i64_vec(&starts)));
        added.push(tensor_to_proto(&en, &Tensor::i64_vec(&ends)));
        node.op_type = "Slice".into();
        node.attribute.clear();
        node.input = vec![node.input[0].clone(), sn, en];
        rewritten += 1;
    }
    graph.initializer.extend(added);
    Ok((model.encode_to_vec(), rewritten))
}

/// Runs ONNX `bytes` in tract: input facts fixed from `inputs`, model
/// optimised and made runnable, then run once. Returns the outputs and the
/// time of the run alone (not the load and optimisation).
pub fn tract_run(bytes: &[u8], inputs: &[Tensor]) -> Result<(Vec<Tensor>, Duration), String> {
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(bytes))
        .map_err(|e| format!("tract load: {e:?}"))?;
    for (i, t) in inputs.iter().enumerate() {
        model = model
            .with_input_fact(i, InferenceFact::dt_shape(datum(t.dtype())?, &t.shape))
            .map_err(|e| format!("tract input fact {i}: {e:?}"))?;
    }
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("tract optimise: {e:?}"))?;
    let ins = inputs
        .iter()
        .map(|t| to_tract(t).map(Into::into))
        .collect::<TractResult<_>>()
        .map_err(|e| format!("tract inputs: {e:?}"))?;
    let start = Instant::now();
    let outs = plan.run(ins).map_err(|e| format!("tract run: {e:?}"))?;
    let took = start.elapsed();
    let outs = outs
        .iter()
        .map(|v| from_tract(v))
        .collect::<Result<_, _>>()?;
    Ok((outs, took))
}

/// A seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Random inputs for the graph's inputs: f32 uniform in [-1, 1); i64 token
/// ids in [0, 1000); an i64 input whose name holds "mask" is 0/1, mostly 1
/// (position 0 always 1, so no row is fully masked). Never all zeros.
pub fn random_inputs(graph: &Graph, rng: &mut ChaCha8Rng) -> Result<Vec<Tensor>, String> {
    graph
        .inputs
        .iter()
        .map(|&v| {
            let info = &graph.values[v];
            let shape = info.shape.clone();
            let n: usize = shape.iter().product();
            let last = shape.last().copied().unwrap_or(1).max(1);
            let t = match info.dtype {
                DType::F32 => {
                    Tensor::f32(shape, (0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
                }
                DType::I64 if info.name.contains("mask") => Tensor::i64(
                    shape,
                    (0..n)
                        .map(|i| i64::from(i % last == 0 || rng.random_bool(0.85)))
                        .collect(),
                ),
                DType::I64 => {
                    Tensor::i64(shape, (0..n).map(|_| rng.random_range(0..1000)).collect())
                }
                d => {
                    return Err(format!(
                        "input '{}': no random generator for {d}",
                        info.name
                    ))
                }
            };
            t.map_err(|e| format!("input '{}': {e}", info.name))
        })
        .collect()
}
