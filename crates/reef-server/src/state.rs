//! State shared by the HTTP and gRPC front ends.

use crate::metrics::Metrics;
use crate::model_stats::ModelStatsRegistry;
use crate::repository::{self, ModelConfig};
use crate::request_error::RequestError;
use crate::shm::{Kind, ShmRegistry};
use reef_sched::{ModelInfo, Service};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// The version every model is served as.
pub const MODEL_VERSION: &str = "1";

/// Platform name reported in model metadata and configuration.
pub const PLATFORM: &str = "reef";

/// Backend name reported in model configuration.
pub const BACKEND: &str = "reef";

/// Everything a request handler needs.
pub struct AppState {
    /// The scheduler.
    pub service: Arc<dyn Service>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Per-model statistics (Triton's statistics extension; also exported
    /// as metrics).
    pub model_stats: Arc<ModelStatsRegistry>,
    /// Model repository folder, if any.
    pub repository: Option<PathBuf>,
    /// Largest request body / message, bytes.
    pub max_body_bytes: usize,
    /// Registered system shared memory regions.
    pub shm: ShmRegistry,
    /// Largest batch per model, for models whose config the server has read.
    batch_limits: RwLock<HashMap<String, usize>>,
    /// Largest batch of the other models, when known.
    default_batch_limit: Option<usize>,
    /// Turns true when shutdown begins: readiness reads it, and long-lived
    /// calls (inference streams) watch it to wind down.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    /// New state over `service`; reads the repository's configs (if any) for
    /// batch limits, skipping invalid ones.
    pub fn new(
        service: Arc<dyn Service>,
        repository: Option<PathBuf>,
        max_body_bytes: usize,
    ) -> Self {
        let mut limits = HashMap::new();
        if let Some(dir) = &repository {
            match repository::model_dirs(dir) {
                Ok(dirs) => {
                    for d in dirs {
                        match ModelConfig::load(&d) {
                            Ok(c) => {
                                limits.insert(c.name, c.max_batch);
                            }
                            Err(e) => tracing::warn!("model repository: {e}"),
                        }
                    }
                }
                Err(e) => tracing::warn!("model repository: {e}"),
            }
        }
        let model_stats = Arc::new(ModelStatsRegistry::default());
        AppState {
            metrics: Metrics::new(service.clone(), model_stats.clone()),
            model_stats,
            service,
            repository,
            max_body_bytes,
            shm: ShmRegistry::new(false),
            batch_limits: RwLock::new(limits),
            default_batch_limit: None,
            shutdown: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Sets the batch limit reported for models without their own.
    pub fn with_default_batch_limit(mut self, limit: Option<usize>) -> Self {
        self.default_batch_limit = limit;
        self
    }

    /// Lets clients use system shared memory (`allow` true) or not.
    pub fn with_client_shm(mut self, allow: bool) -> Self {
        self.shm = ShmRegistry::new(allow);
        self
    }

    /// True once the service has started, until shutdown begins.
    pub fn is_ready(&self) -> bool {
        !self.shutting_down() && self.service.ready()
    }

    /// The 503 / UNAVAILABLE answer while [`AppState::is_ready`] is false:
    /// the server is still starting (its device being prepared) or is
    /// shutting down.
    pub fn not_ready_error(&self) -> RequestError {
        if !self.shutting_down() {
            RequestError::not_ready("the server is starting: its device is being prepared")
        } else {
            RequestError::not_ready("server is shutting down")
        }
    }

    /// Marks the server as shutting down (readiness turns false, new
    /// inference requests get 503 / UNAVAILABLE).
    pub fn set_not_ready(&self) {
        self.shutdown.send_replace(true);
    }

    fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that sees `true` once shutdown has begun.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The model called `name`, or 404 (503 while the service is starting:
    /// no model is known yet).
    pub fn model(&self, name: &str) -> Result<ModelInfo, RequestError> {
        if !self.service.ready() {
            return Err(self.not_ready_error());
        }
        self.service
            .models()
            .into_iter()
            .find(|m| m.name == name)
            .ok_or_else(|| RequestError::unknown_model(name))
    }

    /// The model called `name` at `version` ("" means the latest), or 404.
    pub fn model_version(&self, name: &str, version: &str) -> Result<ModelInfo, RequestError> {
        let info = self.model(name)?;
        if version.is_empty() || version == MODEL_VERSION {
            Ok(info)
        } else {
            Err(RequestError::not_found(format!(
                "model '{name}' has no version '{version}' (reef serves version {MODEL_VERSION} only)"
            )))
        }
    }

    /// Largest batch of `model`, when known (its own, else the default).
    pub fn batch_limit(&self, model: &str) -> Option<usize> {
        self.batch_limits
            .read()
            .ok()
            .and_then(|m| m.get(model).copied())
            .or(self.default_batch_limit)
    }

    /// Records (or forgets, with `None`) the batch limit of `model`.
    pub fn set_batch_limit(&self, model: &str, limit: Option<usize>) {
        if let Ok(mut m) = self.batch_limits.write() {
            match limit {
                Some(l) => m.insert(model.to_string(), l),
                None => m.remove(model),
            };
        }
    }
}

/// Shared memory calls that map or unmap device memory, run on a blocking
/// thread: `cuIpcOpenMemHandle` took 10-25 ms on the H100 hosts, which
/// must not stall a front-end worker (and the requests it serves).
impl AppState {
    /// [`ShmRegistry::register_cuda`] with this state's service.
    pub async fn register_cuda_region(
        self: &Arc<Self>,
        name: String,
        raw_handle: Vec<u8>,
        device_id: i64,
        byte_size: u64,
    ) -> Result<(), RequestError> {
        let state = self.clone();
        blocking(move || {
            state.shm.register_cuda(
                state.service.as_ref(),
                &name,
                &raw_handle,
                device_id,
                byte_size,
            )
        })
        .await
    }

    /// [`ShmRegistry::unregister`] (unmapping CUDA regions nothing else
    /// holds).
    pub async fn unregister_regions(
        self: &Arc<Self>,
        kind: Kind,
        name: Option<String>,
    ) -> Result<(), RequestError> {
        let state = self.clone();
        blocking(move || state.shm.unregister(kind, name.as_deref())).await
    }
}

async fn blocking(
    f: impl FnOnce() -> Result<(), RequestError> + Send + 'static,
) -> Result<(), RequestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RequestError::internal(format!("shared memory call failed: {e}")))?
}
