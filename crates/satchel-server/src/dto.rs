//! The JSON shapes of the API (SPEC §7). `storage_path` never appears in any of them.

use chrono::{DateTime, SecondsFormat, Utc};
use satchel::domain::FileRecord;
use satchel::{FilePage, Usage};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// RFC 3339, UTC, microseconds: `2026-12-03T17:09:34.123456Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A live file.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileInfo {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// The filename the user gave.
    pub name: String,
    /// The virtual path.
    pub path: String,
    pub mime_type: String,
    pub size_bytes: u64,
    /// SHA-256 of the content, lowercase hex (also the download `ETag`).
    pub checksum: String,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

impl From<&FileRecord> for FileInfo {
    fn from(f: &FileRecord) -> Self {
        FileInfo {
            id: f.id,
            workspace_id: f.workspace_id,
            name: f.name.clone(),
            path: f.path.clone(),
            mime_type: f.mime_type.clone(),
            size_bytes: f.size_bytes,
            checksum: f.checksum.clone(),
            metadata: f.metadata.clone(),
            created_at: timestamp(f.created_at),
            updated_at: timestamp(f.updated_at),
        }
    }
}

/// A file in the trash: a FileInfo plus when it was deleted and where it was.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrashedFileInfo {
    #[serde(flatten)]
    pub file: FileInfo,
    #[schema(format = DateTime)]
    pub deleted_at: Option<String>,
    /// Where `restore` puts it back.
    pub original_path: Option<String>,
}

impl From<&FileRecord> for TrashedFileInfo {
    fn from(f: &FileRecord) -> Self {
        TrashedFileInfo {
            file: f.into(),
            deleted_at: f.deleted_at.map(timestamp),
            original_path: f.original_path.clone(),
        }
    }
}

/// One page of a listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileList {
    pub files: Vec<FileInfo>,
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl From<&FilePage> for FileList {
    fn from(page: &FilePage) -> Self {
        FileList {
            files: page.files.iter().map(FileInfo::from).collect(),
            has_more: page.has_more,
            next_cursor: page.next_cursor.clone(),
        }
    }
}

/// One page of the trash.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrashList {
    pub files: Vec<TrashedFileInfo>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

impl From<&FilePage> for TrashList {
    fn from(page: &FilePage) -> Self {
        TrashList {
            files: page.files.iter().map(TrashedFileInfo::from).collect(),
            has_more: page.has_more,
            next_cursor: page.next_cursor.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FileCount {
    pub count: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: u64,
}

/// The caller's workspace with its usage.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceInfo {
    pub id: Uuid,
    pub user_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    /// Bytes used by live files.
    pub used_bytes: u64,
    /// The quota in bytes; 0 = unlimited.
    pub limit_bytes: u64,
    pub file_count: u64,
}

impl From<&Usage> for WorkspaceInfo {
    fn from(u: &Usage) -> Self {
        WorkspaceInfo {
            id: u.workspace.id,
            user_id: u.workspace.user_id.clone(),
            created_at: timestamp(u.workspace.created_at),
            updated_at: timestamp(u.workspace.updated_at),
            used_bytes: u.used_bytes,
            limit_bytes: u.limit_bytes,
            file_count: u.file_count,
        }
    }
}

/// `POST /v1/files/{id}/restore` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// Restore here instead of the original path.
    pub path: Option<String>,
}

/// `POST /v1/files/{id}/download-url` body (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DownloadUrlRequest {
    /// Seconds the link stays valid: 1 to 604800 (7 days); default 3600.
    pub expires_in: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DownloadUrl {
    pub url: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// Readiness of each dependency: `ok`, `disabled` (scanner only) or what went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub database: String,
    pub storage: String,
    pub scanner: String,
}

/// Filters and page of `GET /v1/files`, `GET /v1/files/count` and `GET /v1/trash`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// A folder (`/docs` and `/docs/` both mean the files under `/docs/`); recursive.
    pub path: Option<String>,
    pub session_id: Option<String>,
    /// `true`: take `path` as absolute, across all sessions.
    #[param(value_type = Option<bool>)]
    pub include_all_sessions: Option<String>,
    /// Case-insensitive substring of the file name.
    pub name_contains: Option<String>,
    /// 1..=1000, default 50.
    pub limit: Option<u32>,
    pub offset: Option<u64>,
    /// `next_cursor` of the previous page (not with `offset`).
    pub cursor: Option<String>,
}

/// A file addressed by path.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathParams {
    pub path: Option<String>,
    pub session_id: Option<String>,
}

/// Optional session scope for a path given in a body.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionParams {
    pub session_id: Option<String>,
}

/// Query of `POST /v1/files`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// Required for a raw body; for multipart, used when the `file` part has no filename.
    pub filename: Option<String>,
    /// Target path; a trailing `/` names a folder. Default `/{filename}` (session-scoped).
    pub path: Option<String>,
    pub session_id: Option<String>,
    /// `true` = `on_conflict=overwrite`.
    #[param(value_type = Option<bool>)]
    pub overwrite: Option<String>,
    /// `error` (default), `overwrite` or `rename`.
    pub on_conflict: Option<String>,
    /// Default: guessed from the filename. The request's `Content-Type` is not used.
    pub mime_type: Option<String>,
    /// A JSON object (at most 16 KiB); a multipart `metadata` part may be used instead.
    pub metadata: Option<String>,
}

/// What `POST /v1/media` answers: `for_local_processing` → the file's name relative to the
/// execution folder; `for_external_api` → a data URI; `for_block_output` → with `session_id`,
/// `workspace://{file_id}#{mime}` (saved to `/sessions/{session_id}/`, a `workspace://` input is
/// answered as is), else the data URI.
// Documentation only: the field is parsed with `satchel::media::ReturnFormat::parse`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum MediaReturnFormat {
    /// The file's name relative to the execution folder, e.g. `image.png`.
    ForLocalProcessing,
    /// `data:{mime};base64,{…}`.
    ForExternalApi,
    /// With `session_id`: saved to `/sessions/{session_id}/` in the caller's workspace, answered
    /// as `workspace://{file_id}#{mime}` (a `workspace://` input is answered as is). Without:
    /// the data URI.
    ForBlockOutput,
}

/// `POST /v1/media` body.
// The strings are borrowed from the request body when they contain no JSON escapes, so a large
// data URI is not copied.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediaRequest<'a> {
    /// A data URI, an http(s) URL, `workspace://{file_id}` or `workspace:///path` (optional
    /// `#mime`), the `gcs://`/`gs://`/`s3://` storage path of one of the caller's files, or a
    /// path inside the execution folder.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub file: Cow<'a, str>,
    /// The graph execution: names the execution folder; `[A-Za-z0-9_-]{1,128}`.
    #[serde(borrow)]
    #[schema(value_type = String)]
    pub graph_exec_id: Cow<'a, str>,
    #[serde(borrow)]
    #[schema(value_type = MediaReturnFormat)]
    pub return_format: Cow<'a, str>,
    /// The agent chat session: scopes `workspace:///paths` and is where `for_block_output`
    /// saves; `[A-Za-z0-9_-]{1,128}`.
    #[serde(default, borrow)]
    #[schema(value_type = Option<String>)]
    pub session_id: Option<Cow<'a, str>>,
}

/// `POST /v1/media` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct MediaResult {
    /// A name in the execution folder, a data URI or a `workspace://` reference, by
    /// `return_format`.
    pub result: String,
}
