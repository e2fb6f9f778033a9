//! The one streaming write pipeline: size cap → SHA-256 → scanner → staged blob, in one pass.
//!
//! Each chunk read from the source is counted against the cap, hashed, and then handed to the
//! scanner and the blob writer concurrently (`Bytes` clones share one buffer), so memory per
//! write is one chunk, whatever the file size. The verdict arrives when the stream ends. Every
//! early return drops the writer (its staged file goes with it) or deletes the finished blob.

use crate::error::{Error, ErrorCode, Result};
use crate::scanner::{Scanner, Verdict};
use crate::storage::BlobStore;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// What to check while the bytes stream through.
#[derive(Debug, Clone, Default)]
pub struct IngestRules {
    /// The byte cap; the stream is cut off as soon as it is passed.
    pub max_bytes: u64,
    /// A client-supplied SHA-256 (lowercase hex) the content must match.
    pub expected_sha256: Option<String>,
}

/// A blob that is completely stored and scanned clean, but not yet referenced by any record.
/// Dropping it without [`StoredBlob::keep`] deletes the blob, so a failed or cancelled commit
/// leaves nothing behind.
pub struct StoredBlob {
    store: Arc<dyn BlobStore>,
    storage_path: Option<String>,
    pub size: u64,
    pub checksum: String,
}

impl StoredBlob {
    pub fn storage_path(&self) -> &str {
        self.storage_path.as_deref().unwrap_or_default()
    }

    /// The record now references the blob: keep it.
    pub fn keep(mut self) {
        self.storage_path = None;
    }

    /// Deletes the blob now (the error path when the caller can await).
    pub async fn discard(mut self) {
        if let Some(path) = self.storage_path.take() {
            if let Err(e) = self.store.delete(&path).await {
                tracing::warn!(storage_path = %path, error = %e, "could not remove discarded blob; gc will");
            }
        }
    }
}

impl Drop for StoredBlob {
    fn drop(&mut self) {
        let Some(path) = self.storage_path.take() else {
            return;
        };
        let store = self.store.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = store.delete(&path).await {
                        tracing::warn!(storage_path = %path, error = %e, "could not remove abandoned blob; gc will");
                    }
                });
            }
            Err(_) => tracing::warn!(storage_path = %path, "abandoned blob left for gc"),
        }
    }
}

/// Streams `source` into a new blob at `storage_path`, hashing and scanning it on the way.
pub async fn ingest<S>(
    source: S,
    store: &Arc<dyn BlobStore>,
    scanner: &dyn Scanner,
    storage_path: &str,
    rules: &IngestRules,
) -> Result<StoredBlob>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send,
{
    let mut source = std::pin::pin!(source);
    let mut writer = store.create(storage_path).await?;
    let mut scan = scanner.begin().await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    while let Some(chunk) = source.next().await {
        let chunk = chunk.map_err(|e| {
            Error::new(
                ErrorCode::InvalidInput,
                format!("reading the content failed: {e}"),
            )
        })?;
        if chunk.is_empty() {
            continue;
        }
        size += chunk.len() as u64;
        if size > rules.max_bytes {
            return Err(Error::too_large(rules.max_bytes));
        }
        hasher.update(&chunk);
        let (scanned, written) = tokio::join!(scan.feed(chunk.clone()), writer.write(chunk));
        scanned?;
        written?;
    }
    let (verdict, finished) = tokio::join!(scan.finish(), writer.finish());
    finished?;
    let blob = StoredBlob {
        store: store.clone(),
        storage_path: Some(storage_path.to_owned()),
        size,
        checksum: hex::encode(hasher.finalize()),
    };
    let rejection = match verdict {
        Ok(Verdict::Clean) => match &rules.expected_sha256 {
            Some(expected) if *expected != blob.checksum => Some(Error::new(
                ErrorCode::ChecksumMismatch,
                format!(
                    "content SHA-256 is {}, the client said {expected}",
                    blob.checksum
                ),
            )),
            _ => None,
        },
        Ok(Verdict::Infected(threat)) => Some(Error::virus(threat)),
        Err(e) => Some(e.into()),
    };
    match rejection {
        None => Ok(blob),
        Some(err) => {
            blob.discard().await;
            Err(err)
        }
    }
}
