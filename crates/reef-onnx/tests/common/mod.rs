//! Shared test helpers: running ONNX bytes in tract (the independent
//! reference), random tensors, and comparisons.
#![allow(dead_code)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_model::{DType, Tensor, TensorData};
use tract_onnx::prelude::{
    Datum, DatumType, Framework, InferenceFact, InferenceModelExt, IntoRunnable, Tensor as TTensor,
    TractResult,
};

fn to_tract(t: &Tensor) -> TractResult<TTensor> {
    match &t.data {
        TensorData::F32(v) => TTensor::from_shape(&t.shape, v),
        TensorData::I64(v) => TTensor::from_shape(&t.shape, v),
        TensorData::I32(v) => TTensor::from_shape(&t.shape, v),
        TensorData::Bool(v) => TTensor::from_shape(&t.shape, v),
    }
}

fn from_tract(t: &TTensor) -> Result<Tensor, String> {
    let shape = t.shape().to_vec();
    let r = match t.datum_type() {
        DatumType::F32 => Tensor::f32(
            shape,
            t.to_plain_array_view::<f32>()
                .map_err(|e| e.to_string())?
                .iter()
                .copied()
                .collect(),
        ),
        DatumType::I64 => Tensor::i64(
            shape,
            t.to_plain_array_view::<i64>()
                .map_err(|e| e.to_string())?
                .iter()
                .copied()
                .collect(),
        ),
        DatumType::I32 => Tensor::i32(
            shape,
            t.to_plain_array_view::<i32>()
                .map_err(|e| e.to_string())?
                .iter()
                .copied()
                .collect(),
        ),
        DatumType::Bool => Tensor::bool(
            shape,
            t.to_plain_array_view::<bool>()
                .map_err(|e| e.to_string())?
                .iter()
                .copied()
                .collect(),
        ),
        d => return Err(format!("tract output type {d:?} not handled")),
    };
    r.map_err(|e| e.to_string())
}

fn datum(d: DType) -> DatumType {
    match d {
        DType::F32 => f32::datum_type(),
        DType::I64 => i64::datum_type(),
        DType::I32 => i32::datum_type(),
        _ => bool::datum_type(),
    }
}

/// Loads ONNX `bytes` in tract, fixes the input facts from `inputs`, runs
/// the optimised model and returns its outputs as reef tensors.
pub fn tract_run(bytes: &[u8], inputs: &[Tensor]) -> Result<Vec<Tensor>, String> {
    let run = || -> TractResult<Vec<TTensor>> {
        let mut model = tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(bytes))?;
        for (i, t) in inputs.iter().enumerate() {
            model =
                model.with_input_fact(i, InferenceFact::dt_shape(datum(t.dtype()), &t.shape))?;
        }
        let plan = model.into_optimized()?.into_runnable()?;
        let ins = inputs
            .iter()
            .map(|t| to_tract(t).map(|t| t.into()))
            .collect::<TractResult<_>>()?;
        let outs = plan.run(ins)?;
        Ok(outs
            .iter()
            .map(|v| {
                let t: &TTensor = v;
                t.clone()
            })
            .collect())
    };
    let outs = run().map_err(|e| format!("{e:?}"))?;
    outs.iter().map(from_tract).collect()
}

/// A seeded f32 tensor with values in [-1, 1) (never all zeros).
pub fn rand_f32(rng: &mut ChaCha8Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::f32(
        shape.to_vec(),
        (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
    )
    .unwrap()
}

/// A seeded RNG.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Relative L2 error of two f32 tensors of equal shape.
pub fn rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.shape, b.shape, "shapes differ");
    reef_model::tensor::rel_l2(a.as_f32().expect("f32"), b.as_f32().expect("f32"))
}
