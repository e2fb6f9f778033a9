//! Google Cloud Storage and S3, one module on **Apache OpenDAL** (0.59): the same reads, ranged
//! reads, listing, idempotent deletes, retries, timeouts and presigning for both; only how an
//! upload is streamed differs. `gcs.rs` and `s3.rs` build the operators from the configuration.
//!
//! Why OpenDAL rather than `object_store`: on this machine `object_store`'s GCS uploads are
//! refused by every GCS emulator available offline, so its GCS write path could not be tested
//! end to end here; OpenDAL passes write, stat, read, range, list, delete and presign against
//! fake-gcs-server and everything, multipart included, against moto (`../shared/setup`).
//!
//! Keys: `workspaces/{workspace_id}/{file_id}/{name}` in the configured bucket; the storage path
//! is `{gcs|s3}://{bucket}/{key}`. Storage paths are parsed strictly ([`BlobKey`]): another
//! bucket, another prefix, a non-canonical id or a name with a separator is refused before any
//! request is made, so a forged storage path cannot reach anything else.
//!
//! Uploads stream with bounded memory and become visible at their key only in `finish`:
//! - **S3**: a multipart upload through OpenDAL's chunked writer, `part_size` (8 MiB) parts,
//!   `part_concurrency` (2) in flight, so at most ≈ (2 + 2) × 8 MiB per upload. A file smaller
//!   than one part is one `PutObject` at `finish`; a larger one is completed
//!   (`CompleteMultipartUpload`) at `finish`. The parts are invisible until then.
//! - **GCS**: a JSON-API *resumable* upload, fed directly while the pipeline hashes and scans:
//!   OpenDAL uses it for conditional writes, so writers are opened with `if_not_exists` (which
//!   on GCS is also a useful guard: a blob key is never overwritten). Memory is one 8 MiB
//!   chunk (+ one pipeline chunk); the object appears only when the last chunk is sent in
//!   `finish`. Not chosen: staging to local disk and uploading in `finish` (the obvious way
//!   round fake-gcs-server refusing chunked *XML multipart* writes). Uploading a staged file
//!   with bounded memory needs a chunked upload too, and the only chunked upload the emulator
//!   accepts is this resumable one, which can take the bytes directly: staging would add a
//!   full extra disk write and read, need local disk as large as the biggest upload, and make
//!   the client wait for the whole upload after the last byte instead of overlapping it with
//!   the stream and the scan. (fake-gcs-server spends time growing with the bytes already
//!   received on each resumable chunk, so large GCS uploads are slow against the emulator
//!   only: 1 GiB ≈ 160 s, and curl speaking the same protocol ≈ 130 s; benches/storage.rs.)
//!
//! Measured peak RSS growth for a 200 MiB streamed write (tests/storage_conformance.rs):
//! GCS ≈ 17 MiB, S3 ≈ 30 MiB, local ≈ 0.
//!
//! A writer dropped or failed before `finish` aborts its upload from its drop guard (S3:
//! `AbortMultipartUpload`; GCS: the resumable session is cancelled). After a crash there is
//! nothing at the key; S3 keeps the orphaned parts until an `AbortIncompleteMultipartUpload`
//! lifecycle rule removes them (set one on the bucket), GCS drops unfinished sessions after a
//! week. Neither is visible to `list`, so `sweep_staging` has nothing to remove here.
//!
//! Requests that fail in a way repeating can fix (5xx, throttling, resets, timeouts) are
//! retried with exponential backoff and jitter (`StoreTuning::max_retries`, default 3); every
//! request and body step has a timeout. What still fails is `StorageError::Unavailable`
//! (`storage_unavailable`, 503).

use super::{
    check_expiry, content_disposition, BlobEntry, BlobKey, BlobStore, BlobStream, BlobWriter,
    ByteRange, InFlight, InFlightCounter, StorageError, StorageResult, StoreTuning,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::Operator;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// Every blob key starts with this; nothing else in the bucket is ours.
pub(crate) const KEY_PREFIX: &str = "workspaces/";

/// How uploads are streamed (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upload {
    /// GCS JSON-API resumable upload.
    Resumable,
    /// S3 multipart upload.
    Multipart {
        part_size: usize,
        concurrency: usize,
    },
}

/// A GCS or S3 bucket as a [`BlobStore`].
pub struct ObjectStore {
    backend: &'static str,
    bucket: String,
    /// Reads, writes, lists and deletes: with retry and timeout layers.
    io: Operator,
    /// Presigning only (a local computation): for GCS it holds nothing but the service
    /// account's key, so it cannot make a network call even by mistake.
    signer: Operator,
    upload: Upload,
    /// OpenDAL 0.59's GCS presigner puts the key into the URL without percent-encoding it (a
    /// non-ASCII or space character then fails to build), so it gets the key pre-encoded; the
    /// signer decodes each segment before canonicalising, so the signature stays right.
    presign_encoded_key: bool,
    in_flight: InFlightCounter,
}

/// RFC 3986 unreserved characters and `/` stay, everything else is %XX.
const KEY_ENCODE_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// OpenDAL's errors: only a missing object is not "storage unavailable".
pub(crate) fn map_err(e: opendal::Error) -> StorageError {
    match e.kind() {
        opendal::ErrorKind::NotFound => StorageError::NotFound,
        _ => StorageError::Unavailable(e.to_string()),
    }
}

impl ObjectStore {
    pub(crate) fn new(
        backend: &'static str,
        bucket: &str,
        io: Operator,
        signer: Operator,
        upload: Upload,
        tuning: &StoreTuning,
    ) -> Self {
        // Retry outside the timeout, so a timed-out attempt is retried like any transient error.
        let io = io
            .layer(
                TimeoutLayer::new()
                    .with_timeout(tuning.request_timeout)
                    .with_io_timeout(tuning.io_timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(tuning.max_retries)
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter(),
            );
        ObjectStore {
            backend,
            bucket: bucket.to_owned(),
            io,
            signer,
            upload,
            presign_encoded_key: backend == "gcs",
            in_flight: InFlightCounter::default(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The object key of a storage path this store issued; anything else is refused.
    fn key(&self, storage_path: &str) -> StorageResult<String> {
        let bad = || StorageError::InvalidPath(storage_path.to_owned());
        let (backend, bucket, key) = BlobKey::from_storage_path(storage_path).ok_or_else(bad)?;
        if backend != self.backend || bucket != Some(self.bucket.as_str()) {
            return Err(bad());
        }
        Ok(format!("{KEY_PREFIX}{}", key.tail()))
    }

    /// One list request under the key prefix: the bucket exists and the credentials may list.
    pub(crate) async fn probe(&self) -> StorageResult<()> {
        let mut lister = self
            .io
            .lister_with(KEY_PREFIX)
            .limit(1)
            .await
            .map_err(map_err)?;
        lister.try_next().await.map_err(map_err)?;
        Ok(())
    }

    /// Signs a throw-away read locally: proves at start-up that the key can sign.
    pub(crate) async fn probe_signing(&self) -> StorageResult<()> {
        self.signer
            .presign_read(&format!("{KEY_PREFIX}probe"), Duration::from_secs(60))
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[async_trait]
impl BlobStore for ObjectStore {
    fn backend(&self) -> &'static str {
        self.backend
    }

    fn storage_path(&self, workspace_id: Uuid, file_id: Uuid, storage_name: &str) -> String {
        format!(
            "{}://{}/{KEY_PREFIX}{workspace_id}/{file_id}/{storage_name}",
            self.backend, self.bucket
        )
    }

    async fn create(&self, storage_path: &str) -> StorageResult<Box<dyn BlobWriter>> {
        let key = self.key(storage_path)?;
        let writer = match self.upload {
            Upload::Resumable => self.io.writer_with(&key).if_not_exists(true).await,
            Upload::Multipart {
                part_size,
                concurrency,
            } => {
                self.io
                    .writer_with(&key)
                    .chunk(part_size)
                    .concurrent(concurrency)
                    .await
            }
        }
        .map_err(map_err)?;
        Ok(Box::new(ObjectWriter {
            inner: Some(writer),
            storage_path: storage_path.to_owned(),
            _in_flight: self.in_flight.enter(),
        }))
    }

    async fn open(
        &self,
        storage_path: &str,
        range: Option<ByteRange>,
    ) -> StorageResult<BlobStream> {
        let key = self.key(storage_path)?;
        let reader = self.io.reader(&key).await.map_err(map_err)?;
        let range: opendal::BytesRange = match range {
            None => (..).into(),
            Some(r) => (r.start..r.end + 1).into(),
        };
        let mut stream = reader.into_bytes_stream(range).await.map_err(map_err)?;
        // The request is made lazily; take the first chunk now so a missing blob or an
        // unreachable service is an error of `open`, not of the response body.
        match stream.next().await {
            None => Ok(Box::pin(futures::stream::empty())),
            Some(Err(e)) => Err(e.into()),
            Some(Ok(first)) => Ok(Box::pin(
                futures::stream::once(async move { Ok(first) }).chain(stream),
            )),
        }
    }

    async fn size(&self, storage_path: &str) -> StorageResult<Option<u64>> {
        let key = self.key(storage_path)?;
        match self.io.stat(&key).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn delete(&self, storage_path: &str) -> StorageResult<()> {
        let key = self.key(storage_path)?;
        // OpenDAL's delete treats a missing object as deleted.
        match self.io.delete(&key).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn list(&self) -> StorageResult<Vec<BlobEntry>> {
        let mut lister = self
            .io
            .lister_with(KEY_PREFIX)
            .recursive(true)
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        while let Some(entry) = lister.try_next().await.map_err(map_err)? {
            let meta = entry.metadata();
            if !meta.is_file() {
                continue;
            }
            let key = entry.path();
            let Some(tail) = key.strip_prefix(KEY_PREFIX) else {
                continue;
            };
            // Only what this store could have written: gc must never delete a foreign object.
            if BlobKey::parse_tail(tail).is_none() {
                tracing::debug!(%key, "ignoring an object that is not a blob");
                continue;
            }
            let modified = match meta.last_modified() {
                Some(t) => SystemTime::from(t),
                None => match self.io.stat(key).await {
                    Ok(m) => m
                        .last_modified()
                        .map_or_else(SystemTime::now, SystemTime::from),
                    Err(e) if e.kind() == opendal::ErrorKind::NotFound => continue,
                    Err(e) => return Err(map_err(e)),
                },
            };
            out.push(BlobEntry {
                storage_path: format!("{}://{}/{key}", self.backend, self.bucket),
                size: meta.content_length(),
                modified,
            });
        }
        Ok(out)
    }

    async fn sweep_staging(
        &self,
        _older_than: SystemTime,
        _dry_run: bool,
    ) -> StorageResult<Vec<String>> {
        // Nothing is staged where a listing can see it (module comment).
        Ok(Vec::new())
    }

    async fn ping(&self) -> StorageResult<()> {
        self.probe().await
    }

    async fn presign_read(
        &self,
        storage_path: &str,
        expires_in: Duration,
        filename: &str,
        content_type: &str,
    ) -> StorageResult<Option<String>> {
        check_expiry(expires_in)?;
        let mut key = self.key(storage_path)?;
        if self.presign_encoded_key {
            key = percent_encoding::utf8_percent_encode(&key, KEY_ENCODE_SET).to_string();
        }
        let signed = self
            .signer
            .presign_read_options(
                &key,
                expires_in,
                opendal::options::ReadOptions {
                    override_content_disposition: Some(content_disposition(filename)),
                    override_content_type: Some(content_type.to_owned()),
                    ..Default::default()
                },
            )
            .await
            .map_err(map_err)?;
        Ok(Some(signed.uri().to_string()))
    }

    fn uploads_in_flight(&self) -> usize {
        self.in_flight.get()
    }
}

/// An upload in progress. The drop guard: unless `finish` succeeded, dropping it aborts the
/// upload (in a task, since `Drop` cannot await), so nothing is left at the key.
struct ObjectWriter {
    inner: Option<opendal::Writer>,
    storage_path: String,
    _in_flight: InFlight,
}

#[async_trait]
impl BlobWriter for ObjectWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        let writer = self
            .inner
            .as_mut()
            .ok_or_else(|| StorageError::Unavailable("write after finish".into()))?;
        writer.write(chunk).await.map_err(map_err)
    }

    async fn finish(mut self: Box<Self>) -> StorageResult<()> {
        let writer = self
            .inner
            .as_mut()
            .ok_or_else(|| StorageError::Unavailable("finished twice".into()))?;
        // On error (or if this future is dropped) the guard below aborts the upload.
        writer.close().await.map_err(map_err)?;
        self.inner = None;
        Ok(())
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        let Some(mut writer) = self.inner.take() else {
            return;
        };
        let path = std::mem::take(&mut self.storage_path);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(e) = writer.abort().await {
                        tracing::warn!(storage_path = %path, error = %e,
                            "could not abort an unfinished upload; the bucket's lifecycle rules expire it");
                    }
                });
            }
            Err(_) => tracing::warn!(storage_path = %path,
                "unfinished upload left to the bucket's lifecycle rules"),
        }
    }
}
