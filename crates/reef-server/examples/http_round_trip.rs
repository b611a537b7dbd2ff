//! The floor of one HTTP/1.1 round trip to the server on its Unix socket:
//! `GET /v2/health/live`, one request at a time, from three clients in
//! turn: reqwest, hyper's connection API (what `reef bench disb --protocol
//! http` uses), and a thread that writes the request bytes and spins on a
//! non-blocking read (no client runtime at all). The server runs on a
//! runtime of `--busy-poll` workers (default 1), the two async clients on a
//! runtime of their own with one busy-polling worker, as `reef serve` and
//! `reef bench disb --server` run on one host.
//!
//! ```text
//! cargo run -p reef-server --release --example http_round_trip -- [--requests N] [--rounds R] [--busy-poll K]
//! ```

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use reef_sched::{
    GraphSource, InferRequest, ModelInfo, Priority, SchedError, SchedStats, Service, Ticket,
};
use reef_server::{Server, ServerConfig};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const PATH: &str = "/v2/health/live";
/// Between requests, so that every round trip starts from an idle server.
const GAP: Duration = Duration::from_micros(1000);

/// A service with no models (the health call never reaches it).
struct NoModels;

impl Service for NoModels {
    fn models(&self) -> Vec<ModelInfo> {
        vec![]
    }
    fn submit(&self, req: InferRequest) -> Result<Ticket, SchedError> {
        Err(SchedError::UnknownModel(req.model))
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

/// p50 / p90 / p99 of round trips in microseconds.
fn summary(mut us: Vec<f64>) -> String {
    us.sort_by(f64::total_cmp);
    let q = |p: f64| us[((us.len() - 1) as f64 * p).round() as usize];
    format!("{:>8.1} {:>8.1} {:>8.1}", q(0.5), q(0.9), q(0.99))
}

/// The request's bytes on a socket, then a spin on non-blocking reads
/// until the answer's head and its Content-Length body are in.
fn raw_client(path: &Path, n: usize) -> std::io::Result<Vec<f64>> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_nonblocking(true)?;
    let req = format!("GET {PATH} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let next = Instant::now() + GAP;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        let t0 = Instant::now();
        s.write_all(req.as_bytes())?;
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

async fn reqwest_client(path: PathBuf, n: usize) -> Result<Vec<f64>, BoxError> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .unix_socket(path.as_path())
        .build()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        tokio::time::sleep(GAP).await;
        let t0 = Instant::now();
        let r = client.get(format!("http://localhost{PATH}")).send().await?;
        r.error_for_status()?.bytes().await?;
        out.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    Ok(out)
}

async fn hyper_client(path: PathBuf, n: usize) -> Result<Vec<f64>, BoxError> {
    let io = hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(&path).await?);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(conn);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        tokio::time::sleep(GAP).await;
        let t0 = Instant::now();
        let req = hyper::Request::get(PATH)
            .header(hyper::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())?;
        let r = send.send_request(req).await?;
        if !r.status().is_success() {
            return Err(format!("GET {PATH}: {}", r.status()).into());
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

fn args() -> Result<(usize, usize, usize), BoxError> {
    let (mut n, mut rounds, mut busy) = (2000, 3, 1);
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
            other => return Err(format!("unknown argument '{other}'").into()),
        }
    }
    Ok((n, rounds, busy))
}

fn main() -> Result<(), BoxError> {
    let (n, rounds, busy) = args()?;
    let sock: PathBuf =
        std::env::temp_dir().join(format!("reef-round-trip-{}.sock", std::process::id()));
    let server_rt = reef_server::front_end_runtime(busy)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = server_rt.block_on(Server::bind(ServerConfig {
        http_uds: Some(sock.clone()),
        ..ServerConfig::localhost_ephemeral()
    }))?;
    let serving = server_rt.spawn(server.run(Arc::new(NoModels), async move {
        let _ = stop_rx.await;
    }));
    let client_rt = reef_server::front_end_runtime(1)?;
    println!(
        "GET {PATH} on {}, {n} requests per row, {} us apart; server: {busy} busy-polling workers",
        sock.display(),
        GAP.as_micros()
    );
    println!(
        "{:<8} {:<28} {:>8} {:>8} {:>8}",
        "round", "client", "p50 us", "p90 us", "p99 us"
    );
    for round in 1..=rounds {
        let r = on_worker(&client_rt, reqwest_client(sock.clone(), n))?;
        println!("{round:<8} {:<28} {}", "reqwest", summary(r));
        let h = on_worker(&client_rt, hyper_client(sock.clone(), n))?;
        println!("{round:<8} {:<28} {}", "hyper connection", summary(h));
        let raw = raw_client(&sock, n)?;
        println!(
            "{round:<8} {:<28} {}",
            "raw socket, spinning thread",
            summary(raw)
        );
    }
    let _ = stop_tx.send(());
    server_rt.block_on(serving)??;
    Ok(())
}
