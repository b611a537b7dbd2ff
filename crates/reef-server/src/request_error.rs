//! Per-request errors and how they map to HTTP status codes and gRPC codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reef_sched::SchedError;

/// The class of a failed request; decides the HTTP status and gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or does not fit the model (400, INVALID_ARGUMENT).
    BadRequest,
    /// No such model, version or repository entry (404, NOT_FOUND).
    NotFound,
    /// Queues are full; retry later (429, UNAVAILABLE).
    Overloaded,
    /// The server or the model is not ready (503, UNAVAILABLE).
    NotReady,
    /// The body is larger than the configured limit (413, RESOURCE_EXHAUSTED).
    TooLarge,
    /// The scheduler cancelled the task (503, CANCELLED).
    Cancelled,
    /// A device or internal failure (500, INTERNAL).
    Internal,
}

impl ErrorKind {
    /// The metrics `outcome` label of a request that failed this way.
    pub fn outcome(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A failed request: a class and a message naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// The class of the failure.
    pub kind: ErrorKind,
    /// A message for the client.
    pub message: String,
}

impl RequestError {
    /// A 400 / INVALID_ARGUMENT error.
    pub fn bad(message: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::BadRequest,
            message: message.into(),
        }
    }

    /// A 404 / NOT_FOUND error.
    pub fn not_found(message: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::NotFound,
            message: message.into(),
        }
    }

    /// A 503 / UNAVAILABLE error.
    pub fn not_ready(message: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::NotReady,
            message: message.into(),
        }
    }

    /// A 500 / INTERNAL error.
    pub fn internal(message: impl Into<String>) -> Self {
        RequestError {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }

    /// The unknown-model error for `name`.
    pub fn unknown_model(name: &str) -> Self {
        Self::not_found(format!("unknown model '{name}'"))
    }

    /// The HTTP status of this error.
    pub fn http_status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotReady | ErrorKind::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The gRPC status of this error.
    pub fn grpc_status(&self) -> tonic::Status {
        let code = match self.kind {
            ErrorKind::BadRequest => tonic::Code::InvalidArgument,
            ErrorKind::NotFound => tonic::Code::NotFound,
            ErrorKind::Overloaded | ErrorKind::NotReady => tonic::Code::Unavailable,
            ErrorKind::TooLarge => tonic::Code::ResourceExhausted,
            ErrorKind::Cancelled => tonic::Code::Cancelled,
            ErrorKind::Internal => tonic::Code::Internal,
        };
        tonic::Status::new(code, self.message.clone())
    }
}

impl From<SchedError> for RequestError {
    fn from(e: SchedError) -> Self {
        let kind = match &e {
            SchedError::UnknownModel(_) => ErrorKind::NotFound,
            SchedError::InvalidInput(_) => ErrorKind::BadRequest,
            SchedError::Overloaded(_) => ErrorKind::Overloaded,
            SchedError::Cancelled(_) => ErrorKind::Cancelled,
            SchedError::NotReady(_) => ErrorKind::NotReady,
            SchedError::Internal(_) => ErrorKind::Internal,
        };
        RequestError {
            kind,
            message: e.to_string(),
        }
    }
}

impl From<RequestError> for tonic::Status {
    fn from(e: RequestError) -> Self {
        e.grpc_status()
    }
}

impl IntoResponse for RequestError {
    /// `{"error": "..."}` with the matching status code.
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.http_status(), axum::Json(body)).into_response()
    }
}
