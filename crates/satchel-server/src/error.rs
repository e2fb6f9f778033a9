//! The one place where errors become HTTP responses: `{"error": {"code", "message", …}}` with
//! the status of the code (SPEC §7), for library errors and framework rejections alike.

use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use satchel::{Error, ErrorCode, ErrorDetail};
use serde::Serialize;
use utoipa::ToSchema;

/// A failed request: the library error plus any headers the response must carry
/// (`Content-Range` on 416, …). Boxed: it travels in every handler's `Result`.
#[derive(Debug)]
pub struct ApiError(Box<Failure>);

#[derive(Debug)]
struct Failure {
    error: Error,
    headers: HeaderMap,
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The code of an error response, left in the response's extensions for metrics.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCodeTag(pub ErrorCode);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::new(code, message).into()
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::invalid_input(message).into()
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::not_found(message).into()
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.insert(name, value);
        self
    }

    pub fn code(&self) -> ErrorCode {
        self.0.error.code
    }

    pub fn error(&self) -> &Error {
        &self.0.error
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError(Box::new(Failure {
            error,
            headers: HeaderMap::new(),
        }))
    }
}

/// The error body (SPEC §7, §10).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// Stable machine-readable code, e.g. `not_found`.
    pub code: String,
    pub message: String,
    /// `virus_detected` only: the signature name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threat: Option<String>,
    /// `quota_exceeded` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// `quota_exceeded` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
}

/// Server-side failures are logged in full; the client gets a fixed message so that internal
/// details (SQL, file system paths, addresses) never leave the service.
fn client_message(error: &Error) -> String {
    let fixed = match error.code {
        ErrorCode::Internal => "internal error",
        ErrorCode::DatabaseUnavailable => "the database is unavailable; retry later",
        ErrorCode::StorageUnavailable => "the storage is unavailable; retry later",
        ErrorCode::ScannerUnavailable => "the virus scanner is unavailable; retry later",
        _ => return error.message.clone(),
    };
    if error.code == ErrorCode::Internal {
        tracing::error!(code = %error.code, error = %error.message, "request failed");
    } else {
        tracing::warn!(code = %error.code, error = %error.message, "request failed");
    }
    fixed.to_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let Failure {
            error,
            headers: extra,
        } = *self.0;
        let code = error.code;
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (threat, used_bytes, limit_bytes) = match &error.detail {
            ErrorDetail::Threat(t) => (Some(t.clone()), None, None),
            ErrorDetail::Quota {
                used_bytes,
                limit_bytes,
            } => (None, Some(*used_bytes), Some(*limit_bytes)),
            ErrorDetail::None => (None, None, None),
        };
        let body = ErrorBody {
            error: ErrorObject {
                code: code.as_str().to_owned(),
                message: client_message(&error),
                threat,
                used_bytes,
                limit_bytes,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if code == ErrorCode::Unauthenticated {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if code.retryable() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        headers.extend(extra);
        response.extensions_mut().insert(ErrorCodeTag(code));
        response
    }
}

// Framework rejections get the same body. A path parameter that does not parse (a file id that
// is not a UUID) names no resource: 404, like an unknown id. Everything else is 400.

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::not_found(format!("no such resource: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::invalid_input(rejection.body_text())
    }
}

impl From<MultipartRejection> for ApiError {
    fn from(rejection: MultipartRejection) -> Self {
        ApiError::invalid_input(rejection.body_text())
    }
}

impl From<MultipartError> for ApiError {
    fn from(error: MultipartError) -> Self {
        ApiError::invalid_input(format!("malformed multipart body: {}", error.body_text()))
    }
}
