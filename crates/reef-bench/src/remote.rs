//! A [`Service`] that forwards every request to a reef (or any KServe v2)
//! server over gRPC or HTTP ([`Protocol`]), so the DISB runner can drive a
//! workload through the network front end exactly as it drives the
//! in-process scheduler.
//!
//! With [`RemoteService::with_shared_memory`], tensors travel through
//! Triton's system shared memory instead of the message, and with
//! [`RemoteService::with_cuda_shared_memory`] through CUDA shared memory
//! (device allocations the caller makes, exported as IPC handles; the
//! server must run in another process): a pool of region pairs (one input
//! and one output region each), every pair registered once, one pair per
//! request in flight; the client writes the inputs into its pair before the
//! call and reads the outputs back after it, inside the latency clock.
//! [`RemoteService::with_cuda_inputs_system_outputs`] mixes the two: inputs
//! in CUDA shared memory, outputs in system shared memory.

use crate::direct::{DirectHttp, RawAnswer};
use crate::wire::{Call, CallInput, Data, Reply, ShmPlace, Wire};
use reef_model::Tensor;
use reef_sched::{
    GraphSource, InferRequest, InferResponse, ModelInfo, Priority, RemoteTiming, SchedError,
    SchedStats, Service, TaskStats, Ticket,
};
use reef_server::shm::{ClientMemory, ClientRegion};
use reef_server::tensor_codec;
use reef_server::timing::{self, Timing};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use crate::wire::Protocol;

/// A KServe v2 client (gRPC or HTTP) presenting the [`Service`] interface.
/// RT and BE requests travel on separate connections, so an RT request
/// never queues behind a BE request's bytes (as separate clients would).
pub struct RemoteService {
    wire: Wire,
    rt_wire: Wire,
    protocol: Protocol,
    models: Vec<ModelInfo>,
    handle: tokio::runtime::Handle,
    /// Where statistics come from (the server's scheduler, when in-process).
    stats_from: Option<Arc<dyn Service>>,
    /// Shared memory transport, when on.
    shm: Option<Arc<ShmPool>>,
    /// The server's address (for unregistering at shutdown).
    url: String,
    /// RT requests go out through this client
    /// ([`RemoteService::with_direct_rt`], [`RemoteService::with_polling_rt`]);
    /// `None`: through the runtime's HTTP or gRPC client.
    direct: Option<Arc<DirectHttp>>,
    /// With `direct`: RT requests are written and their answers polled for
    /// by a task on the runtime ([`RemoteService::with_polling_rt`]), not on
    /// the submitting thread and the direct client's reader.
    rt_polls: bool,
}

/// How a [`RemoteService`] sends its RT requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtClient {
    /// Through the client's runtime, as BE requests go.
    #[default]
    Runtime,
    /// On the submitting thread ([`RemoteService::with_direct_rt`]; HTTP
    /// only).
    Direct,
    /// By a runtime task that writes the request and polls its connection
    /// for the answer itself ([`RemoteService::with_polling_rt`]; HTTP
    /// only).
    Poll,
}

impl std::fmt::Display for RtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RtClient::Runtime => "runtime",
            RtClient::Direct => "direct",
            RtClient::Poll => "poll",
        })
    }
}

impl std::str::FromStr for RtClient {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "runtime" => Ok(RtClient::Runtime),
            "direct" => Ok(RtClient::Direct),
            "poll" => Ok(RtClient::Poll),
            other => Err(format!(
                "unknown RT client '{other}' (runtime, direct or poll)"
            )),
        }
    }
}

/// Device memory a client exports for CUDA shared memory.
pub trait CudaMemory: ClientMemory {
    /// The allocation's CUDA IPC handle.
    fn raw_handle(&self) -> Vec<u8>;
    /// The GPU it lives on.
    fn device_id(&self) -> i64;
}

/// Makes exported device memory of a byte size (the caller owns the GPU
/// side; `reef bench disb` uses reef-cuda's `IpcBuffer`).
pub type CudaAllocator = Arc<dyn Fn(u64) -> Result<Box<dyn CudaMemory>, String> + Send + Sync>;

/// Which shared memory a pool's input and output regions are: CUDA
/// memory made by the allocator, or system shared memory (`None`).
struct Transport {
    inputs: Option<CudaAllocator>,
    outputs: Option<CudaAllocator>,
}

/// Client memory of either kind, as registered.
enum Memory {
    System(ClientRegion),
    Cuda(Box<dyn CudaMemory>),
}

impl Memory {
    fn get(&self) -> &dyn ClientMemory {
        match self {
            Memory::System(r) => r,
            Memory::Cuda(m) => m.as_ref(),
        }
    }
}

/// One input and one output region, registered with the server.
struct ShmPair {
    input_name: String,
    output_name: String,
    input: Memory,
    output: Memory,
}

/// Most region pairs one service registers: past it, a request waits for
/// a pair to come back instead of registering another. Mapping a region
/// costs the server far more than a request (`cuIpcOpenMemHandle`), so
/// unbounded registrations under a backlog feed the backlog.
pub const MAX_PAIRS: usize = 32;

/// Region pairs not in use, and how to name new ones.
struct ShmPool {
    transport: Transport,
    free: Mutex<Vec<ShmPair>>,
    /// Pairs registered (free or in use).
    made: AtomicUsize,
    /// Names pairs uniquely.
    serial: AtomicUsize,
    /// Signalled when a pair comes back.
    returned: tokio::sync::Notify,
    prefix: String,
}

fn shm_error(what: &str, e: impl std::fmt::Display) -> SchedError {
    SchedError::Internal(format!("shared memory: {what}: {e}"))
}

impl ShmPool {
    /// The smallest free pair holding at least `input_bytes` /
    /// `output_bytes`. When none does: a new pair (made and registered)
    /// while fewer than [`MAX_PAIRS`] exist; else a free pair too small,
    /// remade larger; else, every pair being in use, the next one to come
    /// back. Requests of models with different sizes keep pairs of their
    /// sizes.
    async fn take(
        &self,
        wire: &Wire,
        input_bytes: u64,
        output_bytes: u64,
    ) -> Result<ShmPair, SchedError> {
        loop {
            enum Next {
                Take(ShmPair),
                Make,
                Regrow(ShmPair),
                Wait,
            }
            let next = {
                let mut f = self
                    .free
                    .lock()
                    .map_err(|_| SchedError::Internal("shared memory pool lock poisoned".into()))?;
                let fits = |p: &ShmPair| {
                    p.input.get().byte_size() >= input_bytes
                        && p.output.get().byte_size() >= output_bytes
                };
                let best = (0..f.len())
                    .filter(|&i| fits(&f[i]))
                    .min_by_key(|&i| f[i].input.get().byte_size() + f[i].output.get().byte_size());
                if let Some(i) = best {
                    Next::Take(f.swap_remove(i))
                } else if self.reserve() {
                    Next::Make
                } else if let Some(p) = f.pop() {
                    Next::Regrow(p)
                } else {
                    Next::Wait
                }
            };
            match next {
                Next::Take(p) => return Ok(p),
                Next::Make => return self.make_reserved(wire, input_bytes, output_bytes).await,
                Next::Regrow(p) => {
                    // The old pair's slot goes to the new one.
                    let unregistered = self.unregister(wire, &p).await;
                    drop(p);
                    if let Err(e) = unregistered {
                        self.made.fetch_sub(1, Ordering::AcqRel);
                        return Err(e);
                    }
                    return self.make_reserved(wire, input_bytes, output_bytes).await;
                }
                Next::Wait => self.returned.notified().await,
            }
        }
    }

    /// Counts one more pair if fewer than [`MAX_PAIRS`] exist.
    fn reserve(&self) -> bool {
        self.made
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |m| {
                (m < MAX_PAIRS).then_some(m + 1)
            })
            .is_ok()
    }

    /// [`ShmPool::make_pair`] for a pair already counted
    /// ([`ShmPool::reserve`]); a failure gives the count back.
    async fn make_reserved(
        &self,
        wire: &Wire,
        input_bytes: u64,
        output_bytes: u64,
    ) -> Result<ShmPair, SchedError> {
        let made = self.make_pair(wire, input_bytes, output_bytes).await;
        if made.is_err() {
            self.made.fetch_sub(1, Ordering::AcqRel);
        }
        made
    }

    /// Makes and registers a pair of `input_bytes` / `output_bytes`.
    async fn make_pair(
        &self,
        wire: &Wire,
        input_bytes: u64,
        output_bytes: u64,
    ) -> Result<ShmPair, SchedError> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let input_name = format!("{}-{n}-in", self.prefix);
        let output_name = format!("{}-{n}-out", self.prefix);
        let t = &self.transport;
        let input = make_region(wire, t.inputs.as_ref(), &input_name, input_bytes.max(1)).await?;
        let output =
            make_region(wire, t.outputs.as_ref(), &output_name, output_bytes.max(1)).await?;
        Ok(ShmPair {
            input_name,
            output_name,
            input,
            output,
        })
    }

    /// Unregisters both regions of `pair` (before its memory is freed: the
    /// server must unmap a device allocation first).
    async fn unregister(&self, wire: &Wire, pair: &ShmPair) -> Result<(), SchedError> {
        for (name, memory) in [
            (&pair.input_name, &pair.input),
            (&pair.output_name, &pair.output),
        ] {
            wire.unregister(name, matches!(memory, Memory::Cuda(_)))
                .await?;
        }
        Ok(())
    }

    /// The smallest free pair holding at least `input_bytes` /
    /// `output_bytes`, if one is free now.
    fn try_take(&self, input_bytes: u64, output_bytes: u64) -> Option<ShmPair> {
        let mut f = self.free.lock().ok()?;
        let best = (0..f.len())
            .filter(|&i| {
                f[i].input.get().byte_size() >= input_bytes
                    && f[i].output.get().byte_size() >= output_bytes
            })
            .min_by_key(|&i| f[i].input.get().byte_size() + f[i].output.get().byte_size())?;
        Some(f.swap_remove(best))
    }

    fn give_back(&self, pair: ShmPair) {
        if let Ok(mut f) = self.free.lock() {
            f.push(pair);
        }
        self.returned.notify_one();
    }
}

/// Makes client memory of `bytes` bytes, device memory from `cuda` or
/// else a system shared memory object, and registers it as `name`.
async fn make_region(
    wire: &Wire,
    cuda: Option<&CudaAllocator>,
    name: &str,
    bytes: u64,
) -> Result<Memory, SchedError> {
    match cuda {
        None => {
            let r =
                ClientRegion::create(&format!("/{name}"), bytes).map_err(|e| shm_error(name, e))?;
            wire.register_system(name, r.key(), r.byte_size()).await?;
            Ok(Memory::System(r))
        }
        Some(alloc) => {
            let m = alloc(bytes).map_err(|e| shm_error(name, e))?;
            wire.register_cuda(name, m.raw_handle(), m.device_id(), m.byte_size())
                .await?;
            Ok(Memory::Cuda(m))
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

/// A response's outputs, the server's timing, when the call began and when
/// the reply arrived.
type Answer = (Vec<Tensor>, Option<Timing>, Instant, Instant);

/// Runs the copies `f` into or out of `pair` on this task, or with
/// `offload` on the runtime's blocking pool, and hands the pair back with
/// their result.
async fn copy_with<T: Send + 'static>(
    offload: bool,
    pair: ShmPair,
    f: impl FnOnce(&ShmPair) -> T + Send + 'static,
) -> Result<(ShmPair, T), SchedError> {
    if !offload {
        let t = f(&pair);
        return Ok((pair, t));
    }
    tokio::task::spawn_blocking(move || {
        let t = f(&pair);
        (pair, t)
    })
    .await
    .map_err(|e| SchedError::Internal(format!("shared memory copy task: {e}")))
}

/// Writes `inputs` into `pair`'s input region, one after another: where
/// each went.
fn write_inputs(pair: &ShmPair, inputs: &[Tensor]) -> Result<Vec<ShmPlace>, SchedError> {
    let mut at = 0;
    let mut places = Vec::with_capacity(inputs.len());
    for t in inputs {
        let bytes = tensor_codec::tensor_bytes(t);
        pair.input
            .get()
            .write_at(at, &bytes)
            .map_err(|e| shm_error(&pair.input_name, e))?;
        places.push(ShmPlace {
            region: pair.input_name.clone(),
            offset: at,
            byte_size: bytes.len() as u64,
        });
        at += bytes.len() as u64;
    }
    Ok(places)
}

/// Points `call`'s inputs at `places` and its outputs (`outputs`: names
/// and sizes) at `pair`'s output region, one after another; returns the
/// outputs' offsets.
fn place_call(
    call: &mut Call,
    pair: &ShmPair,
    places: Vec<ShmPlace>,
    outputs: Vec<(String, u64)>,
) -> Vec<u64> {
    for (input, place) in call.inputs.iter_mut().zip(places) {
        input.data = Data::Shm(place);
    }
    let mut at = 0;
    call.outputs = outputs
        .into_iter()
        .map(|(name, byte_size)| {
            let place = ShmPlace {
                region: pair.output_name.clone(),
                offset: at,
                byte_size,
            };
            at += byte_size;
            (name, place)
        })
        .collect();
    call.outputs.iter().map(|(_, p)| p.offset).collect()
}

/// The bytes `inputs` need, the bytes of `info`'s outputs for them, and
/// those outputs' names and sizes.
type ShmSizes = (u64, u64, Vec<(String, u64)>);

/// [`ShmSizes`] of `inputs` to `info`.
fn shm_sizes(info: &ModelInfo, inputs: &[Tensor]) -> Result<ShmSizes, SchedError> {
    let in_total: u64 = inputs.iter().map(byte_len).sum();
    let outputs: Vec<(String, u64)> = info
        .outputs
        .iter()
        .map(|o| o.name.clone())
        .zip(output_sizes(info, inputs)?)
        .collect();
    let out_total = outputs.iter().map(|(_, s)| s).sum();
    Ok((in_total, out_total, outputs))
}

/// Writes `inputs` into `pair` and points `call` at them and its outputs
/// (`outputs`) at the pair's output region: where each output goes.
fn fill_pair(
    pair: &ShmPair,
    call: &mut Call,
    inputs: &[Tensor],
    outputs: Vec<(String, u64)>,
) -> Result<Vec<u64>, SchedError> {
    let places = write_inputs(pair, inputs)?;
    Ok(place_call(call, pair, places, outputs))
}

/// One inference through a shared memory pair: writes the inputs, calls,
/// reads the outputs. A BE request's copies (synchronous; a device copy
/// with CUDA shared memory) run on the blocking pool, so that an RT
/// request's never wait behind them on the runtime's workers.
async fn infer_via_shm(
    pool: &ShmPool,
    wire: &Wire,
    info: &ModelInfo,
    mut call: Call,
    inputs: Vec<Tensor>,
    priority: Priority,
) -> Result<Answer, SchedError> {
    let (in_total, out_total, outputs) = shm_sizes(info, &inputs)?;
    let offload = priority == Priority::Be;
    let pair = pool.take(wire, in_total, out_total).await?;
    let (pair, written) = copy_with(offload, pair, move |pair| write_inputs(pair, &inputs)).await?;
    let places = match written {
        Ok(p) => p,
        Err(e) => {
            pool.give_back(pair);
            return Err(e);
        }
    };
    let offsets = place_call(&mut call, &pair, places, outputs);
    let sent = Instant::now();
    let reply = match wire.infer(call).await {
        Ok(r) => r,
        Err(e) => {
            pool.give_back(pair);
            return Err(e);
        }
    };
    let replied = Instant::now();
    let timing = reply.timing.clone();
    let (pair, tensors) = copy_with(offload, pair, move |pair| {
        shm_outputs(&reply, pair.output.get(), &offsets)
    })
    .await?;
    pool.give_back(pair);
    Ok((tensors?, timing, sent, replied))
}

/// A tensor's size, bytes.
fn byte_len(t: &Tensor) -> u64 {
    (t.len() * t.dtype().size()) as u64
}

/// The outputs of `reply`, which the server wrote into `region` at
/// `offsets` (in the order they were asked for).
fn shm_outputs(
    reply: &Reply,
    region: &dyn ClientMemory,
    offsets: &[u64],
) -> Result<Vec<Tensor>, SchedError> {
    if reply.outputs.len() != offsets.len() {
        return Err(SchedError::Internal(format!(
            "{} outputs in the answer, {} asked for",
            reply.outputs.len(),
            offsets.len()
        )));
    }
    reply
        .outputs
        .iter()
        .zip(offsets)
        .map(|(o, &offset)| {
            reef_server::shm::read_client_tensor(region, &o.name, o.dtype, o.shape.clone(), offset)
                .map_err(|e| SchedError::Internal(e.message))
        })
        .collect()
}

/// The service's account of a request answered remotely: the server's own
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
/// wall-clock start (where it sent one), for a call begun at `sent` and
/// answered at `replied`.
fn remote_timing(timing: Option<&Timing>, sent: Instant, replied: Instant) -> Option<RemoteTiming> {
    let t = timing?;
    let handler_start = timing::instant_at(t.start_unix_ns?, sent, timing::unix_ns_at(sent));
    Some(RemoteTiming {
        sent,
        handler_start,
        handler_end: handler_start + t.server,
        replied,
    })
}

/// The answer to a request from its outputs, the server's timing, when it
/// was sent and when the reply arrived.
fn response(
    outputs: Vec<Tensor>,
    timing: Option<Timing>,
    sent: Instant,
    replied: Instant,
    priority: Priority,
) -> InferResponse {
    InferResponse {
        outputs,
        priority,
        remote: remote_timing(timing.as_ref(), sent, replied),
        stats: service_stats(timing),
    }
}

/// A direct client's answer as the scheduler's: the server's error, or the
/// outputs (read from `pair`'s output region at `offsets` where they went
/// through shared memory, else from the answer).
fn direct_response(
    answer: Result<RawAnswer, String>,
    what: &str,
    pair: Option<&ShmPair>,
    offsets: Option<&[u64]>,
    sent: Instant,
    replied: Instant,
    priority: Priority,
) -> Result<InferResponse, SchedError> {
    let a = answer.map_err(|e| SchedError::Internal(format!("{what}: {e}")))?;
    if !(200..300).contains(&a.status) {
        let status = hyper::StatusCode::from_u16(a.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        return Err(crate::wire::http_status(status, &a.body));
    }
    let reply = crate::wire::http_reply(a.body, a.json_len)?;
    let outputs = match (pair, offsets) {
        (Some(pair), Some(offsets)) => shm_outputs(&reply, pair.output.get(), offsets)?,
        _ => reply
            .outputs
            .iter()
            .map(|o| o.tensor())
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(response(outputs, reply.timing, sent, replied, priority))
}

/// An inference request as the direct client POSTs it.
struct InferPost {
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl InferPost {
    /// `call` as an HTTP POST (Triton's binary tensors where it carries
    /// tensors inline).
    fn of(call: &Call) -> Result<InferPost, SchedError> {
        let (body, json_len) = crate::wire::http_request(call)?;
        let headers = match json_len {
            Some(n) => vec![
                (reef_server::http::infer::HEADER_LENGTH, n.to_string()),
                ("content-type", "application/octet-stream".into()),
            ],
            None => vec![("content-type", "application/json".into())],
        };
        Ok(InferPost {
            path: format!("/v2/models/{}/infer", call.model),
            headers,
            body,
        })
    }
}

/// One RT inference from a runtime task through `direct`'s polling
/// exchange ([`RemoteService::with_polling_rt`]): the inputs written into
/// a pair of `shm` (taken, registered through `wire` where none is free)
/// or carried in the message, the request written, the answer polled for,
/// the outputs read.
async fn infer_polling(
    direct: &DirectHttp,
    shm: Option<&ShmPool>,
    wire: &Wire,
    info: &ModelInfo,
    mut call: Call,
    tensors: Vec<Tensor>,
) -> Result<InferResponse, SchedError> {
    let (pair, offsets) = match shm {
        Some(pool) => {
            let (in_total, out_total, outputs) = shm_sizes(info, &tensors)?;
            let pair = pool.take(wire, in_total, out_total).await?;
            match fill_pair(&pair, &mut call, &tensors, outputs) {
                Ok(offsets) => (Some(pair), Some(offsets)),
                Err(e) => {
                    pool.give_back(pair);
                    return Err(e);
                }
            }
        }
        None => (None, None),
    };
    drop(tensors);
    let r = async {
        let post = InferPost::of(&call)?;
        let (answer, sent, replied) = direct.exchange(&post.path, &post.headers, &post.body).await;
        direct_response(
            answer,
            &format!("POST {}", post.path),
            pair.as_ref(),
            offsets.as_deref(),
            sent,
            replied,
            Priority::Rt,
        )
    }
    .await;
    if let (Some(pool), Some(pair)) = (shm, pair) {
        pool.give_back(pair);
    }
    r
}

impl RemoteService {
    /// Connects to `url` and reads the metadata of `models`. `stats_from`
    /// supplies scheduler statistics (preemptions) when the server runs in
    /// this process.
    pub async fn connect(
        url: &str,
        protocol: Protocol,
        models: &[String],
        stats_from: Option<Arc<dyn Service>>,
    ) -> Result<RemoteService, SchedError> {
        let wire = Wire::connect(url, protocol).await?;
        let rt_wire = Wire::connect(url, protocol).await?;
        let mut infos = vec![];
        for m in models {
            let (inputs, outputs) = wire.metadata(m).await?;
            infos.push(ModelInfo {
                name: m.clone(),
                default_priority: Priority::Be,
                inputs,
                outputs,
                ready: true,
            });
        }
        Ok(RemoteService {
            wire,
            rt_wire,
            protocol,
            models: infos,
            handle: tokio::runtime::Handle::current(),
            stats_from,
            shm: None,
            url: url.to_string(),
            direct: None,
            rt_polls: false,
        })
    }

    /// Sends inputs and receives outputs through system shared memory (the
    /// server must allow client shared memory); see the module docs.
    pub fn with_shared_memory(self) -> Self {
        self.with_transport(Transport {
            inputs: None,
            outputs: None,
        })
    }

    /// Sends inputs and receives outputs through CUDA shared memory made by
    /// `alloc` (the server must allow client shared memory and run in
    /// another process); see the module docs. [`Service::shutdown`]
    /// unregisters the regions before their memory is freed.
    pub fn with_cuda_shared_memory(self, alloc: CudaAllocator) -> Self {
        self.with_transport(Transport {
            inputs: Some(alloc.clone()),
            outputs: Some(alloc),
        })
    }

    /// Sends inputs through CUDA shared memory made by `alloc` (as
    /// [`RemoteService::with_cuda_shared_memory`]) and receives outputs
    /// through system shared memory: the server writes each output into
    /// host memory the client reads directly, as the in-process scheduler
    /// hands its outputs over in host memory, instead of copying it into
    /// the client's device memory for the client to copy back.
    pub fn with_cuda_inputs_system_outputs(self, alloc: CudaAllocator) -> Self {
        self.with_transport(Transport {
            inputs: Some(alloc),
            outputs: None,
        })
    }

    /// Sends RT requests as `how` says ([`RtClient`]).
    pub fn with_rt_client(self, how: RtClient) -> Result<Self, SchedError> {
        match how {
            RtClient::Direct => self.with_direct_rt(),
            RtClient::Poll => self.with_polling_rt(),
            RtClient::Runtime => Ok(self),
        }
    }

    /// Sends RT requests from a task on the client's runtime that uploads
    /// the inputs, writes the request on a kept-alive HTTP/1.1 connection
    /// and polls that connection for the answer itself, yielding to the
    /// runtime's other tasks between looks: the runtime path's upload and
    /// readback, without hyper's connection task between the request and
    /// the socket. The task keeps a runtime worker busy while its answer is
    /// out. HTTP only; BE requests keep the runtime's HTTP client.
    pub fn with_polling_rt(self) -> Result<Self, SchedError> {
        let mut s = self.with_direct_rt()?;
        s.rt_polls = true;
        Ok(s)
    }

    /// Sends RT requests on the thread that submits them, through a direct
    /// HTTP/1.1 client whose reader thread polls for their answers
    /// (reef-bench's `direct` module), instead of through the runtime: an
    /// RT arrival goes out the moment its open-loop thread submits it,
    /// with its input upload on that thread too. HTTP only; BE requests
    /// keep the runtime's path. Where no free shared memory pair fits, an
    /// RT request takes the runtime's path as well (which makes one).
    pub fn with_direct_rt(mut self) -> Result<Self, SchedError> {
        if self.protocol != Protocol::Http {
            return Err(SchedError::InvalidInput(
                "direct RT requests speak HTTP only (--protocol http)".into(),
            ));
        }
        let client =
            DirectHttp::new(&self.url).map_err(|e| SchedError::InvalidInput(e.to_string()))?;
        self.direct = Some(Arc::new(client));
        Ok(self)
    }

    /// Sends RT request `call` through `direct` on this thread, with
    /// `shm` (the pair taken for it and the outputs' names and sizes) when
    /// tensors travel through shared memory; the answer reaches `tx` from
    /// the direct client's reader thread (or from this one, where it could
    /// not be sent).
    fn send_direct(
        &self,
        direct: &DirectHttp,
        mut call: Call,
        tensors: Vec<Tensor>,
        shm: Option<(ShmPair, Vec<(String, u64)>)>,
        priority: Priority,
        tx: tokio::sync::oneshot::Sender<Result<InferResponse, SchedError>>,
    ) {
        let pool = self.shm.clone();
        let give_back = move |pair: Option<ShmPair>| {
            if let (Some(pool), Some(pair)) = (&pool, pair) {
                pool.give_back(pair);
            }
        };
        // Where the outputs go in the pair's output region, once the inputs
        // are in its input region.
        let (pair, offsets) = match shm {
            Some((pair, outputs)) => {
                let offsets = fill_pair(&pair, &mut call, &tensors, outputs).map(Some);
                (Some(pair), offsets)
            }
            None => (None, Ok(None)),
        };
        let prepared = offsets.and_then(|o| Ok((o, InferPost::of(&call)?)));
        let (offsets, post) = match prepared {
            Ok(b) => b,
            Err(e) => {
                give_back(pair);
                let _ = tx.send(Err(e));
                return;
            }
        };
        let what = format!("POST {}", post.path);
        let done: crate::direct::Done = Box::new(move |answer, sent, replied| {
            let r = direct_response(
                answer,
                &what,
                pair.as_ref(),
                offsets.as_deref(),
                sent,
                replied,
                priority,
            );
            give_back(pair);
            let _ = tx.send(r);
        });
        if let Err((e, done)) = direct.post(&post.path, &post.headers, &post.body, done) {
            let now = Instant::now();
            done(Err(e), now, now);
        }
    }

    fn with_transport(mut self, transport: Transport) -> Self {
        static POOLS: AtomicUsize = AtomicUsize::new(0);
        let n = POOLS.fetch_add(1, Ordering::Relaxed);
        self.shm = Some(Arc::new(ShmPool {
            transport,
            free: Mutex::new(Vec::new()),
            made: AtomicUsize::new(0),
            serial: AtomicUsize::new(0),
            returned: tokio::sync::Notify::new(),
            prefix: format!("reef-bench-{}-{n}", std::process::id()),
        }));
        self
    }

    /// Registers `per_model` region pairs sized for one sample of each
    /// model (at most [`MAX_PAIRS`] in all) before any request, so that
    /// the server maps regions while no request waits on it. Returns the
    /// number of pairs made; none without shared memory.
    pub async fn prepare_shared_memory(&self, per_model: usize) -> Result<usize, SchedError> {
        let Some(pool) = &self.shm else {
            return Ok(0);
        };
        let mut made = 0;
        for info in &self.models {
            let input: u64 = info
                .inputs
                .iter()
                .map(|t| {
                    let n: i64 = t.shape.iter().map(|&d| d.max(1)).product();
                    n as u64 * t.dtype.size() as u64
                })
                .sum();
            let output: u64 = output_sizes(info, &[])?.iter().sum();
            for _ in 0..per_model {
                if !pool.reserve() {
                    return Ok(made);
                }
                let pair = pool.make_reserved(&self.wire, input, output).await?;
                pool.give_back(pair);
                made += 1;
            }
        }
        Ok(made)
    }

    /// Region pairs registered now (free or in use); 0 without shared
    /// memory.
    pub fn shared_memory_pairs(&self) -> usize {
        self.shm
            .as_ref()
            .map_or(0, |p| p.made.load(Ordering::Acquire))
    }

    /// Unregisters every free region pair and frees its memory. Runs on a
    /// connection of its own, on a thread of its own, so that it works from
    /// any context (a runtime's worker included).
    fn release_regions(&self) {
        let Some(pool) = &self.shm else { return };
        let pairs: Vec<ShmPair> = pool
            .free
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default();
        if pairs.is_empty() {
            return;
        }
        let (url, protocol) = (self.url.clone(), self.protocol);
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| SchedError::Internal(e.to_string()))?;
                rt.block_on(async {
                    let wire = Wire::connect(&url, protocol).await?;
                    for p in &pairs {
                        pool.unregister(&wire, p).await?;
                    }
                    Ok::<(), SchedError>(())
                })
            })
            .join()
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("unregistering shared memory regions: {e}"),
            Err(_) => tracing::warn!("unregistering shared memory regions: thread panicked"),
        }
        drop(pairs);
    }
}

impl Service for RemoteService {
    fn models(&self) -> Vec<ModelInfo> {
        self.models.clone()
    }

    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        let info = self
            .models
            .iter()
            .find(|m| m.name == req.model)
            .ok_or_else(|| SchedError::UnknownModel(req.model.clone()))?;
        let tensors = req
            .inputs
            .iter()
            .map(|i| {
                i.host().cloned().ok_or_else(|| {
                    SchedError::InvalidInput(
                        "a request to a remote server takes its inputs in host memory".into(),
                    )
                })
            })
            .collect::<Result<Vec<Tensor>, _>>()?;
        let call = Call {
            model: req.model.clone(),
            inputs: info
                .inputs
                .iter()
                .zip(&tensors)
                .map(|(i, t)| CallInput {
                    name: i.name.clone(),
                    dtype: t.dtype(),
                    shape: t.shape.clone(),
                    data: Data::Inline(t.clone()),
                })
                .collect(),
            outputs: vec![],
            priority: req.priority,
            // Ask for the server's own timing of the request.
            timing: true,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let priority = req.priority.unwrap_or(Priority::Be);
        let wire = match priority {
            Priority::Rt => self.rt_wire.clone(),
            Priority::Be => self.wire.clone(),
        };
        if let (Priority::Rt, Some(direct), true) = (priority, &self.direct, self.rt_polls) {
            let (direct, shm, info) = (direct.clone(), self.shm.clone(), info.clone());
            self.handle.spawn(async move {
                let r = infer_polling(&direct, shm.as_deref(), &wire, &info, call, tensors).await;
                let _ = tx.send(r);
            });
            return Ok(rx);
        }
        if let (Priority::Rt, Some(direct)) = (priority, &self.direct) {
            // Without a free pair that fits, the runtime's path makes one.
            let shm = match &self.shm {
                None => Some(None),
                Some(pool) => shm_sizes(info, &tensors).ok().and_then(|(i, o, outputs)| {
                    pool.try_take(i, o).map(|pair| Some((pair, outputs)))
                }),
            };
            if let Some(shm) = shm {
                self.send_direct(direct, call, tensors, shm, priority, tx);
                return Ok(rx);
            }
        }
        let shm = self.shm.clone();
        let info = info.clone();
        self.handle.spawn(async move {
            let r = async {
                let (outputs, timing, sent, replied) = match &shm {
                    Some(pool) => {
                        infer_via_shm(pool, &wire, &info, call, tensors, priority).await?
                    }
                    None => {
                        drop(tensors);
                        let sent = Instant::now();
                        let reply = wire.infer(call).await?;
                        let replied = Instant::now();
                        let tensors = reply
                            .outputs
                            .iter()
                            .map(|o| o.tensor())
                            .collect::<Result<Vec<_>, _>>()?;
                        (tensors, reply.timing, sent, replied)
                    }
                };
                Ok(response(outputs, timing, sent, replied, priority))
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

    /// Unregisters the shared memory regions, then shuts the in-process
    /// scheduler down (when there is one).
    fn shutdown(&self) {
        self.release_regions();
        if let Some(s) = &self.stats_from {
            s.shutdown();
        }
    }
}
