//! Triton's statistics extension over HTTP:
//! `GET /v2/models[/{name}[/versions/{version}]]/stats`.

use crate::model_stats::{self, DurationStat, ModelStat};
use crate::request_error::RequestError;
use crate::state::MODEL_VERSION;
use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use super::handlers::AppStateRef;

fn duration(d: DurationStat) -> Value {
    json!({ "count": d.count, "ns": d.ns })
}

/// One model's `$model_stat` object.
fn model_json(s: &ModelStat) -> Value {
    let zero = duration(DurationStat::default());
    json!({
        "name": s.name,
        "version": MODEL_VERSION,
        "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count,
        "execution_count": s.execution_count,
        "inference_stats": {
            "success": duration(s.success),
            "fail": duration(s.fail),
            "queue": duration(s.queue),
            "compute_input": duration(s.compute_input),
            "compute_infer": duration(s.compute_infer),
            "compute_output": duration(s.compute_output),
            "cache_hit": zero,
            "cache_miss": zero,
        },
        "batch_stats": s.batches.iter().map(|b| json!({
            "batch_size": b.batch_size,
            "compute_input": duration(b.compute_input),
            "compute_infer": duration(b.compute_infer),
            "compute_output": duration(b.compute_output),
        })).collect::<Vec<_>>(),
        "memory_usage": [],
    })
}

fn answer(
    state: &crate::state::AppState,
    name: &str,
    version: &str,
) -> Result<Json<Value>, RequestError> {
    let stats = model_stats::select(state, name, version)?;
    Ok(Json(json!({
        "model_stats": stats.iter().map(model_json).collect::<Vec<_>>()
    })))
}

/// GET /v2/models/stats: every served model.
pub async fn all(State(state): AppStateRef) -> Result<Json<Value>, RequestError> {
    answer(&state, "", "")
}

/// GET /v2/models/{name}/stats
pub async fn model(
    State(state): AppStateRef,
    Path(name): Path<String>,
) -> Result<Json<Value>, RequestError> {
    answer(&state, &name, "")
}

/// GET /v2/models/{name}/versions/{version}/stats
pub async fn model_version(
    State(state): AppStateRef,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, RequestError> {
    answer(&state, &name, &version)
}
