//! Conversions between ONNX `TensorProto`s / element types and reef tensors.

use crate::proto::{DataLocation, DataType, TensorProto};
use reef_model::{DType, ModelError, Tensor, TensorData};

/// Largest element count (and largest single dimension) reef accepts in a
/// shape read from a model; keeps every later size computation far from
/// integer overflow.
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// The reef element type of an ONNX `DataType` code, if reef has one.
pub fn dtype_from_onnx(code: i32) -> Option<DType> {
    match DataType::try_from(code).ok()? {
        DataType::Float => Some(DType::F32),
        DataType::Int64 => Some(DType::I64),
        DataType::Int32 => Some(DType::I32),
        DataType::Bool => Some(DType::Bool),
        DataType::Float16 => Some(DType::F16),
        DataType::Bfloat16 => Some(DType::BF16),
        _ => None,
    }
}

/// The ONNX `DataType` code of a reef element type.
pub fn dtype_to_onnx(dtype: DType) -> i32 {
    (match dtype {
        DType::F32 => DataType::Float,
        DType::I64 => DataType::Int64,
        DType::I32 => DataType::Int32,
        DType::Bool => DataType::Bool,
        DType::F16 => DataType::Float16,
        DType::BF16 => DataType::Bfloat16,
    }) as i32
}

/// Human-readable name of an ONNX `DataType` code (for error messages).
pub fn onnx_type_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(t) => format!("{t:?}").to_lowercase(),
        Err(_) => format!("unknown type {code}"),
    }
}

/// Checks a shape read from a file: no dimension and no product of the
/// non-zero dimensions above [`MAX_ELEMENTS`]. Returns the element count.
pub fn check_shape(shape: &[usize]) -> Result<usize, String> {
    let mut n: u64 = 1;
    for &d in shape {
        let d = d as u64;
        if d > MAX_ELEMENTS {
            return Err(format!("dimension {d} of {shape:?} is too large"));
        }
        if d != 0 {
            n = n.saturating_mul(d);
        }
        if n > MAX_ELEMENTS {
            return Err(format!("shape {shape:?} has too many elements"));
        }
    }
    Ok(if shape.contains(&0) { 0 } else { n as usize })
}

fn bad(name: &str, reason: impl std::fmt::Display) -> ModelError {
    ModelError::Graph(format!("tensor '{name}': {reason}"))
}

fn unsupported(name: &str, reason: impl Into<String>) -> ModelError {
    ModelError::Unsupported {
        node: name.to_string(),
        op: "tensor".into(),
        reason: reason.into(),
    }
}

fn typed<T: Clone>(name: &str, field: &str, v: &[T], n: usize) -> Result<Vec<T>, ModelError> {
    if v.len() != n {
        return Err(bad(
            name,
            format!("{field} holds {} elements, the shape needs {n}", v.len()),
        ));
    }
    Ok(v.to_vec())
}

/// Decodes a `TensorProto` into a reef tensor. Errors name the tensor:
/// `Unsupported` for element types reef cannot hold and external data,
/// `Graph` for inconsistent contents.
pub fn tensor_from_proto(tp: &TensorProto) -> Result<Tensor, ModelError> {
    let name = tp.name.as_str();
    if tp.data_location == DataLocation::External as i32 || !tp.external_data.is_empty() {
        return Err(unsupported(name, "external data is not supported"));
    }
    let mut shape = Vec::with_capacity(tp.dims.len());
    for &d in &tp.dims {
        if d < 0 {
            return Err(bad(name, format!("negative dimension in {:?}", tp.dims)));
        }
        shape.push(usize::try_from(d).map_err(|_| bad(name, "dimension too large"))?);
    }
    let n = check_shape(&shape).map_err(|r| bad(name, r))?;
    let dtype = match dtype_from_onnx(tp.data_type) {
        Some(d @ (DType::F32 | DType::I64 | DType::I32 | DType::Bool)) => d,
        _ => {
            return Err(unsupported(
                name,
                format!(
                    "element type {} is not supported",
                    onnx_type_name(tp.data_type)
                ),
            ))
        }
    };
    if !tp.raw_data.is_empty() {
        return Tensor::from_bytes(dtype, shape, &tp.raw_data).map_err(|e| bad(name, e));
    }
    let t = match dtype {
        DType::F32 => Tensor::f32(shape, typed(name, "float_data", &tp.float_data, n)?),
        DType::I64 => Tensor::i64(shape, typed(name, "int64_data", &tp.int64_data, n)?),
        DType::I32 => Tensor::i32(shape, typed(name, "int32_data", &tp.int32_data, n)?),
        _ => {
            let v = typed(name, "int32_data", &tp.int32_data, n)?;
            Tensor::bool(shape, v.iter().map(|&x| x != 0).collect())
        }
    };
    t.map_err(|e| bad(name, e))
}

/// Encodes a reef tensor as a `TensorProto` with `raw_data`.
pub fn tensor_to_proto(name: &str, t: &Tensor) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: t.shape.iter().map(|&d| d as i64).collect(),
        data_type: dtype_to_onnx(t.dtype()),
        raw_data: t.to_bytes(),
        ..Default::default()
    }
}

/// A scalar's first element as f64, if the tensor has exactly one element.
pub fn single_value(t: &Tensor) -> Option<f64> {
    if t.len() != 1 {
        return None;
    }
    Some(match &t.data {
        TensorData::F32(v) => v[0] as f64,
        TensorData::I64(v) => v[0] as f64,
        TensorData::I32(v) => v[0] as f64,
        TensorData::Bool(v) => v[0] as u8 as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_and_raw_fields_agree() {
        let t = Tensor::f32(vec![2, 2], vec![1.5, -2.0, 3.25, 4.0]).unwrap();
        let raw = tensor_to_proto("w", &t);
        assert_eq!(tensor_from_proto(&raw).unwrap(), t);
        let typed = TensorProto {
            name: "w".into(),
            dims: vec![2, 2],
            data_type: DataType::Float as i32,
            float_data: vec![1.5, -2.0, 3.25, 4.0],
            ..Default::default()
        };
        assert_eq!(tensor_from_proto(&typed).unwrap(), t);
        let b = TensorProto {
            dims: vec![3],
            data_type: DataType::Bool as i32,
            int32_data: vec![1, 0, 1],
            ..Default::default()
        };
        assert_eq!(
            tensor_from_proto(&b).unwrap(),
            Tensor::bool(vec![3], vec![true, false, true]).unwrap()
        );
    }

    #[test]
    fn bad_tensors_are_errors() {
        let short = TensorProto {
            dims: vec![3],
            data_type: 1,
            float_data: vec![1.0],
            ..Default::default()
        };
        assert!(tensor_from_proto(&short).is_err());
        let ext = TensorProto {
            dims: vec![1],
            data_type: 1,
            data_location: 1,
            ..Default::default()
        };
        let e = tensor_from_proto(&ext).unwrap_err().to_string();
        assert!(e.contains("external data is not supported"), "{e}");
        let dbl = TensorProto {
            dims: vec![1],
            data_type: 11,
            double_data: vec![1.0],
            ..Default::default()
        };
        assert!(matches!(
            tensor_from_proto(&dbl),
            Err(ModelError::Unsupported { .. })
        ));
        let huge = TensorProto {
            dims: vec![1 << 40, 1 << 40],
            data_type: 1,
            ..Default::default()
        };
        assert!(tensor_from_proto(&huge).is_err());
    }
}
