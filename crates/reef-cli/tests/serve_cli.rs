//! `reef serve` as a process: it binds and answers health checks before its
//! device is ready (ready only once it is), loads the zoo models in the
//! background, stops cleanly on SIGTERM, and fails at once, naming what is
//! wrong, on settings it cannot run with.

mod serve_process;

use serve_process::{status, wait_for_200, Serve};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn serve_answers_health_checks_loads_models_and_stops_on_sigterm() {
    let mut serve = Serve::start(&["--device", "cpu", "--models", "resnet_tiny,bert_tiny"]);
    let (http, grpc) = (serve.http, serve.grpc);
    assert!(
        serve.first.contains("preparing the device"),
        "{}",
        serve.first
    );
    assert_eq!(status(http, "/v2/health/live"), Some(200));
    assert!(
        wait_for_200(http, "/v2/health/ready", Duration::from_secs(120)),
        "never ready"
    );
    let ready = serve.lines.next().expect("a second line").expect("utf-8");
    assert!(ready.starts_with("reef ready on "), "{ready}");
    for m in ["resnet_tiny", "bert_tiny"] {
        assert!(
            wait_for_200(
                http,
                &format!("/v2/models/{m}/ready"),
                Duration::from_secs(120)
            ),
            "{m} never ready"
        );
    }
    // A model that is not served is unknown once the server is up.
    assert_eq!(status(http, "/v2/models/vgg19/ready"), Some(404));
    // `reef infer` against it, with the server's own timing.
    let out = Command::new(env!("CARGO_BIN_EXE_reef"))
        .args(["infer", "resnet_tiny", "--count", "3", "--timing"])
        .args(["--url", &format!("http://{grpc}")])
        .output()
        .expect("run reef infer");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("3 request(s): latency median"), "{text}");
    assert!(text.contains("inside the server: median"), "{text}");
    let term = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    let t0 = Instant::now();
    let code = loop {
        if let Some(s) = serve.child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code}");
}

/// Runs `reef serve` with `args` and `env`, expecting it to exit by itself
/// within a minute; returns (success, stdout and stderr).
fn serve_exits(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_reef"))
        .arg("serve")
        .args(["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start reef serve");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("reef serve {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    (status.success(), text)
}

#[test]
fn serve_fails_at_once_without_the_gpu_it_was_told_to_use() {
    if reef_cuda::cuda_available() {
        println!("SKIP: a GPU is present; this checks the failure without one");
        return;
    }
    let (ok, out) = serve_exits(&["--device", "cuda", "--models", "resnet_tiny"], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("no usable CUDA device"), "{out}");
    // It failed before binding anything.
    assert!(!out.contains("reef serving"), "{out}");
}

#[test]
fn serve_names_a_bad_gpu_setting_before_binding() {
    let (ok, out) = serve_exits(
        &["--device", "auto", "--models", "resnet_tiny"],
        &[("REEF_PRECISION", "fp7")],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("REEF_PRECISION"), "{out}");
    assert!(!out.contains("reef serving"), "{out}");
}
