//! The KServe v2 HTTP inference request and response, with Triton's binary
//! tensor data extension: a JSON header of `Inference-Header-Content-Length`
//! bytes followed by raw tensors (inputs with `parameters.binary_data_size`);
//! outputs come back raw when asked (`parameters.binary_data` on an output,
//! or `binary_data_output` on the request). Inputs and outputs may instead
//! name a system shared memory region (`shared_memory_region`,
//! `shared_memory_byte_size`, `shared_memory_offset`; see [`crate::shm`]):
//! such an input carries no data, and such an output comes back with its
//! name, type, shape and shared memory parameters only.

use crate::inference::{parse_priority, ParamValue, PRIORITY_PARAM};
use crate::request_error::RequestError;
use crate::shm::{self, ShmRegistry, ShmTarget};
use crate::state::MODEL_VERSION;
use crate::tensor_codec::{
    parse_datatype, parse_shape, shape_i64, tensor_from_json, tensor_from_raw_in, tensor_to_json,
};
use crate::timing::{Timing, TIMING_PARAM};
use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use reef_model::Tensor;
use reef_sched::HostPool;
use reef_sched::Input;
use reef_sched::{ModelInfo, Priority};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Header giving the length of the JSON part of a binary request or response.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Debug, Deserialize)]
struct RequestJson {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputJson>,
    #[serde(default)]
    outputs: Option<Vec<OutputJson>>,
}

#[derive(Debug, Deserialize)]
struct InputJson {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct OutputJson {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// How one output comes back.
#[derive(Debug, Clone)]
pub enum OutputMode {
    /// As a JSON `data` array.
    Json,
    /// As Triton binary data after the JSON header.
    Binary,
    /// Written into a shared memory region.
    Shm(ShmTarget),
}

impl OutputMode {
    /// Binary when `raw`, else JSON.
    pub fn from_raw(raw: bool) -> Self {
        if raw {
            OutputMode::Binary
        } else {
            OutputMode::Json
        }
    }
}

/// A decoded HTTP inference request.
#[derive(Debug)]
pub struct HttpInfer {
    /// Client's request id, echoed back.
    pub id: Option<String>,
    /// Inputs by name.
    pub inputs: Vec<(String, Input)>,
    /// Requested outputs and how each comes back; `None` means all.
    pub outputs: Option<Vec<(String, OutputMode)>>,
    /// Default for outputs that do not say whether to return raw data.
    pub binary_default: bool,
    /// Requested priority.
    pub priority: Option<Priority>,
    /// The client asked for the server's timing (`reef_timing`).
    pub timing: bool,
}

fn param(where_: &str, key: &str, v: &Value) -> Result<ParamValue, RequestError> {
    Ok(match v {
        Value::Bool(b) => ParamValue::Bool(*b),
        Value::String(s) => ParamValue::Str(s.clone()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ParamValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ParamValue::Uint(u)
            } else {
                ParamValue::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        other => {
            return Err(RequestError::bad(format!(
                "{where_}: parameter '{key}' must be a boolean, number or string, got {other}"
            )))
        }
    })
}

fn bool_param(
    where_: &str,
    params: &Map<String, Value>,
    key: &str,
) -> Result<Option<bool>, RequestError> {
    match params.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(RequestError::bad(format!(
            "{where_}: parameter '{key}' must be a boolean, got {other}"
        ))),
    }
}

/// Request-level shared memory parameters mean nothing; say where they go.
fn reject_request_shared_memory(params: &Map<String, Value>) -> Result<(), RequestError> {
    if params.keys().any(|k| k.starts_with("shared_memory")) {
        return Err(RequestError::bad(
            "request: shared memory parameters belong on inputs and outputs",
        ));
    }
    Ok(())
}

/// The shared memory target named by a tensor's parameters, if any.
fn shm_target(
    shm: &ShmRegistry,
    where_: &str,
    params: &Map<String, Value>,
) -> Result<Option<ShmTarget>, RequestError> {
    shm.target(where_, |k| {
        params
            .get(k)
            .map(|v| param(where_, k, v).unwrap_or_else(|_| ParamValue::Str(v.to_string())))
    })
}

/// Splits the body into JSON header and binary part per the header length.
fn split_body<'b>(
    headers: &HeaderMap,
    body: &'b [u8],
) -> Result<(&'b [u8], &'b [u8]), RequestError> {
    let Some(v) = headers.get(HEADER_LENGTH) else {
        return Ok((body, &[]));
    };
    let n: usize = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            RequestError::bad(format!("header {HEADER_LENGTH}: {v:?} is not a byte count"))
        })?;
    if n > body.len() {
        return Err(RequestError::bad(format!(
            "header {HEADER_LENGTH} says {n} bytes of JSON but the body has only {}",
            body.len()
        )));
    }
    Ok(body.split_at(n))
}

/// Decodes the request body (JSON, or JSON header plus binary tensors).
pub fn decode(
    headers: &HeaderMap,
    body: &[u8],
    shm: &ShmRegistry,
    pool: Option<&HostPool>,
) -> Result<HttpInfer, RequestError> {
    let (json, mut binary) = split_body(headers, body)?;
    let has_binary_header = headers.contains_key(HEADER_LENGTH);
    let req: RequestJson = serde_json::from_slice(json)
        .map_err(|e| RequestError::bad(format!("malformed inference request JSON: {e}")))?;
    reject_request_shared_memory(&req.parameters)?;
    let priority = match req.parameters.get(PRIORITY_PARAM) {
        Some(v) => parse_priority(&param("request", PRIORITY_PARAM, v)?)?,
        None => None,
    };
    let binary_default =
        bool_param("request", &req.parameters, "binary_data_output")?.unwrap_or(false);
    let timing = bool_param("request", &req.parameters, TIMING_PARAM)?.unwrap_or(false);

    let mut inputs = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        let name = input.name.as_str();
        let where_ = format!("input '{name}'");
        let target = shm_target(shm, &where_, &input.parameters)?;
        let dtype = parse_datatype(name, &input.datatype)?;
        let shape = parse_shape(name, &input.shape)?;
        let size = match input.parameters.get("binary_data_size") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| {
                        RequestError::bad(format!(
                            "{where_}: binary_data_size must be a non-negative integer, got {v}"
                        ))
                    })?,
            ),
        };
        if target.is_some() && (size.is_some() || input.data.is_some()) {
            return Err(RequestError::bad(format!(
                "{where_}: has both a shared memory region and data (`data` or \
                 binary_data_size)"
            )));
        }
        let tensor = match (size, &input.data, target) {
            (None, None, Some(t)) => t.read_input(pool, name, dtype, shape)?,
            (Some(_), Some(_), _) => {
                return Err(RequestError::bad(format!(
                    "{where_}: has both `data` and binary_data_size"
                )))
            }
            (None, None, _) => return Err(RequestError::bad(format!("{where_}: has no `data`"))),
            (None, Some(data), _) => tensor_from_json(name, dtype, shape, data)?.into(),
            (Some(n), None, _) => {
                if !has_binary_header {
                    return Err(RequestError::bad(format!(
                        "{where_}: binary_data_size is set but the request has no {HEADER_LENGTH} header"
                    )));
                }
                if n > binary.len() {
                    return Err(RequestError::bad(format!(
                        "{where_}: binary_data_size is {n} but only {} bytes of binary data remain",
                        binary.len()
                    )));
                }
                let (mine, rest) = binary.split_at(n);
                binary = rest;
                tensor_from_raw_in(pool, name, dtype, shape, mine)?.into()
            }
        };
        inputs.push((input.name.clone(), tensor));
    }
    if !binary.is_empty() {
        return Err(RequestError::bad(format!(
            "{} bytes of binary data follow the JSON header but no input claims them",
            binary.len()
        )));
    }
    let outputs = match &req.outputs {
        None => None,
        Some(outs) => Some(
            outs.iter()
                .map(|o| {
                    let where_ = format!("output '{}'", o.name);
                    if o.parameters.contains_key("classification") {
                        return Err(RequestError::bad(format!(
                            "{where_}: classification is not supported"
                        )));
                    }
                    let raw = bool_param(&where_, &o.parameters, "binary_data")?;
                    if let Some(t) = shm_target(shm, &where_, &o.parameters)? {
                        if raw == Some(true) {
                            return Err(RequestError::bad(format!(
                                "{where_}: has both a shared memory region and binary_data"
                            )));
                        }
                        return Ok((o.name.clone(), OutputMode::Shm(t)));
                    }
                    Ok((
                        o.name.clone(),
                        OutputMode::from_raw(raw.unwrap_or(binary_default)),
                    ))
                })
                .collect::<Result<Vec<_>, RequestError>>()?,
        ),
    };
    Ok(HttpInfer {
        id: req.id,
        inputs,
        outputs,
        binary_default,
        priority,
        timing,
    })
}

/// Encodes the answer: JSON only, or JSON header plus raw outputs; writes
/// outputs bound for shared memory into their regions. `timing` becomes the
/// response's `parameters` when the client asked for it.
pub fn encode(
    info: &ModelInfo,
    id: Option<&str>,
    outputs: &[(usize, OutputMode)],
    tensors: &[Tensor],
    timing: Option<&Timing>,
) -> Result<Response, RequestError> {
    let mut binary: Vec<u8> = Vec::new();
    let mut outs = Vec::with_capacity(outputs.len());
    let mut any_binary = false;
    for (idx, mode) in outputs {
        let t = &tensors[*idx];
        let name = &info.outputs[*idx].name;
        let mut o = Map::new();
        o.insert("name".into(), Value::from(name.clone()));
        o.insert("datatype".into(), Value::from(t.dtype().kserve_name()));
        o.insert("shape".into(), Value::from(shape_i64(&t.shape)));
        match mode {
            OutputMode::Binary => {
                any_binary = true;
                let bytes = t.bytes();
                o.insert(
                    "parameters".into(),
                    serde_json::json!({ "binary_data_size": bytes.len() }),
                );
                binary.extend_from_slice(&bytes);
            }
            OutputMode::Json => {
                o.insert("data".into(), tensor_to_json(t));
            }
            OutputMode::Shm(target) => {
                let written = target.write_tensor(name, t)?;
                let mut p = Map::new();
                p.insert(shm::REGION_PARAM.into(), Value::from(target.region()));
                p.insert(shm::BYTE_SIZE_PARAM.into(), Value::from(written));
                if target.offset() != 0 {
                    p.insert(shm::OFFSET_PARAM.into(), Value::from(target.offset()));
                }
                o.insert("parameters".into(), Value::Object(p));
            }
        }
        outs.push(Value::Object(o));
    }
    let mut head = Map::new();
    head.insert("model_name".into(), Value::from(info.name.clone()));
    head.insert("model_version".into(), Value::from(MODEL_VERSION));
    if let Some(id) = id {
        head.insert("id".into(), Value::from(id));
    }
    if let Some(t) = timing {
        head.insert("parameters".into(), Value::Object(t.to_json()));
    }
    head.insert("outputs".into(), Value::Array(outs));
    let json = serde_json::to_vec(&Value::Object(head))
        .map_err(|e| RequestError::internal(format!("encoding the answer: {e}")))?;
    if !any_binary {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            json,
        )
            .into_response());
    }
    let json_len = json.len();
    let mut body = json;
    body.extend_from_slice(&binary);
    let mut resp = (StatusCode::OK, Bytes::from(body)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(HEADER_LENGTH, HeaderValue::from(json_len));
    Ok(resp)
}
