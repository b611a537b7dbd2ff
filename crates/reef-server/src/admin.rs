//! Model administration shared by the HTTP and gRPC front ends: the
//! repository index, load and unload, and Triton's model configuration.

use crate::proto;
use crate::repository::{self, ModelConfig};
use crate::request_error::RequestError;
use crate::state::{AppState, BACKEND, PLATFORM};
use reef_model::DType;
use reef_sched::{ModelInfo, TensorInfo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Key of the model-configuration parameter holding the default priority.
pub const PRIORITY_CONFIG_PARAM: &str = "priority";

/// A model's configuration as Triton reports it: the JSON body of
/// `GET /v2/models/{name}/config` (field names as Triton's
/// `model_config.proto`) and the gRPC `ModelConfig` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TritonModelConfig {
    /// Model name.
    pub name: String,
    /// Always [`PLATFORM`].
    pub platform: &'static str,
    /// Always [`BACKEND`].
    pub backend: &'static str,
    /// Largest batch per request; 0 when the model does not batch or its
    /// limit is unknown (then `dims` include the first dimension).
    pub max_batch_size: i32,
    /// Inputs in the model's order.
    pub input: Vec<ConfigTensor>,
    /// Outputs in the model's order.
    pub output: Vec<ConfigTensor>,
    /// String parameters; `priority` is the model's default priority.
    pub parameters: BTreeMap<String, ConfigParameter>,
}

/// One input or output of a [`TritonModelConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigTensor {
    /// Tensor name.
    pub name: String,
    /// Triton's type name (`TYPE_FP32`, ...).
    pub data_type: &'static str,
    /// Shape without the batch dimension when `max_batch_size > 0`; -1 is variable.
    pub dims: Vec<i64>,
}

/// A model-configuration parameter (Triton's `ModelParameter`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigParameter {
    /// The value.
    pub string_value: String,
}

/// Triton's name of an element type.
pub fn triton_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "TYPE_FP32",
        DType::I64 => "TYPE_INT64",
        DType::I32 => "TYPE_INT32",
        DType::Bool => "TYPE_BOOL",
        DType::F16 => "TYPE_FP16",
        DType::BF16 => "TYPE_BF16",
    }
}

impl TritonModelConfig {
    /// The configuration of `info` with batch limit `max_batch` (when known).
    /// The model batches, in Triton's sense, when the limit is known and
    /// every input and output has a variable (-1) first dimension.
    pub fn new(info: &ModelInfo, max_batch: Option<usize>) -> Self {
        let batches = |t: &TensorInfo| t.shape.first() == Some(&-1);
        let max_batch_size = match max_batch {
            Some(b) if b > 0 && info.inputs.iter().chain(&info.outputs).all(batches) => {
                i32::try_from(b).unwrap_or(i32::MAX)
            }
            _ => 0,
        };
        let skip = usize::from(max_batch_size > 0);
        let tensor = |t: &TensorInfo| ConfigTensor {
            name: t.name.clone(),
            data_type: triton_type(t.dtype),
            dims: t.shape[skip..].to_vec(),
        };
        let parameters = BTreeMap::from([(
            PRIORITY_CONFIG_PARAM.to_string(),
            ConfigParameter {
                string_value: info.default_priority.to_string(),
            },
        )]);
        TritonModelConfig {
            name: info.name.clone(),
            platform: PLATFORM,
            backend: BACKEND,
            max_batch_size,
            input: info.inputs.iter().map(tensor).collect(),
            output: info.outputs.iter().map(tensor).collect(),
            parameters,
        }
    }

    /// The gRPC message (Triton's `inference.ModelConfig`).
    pub fn to_proto(&self) -> proto::ModelConfig {
        let dtype = |t: &ConfigTensor| {
            proto::DataType::from_str_name(t.data_type).unwrap_or(proto::DataType::TypeInvalid)
                as i32
        };
        proto::ModelConfig {
            name: self.name.clone(),
            platform: self.platform.into(),
            backend: self.backend.into(),
            max_batch_size: self.max_batch_size,
            input: self
                .input
                .iter()
                .map(|t| proto::ModelInput {
                    name: t.name.clone(),
                    data_type: dtype(t),
                    format: proto::model_input::Format::None as i32,
                    dims: t.dims.clone(),
                })
                .collect(),
            output: self
                .output
                .iter()
                .map(|t| proto::ModelOutput {
                    name: t.name.clone(),
                    data_type: dtype(t),
                    dims: t.dims.clone(),
                    label_filename: String::new(),
                })
                .collect(),
            parameters: self
                .parameters
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        proto::ModelParameter {
                            string_value: v.string_value.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// The configuration of model `name` at `version` ("" means the latest), or 404.
pub fn model_config(
    state: &AppState,
    name: &str,
    version: &str,
) -> Result<TritonModelConfig, RequestError> {
    let info = state.model_version(name, version)?;
    Ok(TritonModelConfig::new(&info, state.batch_limit(&info.name)))
}

/// One row of the repository index.
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// "READY" or "UNAVAILABLE".
    pub state: &'static str,
    /// Why it is unavailable (empty when ready).
    pub reason: String,
}

/// Models the service holds plus models of the repository not loaded.
pub fn repository_entries(state: &AppState, ready_only: bool) -> Vec<IndexEntry> {
    let mut entries: Vec<IndexEntry> = state
        .service
        .models()
        .into_iter()
        .map(|m| IndexEntry {
            state: if m.ready { "READY" } else { "UNAVAILABLE" },
            reason: if m.ready {
                String::new()
            } else {
                "not ready".into()
            },
            name: m.name,
        })
        .collect();
    if let Some(dir) = &state.repository {
        match repository::model_dirs(dir) {
            Ok(dirs) => {
                for d in dirs {
                    let (name, reason) = match ModelConfig::load(&d) {
                        Ok(c) => (c.name, "unloaded".to_string()),
                        Err(e) => (
                            d.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            e.to_string(),
                        ),
                    };
                    if !entries.iter().any(|e| e.name == name) {
                        entries.push(IndexEntry {
                            name,
                            state: "UNAVAILABLE",
                            reason,
                        });
                    }
                }
            }
            Err(e) => tracing::warn!("model repository index: {e}"),
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if ready_only {
        entries.retain(|e| e.state == "READY");
    }
    entries
}

/// Loads repository model `name` into the service.
pub async fn load_from_repository(state: Arc<AppState>, name: String) -> Result<(), RequestError> {
    let dir = state
        .repository
        .clone()
        .ok_or_else(|| RequestError::bad("no model repository is configured on this server"))?;
    let task_state = state.clone();
    let task_name = name.clone();
    let joined = tokio::task::spawn_blocking(move || -> Result<ModelConfig, RequestError> {
        let config = repository::find_model(&dir, &task_name)
            .map_err(|e| RequestError::bad(e.to_string()))?
            .ok_or_else(|| {
                RequestError::not_found(format!(
                    "model '{task_name}' is not in the repository {}",
                    dir.display()
                ))
            })?;
        repository::load_model(task_state.service.as_ref(), &config).map_err(|e| match e {
            repository::LoadError::Source(e) => RequestError::bad(e.to_string()),
            repository::LoadError::Sched { source, .. } => {
                let mut r = RequestError::from(source);
                r.message = format!("loading model '{task_name}': {}", r.message);
                r
            }
        })?;
        Ok(config)
    })
    .await;
    let config =
        joined.map_err(|e| RequestError::internal(format!("loading model '{name}': {e}")))??;
    state.set_batch_limit(&config.name, Some(config.max_batch));
    tracing::info!(model = %name, "model loaded");
    Ok(())
}

/// Unloads model `name` from the service.
pub async fn unload(state: Arc<AppState>, name: String) -> Result<(), RequestError> {
    let service = state.service.clone();
    let task_name = name.clone();
    tokio::task::spawn_blocking(move || service.unload_model(&task_name))
        .await
        .map_err(|e| RequestError::internal(format!("unloading model '{name}': {e}")))??;
    tracing::info!(model = %name, "model unloaded");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reef_sched::Priority;

    fn info(shapes: &[&[i64]]) -> ModelInfo {
        let t = |i: usize, s: &[i64]| TensorInfo {
            name: format!("t{i}"),
            dtype: if i == 0 { DType::F32 } else { DType::I64 },
            shape: s.to_vec(),
        };
        ModelInfo {
            name: "m".into(),
            default_priority: Priority::Rt,
            inputs: shapes.iter().enumerate().map(|(i, s)| t(i, s)).collect(),
            outputs: vec![t(0, &[-1, 10])],
            ready: true,
        }
    }

    #[test]
    fn batching_model_drops_the_batch_dimension() {
        let c = TritonModelConfig::new(&info(&[&[-1, 3, 8, 8], &[-1, 2]]), Some(16));
        assert_eq!(c.max_batch_size, 16);
        assert_eq!(c.input[0].dims, vec![3, 8, 8]);
        assert_eq!(c.input[0].data_type, "TYPE_FP32");
        assert_eq!(c.input[1].dims, vec![2]);
        assert_eq!(c.input[1].data_type, "TYPE_INT64");
        assert_eq!(c.output[0].dims, vec![10]);
        assert_eq!(c.parameters["priority"].string_value, "rt");
        assert_eq!((c.platform, c.backend), ("reef", "reef"));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["max_batch_size"], 16);
        assert_eq!(json["input"][0]["dims"], serde_json::json!([3, 8, 8]));
        assert_eq!(json["parameters"]["priority"]["string_value"], "rt");
    }

    #[test]
    fn unknown_limit_or_fixed_first_dim_means_no_batching() {
        let c = TritonModelConfig::new(&info(&[&[-1, 4]]), None);
        assert_eq!(c.max_batch_size, 0);
        assert_eq!(c.input[0].dims, vec![-1, 4]);
        let c = TritonModelConfig::new(&info(&[&[1, 4]]), Some(8));
        assert_eq!(c.max_batch_size, 0);
        assert_eq!(c.input[0].dims, vec![1, 4]);
    }

    #[test]
    fn proto_matches_json() {
        let c = TritonModelConfig::new(&info(&[&[-1, 4], &[-1]]), Some(4));
        let p = c.to_proto();
        assert_eq!(p.max_batch_size, 4);
        assert_eq!(p.input[0].data_type, proto::DataType::TypeFp32 as i32);
        assert_eq!(p.input[1].data_type, proto::DataType::TypeInt64 as i32);
        assert_eq!(p.input[1].dims, Vec::<i64>::new());
        assert_eq!(p.output[0].dims, vec![10]);
        assert_eq!(p.parameters["priority"].string_value, "rt");
        assert_eq!(p.backend, "reef");
    }
}
