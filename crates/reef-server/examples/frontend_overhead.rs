//! Front-end overhead of the server: round-trip latency of one image-sized
//! inference (1x3x224x224 FP32 in, 1000 FP32 out) through gRPC ModelInfer
//! (`raw_input_contents`), through HTTP with Triton binary tensors, and as a
//! direct [`Service`] call, all over an in-process service that answers at
//! once. Each protocol is measured idle and with best-effort clients of the
//! same size sending in a loop, on loopback. `--shm` adds gRPC and HTTP with
//! the tensors in system shared memory (each client registers its own input
//! and output regions once, then writes the input and reads the output per
//! request, inside the clock).
//!
//! ```text
//! cargo run -p reef-server --release --example frontend_overhead -- \
//!     [--requests N] [--be-clients K] [--interval-us U] [--only grpc|http|direct|shared] \
//!     [--stages] [--shm] [--uds]
//! ```
//!
//! `--uds` sends the gRPC and HTTP paths over the server's Unix domain
//! sockets (`ServerConfig::grpc_uds`, `ServerConfig::http_uds`) instead of
//! loopback TCP.
//!
//! The gRPC client is the one the DISB benchmark uses (`reef_server::grpc_client`
//! and the `reef_server::grpc_codec` request helpers), sharing one connection
//! between the measured client and the BE clients as `reef bench disb
//! --via-grpc` does. `--stages` also times each step of the gRPC path alone.

use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_model::tensor::rel_l2;
use reef_model::{DType, Tensor};
use reef_sched::{
    GraphSource, InferRequest, InferResponse, ModelInfo, Priority, SchedError, SchedStats, Service,
    TaskStats, TensorInfo, Ticket,
};
use reef_server::grpc_codec as codec;
use reef_server::proto::{ModelInferRequest, SystemSharedMemoryRegisterRequest};
use reef_server::shm::ClientRegion;
use reef_server::{grpc_client, Server, ServerConfig};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MODEL: &str = "image";
const INPUT_SHAPE: [usize; 4] = [1, 3, 224, 224];
const CLASSES: usize = 1000;

/// Answers every request at once with 1000 elements sampled from its input.
struct InstantService {
    info: ModelInfo,
    /// When the latest request reached the service (splits a round trip
    /// into its way in and its way out).
    last_submit: std::sync::Mutex<Option<Instant>>,
}

impl InstantService {
    fn new() -> Self {
        let ti = |name: &str, shape: Vec<i64>| TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape,
        };
        InstantService {
            info: ModelInfo {
                name: MODEL.into(),
                default_priority: Priority::Be,
                inputs: vec![ti("input", vec![-1, 3, 224, 224])],
                outputs: vec![ti("logits", vec![-1, CLASSES as i64])],
                ready: true,
            },
            last_submit: std::sync::Mutex::new(None),
        }
    }
}

/// The expected output for an input: every `stride`-th element.
fn answer(input: &[f32]) -> Vec<f32> {
    let stride = input.len() / CLASSES;
    (0..CLASSES).map(|i| input[i * stride]).collect()
}

impl Service for InstantService {
    fn models(&self) -> Vec<ModelInfo> {
        vec![self.info.clone()]
    }

    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        if let Ok(mut t) = self.last_submit.lock() {
            *t = Some(Instant::now());
        }
        let x = req
            .inputs
            .first()
            .and_then(reef_sched::Input::host)
            .and_then(Tensor::as_f32)
            .ok_or_else(|| SchedError::InvalidInput("one FP32 input expected".into()))?;
        let out = Tensor::f32(vec![1, CLASSES], answer(x))
            .map_err(|e| SchedError::Internal(e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Ok(InferResponse {
            outputs: vec![out],
            priority: req.priority.unwrap_or(Priority::Be),
            stats: TaskStats {
                latency: req.arrival.elapsed(),
                ..TaskStats::default()
            },
            remote: None,
        }));
        Ok(rx)
    }

    fn load_model(&self, name: &str, _: GraphSource, _: Priority) -> Result<(), SchedError> {
        Err(SchedError::InvalidInput(format!("cannot load '{name}'")))
    }

    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        Err(SchedError::InvalidInput(format!("cannot unload '{name}'")))
    }

    fn stats(&self) -> SchedStats {
        SchedStats::default()
    }

    fn shutdown(&self) {}
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type GrpcClient = reef_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient<
    tonic::transport::Channel,
>;

/// A client's input and output regions, registered with the server.
struct ShmPair {
    input: ClientRegion,
    output: ClientRegion,
    input_name: String,
    output_name: String,
}

impl ShmPair {
    /// Creates both regions (unique names in this process).
    fn create() -> Result<ShmPair, BoxError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = |what: &str| format!("reef-overhead-{}-{n}-{what}", std::process::id());
        let (input_name, output_name) = (name("in"), name("out"));
        let in_bytes = INPUT_SHAPE.iter().product::<usize>() * 4;
        Ok(ShmPair {
            input: ClientRegion::create(&format!("/{input_name}"), in_bytes as u64)?,
            output: ClientRegion::create(&format!("/{output_name}"), (CLASSES * 4) as u64)?,
            input_name,
            output_name,
        })
    }

    fn regions(&self) -> [(&str, &ClientRegion); 2] {
        [
            (&self.input_name, &self.input),
            (&self.output_name, &self.output),
        ]
    }
}

/// One way of sending a request and getting the output tensor back. The
/// shared memory paths hold their client's regions (made on first use).
#[derive(Clone)]
enum Path {
    Direct(Arc<dyn Service>),
    Grpc(GrpcClient),
    Http(reqwest::Client, String),
    GrpcShm(GrpcClient, Option<Arc<ShmPair>>),
    /// Client, inference URL, server base URL, regions.
    HttpShm(reqwest::Client, String, String, Option<Arc<ShmPair>>),
}

impl Path {
    fn name(&self) -> &'static str {
        match self {
            Path::Direct(_) => "direct Service call",
            Path::Grpc(_) => "gRPC raw_input_contents",
            Path::Http(..) => "HTTP binary tensors",
            Path::GrpcShm(..) => "gRPC system shared memory",
            Path::HttpShm(..) => "HTTP system shared memory",
        }
    }

    /// The same path for another client: shared memory regions are per
    /// client, so a worker makes its own.
    fn worker(&self) -> Path {
        match self {
            Path::GrpcShm(c, _) => Path::GrpcShm(c.clone(), None),
            Path::HttpShm(c, url, base, _) => {
                Path::HttpShm(c.clone(), url.clone(), base.clone(), None)
            }
            other => other.clone(),
        }
    }

    /// This client's regions, created and registered on first use.
    async fn regions(&mut self) -> Result<Arc<ShmPair>, BoxError> {
        match self {
            Path::GrpcShm(client, slot) => {
                if slot.is_none() {
                    let pair = ShmPair::create()?;
                    for (name, r) in pair.regions() {
                        client
                            .system_shared_memory_register(SystemSharedMemoryRegisterRequest {
                                name: name.to_string(),
                                key: r.key().to_string(),
                                offset: 0,
                                byte_size: r.byte_size(),
                            })
                            .await?;
                    }
                    *slot = Some(Arc::new(pair));
                }
                Ok(slot.clone().ok_or("no regions")?)
            }
            Path::HttpShm(client, _, base, slot) => {
                if slot.is_none() {
                    let pair = ShmPair::create()?;
                    for (name, r) in pair.regions() {
                        let url = format!("{base}/v2/systemsharedmemory/region/{name}/register");
                        let body = serde_json::json!({"key": r.key(), "offset": 0, "byte_size": r.byte_size()});
                        let resp = client.post(url).json(&body).send().await?;
                        if !resp.status().is_success() {
                            return Err(format!("register {name}: {}", resp.text().await?).into());
                        }
                    }
                    *slot = Some(Arc::new(pair));
                }
                Ok(slot.clone().ok_or("no regions")?)
            }
            _ => Err("no shared memory on this path".into()),
        }
    }

    async fn infer(&mut self, input: &Tensor, priority: Priority) -> Result<Tensor, BoxError> {
        match self {
            Path::Direct(s) => {
                let ticket = s.submit(InferRequest {
                    model: MODEL.into(),
                    inputs: vec![input.clone().into()],
                    priority: Some(priority),
                    arrival: Instant::now(),
                })?;
                let mut r = ticket.await??;
                Ok(r.outputs.remove(0))
            }
            Path::Grpc(client) => {
                let names = ["input".to_string()];
                let msg = codec::infer_request(
                    MODEL,
                    &names,
                    std::slice::from_ref(input),
                    Some(priority),
                );
                let resp = client.model_infer(msg).await?.into_inner();
                let mut outs = codec::output_tensors(&resp)?;
                Ok(outs.remove(0))
            }
            Path::GrpcShm(..) => {
                let pair = self.regions().await?;
                let Path::GrpcShm(client, _) = self else {
                    return Err("not a gRPC path".into());
                };
                let names = ["input".to_string()];
                let mut msg = codec::infer_request(
                    MODEL,
                    &names,
                    std::slice::from_ref(input),
                    Some(priority),
                );
                codec::inputs_to_shm(&mut msg, &pair.input, &pair.input_name)?;
                let outputs = [("logits".to_string(), pair.output.byte_size())];
                let offsets = codec::outputs_to_shm(&mut msg, &outputs, &pair.output_name);
                let resp = client.model_infer(msg).await?.into_inner();
                let mut outs = codec::shm_output_tensors(&resp, &pair.output, &offsets)?;
                Ok(outs.remove(0))
            }
            Path::HttpShm(..) => {
                let pair = self.regions().await?;
                let Path::HttpShm(client, url, ..) = self else {
                    return Err("not an HTTP path".into());
                };
                pair.input
                    .write(0, &reef_server::tensor_codec::tensor_bytes(input))?;
                let shm = |region: &str, size: u64| {
                    serde_json::json!({
                        "shared_memory_region": region, "shared_memory_byte_size": size,
                    })
                };
                let header = serde_json::json!({
                    "inputs": [{
                        "name": "input", "datatype": "FP32", "shape": input.shape,
                        "parameters": shm(&pair.input_name, pair.input.byte_size()),
                    }],
                    "outputs": [{
                        "name": "logits",
                        "parameters": shm(&pair.output_name, pair.output.byte_size()),
                    }],
                    "parameters": {"priority": priority.to_string()},
                });
                let r = client.post(url.as_str()).json(&header).send().await?;
                let status = r.status();
                if !status.is_success() {
                    return Err(format!("HTTP {status}: {}", r.text().await?).into());
                }
                r.bytes().await?;
                Ok(pair
                    .output
                    .read_tensor("logits", DType::F32, vec![1, CLASSES], 0)?)
            }
            Path::Http(client, url) => {
                let header = serde_json::json!({
                    "inputs": [{
                        "name": "input", "datatype": "FP32", "shape": input.shape,
                        "parameters": {"binary_data_size": input.len() * 4},
                    }],
                    "outputs": [{"name": "logits", "parameters": {"binary_data": true}}],
                    "parameters": {"priority": priority.to_string()},
                });
                let mut body = serde_json::to_vec(&header)?;
                let json_len = body.len();
                body.extend_from_slice(&input.to_bytes());
                let r = client
                    .post(url.as_str())
                    .header("Inference-Header-Content-Length", json_len.to_string())
                    .header("Content-Type", "application/octet-stream")
                    .body(body)
                    .send()
                    .await?;
                let status = r.status();
                let json_len: usize = r
                    .headers()
                    .get("Inference-Header-Content-Length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("HTTP {status}: no binary response header"))?;
                let bytes = r.bytes().await?;
                let raw = bytes
                    .get(json_len..)
                    .ok_or("HTTP response shorter than its JSON header")?;
                Ok(Tensor::from_bytes(DType::F32, vec![1, CLASSES], raw)?)
            }
        }
    }
}

fn random_input(rng: &mut ChaCha8Rng) -> Result<Tensor, BoxError> {
    let n: usize = INPUT_SHAPE.iter().product();
    let data = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    Ok(Tensor::f32(INPUT_SHAPE.to_vec(), data)?)
}

/// Latency percentiles of one run, microseconds.
struct Summary {
    p50: f64,
    p99: f64,
    mean: f64,
    be_done: u64,
    /// p50 of client start to service submit, and of submit to client end
    /// (idle runs only).
    split: Option<(f64, f64)>,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Measures `requests` RT round trips, `interval` apart, while `be_clients`
/// BE clients send in a loop over the same path.
async fn measure(
    service: &InstantService,
    path: &Path,
    inputs: &[Tensor],
    requests: usize,
    interval: Duration,
    be_clients: usize,
) -> Result<Summary, BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut be = Vec::new();
    for c in 0..be_clients {
        let mut p = path.worker();
        let input = inputs[(c + 1) % inputs.len()].clone();
        let stop = stop.clone();
        be.push(tokio::spawn(async move {
            let mut done = 0u64;
            while !stop.load(Ordering::Relaxed) {
                p.infer(&input, Priority::Be).await?;
                done += 1;
                // Yield so a path that never waits cannot starve the runtime.
                tokio::task::yield_now().await;
            }
            Ok::<u64, BoxError>(done)
        }));
    }
    let mut p = path.worker();
    let warmup = requests / 10 + 10;
    let mut lat = Vec::with_capacity(requests);
    let (mut way_in, mut way_out) = (Vec::new(), Vec::new());
    for k in 0..warmup + requests {
        let input = &inputs[k % inputs.len()];
        let t0 = Instant::now();
        let out = p.infer(input, Priority::Rt).await?;
        let end = Instant::now();
        let dt = end - t0;
        if be_clients == 0 {
            if let Some(at) = service.last_submit.lock().ok().and_then(|t| *t) {
                way_in.push((at - t0).as_secs_f64() * 1e6);
                way_out.push((end - at).as_secs_f64() * 1e6);
            }
        }
        let expected = answer(input.as_f32().ok_or("input is not FP32")?);
        let got = out.as_f32().ok_or("output is not FP32")?;
        if got.len() != expected.len() || rel_l2(got, &expected) > 1e-6 {
            return Err(format!("{}: wrong output", path.name()).into());
        }
        if k >= warmup {
            lat.push(dt.as_secs_f64() * 1e6);
        }
        if !interval.is_zero() {
            tokio::time::sleep(interval).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut be_done = 0;
    for h in be {
        be_done += h.await??;
    }
    lat.sort_by(f64::total_cmp);
    way_in.sort_by(f64::total_cmp);
    way_out.sort_by(f64::total_cmp);
    let split = (!way_in.is_empty()).then(|| (percentile(&way_in, 0.5), percentile(&way_out, 0.5)));
    Ok(Summary {
        split,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        mean: lat.iter().sum::<f64>() / lat.len() as f64,
        be_done,
    })
}

/// Times each step of the gRPC path alone (client encode, server decode,
/// tensor conversion, response encode and decode), microseconds per call.
fn stages(input: &Tensor, reps: usize) -> Result<(), BoxError> {
    let time = |f: &mut dyn FnMut() -> Result<(), BoxError>| -> Result<f64, BoxError> {
        f()?;
        let t0 = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        Ok(t0.elapsed().as_secs_f64() * 1e6 / reps as f64)
    };
    let names = ["input".to_string()];
    let msg: ModelInferRequest = codec::infer_request(
        MODEL,
        &names,
        std::slice::from_ref(input),
        Some(Priority::Rt),
    );
    let wire = msg.encode_to_vec();
    let wire_bytes = prost::bytes::Bytes::from(wire.clone());
    println!("\ngRPC stages alone (mean of {reps}, microseconds):");
    let t = time(&mut || {
        let m = codec::infer_request(
            MODEL,
            &names,
            std::slice::from_ref(input),
            Some(Priority::Rt),
        );
        std::hint::black_box(m);
        Ok(())
    })?;
    println!("  client: tensor -> ModelInferRequest       {t:8.1}");
    let t = time(&mut || {
        std::hint::black_box(msg.encode_to_vec());
        Ok(())
    })?;
    println!("  client: protobuf encode (to a Vec)        {t:8.1}");
    let t = time(&mut || {
        std::hint::black_box(ModelInferRequest::decode(wire_bytes.clone())?);
        Ok(())
    })?;
    println!("  server: protobuf decode (from Bytes)      {t:8.1}");
    let t = time(&mut || {
        let raw = msg.raw_input_contents.first().ok_or("no raw input")?;
        let shape = INPUT_SHAPE.to_vec();
        std::hint::black_box(reef_server::tensor_codec::tensor_from_raw(
            "input",
            DType::F32,
            shape,
            raw,
        )?);
        Ok(())
    })?;
    println!("  server: raw bytes -> Tensor (aligned)     {t:8.1}");
    let raw = input.to_bytes();
    let mut shifted = vec![0u8; raw.len() + 1];
    shifted[1..].copy_from_slice(&raw);
    let t = time(&mut || {
        std::hint::black_box(reef_server::tensor_codec::tensor_from_raw(
            "input",
            DType::F32,
            INPUT_SHAPE.to_vec(),
            &shifted[1..],
        )?);
        Ok(())
    })?;
    println!("  server: raw bytes -> Tensor (unaligned)   {t:8.1}");
    let t = time(&mut || {
        std::hint::black_box(shifted[1..].to_vec());
        Ok(())
    })?;
    println!("  memcpy of unaligned 600 KB                {t:8.1}");
    let mut dst = vec![0u8; raw.len()];
    let t = time(&mut || {
        reef_server::tensor_codec::copy_in_pieces(&mut dst, &shifted[1..]);
        std::hint::black_box(&dst);
        Ok(())
    })?;
    println!("  same copy in 1 KiB pieces                 {t:8.1}");
    let t = time(&mut || {
        std::hint::black_box(input.to_bytes());
        Ok(())
    })?;
    println!("  Tensor::to_bytes (600 KB)                 {t:8.1}");
    let t = time(&mut || {
        std::hint::black_box(wire.clone());
        Ok(())
    })?;
    println!("  memcpy of the 600 KB message              {t:8.1}");
    Ok(())
}

struct Args {
    requests: usize,
    be_clients: usize,
    interval: Duration,
    stages: bool,
    /// Measure only the paths whose name contains this.
    only: Option<String>,
    /// Also measure the shared memory paths.
    shm: bool,
    /// Busy-polling runtime workers (`reef serve --busy-poll`).
    busy_poll: usize,
    /// gRPC over a Unix domain socket.
    uds: bool,
}

fn args() -> Result<Args, BoxError> {
    let mut a = Args {
        requests: 2000,
        be_clients: 3,
        interval: Duration::from_micros(1000),
        stages: false,
        only: None,
        shm: false,
        busy_poll: 0,
        uds: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || -> Result<u64, BoxError> {
            Ok(it
                .next()
                .ok_or_else(|| format!("{flag} needs a value"))?
                .parse()?)
        };
        match flag.as_str() {
            "--requests" => a.requests = value()?.max(1) as usize,
            "--be-clients" => a.be_clients = value()? as usize,
            "--interval-us" => a.interval = Duration::from_micros(value()?),
            "--stages" => a.stages = true,
            "--shm" => a.shm = true,
            "--uds" => a.uds = true,
            "--busy-poll" => a.busy_poll = value()? as usize,
            "--only" => a.only = Some(it.next().ok_or("--only needs a value")?.to_lowercase()),
            other => return Err(format!("unknown argument '{other}'").into()),
        }
    }
    Ok(a)
}

async fn run(a: Args) -> Result<(), BoxError> {
    let instant = Arc::new(InstantService::new());
    let service: Arc<dyn Service> = instant.clone();
    let socket_for = |what: &str| {
        a.uds.then(|| {
            std::env::temp_dir().join(format!("reef-frontend-{what}-{}.sock", std::process::id()))
        })
    };
    let (socket, http_socket) = (socket_for("grpc"), socket_for("http"));
    let config = ServerConfig {
        allow_client_shm: a.shm,
        grpc_uds: socket.clone(),
        http_uds: http_socket.clone(),
        ..ServerConfig::localhost_ephemeral()
    };
    let server = Server::bind(config).await?;
    // Over the socket the URL's authority is unused.
    let http_base = match &http_socket {
        Some(_) => "http://localhost".to_string(),
        None => format!("http://{}", server.http_addr()),
    };
    let http_at = match &http_socket {
        Some(p) => format!("unix:{}", p.display()),
        None => http_base.clone(),
    };
    let http_client = || -> Result<reqwest::Client, BoxError> {
        let b = reqwest::Client::builder().no_proxy();
        let b = match &http_socket {
            Some(p) => b.unix_socket(p.as_path()),
            None => b,
        };
        Ok(b.build()?)
    };
    let grpc_url = match &socket {
        Some(p) => format!("unix:{}", p.display()),
        None => format!("http://{}", server.grpc_addr()),
    };
    let http_url = format!("{http_base}/v2/models/{MODEL}/infer");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let svc = service.clone();
    let serving = tokio::spawn(async move {
        server
            .run(svc, async move {
                let _ = stop_rx.await;
            })
            .await
    });

    let mut rng = ChaCha8Rng::seed_from_u64(0x5eef);
    let inputs = (0..4)
        .map(|_| random_input(&mut rng))
        .collect::<Result<Vec<_>, _>>()?;
    let grpc = grpc_client(&grpc_url).await?;
    let mut paths = vec![
        Path::Direct(service.clone()),
        Path::Grpc(grpc.clone()),
        Path::Http(http_client()?, http_url.clone()),
    ];
    if a.shm {
        paths.push(Path::GrpcShm(grpc, None));
        paths.push(Path::HttpShm(http_client()?, http_url, http_base, None));
    }
    println!(
        "{} RT requests per row ({} us apart), input {:?} FP32 ({} bytes), output {CLASSES} FP32; gRPC at {grpc_url}, HTTP at {}",
        a.requests,
        a.interval.as_micros(),
        INPUT_SHAPE,
        inputs[0].len() * 4,
        http_at
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>12}  p50 in/out us",
        "path", "BE clients", "p50 us", "p99 us", "mean us", "BE requests"
    );
    for path in &paths {
        if let Some(only) = &a.only {
            if !path.name().to_lowercase().contains(only.as_str()) {
                continue;
            }
        }
        for be in [0, a.be_clients] {
            let s = measure(&instant, path, &inputs, a.requests, a.interval, be).await?;
            println!(
                "{:<28} {:>10} {:>10.1} {:>10.1} {:>10.1} {:>12}  {}",
                path.name(),
                be,
                s.p50,
                s.p99,
                s.mean,
                s.be_done,
                s.split
                    .map(|(i, o)| format!("{i:.1} / {o:.1}"))
                    .unwrap_or_default()
            );
        }
    }
    if a.stages {
        stages(&inputs[0], 200)?;
    }
    let _ = stop_tx.send(());
    serving.await??;
    Ok(())
}

fn main() -> Result<(), BoxError> {
    let a = args()?;
    let rt = reef_server::front_end_runtime(a.busy_poll)?;
    // On a worker, as the benchmark's clients run: a future that `block_on`
    // drives on this thread would park it between polls, and each wake-up
    // would count in every round trip.
    rt.block_on(async { tokio::spawn(run(a)).await.map_err(|e| e.to_string())? })
}
