//! Decoding client tensors (raw little-endian bytes, JSON arrays, protobuf
//! typed contents) into [`Tensor`]s and encoding results back. Every error
//! names the tensor involved.

use crate::proto::InferTensorContents;
use crate::request_error::RequestError;
use bytemuck::Pod;
use prost::bytes::Bytes;
use reef_model::tensor::numel;
use reef_model::{DType, Tensor, TensorData};
use reef_sched::HostPool;
use serde_json::Value;
use std::sync::Arc;

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
    check_byte_size(tensor, dtype, &shape, bytes.len())?;
    let made = match dtype {
        DType::F32 => Tensor::f32(shape, le_elements(bytes, f32::from_le_bytes)),
        DType::I64 => Tensor::i64(shape, le_elements(bytes, i64::from_le_bytes)),
        DType::I32 => Tensor::i32(shape, le_elements(bytes, i32::from_le_bytes)),
        _ => Tensor::from_bytes(dtype, shape, bytes),
    };
    made.map_err(|e| RequestError::bad(format!("tensor '{tensor}': {e}")))
}

/// [`tensor_from_raw`], with an FP32 tensor decoded into a pinned buffer of
/// `pool` where it has one ([`reef_exec::host_pool`]: the device then
/// uploads it without the driver's staging copy); other tensors, and all
/// of them when the pool has no room, as [`tensor_from_raw`].
pub fn tensor_from_raw_in(
    pool: Option<&HostPool>,
    tensor: &str,
    dtype: DType,
    shape: Vec<usize>,
    bytes: &[u8],
) -> Result<Tensor, RequestError> {
    if let (Some(pool), DType::F32) = (pool, dtype) {
        check_byte_size(tensor, dtype, &shape, bytes.len())?;
        let pinned = if cfg!(target_endian = "big") {
            None
        } else if let Ok(aligned) = bytemuck::try_cast_slice::<u8, f32>(bytes) {
            pool.copied(aligned)
        } else {
            pool.filled(bytes.len() / 4, |v| {
                bytemuck::cast_slice_mut::<f32, u8>(v).copy_from_slice(bytes);
                Ok::<(), RequestError>(())
            })
            .transpose()?
        };
        if let Some(buf) = pinned {
            return Tensor::f32_shared(shape, buf)
                .map_err(|e| RequestError::bad(format!("tensor '{tensor}': {e}")));
        }
    }
    tensor_from_raw(tensor, dtype, shape, bytes)
}

/// Checks that a `dtype` tensor of `shape` takes exactly `len` bytes.
fn check_byte_size(
    tensor: &str,
    dtype: DType,
    shape: &[usize],
    len: usize,
) -> Result<(), RequestError> {
    let want = numel(shape).checked_mul(dtype.size());
    if want != Some(len) {
        return Err(RequestError::bad(format!(
            "tensor '{tensor}': {} shape {shape:?} needs {} bytes of data, got {len}",
            dtype.kserve_name(),
            want.map_or_else(|| "too many".to_string(), |w| w.to_string()),
        )));
    }
    Ok(())
}

/// Decodes `len` raw little-endian bytes that `fill` writes into the buffer
/// it is given (shared memory reads): after the same checks as
/// [`tensor_from_raw`], FP32 / INT64 / INT32 tensors on little-endian hosts
/// are filled in place (one copy; FP32 into a pinned buffer of `pool` where
/// it has one); others go through a byte buffer.
pub fn tensor_from_reader(
    pool: Option<&HostPool>,
    tensor: &str,
    dtype: DType,
    shape: Vec<usize>,
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), RequestError>,
) -> Result<Tensor, RequestError> {
    check_byte_size(tensor, dtype, &shape, len)?;
    let n = numel(&shape);
    // FP32 into a pinned buffer where the pool has one (as
    // `tensor_from_raw_in`); the pool calls `fill` only when it has room.
    let mut fill = Some(fill);
    if let (Some(pool), DType::F32, true) = (pool, dtype, cfg!(target_endian = "little")) {
        let made = pool.filled(n, |v| {
            (fill.take().expect("the pool fills once"))(bytemuck::cast_slice_mut(v))
        });
        if let Some(buf) = made {
            return Tensor::f32_shared(shape, buf?)
                .map_err(|e| RequestError::bad(format!("tensor '{tensor}': {e}")));
        }
    }
    let fill = fill.expect("the pool had no room and left `fill` unused");
    let made = match dtype {
        DType::F32 if cfg!(target_endian = "little") => {
            Tensor::f32(shape, filled(tensor, n, fill)?)
        }
        DType::I64 if cfg!(target_endian = "little") => {
            Tensor::i64(shape, filled(tensor, n, fill)?)
        }
        DType::I32 if cfg!(target_endian = "little") => {
            Tensor::i32(shape, filled(tensor, n, fill)?)
        }
        _ => {
            let bytes: Vec<u8> = filled(tensor, len, fill)?;
            return tensor_from_raw(tensor, dtype, shape, &bytes);
        }
    };
    made.map_err(|e| RequestError::bad(format!("tensor '{tensor}': {e}")))
}

/// `n` elements that `fill` writes as bytes. The size comes from the client
/// (no body limit applies to shared memory), so an allocation that fails is
/// the request's error, not an abort.
fn filled<T: Pod>(
    tensor: &str,
    n: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), RequestError>,
) -> Result<Vec<T>, RequestError> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|e| {
        RequestError::bad(format!("tensor '{tensor}': cannot allocate its data: {e}"))
    })?;
    v.resize(n, T::zeroed());
    fill(bytemuck::cast_slice_mut(&mut v))?;
    Ok(v)
}

/// Elements of a little-endian byte buffer whose length is a multiple of
/// `N`, in one pass: a plain copy when the host is little-endian and the
/// buffer happens to be aligned for `T`, else a conversion per element into
/// a vector reserved once, 256 elements at a time. (On the CI box, 600 KB
/// take 26-29 us that way against 34-47 us for the misaligned `memcpy` into
/// a zeroed buffer this replaced, docs/PERF.md session 17; one `collect`
/// over the whole buffer took 230-310 us: the per-piece `extend` is what
/// the compiler turns into a vector loop.) No zeroed allocation: `calloc` of
/// this size maps fresh pages, and the page faults cost more than the copy.
fn le_elements<T: Pod, const N: usize>(bytes: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    if cfg!(target_endian = "little") {
        if let Ok(aligned) = bytemuck::try_cast_slice::<u8, T>(bytes) {
            return aligned.to_vec();
        }
    }
    let mut out: Vec<T> = Vec::with_capacity(bytes.len() / N);
    // Whole elements per piece (a multiple of N), so none straddles two.
    for piece in bytes.chunks(N * 256) {
        out.extend(piece.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            from_le(a)
        }));
    }
    out
}

/// Copies `min(dst.len(), src.len())` bytes from `src` to `dst` in 1 KiB
/// pieces. Each piece is opaque to the optimizer, so the loop stays a loop
/// of small copies instead of being fused back into one large one.
pub fn copy_in_pieces(dst: &mut [u8], src: &[u8]) {
    const PIECE: usize = 1024;
    let n = dst.len().min(src.len());
    for (d, s) in dst[..n].chunks_mut(PIECE).zip(src[..n].chunks(PIECE)) {
        std::hint::black_box(d).copy_from_slice(s);
    }
}

/// Owner of a tensor's element buffer, viewed as bytes.
struct ElementBytes<T: Pod>(Arc<Vec<T>>);

impl<T: Pod> AsRef<[u8]> for ElementBytes<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(self.0.as_slice())
    }
}

fn shared_bytes<T: Pod + Send + Sync>(v: &Arc<Vec<T>>) -> Bytes {
    Bytes::from_owner(ElementBytes(v.clone()))
}

/// A tensor's elements as raw little-endian bytes (gRPC raw contents, Triton
/// binary data). On little-endian hosts the bytes share the tensor's buffer
/// (no copy); BOOL tensors, and every tensor on big-endian hosts, are
/// converted.
pub fn tensor_bytes(t: &Tensor) -> Bytes {
    if cfg!(target_endian = "big") {
        return Bytes::from(t.to_bytes());
    }
    match &t.data {
        TensorData::F32(v) => shared_bytes(v),
        TensorData::I64(v) => shared_bytes(v),
        TensorData::I32(v) => shared_bytes(v),
        TensorData::Bool(_) => Bytes::from(t.to_bytes()),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use reef_model::tensor::rel_l2;

    #[test]
    fn reads_into_the_pool_match_plain_reads_and_failed_reads_give_the_buffer_back() {
        let pool = HostPool::new(Box::new(reef_sched::NoPin), 1 << 20, 0);
        let mut r = rng();
        let src: Vec<u8> = (0..4 * 3000).map(|_| r.random()).collect();
        let read = |p: Option<&HostPool>| {
            tensor_from_reader(p, "x", DType::F32, vec![3, 1000], src.len(), |b| {
                b.copy_from_slice(&src);
                Ok(())
            })
            .expect("read")
        };
        let (plain, pooled) = (read(None), read(Some(&pool)));
        assert_eq!(plain.bytes(), pooled.bytes());
        assert_eq!(pool.buffers(), 1);
        drop(pooled);
        let e = tensor_from_reader(Some(&pool), "x", DType::F32, vec![3000], src.len(), |_| {
            Err(RequestError::bad("the region shrank"))
        })
        .unwrap_err();
        assert!(e.message.contains("shrank"), "{}", e.message);
        // The buffer came back: the next read reuses it.
        let again = read(Some(&pool));
        assert_eq!(again.bytes(), plain.bytes());
        assert_eq!(pool.buffers(), 1);
        // A full pool falls back to ordinary memory with the same result.
        let held: Vec<Tensor> = (0..20).map(|_| read(Some(&pool))).collect();
        assert!(pool.buffers() < 20, "the pool stays within its limit");
        assert!(held.iter().all(|t| t.bytes() == plain.bytes()));
    }

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(0x7e45)
    }

    /// Independent reference: little-endian bytes built element by element.
    fn le_f32(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn raw_f32_round_trips_at_every_alignment() {
        let mut r = rng();
        let v: Vec<f32> = (0..3 * 50 * 7).map(|_| r.random_range(-4.0..4.0)).collect();
        let bytes = le_f32(&v);
        for shift in 0..8 {
            // The tensor's bytes start `shift` bytes into the buffer.
            let mut buf = vec![0xa5u8; shift];
            buf.extend_from_slice(&bytes);
            let t = tensor_from_raw("x", DType::F32, vec![3, 50, 7], &buf[shift..]).unwrap();
            assert_eq!(t.shape, vec![3, 50, 7]);
            let got = t.as_f32().unwrap();
            assert_eq!(rel_l2(got, &v), 0.0, "shift {shift}");
            assert_eq!(tensor_bytes(&t).as_ref(), bytes.as_slice());
        }
    }

    #[test]
    fn raw_integers_and_bools_round_trip() {
        let mut r = rng();
        let a: Vec<i64> = (0..41).map(|_| r.random::<i64>()).collect();
        let b: Vec<i32> = (0..41).map(|_| r.random::<i32>()).collect();
        let c: Vec<bool> = (0..41).map(|_| r.random::<bool>()).collect();
        let ab: Vec<u8> = a.iter().flat_map(|x| x.to_le_bytes()).collect();
        let bb: Vec<u8> = b.iter().flat_map(|x| x.to_le_bytes()).collect();
        let cb: Vec<u8> = c.iter().map(|&x| x as u8).collect();
        for shift in [0usize, 1, 3] {
            let pad = |x: &[u8]| [vec![7u8; shift], x.to_vec()].concat();
            let (pa, pb, pc) = (pad(&ab), pad(&bb), pad(&cb));
            let ta = tensor_from_raw("a", DType::I64, vec![41], &pa[shift..]).unwrap();
            let tb = tensor_from_raw("b", DType::I32, vec![41], &pb[shift..]).unwrap();
            let tc = tensor_from_raw("c", DType::Bool, vec![41], &pc[shift..]).unwrap();
            assert_eq!(ta.as_i64().unwrap(), a.as_slice());
            assert!(tb.data == TensorData::I32(Arc::new(b.clone())));
            assert!(tc.data == TensorData::Bool(Arc::new(c.clone())));
            assert_eq!(tensor_bytes(&ta).as_ref(), ab.as_slice());
            assert_eq!(tensor_bytes(&tb).as_ref(), bb.as_slice());
            assert_eq!(tensor_bytes(&tc).as_ref(), cb.as_slice());
        }
    }

    #[test]
    fn raw_size_mismatch_names_the_tensor() {
        let e = tensor_from_raw("img", DType::F32, vec![2, 3], &[0u8; 23]).unwrap_err();
        assert!(
            e.message.contains("'img'") && e.message.contains("24"),
            "{e:?}"
        );
    }

    #[test]
    fn shared_bytes_outlive_the_tensor() {
        let mut r = rng();
        let v: Vec<f32> = (0..1000).map(|_| r.random_range(-1.0..1.0)).collect();
        let t = Tensor::f32(vec![1, 1000], v.clone()).unwrap();
        let b = tensor_bytes(&t);
        drop(t);
        assert_eq!(b.as_ref(), le_f32(&v).as_slice());
    }
}
