//! Reading request bodies under the configured size limit.

use crate::request_error::{ErrorKind, RequestError};
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::LengthLimitError;

fn too_large(limit: usize) -> RequestError {
    RequestError {
        kind: ErrorKind::TooLarge,
        message: format!("request body exceeds the limit of {limit} bytes"),
    }
}

/// Reads the whole body, failing with 413 past `limit` bytes (checked first
/// against Content-Length, then while reading) and rejecting compressed bodies.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, RequestError> {
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = enc.to_str().unwrap_or("<not ASCII>");
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(RequestError::bad(format!(
                "Content-Encoding '{enc}' is not supported (send uncompressed requests)"
            )));
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if c.is::<LengthLimitError>() {
                return too_large(limit);
            }
            cause = c.source();
        }
        RequestError::bad(format!("cannot read the request body: {e}"))
    })
}
