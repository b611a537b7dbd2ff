//! Triton's CUDA shared memory extension over HTTP and gRPC, against the
//! in-test scheduler, whose devices map "IPC handles" of host memory made
//! by `TestService::export` (a GPU service maps real ones; `reef selftest`
//! and the device benchmarks run those). Covered: register, status and
//! unregister; inference with inputs left in the region (they reach the
//! scheduler as shared inputs, not host tensors) and outputs written into
//! it; one namespace with system regions; every bad case answered 400 /
//! INVALID_ARGUMENT naming the problem, the server answering normally
//! afterwards; and all of it refused without `allow_client_shm`.

use crate::common::{rand_f32, start_with, Running, TestService};
use crate::shm::{
    error_of, from_le, grpc, grpc_error_of, grpc_still_answers, http_get, http_post,
    http_still_answers, input, json_f32, le, start_shm,
};
use base64::Engine as _;
use reef_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use reef_server::proto::model_infer_request::InferRequestedOutputTensor;
use reef_server::proto::*;
use reef_server::ServerConfig;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use tonic::transport::Channel;

/// The server over `svc`, client shared memory allowed.
async fn start_allowing(svc: std::sync::Arc<TestService>) -> Running {
    let config = ServerConfig {
        allow_client_shm: true,
        ..ServerConfig::localhost_ephemeral()
    };
    start_with(svc, config).await
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn register_body(handle: &[u8], device_id: i64, byte_size: u64) -> Value {
    json!({ "raw_handle": { "b64": b64(handle) }, "device_id": device_id, "byte_size": byte_size })
}

async fn grpc_register(
    c: &mut GrpcInferenceServiceClient<Channel>,
    name: &str,
    raw_handle: &[u8],
    device_id: i64,
    byte_size: u64,
) -> Result<(), tonic::Status> {
    c.cuda_shared_memory_register(CudaSharedMemoryRegisterRequest {
        name: name.into(),
        raw_handle: raw_handle.to_vec(),
        device_id,
        byte_size,
    })
    .await
    .map(|_| ())
}

/// Every CUDA region, as the gRPC status call lists them.
async fn cuda_status(
    c: &mut GrpcInferenceServiceClient<Channel>,
) -> CudaSharedMemoryStatusResponse {
    c.cuda_shared_memory_status(CudaSharedMemoryStatusRequest {
        name: String::new(),
    })
    .await
    .unwrap()
    .into_inner()
}

#[tokio::test]
async fn http_register_status_infer_unregister() {
    let svc = TestService::new();
    let s = start_allowing(svc.clone()).await;
    let (_, meta) = http_get(&format!("{}/v2", s.http)).await;
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("cuda_shared_memory")));
    let batch = 3;
    let n = batch * 4;
    let bytes = 4 * n;
    let (a, b) = (rand_f32(31, n), rand_f32(32, n));
    // a at 0 and b at 8 + bytes of the input allocation; sum at 8 of the
    // output one (which starts as NaN bytes).
    let (in_handle, in_mem) = svc.export(8 + 2 * bytes);
    let (out_handle, out_mem) = svc.export(8 + bytes);
    in_mem.write(0, &le(&a));
    in_mem.write(8 + bytes, &le(&b));
    let url = |p: &str| format!("{}/v2/cudasharedmemory/{p}", s.http);
    let in_size = (8 + 2 * bytes) as u64;
    let (st, body) = http_post(
        &url("region/in/register"),
        &register_body(&in_handle, 0, in_size),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = http_post(
        &url("region/out/register"),
        &register_body(&out_handle, 1, (8 + bytes) as u64),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, all) = http_get(&url("status")).await;
    assert_eq!(st, 200);
    assert_eq!(
        all,
        json!([
            { "name": "in", "device_id": 0, "byte_size": in_size },
            { "name": "out", "device_id": 1, "byte_size": 8 + bytes },
        ])
    );
    let (st, one) = http_get(&url("region/out/status")).await;
    assert_eq!((st, one[0]["device_id"].clone()), (200, json!(1)));
    // The system list does not show CUDA regions.
    let system = http_get(&format!("{}/v2/systemsharedmemory/status", s.http)).await;
    assert_eq!(system, (200, json!([])));

    let req = json!({ "inputs": [
      { "name": "a", "shape": [batch, 4], "datatype": "FP32",
        "parameters": { "shared_memory_region": "in", "shared_memory_byte_size": bytes } },
      { "name": "b", "shape": [batch, 4], "datatype": "FP32",
        "parameters": { "shared_memory_region": "in", "shared_memory_byte_size": bytes,
                        "shared_memory_offset": 8 + bytes } },
    ], "outputs": [
      { "name": "sum", "parameters": { "shared_memory_region": "out",
        "shared_memory_byte_size": bytes, "shared_memory_offset": 8 } },
      { "name": "diff" },
    ]});
    let (st, body) = http_post(&format!("{}/v2/models/add/infer", s.http), &req).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(
        svc.shared_inputs.load(Ordering::SeqCst),
        2,
        "inputs in a CUDA region reach the scheduler as shared inputs"
    );
    let sum_out = &body["outputs"][0];
    assert!(sum_out.get("data").is_none(), "{sum_out}");
    assert_eq!(sum_out["parameters"]["shared_memory_region"], "out");
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(from_le(&out_mem.read(8, bytes)), want);
    assert_eq!(
        out_mem.read(0, 8),
        [0xff; 8],
        "bytes before the offset kept"
    );
    let diff = json_f32(&body["outputs"][1]["data"]);
    assert_eq!(
        diff,
        a.iter().zip(&b).map(|(x, y)| x - y).collect::<Vec<_>>()
    );

    // A system unregister spares CUDA regions; a CUDA one removes them.
    assert_eq!(
        http_post(
            &format!("{}/v2/systemsharedmemory/unregister", s.http),
            &json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        http_get(&url("status")).await.1.as_array().unwrap().len(),
        2
    );
    assert_eq!(
        http_post(&url("region/in/unregister"), &json!({})).await.0,
        200
    );
    let (st, body) = http_get(&url("region/in/status")).await;
    error_of(st, &body, "'in' is not registered");
    assert_eq!(http_post(&url("unregister"), &json!({})).await.0, 200);
    assert_eq!(http_get(&url("status")).await, (200, json!([])));
    http_still_answers(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_register_status_infer_unregister() {
    let svc = TestService::new();
    let s = start_allowing(svc.clone()).await;
    let mut c = grpc(&s.grpc).await;
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(meta.extensions.iter().any(|e| e == "cuda_shared_memory"));
    let (a, b) = (rand_f32(41, 8), rand_f32(42, 8));
    let (in_handle, in_mem) = svc.export(32);
    let (out_handle, out_mem) = svc.export(64);
    in_mem.write(0, &le(&a));
    grpc_register(&mut c, "in", &in_handle, 0, 32)
        .await
        .unwrap();
    grpc_register(&mut c, "out", &out_handle, 0, 64)
        .await
        .unwrap();
    let st = cuda_status(&mut c).await;
    assert_eq!(st.regions.len(), 2);
    let out = &st.regions["out"];
    assert_eq!(
        (out.name.as_str(), out.device_id, out.byte_size),
        ("out", 0, 64)
    );

    // a in the CUDA region, b raw; sum raw, diff in the region at 16.
    let shm = reef_server::grpc_codec::shm_params;
    let req = ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![
            input("a", &[2, 4], shm("in", 32, 0)),
            input("b", &[2, 4], HashMap::new()),
        ],
        outputs: vec![
            InferRequestedOutputTensor {
                name: "sum".into(),
                parameters: HashMap::new(),
            },
            InferRequestedOutputTensor {
                name: "diff".into(),
                parameters: shm("out", 32, 16),
            },
        ],
        raw_input_contents: vec![le(&b).into()],
        ..Default::default()
    };
    let r = c.model_infer(req).await.expect("infer").into_inner();
    assert_eq!(svc.shared_inputs.load(Ordering::SeqCst), 1);
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    // Parallel to outputs, as tritonclient indexes them: diff's entry is empty.
    assert_eq!(r.raw_output_contents.len(), 2);
    assert!(
        r.raw_output_contents[1].is_empty(),
        "diff went to the region"
    );
    assert_eq!(from_le(&r.raw_output_contents[0]), sum);
    assert_eq!(from_le(&out_mem.read(16, 32)), diff);

    c.cuda_shared_memory_unregister(CudaSharedMemoryUnregisterRequest { name: "in".into() })
        .await
        .unwrap();
    grpc_error_of(
        c.cuda_shared_memory_status(CudaSharedMemoryStatusRequest { name: "in".into() })
            .await,
        "'in' is not registered",
    );
    c.cuda_shared_memory_unregister(CudaSharedMemoryUnregisterRequest {
        name: String::new(),
    })
    .await
    .unwrap();
    let st = cuda_status(&mut c).await;
    assert!(st.regions.is_empty());
    grpc_still_answers(&mut c).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_registrations_and_requests_are_named() {
    let svc = TestService::new();
    let s = start_allowing(svc.clone()).await;
    let mut c = grpc(&s.grpc).await;
    let (handle, _mem) = svc.export(64);
    let reg = |name: &str| format!("{}/v2/cudasharedmemory/region/{name}/register", s.http);
    for (body, want) in [
        (
            json!({ "raw_handle": "abc", "device_id": 0, "byte_size": 4 }),
            "malformed CUDA shared memory register request",
        ),
        (
            json!({ "raw_handle": { "b64": "!!" }, "device_id": 0, "byte_size": 4 }),
            "not base64",
        ),
        (register_body(&handle[..63], 0, 4), "64 bytes, got 63"),
        (register_body(&[7u8; 64], 0, 4), "cannot map"),
        (
            register_body(&handle, 0, 65),
            "exceeds the shared allocation's 64 bytes",
        ),
        (register_body(&handle, -1, 4), "device_id is negative"),
        (register_body(&handle, 2, 4), "device 2 does not exist"),
    ] {
        let (st, got) = http_post(&reg("r"), &body).await;
        error_of(st, &got, want);
    }
    grpc_error_of(
        grpc_register(&mut c, "", &handle, 0, 4).await,
        "name is empty",
    );
    grpc_error_of(grpc_register(&mut c, "g", &handle, 0, 65).await, "exceeds");

    // One namespace over both kinds: a CUDA name cannot be registered as
    // system memory, and the system status call does not report it.
    grpc_register(&mut c, "r", &handle, 0, 64).await.unwrap();
    grpc_error_of(
        grpc_register(&mut c, "r", &handle, 0, 8).await,
        "already registered",
    );
    let (st, body) = http_post(
        &format!("{}/v2/systemsharedmemory/region/r/register", s.http),
        &json!({ "key": "/reef-cuda-it-none", "byte_size": 4 }),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let (st, body) = http_get(&format!("{}/v2/systemsharedmemory/region/r/status", s.http)).await;
    error_of(st, &body, "'r' is not a system region");

    // Requests naming the region wrongly.
    let infer = |params: Value| {
        json!({ "inputs": [
            { "name": "a", "shape": [1, 4], "datatype": "FP32", "parameters": params },
            { "name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4] },
        ]})
    };
    for (params, want) in [
        (
            json!({ "shared_memory_region": "r", "shared_memory_byte_size": 12 }),
            "needs 16 bytes",
        ),
        (
            json!({ "shared_memory_region": "r", "shared_memory_byte_size": 16,
                 "shared_memory_offset": 56 }),
            "exceeds shared memory region 'r'",
        ),
        (
            json!({ "shared_memory_region": "nope", "shared_memory_byte_size": 16 }),
            "'nope' is not registered",
        ),
    ] {
        let (st, body) =
            http_post(&format!("{}/v2/models/add/infer", s.http), &infer(params)).await;
        error_of(st, &body, want);
    }
    assert_eq!(svc.shared_inputs.load(Ordering::SeqCst), 0);
    http_still_answers(&s).await;
    grpc_still_answers(&mut c).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn refused_without_client_shared_memory() {
    let s = start_shm(false).await;
    let mut c = grpc(&s.grpc).await;
    let (st, body) = http_get(&format!("{}/v2/cudasharedmemory/status", s.http)).await;
    error_of(st, &body, "--allow-client-shm");
    let (st, body) = http_post(
        &format!("{}/v2/cudasharedmemory/region/x/register", s.http),
        &register_body(&[0u8; 64], 0, 4),
    )
    .await;
    error_of(st, &body, "--allow-client-shm");
    grpc_error_of(
        grpc_register(&mut c, "x", &[0u8; 64], 0, 4).await,
        "--allow-client-shm",
    );
    http_still_answers(&s).await;
    s.stop().await.unwrap();
}
