//! Maintenance jobs: `gc` (purge expired trash, orphan blobs, stale staged uploads) and `fsck`
//! (records against blobs). Both are safe to run on several nodes at once: every step is
//! idempotent, blobs go before their records, and nothing younger than [`GRACE`] is touched
//! because an upload in flight may still own it.

use crate::error::Result;
use crate::storage::StorageError;
use crate::workspace::{now, Satchel};
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Orphan blobs and staged files younger than this are left alone (SPEC §10).
pub const GRACE: Duration = Duration::from_secs(3600);
const BATCH: u32 = 500;

#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Trashed files past `trash_retention_days` (their blob and record removed).
    pub trash_purged: Vec<Uuid>,
    /// Blobs no record references, older than the grace period.
    pub orphan_blobs: Vec<String>,
    /// Staged uploads older than the grace period.
    pub staged_files: Vec<String>,
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        writeln!(f, "gc {verb}:")?;
        writeln!(f, "  expired trash entries: {}", self.trash_purged.len())?;
        writeln!(f, "  orphan blobs:          {}", self.orphan_blobs.len())?;
        write!(f, "  stale staged uploads:  {}", self.staged_files.len())?;
        for p in self.orphan_blobs.iter().chain(&self.staged_files) {
            write!(f, "\n    {p}")?;
        }
        Ok(())
    }
}

/// Runs the garbage collector once.
pub async fn gc(satchel: &Satchel, dry_run: bool) -> Result<GcReport> {
    let mut report = GcReport {
        dry_run,
        ..GcReport::default()
    };
    let retention = chrono::Duration::days(satchel.config().trash_retention_days as i64);
    let before = now() - retention;
    let catalog = satchel.catalog();
    let store = satchel.store();
    loop {
        let expired = catalog.expired_trash(before, BATCH).await?;
        let done = expired.len() < BATCH as usize;
        for file in expired {
            if !dry_run {
                // Blob first: a crash in between leaves a record whose blob is gone, which the
                // next run purges again, never a blob nobody can find.
                store.delete(&file.storage_path).await?;
                catalog.purge_deleted(file.id).await?;
            }
            report.trash_purged.push(file.id);
        }
        if done || dry_run {
            break;
        }
    }
    let cutoff = SystemTime::now() - GRACE;
    for blob in store.list().await? {
        if blob.modified >= cutoff || catalog.storage_path_referenced(&blob.storage_path).await? {
            continue;
        }
        if !dry_run {
            store.delete(&blob.storage_path).await?;
        }
        report.orphan_blobs.push(blob.storage_path);
    }
    report.staged_files = store.sweep_staging(cutoff, dry_run).await?;
    if !dry_run {
        tracing::info!(
            trash = report.trash_purged.len(),
            orphans = report.orphan_blobs.len(),
            staged = report.staged_files.len(),
            "gc finished"
        );
    }
    Ok(report)
}

/// One inconsistency found by `fsck`.
#[derive(Debug, Clone, Serialize)]
pub struct FsckProblem {
    pub kind: &'static str,
    pub file_id: Option<Uuid>,
    pub storage_path: String,
    pub detail: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct FsckReport {
    pub records_checked: u64,
    pub blobs_checked: u64,
    pub problems: Vec<FsckProblem>,
    /// Live records moved to the trash by `--repair` (flagged in their metadata).
    pub repaired: Vec<Uuid>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for FsckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fsck: {} records, {} blobs checked, {} problem(s)",
            self.records_checked,
            self.blobs_checked,
            self.problems.len()
        )?;
        for p in &self.problems {
            let id = p
                .file_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into());
            write!(
                f,
                "\n  {}: file {id} at {}: {}",
                p.kind, p.storage_path, p.detail
            )?;
        }
        if !self.repaired.is_empty() {
            write!(
                f,
                "\n  moved {} broken record(s) to the trash",
                self.repaired.len()
            )?;
        }
        Ok(())
    }
}

/// Checks every record against its blob (size, and with `deep` the SHA-256) and every blob
/// against the records. `repair` moves broken live records to the trash, tagged with
/// `{"fsck": kind}` in their metadata; it never deletes data.
pub async fn fsck(satchel: &Satchel, deep: bool, repair: bool) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    let catalog = satchel.catalog();
    let store = satchel.store();
    let mut referenced = HashSet::new();
    let mut after = None;
    loop {
        let page = catalog.all_records(after, BATCH).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for file in page {
            report.records_checked += 1;
            referenced.insert(file.storage_path.clone());
            let problem = match store.size(&file.storage_path).await? {
                None => Some(("missing_blob", "the blob does not exist".to_owned())),
                Some(size) if size != file.size_bytes => Some((
                    "size_mismatch",
                    format!("record says {} bytes, blob has {size}", file.size_bytes),
                )),
                Some(_) if deep => match blob_sha256(satchel, &file.storage_path).await? {
                    sum if sum != file.checksum => Some((
                        "checksum_mismatch",
                        format!("record says {}, blob hashes to {sum}", file.checksum),
                    )),
                    _ => None,
                },
                Some(_) => None,
            };
            let Some((kind, detail)) = problem else {
                continue;
            };
            if repair && !file.is_deleted {
                let mut metadata = file.metadata.clone();
                metadata.insert("fsck".into(), kind.into());
                catalog
                    .set_metadata(file.workspace_id, file.id, &metadata, now())
                    .await?;
                catalog
                    .soft_delete(file.workspace_id, file.id, now())
                    .await?;
                report.repaired.push(file.id);
            }
            report.problems.push(FsckProblem {
                kind,
                file_id: Some(file.id),
                storage_path: file.storage_path,
                detail,
            });
        }
    }
    for blob in store.list().await? {
        report.blobs_checked += 1;
        if !referenced.contains(&blob.storage_path) {
            report.problems.push(FsckProblem {
                kind: "orphan_blob",
                file_id: None,
                detail: format!(
                    "{} bytes, no record references it (gc removes it)",
                    blob.size
                ),
                storage_path: blob.storage_path,
            });
        }
    }
    Ok(report)
}

async fn blob_sha256(satchel: &Satchel, storage_path: &str) -> Result<String> {
    let mut stream = satchel.store().open(storage_path, None).await?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(chunk.map_err(StorageError::from)?);
    }
    Ok(hex::encode(hasher.finalize()))
}
