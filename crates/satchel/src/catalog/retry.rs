//! A [`Catalog`] wrapper that retries, with backoff, the calls that are safe to repeat when the
//! database is briefly unreachable (a restart, a failover, a dropped connection): reads, and
//! writes that are idempotent (the workspace upsert, metadata replacement, purge). Commits of
//! new content, deletes and restores are not retried here: if the connection drops during
//! their COMMIT nobody can tell whether it happened, so the caller gets `database_unavailable`
//! (503, retryable) and decides.

use super::{Catalog, CatalogError, CatalogResult, Committed, ListQuery, NewFile, Precondition};
use crate::domain::{FileRecord, FolderPath, VirtualPath, Workspace};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Delays before the second, third and fourth attempt.
const BACKOFF: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(250),
    Duration::from_millis(1000),
];

pub struct RetryingCatalog {
    inner: Arc<dyn Catalog>,
}

impl RetryingCatalog {
    pub fn new(inner: Arc<dyn Catalog>) -> Self {
        RetryingCatalog { inner }
    }
}

/// Runs `op` until it succeeds, fails with something other than `Unavailable`, or the backoff
/// schedule is exhausted.
async fn retry<T, F, Fut>(mut op: F) -> CatalogResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = CatalogResult<T>>,
{
    let mut delays = BACKOFF.iter();
    loop {
        match op().await {
            Err(CatalogError::Unavailable(reason)) => match delays.next() {
                Some(delay) => {
                    tracing::debug!(%reason, ?delay, "database unavailable; retrying");
                    tokio::time::sleep(*delay).await;
                }
                None => return Err(CatalogError::Unavailable(reason)),
            },
            other => return other,
        }
    }
}

#[async_trait]
impl Catalog for RetryingCatalog {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> CatalogResult<()> {
        // Readiness wants the current state, not a retried one.
        self.inner.ping().await
    }

    async fn get_or_create_workspace(
        &self,
        user_id: &str,
        now: DateTime<Utc>,
    ) -> CatalogResult<Workspace> {
        retry(|| self.inner.get_or_create_workspace(user_id, now)).await
    }

    async fn get_workspace(&self, workspace_id: Uuid) -> CatalogResult<Option<Workspace>> {
        retry(|| self.inner.get_workspace(workspace_id)).await
    }

    async fn live_file_count(&self, workspace_id: Uuid) -> CatalogResult<u64> {
        retry(|| self.inner.live_file_count(workspace_id)).await
    }

    async fn insert_file(&self, file: &NewFile, limit_bytes: u64) -> CatalogResult<FileRecord> {
        self.inner.insert_file(file, limit_bytes).await
    }

    async fn overwrite_file(
        &self,
        file: &NewFile,
        precondition: &Precondition,
        limit_bytes: u64,
    ) -> CatalogResult<Committed> {
        self.inner
            .overwrite_file(file, precondition, limit_bytes)
            .await
    }

    async fn get_file(&self, workspace_id: Uuid, id: Uuid) -> CatalogResult<Option<FileRecord>> {
        retry(|| self.inner.get_file(workspace_id, id)).await
    }

    async fn get_trashed(&self, workspace_id: Uuid, id: Uuid) -> CatalogResult<Option<FileRecord>> {
        retry(|| self.inner.get_trashed(workspace_id, id)).await
    }

    async fn set_metadata(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        metadata: &serde_json::Map<String, serde_json::Value>,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord> {
        retry(|| self.inner.set_metadata(workspace_id, id, metadata, now)).await
    }

    async fn get_file_by_storage_path(
        &self,
        workspace_id: Uuid,
        storage_path: &str,
    ) -> CatalogResult<Option<FileRecord>> {
        retry(|| {
            self.inner
                .get_file_by_storage_path(workspace_id, storage_path)
        })
        .await
    }

    async fn get_file_by_path(
        &self,
        workspace_id: Uuid,
        path: &VirtualPath,
    ) -> CatalogResult<Option<FileRecord>> {
        retry(|| self.inner.get_file_by_path(workspace_id, path)).await
    }

    async fn list_files(
        &self,
        workspace_id: Uuid,
        query: &ListQuery,
    ) -> CatalogResult<Vec<FileRecord>> {
        retry(|| self.inner.list_files(workspace_id, query)).await
    }

    async fn count_files(
        &self,
        workspace_id: Uuid,
        folder: &FolderPath,
        name_contains: Option<&str>,
    ) -> CatalogResult<u64> {
        retry(|| self.inner.count_files(workspace_id, folder, name_contains)).await
    }

    async fn soft_delete(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord> {
        self.inner.soft_delete(workspace_id, id, now).await
    }

    async fn soft_delete_folder(
        &self,
        workspace_id: Uuid,
        folder: &FolderPath,
        now: DateTime<Utc>,
    ) -> CatalogResult<u64> {
        self.inner
            .soft_delete_folder(workspace_id, folder, now)
            .await
    }

    async fn list_trash(
        &self,
        workspace_id: Uuid,
        query: &ListQuery,
    ) -> CatalogResult<Vec<FileRecord>> {
        retry(|| self.inner.list_trash(workspace_id, query)).await
    }

    async fn restore(
        &self,
        workspace_id: Uuid,
        id: Uuid,
        path: &VirtualPath,
        limit_bytes: u64,
        now: DateTime<Utc>,
    ) -> CatalogResult<FileRecord> {
        self.inner
            .restore(workspace_id, id, path, limit_bytes, now)
            .await
    }

    async fn expired_trash(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> CatalogResult<Vec<FileRecord>> {
        retry(|| self.inner.expired_trash(before, limit)).await
    }

    async fn set_storage_path(&self, id: Uuid, old: &str, new: &str) -> CatalogResult<bool> {
        // A compare-and-set that took effect before a dropped connection would report `false`
        // when repeated, so it is not retried here; the migration is resumable instead.
        self.inner.set_storage_path(id, old, new).await
    }

    async fn purge_deleted(&self, id: Uuid) -> CatalogResult<()> {
        retry(|| self.inner.purge_deleted(id)).await
    }

    async fn storage_path_referenced(&self, storage_path: &str) -> CatalogResult<bool> {
        retry(|| self.inner.storage_path_referenced(storage_path)).await
    }

    async fn all_records(&self, after: Option<Uuid>, limit: u32) -> CatalogResult<Vec<FileRecord>> {
        retry(|| self.inner.all_records(after, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn retries_unavailable_then_gives_up() {
        let calls = AtomicUsize::new(0);
        let r: CatalogResult<()> = retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CatalogError::Unavailable("down".into()))
        })
        .await;
        assert!(matches!(r, Err(CatalogError::Unavailable(_))));
        assert_eq!(calls.load(Ordering::SeqCst), 1 + BACKOFF.len());
    }

    #[tokio::test]
    async fn recovers_and_does_not_retry_other_errors() {
        let calls = AtomicUsize::new(0);
        let r = retry(|| async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 => Err(CatalogError::Unavailable("blip".into())),
                _ => Ok(7),
            }
        })
        .await;
        assert_eq!(r.unwrap(), 7);
        let calls = AtomicUsize::new(0);
        let r: CatalogResult<()> = retry(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(CatalogError::PathExists)
        })
        .await;
        assert!(matches!(r, Err(CatalogError::PathExists)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
