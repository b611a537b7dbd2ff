//! A [`Service`] that forwards every request to a reef (or any KServe v2)
//! server over gRPC, so the DISB runner can drive a workload through the
//! network front end exactly as it drives the in-process scheduler.

use reef_model::DType;
use reef_sched::{
    GraphSource, InferRequest, InferResponse, ModelInfo, Priority, SchedError, SchedStats, Service,
    TaskStats, TensorInfo, Ticket,
};
use reef_server::grpc_codec;
use reef_server::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use std::sync::Arc;
use tonic::transport::Channel;

/// A gRPC client presenting the [`Service`] interface. RT and BE requests
/// travel on separate HTTP/2 connections, so an RT request never queues
/// behind a BE request's frames (as separate clients would be).
pub struct GrpcService {
    client: GrpcInferenceServiceClient<Channel>,
    rt_client: GrpcInferenceServiceClient<Channel>,
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
        let connect = || async {
            reef_server::grpc_client(url)
                .await
                .map_err(|e| SchedError::Internal(format!("connecting to {url}: {e}")))
        };
        let mut client = connect().await?;
        let rt_client = connect().await?;
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
            rt_client,
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
        let names: Vec<String> = info.inputs.iter().map(|i| i.name.clone()).collect();
        // The tensors' buffers are shared with the message, not copied.
        let msg = grpc_codec::infer_request(&req.model, &names, &req.inputs, req.priority);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let priority = req.priority.unwrap_or(Priority::Be);
        let mut client = match priority {
            Priority::Rt => self.rt_client.clone(),
            Priority::Be => self.client.clone(),
        };
        let arrival = req.arrival;
        self.handle.spawn(async move {
            let r = async {
                let resp = client.model_infer(msg).await.map_err(status)?.into_inner();
                let outputs = grpc_codec::output_tensors(&resp).map_err(SchedError::Internal)?;
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
