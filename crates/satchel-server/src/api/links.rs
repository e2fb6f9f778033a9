//! Signed download links (SPEC §4): the store's native signed URL on GCS and S3; on the local
//! backend an HMAC link for one version of one file, served here without a bearer token.

use crate::auth::User;
use crate::content;
use crate::dto::{timestamp, DownloadUrl, DownloadUrlRequest};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{optional_json, Path, RawBody};
use crate::App;
use axum::extract::State;
use axum::http::{HeaderMap, Method};
use axum::response::Response;
use axum::Json;
use chrono::Utc;
use satchel::signing::verify_download_token;
use uuid::Uuid;

pub const DEFAULT_EXPIRES_IN: i64 = 3600;
pub const MAX_EXPIRES_IN: i64 = 7 * 24 * 3600;

/// Create a time-limited download link for a file's current content.
#[utoipa::path(
    post,
    path = "/v1/files/{id}/download-url",
    tag = "content",
    params(("id" = Uuid, Path, description = "File id")),
    request_body(content = Option<DownloadUrlRequest>, description = "Optional; `expires_in` defaults to 3600"),
    responses(
        (status = 200, body = DownloadUrl),
        (status = 400, description = "expires_in outside 1..=604800", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn create_download_url(
    State(app): State<App>,
    User(user): User,
    Path(id): Path<Uuid>,
    RawBody(body): RawBody,
) -> ApiResult<Json<DownloadUrl>> {
    let request: DownloadUrlRequest = optional_json(&body)?.unwrap_or_default();
    let expires_in = request.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
    if !(1..=MAX_EXPIRES_IN).contains(&expires_in) {
        return Err(ApiError::invalid_input(format!(
            "expires_in must be between 1 and {MAX_EXPIRES_IN} seconds"
        )));
    }
    let manager = app.satchel().workspace(&user, None).await?;
    // Native signed URLs on GCS and S3, HMAC links served by this service otherwise.
    let link = manager
        .get_download_url(id, std::time::Duration::from_secs(expires_in as u64))
        .await?;
    Ok(Json(DownloadUrl {
        url: link.url,
        expires_at: timestamp(link.expires_at),
    }))
}

/// Download through a signed link (no bearer token). Same headers, `Range` and `If-None-Match`
/// behaviour as `/v1/files/{id}/content`.
#[utoipa::path(
    method(get, head),
    path = "/v1/download/{token}",
    tag = "content",
    params(
        ("token" = String, Path, description = "The token of a URL from download-url"),
        ("Range" = Option<String>, Header, description = "One byte range"),
    ),
    responses(
        (status = 200, description = "The whole content", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"),
        (status = 403, description = "link_invalid (tampered or garbage) or link_expired", body = ErrorBody),
        (status = 404, description = "The file was deleted or overwritten since", body = ErrorBody),
        (status = 416, body = ErrorBody),
    ),
)]
pub async fn signed_download(
    State(app): State<App>,
    Path(token): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let claims = verify_download_token(app.secrets(), &token, Utc::now().timestamp())?;
    let satchel = app.satchel();
    let record = satchel
        .catalog()
        .get_file(claims.workspace_id, claims.file_id)
        .await
        .map_err(satchel::Error::from)?
        .filter(|record| record.checksum == claims.checksum)
        .ok_or_else(|| {
            ApiError::not_found("the file of this link was deleted or has new content")
        })?;
    let store = satchel.store().clone();
    let storage_path = record.storage_path.clone();
    content::respond(&method, &headers, &record, |range| async move {
        Ok(store.open(&storage_path, range).await?)
    })
    .await
}
