//! Running both endpoints and shutting down gracefully: on the shutdown
//! signal the server reports not-ready, stops accepting connections, calls
//! [`Service::shutdown`] (which answers every queued request) and waits for
//! in-flight requests up to [`ServerConfig::shutdown_grace`]. With
//! [`ServerConfig::http_uds`] / [`ServerConfig::grpc_uds`] the same endpoints
//! also listen on Unix domain sockets.

/// HTTP/2 stream flow-control window of the gRPC endpoint, bytes.
pub const GRPC_STREAM_WINDOW: u32 = 8 << 20;
/// HTTP/2 connection flow-control window of the gRPC endpoint, bytes.
pub const GRPC_CONNECTION_WINDOW: u32 = 32 << 20;
/// Largest HTTP/2 frame the gRPC endpoint (and [`crate::grpc_client`])
/// accepts, bytes. With HTTP/2's default of 16 KiB a 600 KB image tensor
/// crosses as ~37 DATA frames, each a write, a read and a task wake-up on
/// either side; at 1 MiB it is one frame.
pub const GRPC_MAX_FRAME: u32 = 1 << 20;

use crate::config::ServerConfig;
use crate::error::ServerError;
use crate::state::AppState;
use axum::serve::ListenerExt;
use reef_sched::Service;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;

/// A server whose sockets are bound (so ephemeral ports are known) but which
/// does not serve yet.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    http: TcpListener,
    grpc: TcpListener,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    #[cfg(unix)]
    http_unix: Option<crate::unix_socket::UnixEndpoint>,
    #[cfg(unix)]
    grpc_unix: Option<crate::unix_socket::UnixEndpoint>,
}

async fn bind(
    addr: SocketAddr,
    what: &'static str,
) -> Result<(TcpListener, SocketAddr), ServerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, what, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, what, source })?;
    Ok((listener, local))
}

/// Binds the Unix socket `path` of endpoint `what`, where one is asked for.
#[cfg(unix)]
async fn bind_unix(
    path: Option<&std::path::Path>,
    what: &'static str,
) -> Result<Option<crate::unix_socket::UnixEndpoint>, ServerError> {
    match path {
        Some(p) => Ok(Some(crate::unix_socket::bind(p, what).await?)),
        None => Ok(None),
    }
}

/// Refuses a Unix socket on a host without them.
#[cfg(not(unix))]
fn refuse_unix(path: Option<&std::path::Path>, what: &'static str) -> Result<(), ServerError> {
    match path {
        Some(p) => Err(ServerError::BindUnix {
            path: p.to_path_buf(),
            what,
            reason: "Unix domain sockets need a Unix host".into(),
        }),
        None => Ok(()),
    }
}

/// One serving endpoint's task: its name and how it ended.
type Endpoint = (&'static str, Result<(), String>);

fn endpoint_result(r: Result<Endpoint, tokio::task::JoinError>) -> Result<(), ServerError> {
    match r {
        Ok((_, Ok(()))) => Ok(()),
        Ok((what, Err(reason))) => Err(ServerError::Serve { what, reason }),
        Err(e) => Err(ServerError::Serve {
            what: "endpoint",
            reason: e.to_string(),
        }),
    }
}

/// An endpoint that stopped before shutdown was asked for.
fn unexpected(r: Result<Endpoint, tokio::task::JoinError>) -> ServerError {
    let what = r.as_ref().map_or("endpoint", |(what, _)| *what);
    endpoint_result(r).err().unwrap_or(ServerError::Serve {
        what,
        reason: "stopped unexpectedly".into(),
    })
}

impl Server {
    /// Binds the HTTP and gRPC sockets (and the Unix sockets the
    /// configuration names).
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let (http, http_addr) = bind(config.http_addr, "http").await?;
        let (grpc, grpc_addr) = bind(config.grpc_addr, "grpc").await?;
        #[cfg(unix)]
        let (http_unix, grpc_unix) = (
            bind_unix(config.http_uds.as_deref(), "http").await?,
            bind_unix(config.grpc_uds.as_deref(), "grpc").await?,
        );
        #[cfg(not(unix))]
        {
            refuse_unix(config.http_uds.as_deref(), "http")?;
            refuse_unix(config.grpc_uds.as_deref(), "grpc")?;
        }
        Ok(Server {
            config,
            http,
            grpc,
            http_addr,
            grpc_addr,
            #[cfg(unix)]
            http_unix,
            #[cfg(unix)]
            grpc_unix,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Serves until `shutdown` completes (or an endpoint fails), then shuts
    /// down gracefully (see the module documentation).
    pub async fn run<F>(self, service: Arc<dyn Service>, shutdown: F) -> Result<(), ServerError>
    where
        F: Future<Output = ()> + Send,
    {
        let state = Arc::new(
            AppState::new(
                service.clone(),
                self.config.model_repository.clone(),
                self.config.max_body_bytes,
            )
            .with_default_batch_limit(self.config.default_max_batch)
            .with_client_shm(self.config.allow_client_shm),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            // An error means the sender is gone, which also means stop.
            let _ = rx.wait_for(|s| *s).await;
        };
        let mut endpoints: JoinSet<Endpoint> = JoinSet::new();

        let router = crate::http::router(state.clone());
        let listener = self.http.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY: {e}");
            }
        });
        let signal = stopped(stop_rx.clone());
        let http_router = router.clone();
        endpoints.spawn(async move {
            let r = axum::serve(listener, http_router)
                .with_graceful_shutdown(signal)
                .await;
            ("http", r.map_err(|e| e.to_string()))
        });

        let grpc_service = crate::grpc::service(state.clone(), self.config.max_body_bytes);
        // serve_with_incoming bypasses the builder's TCP options: set
        // TCP_NODELAY on every accepted connection here (without it, large
        // tensors stall on Nagle's algorithm and delayed ACKs).
        let incoming = tokio_stream::StreamExt::map(TcpListenerStream::new(self.grpc), |conn| {
            conn.inspect(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("TCP_NODELAY: {e}");
                }
            })
        });
        let signal = stopped(stop_rx.clone());
        let svc = grpc_service.clone();
        endpoints.spawn(async move {
            let r = grpc_builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, signal)
                .await;
            ("grpc", r.map_err(|e| e.to_string()))
        });

        #[cfg_attr(not(unix), allow(unused_mut))]
        let mut socket_files: Vec<std::path::PathBuf> = Vec::new();
        #[cfg(unix)]
        {
            if let Some(ep) = self.http_unix {
                let signal = stopped(stop_rx.clone());
                tracing::info!(path = %ep.path.display(), "HTTP on a Unix socket");
                socket_files.push(ep.path);
                endpoints.spawn(async move {
                    let r = axum::serve(ep.listener, router)
                        .with_graceful_shutdown(signal)
                        .await;
                    ("http (unix socket)", r.map_err(|e| e.to_string()))
                });
            }
            if let Some(ep) = self.grpc_unix {
                let signal = stopped(stop_rx.clone());
                tracing::info!(path = %ep.path.display(), "gRPC on a Unix socket");
                socket_files.push(ep.path);
                let incoming = tokio_stream::wrappers::UnixListenerStream::new(ep.listener);
                endpoints.spawn(async move {
                    let r = grpc_builder()
                        .add_service(grpc_service)
                        .serve_with_incoming_shutdown(incoming, signal)
                        .await;
                    ("grpc (unix socket)", r.map_err(|e| e.to_string()))
                });
            }
        }
        tracing::info!(http = %self.http_addr, grpc = %self.grpc_addr, "reef server listening");

        let mut early: Option<ServerError> = None;
        tokio::select! {
            _ = shutdown => tracing::info!("shutdown requested"),
            Some(r) = endpoints.join_next() => early = Some(unexpected(r)),
        }

        state.set_not_ready();
        let _ = stop_tx.send(true);
        let svc = service.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || svc.shutdown()).await {
            tracing::error!("scheduler shutdown panicked: {e}");
        }
        let grace = self.config.shutdown_grace;
        let finished = async {
            let mut result = Ok(());
            while let Some(r) = endpoints.join_next().await {
                result = result.and(endpoint_result(r));
            }
            result
        };
        let result = match tokio::time::timeout(grace, finished).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("in-flight requests still running after {grace:?}; dropping them");
                endpoints.abort_all();
                Ok(())
            }
        };
        #[cfg(unix)]
        for path in &socket_files {
            crate::unix_socket::remove(path);
        }
        tracing::info!("reef server stopped");
        match early {
            Some(e) => Err(e),
            None => result,
        }
    }
}

/// The gRPC endpoint's transport settings: flow-control windows sized for
/// image tensors (the HTTP/2 default is 64 KiB) and large frames.
fn grpc_builder() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .initial_stream_window_size(Some(GRPC_STREAM_WINDOW))
        .initial_connection_window_size(Some(GRPC_CONNECTION_WINDOW))
        .max_frame_size(Some(GRPC_MAX_FRAME))
}

/// Binds `config`'s addresses and serves `service` over HTTP and gRPC until
/// `shutdown` completes, then shuts down gracefully.
pub async fn serve<F>(
    config: ServerConfig,
    service: Arc<dyn Service>,
    shutdown: F,
) -> Result<(), ServerError>
where
    F: Future<Output = ()> + Send,
{
    Server::bind(config).await?.run(service, shutdown).await
}
