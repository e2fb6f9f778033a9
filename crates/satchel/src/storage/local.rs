//! The local-disk backend: `local://{workspace_id}/{file_id}/{name}` under
//! `workspace_storage_dir`. Writes go to `.staging/` on the same filesystem, are fsynced, then
//! renamed into place (and the directory fsynced), so a crash leaves either nothing at the key
//! or the complete blob. Storage paths are parsed strictly and every directory on the way is
//! checked not to be a symlink, so no name, id or planted link can reach outside the root.

use super::{
    BlobEntry, BlobKey, BlobStore, BlobStream, BlobWriter, ByteRange, InFlight, InFlightCounter,
    StorageError, StorageResult,
};
use async_trait::async_trait;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use uuid::Uuid;

const SCHEME: &str = "local://";
const STAGING_DIR: &str = ".staging";
/// Read chunk size for downloads.
const READ_CHUNK: usize = 256 * 1024;
/// Written bytes between two `fdatasync`s of a staged file: the final fsync then has at most
/// this much left to flush, instead of the whole file, after the last byte arrives.
const SYNC_EVERY: u64 = 8 * 1024 * 1024;

pub struct LocalStore {
    root: PathBuf,
    in_flight: InFlightCounter,
}

fn parse_key(storage_path: &str) -> StorageResult<BlobKey> {
    storage_path
        .strip_prefix(SCHEME)
        .and_then(BlobKey::parse_tail)
        .ok_or_else(|| StorageError::InvalidPath(storage_path.to_owned()))
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub async fn open(root: &Path) -> StorageResult<Self> {
        tokio::fs::create_dir_all(root.join(STAGING_DIR)).await?;
        let root = tokio::fs::canonicalize(root).await?;
        Ok(LocalStore {
            root,
            in_flight: InFlightCounter::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self, key: &BlobKey) -> PathBuf {
        self.root
            .join(key.workspace_id.to_string())
            .join(key.file_id.to_string())
    }

    /// Fails unless every directory between the root and `dir` that exists is a real directory
    /// (not a symlink), so nothing can redirect a read, write or delete outside the root.
    async fn check_no_links(&self, dir: &Path) -> StorageResult<()> {
        let rel = dir
            .strip_prefix(&self.root)
            .map_err(|_| StorageError::InvalidPath(dir.display().to_string()))?;
        let mut current = self.root.clone();
        for part in rel.components() {
            current.push(part);
            match tokio::fs::symlink_metadata(&current).await {
                Ok(meta) if meta.file_type().is_symlink() || !meta.is_dir() => {
                    return Err(StorageError::InvalidPath(format!(
                        "{} is not a plain directory",
                        current.display()
                    )))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The on-disk path of an existing blob: a regular file, not a link.
    async fn existing_blob(&self, storage_path: &str) -> StorageResult<PathBuf> {
        let key = parse_key(storage_path)?;
        let dir = self.blob_dir(&key);
        self.check_no_links(&dir).await?;
        let path = dir.join(&key.name);
        let meta = tokio::fs::symlink_metadata(&path).await?;
        if !meta.is_file() {
            return Err(StorageError::InvalidPath(format!(
                "{storage_path} is not a regular file"
            )));
        }
        Ok(path)
    }
}

#[async_trait]
impl BlobStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn storage_path(&self, workspace_id: Uuid, file_id: Uuid, storage_name: &str) -> String {
        format!("{SCHEME}{workspace_id}/{file_id}/{storage_name}")
    }

    async fn create(&self, storage_path: &str) -> StorageResult<Box<dyn BlobWriter>> {
        let key = parse_key(storage_path)?;
        let target_dir = self.blob_dir(&key);
        let target = target_dir.join(&key.name);
        let staged = self
            .root
            .join(STAGING_DIR)
            .join(format!("{}.part", Uuid::new_v4()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
            .await?;
        Ok(Box::new(LocalWriter {
            _in_flight: self.in_flight.enter(),
            file: Some(file),
            unsynced: 0,
            guard: StagedFile(Some(staged)),
            target_dir,
            target,
            root: self.root.clone(),
        }))
    }

    async fn open(
        &self,
        storage_path: &str,
        range: Option<ByteRange>,
    ) -> StorageResult<BlobStream> {
        let path = self.existing_blob(storage_path).await?;
        let mut file = tokio::fs::File::open(&path).await?;
        let stream: BlobStream = match range {
            None => Box::pin(ReaderStream::with_capacity(file, READ_CHUNK)),
            Some(r) => {
                file.seek(std::io::SeekFrom::Start(r.start)).await?;
                Box::pin(ReaderStream::with_capacity(file.take(r.len()), READ_CHUNK))
            }
        };
        Ok(stream)
    }

    async fn size(&self, storage_path: &str) -> StorageResult<Option<u64>> {
        match self.existing_blob(storage_path).await {
            Ok(path) => Ok(Some(tokio::fs::metadata(path).await?.len())),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, storage_path: &str) -> StorageResult<()> {
        let key = parse_key(storage_path)?;
        let dir = self.blob_dir(&key);
        self.check_no_links(&dir).await?;
        match tokio::fs::remove_file(dir.join(&key.name)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        // Each blob has its own {file_id} directory; drop it (and an empty workspace dir).
        let _ = tokio::fs::remove_dir(&dir).await;
        if let Some(ws_dir) = dir.parent() {
            let _ = tokio::fs::remove_dir(ws_dir).await;
        }
        Ok(())
    }

    async fn list(&self) -> StorageResult<Vec<BlobEntry>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || list_blobs(&root))
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))?
    }

    async fn sweep_staging(
        &self,
        older_than: SystemTime,
        dry_run: bool,
    ) -> StorageResult<Vec<String>> {
        let mut removed = Vec::new();
        let mut entries = tokio::fs::read_dir(self.root.join(STAGING_DIR)).await?;
        while let Some(entry) = entries.next_entry().await? {
            let meta = entry.metadata().await?;
            if meta.is_file() && meta.modified()? < older_than {
                if !dry_run {
                    match tokio::fs::remove_file(entry.path()).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                removed.push(entry.path().display().to_string());
            }
        }
        Ok(removed)
    }

    fn uploads_in_flight(&self) -> usize {
        self.in_flight.get()
    }

    async fn ping(&self) -> StorageResult<()> {
        let probe = self
            .root
            .join(STAGING_DIR)
            .join(format!(".ping-{}", Uuid::new_v4()));
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await?;
        Ok(())
    }
}

fn list_blobs(root: &Path) -> StorageResult<Vec<BlobEntry>> {
    let mut out = Vec::new();
    for ws in std::fs::read_dir(root)? {
        let ws = ws?;
        let ws_name = ws.file_name().to_string_lossy().into_owned();
        if ws_name == STAGING_DIR || !ws.file_type()?.is_dir() {
            continue;
        }
        for file_dir in std::fs::read_dir(ws.path())? {
            let file_dir = file_dir?;
            if !file_dir.file_type()?.is_dir() {
                continue;
            }
            let file_id = file_dir.file_name().to_string_lossy().into_owned();
            for blob in std::fs::read_dir(file_dir.path())? {
                let blob = blob?;
                let meta = blob.metadata()?;
                if !meta.is_file() {
                    continue;
                }
                let storage_path = format!(
                    "{SCHEME}{ws_name}/{file_id}/{}",
                    blob.file_name().to_string_lossy()
                );
                // Only what this store could have written: gc must never be handed a path
                // it cannot address (or something placed here by hand).
                if parse_key(&storage_path).is_err() {
                    tracing::debug!(%storage_path, "ignoring a file that is not a blob");
                    continue;
                }
                out.push(BlobEntry {
                    storage_path,
                    size: meta.len(),
                    modified: meta.modified()?,
                });
            }
        }
    }
    Ok(out)
}

/// Removes the staged file unless disarmed: the drop guard that makes a cancelled or failed
/// write leave nothing behind.
struct StagedFile(Option<PathBuf>);

impl Drop for StagedFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Synchronous on purpose: Drop cannot await, and unlinking one file is cheap.
            let _ = std::fs::remove_file(path);
        }
    }
}

struct LocalWriter {
    _in_flight: InFlight,
    file: Option<tokio::fs::File>,
    unsynced: u64,
    guard: StagedFile,
    target_dir: PathBuf,
    target: PathBuf,
    root: PathBuf,
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| StorageError::Unavailable("write after finish".into()))?;
        file.write_all(&chunk).await?;
        self.unsynced += chunk.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            file.sync_data().await?;
            self.unsynced = 0;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> StorageResult<()> {
        let mut file = self
            .file
            .take()
            .ok_or_else(|| StorageError::Unavailable("finished twice".into()))?;
        file.flush().await?;
        file.sync_all().await?;
        drop(file);
        tokio::fs::create_dir_all(&self.target_dir).await?;
        let store = LocalStore {
            root: self.root.clone(),
            in_flight: InFlightCounter::default(),
        };
        store.check_no_links(&self.target_dir).await?;
        let staged = self
            .guard
            .0
            .clone()
            .ok_or_else(|| StorageError::Unavailable("staged file missing".into()))?;
        tokio::fs::rename(&staged, &self.target).await?;
        self.guard.0 = None;
        let dir = self.target_dir.clone();
        // The rename is durable only once the directory entry is on disk.
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(|e| StorageError::Unavailable(e.to_string()))??;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_paths_are_parsed_strictly() {
        let ws = Uuid::new_v4();
        let f = Uuid::new_v4();
        assert!(parse_key(&format!("local://{ws}/{f}/a.txt")).is_ok());
        for bad in [
            format!("local://{ws}/{f}/.."),
            format!("local://{ws}/{f}/a/b"),
            format!("local://{ws}/../a"),
            format!("local://../{f}/a"),
            format!("gcs://{ws}/{f}/a"),
            format!("local://{ws}/{f}/"),
            format!("local://{ws}/{f}/a\\b"),
        ] {
            assert!(parse_key(&bad).is_err(), "{bad}");
        }
    }
}
