//! Moving every blob to another backend (`satchel storage migrate --to gcs|s3|local`), as
//! pict-rs's `migrate_store` does: each live file and each trash version is streamed from the
//! configured store to the target, its SHA-256 and size checked against the record while it
//! streams (a mismatch aborts that upload, so nothing unverified is ever committed), and only
//! then is the record pointed at the copy, with a compare-and-set so a record that changed
//! meanwhile (overwritten, purged) is left alone and its copy removed.
//!
//! Resumable: a record already pointing at the target is skipped, so an interrupted run is
//! simply run again (a copy left by the interruption is replaced). Records are read in pages
//! of `batch` (id order) and each page's records are rewritten as their copies complete;
//! progress is logged per page. The source blobs are left in place: remove the old bucket or
//! directory once the new configuration is in service.
//!
//! The key carries over: `local://{ws}/{file}/{name}` becomes `gcs://{bucket}/workspaces/{ws}/
//! {file}/{name}` and so on, so a blob keeps its identity across backends.
//!
//! The record update is the catalog's compare-and-set `Catalog::set_storage_path`, reached
//! through [`StoragePathRewrite`] so tests can interpose on it.

use super::{BlobKey, BlobStore, StorageError};
use crate::catalog::CatalogResult;
use crate::domain::FileRecord;
use crate::error::{Error, ErrorCode, Result};
use crate::workspace::Satchel;
use async_trait::async_trait;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// The one catalog operation a migration needs: compare-and-set of a record's storage path.
/// (Asked of the catalog as `Catalog::set_storage_path` with this signature.)
#[async_trait]
pub trait StoragePathRewrite: Send + Sync {
    /// Points record `id` (live or trashed) at `new` if it still points at `old`; returns
    /// whether it did. Touches nothing else (not `updated_at`: the content did not change).
    async fn set_storage_path(&self, id: Uuid, old: &str, new: &str) -> CatalogResult<bool>;
}

/// The catalog's own compare-and-set.
struct CatalogRewrite<'a>(&'a dyn crate::catalog::Catalog);

#[async_trait]
impl StoragePathRewrite for CatalogRewrite<'_> {
    async fn set_storage_path(&self, id: Uuid, old: &str, new: &str) -> CatalogResult<bool> {
        self.0.set_storage_path(id, old, new).await
    }
}

/// Copies every blob to `to` and points the records at the copies (see the module comment).
pub async fn migrate_storage(
    satchel: &Satchel,
    to: Arc<dyn BlobStore>,
    batch: u32,
) -> Result<MigrationReport> {
    migrate_storage_with(
        satchel,
        to,
        batch,
        &CatalogRewrite(satchel.catalog().as_ref()),
    )
    .await
}

/// One record that could not be moved (the run goes on; run it again after fixing the cause).
#[derive(Debug, Clone, Serialize)]
pub struct MigrationFailure {
    pub file_id: Uuid,
    pub storage_path: String,
    pub error: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct MigrationReport {
    /// The target backend (`local`, `gcs`, `s3`).
    pub to: String,
    /// Records looked at (live and trashed).
    pub records: u64,
    /// Blobs copied, verified and now referenced at the target.
    pub copied: u64,
    pub bytes_copied: u64,
    /// Records that already pointed at the target (an earlier run moved them).
    pub already_migrated: u64,
    /// Records that changed while their blob was copied (the copy was removed).
    pub changed_meanwhile: u64,
    pub failed: Vec<MigrationFailure>,
}

impl MigrationReport {
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty() && self.changed_meanwhile == 0
    }
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "storage migration to {}: {} records, {} copied ({} bytes), {} already there, \
             {} changed meanwhile, {} failed",
            self.to,
            self.records,
            self.copied,
            self.bytes_copied,
            self.already_migrated,
            self.changed_meanwhile,
            self.failed.len()
        )?;
        for failure in &self.failed {
            write!(
                f,
                "\n  {} at {}: {}",
                failure.file_id, failure.storage_path, failure.error
            )?;
        }
        Ok(())
    }
}

/// Why one record's blob was not copied.
enum CopyError {
    /// The record's blob is wrong or missing: recorded, the run goes on.
    Record(String),
    /// A store is unavailable: the run stops (it is resumable).
    Storage(StorageError),
}

impl From<StorageError> for CopyError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Unavailable(_) => CopyError::Storage(e),
            other => CopyError::Record(other.to_string()),
        }
    }
}

/// Copies every blob the catalog references from `satchel.store()` to `to` and points the
/// records at the copies (module comment). Stops with `storage_unavailable` if either store is
/// unreachable; per-record problems (missing blob, checksum mismatch) are reported and skipped.
pub async fn migrate_storage_with(
    satchel: &Satchel,
    to: Arc<dyn BlobStore>,
    batch: u32,
    rewrite: &dyn StoragePathRewrite,
) -> Result<MigrationReport> {
    if batch == 0 {
        return Err(Error::invalid_input("batch must be at least 1"));
    }
    let from = satchel.store().clone();
    let catalog = satchel.catalog();
    let mut report = MigrationReport {
        to: to.backend().to_owned(),
        ..MigrationReport::default()
    };
    let mut after = None;
    loop {
        let page = catalog.all_records(after, batch).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for record in &page {
            report.records += 1;
            let Some((_, _, key)) = BlobKey::from_storage_path(&record.storage_path) else {
                report
                    .failed
                    .push(failure(record, "unrecognised storage path".into()));
                continue;
            };
            let target = to.storage_path(key.workspace_id, key.file_id, &key.name);
            if record.storage_path == target {
                report.already_migrated += 1;
                continue;
            }
            match copy_verified(from.as_ref(), record, to.as_ref(), &target).await {
                Ok(()) => {}
                Err(CopyError::Record(message)) => {
                    report.failed.push(failure(record, message));
                    continue;
                }
                Err(CopyError::Storage(e)) => {
                    tracing::warn!(%report, "storage migration stopped; run it again to resume");
                    return Err(Error::new(
                        ErrorCode::StorageUnavailable,
                        format!("migrating {}: {e}", record.storage_path),
                    ));
                }
            }
            if rewrite
                .set_storage_path(record.id, &record.storage_path, &target)
                .await?
            {
                report.copied += 1;
                report.bytes_copied += record.size_bytes;
            } else {
                // Overwritten or purged meanwhile: the copy is nobody's.
                if let Err(e) = to.delete(&target).await {
                    tracing::warn!(storage_path = %target, error = %e, "could not remove a stale copy; gc will");
                }
                report.changed_meanwhile += 1;
            }
        }
        tracing::info!(
            records = report.records,
            copied = report.copied,
            bytes = report.bytes_copied,
            "storage migration progress"
        );
        if page.len() < batch as usize {
            break;
        }
    }
    Ok(report)
}

fn failure(record: &FileRecord, error: String) -> MigrationFailure {
    MigrationFailure {
        file_id: record.id,
        storage_path: record.storage_path.clone(),
        error,
    }
}

/// Streams the record's blob into `target`, hashing on the way; commits the copy only if size
/// and SHA-256 match the record. A copy left at `target` by an interrupted run is replaced.
async fn copy_verified(
    from: &dyn BlobStore,
    record: &FileRecord,
    to: &dyn BlobStore,
    target: &str,
) -> std::result::Result<(), CopyError> {
    let mut source = from.open(&record.storage_path, None).await?;
    // Some backends refuse to overwrite a key (GCS writes are if-not-exists).
    to.delete(target).await?;
    let mut writer = to.create(target).await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = source.next().await {
        let chunk = chunk.map_err(StorageError::from)?;
        size += chunk.len() as u64;
        if size > record.size_bytes {
            return Err(CopyError::Record(format!(
                "the blob is larger than the record's {} bytes",
                record.size_bytes
            )));
        }
        hasher.update(&chunk);
        writer.write(chunk).await?;
    }
    let checksum = hex::encode(hasher.finalize());
    if size != record.size_bytes || checksum != record.checksum {
        // Dropping the writer aborts the upload: nothing unverified reaches the target.
        return Err(CopyError::Record(format!(
            "the blob ({size} bytes, SHA-256 {checksum}) does not match the record \
             ({} bytes, {})",
            record.size_bytes, record.checksum
        )));
    }
    writer.finish().await?;
    Ok(())
}
