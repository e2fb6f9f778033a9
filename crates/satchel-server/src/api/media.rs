//! `POST /v1/media`: `store_media_file` (SPEC §6) for the caller.
//!
//! The body is JSON carrying the input as a string, so a data URI arrives whole: it is read
//! into memory up to the base64 size of `max_file_size_mb` plus 64 KiB (SPEC §10), a limit that
//! depends on the configuration and is therefore enforced here rather than by a static
//! `DefaultBodyLimit` (which is disabled for the route). A body over it is refused with the
//! JSON `file_too_large` error, from `Content-Length` before anything is read when the length
//! is declared, else as soon as the limit is crossed; [`crate::drain`] then reads the rest so
//! that the client sees the 413. The strings are borrowed from that buffer, not copied.
//!
//! The execution context is the caller's: `user_id` is the token's subject and `workspace_id`
//! their own workspace, so `workspace://` and cloud-path inputs resolve only to their files.

use crate::auth::User;
use crate::dto::{MediaRequest, MediaResult};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::App;
use axum::extract::{Request, State};
use axum::http::header;
use axum::Json;
use bytes::Bytes;
use satchel::media::{check_exec_id, store_media_file, ExecutionContext, ReturnFormat};
use satchel::ErrorCode;

/// What a media request may add around the base64 of the largest file: the JSON envelope,
/// the data URI's header, the other fields.
pub const ENVELOPE_SLACK: u64 = 64 * 1024;

/// The largest `POST /v1/media` body: the base64 size of `max_bytes` plus [`ENVELOPE_SLACK`].
pub fn body_limit(max_bytes: u64) -> u64 {
    max_bytes
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_add(ENVELOPE_SLACK)
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        ErrorCode::FileTooLarge,
        format!(
            "the request body exceeds {limit} bytes (the base64 size of max_file_size_mb plus \
             64 KiB)"
        ),
    )
}

/// The whole body, at most `limit` bytes.
async fn read_body(request: Request, limit: u64) -> ApiResult<Bytes> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let max = usize::try_from(limit).unwrap_or(usize::MAX);
    axum::body::to_bytes(request.into_body(), max)
        .await
        .map_err(|e| {
            let over_limit = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over_limit {
                too_large(limit)
            } else {
                ApiError::invalid_input(format!("cannot read the request body: {e}"))
            }
        })
}

fn parse_request(body: &[u8]) -> ApiResult<MediaRequest<'_>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid_input(
            "a JSON body {\"file\", \"graph_exec_id\", \"return_format\"} is required",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_input(format!("invalid JSON body: {e}")))
}

/// Longest `graph_exec_id`, `session_id` (both `[A-Za-z0-9_-]{1,128}`) and `return_format`
/// worth parsing: longer ones are refused here, so that the error message does not echo a
/// body-sized string.
const MAX_ID_LEN: usize = 128;

fn required<'a>(name: &str, value: &'a str) -> ApiResult<&'a str> {
    if value.is_empty() {
        Err(ApiError::invalid_input(format!("{name} must not be empty")))
    } else {
        Ok(value)
    }
}

fn short<'a>(name: &str, value: &'a str) -> ApiResult<&'a str> {
    if value.len() > MAX_ID_LEN {
        Err(ApiError::invalid_input(format!(
            "{name} is longer than {MAX_ID_LEN} bytes"
        )))
    } else {
        Ok(value)
    }
}

/// Whether storing `file` in `format` scans content (for the scan metrics): everything that
/// enters the execution folder is scanned; a path already in the folder is not, and neither is
/// a reference to a workspace file answered as is.
fn scans(file: &str, format: ReturnFormat) -> bool {
    let scheme = file
        .split_once(':')
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    match scheme.as_str() {
        "data" | "http" | "https" => true,
        "workspace" | "gcs" | "gs" | "s3" => format != ReturnFormat::ForBlockOutput,
        _ => false,
    }
}

/// Store a file reference for a graph execution (`store_media_file`).
#[utoipa::path(
    post,
    path = "/v1/media",
    tag = "media",
    request_body(
        content = MediaRequest,
        description = "Bodies up to the base64 size of max_file_size_mb plus 64 KiB",
    ),
    responses(
        (status = 200, description = "`result`: a name in the execution folder, a data URI or a workspace:// reference", body = MediaResult),
        (status = 400, description = "invalid_input (missing or empty field, unknown return_format, unsupported scheme, bad graph_exec_id or session_id), invalid_data_uri, url_not_allowed, invalid_path", body = ErrorBody),
        (status = 404, description = "not_found: a workspace file or cloud path that is not the caller's, a missing local path", body = ErrorBody),
        (status = 413, description = "file_too_large (the file or the request body) or quota_exceeded (the execution folder or, for block output, the workspace)", body = ErrorBody),
        (status = 422, description = "virus_detected (with threat)", body = ErrorBody),
        (status = 502, description = "upstream_failed: the URL could not be fetched", body = ErrorBody),
        (status = 503, description = "scanner_unavailable, storage_unavailable or database_unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn store_media(
    State(app): State<App>,
    User(user): User,
    request: Request,
) -> ApiResult<Json<MediaResult>> {
    let satchel = app.satchel();
    let body = read_body(request, body_limit(satchel.config().max_file_bytes())).await?;
    let request = parse_request(&body)?;
    let file = required("file", &request.file)?;
    let graph_exec_id = short(
        "graph_exec_id",
        required("graph_exec_id", &request.graph_exec_id)?,
    )?;
    let format = ReturnFormat::parse(short(
        "return_format",
        required("return_format", &request.return_format)?,
    )?)?;
    check_exec_id(graph_exec_id)?;
    let session_id = request
        .session_id
        .as_deref()
        .map(|s| short("session_id", s))
        .transpose()?;
    // The caller's own workspace (created on first use); also validates the session id.
    let manager = satchel.workspace(&user, session_id).await?;
    let mut ctx =
        ExecutionContext::new(graph_exec_id, user.as_str()).with_workspace(manager.workspace_id());
    if let Some(session_id) = session_id {
        ctx = ctx.with_session(session_id);
    }

    let scanning = satchel.scanner().enabled() && scans(file, format);
    let result = store_media_file(satchel, file, &ctx, format).await;
    app.metrics()
        .record_scan(scanning, result.as_ref().map(|_| ()).map_err(|e| e.code));
    let result = result?;
    tracing::info!(
        graph_exec_id,
        return_format = %format,
        result_bytes = result.len(),
        "media stored"
    );
    Ok(Json(MediaResult { result }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_limit_is_the_base64_size_plus_slack() {
        assert_eq!(body_limit(0), ENVELOPE_SLACK);
        assert_eq!(body_limit(1), 4 + ENVELOPE_SLACK);
        assert_eq!(body_limit(3), 4 + ENVELOPE_SLACK);
        assert_eq!(body_limit(4), 8 + ENVELOPE_SLACK);
        assert_eq!(body_limit(1024 * 1024), 1_398_104 + ENVELOPE_SLACK);
        assert_eq!(body_limit(u64::MAX), u64::MAX);
    }

    #[test]
    fn requests_parse_strictly() {
        let ok = parse_request(
            br#"{"file": "data:,x", "graph_exec_id": "e1", "return_format": "for_external_api"}"#,
        )
        .unwrap();
        assert_eq!(ok.file, "data:,x");
        assert!(ok.session_id.is_none());
        let escaped = parse_request(
            br#"{"file": "a\/b", "graph_exec_id": "e1", "return_format": "x", "session_id": null}"#,
        )
        .unwrap();
        assert_eq!(escaped.file, "a/b");
        for bad in [
            &b""[..],
            b"  ",
            b"[]",
            b"{",
            br#"{"file": "x", "return_format": "for_external_api"}"#,
            br#"{"file": "x", "graph_exec_id": 5, "return_format": "for_external_api"}"#,
            br#"{"file": "x", "graph_exec_id": "e", "return_format": "for_external_api", "user_id": "bob"}"#,
        ] {
            assert_eq!(
                parse_request(bad).unwrap_err().code(),
                ErrorCode::InvalidInput,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn long_ids_are_not_echoed() {
        let long = "x".repeat(10_000);
        let e = short("graph_exec_id", &long).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput);
        assert!(e.error().message.len() < 100);
        assert!(short("graph_exec_id", &long[..MAX_ID_LEN]).is_ok());
    }

    #[test]
    fn scanned_inputs() {
        use ReturnFormat::*;
        assert!(scans("data:,x", ForLocalProcessing));
        assert!(scans("HTTPS://x.test/a", ForBlockOutput));
        assert!(scans("workspace:///a.txt", ForExternalApi));
        assert!(!scans("workspace:///a.txt", ForBlockOutput));
        assert!(!scans("image.png", ForExternalApi));
    }
}
