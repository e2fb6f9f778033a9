//! axum's extractors with their rejections mapped to the API's error body.

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use bytes::Bytes;
use serde::de::DeserializeOwned;

/// `axum::extract::Query` rejecting with `invalid_input`.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path` rejecting with `not_found` (a malformed id names no resource).
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// A JSON body that may be absent: an empty body is `None`; anything else must be valid JSON
/// of the expected shape (the `Content-Type` is not required, so `curl -d` works).
pub fn optional_json<T: DeserializeOwned>(body: &Bytes) -> Result<Option<T>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::invalid_input(format!("invalid JSON body: {e}")))
}

/// Parses a query flag: `true`/`false` (also `1`/`0`), absent = `false`.
pub fn flag(name: &str, raw: Option<&str>) -> Result<bool, ApiError> {
    match raw {
        None => Ok(false),
        Some("true" | "1") => Ok(true),
        Some("false" | "0") => Ok(false),
        Some(other) => Err(ApiError::invalid_input(format!(
            "{name} must be true or false, got {other:?}"
        ))),
    }
}

/// The request body as bytes (for small JSON bodies), rejecting with the API's error body.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        Ok(RawBody(Bytes::from_request(request, state).await?))
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                satchel::ErrorCode::FileTooLarge,
                "the request body is too large",
            )
        } else {
            ApiError::invalid_input(rejection.body_text())
        }
    }
}
