//! The REST endpoint driven by the `curl` binary, as an operator would:
//! health, metadata, model configuration, JSON and binary-tensor inference,
//! and the bad-input cases with their status codes and messages. Skips (with
//! a message) when `curl` is not on PATH.

use crate::common::{batch_limit_repository, rand_f32, start_with, Running, TestService};
use reef_model::tensor::rel_l2;
use reef_sched::Priority;
use reef_server::ServerConfig;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Body limit of the server under test (small, so 413 costs little).
const MAX_BODY: usize = 256 << 10;
/// Batch limit of the `add` model in the test repository.
const ADD_MAX_BATCH: usize = 4;

/// One finished curl call.
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `error` message of a failed request.
    fn error(&self) -> String {
        let v = self.json();
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message in {v}"))
            .to_string()
    }

    /// A response header's value (case-insensitive name).
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Where curl's inputs and outputs go.
struct Curl {
    dir: tempfile::TempDir,
    calls: usize,
}

impl Curl {
    fn new() -> Self {
        Curl {
            dir: tempfile::tempdir().expect("temp dir"),
            calls: 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{}-{name}", self.calls))
    }

    /// Runs curl (in a blocking thread) with `args`, plus `body` as the
    /// request body when given; returns status, headers and body.
    async fn run(&mut self, args: &[&str], body: Option<&[u8]>) -> Reply {
        self.calls += 1;
        let (out, hdr, req) = (self.path("out"), self.path("hdr"), self.path("req"));
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "-o"])
            .arg(&out)
            .arg("-D")
            .arg(&hdr)
            .args(["-w", "%{http_code}"])
            .args(args);
        if let Some(b) = body {
            std::fs::write(&req, b).expect("write request body");
            cmd.arg("--data-binary").arg(format!("@{}", req.display()));
        }
        let done = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("curl thread")
            .expect("run curl");
        let stdout = String::from_utf8_lossy(&done.stdout).to_string();
        assert!(
            done.status.success(),
            "curl {args:?} failed: {}{stdout}",
            String::from_utf8_lossy(&done.stderr)
        );
        let read = |p: &Path| std::fs::read(p).unwrap_or_default();
        Reply {
            status: stdout.trim().parse().expect("curl printed the status code"),
            headers: String::from_utf8_lossy(&read(&hdr)).into_owned(),
            body: read(&out),
        }
    }

    async fn get(&mut self, url: &str) -> Reply {
        self.run(&[url], None).await
    }

    async fn post_json(&mut self, url: &str, body: &[u8]) -> Reply {
        self.run(
            &["-X", "POST", "-H", "Content-Type: application/json", url],
            Some(body),
        )
        .await
    }
}

fn curl_available() -> bool {
    Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn start_server(repo: Option<&Path>) -> Running {
    let config = ServerConfig {
        max_body_bytes: MAX_BODY,
        model_repository: repo.map(Path::to_path_buf),
        ..ServerConfig::localhost_ephemeral()
    };
    start_with(TestService::new(), config).await
}

fn f32_data(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("data array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn le_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_drives_the_rest_endpoint() {
    if !curl_available() {
        println!("SKIP: curl not found");
        return;
    }
    let repo = batch_limit_repository("add", ADD_MAX_BATCH, Priority::Rt);
    let s = start_server(repo.as_ref().map(|r| r.path())).await;
    let base = s.http.clone();
    let mut c = Curl::new();

    // Health and server metadata.
    let r = c.get(&format!("{base}/v2/health/live")).await;
    assert_eq!((r.status, r.json()), (200, json!({ "live": true })));
    let r = c.get(&format!("{base}/v2/health/ready")).await;
    assert_eq!((r.status, r.json()), (200, json!({ "ready": true })));
    let r = c.get(&format!("{base}/v2")).await;
    assert_eq!(r.status, 200);
    let meta = r.json();
    assert_eq!(meta["name"], "reef");
    for ext in [
        "binary_tensor_data",
        "model_configuration",
        "model_repository",
    ] {
        assert!(
            meta["extensions"]
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e == ext)),
            "{ext} missing from {meta}"
        );
    }

    // Model metadata.
    let r = c.get(&format!("{base}/v2/models/add")).await;
    assert_eq!(r.status, 200);
    let m = r.json();
    assert_eq!(m["name"], "add");
    assert_eq!(
        m["inputs"][1],
        json!({ "name": "b", "datatype": "FP32", "shape": [-1, 4] })
    );
    assert_eq!(m["outputs"][0]["name"], "sum");

    // Model configuration: `add` has a limit from the repository, `mixed` none.
    for path in ["add/config", "add/versions/1/config"] {
        let r = c.get(&format!("{base}/v2/models/{path}")).await;
        assert_eq!(r.status, 200, "{path}");
        let cfg = r.json();
        assert_eq!(cfg["name"], "add");
        assert_eq!(cfg["platform"], "reef");
        assert_eq!(cfg["backend"], "reef");
        assert_eq!(cfg["parameters"]["priority"]["string_value"], "rt");
        assert_eq!(cfg["input"][0]["name"], "a");
        assert_eq!(cfg["input"][0]["data_type"], "TYPE_FP32");
        assert_eq!(cfg["output"][1]["name"], "diff");
        if repo.is_some() {
            assert_eq!(cfg["max_batch_size"], ADD_MAX_BATCH, "{cfg}");
            assert_eq!(cfg["input"][0]["dims"], json!([4]));
            assert_eq!(cfg["output"][1]["dims"], json!([4]));
        }
    }
    let r = c.get(&format!("{base}/v2/models/mixed/config")).await;
    assert_eq!(r.status, 200);
    let cfg = r.json();
    assert_eq!(cfg["max_batch_size"], 0);
    assert_eq!(cfg["input"][0]["dims"], json!([-1, 3]));
    assert_eq!(cfg["input"][0]["data_type"], "TYPE_INT64");
    assert_eq!(cfg["input"][1]["data_type"], "TYPE_BOOL");
    assert_eq!(cfg["input"][2]["data_type"], "TYPE_INT32");
    assert_eq!(cfg["parameters"]["priority"]["string_value"], "be");
    let r = c.get(&format!("{base}/v2/models/ghost-model/config")).await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("ghost-model"), "{}", r.error());
    let r = c
        .get(&format!("{base}/v2/models/add/versions/3/config"))
        .await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("version '3'"), "{}", r.error());

    // JSON inference against the in-test service's sum and difference.
    let batch = 2;
    let (a, b) = (rand_f32(41, batch * 4), rand_f32(42, batch * 4));
    let want_sum: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let want_diff: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x - y).collect();
    let req = json!({
        "id": "curl-1",
        "inputs": [
            { "name": "a", "shape": [batch, 4], "datatype": "FP32", "data": a },
            { "name": "b", "shape": [batch, 4], "datatype": "FP32", "data": b },
        ]
    });
    let url = format!("{base}/v2/models/add/infer");
    let r = c.post_json(&url, req.to_string().as_bytes()).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let out = r.json();
    assert_eq!(out["id"], "curl-1");
    assert_eq!(out["model_name"], "add");
    assert_eq!(out["outputs"][0]["name"], "sum");
    assert_eq!(out["outputs"][0]["shape"], json!([batch, 4]));
    assert!(rel_l2(&f32_data(&out["outputs"][0]["data"]), &want_sum) < 1e-6);
    assert!(rel_l2(&f32_data(&out["outputs"][1]["data"]), &want_diff) < 1e-6);

    // Binary tensors both ways (Triton's extension).
    let header = json!({
        "inputs": [
            { "name": "a", "shape": [batch, 4], "datatype": "FP32",
              "parameters": { "binary_data_size": batch * 16 } },
            { "name": "b", "shape": [batch, 4], "datatype": "FP32",
              "parameters": { "binary_data_size": batch * 16 } },
        ],
        "outputs": [
            { "name": "diff", "parameters": { "binary_data": true } },
            { "name": "sum", "parameters": { "binary_data": true } },
        ]
    })
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(le_bytes(&a));
    body.extend(le_bytes(&b));
    let len_header = format!("Inference-Header-Content-Length: {}", header.len());
    let r = c
        .run(
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                &len_header,
                &url,
            ],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let json_len: usize = r
        .header("inference-header-content-length")
        .expect("binary answer has Inference-Header-Content-Length")
        .parse()
        .expect("a byte count");
    let (head, raw) = r.body.split_at(json_len);
    let head: Value = serde_json::from_slice(head).expect("JSON part");
    assert_eq!(head["outputs"][0]["name"], "diff");
    assert_eq!(
        head["outputs"][0]["parameters"]["binary_data_size"],
        batch * 16
    );
    assert_eq!(raw.len(), 2 * batch * 16);
    let (diff, sum) = raw.split_at(batch * 16);
    assert!(rel_l2(&from_le(diff), &want_diff) < 1e-6);
    assert!(rel_l2(&from_le(sum), &want_sum) < 1e-6);

    // Bad input: status code and a message naming the problem.
    let input = |name: &str, shape: Value, dtype: &str, data: Value| json!({ "name": name, "shape": shape, "datatype": dtype, "data": data });
    let good_b = input("b", json!([1, 4]), "FP32", json!(b[..4]));
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "malformed JSON",
            br#"{"inputs": [ {"name": "a", "#.to_vec(),
            &["malformed"],
        ),
        (
            "wrong shape",
            json!({ "inputs": [input("a", json!([1, 5]), "FP32", json!(rand_f32(5, 5))), good_b] })
                .to_string()
                .into_bytes(),
            &["'a'", "shape [1, 5]"],
        ),
        (
            "wrong dtype",
            json!({ "inputs": [input("a", json!([1, 4]), "INT32", json!([1, 2, 3, 4])), good_b] })
                .to_string()
                .into_bytes(),
            &["'a'", "INT32", "FP32"],
        ),
        (
            "wrong element count",
            json!({ "inputs": [input("a", json!([1, 4]), "FP32", json!(a[..3])), good_b] })
                .to_string()
                .into_bytes(),
            &["'a'", "needs 4 elements"],
        ),
        (
            "unknown tensor name",
            json!({ "inputs": [input("zz", json!([1, 4]), "FP32", json!(a[..4])), good_b] })
                .to_string()
                .into_bytes(),
            &["'zz'", "no input"],
        ),
        (
            "unknown datatype",
            json!({ "inputs": [input("a", json!([1, 4]), "FP128", json!(a[..4])), good_b] })
                .to_string()
                .into_bytes(),
            &["'a'", "FP128"],
        ),
    ];
    for (what, body, needles) in cases {
        let r = c.post_json(&url, &body).await;
        assert_eq!(
            r.status,
            400,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.error();
        for n in needles {
            assert!(msg.contains(n), "{what}: '{n}' not in: {msg}");
        }
    }
    if repo.is_some() {
        let big = ADD_MAX_BATCH + 1;
        let n = big * 4;
        let req = json!({ "inputs": [
            input("a", json!([big, 4]), "FP32", json!(rand_f32(7, n))),
            input("b", json!([big, 4]), "FP32", json!(rand_f32(8, n))),
        ]});
        let r = c.post_json(&url, req.to_string().as_bytes()).await;
        assert_eq!(r.status, 400);
        assert!(r.error().contains("max_batch 4"), "{}", r.error());
    }

    // Binary part of the wrong size: binary_data_size too small for the shape.
    let header = json!({ "inputs": [
        { "name": "a", "shape": [1, 4], "datatype": "FP32",
          "parameters": { "binary_data_size": 12 } },
        { "name": "b", "shape": [1, 4], "datatype": "FP32",
          "parameters": { "binary_data_size": 16 } },
    ]})
    .to_string();
    let mut body = header.clone().into_bytes();
    body.extend(le_bytes(&a[..3]));
    body.extend(le_bytes(&b[..4]));
    let len_header = format!("Inference-Header-Content-Length: {}", header.len());
    let r = c
        .run(&["-X", "POST", "-H", &len_header, &url], Some(&body))
        .await;
    assert_eq!(r.status, 400);
    let msg = r.error();
    assert!(
        msg.contains("'a'") && msg.contains("16 bytes") && msg.contains("got 12"),
        "{msg}"
    );

    // Unknown model.
    let r = c
        .post_json(
            &format!("{base}/v2/models/no-such-model/infer"),
            req.to_string().as_bytes(),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(r.error().contains("no-such-model"), "{}", r.error());

    // Oversized body.
    let n = MAX_BODY / 4 + 16;
    let huge = json!({ "inputs": [input("a", json!([1, n]), "FP32", json!(vec![0.5f32; n]))] });
    let r = c
        .run(
            &[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/json",
                "-H",
                "Expect: 100-continue",
                &url,
            ],
            Some(huge.to_string().as_bytes()),
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(
        r.error().contains(&format!("limit of {MAX_BODY} bytes")),
        "{}",
        r.error()
    );

    s.stop().await.expect("clean shutdown");
}

/// Overload and a client that leaves, through curl: a model whose queue is
/// full answers 429 with the reason; a curl that gives up on a request
/// (`--max-time`, exit code 28) has it dropped and counted as
/// `client_gone`, and the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_sees_overload_and_leaving_cancels() {
    if !curl_available() {
        println!("SKIP: curl not found");
        return;
    }
    let svc = TestService::new();
    let s = start_with(svc.clone(), ServerConfig::localhost_ephemeral()).await;
    let mut curl = Curl::new();
    let body = json!({ "inputs": [{ "name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.5, -1.5] }] });
    let body = serde_json::to_vec(&body).expect("JSON");
    let four = json!({ "inputs": [{ "name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.5, -1.5, 2.0, 0.25] }] });
    let busy = curl
        .post_json(
            &format!("{}/v2/models/busy/infer", s.http),
            &serde_json::to_vec(&four).expect("JSON"),
        )
        .await;
    assert_eq!(busy.status, 429, "{}", String::from_utf8_lossy(&busy.body));
    assert!(!busy.error().is_empty());

    let url = format!("{}/v2/models/slow/infer", s.http);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "0.3", "-X", "POST"])
            .args(["-H", "Content-Type: application/json", "--data-binary"])
            .arg(String::from_utf8(body).expect("UTF-8"))
            .arg(&url)
            .output()
    })
    .await
    .expect("curl thread")
    .expect("run curl");
    assert_eq!(out.status.code(), Some(28), "curl timed out");
    assert!(
        crate::common::eventually(|| svc.cancelled.load(std::sync::atomic::Ordering::SeqCst) == 1)
            .await,
        "the request was not dropped"
    );
    let metrics = curl.get(&format!("{}/metrics", s.http)).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"reef_requests_total{model="slow",priority="be",outcome="client_gone"} 1"#),
        "{text}"
    );
    assert_eq!(
        curl.get(&format!("{}/v2/health/ready", s.http))
            .await
            .status,
        200
    );
    s.stop().await.unwrap();
}
