//! Blob storage. The catalog records where each blob is (`storage_path`); a [`BlobStore`]
//! turns that into bytes. Writes are staged and become visible at their key only when
//! `finish` returns, after the data is durable; a writer dropped before that leaves nothing.
//!
//! Backends (SPEC §4): the local disk ([`LocalStore`]), and Google Cloud Storage and S3
//! ([`ObjectStore`], one module on Apache OpenDAL for both: see `object.rs` for why OpenDAL and
//! how uploads are streamed). Every backend passes the same conformance suite
//! (`tests/storage_conformance.rs`).

mod gcs;
mod local;
pub mod migrate;
mod object;
mod s3;

pub use local::LocalStore;
pub use migrate::{migrate_storage, migrate_storage_with, MigrationReport, StoragePathRewrite};
pub use object::ObjectStore;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
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
    /// An argument out of its range (e.g. a signed URL's lifetime).
    #[error("invalid input: {0}")]
    InvalidInput(String),
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
            StorageError::InvalidInput(m) => crate::Error::invalid_input(m),
        }
    }
}

pub type StorageResult<T> = Result<T, StorageError>;

/// How a cloud store talks to its service. The defaults are what `open_from_config` uses;
/// tests and benchmarks tighten them.
#[derive(Debug, Clone)]
pub struct StoreTuning {
    /// Retries (with exponential backoff and jitter) of a request that failed in a way that
    /// repeating can fix: 5xx, throttling, connection reset, timeout. 0 = no retries.
    pub max_retries: usize,
    /// Bound on one control request (stat, delete, a list page, the start-up check).
    pub request_timeout: Duration,
    /// Bound on one step of a read or write (a body chunk, a part upload, the final commit).
    pub io_timeout: Duration,
    /// S3 multipart part size (≥ 5 MiB): the unit of memory per upload.
    pub part_size: usize,
    /// S3 parts in flight at once per upload (memory ≈ (2 + this) × `part_size`).
    pub part_concurrency: usize,
    /// Check at open that the bucket exists and the credentials work (one list request).
    pub verify_bucket: bool,
}

impl Default for StoreTuning {
    fn default() -> Self {
        StoreTuning {
            max_retries: 3,
            request_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(60),
            part_size: 8 * 1024 * 1024,
            part_concurrency: 2,
            verify_bucket: true,
        }
    }
}

/// Opens the backend the configuration names: GCS if `media_gcs_bucket_name` is set, S3 if
/// `media_s3_bucket_name` is, else the local disk under `workspace_storage_dir`.
/// Misconfiguration fails here, at start-up, with a message naming the key.
pub async fn open_from_config(config: &crate::Config) -> crate::Result<Arc<dyn BlobStore>> {
    open_with(config, &StoreTuning::default()).await
}

/// [`open_from_config`] with explicit retry, timeout and upload settings.
pub async fn open_with(
    config: &crate::Config,
    tuning: &StoreTuning,
) -> crate::Result<Arc<dyn BlobStore>> {
    use crate::{Error, ErrorCode};
    if config.media_gcs_bucket_name.is_some() {
        return Ok(Arc::new(gcs::open(config, tuning).await?));
    }
    if config.media_s3_bucket_name.is_some() {
        return Ok(Arc::new(s3::open(config, tuning).await?));
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
    Ok(Arc::new(store))
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

/// The longest lifetime of a signed URL: GCS V4 and S3 SigV4 both stop at seven days.
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

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

    /// A URL that downloads the blob without further credentials for `expires_in`
    /// (1 s ..= [`MAX_PRESIGN_EXPIRY`]), answering with `Content-Disposition: attachment`
    /// naming `filename` and with `content_type`. Signed locally, without a network call.
    /// `Ok(None)`: this backend has no native signed URLs; use the service's own HMAC links.
    async fn presign_read(
        &self,
        storage_path: &str,
        expires_in: Duration,
        filename: &str,
        content_type: &str,
    ) -> StorageResult<Option<String>> {
        let _ = (storage_path, expires_in, filename, content_type);
        Ok(None)
    }

    /// Writers this store has handed out that are neither finished nor dropped: uploads in
    /// progress in this process (for metrics, graceful shutdown and tests).
    fn uploads_in_flight(&self) -> usize {
        0
    }
}

/// A blob being written. Dropping it before `finish` discards everything written.
#[async_trait]
pub trait BlobWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()>;

    /// Makes the blob durable and visible at its storage path.
    async fn finish(self: Box<Self>) -> StorageResult<()>;
}

/// The backend-independent identity of a blob: `{workspace_id}/{file_id}/{name}`, the tail of
/// every storage path. Parsed strictly: canonical lower-case UUIDs and a name that is one
/// plain path segment, so a key can never address anything but one blob of one workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobKey {
    pub workspace_id: Uuid,
    pub file_id: Uuid,
    pub name: String,
}

impl BlobKey {
    /// Parses `{workspace_id}/{file_id}/{name}`.
    pub fn parse_tail(tail: &str) -> Option<BlobKey> {
        let mut parts = tail.split('/');
        let (Some(ws), Some(file), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if !is_safe_name(name) {
            return None;
        }
        Some(BlobKey {
            workspace_id: canonical_uuid(ws)?,
            file_id: canonical_uuid(file)?,
            name: name.to_owned(),
        })
    }

    /// The key of any backend's storage path (`local://…`, `gcs://bucket/workspaces/…`,
    /// `s3://bucket/workspaces/…`), with the backend name and, for buckets, the bucket.
    pub fn from_storage_path(storage_path: &str) -> Option<(&'static str, Option<&str>, BlobKey)> {
        if let Some(tail) = storage_path.strip_prefix("local://") {
            return Some(("local", None, BlobKey::parse_tail(tail)?));
        }
        for backend in ["gcs", "s3"] {
            let Some(rest) = storage_path
                .strip_prefix(backend)
                .and_then(|r| r.strip_prefix("://"))
            else {
                continue;
            };
            let (bucket, key) = rest.split_once('/')?;
            let tail = key.strip_prefix(object::KEY_PREFIX)?;
            if bucket.is_empty() {
                return None;
            }
            return Some((backend, Some(bucket), BlobKey::parse_tail(tail)?));
        }
        None
    }

    /// `{workspace_id}/{file_id}/{name}`.
    pub fn tail(&self) -> String {
        format!("{}/{}/{}", self.workspace_id, self.file_id, self.name)
    }
}

fn canonical_uuid(raw: &str) -> Option<Uuid> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| u.hyphenated().to_string() == raw)
}

/// One plain path segment: not empty, not `.`/`..`, no separator, NUL or control character,
/// at most 255 bytes (a file name on every filesystem we write to).
pub(crate) fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// `Content-Disposition: attachment` with an ASCII fallback and the exact UTF-8 name
/// (RFC 6266 with RFC 5987 `filename*`), as signed URLs ask the object store to answer.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 5987 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Checks a signed URL's lifetime against SPEC §4 (1 s ..= 7 days).
pub(crate) fn check_expiry(expires_in: Duration) -> StorageResult<()> {
    if expires_in < Duration::from_secs(1) || expires_in > MAX_PRESIGN_EXPIRY {
        return Err(StorageError::InvalidInput(format!(
            "expires_in must be between 1 second and 7 days, got {} s",
            expires_in.as_secs()
        )));
    }
    Ok(())
}

/// Counts a store's open writers: one [`InFlight`] per writer, released when it is dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct InFlightCounter(Arc<AtomicUsize>);

impl InFlightCounter {
    pub(crate) fn enter(&self) -> InFlight {
        self.0.fetch_add(1, Ordering::Relaxed);
        InFlight(self.0.clone())
    }
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_backend_parse_strictly() {
        let ws = Uuid::new_v4();
        let f = Uuid::new_v4();
        let gcs = format!("gcs://b/workspaces/{ws}/{f}/a.txt");
        let (backend, bucket, key) = BlobKey::from_storage_path(&gcs).unwrap();
        assert_eq!((backend, bucket), ("gcs", Some("b")));
        assert_eq!(key.tail(), format!("{ws}/{f}/a.txt"));
        let s3 = format!("s3://b/workspaces/{ws}/{f}/a.txt");
        let (backend, bucket, _) = BlobKey::from_storage_path(&s3).unwrap();
        assert_eq!((backend, bucket), ("s3", Some("b")));
        let local = format!("local://{ws}/{f}/a.txt");
        let (backend, bucket, _) = BlobKey::from_storage_path(&local).unwrap();
        assert_eq!((backend, bucket), ("local", None));
        let upper = ws.to_string().to_uppercase();
        let simple = ws.simple().to_string();
        for bad in [
            format!("gcs://b/{ws}/{f}/a"),
            format!("gcs:///workspaces/{ws}/{f}/a"),
            format!("gcs://b/workspaces/{ws}/{f}/.."),
            format!("gcs://b/workspaces/{ws}/{f}/a/b"),
            format!("gcs://b/workspaces/../{f}/a"),
            format!("gcs://b/workspaces/{upper}/{f}/a"),
            format!("gcs://b/workspaces/{simple}/{f}/a"),
            format!("s3://b/workspaces/{ws}/{f}/a\u{7}"),
            format!("s3://b/workspaces/{ws}/{f}/"),
            format!("gs://b/workspaces/{ws}/{f}/a"),
            format!("ftp://b/workspaces/{ws}/{f}/a"),
        ] {
            assert!(BlobKey::from_storage_path(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn disposition_names_the_file_exactly() {
        assert_eq!(
            content_disposition("r\u{e9}sum\u{e9} 1.pdf"),
            "attachment; filename=\"r_sum_ 1.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%201.pdf"
        );
        assert_eq!(
            content_disposition("a\"b.txt"),
            "attachment; filename=\"a_b.txt\"; filename*=UTF-8''a%22b.txt"
        );
    }

    #[test]
    fn expiry_bounds() {
        assert!(check_expiry(Duration::from_secs(1)).is_ok());
        assert!(check_expiry(MAX_PRESIGN_EXPIRY).is_ok());
        assert!(check_expiry(Duration::from_millis(999)).is_err());
        assert!(check_expiry(MAX_PRESIGN_EXPIRY + Duration::from_secs(1)).is_err());
    }
}
