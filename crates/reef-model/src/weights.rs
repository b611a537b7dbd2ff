//! safetensors weights: encoding named tensors to and from the safetensors
//! format, and reading or replacing the parameters of a [`Graph`] by name.
//!
//! A graph's *parameters* are its f32 initializers of rank ≥ 1 (weights,
//! biases, normalisation statistics, embedding tables); rank-0 f32
//! initializers are scalar constants of the computation (scales, epsilons)
//! and are not parameters. Parameter names are the initializers' value
//! names, which for zoo models are PyTorch `state_dict` keys.

use crate::error::{ModelError, Result};
use crate::graph::{Graph, ValueId};
use crate::tensor::{DType, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A borrowed view of a [`Tensor`] for the safetensors serializer.
struct TensorRef<'a>(&'a Tensor);

impl View for TensorRef<'_> {
    fn dtype(&self) -> Dtype {
        match self.0.dtype() {
            DType::F32 => Dtype::F32,
            DType::I64 => Dtype::I64,
            DType::I32 => Dtype::I32,
            DType::Bool => Dtype::BOOL,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        match &self.0.data {
            TensorData::F32(v) => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())),
            TensorData::I64(v) => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())),
            TensorData::I32(v) => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())),
            TensorData::Bool(v) => Cow::Owned(v.iter().map(|&b| b as u8).collect()),
        }
    }

    fn data_len(&self) -> usize {
        self.0.len() * self.0.dtype().size()
    }
}

/// Encodes named tensors as a safetensors file in memory. Names must be
/// unique; the header carries `{"format": "pt"}` like PyTorch-written files.
pub fn to_safetensors_bytes(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let mut seen = HashSet::new();
    for (name, _) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(ModelError::Weights(format!(
                "tensor '{name}' appears twice"
            )));
        }
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(
        tensors.iter().map(|(n, t)| (n.as_str(), TensorRef(t))),
        Some(meta),
    )
    .map_err(|e| ModelError::Weights(format!("cannot encode safetensors: {e}")))
}

/// Writes named tensors to a safetensors file at `path`.
pub fn save_safetensors(tensors: &[(String, Tensor)], path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = to_safetensors_bytes(tensors)?;
    std::fs::write(path, bytes).map_err(|source| ModelError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Decodes a safetensors file held in memory into named tensors, sorted by
/// name. Supports F32, I64, I32 and BOOL; any other dtype is an error naming
/// the tensor and its dtype.
pub fn load_safetensors(bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| ModelError::Weights(format!("malformed safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.iter() {
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::I64 => DType::I64,
            Dtype::I32 => DType::I32,
            Dtype::BOOL => DType::Bool,
            other => {
                return Err(ModelError::Weights(format!(
                    "tensor '{name}' has dtype {other:?}; only F32, I64, I32 and BOOL are supported"
                )))
            }
        };
        let t = Tensor::from_bytes(dtype, view.shape().to_vec(), view.data())
            .map_err(|e| ModelError::Weights(format!("tensor '{name}': {e}")))?;
        out.push((name.to_string(), t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// True when initializer `v` of `g` is a parameter (f32, rank ≥ 1).
fn is_parameter(g: &Graph, v: ValueId) -> bool {
    g.initializers
        .get(&v)
        .is_some_and(|t| t.dtype() == DType::F32 && !t.shape.is_empty())
}

/// The graph's parameters (f32 initializers of rank ≥ 1) by value name, in
/// value order (the order the model defines them).
pub fn named_weights(g: &Graph) -> Vec<(String, Tensor)> {
    let mut ids: Vec<ValueId> = g
        .initializers
        .keys()
        .copied()
        .filter(|&v| is_parameter(g, v))
        .collect();
    ids.sort_unstable();
    ids.into_iter()
        .map(|v| (g.values[v].name.clone(), g.initializers[&v].clone()))
        .collect()
}

/// Replaces parameters of `g` by name. Every tensor must name an existing
/// parameter and match its dtype (f32) and shape exactly; on any error the
/// graph is left unchanged. Parameters not named in `w` keep their values.
pub fn replace_weights(g: &mut Graph, w: &[(String, Tensor)]) -> Result<()> {
    let by_name: HashMap<&str, ValueId> = g
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| (v.name.as_str(), i))
        .collect();
    let mut targets = Vec::with_capacity(w.len());
    let mut seen = HashSet::new();
    for (name, t) in w {
        let v = *by_name.get(name.as_str()).ok_or_else(|| {
            ModelError::Weights(format!(
                "tensor '{name}' is not a value of model '{}'",
                g.name
            ))
        })?;
        if !is_parameter(g, v) {
            return Err(ModelError::Weights(format!(
                "tensor '{name}' is not a parameter of model '{}'",
                g.name
            )));
        }
        if !seen.insert(v) {
            return Err(ModelError::Weights(format!(
                "tensor '{name}' is given twice"
            )));
        }
        let cur = &g.initializers[&v];
        if t.dtype() != DType::F32 {
            return Err(ModelError::Weights(format!(
                "tensor '{name}' has dtype {}, the parameter is f32",
                t.dtype()
            )));
        }
        if t.shape != cur.shape {
            return Err(ModelError::Weights(format!(
                "tensor '{name}' has shape {:?}, the parameter has shape {:?}",
                t.shape, cur.shape
            )));
        }
        targets.push(v);
    }
    for (v, (_, t)) in targets.into_iter().zip(w) {
        g.initializers.insert(v, t.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::op::Op;
    use rand::{Rng, SeedableRng};

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn round_trip_all_supported_dtypes() {
        let mut r = rng();
        let f: Vec<f32> = (0..24).map(|_| r.random_range(-3.0..3.0)).collect();
        let i: Vec<i64> = (0..6)
            .map(|_| r.random_range(-1_000_000_000_000i64..1_000_000_000_000))
            .collect();
        let j: Vec<i32> = (0..5).map(|_| r.random()).collect();
        let b: Vec<bool> = (0..7).map(|_| r.random()).collect();
        let ts = vec![
            (
                "w.weight".to_string(),
                Tensor::f32(vec![2, 3, 4], f).unwrap(),
            ),
            ("ids".to_string(), Tensor::i64(vec![6], i).unwrap()),
            ("a.int".to_string(), Tensor::i32(vec![5, 1], j).unwrap()),
            ("mask".to_string(), Tensor::bool(vec![7], b).unwrap()),
            ("scalar".to_string(), Tensor::scalar_f32(r.random())),
        ];
        let bytes = to_safetensors_bytes(&ts).unwrap();
        let back = load_safetensors(&bytes).unwrap();
        let mut want = ts.clone();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(back, want);
    }

    #[test]
    fn file_round_trip_and_io_error_names_path() {
        let dir = std::env::temp_dir().join(format!("reef-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let ts = vec![(
            "x".to_string(),
            Tensor::f32(vec![3], vec![1.5, -2.0, 0.25]).unwrap(),
        )];
        save_safetensors(&ts, &path).unwrap();
        assert_eq!(
            load_safetensors(&std::fs::read(&path).unwrap()).unwrap(),
            ts
        );
        let bad = dir.join("missing-dir").join("w.safetensors");
        let e = save_safetensors(&ts, &bad).unwrap_err().to_string();
        assert!(e.contains("missing-dir"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unsupported_dtype_and_garbage_are_errors() {
        let data = vec![0u8; 8];
        let view = safetensors::tensor::TensorView::new(Dtype::F16, vec![4], &data).unwrap();
        let bytes = safetensors::serialize([("half.weight", view)], None).unwrap();
        let e = load_safetensors(&bytes).unwrap_err().to_string();
        assert!(e.contains("half.weight") && e.contains("F16"), "{e}");
        assert!(load_safetensors(b"not a safetensors file").is_err());
        let dup = vec![
            ("a".to_string(), Tensor::scalar_f32(1.0)),
            ("a".to_string(), Tensor::scalar_f32(2.0)),
        ];
        assert!(to_safetensors_bytes(&dup).is_err());
    }

    fn tiny_graph() -> Graph {
        let mut b = GraphBuilder::new("tiny");
        let x = b.input("x", DType::F32, vec![2, 3]).unwrap();
        let w = b
            .initializer("fc.weight", Tensor::f32(vec![4, 3], vec![0.5; 12]).unwrap())
            .unwrap();
        let c = b
            .initializer("fc.bias", Tensor::f32(vec![4], vec![0.1; 4]).unwrap())
            .unwrap();
        let s = b.initializer("scale", Tensor::scalar_f32(2.0)).unwrap();
        let op = Op::Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: true,
        };
        let y = b.node("fc", op, &[x, w, c]).unwrap();
        let z = b.node("mul", Op::Mul, &[y, s]).unwrap();
        b.output(z);
        b.finish().unwrap()
    }

    #[test]
    fn named_weights_lists_parameters_in_definition_order() {
        let g = tiny_graph();
        let names: Vec<String> = named_weights(&g).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["fc.weight", "fc.bias"]);
    }

    #[test]
    fn replace_weights_checks_names_and_shapes() {
        let mut g = tiny_graph();
        let mut r = rng();
        let nw: Vec<f32> = (0..12).map(|_| r.random_range(-1.0..1.0)).collect();
        let w = vec![(
            "fc.weight".to_string(),
            Tensor::f32(vec![4, 3], nw.clone()).unwrap(),
        )];
        replace_weights(&mut g, &w).unwrap();
        let got = named_weights(&g);
        assert_eq!(got[0].1.as_f32().unwrap(), nw.as_slice());

        let bad_shape = vec![(
            "fc.bias".to_string(),
            Tensor::f32(vec![3], vec![0.0; 3]).unwrap(),
        )];
        let e = replace_weights(&mut g, &bad_shape).unwrap_err().to_string();
        assert!(
            e.contains("fc.bias") && e.contains("[3]") && e.contains("[4]"),
            "{e}"
        );
        let unknown = vec![(
            "fc2.weight".to_string(),
            Tensor::f32(vec![1], vec![0.0]).unwrap(),
        )];
        assert!(replace_weights(&mut g, &unknown)
            .unwrap_err()
            .to_string()
            .contains("fc2.weight"));
        let scalar = vec![("scale".to_string(), Tensor::scalar_f32(3.0))];
        assert!(replace_weights(&mut g, &scalar)
            .unwrap_err()
            .to_string()
            .contains("not a parameter"));
        // A failing batch changes nothing.
        let mixed = vec![
            (
                "fc.bias".to_string(),
                Tensor::f32(vec![4], vec![9.0; 4]).unwrap(),
            ),
            (
                "nope".to_string(),
                Tensor::f32(vec![4], vec![9.0; 4]).unwrap(),
            ),
        ];
        assert!(replace_weights(&mut g, &mixed).is_err());
        assert_eq!(named_weights(&g)[1].1.as_f32().unwrap(), &[0.1; 4]);
    }
}
