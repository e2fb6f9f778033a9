//! Blob storage. The catalog records where each blob is (`storage_path`); a [`BlobStore`]
//! turns that into bytes. Writes are staged and become visible at their key only when
//! `finish` returns, after the data is durable; a writer dropped before that leaves nothing.

mod local;

pub use local::LocalStore;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::pin::Pin;
use std::time::SystemTime;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found")]
    NotFound,
    /// A storage path this store did not issue, or one that would leave its root.
    #[error("invalid storage path: {0}")]
    InvalidPath(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<std::io::Error> for StorageError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => StorageError::NotFound,
            _ => StorageError::Unavailable(e.to_string()),
        }
    }
}

impl From<StorageError> for crate::Error {
    fn from(e: StorageError) -> Self {
        use crate::ErrorCode;
        match e {
            StorageError::NotFound => crate::Error::not_found("the file's content is missing"),
            StorageError::InvalidPath(m) => crate::Error::internal(m),
            StorageError::Unavailable(m) => crate::Error::new(
                ErrorCode::StorageUnavailable,
                format!("storage unavailable: {m}"),
            ),
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// Opens the backend the configuration names: GCS if `media_gcs_bucket_name` is set, S3 if
/// `media_s3_bucket_name` is, else the local disk under `workspace_storage_dir`.
/// Misconfiguration fails here, at start-up, with a message naming the key.
pub async fn open_from_config(
    config: &crate::Config,
) -> crate::Result<std::sync::Arc<dyn BlobStore>> {
    use crate::{Error, ErrorCode};
    if config.media_gcs_bucket_name.is_some() || config.media_s3_bucket_name.is_some() {
        return Err(Error::invalid_input(
            "media_gcs_bucket_name / media_s3_bucket_name: cloud storage backends are not \
             available in this version; unset them to use local storage",
        ));
    }
    let store = LocalStore::open(&config.workspace_storage_dir)
        .await
        .map_err(|e| {
            Error::new(
                ErrorCode::StorageUnavailable,
                format!(
                    "workspace_storage_dir {}: {e}",
                    config.workspace_storage_dir.display()
                ),
            )
        })?;
    Ok(std::sync::Arc::new(store))
}

/// A stream of a blob's bytes in bounded chunks.
pub type BlobStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// A satisfiable byte range of a blob: `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One blob seen by a listing (for `gc` and `fsck`).
#[derive(Debug, Clone)]
pub struct BlobEntry {
    pub storage_path: String,
    pub size: u64,
    pub modified: SystemTime,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    /// The key of a new blob (SPEC §4): `{scheme}://…/{workspace_id}/{file_id}/{name}`.
    fn storage_path(&self, workspace_id: Uuid, file_id: Uuid, storage_name: &str) -> String;

    /// Starts writing a blob at `storage_path`; nothing is visible there until `finish`.
    async fn create(&self, storage_path: &str) -> StorageResult<Box<dyn BlobWriter>>;

    /// Streams a blob, or the given range of it.
    async fn open(&self, storage_path: &str, range: Option<ByteRange>)
        -> StorageResult<BlobStream>;

    /// The blob's size, or `None` if it does not exist.
    async fn size(&self, storage_path: &str) -> StorageResult<Option<u64>>;

    /// Removes a blob; a missing blob is not an error.
    async fn delete(&self, storage_path: &str) -> StorageResult<()>;

    /// Every committed blob (staging excluded).
    async fn list(&self) -> StorageResult<Vec<BlobEntry>>;

    /// Removes staged uploads last modified before `older_than`; returns what it removed (or
    /// would remove, with `dry_run`).
    async fn sweep_staging(
        &self,
        older_than: SystemTime,
        dry_run: bool,
    ) -> StorageResult<Vec<String>>;

    /// Whether the store is usable (readiness).
    async fn ping(&self) -> StorageResult<()>;
}

/// A blob being written. Dropping it before `finish` discards everything written.
#[async_trait]
pub trait BlobWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()>;

    /// Makes the blob durable and visible at its storage path.
    async fn finish(self: Box<Self>) -> StorageResult<()>;
}
