//! Runs tests/python/test_tritonclient.py (stock tritonclient, HTTP and gRPC)
//! against the server over the in-test scheduler, when python3 has
//! tritonclient, pytest and numpy; prints SKIP otherwise. A model repository
//! gives `add` a batch limit, so the model-configuration checks see both a
//! batching model (`add`) and one without a known limit (`mixed`). The
//! server allows client shared memory, for tritonclient's system shared
//! memory flow, and listens for gRPC on a Unix socket too.

use crate::common::{batch_limit_repository, start_with, TestService};
use reef_sched::Priority;
use reef_server::ServerConfig;
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
    const ADD_MAX_BATCH: usize = 6;
    let repo = batch_limit_repository("add", ADD_MAX_BATCH, Priority::Rt);
    let sockets = tempfile::tempdir().expect("temp dir");
    let grpc_uds = sockets.path().join("reef-grpc.sock");
    let config = ServerConfig {
        model_repository: repo.as_ref().map(|r| r.path().to_path_buf()),
        allow_client_shm: true,
        grpc_uds: Some(grpc_uds.clone()),
        ..ServerConfig::localhost_ephemeral()
    };
    let s = start_with(TestService::new(), config).await;
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/test_tritonclient.py");
    let grpc = s.grpc.trim_start_matches("http://").to_string();
    let http = s.http.trim_start_matches("http://").to_string();
    // (model, expected max_batch_size or -1 when unknown, default priority)
    let add_max = if repo.is_some() {
        ADD_MAX_BATCH.to_string()
    } else {
        "-1".to_string()
    };
    for (model, max_batch, priority) in [("add", add_max.as_str(), "rt"), ("mixed", "0", "be")] {
        let run = tokio::process::Command::new("python3")
            // -rs: a skipped test (shared memory module missing) says why.
            .args(["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"])
            .arg(&script)
            .env("REEF_HTTP_URL", &http)
            .env("REEF_GRPC_URL", &grpc)
            .env("REEF_GRPC_UDS", &grpc_uds)
            .env("REEF_TEST_MODEL", model)
            .env("REEF_TEST_MAX_BATCH", max_batch)
            .env("REEF_TEST_PRIORITY", priority)
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
