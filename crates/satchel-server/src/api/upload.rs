//! `POST /v1/files`: uploads, streamed from the socket into the library's one write pipeline.
//!
//! Nothing is buffered: a raw body is handed to `write_stream` as it arrives, and so is the
//! `file` part of a multipart body. The size cap is enforced by the library while it streams
//! (and up front from `Content-Length`); axum's default 2 MB body limit is disabled for this
//! route. A client that goes away mid-upload makes the body stream fail: the write is
//! abandoned and the library's guards remove the staged bytes, so no record and no blob remain.
//!
//! When an upload fails before its body is read to the end, [`crate::drain`] reads the rest
//! (within a budget) so that the client sees the error rather than a reset connection.
//!
//! Multipart `metadata` may come before or after the `file` part. Before: it goes into the
//! write. After: the content is already committed when it arrives, so it is applied with
//! `set_metadata` (an invalid one then fails the request with 400, the file staying as written).

use crate::auth::User;
use crate::dto::{FileInfo, UploadParams};
use crate::error::{ApiError, ApiResult};
use crate::extract::{flag, Query};
use crate::App;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use satchel::workspace::MAX_METADATA_BYTES;
use satchel::{OnConflict, WorkspaceManager, WriteOptions, WriteOutcome};

/// Bytes a multipart envelope may add around the file before `Content-Length` alone proves a
/// body too large.
const MULTIPART_ENVELOPE_SLACK: u64 = 64 * 1024;
type Metadata = serde_json::Map<String, serde_json::Value>;

fn parse_metadata(raw: &str) -> ApiResult<Metadata> {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid_input("metadata must be a JSON object")),
        Err(e) => Err(ApiError::invalid_input(format!(
            "metadata is not valid JSON: {e}"
        ))),
    }
}

/// `overwrite` and `on_conflict` together; contradictions are refused.
fn conflict_policy(params: &UploadParams) -> ApiResult<OnConflict> {
    let overwrite = params
        .overwrite
        .as_deref()
        .map(|raw| flag("overwrite", Some(raw)))
        .transpose()?;
    let policy = params
        .on_conflict
        .as_deref()
        .map(OnConflict::parse)
        .transpose()?;
    match (overwrite, policy) {
        (None, None) | (Some(false), None) => Ok(OnConflict::Error),
        (Some(true), None) | (Some(true), Some(OnConflict::Overwrite)) => Ok(OnConflict::Overwrite),
        (None, Some(p)) => Ok(p),
        (Some(false), Some(OnConflict::Overwrite)) | (Some(true), Some(_)) => Err(
            ApiError::invalid_input("overwrite contradicts on_conflict; give one of them"),
        ),
        (Some(false), Some(p)) => Ok(p),
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> ApiResult<Option<&'a str>> {
    headers
        .get(name)
        .map(|v| {
            v.to_str().map_err(|_| {
                ApiError::invalid_input(format!("the {name} header is not valid text"))
            })
        })
        .transpose()
}

fn checksum_header(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match header_text(headers, "x-checksum-sha256")? {
        None => Ok(None),
        Some(raw) => {
            let raw = raw.trim();
            if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(Some(raw.to_ascii_lowercase()))
            } else {
                Err(ApiError::invalid_input(
                    "X-Checksum-Sha256 must be 64 hexadecimal digits",
                ))
            }
        }
    }
}

/// Upload a file.
#[utoipa::path(
    post,
    path = "/v1/files",
    tag = "files",
    params(UploadParams),
    request_body(
        description = "multipart/form-data with a `file` part (and optionally a `metadata` part), or the raw content with `?filename=`",
        content(
            (crate::openapi::UploadForm = "multipart/form-data"),
            (crate::openapi::RawContent = "application/octet-stream"),
        ),
    ),
    responses(
        (status = 201, description = "A new file", body = FileInfo),
        (status = 200, description = "An existing file was overwritten (same id)", body = FileInfo),
        (status = 400, description = "invalid_input, invalid_path or checksum_mismatch", body = crate::error::ErrorBody),
        (status = 409, description = "path_exists", body = crate::error::ErrorBody),
        (status = 412, description = "precondition_failed (If-Match)", body = crate::error::ErrorBody),
        (status = 413, description = "file_too_large or quota_exceeded (with used_bytes, limit_bytes)", body = crate::error::ErrorBody),
        (status = 422, description = "virus_detected (with threat)", body = crate::error::ErrorBody),
        (status = 503, description = "scanner_unavailable, storage_unavailable or database_unavailable", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn upload(
    State(app): State<App>,
    User(user): User,
    Query(params): Query<UploadParams>,
    request: Request,
) -> ApiResult<Response> {
    let headers = request.headers();
    let options = WriteOptions {
        path: params.path.clone(),
        mime_type: params.mime_type.clone(),
        on_conflict: conflict_policy(&params)?,
        if_match: header_text(headers, "if-match")?.map(str::to_owned),
        expected_sha256: checksum_header(headers)?,
        metadata: params.metadata.as_deref().map(parse_metadata).transpose()?,
        size_hint: None,
    };
    let content_length = header_text(headers, "content-length")?
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid_input("Content-Length is not a number"))
        })
        .transpose()?;
    let is_multipart = header_text(headers, "content-type")?.is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    let manager = app
        .satchel()
        .workspace(&user, params.session_id.as_deref())
        .await?;
    let scanning = app.satchel().scanner().enabled();

    let result = if is_multipart {
        let max_bytes = app.satchel().config().max_file_bytes();
        if content_length.is_some_and(|n| n > max_bytes.saturating_add(MULTIPART_ENVELOPE_SLACK)) {
            Err(satchel::Error::too_large(max_bytes).into())
        } else {
            upload_multipart(&manager, &params, options, request).await
        }
    } else {
        upload_raw(&manager, &params, options, content_length, request).await
    };
    app.metrics().record_scan(
        scanning,
        result.as_ref().map(|_| ()).map_err(ApiError::code),
    );
    let outcome = result?;

    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, axum::Json(FileInfo::from(&outcome.file))).into_response();
    if outcome.created {
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/files/{}", outcome.file.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    tracing::info!(
        file_id = %outcome.file.id,
        path = %outcome.file.path,
        size = outcome.file.size_bytes,
        created = outcome.created,
        "file stored"
    );
    Ok(response)
}

async fn upload_raw(
    manager: &WorkspaceManager,
    params: &UploadParams,
    mut options: WriteOptions,
    content_length: Option<u64>,
    request: Request,
) -> ApiResult<WriteOutcome> {
    let filename = params.filename.as_deref().ok_or_else(|| {
        ApiError::invalid_input(
            "a raw upload needs ?filename= (or send multipart/form-data with a `file` part)",
        )
    })?;
    options.size_hint = content_length;
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    Ok(manager.write_stream(body, filename, options).await?)
}

async fn upload_multipart(
    manager: &WorkspaceManager,
    params: &UploadParams,
    mut options: WriteOptions,
    request: Request,
) -> ApiResult<WriteOutcome> {
    let mut multipart = Multipart::from_request(request, &()).await?;
    let mut metadata_given = options.metadata.is_some();
    let mut outcome: Option<WriteOutcome> = None;
    while let Some(mut field) = multipart.next_field().await? {
        let name = field.name().map(str::to_owned);
        match name.as_deref() {
            Some("file") => {
                if outcome.is_some() {
                    return Err(ApiError::invalid_input("only one `file` part is allowed"));
                }
                let filename = field
                    .file_name()
                    .filter(|n| !n.is_empty())
                    .or(params.filename.as_deref())
                    .ok_or_else(|| {
                        ApiError::invalid_input(
                            "the `file` part has no filename (and no ?filename= was given)",
                        )
                    })?
                    .to_owned();
                let content = field.map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.body_text())
                });
                outcome = Some(
                    manager
                        .write_stream(content, &filename, options.clone())
                        .await?,
                );
            }
            Some("metadata") => {
                if metadata_given {
                    return Err(ApiError::invalid_input("metadata was given more than once"));
                }
                metadata_given = true;
                let mut raw = Vec::new();
                while let Some(chunk) = field.chunk().await? {
                    raw.extend_from_slice(&chunk);
                    if raw.len() > MAX_METADATA_BYTES * 2 {
                        return Err(ApiError::invalid_input(format!(
                            "metadata is larger than {MAX_METADATA_BYTES} bytes"
                        )));
                    }
                }
                let text = std::str::from_utf8(&raw)
                    .map_err(|_| ApiError::invalid_input("metadata is not UTF-8"))?;
                let metadata = parse_metadata(text)?;
                match outcome.as_mut() {
                    None => options.metadata = Some(metadata),
                    Some(done) => {
                        done.file = manager.set_metadata(done.file.id, metadata).await?;
                    }
                }
            }
            // Other parts are read and ignored.
            _ => while field.chunk().await?.is_some() {},
        }
    }
    outcome.ok_or_else(|| ApiError::invalid_input("the multipart body has no `file` part"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use satchel::ErrorCode;

    fn params(overwrite: Option<&str>, on_conflict: Option<&str>) -> UploadParams {
        UploadParams {
            overwrite: overwrite.map(str::to_owned),
            on_conflict: on_conflict.map(str::to_owned),
            ..UploadParams::default()
        }
    }

    #[test]
    fn conflict_policies() {
        let ok = |o, c| conflict_policy(&params(o, c)).map_err(|e| e.code());
        assert_eq!(ok(None, None), Ok(OnConflict::Error));
        assert_eq!(ok(Some("true"), None), Ok(OnConflict::Overwrite));
        assert_eq!(ok(Some("false"), Some("rename")), Ok(OnConflict::Rename));
        assert_eq!(ok(None, Some("overwrite")), Ok(OnConflict::Overwrite));
        assert_eq!(
            ok(Some("true"), Some("overwrite")),
            Ok(OnConflict::Overwrite)
        );
        for (o, c) in [
            (Some("true"), Some("rename")),
            (Some("true"), Some("error")),
            (Some("false"), Some("overwrite")),
            (Some("yes please"), None),
            (None, Some("merge")),
        ] {
            assert_eq!(ok(o, c), Err(ErrorCode::InvalidInput), "{o:?} {c:?}");
        }
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert!(parse_metadata("{\"a\": 1}").is_ok());
        for bad in ["[1]", "1", "\"x\"", "null", "{", ""] {
            assert_eq!(
                parse_metadata(bad).unwrap_err().code(),
                ErrorCode::InvalidInput
            );
        }
    }
}
