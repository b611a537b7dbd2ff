//! Decoding client tensors (raw little-endian bytes, JSON arrays, protobuf
//! typed contents) into [`Tensor`]s and encoding results back. Every error
//! names the tensor involved.

use crate::proto::InferTensorContents;
use crate::request_error::RequestError;
use reef_model::tensor::numel;
use reef_model::{DType, Tensor, TensorData};
use serde_json::Value;

/// Parses a KServe datatype name for tensor `tensor`; rejects types reef's
/// tensors cannot hold.
pub fn parse_datatype(tensor: &str, name: &str) -> Result<DType, RequestError> {
    match DType::from_kserve(name) {
        Some(d @ (DType::F32 | DType::I64 | DType::I32 | DType::Bool)) => Ok(d),
        _ => Err(RequestError::bad(format!(
            "tensor '{tensor}': unsupported datatype '{name}' (reef supports FP32, INT64, INT32 and BOOL)"
        ))),
    }
}

/// Checks a client shape (no negative dimensions, element count fits memory).
pub fn parse_shape(tensor: &str, shape: &[i64]) -> Result<Vec<usize>, RequestError> {
    let mut out = Vec::with_capacity(shape.len());
    let mut count: usize = 1;
    for &d in shape {
        let d = usize::try_from(d).map_err(|_| {
            RequestError::bad(format!(
                "tensor '{tensor}': shape {shape:?} has a negative dimension"
            ))
        })?;
        count = count.checked_mul(d).ok_or_else(|| {
            RequestError::bad(format!(
                "tensor '{tensor}': shape {shape:?} has too many elements"
            ))
        })?;
        out.push(d);
    }
    Ok(out)
}

/// Shape as KServe reports it.
pub fn shape_i64(shape: &[usize]) -> Vec<i64> {
    shape.iter().map(|&d| d as i64).collect()
}

/// Decodes raw little-endian bytes (Triton binary data / gRPC raw contents).
pub fn tensor_from_raw(
    tensor: &str,
    dtype: DType,
    shape: Vec<usize>,
    bytes: &[u8],
) -> Result<Tensor, RequestError> {
    let want = numel(&shape).checked_mul(dtype.size());
    if want != Some(bytes.len()) {
        return Err(RequestError::bad(format!(
            "tensor '{tensor}': {} shape {shape:?} needs {} bytes of data, got {}",
            dtype.kserve_name(),
            want.map_or_else(|| "too many".to_string(), |w| w.to_string()),
            bytes.len()
        )));
    }
    Tensor::from_bytes(dtype, shape, bytes)
        .map_err(|e| RequestError::bad(format!("tensor '{tensor}': {e}")))
}

fn flatten<'v>(v: &'v Value, out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn element_error(tensor: &str, i: usize, what: &str, v: &Value) -> RequestError {
    RequestError::bad(format!(
        "tensor '{tensor}': element {i} ({v}) is not {what}"
    ))
}

/// Decodes a JSON `data` field (flat or nested arrays) for a tensor of the
/// given type and shape.
pub fn tensor_from_json(
    tensor: &str,
    dtype: DType,
    shape: Vec<usize>,
    data: &Value,
) -> Result<Tensor, RequestError> {
    let mut leaves = Vec::new();
    flatten(data, &mut leaves);
    let n = numel(&shape);
    if leaves.len() != n {
        return Err(RequestError::bad(format!(
            "tensor '{tensor}': shape {shape:?} needs {n} elements, data has {}",
            leaves.len()
        )));
    }
    let made = match dtype {
        DType::F32 => {
            let v = leaves
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| element_error(tensor, i, "a number", x))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::f32(shape, v)
        }
        DType::I64 => {
            let v = leaves
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_i64()
                        .ok_or_else(|| element_error(tensor, i, "a 64-bit integer", x))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::i64(shape, v)
        }
        DType::I32 => {
            let v = leaves
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_i64()
                        .and_then(|w| i32::try_from(w).ok())
                        .ok_or_else(|| element_error(tensor, i, "a 32-bit integer", x))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::i32(shape, v)
        }
        DType::Bool => {
            let v = leaves
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_bool()
                        .ok_or_else(|| element_error(tensor, i, "a boolean", x))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::bool(shape, v)
        }
        other => {
            return Err(RequestError::bad(format!(
                "tensor '{tensor}': unsupported datatype {}",
                other.kserve_name()
            )))
        }
    };
    made.map_err(|e| RequestError::bad(format!("tensor '{tensor}': {e}")))
}

/// A tensor's elements as a flat JSON array.
pub fn tensor_to_json(t: &Tensor) -> Value {
    match &t.data {
        TensorData::F32(v) => Value::Array(v.iter().map(|&x| Value::from(x as f64)).collect()),
        TensorData::I64(v) => Value::Array(v.iter().map(|&x| Value::from(x)).collect()),
        TensorData::I32(v) => Value::Array(v.iter().map(|&x| Value::from(x)).collect()),
        TensorData::Bool(v) => Value::Array(v.iter().map(|&x| Value::from(x)).collect()),
    }
}

/// Decodes gRPC typed contents (`InferTensorContents`).
pub fn tensor_from_contents(
    tensor: &str,
    dtype: DType,
    shape: Vec<usize>,
    c: &InferTensorContents,
) -> Result<Tensor, RequestError> {
    let n = numel(&shape);
    let (field, len) = match dtype {
        DType::F32 => ("fp32_contents", c.fp32_contents.len()),
        DType::I64 => ("int64_contents", c.int64_contents.len()),
        DType::I32 => ("int_contents", c.int_contents.len()),
        DType::Bool => ("bool_contents", c.bool_contents.len()),
        other => {
            return Err(RequestError::bad(format!(
                "tensor '{tensor}': unsupported datatype {}",
                other.kserve_name()
            )))
        }
    };
    let total = c.bool_contents.len()
        + c.int_contents.len()
        + c.int64_contents.len()
        + c.uint_contents.len()
        + c.uint64_contents.len()
        + c.fp32_contents.len()
        + c.fp64_contents.len()
        + c.bytes_contents.len();
    if total != len {
        return Err(RequestError::bad(format!(
            "tensor '{tensor}': a {} tensor takes its elements in `{field}` only",
            dtype.kserve_name()
        )));
    }
    if len != n {
        return Err(RequestError::bad(format!(
            "tensor '{tensor}': shape {shape:?} needs {n} elements, `{field}` has {len}"
        )));
    }
    let made = match dtype {
        DType::F32 => Tensor::f32(shape, c.fp32_contents.clone()),
        DType::I64 => Tensor::i64(shape, c.int64_contents.clone()),
        DType::I32 => Tensor::i32(shape, c.int_contents.clone()),
        _ => Tensor::bool(shape, c.bool_contents.clone()),
    };
    made.map_err(|e| RequestError::bad(format!("tensor '{tensor}': {e}")))
}
