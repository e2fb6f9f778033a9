//! The library's error type: every failure carries a stable [`ErrorCode`] that the HTTP edge,
//! the CLI and library callers can match on. Layer-specific errors (catalog, storage, scanner)
//! convert into it at the library boundary.

use std::fmt;

/// Stable, machine-readable error codes (SPEC §7). The string form is part of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidPath,
    InvalidInput,
    InvalidDataUri,
    ChecksumMismatch,
    UrlNotAllowed,
    Unauthenticated,
    LinkInvalid,
    LinkExpired,
    NotFound,
    PathExists,
    PreconditionFailed,
    FileTooLarge,
    QuotaExceeded,
    RangeNotSatisfiable,
    VirusDetected,
    UpstreamFailed,
    ScannerUnavailable,
    StorageUnavailable,
    DatabaseUnavailable,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::InvalidPath,
        ErrorCode::InvalidInput,
        ErrorCode::InvalidDataUri,
        ErrorCode::ChecksumMismatch,
        ErrorCode::UrlNotAllowed,
        ErrorCode::Unauthenticated,
        ErrorCode::LinkInvalid,
        ErrorCode::LinkExpired,
        ErrorCode::NotFound,
        ErrorCode::PathExists,
        ErrorCode::PreconditionFailed,
        ErrorCode::FileTooLarge,
        ErrorCode::QuotaExceeded,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::VirusDetected,
        ErrorCode::UpstreamFailed,
        ErrorCode::ScannerUnavailable,
        ErrorCode::StorageUnavailable,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidPath => "invalid_path",
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::InvalidDataUri => "invalid_data_uri",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::UrlNotAllowed => "url_not_allowed",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::LinkInvalid => "link_invalid",
            ErrorCode::LinkExpired => "link_expired",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PathExists => "path_exists",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::VirusDetected => "virus_detected",
            ErrorCode::UpstreamFailed => "upstream_failed",
            ErrorCode::ScannerUnavailable => "scanner_unavailable",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    /// The HTTP status this code maps to (SPEC §7).
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidPath
            | ErrorCode::InvalidInput
            | ErrorCode::InvalidDataUri
            | ErrorCode::ChecksumMismatch
            | ErrorCode::UrlNotAllowed => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::LinkInvalid | ErrorCode::LinkExpired => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::PathExists => 409,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::FileTooLarge | ErrorCode::QuotaExceeded => 413,
            ErrorCode::RangeNotSatisfiable => 416,
            ErrorCode::VirusDetected => 422,
            ErrorCode::UpstreamFailed => 502,
            ErrorCode::ScannerUnavailable
            | ErrorCode::StorageUnavailable
            | ErrorCode::DatabaseUnavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// Whether retrying the same request later can succeed.
    pub fn retryable(self) -> bool {
        self.http_status() == 503
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Structured details some errors carry to the client (SPEC §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorDetail {
    None,
    /// `virus_detected`: the signature name clamd reported.
    Threat(String),
    /// `quota_exceeded`: the workspace's usage and limit in bytes.
    Quota {
        used_bytes: u64,
        limit_bytes: u64,
    },
}

/// A library error: a stable code, a human message and optional details.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub detail: ErrorDetail,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            detail: ErrorDetail::None,
        }
    }
    pub fn invalid_path(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidPath, message)
    }
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn virus(threat: impl Into<String>) -> Self {
        let threat = threat.into();
        Error {
            code: ErrorCode::VirusDetected,
            message: format!("the content is infected: {threat}"),
            detail: ErrorDetail::Threat(threat),
        }
    }
    pub fn quota(used_bytes: u64, limit_bytes: u64) -> Self {
        Error {
            code: ErrorCode::QuotaExceeded,
            message: format!("workspace quota exceeded: {used_bytes} of {limit_bytes} bytes used"),
            detail: ErrorDetail::Quota {
                used_bytes,
                limit_bytes,
            },
        }
    }
    pub fn too_large(limit_bytes: u64) -> Self {
        Self::new(
            ErrorCode::FileTooLarge,
            format!("the file exceeds the limit of {limit_bytes} bytes"),
        )
    }
}
