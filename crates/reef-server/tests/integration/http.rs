//! KServe v2 REST: every endpoint, JSON and binary tensors, bad input.

use crate::common::{
    eventually, rand_f32, rand_i64, start, start_with, TestService, TEST_DEVICE_1,
};
use reef_model::tensor::rel_l2;
use reef_sched::Priority;
use reef_server::ServerConfig;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

pub(crate) async fn get(url: &str) -> (u16, Value) {
    let r = client().get(url).send().await.expect("GET");
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub(crate) async fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = client().post(url).json(body).send().await.expect("POST");
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub(crate) fn err(v: &Value) -> String {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {v}"))
        .to_string()
}

fn f32_data(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("data array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

pub(crate) fn add_request(a: &[f32], b: &[f32], batch: usize) -> Value {
    json!({
        "id": "req-7",
        "inputs": [
            { "name": "a", "shape": [batch, 4], "datatype": "FP32", "data": a },
            { "name": "b", "shape": [batch, 4], "datatype": "FP32", "data": b },
        ]
    })
}

#[tokio::test]
async fn health_and_metadata() {
    let svc = TestService::new();
    let s = start(svc).await;
    assert_eq!(get(&format!("{}/v2/health/live", s.http)).await.0, 200);
    assert_eq!(get(&format!("{}/v2/health/ready", s.http)).await.0, 200);

    let (st, meta) = get(&format!("{}/v2", s.http)).await;
    assert_eq!(st, 200);
    assert_eq!(meta["name"], "reef");
    let ext: Vec<&str> = meta["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(ext.contains(&"binary_tensor_data") && ext.contains(&"model_repository"));

    let (st, m) = get(&format!("{}/v2/models/add", s.http)).await;
    assert_eq!(st, 200);
    assert_eq!(m["name"], "add");
    assert_eq!(m["versions"], json!(["1"]));
    assert_eq!(
        m["inputs"][0],
        json!({"name": "a", "datatype": "FP32", "shape": [-1, 4]})
    );
    assert_eq!(m["outputs"][1]["name"], "diff");
    let (st, m) = get(&format!("{}/v2/models/mixed/versions/1", s.http)).await;
    assert_eq!(st, 200);
    assert_eq!(m["inputs"][1]["datatype"], "BOOL");
    let (st, e) = get(&format!("{}/v2/models/add/versions/2", s.http)).await;
    assert_eq!(st, 404);
    assert!(err(&e).contains("version '2'"));
    let (st, e) = get(&format!("{}/v2/models/nope", s.http)).await;
    assert_eq!(st, 404);
    assert!(err(&e).contains("unknown model 'nope'"));

    assert_eq!(get(&format!("{}/v2/models/add/ready", s.http)).await.0, 200);
    assert_eq!(
        get(&format!("{}/v2/models/add/versions/1/ready", s.http))
            .await
            .0,
        200
    );
    assert_eq!(
        get(&format!("{}/v2/models/loading/ready", s.http)).await.0,
        503
    );
    assert_eq!(
        get(&format!("{}/v2/models/nope/ready", s.http)).await.0,
        404
    );
    assert_eq!(get(&format!("{}/v2/no/such/route", s.http)).await.0, 404);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn json_infer_round_trip() {
    let s = start(TestService::new()).await;
    let batch = 3;
    let (a, b) = (rand_f32(1, batch * 4), rand_f32(2, batch * 4));
    // Flat data.
    let (st, r) = post(
        &format!("{}/v2/models/add/infer", s.http),
        &add_request(&a, &b, batch),
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["model_name"], "add");
    assert_eq!(r["id"], "req-7");
    assert_eq!(r["outputs"][0]["name"], "sum");
    assert_eq!(r["outputs"][0]["datatype"], "FP32");
    assert_eq!(r["outputs"][0]["shape"], json!([3, 4]));
    let want_sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let want_diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    assert!(rel_l2(&f32_data(&r["outputs"][0]["data"]), &want_sum) < 1e-6);
    assert!(rel_l2(&f32_data(&r["outputs"][1]["data"]), &want_diff) < 1e-6);

    // Nested data, one requested output, versioned path.
    let nested = |v: &[f32]| -> Value {
        Value::from(
            v.chunks(4)
                .map(|c| Value::from(c.to_vec()))
                .collect::<Vec<_>>(),
        )
    };
    let req = json!({
        "inputs": [
            { "name": "b", "shape": [batch, 4], "datatype": "FP32", "data": nested(&b) },
            { "name": "a", "shape": [batch, 4], "datatype": "FP32", "data": nested(&a) },
        ],
        "outputs": [{ "name": "diff" }]
    });
    let (st, r) = post(&format!("{}/v2/models/add/versions/1/infer", s.http), &req).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(r["outputs"][0]["name"], "diff");
    assert!(rel_l2(&f32_data(&r["outputs"][0]["data"]), &want_diff) < 1e-6);

    // Integer and bool tensors.
    let x = rand_i64(3, 6);
    let m = [true, false, false, true, true, false];
    let k = [5i32, -7, 2_000_000, -1, 0, 9];
    let req = json!({ "inputs": [
        { "name": "x", "shape": [2, 3], "datatype": "INT64", "data": x },
        { "name": "m", "shape": [2, 3], "datatype": "BOOL", "data": m },
        { "name": "k", "shape": [2, 3], "datatype": "INT32", "data": k },
    ]});
    let (st, r) = post(&format!("{}/v2/models/mixed/infer", s.http), &req).await;
    assert_eq!(st, 200, "{r}");
    let y: Vec<i64> = r["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(y, x.iter().map(|v| -v).collect::<Vec<_>>());
    assert_eq!(r["outputs"][1]["datatype"], "BOOL");
    let nm: Vec<bool> = r["outputs"][1]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    assert_eq!(nm, m.iter().map(|v| !v).collect::<Vec<_>>());
    let k2: Vec<i64> = r["outputs"][2]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(k2, k.iter().map(|&v| 2 * v as i64).collect::<Vec<_>>());
    s.stop().await.unwrap();
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Sends a Triton binary request: JSON header then the given bytes.
async fn post_binary(url: &str, header: &Value, binary: &[u8]) -> reqwest::Response {
    let mut body = serde_json::to_vec(header).unwrap();
    let n = body.len();
    body.extend_from_slice(binary);
    client()
        .post(url)
        .header("Inference-Header-Content-Length", n.to_string())
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .expect("POST")
}

#[tokio::test]
async fn binary_infer_round_trip() {
    let s = start(TestService::new()).await;
    let batch = 2;
    let (a, b) = (rand_f32(11, batch * 4), rand_f32(12, batch * 4));
    let url = format!("{}/v2/models/add/infer", s.http);
    // a binary, b JSON; sum binary, diff JSON.
    let header = json!({
        "inputs": [
            { "name": "a", "shape": [batch, 4], "datatype": "FP32", "parameters": { "binary_data_size": 32 } },
            { "name": "b", "shape": [batch, 4], "datatype": "FP32", "data": b },
        ],
        "outputs": [
            { "name": "sum", "parameters": { "binary_data": true } },
            { "name": "diff", "parameters": { "binary_data": false } },
        ]
    });
    let r = post_binary(&url, &header, &le_bytes(&a)).await;
    assert_eq!(r.status().as_u16(), 200);
    let hlen: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    let head: Value = serde_json::from_slice(&body[..hlen]).unwrap();
    assert_eq!(head["outputs"][0]["parameters"]["binary_data_size"], 32);
    assert!(head["outputs"][0].get("data").is_none());
    let want_sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let want_diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    assert_eq!(body.len() - hlen, 32);
    assert!(rel_l2(&from_le(&body[hlen..]), &want_sum) < 1e-7);
    assert!(rel_l2(&f32_data(&head["outputs"][1]["data"]), &want_diff) < 1e-6);

    // Both binary, all outputs binary through binary_data_output.
    let header = json!({
        "parameters": { "binary_data_output": true },
        "inputs": [
            { "name": "a", "shape": [batch, 4], "datatype": "FP32", "parameters": { "binary_data_size": 32 } },
            { "name": "b", "shape": [batch, 4], "datatype": "FP32", "parameters": { "binary_data_size": 32 } },
        ]
    });
    let mut bin = le_bytes(&a);
    bin.extend(le_bytes(&b));
    let r = post_binary(&url, &header, &bin).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    let hlen: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len() - hlen, 64);
    assert!(rel_l2(&from_le(&body[hlen..hlen + 32]), &want_sum) < 1e-7);
    assert!(rel_l2(&from_le(&body[hlen + 32..]), &want_diff) < 1e-7);

    // A 3.2 MB body (above axum's 2 MB default extractor limit) is accepted.
    let big = 100_000;
    let (a, b) = (rand_f32(13, big * 4), rand_f32(14, big * 4));
    let header = json!({
        "inputs": [
            { "name": "a", "shape": [big, 4], "datatype": "FP32", "parameters": { "binary_data_size": big * 16 } },
            { "name": "b", "shape": [big, 4], "datatype": "FP32", "parameters": { "binary_data_size": big * 16 } },
        ],
        "outputs": [{ "name": "sum", "parameters": { "binary_data": true } }]
    });
    let mut bin = le_bytes(&a);
    bin.extend(le_bytes(&b));
    let r = post_binary(&url, &header, &bin).await;
    assert_eq!(r.status().as_u16(), 200);
    let hlen: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().await.unwrap();
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert!(rel_l2(&from_le(&body[hlen..]), &want) < 1e-7);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn priority_parameter() {
    let svc = TestService::new();
    let s = start(svc.clone()).await;
    let (a, b) = (rand_f32(5, 4), rand_f32(6, 4));
    let url = format!("{}/v2/models/add/infer", s.http);
    for (p, want) in [
        (json!("be"), Some(Priority::Be)),
        (json!("RT"), Some(Priority::Rt)),
        (json!(1), Some(Priority::Rt)),
        (json!(2), Some(Priority::Be)),
        (json!(0), None),
    ] {
        let mut req = add_request(&a, &b, 1);
        req["parameters"] = json!({ "priority": p });
        let (st, r) = post(&url, &req).await;
        assert_eq!(st, 200, "{r}");
        assert_eq!(
            *svc.last_priority.lock().unwrap(),
            Some(want),
            "priority {p}"
        );
    }
    let mut req = add_request(&a, &b, 1);
    req["parameters"] = json!({ "priority": "urgent" });
    let (st, r) = post(&url, &req).await;
    assert_eq!(st, 400);
    assert!(err(&r).contains("priority"), "{r}");
    s.stop().await.unwrap();
}

/// `reef_timing: true` gets the server's own account of the request back in
/// the response parameters; without it the response has none; a value that
/// is not a boolean is refused by name.
#[tokio::test]
async fn timing_parameter() {
    let s = start(TestService::new()).await;
    let (a, b) = (rand_f32(15, 4), rand_f32(16, 4));
    let url = format!("{}/v2/models/add/infer", s.http);
    let (st, plain) = post(&url, &add_request(&a, &b, 1)).await;
    assert_eq!(st, 200, "{plain}");
    assert!(plain.get("parameters").is_none(), "{plain}");
    let mut req = add_request(&a, &b, 1);
    req["parameters"] = json!({ "reef_timing": true });
    let (st, r) = post(&url, &req).await;
    assert_eq!(st, 200, "{r}");
    let p = r["parameters"].as_object().expect("timing parameters");
    for k in [
        "reef_server_us",
        "reef_scheduler_us",
        "reef_queue_us",
        "reef_input_us",
        "reef_output_us",
        "reef_preemptions",
        "reef_kernels_rerun",
    ] {
        assert!(p[k].as_i64().is_some_and(|v| v >= 0), "{k}: {r}");
    }
    // The scheduler's account starts at the handler's start and ends before
    // the answer is ready, so it lies within the server's.
    assert!(
        p["reef_scheduler_us"].as_i64() <= p["reef_server_us"].as_i64(),
        "{r}"
    );
    // The answer itself is unchanged.
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert!(rel_l2(&f32_data(&r["outputs"][0]["data"]), &sum) < 1e-7);
    req["parameters"] = json!({ "reef_timing": "yes" });
    let (st, r) = post(&url, &req).await;
    assert_eq!(st, 400);
    assert!(err(&r).contains("reef_timing"), "{r}");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_rejected_with_clear_messages() {
    let s = start(TestService::new()).await;
    let url = format!("{}/v2/models/add/infer", s.http);
    let a = rand_f32(21, 8);
    let inp = |name: &str, shape: Value, dt: &str, data: Value| json!({ "name": name, "shape": shape, "datatype": dt, "data": data });
    let good_b = inp("b", json!([2, 4]), "FP32", json!(a));
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({ "inputs": [inp("a", json!([2, 5]), "FP32", json!(rand_f32(1, 10))), good_b.clone()] }),
            "input 'a': shape [2, 5]",
        ),
        (
            json!({ "inputs": [inp("a", json!([2, 4]), "INT32", json!(vec![1; 8])), good_b.clone()] }),
            "input 'a': datatype INT32",
        ),
        (
            json!({ "inputs": [inp("a", json!([2, 4]), "BYTES", json!(vec!["x"; 8])), good_b.clone()] }),
            "unsupported datatype 'BYTES'",
        ),
        (
            json!({ "inputs": [inp("a", json!([2, 4]), "FP32", json!(rand_f32(1, 7))), good_b.clone()] }),
            "tensor 'a': shape [2, 4] needs 8 elements, data has 7",
        ),
        (
            json!({ "inputs": [inp("a", json!([2, 4]), "FP32", json!(vec!["x"; 8])), good_b.clone()] }),
            "tensor 'a': element 0",
        ),
        (
            json!({ "inputs": [inp("a", json!([2, -4]), "FP32", json!(a)), good_b.clone()] }),
            "negative dimension",
        ),
        (
            json!({ "inputs": [inp("c", json!([2, 4]), "FP32", json!(a)), good_b.clone()] }),
            "no input 'c'",
        ),
        (json!({ "inputs": [good_b.clone()] }), "missing input 'a'"),
        (
            json!({ "inputs": [good_b.clone(), good_b.clone()] }),
            "input 'b' is given twice",
        ),
        (
            json!({ "inputs": [inp("a", json!([1, 4]), "FP32", json!(rand_f32(1, 4))), good_b.clone()] }),
            "disagree on batch size",
        ),
        (
            json!({ "inputs": [{ "name": "a", "shape": [2, 4], "datatype": "FP32" }, good_b.clone()] }),
            "input 'a': has no `data`",
        ),
        (
            json!({ "inputs": [inp("a", json!([2, 4]), "FP32", json!(a)), good_b.clone()], "outputs": [{ "name": "prod" }] }),
            "no output 'prod'",
        ),
        (
            json!({ "inputs": [{ "name": "a", "shape": [2, 4], "datatype": "FP32", "parameters": { "binary_data_size": 32 } }, good_b.clone()] }),
            "no inference-header-content-length header",
        ),
        (
            json!({ "inputs": "nope" }),
            "malformed inference request JSON",
        ),
        (
            json!({ "inputs": [{ "name": "a", "shape": [2, 4] }] }),
            "missing field `datatype`",
        ),
    ];
    for (req, want) in cases {
        let (st, r) = post(&url, &req).await;
        assert_eq!(st, 400, "{req} -> {r}");
        assert!(err(&r).contains(want), "expected '{want}' in '{}'", err(&r));
    }
    // INT32 overflow.
    let req = json!({ "inputs": [
        { "name": "x", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3] },
        { "name": "m", "shape": [1, 3], "datatype": "BOOL", "data": [true, false, true] },
        { "name": "k", "shape": [1, 3], "datatype": "INT32", "data": [1, 3_000_000_000i64, 3] },
    ]});
    let (st, r) = post(&format!("{}/v2/models/mixed/infer", s.http), &req).await;
    assert_eq!(st, 400);
    assert!(err(&r).contains("tensor 'k': element 1"), "{r}");

    // Malformed JSON text.
    let r = client()
        .post(&url)
        .body("{\"inputs\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(err(&r.json().await.unwrap()).contains("malformed inference request JSON"));

    // Binary: wrong byte size, leftover bytes, header longer than the body.
    let header = json!({ "inputs": [
        { "name": "a", "shape": [2, 4], "datatype": "FP32", "parameters": { "binary_data_size": 28 } },
        good_b.clone(),
    ]});
    let r = post_binary(&url, &header, &le_bytes(&a)[..28]).await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(err(&r.json().await.unwrap())
        .contains("tensor 'a': FP32 shape [2, 4] needs 32 bytes of data, got 28"));
    let header = json!({ "inputs": [
        { "name": "a", "shape": [2, 4], "datatype": "FP32", "parameters": { "binary_data_size": 32 } },
        good_b.clone(),
    ]});
    let mut extra = le_bytes(&a);
    extra.extend([1, 2, 3]);
    let r = post_binary(&url, &header, &extra).await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(err(&r.json().await.unwrap()).contains("3 bytes of binary data"));
    let r = post_binary(&url, &header, &le_bytes(&a)[..16]).await;
    assert_eq!(r.status().as_u16(), 400);
    assert!(err(&r.json().await.unwrap()).contains("only 16 bytes"));
    let r = client()
        .post(&url)
        .header("Inference-Header-Content-Length", "9999")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(err(&r.json().await.unwrap()).contains("9999"));

    // Unknown model.
    let (st, r) = post(
        &format!("{}/v2/models/nope/infer", s.http),
        &json!({ "inputs": [] }),
    )
    .await;
    assert_eq!(st, 404);
    assert!(err(&r).contains("unknown model 'nope'"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn overload_not_ready_internal_and_body_limit() {
    let svc = TestService::new();
    let config = ServerConfig {
        max_body_bytes: 4096,
        ..ServerConfig::localhost_ephemeral()
    };
    let s = start_with(svc, config).await;
    let one = json!({ "inputs": [{ "name": "x", "shape": [1, 4], "datatype": "FP32", "data": rand_f32(9, 4) }] });
    for (model, status, want) in [
        ("busy", 429, "overloaded"),
        ("loading", 503, "not ready"),
        ("broken", 500, "produced 0 outputs"),
    ] {
        let r = client()
            .post(format!("{}/v2/models/{model}/infer", s.http))
            .json(&one)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{model}");
        let body: Value = r.json().await.unwrap();
        assert!(err(&body).contains(want), "{model}: {body}");
    }
    // 5000 bytes > 4096: 413 with a message, both with Content-Length and chunked.
    let big = json!({ "inputs": [{ "name": "a", "shape": [1, 4], "datatype": "FP32", "data": rand_f32(1, 4) }], "pad": "x".repeat(5000) });
    let r = client()
        .post(format!("{}/v2/models/add/infer", s.http))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(err(&r.json().await.unwrap()).contains("limit of 4096 bytes"));
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 3000]), Ok(vec![b' '; 3000])];
    let body = reqwest::Body::wrap_stream(futures_stream(chunks));
    let r = client()
        .post(format!("{}/v2/models/add/infer", s.http))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    s.stop().await.unwrap();
}

fn futures_stream(
    items: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn metrics_endpoint() {
    let s = start(TestService::new()).await;
    let (a, b) = (rand_f32(31, 4), rand_f32(32, 4));
    let (st, _) = post(
        &format!("{}/v2/models/add/infer", s.http),
        &add_request(&a, &b, 1),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _) = post(
        &format!("{}/v2/models/busy/infer", s.http),
        &json!({ "inputs": [{ "name": "x", "shape": [1, 4], "datatype": "FP32", "data": a }] }),
    )
    .await;
    assert_eq!(st, 429);
    let r = client()
        .get(format!("{}/metrics", s.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for want in [
        r#"reef_requests_total{model="add",priority="rt",outcome="success"} 1"#,
        r#"reef_requests_total{model="busy",priority="be",outcome="overloaded"} 1"#,
        r#"reef_request_duration_seconds_count{priority="rt"} 1"#,
        r#"reef_queue_depth{priority="be"} 5"#,
        r#"reef_tasks_completed_total{priority="rt"} 7"#,
        "reef_preemptions_total 13",
        "reef_kernels_rerun_total 17",
        "reef_padded_rt_kernels_total 19",
        "reef_pad_launches_total 23",
        "reef_task_contexts_made_total 29",
        r#"reef_preemption_latency_microseconds{stat="p99"} 90"#,
        "reef_preemption_latency_samples_total 13",
        r#"reef_preemption_raise_latency_microseconds{stat="p99"} 9"#,
        "reef_device_busy_fraction 0.25",
        r#"reef_scheduler_info{device="test device",mode="reef"} 1"#,
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_per_device() {
    let s = start(TestService::new()).await;
    let r = client()
        .get(format!("{}/metrics", s.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let text = r.text().await.unwrap();
    // Quotes, backslash and newline escaped as the text format wants.
    let escaped = r#"gpu \"1\" C:\\dev\nH100"#;
    assert!(!TEST_DEVICE_1.contains(escaped), "the name needs escaping");
    for want in [
        r#"reef_device_healthy{device="0",name="test device 0"} 1"#.to_string(),
        format!(r#"reef_device_healthy{{device="1",name="{escaped}"}} 0"#),
        r#"reef_device_busy_fraction{device="0"} 0.125"#.into(),
        r#"reef_device_busy_fraction{device="1"} 0.375"#.into(),
        r#"reef_device_rt_queue_depth{device="1"} 1"#.into(),
        r#"reef_device_be_queue_depth{device="0"} 2"#.into(),
        r#"reef_device_be_queue_depth{device="1"} 3"#.into(),
        r#"reef_device_completed_total{device="0",priority="rt"} 3"#.into(),
        r#"reef_device_completed_total{device="1",priority="be"} 10"#.into(),
        r#"reef_device_preemptions_total{device="1"} 8"#.into(),
        // The aggregate series are unchanged.
        "reef_device_busy_fraction 0.25".into(),
        r#"reef_tasks_completed_total{priority="be"} 11"#.into(),
        "reef_preemptions_total 13".into(),
    ] {
        assert!(text.contains(&want), "missing `{want}` in:\n{text}");
    }
    // Every family is described once, and per-device counters add up to the
    // aggregate ones.
    for name in [
        "reef_device_healthy",
        "reef_device_busy_fraction",
        "reef_device_rt_queue_depth",
        "reef_device_be_queue_depth",
        "reef_device_completed_total",
        "reef_device_preemptions_total",
    ] {
        let n = text.matches(&format!("# TYPE {name} ")).count();
        assert_eq!(n, 1, "{name} described {n} times");
    }
    let sample = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("bad sample line `{l}`"))
            })
            .sum()
    };
    assert_eq!(sample("reef_device_preemptions_total{"), 13.0);
    assert_eq!(
        sample("reef_device_completed_total{"),
        sample("reef_tasks_completed_total{")
    );
    assert_eq!(sample("reef_device_rt_queue_depth{"), 2.0);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn client_disconnect_cancels_and_shutdown_is_graceful() {
    let svc = TestService::new();
    let mut s = start(svc.clone()).await;
    let url = format!("{}/v2/models/slow/infer", s.http);
    let req = json!({ "inputs": [{ "name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.5, -1.5] }] });
    // A client that gives up: the handler is dropped, so is the ticket.
    let r = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
        .post(&url)
        .json(&req)
        .send()
        .await;
    assert!(r.is_err(), "slow model answered");
    assert!(
        eventually(|| svc.cancelled.load(Ordering::SeqCst) == 1).await,
        "ticket was not dropped"
    );

    // An in-flight request at shutdown gets an answer, then serve() returns.
    let pending = tokio::spawn({
        let url = url.clone();
        let req = req.clone();
        async move {
            client()
                .post(&url)
                .json(&req)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.trigger_stop();
    let status = pending
        .await
        .unwrap()
        .expect("in-flight request lost its answer");
    assert_eq!(status, 503);
    assert!(svc.shut_down.load(Ordering::SeqCst));
    let http = s.http.clone();
    s.join().await.unwrap();
    assert!(
        client()
            .get(format!("{http}/v2/health/live"))
            .send()
            .await
            .is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn a_starting_server_is_live_not_ready_and_answers_503_until_its_service_starts() {
    let starting = reef_sched::starting::Starting::new();
    let s = start(starting.clone()).await;
    assert_eq!(get(&format!("{}/v2/health/live", s.http)).await.0, 200);
    assert_eq!(get(&format!("{}/v2/health/ready", s.http)).await.0, 503);
    // Every model answers "not ready, starting" (503), never "unknown" (404).
    let (st, body) = get(&format!("{}/v2/models/add/ready", s.http)).await;
    assert_eq!(st, 503, "{body}");
    let (st, body) = get(&format!("{}/v2/models/add", s.http)).await;
    assert_eq!(st, 503, "{body}");
    assert!(err(&body).contains("starting"), "{body}");
    let a = rand_f32(7, 8);
    let (st, body) = post(
        &format!("{}/v2/models/add/infer", s.http),
        &add_request(&a, &a, 2),
    )
    .await;
    assert_eq!(st, 503, "{body}");
    assert!(err(&body).contains("starting"), "{body}");
    let mut grpc = reef_server::grpc_client(&s.grpc)
        .await
        .expect("gRPC client");
    let ready = grpc
        .server_ready(reef_server::proto::ServerReadyRequest {})
        .await
        .expect("ServerReady")
        .into_inner();
    assert!(!ready.ready);

    // Handed over: ready, and the same requests are served.
    starting.started(TestService::new());
    assert_eq!(get(&format!("{}/v2/health/ready", s.http)).await.0, 200);
    assert_eq!(get(&format!("{}/v2/models/add/ready", s.http)).await.0, 200);
    let (st, body) = post(
        &format!("{}/v2/models/add/infer", s.http),
        &add_request(&a, &a, 2),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let ready = grpc
        .server_ready(reef_server::proto::ServerReadyRequest {})
        .await
        .expect("ServerReady")
        .into_inner();
    assert!(ready.ready);
    s.stop().await.unwrap();
}

/// A faulty client's HTTP inference requests (a valid JSON or binary request
/// with one to three random changes to its header or body) get 200 or a
/// 4xx/503 with an error message, never a 500 or a dropped connection, and
/// the server still answers a valid request correctly afterwards.
#[tokio::test]
async fn random_requests_get_answers_or_clear_errors() {
    use rand::{Rng, SeedableRng};
    let s = start(TestService::new()).await;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x4f7);
    let (a, b) = (rand_f32(81, 8), rand_f32(82, 8));
    let url = format!("{}/v2/models/add/infer", s.http);
    let scalars = [
        json!(true),
        json!(-1),
        json!(3),
        json!("rt"),
        json!("x"),
        json!(null),
        json!(1e300),
        json!([1, 2]),
    ];
    let keys = crate::support::PARAM_KEYS;
    let mut answered = 0;
    for round in 0..400 {
        let binary = rng.random::<bool>();
        let mut req = add_request(&a, &b, 2);
        let mut tail: Vec<u8> = Vec::new();
        if binary {
            for (i, t) in [&a, &b].iter().enumerate() {
                req["inputs"][i].as_object_mut().unwrap().remove("data");
                req["inputs"][i]["parameters"] = json!({ "binary_data_size": 32 });
                tail.extend(t.iter().flat_map(|x| x.to_le_bytes()));
            }
        }
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..2);
            let v = scalars[rng.random_range(0..scalars.len())].clone();
            let k = keys[rng.random_range(0..keys.len())];
            match rng.random_range(0..8) {
                0 => req["inputs"][i]["shape"] = json!([rng.random_range(-2..5), 1i64 << 40]),
                1 => {
                    req["inputs"][i]["datatype"] = json!(
                        ["FP32", "INT64", "BOOL", "BYTES", "FP16", ""][rng.random_range(0..6)]
                    )
                }
                2 => req["inputs"][i]["name"] = json!(["a", "b", "x", ""][rng.random_range(0..4)]),
                3 => req["inputs"][i]["data"] = v,
                4 => req["parameters"] = json!({ k: v }),
                5 => req["inputs"][i]["parameters"] = json!({ k: v }),
                6 => {
                    let name = ["sum", "diff", "nope"][rng.random_range(0..3)];
                    req["outputs"] = json!([{ "name": name, "parameters": { k: v } }])
                }
                _ => tail.truncate(rng.random_range(0..=tail.len())),
            }
        }
        let resp = if binary {
            post_binary(&url, &req, &tail).await
        } else {
            client().post(&url).json(&req).send().await.expect("POST")
        };
        let status = resp.status().as_u16();
        let body = resp.bytes().await.expect("body");
        if status == 200 {
            answered += 1;
            continue;
        }
        assert!(
            (400..500).contains(&status) || status == 503,
            "round {round}: status {status} for {req}: {}",
            String::from_utf8_lossy(&body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert!(!err(&v).is_empty(), "round {round}: no message");
    }
    assert!(
        answered > 0,
        "no random request was valid: the changes are too harsh"
    );
    let (st, r) = post(&url, &add_request(&a, &b, 2)).await;
    assert_eq!(st, 200, "{r}");
    let sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert!(rel_l2(&f32_data(&r["outputs"][0]["data"]), &sum) < 1e-7);
    s.stop().await.unwrap();
}
