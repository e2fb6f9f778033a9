//! Execution folders: `{exec_file_dir}/{graph_exec_id}/`, the scratch space of one graph run.
//!
//! Content enters in one streaming pass (size cap → SHA-256 → scanner → staged file, the shared
//! [`stream_through`] pipeline) into a hidden staged file in the folder itself, is fsynced, and
//! gets its final name only after the scanner said clean: a name taken by other content gets a
//! `-1`, `-2` … suffix, identical content reuses the file. A drop guard removes the staged file
//! on every other path, cancellation included.
//!
//! The folder limit (`exec_dir_max_mb`) counts what is on disk plus what concurrent calls of the
//! same process have reserved: each call reserves its size up front when known and grows the
//! reservation while bytes arrive, and the final check (a fresh measurement of the folder) and
//! the rename happen under one per-folder lock. Files another program drops into the folder
//! count from the next measurement on.

use super::ErrorStash;
use crate::config::MIB;
use crate::domain::SessionId;
use crate::error::{Error, ErrorCode, ErrorDetail, Result};
use crate::ingest::{judge, stream_through};
use crate::scanner::Scanner;
use crate::storage::{BlobWriter, StorageError, StorageResult};
use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

/// Staged files are `.satchel-{uuid}.part`: hidden, and never counted as folder content (their
/// bytes are counted through the reservations instead).
const STAGED_PREFIX: &str = ".satchel-";
const STAGED_SUFFIX: &str = ".part";
/// Most `-n` suffixes tried for one name.
const MAX_SUFFIX: u32 = 10_000;
/// Written bytes between two `fdatasync`s of a staged file.
const SYNC_EVERY: u64 = 8 * MIB;
const HASH_CHUNK: usize = 256 * 1024;

fn is_staged_name(name: &str) -> bool {
    name.starts_with(STAGED_PREFIX) && name.ends_with(STAGED_SUFFIX)
}

fn io_error(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorCode::StorageUnavailable, format!("{what}: {e}"))
}

/// `graph_exec_id` must be `[A-Za-z0-9_-]{1,128}`: one plain path segment, never `..`.
pub fn check_exec_id(graph_exec_id: &str) -> Result<()> {
    if graph_exec_id.is_empty() {
        return Err(Error::invalid_input("graph_exec_id is required"));
    }
    // Execution ids have the shape of session ids: `[A-Za-z0-9_-]{1,128}`.
    if SessionId::parse(graph_exec_id).is_err() {
        return Err(Error::invalid_input(format!(
            "graph_exec_id must match [A-Za-z0-9_-]{{1,128}}, got {graph_exec_id:?}"
        )));
    }
    Ok(())
}

/// A file inside an execution folder.
#[derive(Debug, Clone)]
pub struct LocalFile {
    /// The path relative to the folder, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
}

impl LocalFile {
    /// The last segment of the relative path.
    pub fn file_name(&self) -> &str {
        self.rel.rsplit('/').next().unwrap_or(&self.rel)
    }
}

/// One execution's folder.
pub struct ExecFolder {
    path: PathBuf,
    limit: u64,
}

impl ExecFolder {
    pub fn new(config: &crate::Config, graph_exec_id: &str) -> Result<Self> {
        check_exec_id(graph_exec_id)?;
        let limit = match config.exec_dir_max_mb {
            0 => u64::MAX,
            mb => mb.saturating_mul(MIB),
        };
        Ok(ExecFolder {
            path: config.exec_file_dir.join(graph_exec_id),
            limit,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder's canonical path if it exists; a folder that is a symlink (or not a
    /// directory) is refused, so nothing can redirect it elsewhere.
    async fn existing(&self) -> Result<Option<PathBuf>> {
        match tokio::fs::symlink_metadata(&self.path).await {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid_path(format!(
                    "the execution folder {} is not a plain directory",
                    self.path.display()
                )))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("execution folder", e)),
        }
        tokio::fs::canonicalize(&self.path)
            .await
            .map(Some)
            .map_err(|e| io_error("execution folder", e))
    }

    async fn create(&self) -> Result<PathBuf> {
        if let Some(root) = self.path.parent() {
            tokio::fs::create_dir_all(root)
                .await
                .map_err(|e| io_error("exec_file_dir", e))?;
        }
        match tokio::fs::create_dir(&self.path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("creating the execution folder", e)),
        }
        self.existing()
            .await?
            .ok_or_else(|| Error::not_found("the execution folder was removed while in use"))
    }

    /// Resolves a local path: relative, no `..`, symlinks followed, and the result a regular
    /// file inside the folder. An escape is `invalid_path`, a missing file `not_found`.
    pub async fn resolve_local(&self, raw: &str) -> Result<LocalFile> {
        if raw.is_empty() {
            return Err(Error::invalid_input("file must not be empty"));
        }
        if raw.contains('\0') {
            return Err(Error::invalid_path("a local path must not contain NUL"));
        }
        let relative = Path::new(raw);
        if let Some(bad) = relative
            .components()
            .find(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(Error::invalid_path(format!(
                "local paths are relative to the execution folder and may not use {:?}",
                bad.as_os_str()
            )));
        }
        let missing = || Error::not_found(format!("{raw:?} is not in the execution folder"));
        let folder = self.existing().await?.ok_or_else(missing)?;
        let resolved = match tokio::fs::canonicalize(folder.join(relative)).await {
            Ok(p) => p,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Err(missing())
            }
            Err(e) => {
                return Err(Error::invalid_path(format!(
                    "{raw:?} cannot be resolved: {e}"
                )))
            }
        };
        let Ok(inside) = resolved.strip_prefix(&folder) else {
            return Err(Error::invalid_path(format!(
                "{raw:?} resolves outside the execution folder"
            )));
        };
        let mut rel = Vec::new();
        for part in inside.components() {
            match part.as_os_str().to_str() {
                Some(s) => rel.push(s),
                None => return Err(Error::invalid_path(format!("{raw:?} is not UTF-8"))),
            }
        }
        if rel.last().is_some_and(|name| is_staged_name(name)) {
            return Err(missing());
        }
        let meta = tokio::fs::metadata(&resolved)
            .await
            .map_err(|e| io_error("reading a local file", e))?;
        if rel.is_empty() || !meta.is_file() {
            return Err(Error::invalid_path(format!(
                "{raw:?} is not a regular file"
            )));
        }
        Ok(LocalFile {
            rel: rel.join("/"),
            abs: resolved,
            size: meta.len(),
        })
    }

    /// Streams `source` into the folder under `name` (a sanitised file name), scanning and
    /// hashing it on the way; see the module documentation.
    pub async fn ingest<S>(&self, request: Ingest<'_, S>) -> Result<LocalFile>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let Ingest {
            source,
            name,
            size_hint,
            max_bytes,
            scanner,
            stash,
        } = request;
        if size_hint.is_some_and(|n| n > max_bytes) {
            return Err(Error::too_large(max_bytes));
        }
        let folder = self.create().await?;
        let state = ExecState::of(&folder);
        let reservation = state
            .reserve(&folder, size_hint.unwrap_or(0), self.limit)
            .await?;
        let mut staged = StagedFile::create(&folder, reservation, stash.clone()).await?;
        let mut scan = scanner.begin().await?;
        let streamed =
            stream_through(source, &mut Feed(&mut staged), scan.as_mut(), max_bytes).await;
        let (size, checksum) = streamed.map_err(|e| stash.take().unwrap_or(e))?;
        let (verdict, synced) = tokio::join!(scan.finish(), staged.sync());
        if let Some(rejected) = judge(verdict, &checksum, None) {
            return Err(rejected);
        }
        synced?;
        staged.publish(&folder, &state, name, size, &checksum).await
    }

    /// Removes the folder; a missing one is fine. A symlink in its place is removed itself,
    /// never followed.
    pub async fn remove(&self) -> Result<()> {
        let result = match tokio::fs::symlink_metadata(&self.path).await {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
            Ok(meta) if meta.is_dir() => tokio::fs::remove_dir_all(&self.path).await,
            Ok(_) => tokio::fs::remove_file(&self.path).await,
        };
        match result {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(io_error("removing the execution folder", e))
            }
            _ => Ok(()),
        }
    }
}

/// What [`ExecFolder::ingest`] needs.
pub struct Ingest<'a, S> {
    pub source: S,
    /// The preferred file name: one sanitised segment.
    pub name: &'a str,
    /// The exact size if known (checked against the caps before anything is written).
    pub size_hint: Option<u64>,
    pub max_bytes: u64,
    pub scanner: &'a dyn Scanner,
    /// Where the source and the writer leave the real reason of a failure.
    pub stash: &'a ErrorStash,
}

fn folder_full(used: u64, incoming: u64, limit: u64) -> Error {
    Error {
        code: ErrorCode::QuotaExceeded,
        message: format!(
            "the execution folder holds {used} bytes; {incoming} more would exceed exec_dir_max_mb \
             ({limit} bytes)"
        ),
        detail: ErrorDetail::Quota {
            used_bytes: used,
            limit_bytes: limit,
        },
    }
}

/// Bytes of the regular files under `dir` (recursive, symlinks not followed, staged files left
/// out: reservations account for them).
fn folder_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            total = total.saturating_add(folder_bytes(&entry.path())?);
        } else if kind.is_file() && !is_staged_name(&entry.file_name().to_string_lossy()) {
            total = total.saturating_add(entry.metadata()?.len());
        }
    }
    Ok(total)
}

async fn measure(folder: &Path) -> Result<u64> {
    let folder = folder.to_owned();
    tokio::task::spawn_blocking(move || folder_bytes(&folder))
        .await
        .map_err(|e| Error::internal(format!("measuring the execution folder: {e}")))?
        .map_err(|e| io_error("measuring the execution folder", e))
}

/// The bookkeeping of one folder, shared by the calls of this process.
struct ExecState {
    accounts: Mutex<Accounts>,
    /// Held for the final size check and the rename, so two calls never both take the last
    /// bytes of the folder or the same name.
    commit: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Accounts {
    /// The folder's size at the last measurement.
    disk: u64,
    /// Bytes reserved by calls still streaming.
    reserved: u64,
}

static STATES: LazyLock<Mutex<HashMap<PathBuf, Weak<ExecState>>>> = LazyLock::new(Default::default);

impl ExecState {
    fn of(folder: &Path) -> Arc<ExecState> {
        let mut states = STATES.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(state) = states.get(folder).and_then(Weak::upgrade) {
            return state;
        }
        states.retain(|_, s| s.strong_count() > 0);
        let state = Arc::new(ExecState {
            accounts: Mutex::new(Accounts::default()),
            commit: tokio::sync::Mutex::new(()),
        });
        states.insert(folder.to_owned(), Arc::downgrade(&state));
        state
    }

    fn accounts(&self) -> std::sync::MutexGuard<'_, Accounts> {
        self.accounts.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn reserve(
        self: &Arc<Self>,
        folder: &Path,
        bytes: u64,
        limit: u64,
    ) -> Result<Reservation> {
        // Under the commit lock, so no call publishes (moves bytes from its reservation to
        // the disk) between this measurement and the bookkeeping below.
        let _commit = self.commit.lock().await;
        let disk = measure(folder).await?;
        let mut accounts = self.accounts();
        accounts.disk = disk;
        let used = disk.saturating_add(accounts.reserved);
        if used.saturating_add(bytes) > limit {
            return Err(folder_full(used, bytes, limit));
        }
        accounts.reserved += bytes;
        Ok(Reservation {
            state: self.clone(),
            amount: bytes,
            limit,
        })
    }
}

/// Bytes of the folder held for one call; released on drop.
struct Reservation {
    state: Arc<ExecState>,
    amount: u64,
    limit: u64,
}

impl Reservation {
    fn grow_to(&mut self, total: u64) -> Result<()> {
        if total <= self.amount {
            return Ok(());
        }
        let extra = total - self.amount;
        let mut accounts = self.state.accounts();
        let used = accounts.disk.saturating_add(accounts.reserved);
        if used.saturating_add(extra) > self.limit {
            let others = used.saturating_sub(self.amount);
            return Err(folder_full(others, total, self.limit));
        }
        accounts.reserved += extra;
        self.amount = total;
        Ok(())
    }
}

impl Reservation {
    /// Gives the reserved bytes back (with the accounts already locked).
    fn release(&mut self, accounts: &mut Accounts) {
        accounts.reserved = accounts.reserved.saturating_sub(self.amount);
        self.amount = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let state = self.state.clone();
        self.release(&mut state.accounts());
    }
}

/// Removes the staged file unless disarmed. Synchronous on purpose: Drop cannot await.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A hidden file in the folder receiving the content.
struct StagedFile {
    file: Option<tokio::fs::File>,
    guard: RemoveOnDrop,
    reservation: Reservation,
    written: u64,
    unsynced: u64,
    stash: ErrorStash,
}

impl StagedFile {
    async fn create(folder: &Path, reservation: Reservation, stash: ErrorStash) -> Result<Self> {
        let path = folder.join(format!("{STAGED_PREFIX}{}{STAGED_SUFFIX}", Uuid::new_v4()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| io_error("creating a file in the execution folder", e))?;
        Ok(StagedFile {
            file: Some(file),
            guard: RemoveOnDrop(Some(path)),
            reservation,
            written: 0,
            unsynced: 0,
            stash,
        })
    }

    fn path(&self) -> Result<&Path> {
        self.guard
            .0
            .as_deref()
            .ok_or_else(|| Error::internal("the staged file is gone"))
    }

    async fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.reservation
            .grow_to(self.written + chunk.len() as u64)?;
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::internal("write after sync"))?;
        let write = async {
            file.write_all(chunk).await?;
            self.unsynced += chunk.len() as u64;
            if self.unsynced >= SYNC_EVERY {
                file.sync_data().await?;
                self.unsynced = 0;
            }
            Ok::<_, std::io::Error>(())
        };
        write
            .await
            .map_err(|e| io_error("writing to the execution folder", e))?;
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Makes the content durable; the file keeps its staged name.
    async fn sync(&mut self) -> Result<()> {
        if let Some(mut file) = self.file.take() {
            let done = async {
                file.flush().await?;
                file.sync_all().await
            };
            done.await
                .map_err(|e| io_error("syncing a file in the execution folder", e))?;
        }
        Ok(())
    }

    /// Gives the clean, synced content its name: the first of `name`, `stem-1.ext`, … that is
    /// free or already holds this very content.
    async fn publish(
        mut self,
        folder: &Path,
        state: &ExecState,
        name: &str,
        size: u64,
        checksum: &str,
    ) -> Result<LocalFile> {
        let _commit = state.commit.lock().await;
        let staged = self.path()?.to_owned();
        for n in 0..=MAX_SUFFIX {
            let candidate = suffixed(name, n);
            let target = folder.join(&candidate);
            match tokio::fs::symlink_metadata(&target).await {
                Ok(meta) => {
                    if meta.is_file()
                        && meta.len() == size
                        && sha256_of(&target).await?.as_deref() == Some(checksum)
                    {
                        // Identical content: reuse it; the staged copy goes with the guard.
                        self.reservation.release(&mut state.accounts());
                        return Ok(LocalFile {
                            rel: candidate,
                            abs: target,
                            size,
                        });
                    }
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("execution folder", e)),
            }
            let disk = measure(folder).await?;
            {
                let mut accounts = state.accounts();
                accounts.disk = disk;
                let others = accounts.reserved.saturating_sub(self.reservation.amount);
                let used = disk.saturating_add(others);
                if used.saturating_add(size) > self.reservation.limit {
                    return Err(folder_full(used, size, self.reservation.limit));
                }
            }
            // A hard link never replaces an existing name, so a file another program created
            // meanwhile is never clobbered; the staged name is removed by the guard.
            match link_or_rename(&staged, &target).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("naming a file in the execution folder", e)),
            }
            {
                // The bytes move from the reservation to the disk in one step, still under the
                // commit lock, so nobody counts them twice or not at all.
                let mut accounts = state.accounts();
                accounts.disk = disk.saturating_add(size);
                self.reservation.release(&mut accounts);
            }
            sync_dir(folder).await?;
            return Ok(LocalFile {
                rel: candidate,
                abs: target,
                size,
            });
        }
        Err(Error::invalid_input(format!(
            "too many files named like {name:?} in the execution folder"
        )))
    }
}

/// `a.png` → `a-1.png`; a leading dot is not an extension.
fn suffixed(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_owned();
    }
    match name.rfind('.') {
        Some(i) if i > 0 => format!("{}-{n}{}", &name[..i], &name[i..]),
        _ => format!("{name}-{n}"),
    }
}

async fn link_or_rename(staged: &Path, target: &Path) -> std::io::Result<()> {
    match tokio::fs::hard_link(staged, target).await {
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::Unsupported | ErrorKind::PermissionDenied
            ) =>
        {
            // Filesystems without hard links: the commit lock and the check above make the
            // plain rename safe against this process's own calls.
            tokio::fs::rename(staged, target).await
        }
        other => other,
    }
}

async fn sync_dir(dir: &Path) -> Result<()> {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
        .await
        .map_err(|e| Error::internal(format!("syncing the execution folder: {e}")))?
        .map_err(|e| io_error("syncing the execution folder", e))
}

/// SHA-256 of a regular file, or `None` if it vanished.
async fn sha256_of(path: &Path) -> Result<Option<String>> {
    let path = path.to_owned();
    let hashed = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; HASH_CHUNK];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok::<_, std::io::Error>(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| Error::internal(format!("hashing a file: {e}")))?;
    match hashed {
        Ok(h) => Ok(Some(h)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading the execution folder", e)),
    }
}

/// The staged file seen as a [`BlobWriter`] by the ingest pipeline. `finish` only syncs: the
/// name is given by [`StagedFile::publish`] once the verdict is known.
struct Feed<'a>(&'a mut StagedFile);

#[async_trait]
impl BlobWriter for Feed<'_> {
    async fn write(&mut self, chunk: Bytes) -> StorageResult<()> {
        self.0.write_chunk(&chunk).await.map_err(|e| {
            let message = e.message.clone();
            self.0.stash.set(e);
            StorageError::Unavailable(message)
        })
    }

    async fn finish(self: Box<Self>) -> StorageResult<()> {
        self.0
            .sync()
            .await
            .map_err(|e| StorageError::Unavailable(e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_go_before_the_extension() {
        assert_eq!(suffixed("a.png", 0), "a.png");
        assert_eq!(suffixed("a.png", 1), "a-1.png");
        assert_eq!(suffixed("a.tar.gz", 2), "a.tar-2.gz");
        assert_eq!(suffixed("README", 3), "README-3");
        assert_eq!(suffixed("_.env", 1), "_-1.env");
    }

    #[test]
    fn exec_ids_are_single_plain_segments() {
        assert!(check_exec_id("abc_DEF-123").is_ok());
        for bad in [
            "",
            "..",
            "../..",
            "a/b",
            "a\\b",
            ".",
            "a b",
            "é",
            &"x".repeat(129),
        ] {
            assert_eq!(
                check_exec_id(bad).unwrap_err().code,
                ErrorCode::InvalidInput,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn staged_names_are_recognised() {
        assert!(is_staged_name(&format!(
            "{STAGED_PREFIX}{}{STAGED_SUFFIX}",
            Uuid::new_v4()
        )));
        assert!(!is_staged_name("a.part"));
    }
}
