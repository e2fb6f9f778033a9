//! File routes other than upload: listing, lookup, content, delete, restore, trash, sessions.

use crate::auth::User;
use crate::content;
use crate::dto::{
    Deleted, FileCount, FileInfo, FileList, ListParams, PathParams, RestoreRequest, SessionParams,
    TrashList,
};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{flag, optional_json, Path, Query, RawBody};
use crate::App;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Json;
use satchel::{ListOptions, WorkspaceManager};
use uuid::Uuid;

impl ListParams {
    fn options(&self) -> ApiResult<ListOptions> {
        Ok(ListOptions {
            path: self.path.clone(),
            include_all_sessions: flag(
                "include_all_sessions",
                self.include_all_sessions.as_deref(),
            )?,
            name_contains: self.name_contains.clone(),
            limit: self.limit,
            offset: self.offset,
            cursor: self.cursor.clone(),
        })
    }
}

impl PathParams {
    fn required_path(&self) -> ApiResult<&str> {
        self.path
            .as_deref()
            .ok_or_else(|| ApiError::invalid_input("the path query parameter is required"))
    }
}

async fn workspace(app: &App, user: &str, session_id: Option<&str>) -> ApiResult<WorkspaceManager> {
    Ok(app.satchel().workspace(user, session_id).await?)
}

/// List live files in a folder (recursive), newest first.
#[utoipa::path(
    get,
    path = "/v1/files",
    tag = "files",
    params(ListParams),
    responses(
        (status = 200, body = FileList),
        (status = 400, description = "invalid_input (limit, cursor, offset with cursor, session_id) or invalid_path", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn list_files(
    State(app): State<App>,
    User(user): User,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<FileList>> {
    let options = params.options()?;
    let manager = workspace(&app, &user, params.session_id.as_deref()).await?;
    let page = manager.list_files(&options).await?;
    Ok(Json(FileList::from(&page)))
}

/// Count live files, with the filters of the listing.
#[utoipa::path(
    get,
    path = "/v1/files/count",
    tag = "files",
    params(ListParams),
    responses((status = 200, body = FileCount), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
)]
pub async fn count_files(
    State(app): State<App>,
    User(user): User,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<FileCount>> {
    let options = params.options()?;
    let manager = workspace(&app, &user, params.session_id.as_deref()).await?;
    let count = manager.get_file_count(&options).await?;
    Ok(Json(FileCount { count }))
}

/// A file's information.
#[utoipa::path(
    get,
    path = "/v1/files/{id}",
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    responses((status = 200, body = FileInfo), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
)]
pub async fn get_file(
    State(app): State<App>,
    User(user): User,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<FileInfo>> {
    let manager = workspace(&app, &user, None).await?;
    Ok(Json(FileInfo::from(&manager.get_file_info(id).await?)))
}

/// A file's information, by path.
#[utoipa::path(
    get,
    path = "/v1/files/by-path",
    tag = "files",
    params(PathParams),
    responses(
        (status = 200, body = FileInfo),
        (status = 400, description = "missing or invalid path", body = ErrorBody),
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn get_file_by_path(
    State(app): State<App>,
    User(user): User,
    Query(params): Query<PathParams>,
) -> ApiResult<Json<FileInfo>> {
    let manager = workspace(&app, &user, params.session_id.as_deref()).await?;
    let record = manager
        .get_file_info_by_path(params.required_path()?)
        .await?;
    Ok(Json(FileInfo::from(&record)))
}

/// A file's content, streamed. Supports one `Range` (206; several ranges get the whole body),
/// `If-None-Match` (304), `If-Range` and HEAD.
#[utoipa::path(
    method(get, head),
    path = "/v1/files/{id}/content",
    tag = "content",
    params(
        ("id" = Uuid, Path, description = "File id"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. `bytes=0-99`, `bytes=100-`, `bytes=-100`"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s); a match answers 304"),
    ),
    responses(
        (status = 200, description = "The whole content (attachment; ETag is the quoted checksum)", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range, with Content-Range", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"),
        (status = 404, body = ErrorBody),
        (status = 416, description = "range_not_satisfiable, with `Content-Range: bytes */{size}`", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn file_content(
    State(app): State<App>,
    User(user): User,
    Path(id): Path<Uuid>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let manager = workspace(&app, &user, None).await?;
    let record = manager.get_file_info(id).await?;
    content::respond(&method, &headers, &record, |range| {
        manager.open_record(&record, range)
    })
    .await
}

/// A file's content, by path (same behaviour as `/v1/files/{id}/content`).
#[utoipa::path(
    method(get, head),
    path = "/v1/files/by-path/content",
    tag = "content",
    params(
        PathParams,
        ("Range" = Option<String>, Header, description = "One byte range"),
        ("If-None-Match" = Option<String>, Header, description = "ETag(s); a match answers 304"),
    ),
    responses(
        (status = 200, description = "The whole content", content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 416, body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn file_content_by_path(
    State(app): State<App>,
    User(user): User,
    Query(params): Query<PathParams>,
    method: Method,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let manager = workspace(&app, &user, params.session_id.as_deref()).await?;
    let record = manager
        .get_file_info_by_path(params.required_path()?)
        .await?;
    content::respond(&method, &headers, &record, |range| {
        manager.open_record(&record, range)
    })
    .await
}

/// Move a file to the trash (its path is free at once).
#[utoipa::path(
    delete,
    path = "/v1/files/{id}",
    tag = "files",
    params(("id" = Uuid, Path, description = "File id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody)),
    security(("bearer" = [])),
)]
pub async fn delete_file(
    State(app): State<App>,
    User(user): User,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let manager = workspace(&app, &user, None).await?;
    manager.delete_file(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Restore a file from the trash, to its original path or to `path`.
#[utoipa::path(
    post,
    path = "/v1/files/{id}/restore",
    tag = "trash",
    params(("id" = Uuid, Path, description = "Id of the trashed file"), SessionParams),
    request_body(content = Option<RestoreRequest>, description = "Optional; an empty body restores to the original path"),
    responses(
        (status = 200, body = FileInfo),
        (status = 404, body = ErrorBody),
        (status = 409, description = "path_exists", body = ErrorBody),
        (status = 413, description = "quota_exceeded", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn restore_file(
    State(app): State<App>,
    User(user): User,
    Path(id): Path<Uuid>,
    Query(params): Query<SessionParams>,
    RawBody(body): RawBody,
) -> ApiResult<Json<FileInfo>> {
    let request: RestoreRequest = optional_json(&body)?.unwrap_or_default();
    let manager = workspace(&app, &user, params.session_id.as_deref()).await?;
    let record = manager.restore_file(id, request.path.as_deref()).await?;
    Ok(Json(FileInfo::from(&record)))
}

/// Deleted files not yet purged, newest first; `path` filters on the original path.
#[utoipa::path(
    get,
    path = "/v1/trash",
    tag = "trash",
    params(ListParams),
    responses((status = 200, body = TrashList), (status = 400, body = ErrorBody)),
    security(("bearer" = [])),
)]
pub async fn list_trash(
    State(app): State<App>,
    User(user): User,
    Query(params): Query<ListParams>,
) -> ApiResult<Json<TrashList>> {
    let options = params.options()?;
    let manager = workspace(&app, &user, params.session_id.as_deref()).await?;
    let page = manager.list_trash(&options).await?;
    Ok(Json(TrashList::from(&page)))
}

/// Move every file of an agent session to the trash.
#[utoipa::path(
    delete,
    path = "/v1/sessions/{session_id}",
    tag = "files",
    params(("session_id" = String, Path, description = "`[A-Za-z0-9_-]{1,128}`")),
    responses(
        (status = 200, body = Deleted),
        (status = 400, description = "invalid session id", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub async fn delete_session(
    State(app): State<App>,
    User(user): User,
    Path(session_id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    let manager = workspace(&app, &user, None).await?;
    let deleted = manager.delete_session(&session_id).await?;
    Ok(Json(Deleted { deleted }))
}
