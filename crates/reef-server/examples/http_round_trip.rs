//! The floor of one HTTP/1.1 round trip to the server on its Unix socket,
//! one request at a time: `GET /v2/health/live` (the transport alone) and
//! an inference on a 16-element model whose service answers from a
//! spinning thread of its own, as the scheduler does (the transport plus
//! the inference handler: routing, the body, decoding, the hand-off to the
//! scheduler and back, encoding). Each from three clients in turn:
//! reqwest, hyper's connection API (what `reef bench disb --protocol http`
//! uses), and a thread that writes the request bytes and spins on a
//! non-blocking read (no client runtime at all). The server runs on a
//! runtime of `--busy-poll` workers (default 1), the two async clients on a
//! runtime of their own with one busy-polling worker, as `reef serve` and
//! `reef bench disb --server` run on one host.
//!
//! ```text
//! cargo run -p reef-server --release --example http_round_trip -- [--requests N] [--rounds R] [--busy-poll K] [--echo-blocks]
//! ```
//!
//! `--echo-blocks`: the echo thread sleeps on its queue instead of spinning
//! (hosts with fewer cores than spinning threads).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use reef_model::{DType, Tensor};
use reef_sched::{
    GraphSource, InferRequest, InferResponse, ModelInfo, Priority, SchedError, SchedStats, Service,
    TaskStats, TensorInfo, Ticket,
};
use reef_server::{Server, ServerConfig};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const HEALTH: &str = "/v2/health/live";
const INFER: &str = "/v2/models/echo/infer";
/// The echo model's elements.
const ELEMS: usize = 16;
/// Between requests, so that every round trip starts from an idle server.
const GAP: Duration = Duration::from_micros(1000);

type Job = (
    InferRequest,
    tokio::sync::oneshot::Sender<Result<InferResponse, SchedError>>,
);

/// One model, `echo`, whose answer is its input, sent from a thread that
/// spins on its queue (the scheduler's hand-off without a device).
struct Echo {
    info: ModelInfo,
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Echo {
    /// Starts the answering thread: spinning on its queue, or with `block`
    /// sleeping on it (a wake-up per request, as a scheduler that went
    /// idle; for hosts with fewer cores than spinning threads).
    fn start(block: bool) -> Echo {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::spawn(move || loop {
            let job = if block {
                rx.recv()
                    .map_err(|_| std::sync::mpsc::TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match job {
                Ok((req, tx)) => {
                    let outputs = req
                        .inputs
                        .iter()
                        .filter_map(|i| i.host().cloned())
                        .collect();
                    let _ = tx.send(Ok(InferResponse {
                        outputs,
                        priority: req.priority.unwrap_or(Priority::Rt),
                        stats: TaskStats {
                            latency: req.arrival.elapsed(),
                            ..TaskStats::default()
                        },
                        remote: None,
                    }));
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => std::hint::spin_loop(),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
            }
        });
        let ti = |name: &str| TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: vec![1, ELEMS as i64],
        };
        Echo {
            info: ModelInfo {
                name: "echo".into(),
                default_priority: Priority::Rt,
                inputs: vec![ti("x")],
                outputs: vec![ti("x")],
                ready: true,
            },
            jobs,
        }
    }
}

impl Service for Echo {
    fn models(&self) -> Vec<ModelInfo> {
        vec![self.info.clone()]
    }
    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((req, tx))
            .map_err(|_| SchedError::Internal("the echo thread is gone".into()))?;
        Ok(rx)
    }
    fn load_model(&self, name: &str, _: GraphSource, _: Priority) -> Result<(), SchedError> {
        Err(SchedError::UnknownModel(name.into()))
    }
    fn unload_model(&self, name: &str) -> Result<(), SchedError> {
        Err(SchedError::UnknownModel(name.into()))
    }
    fn stats(&self) -> SchedStats {
        SchedStats::default()
    }
    fn shutdown(&self) {}
}

/// What a client sends: a method, a path and a body (JSON).
#[derive(Clone)]
struct Call {
    method: &'static str,
    path: &'static str,
    body: Bytes,
}

impl Call {
    fn health() -> Call {
        Call {
            method: "GET",
            path: HEALTH,
            body: Bytes::new(),
        }
    }

    /// An RT inference of 16 fixed values (the timing is what is measured).
    fn infer() -> Call {
        let data: Vec<f32> = (0..ELEMS).map(|i| (i as f32 * 0.37).sin()).collect();
        let x = Tensor::f32(vec![1, ELEMS], data).expect("16 values for [1, 16]");
        let body = serde_json::json!({
            "inputs": [{"name": "x", "shape": [1, ELEMS], "datatype": "FP32",
                        "data": x.as_f32().expect("f32")}],
            "parameters": {"priority": "rt"},
        });
        Call {
            method: "POST",
            path: INFER,
            body: Bytes::from(body.to_string()),
        }
    }

    /// The request's bytes on the wire.
    fn wire(&self) -> Vec<u8> {
        let mut w = format!(
            "{} {} HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n",
            self.method,
            self.path,
            self.body.len()
        );
        if !self.body.is_empty() {
            w.push_str("content-type: application/json\r\n");
        }
        w.push_str("\r\n");
        let mut bytes = w.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// p50 / p90 / p99 of round trips in microseconds.
fn summary(mut us: Vec<f64>) -> String {
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    format!("{:>8.1} {:>8.1} {:>8.1}", q(0.5), q(0.9), q(0.99))
}

/// The request's bytes on a socket, then a spin on non-blocking reads
/// until the answer's head and its Content-Length body are in.
fn raw_client(path: &Path, call: &Call, n: usize) -> std::io::Result<Vec<f64>> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_nonblocking(true)?;
    let req = call.wire();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = Instant::now() + GAP;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        s.write_all(&req)?;
        let mut got = Vec::new();
        loop {
            match s.read(&mut buf) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => got.extend_from_slice(&buf[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&got[..h]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= h + 4 + len {
                break;
            }
        }
        out.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

async fn reqwest_client(path: PathBuf, call: Call, n: usize) -> Result<Vec<f64>, BoxError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .unix_socket(path.as_path())
        .build()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        tokio::time::sleep(GAP).await;
        let t0 = Instant::now();
        let url = format!("http://localhost{}", call.path);
        let r = match call.method {
            "GET" => client.get(url),
            _ => client
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(call.body.clone()),
        }
        .send()
        .await?;
        r.error_for_status()?.bytes().await?;
        out.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

async fn hyper_client(path: PathBuf, call: Call, n: usize) -> Result<Vec<f64>, BoxError> {
    let io = hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(&path).await?);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        tokio::time::sleep(GAP).await;
        let t0 = Instant::now();
        let req = hyper::Request::builder()
            .method(call.method)
            .uri(call.path)
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(call.body.clone()))?;
        let r = send.send_request(req).await?;
        if !r.status().is_success() {
            return Err(format!("{} {}: {}", call.method, call.path, r.status()).into());
        }
        r.into_body().collect().await?;
        out.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

/// Runs a client on a worker of `rt` (not on this thread, which would
/// park between polls and pay a wake-up in every round trip).
fn on_worker(
    rt: &tokio::runtime::Runtime,
    client: impl std::future::Future<Output = Result<Vec<f64>, BoxError>> + Send + 'static,
) -> Result<Vec<f64>, BoxError> {
    rt.block_on(async move { tokio::spawn(client).await.map_err(|e| e.to_string())? })
}

fn args() -> Result<(usize, usize, usize, bool), BoxError> {
    let (mut n, mut rounds, mut busy, mut block) = (2000, 3, 1, false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || -> Result<usize, BoxError> {
            let v = it.next().ok_or(format!("{a} needs a value"))?;
            v.parse().map_err(|e| format!("{a} '{v}': {e}").into())
        };
        match a.as_str() {
            "--requests" => n = value()?.max(1),
            "--rounds" => rounds = value()?.max(1),
            "--busy-poll" => busy = value()?,
            "--echo-blocks" => block = true,
            other => return Err(format!("unknown argument '{other}'").into()),
        }
    }
    Ok((n, rounds, busy, block))
}

fn main() -> Result<(), BoxError> {
    let (n, rounds, busy, block) = args()?;
    let sock: PathBuf =
        std::env::temp_dir().join(format!("reef-round-trip-{}.sock", std::process::id()));
    let server_rt = reef_server::front_end_runtime(busy)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.block_on(Server::bind(ServerConfig {
        http_uds: Some(sock.clone()),
        ..ServerConfig::localhost_ephemeral()
    }))?;
    let serving = server_rt.spawn(server.run(Arc::new(Echo::start(block)), async move {
        let _ = stop_rx.await;
    }));
    let client_rt = reef_server::front_end_runtime(1)?;
    println!(
        "GET {HEALTH} and POST {INFER} ({ELEMS} FP32 in JSON) on {}, {n} requests per row, {} us apart; server: {busy} busy-polling workers",
        sock.display(),
        GAP.as_micros()
    );
    println!(
        "{:<8} {:<8} {:<28} {:>8} {:>8} {:>8}",
        "round", "call", "client", "p50 us", "p90 us", "p99 us"
    );
    for round in 1..=rounds {
        for (what, call) in [("health", Call::health()), ("infer", Call::infer())] {
            let row = |client: &str, us: Vec<f64>| {
                println!("{round:<8} {what:<8} {client:<28} {}", summary(us));
            };
            row(
                "reqwest",
                on_worker(&client_rt, reqwest_client(sock.clone(), call.clone(), n))?,
            );
            row(
                "hyper connection",
                on_worker(&client_rt, hyper_client(sock.clone(), call.clone(), n))?,
            );
            row("raw socket, spinning thread", raw_client(&sock, &call, n)?);
        }
    }
    let _ = stop_tx.send(());
    server_rt.block_on(serving)??;
    Ok(())
}
