//! The KServe v2 REST front end (axum): health, metadata, Triton's model
//! configuration, inference (JSON and Triton binary tensors), the
//! model-repository, statistics, system and CUDA shared memory extensions and
//! `/metrics`.

mod body;
mod handlers;
pub mod infer;
mod stats;

use crate::request_error::RequestError;
use crate::state::AppState;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Protocol extensions the HTTP and gRPC endpoints implement.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "cuda_shared_memory",
    "model_configuration",
    "model_repository",
    "statistics",
    "system_shared_memory",
];

/// The HTTP routes over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v2", get(handlers::server_metadata))
        .route("/v2/health/live", get(handlers::live))
        .route("/v2/health/ready", get(handlers::ready))
        .route("/v2/models/{name}", get(handlers::model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(handlers::model_metadata_version),
        )
        .route("/v2/models/{name}/config", get(handlers::model_config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(handlers::model_config_version),
        )
        .route("/v2/models/{name}/ready", get(handlers::model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(handlers::model_ready_version),
        )
        .route("/v2/models/stats", get(stats::all))
        .route("/v2/models/{name}/stats", get(stats::model))
        .route(
            "/v2/models/{name}/versions/{version}/stats",
            get(stats::model_version),
        )
        .route("/v2/models/{name}/infer", post(handlers::infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(handlers::infer_version),
        )
        .route("/v2/repository/index", post(handlers::repository_index))
        .route(
            "/v2/repository/models/{name}/load",
            post(handlers::repository_load),
        )
        .route(
            "/v2/repository/models/{name}/unload",
            post(handlers::repository_unload),
        )
        .route(
            "/v2/systemsharedmemory/status",
            get(handlers::shm_status_all),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/status",
            get(handlers::shm_status),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/register",
            post(handlers::shm_register),
        )
        .route(
            "/v2/systemsharedmemory/unregister",
            post(handlers::shm_unregister_all),
        )
        .route(
            "/v2/systemsharedmemory/region/{name}/unregister",
            post(handlers::shm_unregister),
        )
        .route(
            "/v2/cudasharedmemory/status",
            get(handlers::cuda_shm_status_all),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/status",
            get(handlers::cuda_shm_status),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/register",
            post(handlers::cuda_shm_register),
        )
        .route(
            "/v2/cudasharedmemory/unregister",
            post(handlers::cuda_shm_unregister_all),
        )
        .route(
            "/v2/cudasharedmemory/region/{name}/unregister",
            post(handlers::cuda_shm_unregister),
        )
        .route("/metrics", get(handlers::metrics))
        .fallback(|uri: axum::http::Uri| async move {
            RequestError::not_found(format!("no such endpoint: {uri}"))
        })
        .with_state(state)
}
