//! A [`Service`] that forwards every request to a reef (or any KServe v2)
//! server over gRPC, so the DISB runner can drive a workload through the
//! network front end exactly as it drives the in-process scheduler.
//!
//! With [`GrpcService::with_shared_memory`], tensors travel through Triton's
//! system shared memory instead of the message: a pool of region pairs (one
//! input and one output region each), every pair registered once, one pair
//! per request in flight; the client writes the inputs into its pair before
//! the call and reads the outputs back after it, inside the latency clock.

use reef_model::DType;
use reef_model::Tensor;
use reef_sched::{
    GraphSource, InferRequest, InferResponse, ModelInfo, Priority, RemoteTiming, SchedError,
    SchedStats, Service, TaskStats, TensorInfo, Ticket,
};
use reef_server::grpc_codec;
use reef_server::proto::{self, grpc_inference_service_client::GrpcInferenceServiceClient};
use reef_server::shm::ClientRegion;
use reef_server::timing::{self, Timing};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
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
    /// Shared memory transport, when on.
    shm: Option<Arc<ShmPool>>,
}

/// One input and one output region, registered with the server.
struct ShmPair {
    input_name: String,
    output_name: String,
    input: ClientRegion,
    output: ClientRegion,
}

/// Region pairs not in use, and how to name new ones.
struct ShmPool {
    free: Mutex<Vec<ShmPair>>,
    made: AtomicUsize,
    prefix: String,
}

fn shm_error(what: &str, e: impl std::fmt::Display) -> SchedError {
    SchedError::Internal(format!("shared memory: {what}: {e}"))
}

impl ShmPool {
    /// A free pair holding at least `input_bytes` / `output_bytes`, made
    /// (and registered) or regrown when there is none.
    async fn take(
        &self,
        client: &mut GrpcInferenceServiceClient<Channel>,
        input_bytes: u64,
        output_bytes: u64,
    ) -> Result<ShmPair, SchedError> {
        let found = self.free.lock().ok().and_then(|mut f| f.pop());
        if let Some(p) = found {
            if p.input.byte_size() >= input_bytes && p.output.byte_size() >= output_bytes {
                return Ok(p);
            }
            for name in [&p.input_name, &p.output_name] {
                client
                    .system_shared_memory_unregister(proto::SystemSharedMemoryUnregisterRequest {
                        name: name.clone(),
                    })
                    .await
                    .map_err(status)?;
            }
        }
        let n = self.made.fetch_add(1, Ordering::Relaxed);
        let input_name = format!("{}-{n}-in", self.prefix);
        let output_name = format!("{}-{n}-out", self.prefix);
        let input = ClientRegion::create(&format!("/{input_name}"), input_bytes.max(1))
            .map_err(|e| shm_error(&input_name, e))?;
        let output = ClientRegion::create(&format!("/{output_name}"), output_bytes.max(1))
            .map_err(|e| shm_error(&output_name, e))?;
        for (name, r) in [(&input_name, &input), (&output_name, &output)] {
            client
                .system_shared_memory_register(proto::SystemSharedMemoryRegisterRequest {
                    name: name.clone(),
                    key: r.key().to_string(),
                    offset: 0,
                    byte_size: r.byte_size(),
                })
                .await
                .map_err(status)?;
        }
        Ok(ShmPair {
            input_name,
            output_name,
            input,
            output,
        })
    }

    fn give_back(&self, pair: ShmPair) {
        if let Ok(mut f) = self.free.lock() {
            f.push(pair);
        }
    }
}

/// The byte size of each output of `info` for a request whose inputs are
/// `inputs` (a leading -1 is the inputs' batch size).
fn output_sizes(info: &ModelInfo, inputs: &[Tensor]) -> Result<Vec<u64>, SchedError> {
    let batch = inputs.first().and_then(|t| t.shape.first()).copied();
    info.outputs
        .iter()
        .map(|o| {
            let mut n: u64 = o.dtype.size() as u64;
            for (i, &d) in o.shape.iter().enumerate() {
                let d = match (i, d) {
                    (_, d) if d >= 0 => d as u64,
                    (0, _) => batch.unwrap_or(1) as u64,
                    _ => {
                        return Err(SchedError::InvalidInput(format!(
                            "output '{}' of '{}' has a variable dimension ({:?}); shared memory \
                             needs its size before the call",
                            o.name, info.name, o.shape
                        )))
                    }
                };
                n = n.saturating_mul(d);
            }
            Ok(n)
        })
        .collect()
}

/// A response's outputs, the server's timing, and when the call began.
type Answer = (Vec<Tensor>, Option<Timing>, Instant);

/// One inference through a shared memory pair: writes the inputs, calls,
/// reads the outputs.
async fn infer_via_shm(
    pool: &ShmPool,
    client: &mut GrpcInferenceServiceClient<Channel>,
    info: &ModelInfo,
    mut msg: proto::ModelInferRequest,
    inputs: &[Tensor],
) -> Result<Answer, SchedError> {
    let in_total: u64 = msg.raw_input_contents.iter().map(|b| b.len() as u64).sum();
    let outputs: Vec<(String, u64)> = info
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .zip(output_sizes(info, inputs)?)
        .collect();
    let out_total = outputs.iter().map(|(_, s)| s).sum();
    let pair = pool.take(client, in_total, out_total).await?;
    let result = async {
        grpc_codec::inputs_to_shm(&mut msg, &pair.input, &pair.input_name)
            .map_err(|e| shm_error(&pair.input_name, e))?;
        let offsets = grpc_codec::outputs_to_shm(&mut msg, &outputs, &pair.output_name);
        let sent = Instant::now();
        let resp = client.model_infer(msg).await.map_err(status)?.into_inner();
        let tensors = grpc_codec::shm_output_tensors(&resp, &pair.output, &offsets)
            .map_err(SchedError::Internal)?;
        Ok((tensors, Timing::from_grpc(&resp.parameters), sent))
    }
    .await;
    pool.give_back(pair);
    result
}

/// The service's account of a request answered over gRPC: the server's own
/// timing where it sent one, with `latency` the time inside the server
/// (handler start to answer); all zero otherwise. Device 0: the protocol
/// does not say which device answered, and this service reports a single
/// device.
fn service_stats(timing: Option<Timing>) -> TaskStats {
    match timing {
        Some(t) => TaskStats {
            latency: t.server,
            ..t.task
        },
        None => TaskStats::default(),
    }
}

/// The handler's start and end on this host's clock, from the server's
/// wall-clock start (where it sent one), for a call begun at `sent`.
fn remote_timing(timing: Option<&Timing>, sent: Instant) -> Option<RemoteTiming> {
    let t = timing?;
    let handler_start = timing::instant_at(t.start_unix_ns?, sent, timing::unix_ns_at(sent));
    Some(RemoteTiming {
        sent,
        handler_start,
        handler_end: handler_start + t.server,
    })
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
            shm: None,
        })
    }

    /// Sends inputs and receives outputs through system shared memory (the
    /// server must allow client shared memory); see the module docs.
    pub fn with_shared_memory(mut self) -> Self {
        static POOLS: AtomicUsize = AtomicUsize::new(0);
        let n = POOLS.fetch_add(1, Ordering::Relaxed);
        self.shm = Some(Arc::new(ShmPool {
            free: Mutex::new(Vec::new()),
            made: AtomicUsize::new(0),
            prefix: format!("reef-bench-{}-{n}", std::process::id()),
        }));
        self
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
        let mut msg = grpc_codec::infer_request(&req.model, &names, &req.inputs, req.priority);
        // Ask for the server's own timing of the request.
        timing::ask(&mut msg.parameters);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let priority = req.priority.unwrap_or(Priority::Be);
        let mut client = match priority {
            Priority::Rt => self.rt_client.clone(),
            Priority::Be => self.client.clone(),
        };
        let shm = self.shm.clone();
        let info = info.clone();
        self.handle.spawn(async move {
            let r = async {
                let (outputs, timing, sent) = match &shm {
                    Some(pool) => infer_via_shm(pool, &mut client, &info, msg, &req.inputs).await?,
                    None => {
                        let sent = Instant::now();
                        let resp = client.model_infer(msg).await.map_err(status)?.into_inner();
                        let tensors =
                            grpc_codec::output_tensors(&resp).map_err(SchedError::Internal)?;
                        (tensors, Timing::from_grpc(&resp.parameters), sent)
                    }
                };
                Ok(InferResponse {
                    outputs,
                    priority,
                    remote: remote_timing(timing.as_ref(), sent),
                    stats: service_stats(timing),
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
