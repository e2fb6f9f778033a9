//! The one streaming write pipeline: size cap → SHA-256 → scanner → staged blob, in one pass.
//!
//! Each chunk read from the source is counted against the cap, hashed, and then handed to the
//! scanner and the blob writer concurrently (`Bytes` clones share one buffer), so memory per
//! write is one chunk, whatever the file size. The verdict arrives when the stream ends. Every
//! early return drops the writer (its staged file goes with it) or deletes the finished blob.

use crate::error::{Error, ErrorCode, Result};
use crate::scanner::{ScanSession, Scanner, Verdict};
use crate::storage::{BlobStore, BlobWriter};
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

/// Chunks smaller than this are coalesced before they go to the scanner and the disk (an HTTP
/// body arrives in frames of a few KiB; a syscall per frame would dominate).
const MIN_CHUNK: usize = 64 * 1024;
/// Chunks queued per consumer: bounds memory at `QUEUE × chunk size` per write.
const QUEUE: usize = 4;

/// Streams `source` into a new blob at `storage_path`, hashing and scanning it on the way.
/// The blob is finished (made durable) while clamd gives its verdict; on any rejection it is
/// deleted again before this returns.
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
    let mut writer = store.create(storage_path).await?;
    let mut scan = scanner.begin().await?;
    let (size, checksum) =
        stream_through(source, writer.as_mut(), scan.as_mut(), rules.max_bytes).await?;

    let (verdict, finished) = tokio::join!(scan.finish(), writer.finish());
    finished?;
    let blob = StoredBlob {
        store: store.clone(),
        storage_path: Some(storage_path.to_owned()),
        size,
        checksum,
    };
    match judge(verdict, &blob.checksum, rules.expected_sha256.as_deref()) {
        None => Ok(blob),
        Some(err) => {
            blob.discard().await;
            Err(err)
        }
    }
}

/// The pipeline itself: reads `source` once, enforcing `max_bytes`, hashing, and feeding the
/// same chunks to `scan` and `writer`. Returns the size and SHA-256 (lowercase hex). Neither the
/// writer nor the scan is finished: the caller decides the order (see [`ingest`]).
///
/// Three cooperating futures in one task: the producer reads, caps and hashes; the scan feeder
/// and the disk writer each drain a small bounded queue, so a slow disk and a slow clamd overlap
/// instead of adding up. They are joined with `try_join!`, so the first failure drops the
/// others; dropping the whole future (cancellation) drops everything.
pub async fn stream_through<S>(
    source: S,
    writer: &mut dyn BlobWriter,
    scan: &mut dyn ScanSession,
    max_bytes: u64,
) -> Result<(u64, String)>
where
    S: Stream<Item = std::io::Result<Bytes>> + Send,
{
    let (scan_tx, mut scan_rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let (disk_tx, mut disk_rx) = tokio::sync::mpsc::channel::<Bytes>(QUEUE);
    let produce = async move {
        let mut source = std::pin::pin!(source);
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut pending = bytes::BytesMut::new();
        loop {
            let next = source.next().await.transpose().map_err(|e| {
                Error::new(
                    ErrorCode::InvalidInput,
                    format!("reading the content failed: {e}"),
                )
            })?;
            let chunk = match next {
                Some(c) if c.is_empty() => continue,
                Some(c) => {
                    size += c.len() as u64;
                    if size > max_bytes {
                        return Err(Error::too_large(max_bytes));
                    }
                    hasher.update(&c);
                    if pending.is_empty() && c.len() >= MIN_CHUNK {
                        c
                    } else {
                        pending.extend_from_slice(&c);
                        if pending.len() < MIN_CHUNK {
                            continue;
                        }
                        pending.split().freeze()
                    }
                }
                None if pending.is_empty() => break,
                None => pending.split().freeze(),
            };
            // A closed queue means its consumer failed; its error is the one reported.
            if scan_tx.send(chunk.clone()).await.is_err() || disk_tx.send(chunk).await.is_err() {
                return Ok(None);
            }
        }
        Ok(Some((size, hex::encode(hasher.finalize()))))
    };
    let feed_scanner = async {
        while let Some(chunk) = scan_rx.recv().await {
            scan.feed(chunk).await?;
        }
        Ok::<_, Error>(())
    };
    let write_disk = async {
        while let Some(chunk) = disk_rx.recv().await {
            writer.write(chunk).await?;
        }
        Ok::<_, Error>(())
    };
    let (produced, (), ()) = tokio::try_join!(produce, feed_scanner, write_disk)?;
    produced.ok_or_else(|| Error::internal("a pipeline stage stopped without an error"))
}

/// Why content must not be kept, if it must not: infected, unscanned, or not what the client said.
pub fn judge(
    verdict: std::result::Result<Verdict, crate::scanner::ScanError>,
    checksum: &str,
    expected_sha256: Option<&str>,
) -> Option<Error> {
    match verdict {
        Ok(Verdict::Clean) => match expected_sha256 {
            Some(expected) if expected != checksum => Some(Error::new(
                ErrorCode::ChecksumMismatch,
                format!("content SHA-256 is {checksum}, the client said {expected}"),
            )),
            _ => None,
        },
        Ok(Verdict::Infected(threat)) => Some(Error::virus(threat)),
        Err(e) => Some(e.into()),
    }
}
