//! The metadata catalog: workspaces and file records, on SQLite (embedded default) or PostgreSQL.
//!
//! Every invariant that a race could break lives in the database: one live file per path (a
//! partial unique index), one workspace per user (a unique key + upsert), and the quota (a
//! `used_bytes` counter updated in the commit's own transaction with a guarded `UPDATE`).

mod cursor;
mod postgres;
mod retry;
mod sqlite;

pub use cursor::Cursor;
pub use postgres::PostgresCatalog;
pub use retry::RetryingCatalog;
pub use sqlite::SqliteCatalog;

use crate::domain::{FileRecord, FolderPath, VirtualPath, Workspace};
use crate::error::{Error, ErrorCode};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Errors of the catalog layer.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("a live file already exists at this path")]
    PathExists,
    #[error("the live file at this path does not match the expected checksum")]
    PreconditionFailed,
    #[error("quota exceeded")]
    QuotaExceeded { used_bytes: u64, limit_bytes: u64 },
    #[error("not found")]
    NotFound,
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
}

impl From<sqlx::Error> for CatalogError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => CatalogError::PathExists,
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => CatalogError::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if is_transient_db_error(db.code().as_deref()) => {
                CatalogError::Unavailable(err.to_string())
            }
            _ => CatalogError::Database(err.to_string()),
        }
    }
}

/// PostgreSQL's "server going away / not accepting connections" classes and SQLite's busy/locked.
fn is_transient_db_error(code: Option<&str>) -> bool {
    match code {
        Some(c) => c.starts_with("08") || c.starts_with("57P") || c == "5" || c == "6",
        None => false,
    }
}

impl From<CatalogError> for Error {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::PathExists => {
                Error::new(ErrorCode::PathExists, "a file already exists at this path")
            }
            CatalogError::PreconditionFailed => Error::new(
                ErrorCode::PreconditionFailed,
                "the file at this path does not have the expected checksum",
            ),
            CatalogError::QuotaExceeded {
                used_bytes,
                limit_bytes,
            } => Error::quota(used_bytes, limit_bytes),
            CatalogError::NotFound => Error::not_found("file not found"),
            CatalogError::Unavailable(m) => Error::new(ErrorCode::DatabaseUnavailable, m),
            CatalogError::Database(m) => Error::internal(m),
        }
    }
}

pub type CatalogResult<T> = Result<T, CatalogError>;

/// Content of a file about to be committed: its bytes are already stored and scanned.
#[derive(Debug, Clone)]
pub struct NewFile {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub path: VirtualPath,
    pub storage_path: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub checksum: String,
    /// `None` keeps the metadata of an overwritten file (and means `{}` for a new one).
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    pub now: DateTime<Utc>,
}

/// What must hold at the path for a commit to go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Nothing: create, or replace whatever is there (plain overwrite).
    None,
    /// `If-Match: *`: some live file must be there.
    AnyLive,
    /// `If-Match: "<checksum>"`: the live file must have this checksum.
    Checksum(String),
}

/// Result of a commit.
#[derive(Debug, Clone)]
pub struct Committed {
    pub record: FileRecord,
    /// True when a live file was replaced (the same id kept, the old content trashed).
    pub replaced: bool,
}

/// Which page of a listing to return. Ordered `created_at DESC, id DESC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Page {
    Offset(u64),
    After(Cursor),
}

/// A listing's filter and page.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub folder: FolderPath,
    /// Case-insensitive substring of `name`.
    pub name_contains: Option<String>,
    pub limit: u32,
    pub page: Page,
}

#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Which backend this is, for logs and readiness.
    fn backend(&self) -> &'static str;

    /// A trivial round-trip, for readiness checks.
    async fn ping(&self) -> CatalogResult<()>;

    /// The user's workspace, created on first use; concurrent first calls yield one workspace.
    async fn get_or_create_workspace(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> CatalogResult<Workspace>;

    /// A workspace by id (fresh `used_bytes`).
    async fn get_workspace(&self, workspace_id: Uuid) -> CatalogResult<Option<Workspace>>;

    /// Number of live files in a workspace.
    async fn live_file_count(&self, workspace_id: Uuid) -> CatalogResult<u64>;

    /// Inserts a new live file; `PathExists` if the path is taken.
    /// Quota (`limit_bytes`, 0 = none) is checked against `used_bytes` in the same transaction.
    async fn insert_file(&self, file: &NewFile, limit_bytes: u64) -> CatalogResult<FileRecord>;

    /// Replaces the live file at `file.path` in one transaction, keeping its id and created_at;
    /// the previous content becomes a trash entry. With no live file there, inserts a new one
    /// (unless the precondition demands a live file). Quota counts only the size difference.
    async fn overwrite_file(
        &self,
        file: &NewFile,
        precondition: &Precondition,
        limit_bytes: u64,
    ) -> CatalogResult<Committed>;

    /// A live file by id.
    async fn get_file(&self, workspace_id: Uuid, id: Uuid) -> CatalogResult<Option<FileRecord>>;

    /// A trashed (deleted, not yet purged) file by id.
    async fn get_trashed(&self, workspace_id: Uuid, id: Uuid) -> CatalogResult<Option<FileRecord>>;

    /// Replaces a live file's metadata.
    async fn set_metadata(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        metadata: &serde_json::Map<String, serde_json::Value>,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord>;

    /// The live file of a workspace stored at `storage_path` (exact match).
    async fn get_file_by_storage_path(
        &self,
        workspace_id: Uuid,
        storage_path: &str,
    ) -> CatalogResult<Option<FileRecord>>;

    /// The live file at a path.
    async fn get_file_by_path(
        &self,
        workspace_id: Uuid,
        path: &VirtualPath,
    ) -> CatalogResult<Option<FileRecord>>;

    /// Live files in a folder (recursive), one page (`limit + 1` rows are fetched by callers
    /// that want `has_more`).
    async fn list_files(
        &self,
        workspace_id: Uuid,
        query: &ListQuery,
    ) -> CatalogResult<Vec<FileRecord>>;

    async fn count_files(
        &self,
        workspace_id: Uuid,
        folder: &FolderPath,
        name_contains: Option<&str>,
    ) -> CatalogResult<u64>;

    /// Soft delete: the path is renamed so it is free at once; `NotFound` if not live.
    async fn soft_delete(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord>;

    /// Soft-deletes every live file in a folder; returns how many.
    async fn soft_delete_folder(
        &self,
        workspace_id: Uuid,
        folder: &FolderPath,
        now: DateTime<Utc>,
    ) -> CatalogResult<u64>;

    /// Deleted files not yet purged; `query.folder` filters on the original path.
    async fn list_trash(
        &self,
        workspace_id: Uuid,
        query: &ListQuery,
    ) -> CatalogResult<Vec<FileRecord>>;

    /// Moves a trashed file back to `path`; `PathExists` if taken, `NotFound` if not in the trash.
    async fn restore(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        path: &VirtualPath,
        limit_bytes: u64,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord>;

    /// Deleted records whose `deleted_at` is before `before`, oldest first, across workspaces.
    async fn expired_trash(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> CatalogResult<Vec<FileRecord>>;

    /// Points record `id` (live or trashed) at `new` if it still points at `old` (a
    /// compare-and-set for storage migration); returns whether it did. `updated_at` is left
    /// alone: the content did not change.
    async fn set_storage_path(&self, id: Uuid, old: &str, new: &str) -> CatalogResult<bool>;

    /// Removes a deleted record for good (after its blob is gone). Idempotent.
    async fn purge_deleted(&self, id: Uuid) -> CatalogResult<()>;

    /// Whether any record (live or trashed) references this storage path.
    async fn storage_path_referenced(&self, storage_path: &str) -> CatalogResult<bool>;

    /// Every record (live and trashed), in id order, one page after `after`.
    async fn all_records(&self, after: Option<Uuid>, limit: u32) -> CatalogResult<Vec<FileRecord>>;
}

/// The path a deleted file gets so its original path is free at once (SPEC §3).
pub fn deleted_path(path: &str, now: DateTime<Utc>, id: Uuid) -> String {
    format!("{path}__deleted__{}_{id}", now.timestamp_millis())
}

/// The exclusive upper bound of the paths under a folder: `/docs/` → `/docs0`
/// (`0` is the byte after `/`), so a prefix filter is an index range scan.
pub fn folder_upper_bound(folder: &FolderPath) -> String {
    let prefix = folder.as_prefix();
    format!("{}0", &prefix[..prefix.len() - 1])
}

/// Error for an `UPDATE` of the quota counter that matched no row.
pub fn quota_error(used: i64, limit_bytes: u64) -> CatalogError {
    CatalogError::QuotaExceeded {
        used_bytes: used.max(0) as u64,
        limit_bytes,
    }
}

/// Opens the catalog named by a `database_url`, applies migrations, and wraps it in the
/// retry policy of [`RetryingCatalog`].
pub async fn connect(database_url: &str) -> CatalogResult<std::sync::Arc<dyn Catalog>> {
    let inner: std::sync::Arc<dyn Catalog> =
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            std::sync::Arc::new(PostgresCatalog::connect(database_url).await?)
        } else if database_url.starts_with("sqlite:") {
            std::sync::Arc::new(SqliteCatalog::connect(database_url).await?)
        } else {
            return Err(CatalogError::Database(format!(
            "database_url: unsupported scheme in {database_url:?} (use sqlite:// or postgres://)"
        )));
        };
    Ok(std::sync::Arc::new(RetryingCatalog::new(inner)))
}
