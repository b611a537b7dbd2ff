//! The model repository: one folder per model, each holding a `config.toml`:
//!
//! ```toml
//! source = "zoo:resnet50"     # a built-in zoo model, or
//! # onnx = "model.onnx"       # an ONNX file, relative to the model folder
//! priority = "be"             # default priority of requests ("rt" or "be"; default "be")
//! max_batch = 8               # largest batch clients may send (default 8)
//! # name = "resnet"           # name clients use (default: the folder name)
//! # dims = { sequence = 128 } # ONNX only: values of named dynamic input
//! #                           # dimensions past dimension 0 (the batch)
//! ```
//!
//! `source` also takes `"onnx:model.onnx"`, and `zoo = "resnet50"` is the same
//! as `source = "zoo:resnet50"`. This module is the only one that touches the
//! zoo and the ONNX importer.

use crate::error::ServerError;
use reef_sched::{GraphSource, Priority, SchedError, Service};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the per-model configuration file.
pub const CONFIG_FILE: &str = "config.toml";

/// Default largest batch size of a model.
pub const DEFAULT_MAX_BATCH: usize = 8;

/// Where a model's graph comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A built-in zoo model, by zoo name.
    Zoo(String),
    /// An ONNX file (absolute, resolved against the model folder).
    Onnx(PathBuf),
}

/// One model of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The name clients use.
    pub name: String,
    /// Where the graph comes from.
    pub source: ModelSource,
    /// Priority of requests that do not name one.
    pub priority: Priority,
    /// Largest batch clients may send.
    pub max_batch: usize,
    /// Values of the ONNX file's named dynamic input dimensions (past
    /// dimension 0, the batch); empty for zoo models.
    pub dims: reef_onnx::DimValues,
}

/// The file as written (every field optional, unknown fields rejected).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    source: Option<String>,
    zoo: Option<String>,
    onnx: Option<String>,
    priority: Option<String>,
    max_batch: Option<i64>,
    dims: Option<std::collections::BTreeMap<String, i64>>,
}

/// Largest value a named dimension may be given.
const DIM_LIMIT: i64 = 1 << 20;

fn config_error(file: &Path, field: &str, reason: impl Into<String>) -> ServerError {
    ServerError::Config {
        file: file.to_path_buf(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn zoo_source(file: &Path, field: &str, name: &str) -> Result<ModelSource, ServerError> {
    if reef_zoo::names().contains(&name) {
        Ok(ModelSource::Zoo(name.to_string()))
    } else {
        Err(config_error(
            file,
            field,
            format!(
                "unknown zoo model '{name}' (known: {})",
                reef_zoo::names().join(", ")
            ),
        ))
    }
}

fn onnx_source(
    file: &Path,
    dir: &Path,
    field: &str,
    rel: &str,
) -> Result<ModelSource, ServerError> {
    let path = dir.join(rel);
    if path.is_file() {
        Ok(ModelSource::Onnx(path))
    } else {
        Err(config_error(
            file,
            field,
            format!("ONNX file {} does not exist", path.display()),
        ))
    }
}

impl ModelConfig {
    /// Parses `<dir>/config.toml`; `dir`'s last component is the default name.
    pub fn load(dir: &Path) -> Result<ModelConfig, ServerError> {
        let file = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&file).map_err(|source| ServerError::Io {
            path: file.clone(),
            source,
        })?;
        Self::parse(&text, dir, &file)
    }

    /// Parses config text of the model in `dir` (`file` is only used in errors).
    pub fn parse(text: &str, dir: &Path, file: &Path) -> Result<ModelConfig, ServerError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // toml's message names the key and the line.
            config_error(file, "-", e.to_string().trim_end().replace('\n', " "))
        })?;
        let name = match raw.name {
            Some(n) if n.trim().is_empty() => return Err(config_error(file, "name", "is empty")),
            Some(n) => n,
            None => dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    config_error(file, "name", "missing and the folder name is not UTF-8")
                })?,
        };
        let given = [raw.source.is_some(), raw.zoo.is_some(), raw.onnx.is_some()];
        if given.iter().filter(|&&g| g).count() != 1 {
            return Err(config_error(
                file,
                "source",
                "give exactly one of `source = \"zoo:NAME\"`, `zoo = \"NAME\"` or `onnx = \"FILE\"`",
            ));
        }
        let source = if let Some(s) = &raw.source {
            if let Some(z) = s.strip_prefix("zoo:") {
                zoo_source(file, "source", z)?
            } else if let Some(o) = s.strip_prefix("onnx:") {
                onnx_source(file, dir, "source", o)?
            } else {
                return Err(config_error(
                    file,
                    "source",
                    format!("'{s}' must start with 'zoo:' or 'onnx:'"),
                ));
            }
        } else if let Some(z) = &raw.zoo {
            zoo_source(file, "zoo", z)?
        } else {
            let o = raw.onnx.as_deref().unwrap_or_default();
            onnx_source(file, dir, "onnx", o)?
        };
        let priority = match &raw.priority {
            None => Priority::Be,
            Some(p) => p
                .parse()
                .map_err(|e: String| config_error(file, "priority", e))?,
        };
        let max_batch = match raw.max_batch {
            None => DEFAULT_MAX_BATCH,
            Some(b) if b >= 1 => usize::try_from(b)
                .map_err(|_| config_error(file, "max_batch", format!("{b} is too large")))?,
            Some(b) => {
                return Err(config_error(
                    file,
                    "max_batch",
                    format!("must be at least 1, got {b}"),
                ))
            }
        };
        let mut dims = reef_onnx::DimValues::new();
        for (k, &v) in raw.dims.iter().flatten() {
            if matches!(source, ModelSource::Zoo(_)) {
                return Err(config_error(file, "dims", "applies to ONNX models only"));
            }
            if !(1..=DIM_LIMIT).contains(&v) {
                return Err(config_error(
                    file,
                    "dims",
                    format!("'{k}' must be between 1 and {DIM_LIMIT}, got {v}"),
                ));
            }
            dims.insert(k.clone(), v as usize);
        }
        Ok(ModelConfig {
            name,
            source,
            priority,
            max_batch,
            dims,
        })
    }

    /// A [`GraphSource`] building this model for a batch size (1..=max_batch).
    /// ONNX files are read here, once; the import runs per batch size.
    pub fn graph_source(&self) -> Result<GraphSource, ServerError> {
        let max = self.max_batch;
        let model = self.name.clone();
        let check = move |batch: usize| -> Result<(), String> {
            if batch == 0 || batch > max {
                Err(format!(
                    "model '{model}': batch {batch} is outside 1..={max}"
                ))
            } else {
                Ok(())
            }
        };
        Ok(match &self.source {
            ModelSource::Zoo(zoo) => {
                let zoo = zoo.clone();
                Arc::new(move |batch| {
                    check(batch)?;
                    reef_zoo::build(&zoo, batch, 0).map_err(|e| e.to_string())
                })
            }
            ModelSource::Onnx(path) => {
                let bytes = std::fs::read(path).map_err(|source| ServerError::Io {
                    path: path.clone(),
                    source,
                })?;
                let bytes = Arc::new(bytes);
                let path = path.clone();
                let dims = self.dims.clone();
                Arc::new(move |batch| {
                    check(batch)?;
                    reef_onnx::import_with_dims(&bytes, Some(batch), &dims)
                        .map_err(|e| format!("{}: {e}", path.display()))
                })
            }
        })
    }
}

/// Model folders of a repository (sub-folders holding a config.toml), sorted.
pub fn model_dirs(dir: &Path) -> Result<Vec<PathBuf>, ServerError> {
    let io = |source| ServerError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() && path.join(CONFIG_FILE).is_file() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// Every model of a repository, parsed; fails on the first bad config or on
/// two models with the same name.
pub fn scan_repository(dir: &Path) -> Result<Vec<ModelConfig>, ServerError> {
    let mut out: Vec<ModelConfig> = Vec::new();
    for d in model_dirs(dir)? {
        let config = ModelConfig::load(&d)?;
        if out.iter().any(|c| c.name == config.name) {
            return Err(config_error(
                &d.join(CONFIG_FILE),
                "name",
                format!(
                    "model name '{}' is used twice in {}",
                    config.name,
                    dir.display()
                ),
            ));
        }
        out.push(config);
    }
    Ok(out)
}

/// Finds model `name` in a repository: the folder of that name first (its
/// config errors are returned), then any folder whose config names it
/// (other folders' config errors are skipped). `Ok(None)` when none does.
pub fn find_model(dir: &Path, name: &str) -> Result<Option<ModelConfig>, ServerError> {
    let own = dir.join(name);
    if !name.contains(['/', '\\']) && name != ".." && own.join(CONFIG_FILE).is_file() {
        let config = ModelConfig::load(&own)?;
        if config.name == name {
            return Ok(Some(config));
        }
    }
    for d in model_dirs(dir)? {
        match ModelConfig::load(&d) {
            Ok(config) if config.name == name => return Ok(Some(config)),
            Ok(_) => {}
            Err(e) => tracing::debug!("skipping while looking for '{name}': {e}"),
        }
    }
    Ok(None)
}

/// Why loading a configured model failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The graph source could not be made (ONNX file unreadable).
    #[error(transparent)]
    Source(#[from] ServerError),
    /// The scheduler refused the model.
    #[error("loading model '{model}': {source}")]
    Sched {
        /// Model name.
        model: String,
        /// Scheduler error.
        source: SchedError,
    },
}

/// Loads one configured model into `service` (blocking: the scheduler may compile).
pub fn load_model(service: &dyn Service, config: &ModelConfig) -> Result<(), LoadError> {
    let source = config.graph_source()?;
    service
        .load_model(&config.name, source, config.priority)
        .map_err(|source| LoadError::Sched {
            model: config.name.clone(),
            source,
        })
}
