//! The calls the benchmark's remote client makes to a KServe v2 server, over
//! gRPC or over HTTP (the REST protocol with Triton's binary tensor
//! extension), behind one interface: model metadata, shared memory
//! registration, and inference described without either protocol's
//! message types ([`Call`], [`Reply`]).

use crate::http_client::HttpClient;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use reef_model::{DType, Tensor};
use reef_sched::{Priority, SchedError, TensorInfo};
use reef_server::grpc_codec;
use reef_server::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use reef_server::tensor_codec;
use reef_server::timing::{Timing, TIMING_PARAM};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tonic::transport::Channel;

/// The protocol a remote client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// KServe v2 gRPC (`ModelInfer`, `raw_input_contents`).
    #[default]
    Grpc,
    /// KServe v2 HTTP/REST with Triton's binary tensors, over HTTP/1.1.
    Http,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        })
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "grpc" => Ok(Protocol::Grpc),
            "http" => Ok(Protocol::Http),
            other => Err(format!("unknown protocol '{other}' (grpc or http)")),
        }
    }
}

/// A tensor's place in a registered shared memory region.
#[derive(Debug, Clone)]
pub(crate) struct ShmPlace {
    pub region: String,
    pub offset: u64,
    pub byte_size: u64,
}

/// Where an input's data travels.
pub(crate) enum Data {
    /// In the message (gRPC `raw_input_contents`, HTTP binary data).
    Inline(Tensor),
    /// In shared memory, already written there.
    Shm(ShmPlace),
}

/// One input of a [`Call`].
pub(crate) struct CallInput {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// One inference request.
pub(crate) struct Call {
    pub model: String,
    pub inputs: Vec<CallInput>,
    /// Outputs to write into shared memory, by name; empty: every output,
    /// in the answer.
    pub outputs: Vec<(String, ShmPlace)>,
    pub priority: Option<Priority>,
    /// Ask for the server's [`Timing`].
    pub timing: bool,
}

/// One output of a [`Reply`]: what it is, and its bytes when they came in
/// the answer (not through shared memory).
pub(crate) struct ReplyOutput {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub raw: Option<bytes::Bytes>,
}

impl ReplyOutput {
    /// The output as a tensor from the bytes in the answer.
    pub fn tensor(&self) -> Result<Tensor, SchedError> {
        let raw = self.raw.as_ref().ok_or_else(|| {
            SchedError::Internal(format!("output '{}' came without data", self.name))
        })?;
        tensor_codec::tensor_from_raw(&self.name, self.dtype, self.shape.clone(), raw)
            .map_err(|e| SchedError::Internal(e.message))
    }
}

/// The answer to a [`Call`].
pub(crate) struct Reply {
    pub outputs: Vec<ReplyOutput>,
    pub timing: Option<Timing>,
}

/// A connection to the server: a gRPC channel, or an HTTP client.
#[derive(Clone)]
pub(crate) enum Wire {
    Grpc(GrpcInferenceServiceClient<Channel>),
    Http(Arc<HttpClient>),
}

fn internal(what: &str, e: impl std::fmt::Display) -> SchedError {
    SchedError::Internal(format!("{what}: {e}"))
}

fn grpc_status(s: tonic::Status) -> SchedError {
    use tonic::Code;
    let m = s.message().to_string();
    match s.code() {
        Code::NotFound => SchedError::UnknownModel(m),
        Code::InvalidArgument => SchedError::InvalidInput(m),
        Code::Unavailable => SchedError::Overloaded(m),
        Code::Cancelled => SchedError::Cancelled(m),
        _ => SchedError::Internal(format!("{:?}: {m}", s.code())),
    }
}

/// An HTTP error answer as the scheduler's error, with the server's message
/// (its JSON `error`, else the body).
pub(crate) fn http_status(status: StatusCode, body: &[u8]) -> SchedError {
    let m = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    match status.as_u16() {
        404 => SchedError::UnknownModel(m),
        400 => SchedError::InvalidInput(m),
        429 | 503 => SchedError::Overloaded(m),
        499 => SchedError::Cancelled(m),
        _ => SchedError::Internal(format!("HTTP {status}: {m}")),
    }
}

impl Wire {
    /// Connects to `url` (`http://HOST:PORT`, or `unix:PATH` for the
    /// server's Unix domain socket of that protocol). HTTP connections are
    /// made on first use, kept alive and reused (one per request in
    /// flight; [`HttpClient`]).
    pub async fn connect(url: &str, protocol: Protocol) -> Result<Wire, SchedError> {
        match protocol {
            Protocol::Grpc => reef_server::grpc_client(url)
                .await
                .map(Wire::Grpc)
                .map_err(|e| internal(&format!("connecting to {url}"), e)),
            Protocol::Http => HttpClient::new(url)
                .map(|c| Wire::Http(Arc::new(c)))
                .map_err(|e| SchedError::InvalidInput(e.to_string())),
        }
    }

    /// POSTs `body` (JSON) to `path`; the answer's JSON (null for none).
    async fn post_json(&self, path: &str, body: Value) -> Result<Value, SchedError> {
        let Wire::Http(client) = self else {
            return Err(SchedError::Internal("not an HTTP connection".into()));
        };
        let what = format!("POST {path}");
        let req = Exchange {
            method: Method::POST,
            path,
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: Bytes::from(body.to_string()),
        };
        let (_, bytes) = exchange(client, req, &what).await?;
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| internal(&format!("{what}: answer"), e))
    }

    /// The model's input and output tensors.
    pub async fn metadata(
        &self,
        model: &str,
    ) -> Result<(Vec<TensorInfo>, Vec<TensorInfo>), SchedError> {
        let info =
            |name: &str, datatype: &str, shape: Vec<i64>| -> Result<TensorInfo, SchedError> {
                Ok(TensorInfo {
                    name: name.to_string(),
                    dtype: DType::from_kserve(datatype).ok_or_else(|| {
                        SchedError::Internal(format!(
                            "model '{model}': tensor '{name}' has an unknown datatype {datatype}"
                        ))
                    })?,
                    shape,
                })
            };
        match self {
            Wire::Grpc(c) => {
                let meta = c
                    .clone()
                    .model_metadata(proto::ModelMetadataRequest {
                        name: model.to_string(),
                        version: String::new(),
                    })
                    .await
                    .map_err(grpc_status)?
                    .into_inner();
                let conv = |ts: &[proto::model_metadata_response::TensorMetadata]| {
                    ts.iter()
                        .map(|t| info(&t.name, &t.datatype, t.shape.clone()))
                        .collect::<Result<Vec<_>, _>>()
                };
                Ok((conv(&meta.inputs)?, conv(&meta.outputs)?))
            }
            Wire::Http(client) => {
                let path = format!("/v2/models/{model}");
                let what = format!("GET {path}");
                let req = Exchange {
                    method: Method::GET,
                    path: &path,
                    headers: vec![],
                    body: Bytes::new(),
                };
                let (_, bytes) = exchange(client, req, &what).await?;
                let meta: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| internal(&format!("{what}: answer"), e))?;
                let conv = |key: &str| -> Result<Vec<TensorInfo>, SchedError> {
                    let ts = meta[key].as_array().ok_or_else(|| {
                        SchedError::Internal(format!("GET {path}: no '{key}' list"))
                    })?;
                    ts.iter()
                        .map(|t| {
                            let shape = t["shape"]
                                .as_array()
                                .map(|s| s.iter().filter_map(Value::as_i64).collect())
                                .unwrap_or_default();
                            info(
                                t["name"].as_str().unwrap_or_default(),
                                t["datatype"].as_str().unwrap_or_default(),
                                shape,
                            )
                        })
                        .collect()
                };
                Ok((conv("inputs")?, conv("outputs")?))
            }
        }
    }

    /// Registers the system shared memory object `key` (`byte_size` bytes)
    /// as region `name`.
    pub async fn register_system(
        &self,
        name: &str,
        key: &str,
        byte_size: u64,
    ) -> Result<(), SchedError> {
        match self {
            Wire::Grpc(c) => c
                .clone()
                .system_shared_memory_register(proto::SystemSharedMemoryRegisterRequest {
                    name: name.to_string(),
                    key: key.to_string(),
                    offset: 0,
                    byte_size,
                })
                .await
                .map(drop)
                .map_err(grpc_status),
            Wire::Http(_) => self
                .post_json(
                    &format!("/v2/systemsharedmemory/region/{name}/register"),
                    json!({"key": key, "offset": 0, "byte_size": byte_size}),
                )
                .await
                .map(drop),
        }
    }

    /// Registers the device allocation with CUDA IPC handle `handle` on GPU
    /// `device_id` (`byte_size` bytes) as region `name`.
    pub async fn register_cuda(
        &self,
        name: &str,
        handle: Vec<u8>,
        device_id: i64,
        byte_size: u64,
    ) -> Result<(), SchedError> {
        match self {
            Wire::Grpc(c) => c
                .clone()
                .cuda_shared_memory_register(proto::CudaSharedMemoryRegisterRequest {
                    name: name.to_string(),
                    raw_handle: handle,
                    device_id,
                    byte_size,
                })
                .await
                .map(drop)
                .map_err(grpc_status),
            Wire::Http(_) => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::STANDARD.encode(&handle);
                self.post_json(
                    &format!("/v2/cudasharedmemory/region/{name}/register"),
                    json!({"raw_handle": {"b64": b64}, "device_id": device_id, "byte_size": byte_size}),
                )
                .await
                .map(drop)
            }
        }
    }

    /// Unregisters region `name` (CUDA shared memory when `cuda`, else
    /// system).
    pub async fn unregister(&self, name: &str, cuda: bool) -> Result<(), SchedError> {
        match (self, cuda) {
            (Wire::Grpc(c), false) => c
                .clone()
                .system_shared_memory_unregister(proto::SystemSharedMemoryUnregisterRequest {
                    name: name.to_string(),
                })
                .await
                .map(drop)
                .map_err(grpc_status),
            (Wire::Grpc(c), true) => c
                .clone()
                .cuda_shared_memory_unregister(proto::CudaSharedMemoryUnregisterRequest {
                    name: name.to_string(),
                })
                .await
                .map(drop)
                .map_err(grpc_status),
            (Wire::Http(_), cuda) => {
                let kind = if cuda { "cuda" } else { "system" };
                self.post_json(
                    &format!("/v2/{kind}sharedmemory/region/{name}/unregister"),
                    Value::Null,
                )
                .await
                .map(drop)
            }
        }
    }

    /// Runs one inference.
    pub async fn infer(&self, call: Call) -> Result<Reply, SchedError> {
        match self {
            Wire::Grpc(c) => {
                let resp = c
                    .clone()
                    .model_infer(grpc_request(call))
                    .await
                    .map_err(grpc_status)?
                    .into_inner();
                grpc_reply(resp)
            }
            Wire::Http(client) => {
                let path = format!("/v2/models/{}/infer", call.model);
                let (body, json_len) = http_request(&call)?;
                let headers = match json_len {
                    Some(n) => vec![
                        (
                            HeaderName::from_static(reef_server::http::infer::HEADER_LENGTH),
                            HeaderValue::from(n),
                        ),
                        (
                            CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        ),
                    ],
                    None => vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                };
                let req = Exchange {
                    method: Method::POST,
                    path: &path,
                    headers,
                    body: Bytes::from(body),
                };
                let (json_len, bytes) = exchange(client, req, &format!("POST {path}")).await?;
                http_reply(bytes, json_len)
            }
        }
    }
}

/// One HTTP request of the client.
struct Exchange<'a> {
    method: Method,
    path: &'a str,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

/// Sends `req` (`what` names it in errors): the answer's JSON header
/// length (Triton's binary data) and its body, or the server's error.
async fn exchange(
    client: &HttpClient,
    req: Exchange<'_>,
    what: &str,
) -> Result<(Option<usize>, Bytes), SchedError> {
    let a = client
        .send(req.method, req.path, &req.headers, req.body)
        .await
        .map_err(|e| internal(what, e))?;
    if !a.status.is_success() {
        return Err(http_status(a.status, &a.body));
    }
    let json_len = a
        .headers
        .get(reef_server::http::infer::HEADER_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    Ok((json_len, a.body))
}

/// The gRPC ModelInfer request for `call`.
fn grpc_request(call: Call) -> proto::ModelInferRequest {
    use proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
    let mut raw = vec![];
    // The model and priority; the inputs follow.
    let mut msg = grpc_codec::infer_request(&call.model, &[], &[], call.priority);
    msg.inputs = call
        .inputs
        .into_iter()
        .map(|i| {
            let parameters = match i.data {
                Data::Inline(t) => {
                    raw.push(tensor_codec::tensor_bytes(&t));
                    Default::default()
                }
                Data::Shm(p) => grpc_codec::shm_params(&p.region, p.byte_size, p.offset),
            };
            InferInputTensor {
                name: i.name,
                datatype: i.dtype.kserve_name().to_string(),
                shape: tensor_codec::shape_i64(&i.shape),
                parameters,
                contents: None,
            }
        })
        .collect();
    msg.raw_input_contents = raw;
    msg.outputs = call
        .outputs
        .into_iter()
        .map(|(name, p)| InferRequestedOutputTensor {
            name,
            parameters: grpc_codec::shm_params(&p.region, p.byte_size, p.offset),
        })
        .collect();
    if call.timing {
        reef_server::timing::ask(&mut msg.parameters);
    }
    msg
}

/// A [`Reply`] from a ModelInfer response.
fn grpc_reply(resp: proto::ModelInferResponse) -> Result<Reply, SchedError> {
    let timing = Timing::from_grpc(&resp.parameters);
    let mut raw = resp.raw_output_contents.into_iter();
    let outputs = resp
        .outputs
        .into_iter()
        .map(|o| {
            let in_shm = o.parameters.contains_key(reef_server::shm::REGION_PARAM);
            Ok(ReplyOutput {
                dtype: DType::from_kserve(&o.datatype).ok_or_else(|| {
                    SchedError::Internal(format!(
                        "output '{}': unknown datatype {}",
                        o.name, o.datatype
                    ))
                })?,
                shape: o.shape.iter().map(|&d| d.max(0) as usize).collect(),
                raw: if in_shm { None } else { raw.next() },
                name: o.name,
            })
        })
        .collect::<Result<_, SchedError>>()?;
    Ok(Reply { outputs, timing })
}

/// The shared memory parameters of a tensor's place, as HTTP JSON.
fn shm_json(p: &ShmPlace) -> Value {
    let mut m = Map::new();
    m.insert(
        reef_server::shm::REGION_PARAM.into(),
        Value::from(p.region.clone()),
    );
    m.insert(
        reef_server::shm::BYTE_SIZE_PARAM.into(),
        Value::from(p.byte_size),
    );
    if p.offset != 0 {
        m.insert(reef_server::shm::OFFSET_PARAM.into(), Value::from(p.offset));
    }
    Value::Object(m)
}

/// The HTTP body for `call` and, when it carries binary tensors (or asks
/// for them back), the length of its JSON header.
pub(crate) fn http_request(call: &Call) -> Result<(Vec<u8>, Option<usize>), SchedError> {
    let mut binary: Vec<bytes::Bytes> = vec![];
    let inputs: Vec<Value> = call
        .inputs
        .iter()
        .map(|i| {
            let parameters = match &i.data {
                Data::Inline(t) => {
                    let b = tensor_codec::tensor_bytes(t);
                    let p = json!({"binary_data_size": b.len()});
                    binary.push(b);
                    p
                }
                Data::Shm(p) => shm_json(p),
            };
            json!({
                "name": i.name,
                "datatype": i.dtype.kserve_name(),
                "shape": tensor_codec::shape_i64(&i.shape),
                "parameters": parameters,
            })
        })
        .collect();
    let mut params = Map::new();
    if let Some(p) = call.priority {
        params.insert(
            reef_server::inference::PRIORITY_PARAM.into(),
            Value::from(p.to_string()),
        );
    }
    if call.timing {
        params.insert(TIMING_PARAM.into(), Value::Bool(true));
    }
    let mut head = json!({"inputs": inputs});
    if call.outputs.is_empty() {
        params.insert("binary_data_output".into(), Value::Bool(true));
    } else {
        let outputs: Vec<Value> = call
            .outputs
            .iter()
            .map(|(name, p)| json!({"name": name, "parameters": shm_json(p)}))
            .collect();
        head["outputs"] = Value::Array(outputs);
    }
    head["parameters"] = Value::Object(params);
    let mut body = serde_json::to_vec(&head).map_err(|e| internal("encoding the request", e))?;
    if binary.is_empty() {
        return Ok((body, None));
    }
    let json_len = body.len();
    body.reserve(binary.iter().map(|b| b.len()).sum());
    for b in &binary {
        body.extend_from_slice(b);
    }
    Ok((body, Some(json_len)))
}

/// A [`Reply`] from an HTTP answer: a JSON header of `json_len` bytes (the
/// whole body without it) followed by the outputs' binary data.
pub(crate) fn http_reply(body: bytes::Bytes, json_len: Option<usize>) -> Result<Reply, SchedError> {
    let head_len = json_len.unwrap_or(body.len());
    let head = body
        .get(..head_len)
        .ok_or_else(|| SchedError::Internal("HTTP answer shorter than its JSON header".into()))?;
    let head: Value =
        serde_json::from_slice(head).map_err(|e| internal("the answer's JSON header", e))?;
    let timing = head["parameters"].as_object().and_then(Timing::from_json);
    let outs = head["outputs"]
        .as_array()
        .ok_or_else(|| SchedError::Internal("HTTP answer without outputs".into()))?;
    let mut at = head_len;
    let mut outputs = Vec::with_capacity(outs.len());
    for o in outs {
        let name = o["name"].as_str().unwrap_or_default().to_string();
        let datatype = o["datatype"].as_str().unwrap_or_default();
        let dtype = DType::from_kserve(datatype).ok_or_else(|| {
            SchedError::Internal(format!("output '{name}': unknown datatype {datatype}"))
        })?;
        let shape: Vec<usize> = o["shape"]
            .as_array()
            .map(|s| {
                s.iter()
                    .map(|d| d.as_i64().unwrap_or(0).max(0) as usize)
                    .collect()
            })
            .unwrap_or_default();
        let raw = if let Some(n) = o["parameters"]["binary_data_size"].as_u64() {
            let end = at.saturating_add(n as usize);
            if end > body.len() {
                return Err(SchedError::Internal(format!(
                    "output '{name}': {n} bytes of binary data past the answer's end"
                )));
            }
            let b = body.slice(at..end);
            at = end;
            Some(b)
        } else if let Some(data) = o.get("data") {
            let t = tensor_codec::tensor_from_json(&name, dtype, shape.clone(), data)
                .map_err(|e| SchedError::Internal(e.message))?;
            Some(tensor_codec::tensor_bytes(&t))
        } else {
            None
        };
        outputs.push(ReplyOutput {
            name,
            dtype,
            shape,
            raw,
        });
    }
    Ok(Reply { outputs, timing })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(data: Data, outputs: Vec<(String, ShmPlace)>) -> Call {
        Call {
            model: "m".into(),
            inputs: vec![CallInput {
                name: "x".into(),
                dtype: DType::F32,
                shape: vec![1, 3],
                data,
            }],
            outputs,
            priority: Some(Priority::Rt),
            timing: true,
        }
    }

    #[test]
    fn an_http_request_carries_binary_inputs_after_its_header() {
        let t = Tensor::f32(vec![1, 3], vec![1.5, -2.0, 0.25]).unwrap();
        let (body, len) = http_request(&call(Data::Inline(t.clone()), vec![])).unwrap();
        let len = len.expect("binary data");
        let head: Value = serde_json::from_slice(&body[..len]).unwrap();
        assert_eq!(head["inputs"][0]["parameters"]["binary_data_size"], 12);
        assert_eq!(head["inputs"][0]["shape"], json!([1, 3]));
        assert_eq!(head["parameters"]["priority"], "rt");
        assert_eq!(head["parameters"]["reef_timing"], true);
        assert_eq!(head["parameters"]["binary_data_output"], true);
        assert_eq!(&body[len..], &t.bytes()[..]);
    }

    #[test]
    fn an_http_request_through_shared_memory_is_json_alone() {
        let place = |region: &str, offset| ShmPlace {
            region: region.into(),
            offset,
            byte_size: 12,
        };
        let c = call(
            Data::Shm(place("in", 0)),
            vec![("y".into(), place("out", 64))],
        );
        let (body, len) = http_request(&c).unwrap();
        assert_eq!(len, None);
        let head: Value = serde_json::from_slice(&body).unwrap();
        let p = &head["inputs"][0]["parameters"];
        assert_eq!(p["shared_memory_region"], "in");
        assert_eq!(p["shared_memory_byte_size"], 12);
        assert!(p.get("shared_memory_offset").is_none());
        let o = &head["outputs"][0];
        assert_eq!(o["name"], "y");
        assert_eq!(o["parameters"]["shared_memory_offset"], 64);
        assert!(head["parameters"].get("binary_data_output").is_none());
    }

    #[test]
    fn an_http_answer_splits_into_outputs_and_rejects_short_data() {
        let a = Tensor::f32(vec![2], vec![3.0, -1.0]).unwrap();
        let head = json!({
            "outputs": [
                {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
                {"name": "s", "datatype": "FP32", "shape": [2], "parameters": {"shared_memory_region": "r"}},
            ],
            "parameters": {"reef_server_us": 5, "reef_scheduler_us": 4, "reef_queue_us": 1,
                "reef_input_us": 1, "reef_output_us": 1, "reef_preemptions": 0,
                "reef_kernels_rerun": 0},
        });
        let mut body = serde_json::to_vec(&head).unwrap();
        let len = body.len();
        body.extend_from_slice(&a.bytes());
        let r = http_reply(bytes::Bytes::from(body.clone()), Some(len)).unwrap();
        assert_eq!(r.outputs.len(), 2);
        assert_eq!(r.outputs[0].tensor().unwrap().bytes(), a.bytes());
        assert!(r.outputs[1].raw.is_none());
        assert!(r.outputs[1].tensor().is_err());
        let timing = r.timing.expect("timing");
        assert_eq!(timing.server.as_micros(), 5);
        body.truncate(body.len() - 1);
        let err = http_reply(bytes::Bytes::from(body), Some(len))
            .err()
            .unwrap();
        assert!(err.to_string().contains("past the answer's end"), "{err}");
    }

    #[test]
    fn a_grpc_request_puts_inline_inputs_in_raw_contents() {
        let t = Tensor::f32(vec![1, 3], vec![1.0, 2.0, 3.0]).unwrap();
        let msg = grpc_request(call(Data::Inline(t.clone()), vec![]));
        assert_eq!(msg.raw_input_contents.len(), 1);
        assert_eq!(&msg.raw_input_contents[0][..], &t.bytes()[..]);
        assert!(msg.outputs.is_empty());
        assert!(msg.parameters.contains_key(TIMING_PARAM));
        let place = ShmPlace {
            region: "in".into(),
            offset: 8,
            byte_size: 12,
        };
        let msg = grpc_request(call(Data::Shm(place), vec![]));
        assert!(msg.raw_input_contents.is_empty());
        assert!(msg.inputs[0]
            .parameters
            .contains_key(reef_server::shm::OFFSET_PARAM));
    }

    #[test]
    fn protocols_parse_by_name() {
        assert_eq!("HTTP".parse::<Protocol>(), Ok(Protocol::Http));
        assert_eq!("grpc".parse::<Protocol>(), Ok(Protocol::Grpc));
        assert!("quic".parse::<Protocol>().unwrap_err().contains("quic"));
    }
}
