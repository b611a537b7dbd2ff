//! The KServe v2 gRPC front end (tonic), with Triton's streaming inference
//! (`grpc_stream`), repository, statistics and system shared memory RPCs
//! (CUDA shared memory RPCs answer UNIMPLEMENTED).
//! Outputs come back as `raw_output_contents` (an empty entry for an output
//! written to system shared memory, so the entries stay parallel to
//! `outputs`, as tritonclient indexes them); inputs may use
//! `raw_input_contents` (one entry per input not in shared memory), typed
//! `contents` or a shared memory region.

use crate::admin::{load_from_repository, repository_entries, unload};
use crate::inference::{execute, parse_priority, prepare, Outcome, ParamValue, PRIORITY_PARAM};
use crate::proto::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::model_infer_response::InferOutputTensor;
use crate::proto::model_metadata_response::TensorMetadata;
use crate::proto::repository_index_response::ModelIndex;
use crate::proto::*;
use crate::request_error::RequestError;
use crate::shm::{Kind, ShmTarget};
use crate::state::{AppState, MODEL_VERSION, PLATFORM};
use crate::tensor_codec::{
    parse_datatype, parse_shape, shape_i64, tensor_bytes, tensor_from_contents, tensor_from_raw_in,
};
use crate::timing::{Timing, TIMING_PARAM};
use reef_sched::TensorInfo;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tonic::{Request, Response, Status};

/// The gRPC service over shared state.
pub struct GrpcService {
    state: Arc<AppState>,
}

/// The tonic service, with message sizes limited to `max_message_bytes`.
pub fn service(
    state: Arc<AppState>,
    max_message_bytes: usize,
) -> GrpcInferenceServiceServer<GrpcService> {
    GrpcInferenceServiceServer::new(GrpcService { state })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

fn param_value(p: &InferParameter) -> Option<ParamValue> {
    Some(match p.parameter_choice.as_ref()? {
        ParameterChoice::BoolParam(b) => ParamValue::Bool(*b),
        ParameterChoice::Int64Param(i) => ParamValue::Int(*i),
        ParameterChoice::StringParam(s) => ParamValue::Str(s.clone()),
        ParameterChoice::DoubleParam(d) => ParamValue::Double(*d),
        ParameterChoice::Uint64Param(u) => ParamValue::Uint(*u),
    })
}

/// Request-level shared memory parameters mean nothing; say where they go.
fn reject_request_shared_memory(
    params: &HashMap<String, InferParameter>,
) -> Result<(), RequestError> {
    if params.keys().any(|k| k.starts_with("shared_memory")) {
        return Err(RequestError::bad(
            "request: shared memory parameters belong on inputs and outputs",
        ));
    }
    Ok(())
}

/// The shared memory target named by a tensor's parameters, if any.
fn shm_target(
    state: &AppState,
    what: &str,
    params: &HashMap<String, InferParameter>,
) -> Result<Option<ShmTarget>, RequestError> {
    state
        .shm
        .target(what, |k| params.get(k).and_then(param_value))
}

fn tensor_metadata(t: &TensorInfo) -> TensorMetadata {
    TensorMetadata {
        name: t.name.clone(),
        datatype: t.dtype.kserve_name().into(),
        shape: t.shape.clone(),
    }
}

/// Runs one inference request, counted in the metrics and statistics.
pub(crate) async fn run_infer(
    state: &AppState,
    req: ModelInferRequest,
) -> Result<ModelInferResponse, RequestError> {
    let arrival = Instant::now();
    let mut outcome = Outcome::new(state, arrival);
    let result = infer(state, &mut outcome, req, arrival).await;
    outcome.finish(&result);
    result
}

async fn infer(
    state: &AppState,
    outcome: &mut Outcome<'_>,
    req: ModelInferRequest,
    arrival: Instant,
) -> Result<ModelInferResponse, RequestError> {
    let info = state.model_version(&req.model_name, &req.model_version)?;
    outcome.label(&info, None);
    reject_request_shared_memory(&req.parameters)?;
    let priority = match req.parameters.get(PRIORITY_PARAM) {
        None => None,
        Some(p) => match param_value(p) {
            Some(v) => parse_priority(&v)?,
            None => None,
        },
    };
    outcome.label(&info, priority);
    let timing = match req.parameters.get(TIMING_PARAM) {
        None => false,
        Some(p) => match param_value(p) {
            Some(ParamValue::Bool(b)) => b,
            other => {
                return Err(RequestError::bad(format!(
                    "parameter '{TIMING_PARAM}': expected a bool, got {other:?}"
                )))
            }
        },
    };
    let mut targets = Vec::with_capacity(req.inputs.len());
    for input in &req.inputs {
        let what = format!("input '{}'", input.name);
        targets.push(shm_target(state, &what, &input.parameters)?);
    }
    let raw = &req.raw_input_contents;
    let not_shm = targets.iter().filter(|t| t.is_none()).count();
    if !raw.is_empty() && raw.len() != not_shm {
        return Err(RequestError::bad(format!(
            "raw_input_contents has {} entries for {} inputs, {} of them in shared memory \
                 (give one entry per input not in shared memory, or none)",
            raw.len(),
            req.inputs.len(),
            req.inputs.len() - not_shm
        )));
    }
    let mut raw_next = raw.iter();
    let pool = state.service.host_pool();
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (input, target) in req.inputs.iter().zip(targets) {
        let name = input.name.as_str();
        let dtype = parse_datatype(name, &input.datatype)?;
        let shape = parse_shape(name, &input.shape)?;
        let tensor = if let Some(target) = target {
            if input.contents.is_some() {
                return Err(RequestError::bad(format!(
                    "input '{name}': has both contents and a shared memory region"
                )));
            }
            target.read_input(pool.as_deref(), name, dtype, shape)?
        } else if let Some(bytes) = raw_next.next() {
            if input.contents.is_some() {
                return Err(RequestError::bad(format!(
                    "input '{name}': has both contents and raw_input_contents"
                )));
            }
            tensor_from_raw_in(pool.as_deref(), name, dtype, shape, bytes)?.into()
        } else if let Some(c) = &input.contents {
            tensor_from_contents(name, dtype, shape, c)?.into()
        } else {
            return Err(RequestError::bad(format!(
                "input '{name}': has no data (contents, raw_input_contents or shared memory)"
            )));
        };
        inputs.push((input.name.clone(), tensor));
    }
    let mut out_targets = HashMap::new();
    let requested: Option<Vec<String>> = if req.outputs.is_empty() {
        None
    } else {
        for o in &req.outputs {
            if o.parameters.contains_key("classification") {
                return Err(RequestError::bad(format!(
                    "output '{}': classification is not supported",
                    o.name
                )));
            }
            let what = format!("output '{}'", o.name);
            if let Some(t) = shm_target(state, &what, &o.parameters)? {
                out_targets.insert(o.name.clone(), t);
            }
        }
        Some(req.outputs.iter().map(|o| o.name.clone()).collect())
    };
    let prepared = prepare(state, info, inputs, requested.as_deref(), priority, arrival)?;
    let response = execute(state, &prepared, outcome).await?;
    let mut outputs = Vec::with_capacity(prepared.outputs.len());
    let mut raw_out = Vec::with_capacity(prepared.outputs.len());
    for &idx in &prepared.outputs {
        let t = &response.outputs[idx];
        let name = &prepared.info.outputs[idx].name;
        let mut parameters = HashMap::new();
        match out_targets.get(name) {
            Some(target) => {
                let written = target.write_tensor(name, t)?;
                parameters =
                    crate::grpc_codec::shm_params(target.region(), written, target.offset());
                raw_out.push(prost::bytes::Bytes::new());
            }
            None => raw_out.push(tensor_bytes(t)),
        }
        outputs.push(InferOutputTensor {
            name: name.clone(),
            datatype: t.dtype().kserve_name().into(),
            shape: shape_i64(&t.shape),
            parameters,
            contents: None,
        });
    }
    let parameters = if timing {
        Timing::of_handler(arrival, response.stats.clone()).to_grpc()
    } else {
        HashMap::new()
    };
    Ok(ModelInferResponse {
        model_name: prepared.info.name.clone(),
        model_version: MODEL_VERSION.into(),
        id: req.id,
        parameters,
        outputs,
        raw_output_contents: raw_out,
    })
}

#[tonic::async_trait]
impl GrpcInferenceService for GrpcService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.state.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        let info = self.state.model_version(&r.name, &r.version)?;
        Ok(Response::new(ModelReadyResponse {
            ready: info.ready && self.state.is_ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "reef".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::http::EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        let info = self.state.model_version(&r.name, &r.version)?;
        Ok(Response::new(ModelMetadataResponse {
            name: info.name.clone(),
            versions: vec![MODEL_VERSION.into()],
            platform: PLATFORM.into(),
            inputs: info.inputs.iter().map(tensor_metadata).collect(),
            outputs: info.outputs.iter().map(tensor_metadata).collect(),
        }))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let r = request.into_inner();
        let config = crate::admin::model_config(&self.state, &r.name, &r.version)?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(config.to_proto()),
        }))
    }

    async fn model_statistics(
        &self,
        request: Request<ModelStatisticsRequest>,
    ) -> Result<Response<ModelStatisticsResponse>, Status> {
        let r = request.into_inner();
        let stats = crate::model_stats::select(&self.state, &r.name, &r.version)?;
        Ok(Response::new(ModelStatisticsResponse {
            model_stats: stats.iter().map(|s| s.to_proto()).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        match run_infer(&self.state, request.into_inner()).await {
            Ok(r) => Ok(Response::new(r)),
            Err(e) => {
                tracing::debug!("gRPC inference request failed: {e}");
                Err(e.into())
            }
        }
    }

    type ModelStreamInferStream = crate::grpc_stream::ResponseStream;

    async fn model_stream_infer(
        &self,
        request: Request<tonic::Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        Ok(Response::new(crate::grpc_stream::serve(
            self.state.clone(),
            request.into_inner(),
        )))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let r = request.into_inner();
        let models = repository_entries(&self.state, r.ready)
            .into_iter()
            .map(|e| ModelIndex {
                name: e.name,
                version: MODEL_VERSION.into(),
                state: e.state.into(),
                reason: e.reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let r = request.into_inner();
        load_from_repository(self.state.clone(), r.model_name).await?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let r = request.into_inner();
        unload(self.state.clone(), r.model_name).await?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }

    async fn system_shared_memory_status(
        &self,
        request: Request<SystemSharedMemoryStatusRequest>,
    ) -> Result<Response<SystemSharedMemoryStatusResponse>, Status> {
        let r = request.into_inner();
        let name = Some(r.name.as_str()).filter(|n| !n.is_empty());
        let regions = self
            .state
            .shm
            .status(name)?
            .into_iter()
            .map(|s| {
                let status = system_shared_memory_status_response::RegionStatus {
                    name: s.name.clone(),
                    key: s.key,
                    offset: s.offset,
                    byte_size: s.byte_size,
                };
                (s.name, status)
            })
            .collect();
        Ok(Response::new(SystemSharedMemoryStatusResponse { regions }))
    }

    async fn system_shared_memory_register(
        &self,
        request: Request<SystemSharedMemoryRegisterRequest>,
    ) -> Result<Response<SystemSharedMemoryRegisterResponse>, Status> {
        let r = request.into_inner();
        self.state
            .shm
            .register(&r.name, &r.key, r.offset, r.byte_size)?;
        Ok(Response::new(SystemSharedMemoryRegisterResponse {}))
    }

    async fn system_shared_memory_unregister(
        &self,
        request: Request<SystemSharedMemoryUnregisterRequest>,
    ) -> Result<Response<SystemSharedMemoryUnregisterResponse>, Status> {
        let r = request.into_inner();
        let name = Some(r.name.as_str()).filter(|n| !n.is_empty());
        self.state.shm.unregister(Kind::System, name)?;
        Ok(Response::new(SystemSharedMemoryUnregisterResponse {}))
    }

    async fn cuda_shared_memory_status(
        &self,
        request: Request<CudaSharedMemoryStatusRequest>,
    ) -> Result<Response<CudaSharedMemoryStatusResponse>, Status> {
        let r = request.into_inner();
        let name = Some(r.name.as_str()).filter(|n| !n.is_empty());
        let regions = self
            .state
            .shm
            .cuda_status(name)?
            .into_iter()
            .map(|s| {
                let status = cuda_shared_memory_status_response::RegionStatus {
                    name: s.name.clone(),
                    device_id: s.device_id,
                    byte_size: s.byte_size,
                };
                (s.name, status)
            })
            .collect();
        Ok(Response::new(CudaSharedMemoryStatusResponse { regions }))
    }

    async fn cuda_shared_memory_register(
        &self,
        request: Request<CudaSharedMemoryRegisterRequest>,
    ) -> Result<Response<CudaSharedMemoryRegisterResponse>, Status> {
        let r = request.into_inner();
        self.state
            .register_cuda_region(r.name, r.raw_handle, r.device_id, r.byte_size)
            .await?;
        Ok(Response::new(CudaSharedMemoryRegisterResponse {}))
    }

    async fn cuda_shared_memory_unregister(
        &self,
        request: Request<CudaSharedMemoryUnregisterRequest>,
    ) -> Result<Response<CudaSharedMemoryUnregisterResponse>, Status> {
        let r = request.into_inner();
        let name = Some(r.name).filter(|n| !n.is_empty());
        self.state.unregister_regions(Kind::Cuda, name).await?;
        Ok(Response::new(CudaSharedMemoryUnregisterResponse {}))
    }
}
