//! Triton's system shared memory extension over HTTP and gRPC: register,
//! status and unregister; inference with inputs and outputs in shared memory
//! (same results as the normal path, output regions overwritten); every bad
//! case answered 400 / INVALID_ARGUMENT with a message naming the problem,
//! the server answering normally afterwards; and all of it refused on a
//! server started without `allow_client_shm`.

use crate::common::{rand_f32, rand_i64, start_with, Running, TestService};
use reef_server::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use reef_server::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use reef_server::proto::*;
use reef_server::shm::ClientRegion;
use reef_server::ServerConfig;
use serde_json::{json, Value};
use std::collections::HashMap;
use tonic::transport::Channel;
use tonic::Code;

/// NaN bytes (f32, little-endian) that every output region starts with.
const POISON: [u8; 4] = 0x7fc0_0000u32.to_le_bytes();

fn key(tag: &str) -> String {
    format!("/reef-shm-it-{}-{tag}", std::process::id())
}

pub(crate) fn le(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub(crate) fn json_f32(v: &Value) -> Vec<f32> {
    let items = v.as_array().unwrap_or_else(|| panic!("not an array: {v}"));
    items.iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn poison(r: &ClientRegion) {
    let bytes: Vec<u8> = POISON
        .iter()
        .copied()
        .cycle()
        .take(r.byte_size() as usize)
        .collect();
    r.write(0, &bytes).unwrap();
}

pub(crate) async fn start_shm(allow: bool) -> Running {
    let config = ServerConfig {
        allow_client_shm: allow,
        ..ServerConfig::localhost_ephemeral()
    };
    start_with(TestService::new(), config).await
}

pub(crate) async fn grpc(url: &str) -> GrpcInferenceServiceClient<Channel> {
    GrpcInferenceServiceClient::connect(url.to_string())
        .await
        .expect("connect")
}

pub(crate) async fn http_post(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub(crate) async fn http_get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.expect("GET");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn http_register(s: &Running, name: &str, key: &str, offset: u64, size: u64) -> (u16, Value) {
    let url = format!("{}/v2/systemsharedmemory/region/{name}/register", s.http);
    http_post(
        &url,
        &json!({ "key": key, "offset": offset, "byte_size": size }),
    )
    .await
}

async fn grpc_register(
    c: &mut GrpcInferenceServiceClient<Channel>,
    name: &str,
    key: &str,
    offset: u64,
    byte_size: u64,
) -> Result<(), tonic::Status> {
    c.system_shared_memory_register(SystemSharedMemoryRegisterRequest {
        name: name.into(),
        key: key.into(),
        offset,
        byte_size,
    })
    .await
    .map(|_| ())
}

async fn grpc_status(
    c: &mut GrpcInferenceServiceClient<Channel>,
    name: &str,
) -> Result<SystemSharedMemoryStatusResponse, tonic::Status> {
    c.system_shared_memory_status(SystemSharedMemoryStatusRequest { name: name.into() })
        .await
        .map(tonic::Response::into_inner)
}

pub(crate) fn error_of(status: u16, body: &Value, want: &str) {
    assert_eq!(status, 400, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(want), "expected '{want}' in '{msg}'");
}

pub(crate) fn grpc_error_of(r: Result<impl std::fmt::Debug, tonic::Status>, want: &str) {
    let e = r.expect_err("should fail");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains(want),
        "expected '{want}' in '{}'",
        e.message()
    );
}

/// A plain JSON `add` request over HTTP: must succeed (the server still
/// answers) and return a + b.
pub(crate) async fn http_still_answers(s: &Running) {
    let (a, b) = (rand_f32(901, 4), rand_f32(902, 4));
    let (st, body) = http_post(
        &format!("{}/v2/models/add/infer", s.http),
        &json!({ "inputs": [
            { "name": "a", "shape": [1, 4], "datatype": "FP32", "data": a },
            { "name": "b", "shape": [1, 4], "datatype": "FP32", "data": b },
        ]}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let sum = json_f32(&body["outputs"][0]["data"]);
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(sum, want);
}

/// A plain raw `add` request over gRPC: must succeed and return a + b.
pub(crate) async fn grpc_still_answers(c: &mut GrpcInferenceServiceClient<Channel>) {
    let (a, b) = (rand_f32(903, 4), rand_f32(904, 4));
    let r = c
        .model_infer(ModelInferRequest {
            model_name: "add".into(),
            inputs: vec![
                input("a", &[1, 4], HashMap::new()),
                input("b", &[1, 4], HashMap::new()),
            ],
            raw_input_contents: vec![le(&a).into(), le(&b).into()],
            ..Default::default()
        })
        .await
        .expect("plain request after an error")
        .into_inner();
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(from_le(&r.raw_output_contents[0]), want);
}

pub(crate) fn input(
    name: &str,
    shape: &[i64],
    parameters: HashMap<String, InferParameter>,
) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape: shape.to_vec(),
        parameters,
        contents: None,
    }
}

#[tokio::test]
async fn http_register_status_infer_unregister() {
    let s = start_shm(true).await;
    let (_, meta) = http_get(&format!("{}/v2", s.http)).await;
    assert!(meta["extensions"]
        .as_array()
        .unwrap()
        .contains(&json!("system_shared_memory")));
    let batch = 3;
    let n = batch * 4;
    let (a, b) = (rand_f32(11, n), rand_f32(12, n));
    // Input region at offset 16 of its object; a at 0, b at 8 + 4n in it.
    let (in_key, out_key) = (key("http-in"), key("http-out"));
    let input_obj = ClientRegion::create(&in_key, 16 + 8 + 8 * n as u64).unwrap();
    let output_obj = ClientRegion::create(&out_key, 8 + 4 * n as u64).unwrap();
    input_obj.write(16, &le(&a)).unwrap();
    input_obj.write(16 + 8 + 4 * n as u64, &le(&b)).unwrap();
    poison(&output_obj);
    let in_size = 8 + 8 * n as u64;
    assert_eq!(http_register(&s, "in", &in_key, 16, in_size).await.0, 200);
    assert_eq!(
        http_register(&s, "out", &out_key, 0, output_obj.byte_size())
            .await
            .0,
        200
    );
    let (st, all) = http_get(&format!("{}/v2/systemsharedmemory/status", s.http)).await;
    assert_eq!(st, 200);
    assert_eq!(
        all,
        json!([
            { "name": "in", "key": in_key, "offset": 16, "byte_size": in_size },
            { "name": "out", "key": out_key, "offset": 0, "byte_size": output_obj.byte_size() },
        ])
    );
    let (st, one) = http_get(&format!(
        "{}/v2/systemsharedmemory/region/out/status",
        s.http
    ))
    .await;
    assert_eq!((st, one[0]["name"].clone()), (200, json!("out")));

    let bytes = 4 * n;
    let req = json!({ "inputs": [
      { "name": "a", "shape": [batch, 4], "datatype": "FP32",
        "parameters": { "shared_memory_region": "in", "shared_memory_byte_size": bytes } },
      { "name": "b", "shape": [batch, 4], "datatype": "FP32",
        "parameters": { "shared_memory_region": "in", "shared_memory_byte_size": bytes,
                        "shared_memory_offset": 8 + bytes } },
    ], "outputs": [
      { "name": "sum", "parameters": { "shared_memory_region": "out",
        "shared_memory_byte_size": output_obj.byte_size() - 8, "shared_memory_offset": 8 } },
      { "name": "diff" },
    ]});
    let (st, body) = http_post(&format!("{}/v2/models/add/infer", s.http), &req).await;
    assert_eq!(st, 200, "{body}");
    let sum_out = &body["outputs"][0];
    assert_eq!(sum_out["name"], "sum");
    assert_eq!(sum_out["shape"], json!([batch, 4]));
    assert!(sum_out.get("data").is_none(), "{sum_out}");
    assert_eq!(sum_out["parameters"]["shared_memory_region"], "out");
    let sum = from_le(&output_obj.read(8, bytes).unwrap());
    assert_eq!(
        sum,
        a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>()
    );
    assert_eq!(output_obj.read(0, 8).unwrap(), [POISON, POISON].concat());
    let diff = json_f32(&body["outputs"][1]["data"]);
    assert_eq!(
        diff,
        a.iter().zip(&b).map(|(x, y)| x - y).collect::<Vec<_>>()
    );

    let url = |p: &str| format!("{}/v2/systemsharedmemory/{p}", s.http);
    assert_eq!(
        http_post(&url("region/in/unregister"), &json!({})).await.0,
        200
    );
    let (st, body) = http_get(&url("region/in/status")).await;
    error_of(st, &body, "'in' is not registered");
    // Unregistering an unknown name does nothing, as in Triton.
    assert_eq!(
        http_post(&url("region/in/unregister"), &json!({})).await.0,
        200
    );
    assert_eq!(http_post(&url("unregister"), &json!({})).await.0, 200);
    assert_eq!(http_get(&url("status")).await, (200, json!([])));
    // The CUDA regions are a separate list, empty here.
    let cuda = http_get(&format!("{}/v2/cudasharedmemory/status", s.http)).await;
    assert_eq!(cuda, (200, json!([])));
    http_still_answers(&s).await;
    s.stop().await.unwrap();
}

#[tokio::test]
async fn grpc_register_status_infer_unregister() {
    let s = start_shm(true).await;
    let mut c = grpc(&s.grpc).await;
    let meta = c
        .server_metadata(ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(meta.extensions.iter().any(|e| e == "system_shared_memory"));
    let (in_key, out_key) = (key("grpc-in"), key("grpc-out"));
    let (a, b) = (rand_f32(21, 8), rand_f32(22, 8));
    let input_obj = ClientRegion::create(&in_key, 32).unwrap();
    let output_obj = ClientRegion::create(&out_key, 64).unwrap();
    input_obj.write(0, &le(&a)).unwrap();
    poison(&output_obj);
    grpc_register(&mut c, "in", &in_key, 0, 32).await.unwrap();
    grpc_register(&mut c, "out", &out_key, 0, 64).await.unwrap();
    let st = grpc_status(&mut c, "").await.unwrap();
    assert_eq!(st.regions.len(), 2);
    let out = &st.regions["out"];
    assert_eq!(
        (
            out.name.as_str(),
            out.key.as_str(),
            out.offset,
            out.byte_size
        ),
        ("out", out_key.as_str(), 0, 64)
    );
    let one = grpc_status(&mut c, "in").await.unwrap();
    assert_eq!(one.regions.keys().collect::<Vec<_>>(), ["in"]);

    // a in shared memory, b raw; sum raw, diff in shared memory at 16.
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
                parameters: shm("out", 48, 16),
            },
        ],
        raw_input_contents: vec![le(&b).into()],
        ..Default::default()
    };
    let r = c.model_infer(req).await.expect("shm infer").into_inner();
    // Parallel to outputs, as tritonclient indexes them: diff's entry is empty.
    assert_eq!(r.raw_output_contents.len(), 2);
    assert!(r.raw_output_contents[1].is_empty());
    assert_eq!(r.outputs[1].shape, vec![2, 4]);
    assert!(r.outputs[1].parameters.contains_key("shared_memory_region"));
    let sum = from_le(&r.raw_output_contents[0]);
    assert_eq!(
        sum,
        a.iter().zip(&b).map(|(x, y)| x + y).collect::<Vec<_>>()
    );
    let diff = from_le(&output_obj.read(16, 32).unwrap());
    assert_eq!(
        diff,
        a.iter().zip(&b).map(|(x, y)| x - y).collect::<Vec<_>>()
    );
    assert_eq!(output_obj.read(0, 4).unwrap(), POISON);
    assert_eq!(output_obj.read(48, 4).unwrap(), POISON);

    // Every datatype through shared memory: `mixed` (INT64, BOOL, INT32).
    let x = rand_i64(23, 6);
    let m: Vec<bool> = x.iter().map(|v| v % 2 == 0).collect();
    let k: Vec<i32> = x.iter().map(|v| (v % 1000) as i32).collect();
    let mut bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes.extend(m.iter().map(|&v| v as u8));
    bytes.extend(k.iter().flat_map(|v| v.to_le_bytes()));
    let mixed_key = key("grpc-mixed");
    let mixed_obj = ClientRegion::create(&mixed_key, bytes.len() as u64).unwrap();
    mixed_obj.write(0, &bytes).unwrap();
    grpc_register(&mut c, "mixed-in", &mixed_key, 0, bytes.len() as u64)
        .await
        .unwrap();
    let mixed_out_key = key("grpc-mixed-out");
    let mixed_out = ClientRegion::create(&mixed_out_key, 80).unwrap();
    poison(&mixed_out);
    grpc_register(&mut c, "mixed-out", &mixed_out_key, 0, 80)
        .await
        .unwrap();
    let typed = |name: &str, dt: &str, params| InferInputTensor {
        datatype: dt.into(),
        ..input(name, &[2, 3], params)
    };
    let out = |name: &str, size, offset| InferRequestedOutputTensor {
        name: name.into(),
        parameters: shm("mixed-out", size, offset),
    };
    let req = ModelInferRequest {
        model_name: "mixed".into(),
        inputs: vec![
            typed("x", "INT64", shm("mixed-in", 48, 0)),
            typed("m", "BOOL", shm("mixed-in", 6, 48)),
            typed("k", "INT32", shm("mixed-in", 24, 54)),
        ],
        outputs: vec![out("y", 48, 0), out("nm", 6, 72), out("k2", 24, 48)],
        ..Default::default()
    };
    let r = c
        .model_infer(req)
        .await
        .expect("mixed shm infer")
        .into_inner();
    assert!(r.raw_output_contents.iter().all(|b| b.is_empty()));
    let got = mixed_out.read(0, 80).unwrap();
    let y: Vec<i64> = got[..48]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(y, x.iter().map(|v| -v).collect::<Vec<_>>());
    let k2: Vec<i32> = got[48..72]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(k2, k.iter().map(|v| 2 * v).collect::<Vec<_>>());
    let nm: Vec<bool> = got[72..78].iter().map(|&v| v != 0).collect();
    assert_eq!(nm, m.iter().map(|v| !v).collect::<Vec<_>>());
    assert_eq!(got[78..], POISON[2..]);

    c.system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest { name: "in".into() })
        .await
        .unwrap();
    let e = grpc_status(&mut c, "in").await;
    grpc_error_of(e, "'in' is not registered");
    c.system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest {
        name: String::new(),
    })
    .await
    .unwrap();
    let st = grpc_status(&mut c, "").await.unwrap();
    assert!(st.regions.is_empty());
    grpc_still_answers(&mut c).await;
    s.stop().await.unwrap();
}

/// Shared memory parameters of one tensor in a bad-case request.
type Params = Vec<(&'static str, Value)>;

fn region(name: &str, size: i64) -> Params {
    vec![
        ("shared_memory_region", json!(name)),
        ("shared_memory_byte_size", json!(size)),
    ]
}

fn with_offset(mut p: Params, offset: i64) -> Params {
    p.push(("shared_memory_offset", json!(offset)));
    p
}

/// One bad inference request: input `a` and output `sum` of `add` [1, 4]
/// with these parameters (`a_data` also sends `a`'s data), and the error.
struct BadInfer {
    a: Params,
    a_data: bool,
    sum: Params,
    want: &'static str,
}

fn http_bad_request(case: &BadInfer, a: &[f32], b: &[f32]) -> Value {
    let params =
        |p: &Params| Value::Object(p.iter().map(|(k, v)| (k.to_string(), v.clone())).collect());
    let mut ia =
        json!({ "name": "a", "shape": [1, 4], "datatype": "FP32", "parameters": params(&case.a) });
    if case.a.is_empty() || case.a_data {
        ia["data"] = json!(a);
    }
    json!({
        "inputs": [ia, { "name": "b", "shape": [1, 4], "datatype": "FP32", "data": b }],
        "outputs": [{ "name": "sum", "parameters": params(&case.sum) }],
    })
}

fn grpc_bad_request(case: &BadInfer, a: &[f32], b: &[f32]) -> ModelInferRequest {
    use reef_server::proto::infer_parameter::ParameterChoice;
    let params = |p: &Params| -> HashMap<String, InferParameter> {
        p.iter()
            .map(|(k, v)| {
                let choice = match v {
                    Value::String(s) => ParameterChoice::StringParam(s.clone()),
                    v => ParameterChoice::Int64Param(v.as_i64().unwrap()),
                };
                (
                    k.to_string(),
                    InferParameter {
                        parameter_choice: Some(choice),
                    },
                )
            })
            .collect()
    };
    let mut raw = vec![le(b).into()];
    if case.a.is_empty() || case.a_data {
        raw.insert(0, le(a).into());
    }
    ModelInferRequest {
        model_name: "add".into(),
        inputs: vec![
            input("a", &[1, 4], params(&case.a)),
            input("b", &[1, 4], HashMap::new()),
        ],
        outputs: vec![InferRequestedOutputTensor {
            name: "sum".into(),
            parameters: params(&case.sum),
        }],
        raw_input_contents: raw,
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_cases_are_rejected_and_the_server_keeps_answering() {
    let s = start_shm(true).await;
    let mut c = grpc(&s.grpc).await;
    let (in_key, small_key, cut_key) = (key("bad-in"), key("bad-small"), key("bad-cut"));
    let input_obj = ClientRegion::create(&in_key, 64).unwrap();
    let small_obj = ClientRegion::create(&small_key, 8).unwrap();
    let cut_obj = ClientRegion::create(&cut_key, 64).unwrap();
    let (a, b) = (rand_f32(31, 4), rand_f32(32, 4));
    input_obj.write(0, &le(&a)).unwrap();
    assert_eq!(http_register(&s, "in", &in_key, 0, 64).await.0, 200);
    grpc_register(&mut c, "small", &small_key, 0, 8)
        .await
        .unwrap();
    grpc_register(&mut c, "cut", &cut_key, 0, 64).await.unwrap();
    // A client shrinks an object after registering it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/dev/shm{cut_key}"))
        .unwrap()
        .set_len(4)
        .unwrap();

    // Registration errors, over both protocols.
    let missing = key("never-created");
    let register_cases: [(&str, &str, u64, u64, &str); 6] = [
        ("x1", missing.as_str(), 0, 4, "No such file"),
        ("x2", "/..", 0, 4, "key '/..' is invalid"),
        ("x3", "a/b", 0, 4, "key 'a/b' is invalid"),
        ("in", in_key.as_str(), 0, 4, "'in' is already registered"),
        (
            "x4",
            in_key.as_str(),
            60,
            8,
            "exceeds the object's 64 bytes",
        ),
        ("x5", in_key.as_str(), u64::MAX, 2, "exceeds"),
    ];
    for (name, k, offset, size, want) in register_cases {
        let (st, body) = http_register(&s, name, k, offset, size).await;
        error_of(st, &body, want);
        grpc_error_of(grpc_register(&mut c, name, k, offset, size).await, want);
    }
    let url = format!("{}/v2/systemsharedmemory/region/x/register", s.http);
    let (st, body) = http_post(&url, &json!({ "key": in_key })).await;
    error_of(st, &body, "malformed shared memory register request");

    let cases = [
        BadInfer {
            a: region("nope", 16),
            a_data: false,
            sum: vec![],
            want: "region 'nope' is not registered",
        },
        BadInfer {
            a: vec![("shared_memory_region", json!("in"))],
            a_data: false,
            sum: vec![],
            want: "must be given together",
        },
        BadInfer {
            a: vec![("shared_memory_byte_size", json!(16))],
            a_data: false,
            sum: vec![],
            want: "must be given together",
        },
        BadInfer {
            a: region("in", 12),
            a_data: false,
            sum: vec![],
            want: "tensor 'a': FP32 shape [1, 4] needs 16 bytes of data, got 12",
        },
        BadInfer {
            a: with_offset(region("in", 16), 56),
            a_data: false,
            sum: vec![],
            want: "offset 56 + byte size 16 exceeds shared memory region 'in' (64 bytes)",
        },
        BadInfer {
            a: with_offset(region("in", 16), -1),
            a_data: false,
            sum: vec![],
            want: "shared_memory_offset must be a non-negative integer",
        },
        BadInfer {
            a: region("in", 16),
            a_data: true,
            sum: vec![],
            want: "shared memory",
        },
        BadInfer {
            a: vec![],
            a_data: false,
            sum: region("small", 8),
            want: "shared_memory_byte_size is 8 but the output needs 16 bytes",
        },
        BadInfer {
            a: vec![],
            a_data: false,
            sum: region("nope", 16),
            want: "region 'nope' is not registered",
        },
        BadInfer {
            a: region("cut", 16),
            a_data: false,
            sum: vec![],
            want: "truncated",
        },
        BadInfer {
            a: vec![],
            a_data: false,
            sum: region("cut", 16),
            want: "truncated",
        },
    ];
    for case in &cases {
        let (st, body) = http_post(
            &format!("{}/v2/models/add/infer", s.http),
            &http_bad_request(case, &a, &b),
        )
        .await;
        error_of(st, &body, case.want);
        http_still_answers(&s).await;
        grpc_error_of(
            c.model_infer(grpc_bad_request(case, &a, &b)).await,
            case.want,
        );
        grpc_still_answers(&mut c).await;
    }
    // HTTP: data next to a region names both.
    let (st, body) = http_post(
        &format!("{}/v2/models/add/infer", s.http),
        &http_bad_request(&cases[6], &a, &b),
    )
    .await;
    error_of(
        st,
        &body,
        "input 'a': has both a shared memory region and data",
    );
    // gRPC: typed contents next to a region.
    let mut req = grpc_bad_request(&cases[0], &a, &b);
    req.inputs[0].parameters = reef_server::grpc_codec::shm_params("in", 16, 0);
    req.inputs[0].contents = Some(InferTensorContents {
        fp32_contents: a.clone(),
        ..Default::default()
    });
    grpc_error_of(
        c.model_infer(req).await,
        "input 'a': has both contents and a shared memory region",
    );
    // Request-level shared memory parameters are misplaced.
    let (st, body) = http_post(
        &format!("{}/v2/models/add/infer", s.http),
        &json!({ "parameters": { "shared_memory_region": "in" }, "inputs": [] }),
    )
    .await;
    error_of(st, &body, "belong on inputs and outputs");
    drop((input_obj, small_obj, cut_obj));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn shared_memory_is_off_without_allow_client_shm() {
    let s = start_shm(false).await;
    let mut c = grpc(&s.grpc).await;
    let k = key("off");
    let obj = ClientRegion::create(&k, 16).unwrap();
    const WANT: &str = "started without --allow-client-shm";
    let (st, body) = http_register(&s, "r", &k, 0, 16).await;
    error_of(st, &body, WANT);
    let (st, body) = http_get(&format!("{}/v2/systemsharedmemory/status", s.http)).await;
    error_of(st, &body, WANT);
    let (st, body) = http_post(
        &format!("{}/v2/systemsharedmemory/unregister", s.http),
        &json!({}),
    )
    .await;
    error_of(st, &body, WANT);
    grpc_error_of(grpc_register(&mut c, "r", &k, 0, 16).await, WANT);
    grpc_error_of(grpc_status(&mut c, "").await, WANT);
    grpc_error_of(
        c.system_shared_memory_unregister(SystemSharedMemoryUnregisterRequest::default())
            .await,
        WANT,
    );
    let (a, b) = (rand_f32(41, 4), rand_f32(42, 4));
    let case = BadInfer {
        a: region("r", 16),
        a_data: false,
        sum: vec![],
        want: WANT,
    };
    let (st, body) = http_post(
        &format!("{}/v2/models/add/infer", s.http),
        &http_bad_request(&case, &a, &b),
    )
    .await;
    error_of(st, &body, WANT);
    grpc_error_of(c.model_infer(grpc_bad_request(&case, &a, &b)).await, WANT);
    http_still_answers(&s).await;
    grpc_still_answers(&mut c).await;
    drop(obj);
    s.stop().await.unwrap();
}
