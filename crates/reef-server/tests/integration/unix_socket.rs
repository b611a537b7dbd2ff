//! The HTTP and gRPC endpoints on Unix domain sockets: the same answers as
//! over TCP, the socket files removed at shutdown, and a second server
//! refused on a socket that a live one answers on.

use crate::common::{rand_f32, start_with, TestService};
use crate::grpc::add_raw;
use reef_server::proto::ServerReadyRequest;
use reef_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP/1.1 request over the Unix socket at `path`; the whole response.
async fn http_over_unix(path: &std::path::Path, request: &str) -> String {
    let mut s = tokio::net::UnixStream::connect(path)
        .await
        .expect("connect to the HTTP socket");
    s.write_all(request.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read the response");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_sockets_serve_http_and_grpc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (http_sock, grpc_sock) = (dir.path().join("http.sock"), dir.path().join("grpc.sock"));
    let config = ServerConfig {
        http_uds: Some(http_sock.clone()),
        grpc_uds: Some(grpc_sock.clone()),
        ..ServerConfig::localhost_ephemeral()
    };
    let s = start_with(TestService::new(), config.clone()).await;

    // gRPC: the same answer over the socket as over TCP.
    let (a, b) = (rand_f32(71, 8), rand_f32(72, 8));
    let mut unix = reef_server::grpc_client(&format!("unix:{}", grpc_sock.display()))
        .await
        .expect("connect over the gRPC socket");
    let mut tcp = reef_server::grpc_client(&s.grpc).await.expect("connect");
    assert!(
        unix.server_ready(ServerReadyRequest {})
            .await
            .expect("ready over the socket")
            .into_inner()
            .ready
    );
    let over_unix = unix
        .model_infer(add_raw(&a, &b, 2))
        .await
        .expect("infer over the socket")
        .into_inner();
    let over_tcp = tcp
        .model_infer(add_raw(&a, &b, 2))
        .await
        .expect("infer over TCP")
        .into_inner();
    let sum: Vec<u8> = a
        .iter()
        .zip(&b)
        .flat_map(|(x, y)| (x + y).to_le_bytes())
        .collect();
    assert_eq!(over_unix.raw_output_contents[0].as_ref(), sum.as_slice());
    assert_eq!(over_unix.raw_output_contents, over_tcp.raw_output_contents);
    // The gRPC spelling of the URL works too.
    let mut again = reef_server::grpc_client(&format!("unix://{}", grpc_sock.display()))
        .await
        .expect("connect with unix://");
    assert!(again.server_ready(ServerReadyRequest {}).await.is_ok());

    // HTTP: health and an inference with a JSON body.
    let r = http_over_unix(
        &http_sock,
        "GET /v2/health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let body = serde_json::json!({
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [1, 4], "data": [1.0, 2.0, 3.0, 4.0]},
            {"name": "b", "datatype": "FP32", "shape": [1, 4], "data": [0.5, 0.5, 0.5, 0.5]}
        ]
    })
    .to_string();
    let r = http_over_unix(
        &http_sock,
        &format!(
            "POST /v2/models/add/infer HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("[1.5,2.5,3.5,4.5]"), "{r}");

    // A second server on the same sockets is refused, naming the socket.
    let err = reef_server::Server::bind(config)
        .await
        .expect_err("the sockets are taken");
    assert!(err.to_string().contains("http.sock"), "{err}");
    assert!(err.to_string().contains("already listening"), "{err}");

    drop((unix, again));
    s.stop().await.expect("stops");
    assert!(!http_sock.exists(), "HTTP socket file left behind");
    assert!(!grpc_sock.exists(), "gRPC socket file left behind");
}
