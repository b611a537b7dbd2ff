//! reef's KServe v2 / Triton-compatible inference server: HTTP/REST (axum)
//! and gRPC (tonic) front ends over a [`reef_sched::Service`], a model
//! repository of `config.toml` folders, and Prometheus metrics.
//!
//! ```no_run
//! # async fn run(service: std::sync::Arc<dyn reef_sched::Service>) -> Result<(), reef_server::ServerError> {
//! let config = reef_server::ServerConfig::default();
//! reef_server::serve(config, service, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Request priority: the request parameter `priority` ("rt" / "be", or
//! Triton's integer level: 0 = model default, 1 = RT, 2+ = BE).

#![warn(missing_docs)]

mod admin;
pub mod config;
pub mod error;
mod grpc;
pub mod grpc_codec;
mod grpc_stream;
pub mod http;
pub mod inference;
pub mod metrics;
pub mod model_stats;
pub mod repository;
pub mod request_error;
pub mod runtime;
mod server;
pub mod shm;
pub mod state;
pub mod tensor_codec;
pub mod timing;
#[cfg(unix)]
mod unix_socket;

/// Generated KServe v2 gRPC messages, server and client (package `inference`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");
}

pub use config::{ServerConfig, DEFAULT_MAX_BODY_BYTES};
pub use error::ServerError;
pub use repository::{load_model, scan_repository, ModelConfig, ModelSource};
pub use request_error::{ErrorKind, RequestError};
pub use runtime::{check_busy_pollers, front_end_runtime};
pub use server::{serve, Server, GRPC_CONNECTION_WINDOW, GRPC_MAX_FRAME, GRPC_STREAM_WINDOW};

/// A gRPC client for a KServe v2 endpoint with TCP_NODELAY, flow-control
/// windows sized for tensors and large HTTP/2 frames (used by `reef infer`
/// and the benchmark). `url` is `http://HOST:PORT`, or `unix:PATH` (also
/// `unix://PATH`, as gRPC spells it) for a server's Unix domain socket.
pub async fn grpc_client(
    url: &str,
) -> Result<
    proto::grpc_inference_service_client::GrpcInferenceServiceClient<tonic::transport::Channel>,
    tonic::transport::Error,
> {
    let unix_path = url
        .strip_prefix("unix://")
        .or_else(|| url.strip_prefix("unix:"));
    // A Unix socket's endpoint still needs an http URI; its authority is unused.
    let uri = if unix_path.is_some() {
        "http://localhost".to_string()
    } else {
        url.to_string()
    };
    let endpoint = tonic::transport::Endpoint::from_shared(uri)?
        .tcp_nodelay(true)
        .initial_stream_window_size(GRPC_STREAM_WINDOW)
        .initial_connection_window_size(GRPC_CONNECTION_WINDOW)
        .max_frame_size(GRPC_MAX_FRAME);
    let ch = match unix_path {
        #[cfg(unix)]
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            endpoint
                .connect_with_connector(tower::service_fn(move |_: tonic::codegen::http::Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(&path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await?
        }
        _ => endpoint.connect().await?,
    };
    Ok(
        proto::grpc_inference_service_client::GrpcInferenceServiceClient::new(ch)
            .max_decoding_message_size(256 << 20)
            .max_encoding_message_size(256 << 20),
    )
}
