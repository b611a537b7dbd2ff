//! A [`Service`] that forwards every request to a reef (or any KServe v2)
//! server over gRPC, so the DISB runner can drive a workload through the
//! network front end exactly as it drives the in-process scheduler.

use reef_model::{DType, Tensor};
use reef_sched::{
    GraphSource, InferRequest, InferResponse, ModelInfo, Priority, SchedError, SchedStats, Service,
    TaskStats, TensorInfo, Ticket,
};
use reef_server::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use std::collections::HashMap;
use std::sync::Arc;
use tonic::transport::Channel;

/// A gRPC client presenting the [`Service`] interface.
pub struct GrpcService {
    client: GrpcInferenceServiceClient<Channel>,
    models: Vec<ModelInfo>,
    handle: tokio::runtime::Handle,
    /// Where statistics come from (the server's scheduler, when in-process).
    stats_from: Option<Arc<dyn Service>>,
}

fn status(s: tonic::Status) -> SchedError {
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

impl GrpcService {
    /// Connects to `url` and reads the metadata of `models`. `stats_from`
    /// supplies scheduler statistics (preemptions) when the server runs in
    /// this process.
    pub async fn connect(
        url: &str,
        models: &[String],
        stats_from: Option<Arc<dyn Service>>,
    ) -> Result<GrpcService, SchedError> {
        let mut client = reef_server::grpc_client(url)
            .await
            .map_err(|e| SchedError::Internal(format!("connecting to {url}: {e}")))?;
        let mut infos = vec![];
        for m in models {
            let meta = client
                .model_metadata(proto::ModelMetadataRequest {
                    name: m.clone(),
                    version: String::new(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let conv = |t: &proto::model_metadata_response::TensorMetadata| -> Result<TensorInfo, SchedError> {
                Ok(TensorInfo {
                    name: t.name.clone(),
                    dtype: DType::from_kserve(&t.datatype).ok_or_else(|| SchedError::Internal(format!("type {}", t.datatype)))?,
                    shape: t.shape.clone(),
                })
            };
            infos.push(ModelInfo {
                name: meta.name.clone(),
                default_priority: Priority::Be,
                inputs: meta.inputs.iter().map(conv).collect::<Result<_, _>>()?,
                outputs: meta.outputs.iter().map(conv).collect::<Result<_, _>>()?,
                ready: true,
            });
        }
        Ok(GrpcService {
            client,
            models: infos,
            handle: tokio::runtime::Handle::current(),
            stats_from,
        })
    }
}

impl Service for GrpcService {
    fn models(&self) -> Vec<ModelInfo> {
        self.models.clone()
    }

    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        let info = self
            .models
            .iter()
            .find(|m| m.name == req.model)
            .ok_or_else(|| SchedError::UnknownModel(req.model.clone()))?;
        let inputs = info
            .inputs
            .iter()
            .zip(&req.inputs)
            .map(|(i, t)| proto::model_infer_request::InferInputTensor {
                name: i.name.clone(),
                datatype: t.dtype().kserve_name().to_string(),
                shape: t.shape.iter().map(|&d| d as i64).collect(),
                parameters: HashMap::new(),
                contents: None,
            })
            .collect();
        let mut parameters = HashMap::new();
        if let Some(p) = req.priority {
            let v = proto::infer_parameter::ParameterChoice::StringParam(p.to_string());
            parameters.insert(
                "priority".to_string(),
                proto::InferParameter {
                    parameter_choice: Some(v),
                },
            );
        }
        let msg = proto::ModelInferRequest {
            model_name: req.model.clone(),
            model_version: String::new(),
            id: String::new(),
            parameters,
            inputs,
            outputs: vec![],
            raw_input_contents: req.inputs.iter().map(|t| t.to_bytes().into()).collect(),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut client = self.client.clone();
        let priority = req.priority.unwrap_or(Priority::Be);
        let arrival = req.arrival;
        self.handle.spawn(async move {
            let r = async {
                let resp = client.model_infer(msg).await.map_err(status)?.into_inner();
                let outputs = resp
                    .outputs
                    .iter()
                    .zip(&resp.raw_output_contents)
                    .map(|(o, b)| {
                        let dt = DType::from_kserve(&o.datatype)
                            .ok_or_else(|| SchedError::Internal(format!("type {}", o.datatype)))?;
                        let shape = o.shape.iter().map(|&d| d.max(0) as usize).collect();
                        Tensor::from_bytes(dt, shape, b)
                            .map_err(|e| SchedError::Internal(e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(InferResponse {
                    outputs,
                    priority,
                    stats: TaskStats {
                        latency: arrival.elapsed(),
                        ..TaskStats::default()
                    },
                })
            }
            .await;
            let _ = tx.send(r);
        });
        Ok(rx)
    }

    fn load_model(&self, name: &str, _source: GraphSource, _p: Priority) -> Result<(), SchedError> {
        Err(SchedError::InvalidInput(format!(
            "load '{name}' on the server itself (repository API)"
        )))
    }

    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        Err(SchedError::InvalidInput(format!(
            "unload '{name}' on the server itself (repository API)"
        )))
    }

    fn stats(&self) -> SchedStats {
        self.stats_from
            .as_ref()
            .map(|s| s.stats())
            .unwrap_or_default()
    }

    fn shutdown(&self) {
        if let Some(s) = &self.stats_from {
            s.shutdown();
        }
    }
}
