use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// One user's workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Workspace {
    pub id: Uuid,
    pub user_id: String,
    /// Sum of `size_bytes` of live files, maintained in the same transaction as every commit.
    pub used_bytes: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A file's catalog record (SPEC §1). `storage_path` is internal: it never leaves the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    /// The virtual path; for a deleted file the renamed `{path}__deleted__{ms}_{id}` form.
    pub path: String,
    pub storage_path: String,
    pub mime_type: String,
    pub size_bytes: u64,
    pub checksum: String,
    pub is_deleted: bool,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The path a deleted file had when it was live; where `restore` puts it back.
    pub original_path: Option<String>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
