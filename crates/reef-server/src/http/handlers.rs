//! HTTP handlers: thin wrappers turning wire formats into calls on
//! [`AppState`] and [`crate::inference`].

use super::body::read_body;
use super::infer::{self, OutputMode};
use crate::admin::{self, load_from_repository, repository_entries, unload, TritonModelConfig};
use crate::inference::{execute, prepare, Outcome};
use crate::request_error::RequestError;
use crate::shm::Kind;
use crate::state::{AppState, MODEL_VERSION, PLATFORM};
use crate::timing::Timing;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use reef_sched::{ModelInfo, TensorInfo};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;

pub(super) type AppStateRef = State<Arc<AppState>>;

/// GET /v2/health/live
pub async fn live() -> Json<Value> {
    Json(json!({ "live": true }))
}

/// GET /v2/health/ready
pub async fn ready(State(state): AppStateRef) -> Response {
    let ready = state.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

/// GET /v2
pub async fn server_metadata() -> Json<Value> {
    Json(json!({
        "name": "reef",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": super::EXTENSIONS,
    }))
}

fn tensor_json(t: &TensorInfo) -> Value {
    json!({ "name": t.name, "datatype": t.dtype.kserve_name(), "shape": t.shape })
}

fn metadata_json(info: &ModelInfo) -> Value {
    json!({
        "name": info.name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORM,
        "inputs": info.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
        "outputs": info.outputs.iter().map(tensor_json).collect::<Vec<_>>(),
    })
}

/// GET /v2/models/{name}
pub async fn model_metadata(
    State(state): AppStateRef,
    Path(name): Path<String>,
) -> Result<Json<Value>, RequestError> {
    Ok(Json(metadata_json(&state.model_version(&name, "")?)))
}

/// GET /v2/models/{name}/versions/{version}
pub async fn model_metadata_version(
    State(state): AppStateRef,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, RequestError> {
    Ok(Json(metadata_json(&state.model_version(&name, &version)?)))
}

/// GET /v2/models/{name}/config (Triton's model configuration, as JSON).
pub async fn model_config(
    State(state): AppStateRef,
    Path(name): Path<String>,
) -> Result<Json<TritonModelConfig>, RequestError> {
    Ok(Json(admin::model_config(&state, &name, "")?))
}

/// GET /v2/models/{name}/versions/{version}/config
pub async fn model_config_version(
    State(state): AppStateRef,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<TritonModelConfig>, RequestError> {
    Ok(Json(admin::model_config(&state, &name, &version)?))
}

fn ready_response(state: &AppState, name: &str, version: &str) -> Result<Response, RequestError> {
    let info = state.model_version(name, version)?;
    if info.ready && state.is_ready() {
        Ok((StatusCode::OK, Json(json!({ "name": name, "ready": true }))).into_response())
    } else {
        Err(RequestError::not_ready(format!(
            "model '{name}' is not ready"
        )))
    }
}

/// GET /v2/models/{name}/ready
pub async fn model_ready(
    State(state): AppStateRef,
    Path(name): Path<String>,
) -> Result<Response, RequestError> {
    ready_response(&state, &name, "")
}

/// GET /v2/models/{name}/versions/{version}/ready
pub async fn model_ready_version(
    State(state): AppStateRef,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, RequestError> {
    ready_response(&state, &name, &version)
}

async fn run_infer(
    state: Arc<AppState>,
    name: String,
    version: String,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let arrival = Instant::now();
    let mut outcome = Outcome::new(&state, arrival);
    let result = infer_inner(
        &state,
        &mut outcome,
        &name,
        &version,
        &headers,
        body,
        arrival,
    )
    .await;
    outcome.finish(&result);
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(model = %name, "inference request failed: {e}");
            e.into_response()
        }
    }
}

async fn infer_inner(
    state: &AppState,
    outcome: &mut Outcome<'_>,
    name: &str,
    version: &str,
    headers: &HeaderMap,
    body: Body,
    arrival: Instant,
) -> Result<Response, RequestError> {
    let info = state.model_version(name, version)?;
    outcome.label(&info, None);
    let bytes = read_body(headers, body, state.max_body_bytes).await?;
    let req = infer::decode(
        headers,
        &bytes,
        &state.shm,
        state.service.host_pool().as_deref(),
    )?;
    drop(bytes);
    outcome.label(&info, req.priority);
    let names: Option<Vec<String>> = req
        .outputs
        .as_ref()
        .map(|o| o.iter().map(|(n, _)| n.clone()).collect());
    let prepared = prepare(
        state,
        info,
        req.inputs,
        names.as_deref(),
        req.priority,
        arrival,
    )?;
    let modes: Vec<(usize, OutputMode)> = match req.outputs {
        None => prepared
            .outputs
            .iter()
            .map(|&i| (i, OutputMode::from_raw(req.binary_default)))
            .collect(),
        Some(o) => prepared
            .outputs
            .iter()
            .zip(o)
            .map(|(&i, (_, mode))| (i, mode))
            .collect(),
    };
    let response = execute(state, &prepared, outcome).await?;
    let timing = req
        .timing
        .then(|| Timing::of_handler(arrival, response.stats.clone()));
    infer::encode(
        &prepared.info,
        req.id.as_deref(),
        &modes,
        &response.outputs,
        timing.as_ref(),
    )
}

/// POST /v2/models/{name}/infer
pub async fn infer(
    State(state): AppStateRef,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(state, name, String::new(), headers, body).await
}

/// POST /v2/models/{name}/versions/{version}/infer
pub async fn infer_version(
    State(state): AppStateRef,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(state, name, version, headers, body).await
}

/// Body of POST /v2/repository/index (all optional).
#[derive(Debug, Default, Deserialize)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

fn parse_optional_json<T: Default + serde::de::DeserializeOwned>(
    bytes: &[u8],
) -> Result<T, RequestError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| RequestError::bad(format!("malformed request JSON: {e}")))
}

/// POST /v2/repository/index
pub async fn repository_index(
    State(state): AppStateRef,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, RequestError> {
    let bytes = read_body(&headers, body, state.max_body_bytes).await?;
    let req: IndexRequest = parse_optional_json(&bytes)?;
    let rows: Vec<Value> = repository_entries(&state, req.ready)
        .into_iter()
        .map(|e| {
            let mut v = json!({ "name": e.name, "version": MODEL_VERSION, "state": e.state });
            if !e.reason.is_empty() {
                v["reason"] = Value::from(e.reason);
            }
            v
        })
        .collect();
    Ok(Json(Value::Array(rows)))
}

/// Reads a request body that may hold JSON (repository calls' parameters,
/// which reef ignores): malformed JSON or an oversized body is an error.
async fn check_optional_json(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), RequestError> {
    let bytes = read_body(headers, body, state.max_body_bytes).await?;
    parse_optional_json::<Option<Value>>(&bytes)?;
    Ok(())
}

/// POST /v2/repository/models/{name}/load (load parameters are ignored).
pub async fn repository_load(
    State(state): AppStateRef,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    check_optional_json(&state, &headers, body).await?;
    load_from_repository(state, name).await?;
    Ok(StatusCode::OK)
}

/// POST /v2/repository/models/{name}/unload
pub async fn repository_unload(
    State(state): AppStateRef,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    check_optional_json(&state, &headers, body).await?;
    unload(state, name).await?;
    Ok(StatusCode::OK)
}

/// GET /metrics (Prometheus text format).
pub async fn metrics(State(state): AppStateRef) -> Result<Response, RequestError> {
    let text = state
        .metrics
        .render()
        .map_err(|e| RequestError::internal(format!("encoding metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// Body of POST /v2/systemsharedmemory/region/{name}/register.
#[derive(Debug, Deserialize)]
struct RegisterRequest {
    key: String,
    #[serde(default)]
    offset: u64,
    byte_size: u64,
}

fn region_status_json(state: &AppState, name: Option<&str>) -> Result<Json<Value>, RequestError> {
    Ok(Json(json!(state.shm.status(name)?)))
}

/// GET /v2/systemsharedmemory/status
pub async fn shm_status_all(State(state): AppStateRef) -> Result<Json<Value>, RequestError> {
    region_status_json(&state, None)
}

/// GET /v2/systemsharedmemory/region/{name}/status
pub async fn shm_status(
    State(state): AppStateRef,
    Path(name): Path<String>,
) -> Result<Json<Value>, RequestError> {
    region_status_json(&state, Some(&name))
}

/// POST /v2/systemsharedmemory/region/{name}/register
pub async fn shm_register(
    State(state): AppStateRef,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    let bytes = read_body(&headers, body, state.max_body_bytes).await?;
    let req: RegisterRequest = serde_json::from_slice(&bytes).map_err(|e| {
        RequestError::bad(format!(
            "malformed shared memory register request (expected {{\"key\": string, \
             \"offset\": integer, \"byte_size\": integer}}): {e}"
        ))
    })?;
    state
        .shm
        .register(&name, &req.key, req.offset, req.byte_size)?;
    Ok(StatusCode::OK)
}

/// Unregisters region `name` of kind `kind` (every region of that kind
/// for `None`).
async fn unregister_regions(
    state: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    kind: Kind,
    name: Option<&str>,
) -> Result<StatusCode, RequestError> {
    check_optional_json(state, headers, body).await?;
    state
        .unregister_regions(kind, name.map(str::to_string))
        .await?;
    Ok(StatusCode::OK)
}

/// POST /v2/systemsharedmemory/unregister (every region)
pub async fn shm_unregister_all(
    State(state): AppStateRef,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    unregister_regions(&state, &headers, body, Kind::System, None).await
}

/// POST /v2/systemsharedmemory/region/{name}/unregister
pub async fn shm_unregister(
    State(state): AppStateRef,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    unregister_regions(&state, &headers, body, Kind::System, Some(&name)).await
}

/// Body of POST /v2/cudasharedmemory/region/{name}/register.
#[derive(Debug, Deserialize)]
struct CudaRegisterRequest {
    raw_handle: Base64Bytes,
    device_id: i64,
    byte_size: u64,
}

/// Binary data in JSON, as Triton writes it: `{"b64": "<base64>"}`.
#[derive(Debug, Deserialize)]
struct Base64Bytes {
    b64: String,
}

/// GET /v2/cudasharedmemory/status
pub async fn cuda_shm_status_all(State(state): AppStateRef) -> Result<Json<Value>, RequestError> {
    Ok(Json(json!(state.shm.cuda_status(None)?)))
}

/// GET /v2/cudasharedmemory/region/{name}/status
pub async fn cuda_shm_status(
    State(state): AppStateRef,
    Path(name): Path<String>,
) -> Result<Json<Value>, RequestError> {
    Ok(Json(json!(state.shm.cuda_status(Some(&name))?)))
}

/// POST /v2/cudasharedmemory/region/{name}/register
pub async fn cuda_shm_register(
    State(state): AppStateRef,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    use base64::Engine as _;
    let bytes = read_body(&headers, body, state.max_body_bytes).await?;
    let req: CudaRegisterRequest = serde_json::from_slice(&bytes).map_err(|e| {
        RequestError::bad(format!(
            "malformed CUDA shared memory register request (expected {{\"raw_handle\": \
             {{\"b64\": string}}, \"device_id\": integer, \"byte_size\": integer}}): {e}"
        ))
    })?;
    let handle = base64::engine::general_purpose::STANDARD
        .decode(req.raw_handle.b64.trim())
        .map_err(|e| {
            RequestError::bad(format!(
                "CUDA shared memory region '{name}': raw_handle.b64 is not base64: {e}"
            ))
        })?;
    state
        .register_cuda_region(name, handle, req.device_id, req.byte_size)
        .await?;
    Ok(StatusCode::OK)
}

/// POST /v2/cudasharedmemory/unregister (every CUDA region)
pub async fn cuda_shm_unregister_all(
    State(state): AppStateRef,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    unregister_regions(&state, &headers, body, Kind::Cuda, None).await
}

/// POST /v2/cudasharedmemory/region/{name}/unregister
pub async fn cuda_shm_unregister(
    State(state): AppStateRef,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, RequestError> {
    unregister_regions(&state, &headers, body, Kind::Cuda, Some(&name)).await
}
