//! Running both endpoints and shutting down gracefully: on the shutdown
//! signal the server reports not-ready, stops accepting connections, calls
//! [`Service::shutdown`] (which answers every queued request) and waits for
//! in-flight requests up to [`ServerConfig::shutdown_grace`].

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
use tokio::task::JoinHandle;
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

type Endpoint = JoinHandle<Result<(), String>>;

fn endpoint_result(
    what: &'static str,
    r: Result<Result<(), String>, tokio::task::JoinError>,
) -> Result<(), ServerError> {
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(ServerError::Serve { what, reason }),
        Err(e) => Err(ServerError::Serve {
            what,
            reason: e.to_string(),
        }),
    }
}

fn unexpected(
    what: &'static str,
    r: Result<Result<(), String>, tokio::task::JoinError>,
) -> ServerError {
    endpoint_result(what, r)
        .err()
        .unwrap_or(ServerError::Serve {
            what,
            reason: "stopped unexpectedly".into(),
        })
}

impl Server {
    /// Binds the HTTP and gRPC sockets.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let (http, http_addr) = bind(config.http_addr, "http").await?;
        let (grpc, grpc_addr) = bind(config.grpc_addr, "grpc").await?;
        Ok(Server {
            config,
            http,
            grpc,
            http_addr,
            grpc_addr,
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

        let router = crate::http::router(state.clone());
        let listener = self.http.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY: {e}");
            }
        });
        let http_signal = stopped(stop_rx.clone());
        let mut http: Endpoint = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(http_signal)
                .await
                .map_err(|e| e.to_string())
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
        let grpc_signal = stopped(stop_rx);
        let mut grpc: Endpoint = tokio::spawn(async move {
            tonic::transport::Server::builder()
                // Windows sized for image tensors (the HTTP/2 default is 64 KiB).
                .initial_stream_window_size(Some(GRPC_STREAM_WINDOW))
                .initial_connection_window_size(Some(GRPC_CONNECTION_WINDOW))
                .max_frame_size(Some(GRPC_MAX_FRAME))
                .add_service(grpc_service)
                .serve_with_incoming_shutdown(incoming, grpc_signal)
                .await
                .map_err(|e| e.to_string())
        });
        tracing::info!(http = %self.http_addr, grpc = %self.grpc_addr, "reef server listening");

        let mut early: Option<ServerError> = None;
        let (mut http_done, mut grpc_done) = (false, false);
        tokio::select! {
            _ = shutdown => tracing::info!("shutdown requested"),
            r = &mut http => {
                http_done = true;
                early = Some(unexpected("http", r));
            }
            r = &mut grpc => {
                grpc_done = true;
                early = Some(unexpected("grpc", r));
            }
        }

        state.set_not_ready();
        let _ = stop_tx.send(true);
        let svc = service.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || svc.shutdown()).await {
            tracing::error!("scheduler shutdown panicked: {e}");
        }
        let grace = self.config.shutdown_grace;
        let finished = async {
            let h = if http_done {
                Ok(())
            } else {
                endpoint_result("http", (&mut http).await)
            };
            let g = if grpc_done {
                Ok(())
            } else {
                endpoint_result("grpc", (&mut grpc).await)
            };
            h.and(g)
        };
        let result = match tokio::time::timeout(grace, finished).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("in-flight requests still running after {grace:?}; dropping them");
                http.abort();
                grpc.abort();
                Ok(())
            }
        };
        tracing::info!("reef server stopped");
        match early {
            Some(e) => Err(e),
            None => result,
        }
    }
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
