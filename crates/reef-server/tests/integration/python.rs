//! Runs tests/python/test_tritonclient.py (stock tritonclient, HTTP and gRPC)
//! against the server over the in-test scheduler, when python3 has
//! tritonclient, pytest and numpy; prints SKIP otherwise.

use crate::common::{start, TestService};
use std::path::PathBuf;
use std::time::Duration;

#[tokio::test]
async fn tritonclient_python_suite() {
    let probe = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import tritonclient.http, tritonclient.grpc, pytest, numpy",
        ])
        .output()
        .await;
    match probe {
        Ok(o) if o.status.success() => {}
        _ => {
            println!("SKIP tritonclient_python_suite: python3 with tritonclient[http,grpc], pytest and numpy not found");
            return;
        }
    }
    let s = start(TestService::new()).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_tritonclient.py");
    let grpc = s.grpc.trim_start_matches("http://").to_string();
    let http = s.http.trim_start_matches("http://").to_string();
    for model in ["add", "mixed"] {
        let run = tokio::process::Command::new("python3")
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(&script)
            .env("REEF_HTTP_URL", &http)
            .env("REEF_GRPC_URL", &grpc)
            .env("REEF_TEST_MODEL", model)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("pytest timed out")
            .expect("run pytest");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("model {model}:\n{text}");
        assert!(
            out.status.success(),
            "pytest failed for model {model}:\n{text}"
        );
    }
    s.stop().await.unwrap();
}
