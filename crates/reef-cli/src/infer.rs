//! `reef infer`: a small KServe v2 gRPC client. It asks the server for the
//! model's inputs, sends random inputs of the requested batch size (or
//! repeats the request), and prints output shapes, a few values and latency;
//! with `--timing`, also the time inside the server (a reef server's
//! `reef_timing` response parameters) and what lies outside it.

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reef_model::DType;
use reef_server::proto;
use reef_server::timing::{self, Timing};
use std::collections::HashMap;
use std::time::Instant;

/// Options of `reef infer`.
#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// Model name.
    pub model: String,
    /// Server gRPC address (`http://HOST:PORT`, or `unix:PATH` for the
    /// socket of `reef serve --grpc-uds PATH`).
    #[arg(long, default_value = "http://127.0.0.1:8001", env = "REEF_GRPC_URL")]
    pub url: String,
    /// Priority (rt or be); default the model's.
    #[arg(long)]
    pub priority: Option<reef_sched::Priority>,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Requests to send (one after another).
    #[arg(long, default_value_t = 1)]
    pub count: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Ask the server for its own timing of each request (the `reef_timing`
    /// parameter of a reef server) and print the time inside the server and
    /// the time outside it (this client and the transport).
    #[arg(long)]
    pub timing: bool,
}

/// Median of a list (sorted here); 0 when empty.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|x, y| x.total_cmp(y));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn random_bytes(dtype: DType, name: &str, n: usize, rng: &mut ChaCha8Rng) -> Result<Vec<u8>> {
    Ok(match dtype {
        DType::F32 => (0..n)
            .flat_map(|_| rng.random_range(-1.0f32..1.0).to_le_bytes())
            .collect(),
        DType::I64 if name.contains("mask") => (0..n).flat_map(|_| 1i64.to_le_bytes()).collect(),
        DType::I64 => (0..n)
            .flat_map(|_| rng.random_range(0i64..1000).to_le_bytes())
            .collect(),
        DType::I32 => (0..n)
            .flat_map(|_| rng.random_range(0i32..1000).to_le_bytes())
            .collect(),
        DType::Bool => (0..n).map(|_| rng.random_bool(0.5) as u8).collect(),
        other => bail!("cannot make random {other} input '{name}'"),
    })
}

/// Sends the requests and prints the results.
pub fn run(a: InferArgs) -> Result<()> {
    if a.batch == 0 || a.count == 0 {
        bail!("--batch and --count must be at least 1");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = reef_server::grpc_client(&a.url)
            .await
            .with_context(|| format!("connecting to {}", a.url))?;
        let meta = client
            .model_metadata(proto::ModelMetadataRequest {
                name: a.model.clone(),
                version: String::new(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("model metadata: {}", s.message()))?
            .into_inner();
        let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
        let mut inputs = vec![];
        let mut raw = vec![];
        for t in &meta.inputs {
            let dtype = DType::from_kserve(&t.datatype).with_context(|| {
                format!("input '{}' has unsupported type {}", t.name, t.datatype)
            })?;
            let shape: Vec<i64> = t
                .shape
                .iter()
                .map(|&d| if d < 0 { a.batch as i64 } else { d })
                .collect();
            let n: i64 = shape.iter().product();
            raw.push(random_bytes(dtype, &t.name, n as usize, &mut rng)?);
            inputs.push(proto::model_infer_request::InferInputTensor {
                name: t.name.clone(),
                datatype: t.datatype.clone(),
                shape,
                parameters: HashMap::new(),
                contents: None,
            });
        }
        let mut parameters = HashMap::new();
        if let Some(p) = a.priority {
            parameters.insert(
                "priority".to_string(),
                proto::InferParameter {
                    parameter_choice: Some(proto::infer_parameter::ParameterChoice::StringParam(
                        p.to_string(),
                    )),
                },
            );
        }
        if a.timing {
            timing::ask(&mut parameters);
        }
        let mut lat = vec![];
        // Per request with a server account: (server, scheduler, queue, outside), ms.
        let mut inside: Vec<[f64; 4]> = vec![];
        let mut last = None;
        for _ in 0..a.count {
            let req = proto::ModelInferRequest {
                model_name: a.model.clone(),
                model_version: String::new(),
                id: String::new(),
                parameters: parameters.clone(),
                inputs: inputs.clone(),
                outputs: vec![],
                raw_input_contents: raw.iter().map(|r| r.clone().into()).collect(),
            };
            let t0 = Instant::now();
            let resp = client
                .model_infer(req)
                .await
                .map_err(|s| anyhow::anyhow!("inference failed: {}", s.message()))?
                .into_inner();
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            lat.push(ms);
            if let Some(t) = Timing::from_grpc(&resp.parameters) {
                let server = t.server.as_secs_f64() * 1e3;
                inside.push([
                    server,
                    t.task.latency.as_secs_f64() * 1e3,
                    t.task.queued.as_secs_f64() * 1e3,
                    ms - server,
                ]);
            }
            last = Some(resp);
        }
        let resp = last.expect("count >= 1");
        for (o, bytes) in resp.outputs.iter().zip(&resp.raw_output_contents) {
            let head: Vec<String> = if o.datatype == "FP32" {
                bytes
                    .chunks_exact(4)
                    .take(5)
                    .map(|c| format!("{:.5}", f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect()
            } else {
                vec![format!("{} bytes", bytes.len())]
            };
            println!(
                "{} {} {:?}: [{} ...]",
                o.name,
                o.datatype,
                o.shape,
                head.join(", ")
            );
        }
        let med = median(&mut lat);
        println!(
            "{} request(s): latency median {:.3} ms, min {:.3} ms, max {:.3} ms",
            lat.len(),
            med,
            lat[0],
            lat[lat.len() - 1]
        );
        if a.timing {
            if inside.is_empty() {
                println!("the server sent no timing (not a reef server?)");
            } else {
                let col = |i: usize| median(&mut inside.iter().map(|r| r[i]).collect::<Vec<_>>());
                let (server, sched, queue, outside) = (col(0), col(1), col(2), col(3));
                println!(
                    "inside the server: median {server:.3} ms (scheduler {sched:.3} ms, of it queued \
                     {queue:.3} ms); outside it (this client and the transport): median {outside:.3} ms"
                );
            }
        }
        Ok(())
    })
}
