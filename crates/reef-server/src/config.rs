//! Server configuration.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Default limit on request bodies and gRPC messages: 64 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 << 20;

/// How the server listens and what it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// HTTP (KServe v2 REST) address; port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// gRPC address; port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// Also serve HTTP on this Unix domain socket (see
    /// [`crate::unix_socket`]).
    pub http_uds: Option<PathBuf>,
    /// Also serve gRPC on this Unix domain socket.
    pub grpc_uds: Option<PathBuf>,
    /// Largest HTTP request body and gRPC message, bytes (larger: 413 /
    /// RESOURCE_EXHAUSTED or OUT_OF_RANGE).
    pub max_body_bytes: usize,
    /// Model repository folder served by the repository extension (index,
    /// load, unload); `None` disables load requests.
    pub model_repository: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests before dropping them.
    pub shutdown_grace: Duration,
    /// Batch limit of models without their own (repository config): the
    /// service's limit, reported in Triton's model configuration. `None`:
    /// unknown (reported as 0, no batching declared).
    pub default_max_batch: Option<usize>,
    /// Whether clients may register and use system and CUDA shared memory
    /// regions (see [`crate::shm`]). Off by default.
    pub allow_client_shm: bool,
}

impl Default for ServerConfig {
    /// Triton's ports: HTTP 8000, gRPC 8001, on all interfaces.
    fn default() -> Self {
        ServerConfig {
            http_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8000)),
            grpc_addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8001)),
            http_uds: None,
            grpc_uds: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            model_repository: None,
            shutdown_grace: Duration::from_secs(30),
            default_max_batch: None,
            allow_client_shm: false,
        }
    }
}

impl ServerConfig {
    /// Both endpoints on 127.0.0.1 with ephemeral ports (tests, benchmarks).
    pub fn localhost_ephemeral() -> Self {
        ServerConfig {
            http_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            grpc_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            ..Self::default()
        }
    }
}
