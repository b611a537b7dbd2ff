//! Host tensors: element types, shapes and owned data.

use crate::error::{ModelError, Result};
use std::fmt;
use std::sync::Arc;

/// Element type of a tensor. Compute kernels are f32; integer and bool tensors
/// carry shapes, indices and masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DType {
    /// 32-bit float (all compute).
    F32,
    /// 64-bit signed integer (indices, shapes).
    I64,
    /// 32-bit signed integer.
    I32,
    /// Boolean (stored as one byte).
    Bool,
    /// 16-bit float (reserved for later compute support).
    F16,
    /// bfloat16 (reserved for later compute support).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
            DType::Bool => 1,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The KServe v2 datatype name.
    pub fn kserve_name(self) -> &'static str {
        match self {
            DType::F32 => "FP32",
            DType::I64 => "INT64",
            DType::I32 => "INT32",
            DType::Bool => "BOOL",
            DType::F16 => "FP16",
            DType::BF16 => "BF16",
        }
    }

    /// Parses a KServe v2 datatype name.
    pub fn from_kserve(name: &str) -> Option<DType> {
        Some(match name {
            "FP32" => DType::F32,
            "INT64" => DType::I64,
            "INT32" => DType::I32,
            "BOOL" => DType::Bool,
            "FP16" => DType::F16,
            "BF16" => DType::BF16,
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::Bool => "bool",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

/// Owned tensor storage, one variant per element type.
#[derive(Clone, PartialEq)]
pub enum TensorData {
    /// f32 elements.
    F32(Arc<Vec<f32>>),
    /// i64 elements.
    I64(Arc<Vec<i64>>),
    /// i32 elements.
    I32(Arc<Vec<i32>>),
    /// bool elements.
    Bool(Arc<Vec<bool>>),
}

/// A dense, row-major host tensor.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Elements.
    pub data: TensorData,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?}", self.dtype(), self.shape)
    }
}

/// Number of elements of a shape (saturating, so absurd shapes cannot overflow).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |a, &d| a.saturating_mul(d))
}

/// Row-major strides of a shape, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

impl Tensor {
    fn check(shape: &[usize], len: usize) -> Result<()> {
        if numel(shape) != len {
            return Err(ModelError::Graph(format!(
                "tensor of shape {shape:?} needs {} elements, got {len}",
                numel(shape)
            )));
        }
        Ok(())
    }

    /// An f32 tensor; fails if `data` does not match `shape`.
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Tensor> {
        Self::check(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data: TensorData::F32(Arc::new(data)),
        })
    }

    /// An f32 tensor over a buffer shared with its maker (a pinned input
    /// buffer, say); fails if `data` does not match `shape`.
    pub fn f32_shared(shape: Vec<usize>, data: Arc<Vec<f32>>) -> Result<Tensor> {
        Self::check(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data: TensorData::F32(data),
        })
    }

    /// An i64 tensor; fails if `data` does not match `shape`.
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Tensor> {
        Self::check(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data: TensorData::I64(Arc::new(data)),
        })
    }

    /// An i32 tensor; fails if `data` does not match `shape`.
    pub fn i32(shape: Vec<usize>, data: Vec<i32>) -> Result<Tensor> {
        Self::check(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data: TensorData::I32(Arc::new(data)),
        })
    }

    /// A bool tensor; fails if `data` does not match `shape`.
    pub fn bool(shape: Vec<usize>, data: Vec<bool>) -> Result<Tensor> {
        Self::check(&shape, data.len())?;
        Ok(Tensor {
            shape,
            data: TensorData::Bool(Arc::new(data)),
        })
    }

    /// A 1-D i64 tensor (shapes, axes).
    pub fn i64_vec(v: &[i64]) -> Tensor {
        Tensor {
            shape: vec![v.len()],
            data: TensorData::I64(Arc::new(v.to_vec())),
        }
    }

    /// A scalar f32.
    pub fn scalar_f32(v: f32) -> Tensor {
        Tensor {
            shape: vec![],
            data: TensorData::F32(Arc::new(vec![v])),
        }
    }

    /// A zero-filled tensor of the given type.
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Tensor {
        let n = numel(&shape);
        let data = match dtype {
            DType::I64 => TensorData::I64(Arc::new(vec![0; n])),
            DType::I32 => TensorData::I32(Arc::new(vec![0; n])),
            DType::Bool => TensorData::Bool(Arc::new(vec![false; n])),
            _ => TensorData::F32(Arc::new(vec![0.0; n])),
        };
        Tensor { shape, data }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        match &self.data {
            TensorData::F32(_) => DType::F32,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The f32 elements, if this is an f32 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The i64 elements, if this is an i64 tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            TensorData::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Elements converted to f64 (any type).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as u8 as f64).collect(),
        }
    }

    /// Elements converted to i64 (any type; floats truncate).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I64(v) => v.to_vec(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
        }
    }

    /// Builds a tensor of `dtype` from f64 values (used by the evaluator).
    pub fn from_f64(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Tensor {
        let data = match dtype {
            DType::I64 => TensorData::I64(Arc::new(v.iter().map(|&x| x as i64).collect())),
            DType::I32 => TensorData::I32(Arc::new(v.iter().map(|&x| x as i32).collect())),
            DType::Bool => TensorData::Bool(Arc::new(v.iter().map(|&x| x != 0.0).collect())),
            _ => TensorData::F32(Arc::new(v.iter().map(|&x| x as f32).collect())),
        };
        Tensor { shape, data }
    }

    /// Same data, another shape with the same element count.
    pub fn reshaped(&self, shape: Vec<usize>) -> Result<Tensor> {
        Self::check(&shape, self.len())?;
        Ok(Tensor {
            shape,
            data: self.data.clone(),
        })
    }

    /// Raw little-endian bytes of the elements (bool as one byte each).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes().into_owned()
    }

    /// The bytes of [`Tensor::to_bytes`], borrowed from the tensor's buffer
    /// where its elements already are those bytes (every dtype but bool):
    /// no allocation and no copy, e.g. for an input written to a device.
    pub fn bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        match &self.data {
            TensorData::F32(v) => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())),
            TensorData::I64(v) => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())),
            TensorData::I32(v) => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())),
            TensorData::Bool(v) => Cow::Owned(v.iter().map(|&b| b as u8).collect()),
        }
    }

    /// Decodes little-endian bytes into a tensor; fails on a size mismatch.
    pub fn from_bytes(dtype: DType, shape: Vec<usize>, bytes: &[u8]) -> Result<Tensor> {
        let n = numel(&shape);
        if bytes.len() != n * dtype.size() {
            return Err(ModelError::Graph(format!(
                "{dtype} tensor of shape {shape:?} needs {} bytes, got {}",
                n * dtype.size(),
                bytes.len()
            )));
        }
        let data = match dtype {
            DType::F32 => TensorData::F32(Arc::new(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )),
            DType::I64 => TensorData::I64(Arc::new(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )),
            DType::I32 => TensorData::I32(Arc::new(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )),
            DType::Bool => TensorData::Bool(Arc::new(bytes.iter().map(|&b| b != 0).collect())),
            DType::F16 | DType::BF16 => {
                return Err(ModelError::Graph(format!(
                    "{dtype} tensors are not supported yet"
                )))
            }
        };
        Ok(Tensor { shape, data })
    }
}

/// Relative L2 error ‖a − b‖ / ‖b‖ (b is the reference); NaN anywhere gives +inf.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (&x, &y) in a.iter().zip(b) {
        if !x.is_finite() || !y.is_finite() {
            return f64::INFINITY;
        }
        let d = x as f64 - y as f64;
        num += d * d;
        den += (y as f64) * (y as f64);
    }
    if den == 0.0 {
        if num == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (num / den).sqrt()
    }
}
