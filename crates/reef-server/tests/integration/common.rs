//! An in-test scheduler (`TestService`) computing simple functions, and
//! helpers starting the real server on ephemeral ports.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_model::{DType, Tensor};
use reef_sched::{
    DeviceStats, GraphSource, InferRequest, InferResponse, Input, LatencySummary, ModelInfo,
    Priority, SchedError, SchedStats, Service, SharedRegion, TaskStats, TensorInfo, Ticket,
    IPC_HANDLE_BYTES,
};
use reef_server::{Server, ServerConfig};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

fn ti(name: &str, dtype: DType, shape: &[i64]) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    }
}

fn info(
    name: &str,
    prio: Priority,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    ready: bool,
) -> ModelInfo {
    ModelInfo {
        name: name.into(),
        default_priority: prio,
        inputs,
        outputs,
        ready,
    }
}

/// The name of the test service's second device: quotes, a backslash and a
/// newline, which metric label values must escape.
pub const TEST_DEVICE_1: &str = "gpu \"1\" C:\\dev\nH100";

/// Models the test service knows.
///
/// - `add`: a, b FP32 [-1,4] -> sum = a+b, diff = a-b (default RT)
/// - `mixed`: x INT64 [-1,3], m BOOL [-1,3], k INT32 [-1,3] -> y = -x, nm = !m, k2 = 2k (default BE)
/// - `busy`: always Overloaded; `broken`: answers with no outputs;
/// - `loading`: not ready; `slow`: x FP32 [1,2] -> never answers until shutdown (BE)
/// - models loaded through `load_model`: x FP32 [-1,4] -> y = x
///
/// Its statistics describe two devices (see `device_stats`) summing to the
/// aggregate `stats`. Its devices map "CUDA IPC handles" of memory made by
/// [`TestService::export`] (host memory standing in for a client's device
/// allocation), as a GPU service maps real ones.
pub struct TestService {
    /// Memory exported for CUDA shared memory, by handle.
    exported: Mutex<HashMap<Vec<u8>, Arc<FakeDeviceMemory>>>,
    /// Inputs that arrived as shared device regions (not host tensors).
    pub shared_inputs: AtomicUsize,
    models: Mutex<Vec<ModelInfo>>,
    /// Priority of the last submitted request (as given).
    pub last_priority: Mutex<Option<Option<Priority>>>,
    /// Slow tasks whose ticket was dropped before an answer.
    pub cancelled: Arc<AtomicUsize>,
    /// Set by shutdown().
    pub shut_down: AtomicBool,
    /// Loaded models: name -> default priority.
    pub loaded: Mutex<HashMap<String, Priority>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl TestService {
    pub fn new() -> Arc<Self> {
        let f = DType::F32;
        let models = vec![
            info(
                "add",
                Priority::Rt,
                vec![ti("a", f, &[-1, 4]), ti("b", f, &[-1, 4])],
                vec![ti("sum", f, &[-1, 4]), ti("diff", f, &[-1, 4])],
                true,
            ),
            info(
                "mixed",
                Priority::Be,
                vec![
                    ti("x", DType::I64, &[-1, 3]),
                    ti("m", DType::Bool, &[-1, 3]),
                    ti("k", DType::I32, &[-1, 3]),
                ],
                vec![
                    ti("y", DType::I64, &[-1, 3]),
                    ti("nm", DType::Bool, &[-1, 3]),
                    ti("k2", DType::I32, &[-1, 3]),
                ],
                true,
            ),
            info(
                "busy",
                Priority::Be,
                vec![ti("x", f, &[-1, 4])],
                vec![ti("y", f, &[-1, 4])],
                true,
            ),
            info(
                "broken",
                Priority::Be,
                vec![ti("x", f, &[-1, 4])],
                vec![ti("y", f, &[-1, 4])],
                true,
            ),
            info(
                "loading",
                Priority::Be,
                vec![ti("x", f, &[-1, 4])],
                vec![ti("y", f, &[-1, 4])],
                false,
            ),
            info(
                "slow",
                Priority::Be,
                vec![ti("x", f, &[1, 2])],
                vec![ti("y", f, &[1, 2])],
                true,
            ),
        ];
        Arc::new(TestService {
            exported: Mutex::new(HashMap::new()),
            shared_inputs: AtomicUsize::new(0),
            models: Mutex::new(models),
            last_priority: Mutex::new(None),
            cancelled: Arc::new(AtomicUsize::new(0)),
            shut_down: AtomicBool::new(false),
            loaded: Mutex::new(HashMap::new()),
            stop: tokio::sync::watch::Sender::new(false),
        })
    }
}

/// Host memory standing in for a client's device allocation.
#[derive(Debug)]
pub struct FakeDeviceMemory {
    bytes: Mutex<Vec<u8>>,
}

impl FakeDeviceMemory {
    /// Writes `bytes` at `offset` (what the client's upload does).
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        self.bytes.lock().unwrap()[offset..offset + bytes.len()].copy_from_slice(bytes);
    }

    /// Reads `len` bytes at `offset`.
    pub fn read(&self, offset: usize, len: usize) -> Vec<u8> {
        self.bytes.lock().unwrap()[offset..offset + len].to_vec()
    }
}

/// The first `byte_size` bytes of an exported allocation, as a device maps
/// them.
#[derive(Debug)]
struct FakeMapping {
    memory: Arc<FakeDeviceMemory>,
    byte_size: usize,
}

impl SharedRegion for FakeMapping {
    fn byte_size(&self) -> usize {
        self.byte_size
    }

    fn read(&self, offset: usize, out: &mut [u8]) -> reef_exec::Result<()> {
        reef_exec::shared::check_span("read", self.byte_size, offset, out.len())?;
        out.copy_from_slice(&self.memory.read(offset, out.len()));
        Ok(())
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> reef_exec::Result<()> {
        reef_exec::shared::check_span("write", self.byte_size, offset, bytes.len())?;
        self.memory.write(offset, bytes);
        Ok(())
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl TestService {
    /// Makes `byte_size` bytes of "device memory" filled with NaN bytes
    /// and returns the handle a client registers for it.
    pub fn export(&self, byte_size: usize) -> (Vec<u8>, Arc<FakeDeviceMemory>) {
        let mut exported = self.exported.lock().unwrap();
        let mut handle = vec![0x5a; IPC_HANDLE_BYTES];
        handle[..8].copy_from_slice(&(exported.len() as u64).to_le_bytes());
        let memory = Arc::new(FakeDeviceMemory {
            bytes: Mutex::new(vec![0xff; byte_size]),
        });
        exported.insert(handle.clone(), memory.clone());
        (handle, memory)
    }
}

/// A request's inputs as host tensors (shared ones read from their region,
/// as the device copies them).
fn host_inputs(inputs: &[Input]) -> Result<Vec<Tensor>, SchedError> {
    inputs
        .iter()
        .map(|i| match i {
            Input::Host(t) => Ok(t.clone()),
            Input::Shared(s) => {
                let mut bytes = vec![0u8; s.byte_len()];
                s.region
                    .read(s.offset, &mut bytes)
                    .map_err(|e| SchedError::Internal(e.to_string()))?;
                Tensor::from_bytes(s.dtype, s.shape.clone(), &bytes)
                    .map_err(|e| SchedError::Internal(e.to_string()))
            }
        })
        .collect()
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.as_f32().map(<[f32]>::to_vec).unwrap_or_default()
}

fn compute(model: &str, inputs: &[Tensor]) -> Result<Vec<Tensor>, SchedError> {
    let bad = |e: reef_model::ModelError| SchedError::Internal(e.to_string());
    match model {
        "add" => {
            let (a, b) = (f32s(&inputs[0]), f32s(&inputs[1]));
            let shape = inputs[0].shape.clone();
            let sum = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            let diff = a.iter().zip(&b).map(|(x, y)| x - y).collect();
            Ok(vec![
                Tensor::f32(shape.clone(), sum).map_err(bad)?,
                Tensor::f32(shape, diff).map_err(bad)?,
            ])
        }
        "mixed" => {
            let shape = inputs[0].shape.clone();
            let y = inputs[0].to_i64_vec().iter().map(|v| -v).collect();
            let nm = inputs[1].to_i64_vec().iter().map(|&v| v == 0).collect();
            let k2 = inputs[2]
                .to_i64_vec()
                .iter()
                .map(|&v| (2 * v) as i32)
                .collect();
            Ok(vec![
                Tensor::i64(shape.clone(), y).map_err(bad)?,
                Tensor::bool(shape.clone(), nm).map_err(bad)?,
                Tensor::i32(shape, k2).map_err(bad)?,
            ])
        }
        "broken" => Ok(vec![]),
        _ => Ok(vec![inputs[0].clone()]),
    }
}

impl Service for TestService {
    fn models(&self) -> Vec<ModelInfo> {
        self.models.lock().unwrap().clone()
    }

    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        *self.last_priority.lock().unwrap() = Some(req.priority);
        let info = self
            .models()
            .into_iter()
            .find(|m| m.name == req.model)
            .ok_or_else(|| SchedError::UnknownModel(req.model.clone()))?;
        if req.model == "busy" {
            return Err(SchedError::Overloaded("BE queue full".into()));
        }
        if self.shut_down.load(Ordering::SeqCst) {
            return Err(SchedError::NotReady(req.model));
        }
        let priority = req.priority.unwrap_or(info.default_priority);
        let shared = req
            .inputs
            .iter()
            .filter(|i| matches!(i, Input::Shared(_)))
            .count();
        self.shared_inputs.fetch_add(shared, Ordering::SeqCst);
        let inputs = host_inputs(&req.inputs)?;
        let (tx, rx) = oneshot::channel();
        if req.model == "slow" {
            // Answered only at shutdown; a ticket dropped before counts as cancelled.
            let cancelled = self.cancelled.clone();
            let mut stop = self.stop.subscribe();
            let mut tx = tx;
            tokio::spawn(async move {
                tokio::select! {
                    _ = tx.closed() => {
                        cancelled.fetch_add(1, Ordering::SeqCst);
                    }
                    _ = stop.wait_for(|s| *s) => {
                        let _ = tx.send(Err(SchedError::Cancelled("shutdown".into())));
                    }
                }
            });
            return Ok(rx);
        }
        let arrival = req.arrival;
        tokio::spawn(async move {
            let queued = arrival.elapsed();
            let result = compute(&req.model, &inputs).map(|outputs| InferResponse {
                outputs,
                priority,
                stats: TaskStats {
                    queued,
                    latency: arrival.elapsed(),
                    ..TaskStats::default()
                },
                remote: None,
            });
            let _ = tx.send(result);
        });
        Ok(rx)
    }

    fn load_model(
        &self,
        name: &str,
        _source: GraphSource,
        default_priority: Priority,
    ) -> Result<(), SchedError> {
        let f = DType::F32;
        let mut models = self.models.lock().unwrap();
        models.retain(|m| m.name != name);
        models.push(info(
            name,
            default_priority,
            vec![ti("x", f, &[-1, 4])],
            vec![ti("y", f, &[-1, 4])],
            true,
        ));
        self.loaded
            .lock()
            .unwrap()
            .insert(name.into(), default_priority);
        Ok(())
    }

    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        let mut models = self.models.lock().unwrap();
        let before = models.len();
        models.retain(|m| m.name != name);
        if models.len() == before {
            return Err(SchedError::UnknownModel(name.into()));
        }
        Ok(())
    }

    fn stats(&self) -> SchedStats {
        SchedStats {
            device: "test device".into(),
            mode: "reef".into(),
            rt_queue_depth: 2,
            be_queue_depth: 5,
            completed: [7, 11],
            preemptions: 13,
            kernels_rerun: 17,
            preempt_latency_us: LatencySummary {
                count: 13,
                mean: 40.0,
                p50: 35.0,
                p99: 90.0,
                max: 120.0,
            },
            preempt_raise_us: LatencySummary {
                count: 13,
                mean: 4.0,
                p50: 3.0,
                p99: 9.0,
                max: 11.0,
            },
            drain_device_us: LatencySummary::default(),
            drain_poll_gap_us: LatencySummary::default(),
            padding_latency_us: LatencySummary::default(),
            busy_fraction: 0.25,
            padded_kernels: 19,
            pad_launches: 23,
            slowest_drains: Vec::new(),
            contexts_made: 29,
            slowest_steps: Vec::new(),
        }
    }

    /// Two devices whose counters sum to `stats()` (busy fractions average
    /// to it); device 1 is out of rotation and its name needs escaping.
    fn device_stats(&self) -> Vec<DeviceStats> {
        let total = self.stats();
        let device =
            |index: usize, name: &str, healthy: bool, rt, be, done, pre, busy| DeviceStats {
                index,
                device: name.into(),
                healthy,
                stats: SchedStats {
                    device: name.into(),
                    rt_queue_depth: rt,
                    be_queue_depth: be,
                    completed: done,
                    preemptions: pre,
                    busy_fraction: busy,
                    ..total.clone()
                },
            };
        vec![
            device(0, "test device 0", true, 1, 2, [3, 1], 5, 0.125),
            device(1, TEST_DEVICE_1, false, 1, 3, [4, 10], 8, 0.375),
        ]
    }

    /// Devices 0 and 1 map memory made by [`TestService::export`].
    fn open_shared(
        &self,
        device: usize,
        raw_handle: &[u8],
        byte_size: usize,
    ) -> Result<Arc<dyn SharedRegion>, SchedError> {
        let bad = |m: String| Err(SchedError::InvalidInput(m));
        if device > 1 {
            return bad(format!("device {device} does not exist (devices 0 to 1)"));
        }
        if raw_handle.len() != IPC_HANDLE_BYTES {
            return bad(format!(
                "a CUDA IPC memory handle has {IPC_HANDLE_BYTES} bytes, got {}",
                raw_handle.len()
            ));
        }
        let Some(memory) = self.exported.lock().unwrap().get(raw_handle).cloned() else {
            return bad("cannot map the CUDA IPC handle (unknown handle)".into());
        };
        let len = memory.bytes.lock().unwrap().len();
        if byte_size > len {
            return bad(format!(
                "byte size {byte_size} exceeds the shared allocation's {len} bytes"
            ));
        }
        Ok(Arc::new(FakeMapping { memory, byte_size }))
    }

    fn shutdown(&self) {
        self.shut_down.store(true, Ordering::SeqCst);
        self.stop.send_replace(true);
    }
}

/// A running server.
pub struct Running {
    pub http: String,
    pub grpc: String,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), reef_server::ServerError>>>,
}

impl Running {
    /// Triggers shutdown and waits for serve() to return.
    pub async fn stop(mut self) -> Result<(), reef_server::ServerError> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("server task panicked"),
            None => Ok(()),
        }
    }

    /// Triggers shutdown without waiting.
    pub fn trigger_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Waits for serve() to return.
    pub async fn join(mut self) -> Result<(), reef_server::ServerError> {
        match self.handle.take() {
            Some(h) => h.await.expect("server task panicked"),
            None => Ok(()),
        }
    }
}

/// Starts the real server over `service` on 127.0.0.1 ephemeral ports.
pub async fn start_with(service: Arc<dyn Service>, config: ServerConfig) -> Running {
    let server = Server::bind(config).await.expect("bind");
    let (http_addr, grpc_addr) = (server.http_addr(), server.grpc_addr());
    let (tx, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(service, async move {
        let _ = rx.await;
    }));
    Running {
        http: format!("http://{http_addr}"),
        grpc: format!("http://{grpc_addr}"),
        stop: Some(tx),
        handle: Some(handle),
    }
}

/// Starts the server with the default test config.
pub async fn start(service: Arc<dyn Service>) -> Running {
    start_with(service, ServerConfig::localhost_ephemeral()).await
}

/// A model repository whose `model/config.toml` gives `model` (served by the
/// in-test service) a batch limit and default priority, so the server knows
/// them; `None` (with a SKIP line) when the zoo is empty.
pub fn batch_limit_repository(
    model: &str,
    max_batch: usize,
    priority: Priority,
) -> Option<tempfile::TempDir> {
    let Some(zoo) = reef_zoo::names().first().copied() else {
        println!("SKIP batch-limit checks: reef_zoo::names() is empty");
        return None;
    };
    let repo = tempfile::tempdir().expect("temp dir");
    let dir = repo.path().join(model);
    std::fs::create_dir_all(&dir).expect("model folder");
    std::fs::write(
        dir.join("config.toml"),
        format!("source = \"zoo:{zoo}\"\npriority = \"{priority}\"\nmax_batch = {max_batch}\n"),
    )
    .expect("config.toml");
    Some(repo)
}

/// Seeded random f32 values in [-2, 2), never all zero.
pub fn rand_f32(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

/// Seeded random i64 values.
pub fn rand_i64(seed: u64, n: usize) -> Vec<i64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| rng.random_range(-1_000_000_000_000i64..1_000_000_000_000))
        .collect()
}

/// Polls `cond` for up to 5 s.
pub async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}
