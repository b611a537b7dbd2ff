//! Triton's streaming inference over gRPC (`ModelStreamInfer`): a client
//! sends a stream of `ModelInferRequest`s on one call and receives one
//! `ModelStreamInferResponse` per request, in the order they finish.
//!
//! - Requests run concurrently, each as a task of the stream's `JoinSet`, and
//!   go through the same checks, scheduler and statistics as `ModelInfer`.
//!   At most [`STREAM_IN_FLIGHT`] run at once: the stream is not read further
//!   until one finishes (the scheduler's own queue bounds still answer
//!   "overloaded" beyond its limits).
//! - A failed request answers with `error_message` and a response that
//!   carries only its model, version and id, as Triton's does; the stream
//!   goes on.
//! - A message that does not decode ends the reading. The requests already
//!   running are answered first; then the call ends with the decode error.
//! - A client that goes away (the response stream is dropped) aborts the
//!   running tasks, which drops their tickets and so cancels their BE tasks.
//! - At server shutdown the stream stops reading, answers its running
//!   requests (the scheduler finishes RT work and cancels BE work) and ends
//!   with UNAVAILABLE, so an open stream does not hold up the shutdown.

use crate::grpc::run_infer;
use crate::proto::{ModelInferRequest, ModelInferResponse, ModelStreamInferResponse};
use crate::state::AppState;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Status, Streaming};

/// The response stream of one `ModelStreamInfer` call.
pub type ResponseStream =
    Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send + 'static>>;

/// Most requests of one stream running at once.
pub const STREAM_IN_FLIGHT: usize = 256;

/// Serves one call: reads `incoming` and answers on the returned stream.
pub fn serve(state: Arc<AppState>, incoming: Streaming<ModelInferRequest>) -> ResponseStream {
    let (tx, rx) = mpsc::channel(STREAM_IN_FLIGHT);
    tokio::spawn(drive(state, incoming, tx));
    Box::pin(ReceiverStream::new(rx))
}

type Answer = Result<ModelStreamInferResponse, Status>;

async fn drive(
    state: Arc<AppState>,
    mut incoming: Streaming<ModelInferRequest>,
    tx: mpsc::Sender<Answer>,
) {
    // Dropping `running` (client gone) aborts every request still running.
    let mut running: JoinSet<ModelStreamInferResponse> = JoinSet::new();
    let mut reading = true;
    let mut ended: Option<Status> = None;
    let mut shutdown = state.shutdown_signal();
    loop {
        let stopping = *shutdown.borrow_and_update();
        if reading && stopping {
            reading = false;
            ended = Some(Status::unavailable("server is shutting down"));
        }
        if !reading && running.is_empty() {
            break;
        }
        tokio::select! {
            _ = tx.closed() => return,
            // Wakes the loop, whose top notices the shutdown.
            changed = shutdown.changed(), if reading => {
                if changed.is_err() {
                    reading = false;
                }
            }
            msg = incoming.message(), if reading && running.len() < STREAM_IN_FLIGHT => match msg {
                Ok(Some(req)) => {
                    running.spawn(answer(state.clone(), req));
                }
                Ok(None) => reading = false,
                Err(status) => {
                    tracing::debug!("inference stream ended by a bad message: {status}");
                    reading = false;
                    ended = Some(status);
                }
            },
            Some(done) = running.join_next(), if !running.is_empty() => {
                let reply = done.unwrap_or_else(|e| ModelStreamInferResponse {
                    error_message: format!("the request's task failed: {e}"),
                    infer_response: None,
                });
                if tx.send(Ok(reply)).await.is_err() {
                    return;
                }
            }
        }
    }
    if let Some(status) = ended {
        let _ = tx.send(Err(status)).await;
    }
}

async fn answer(state: Arc<AppState>, req: ModelInferRequest) -> ModelStreamInferResponse {
    let header = ModelInferResponse {
        model_name: req.model_name.clone(),
        model_version: req.model_version.clone(),
        id: req.id.clone(),
        ..ModelInferResponse::default()
    };
    match run_infer(&state, req).await {
        Ok(r) => ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(r),
        },
        Err(e) => ModelStreamInferResponse {
            error_message: e.message,
            infer_response: Some(header),
        },
    }
}
