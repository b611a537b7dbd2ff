//! The real server in front of the real scheduler on the CPU backend with zoo
//! models: gRPC results equal in-process results bit for bit, a mixed RT/BE
//! load is answered completely, and stock tritonclient (HTTP and gRPC, from
//! PyPI), including its system shared memory flow, works against it (skipped
//! with a message when not installed).

use reef_exec::cpu::CpuDevice;
use reef_exec::Device;
use reef_model::Tensor;
use reef_sched::{GraphSource, InferRequest, Mode, Priority, SchedConfig, Scheduler, Service};
use reef_server::proto;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

fn zoo(name: &'static str) -> GraphSource {
    Arc::new(move |b| reef_zoo::build(name, b, 0).map_err(|e| e.to_string()))
}

fn image(seed: u32) -> Tensor {
    let n = 3 * 32 * 32;
    let v = (0..n)
        .map(|i| {
            (((i as u32).wrapping_mul(2654435761).wrapping_add(seed)) % 2000) as f32 / 1000.0 - 1.0
        })
        .collect();
    Tensor::f32(vec![1, 3, 32, 32], v).unwrap()
}

fn grpc_request(model: &str, x: &Tensor, priority: &str) -> proto::ModelInferRequest {
    let mut parameters = HashMap::new();
    parameters.insert(
        "priority".to_string(),
        proto::InferParameter {
            parameter_choice: Some(proto::infer_parameter::ParameterChoice::StringParam(
                priority.into(),
            )),
        },
    );
    proto::ModelInferRequest {
        model_name: model.into(),
        model_version: String::new(),
        id: String::new(),
        parameters,
        inputs: vec![proto::model_infer_request::InferInputTensor {
            name: "input".into(),
            datatype: "FP32".into(),
            shape: x.shape.iter().map(|&d| d as i64).collect(),
            parameters: HashMap::new(),
            contents: None,
        }],
        outputs: vec![],
        raw_input_contents: vec![x.to_bytes().into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_with_real_scheduler_matches_in_process_results() {
    let dev: Arc<dyn Device> = Arc::new(CpuDevice::new(Some(2)).unwrap());
    let sched = Scheduler::new(
        dev,
        SchedConfig {
            mode: Mode::Reset,
            ..SchedConfig::default()
        },
    )
    .unwrap();
    sched
        .load_model("resnet_tiny", zoo("resnet_tiny"), Priority::Rt)
        .unwrap();
    sched
        .load_model("mobilenet_tiny", zoo("mobilenet_tiny"), Priority::Be)
        .unwrap();
    // Client shared memory on: the tritonclient suite runs its system
    // shared memory flow against the real scheduler too.
    let config = reef_server::ServerConfig {
        allow_client_shm: true,
        ..reef_server::ServerConfig::localhost_ephemeral()
    };
    let server = reef_server::Server::bind(config).await.unwrap();
    let (http, grpc) = (server.http_addr(), server.grpc_addr());
    let svc: Arc<dyn Service> = sched.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(svc, async move {
        let _ = stop_rx.await;
    }));
    let mut client = reef_server::grpc_client(&format!("http://{grpc}"))
        .await
        .unwrap();

    // Bit-identical to the in-process result, for both priorities.
    for (model, prio) in [
        ("resnet_tiny", "rt"),
        ("mobilenet_tiny", "be"),
        ("mobilenet_tiny", "rt"),
    ] {
        let x = image(7);
        let s2 = sched.clone();
        let x2 = x.clone();
        let want = tokio::task::spawn_blocking(move || {
            s2.infer_blocking(InferRequest {
                model: model.into(),
                inputs: vec![x2.into()],
                priority: None,
                arrival: Instant::now(),
            })
        })
        .await
        .unwrap()
        .unwrap()
        .outputs;
        let got = client
            .model_infer(grpc_request(model, &x, prio))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.raw_output_contents.len(), want.len());
        for (g, w) in got.raw_output_contents.iter().zip(&want) {
            assert_eq!(
                g.as_ref(),
                w.to_bytes().as_slice(),
                "{model} ({prio}) over gRPC differs from in-process"
            );
        }
    }

    // A mixed load: 40 BE and 40 RT requests in flight at once; all answered.
    let mut handles = vec![];
    for i in 0..80u32 {
        let mut c = client.clone();
        let (model, prio) = if i % 2 == 0 {
            ("mobilenet_tiny", "be")
        } else {
            ("resnet_tiny", "rt")
        };
        handles.push(tokio::spawn(async move {
            c.model_infer(grpc_request(model, &image(i), prio))
                .await
                .map(|r| r.into_inner())
        }));
    }
    for h in handles {
        let r = h
            .await
            .unwrap()
            .expect("every request of the mixed load is answered");
        assert_eq!(r.raw_output_contents[0].len(), 10 * 4);
    }

    // Stock tritonclient over HTTP and gRPC.
    let have = std::process::Command::new("python3")
        .args([
            "-c",
            "import tritonclient.http, tritonclient.grpc, pytest, numpy",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if have {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../reef-server/tests/python/test_tritonclient.py"
        );
        let out = tokio::process::Command::new("python3")
            .args([
                "-m",
                "pytest",
                "-q",
                "-rs",
                "-p",
                "no:cacheprovider",
                script,
            ])
            .env("REEF_HTTP_URL", http.to_string())
            .env("REEF_GRPC_URL", grpc.to_string())
            .env("REEF_TEST_MODEL", "resnet_tiny")
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("{text}");
        assert!(
            out.status.success(),
            "tritonclient suite failed against the real scheduler:\n{text}"
        );
    } else {
        println!("SKIP tritonclient part: python3 with tritonclient[http,grpc], pytest and numpy not found");
    }

    let _ = stop_tx.send(());
    running.await.unwrap().unwrap();
    assert!(sched.stats().completed[0] + sched.stats().completed[1] >= 83);
}
