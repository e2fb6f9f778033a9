//! The library's front door: [`Satchel`] holds the shared services (catalog, storage, scanner,
//! configuration); [`WorkspaceManager`] is one user's workspace, optionally scoped to an agent
//! session, with the seed's API.

use crate::catalog::{self, Catalog, CatalogError, Cursor, ListQuery, NewFile, Page, Precondition};
use crate::config::Config;
use crate::domain::{
    FileName, FileRecord, FolderPath, PathScope, SessionId, VirtualPath, Workspace,
};
use crate::error::{Error, ErrorCode, Result};
use crate::ingest::{ingest, IngestRules, StoredBlob};
use crate::scanner::{ClamdAddress, ClamdConfig, ClamdScanner, NoScan, Scanner};
use crate::storage::{BlobStore, BlobStream, ByteRange};
use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use futures::{Stream, StreamExt, TryStreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncRead;
use uuid::Uuid;

/// Chunk size for readers turned into streams.
const READ_CHUNK: usize = 256 * 1024;
/// Most `name (n).ext` candidates tried by `on_conflict = rename`.
const MAX_RENAME_ATTEMPTS: u32 = 1000;
pub const MAX_LIST_LIMIT: u32 = 1000;
pub const DEFAULT_LIST_LIMIT: u32 = 50;
/// Largest metadata object, serialised (SPEC §1).
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Timestamps are kept at microsecond precision, the finest both catalogs store.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The shared services. Cheap to clone.
#[derive(Clone)]
pub struct Satchel {
    config: Arc<Config>,
    catalog: Arc<dyn Catalog>,
    store: Arc<dyn BlobStore>,
    scanner: Arc<dyn Scanner>,
    /// Loaded (or generated) on first use: only signed local links need them.
    secrets: Arc<std::sync::OnceLock<crate::signing::Secrets>>,
}

impl Satchel {
    /// Connects the catalog (applying migrations), opens storage and the scanner as configured.
    pub async fn open(config: Config) -> Result<Self> {
        let catalog = catalog::connect(&config.database_url).await.map_err(|e| {
            Error::new(ErrorCode::DatabaseUnavailable, format!("database_url: {e}"))
        })?;
        let store = crate::storage::open_from_config(&config).await?;
        let scanner = scanner_from_config(&config);
        Ok(Satchel::from_parts(config, catalog, store, scanner))
    }

    pub fn from_parts(
        config: Config,
        catalog: Arc<dyn Catalog>,
        store: Arc<dyn BlobStore>,
        scanner: Arc<dyn Scanner>,
    ) -> Self {
        Satchel {
            config: Arc::new(config),
            catalog,
            store,
            scanner,
            secrets: Arc::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }
    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }
    pub fn scanner(&self) -> &Arc<dyn Scanner> {
        &self.scanner
    }

    /// The JWT and link-signing secrets: from the configuration, else generated into
    /// `app_data_dir` on first use (see [`crate::signing::Secrets::load_or_generate`]).
    pub fn secrets(&self) -> Result<&crate::signing::Secrets> {
        if let Some(s) = self.secrets.get() {
            return Ok(s);
        }
        let loaded = crate::signing::Secrets::load_or_generate(&self.config)?;
        Ok(self.secrets.get_or_init(|| loaded))
    }

    /// Logs how scanning is set up and whether clamd answers; never fails (readiness reports it).
    pub async fn check_scanner_at_startup(&self) {
        if !self.scanner.enabled() {
            tracing::warn!(
                "VIRUS SCANNING IS DISABLED (clamav_service_enabled = false): uploaded content is \
                 stored without being scanned"
            );
            return;
        }
        match self.scanner.ping().await {
            Ok(()) => tracing::info!(
                "clamd answers; make sure its StreamMaxLength is at least max_file_size_mb ({} MiB)",
                self.config.max_file_size_mb
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "clamd does not answer: writes will fail with scanner_unavailable until it does"
            ),
        }
    }

    /// The user's workspace (created on first use), scoped to `session_id` if given.
    pub async fn workspace(
        &self,
        user_id: &str,
        session_id: Option<&str>,
    ) -> Result<WorkspaceManager> {
        if user_id.is_empty() {
            return Err(Error::invalid_input("user_id must not be empty"));
        }
        let session = session_id.map(SessionId::parse).transpose()?;
        let workspace = self.catalog.get_or_create_workspace(user_id, now()).await?;
        Ok(WorkspaceManager {
            scope: PathScope::new(session, self.config.shared_root_folders()),
            satchel: self.clone(),
            workspace,
        })
    }
}

/// Builds the scanner the configuration asks for.
pub fn scanner_from_config(config: &Config) -> Arc<dyn Scanner> {
    if !config.clamav_service_enabled {
        return Arc::new(NoScan);
    }
    let address = match &config.clamav_service_socket {
        Some(path) => ClamdAddress::Unix(path.clone()),
        None => ClamdAddress::Tcp(format!(
            "{}:{}",
            config.clamav_service_host, config.clamav_service_port
        )),
    };
    Arc::new(ClamdScanner::new(ClamdConfig {
        address,
        timeout: Duration::from_secs(config.clamav_service_timeout),
        max_concurrency: config.clamav_max_concurrency,
    }))
}

/// What to do when the target path already holds a live file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnConflict {
    #[default]
    Error,
    Overwrite,
    Rename,
}

impl OnConflict {
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "error" => Ok(OnConflict::Error),
            "overwrite" => Ok(OnConflict::Overwrite),
            "rename" => Ok(OnConflict::Rename),
            other => Err(Error::invalid_input(format!(
                "on_conflict must be error, overwrite or rename, got {other:?}"
            ))),
        }
    }
}

/// Options of a write. `Default` is: path `/{filename}`, MIME guessed, fail on conflict.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Target path; a trailing `/` names a folder (the file goes to `{path}{filename}`).
    pub path: Option<String>,
    pub mime_type: Option<String>,
    pub on_conflict: OnConflict,
    /// `If-Match`: `"*"` or a checksum the live file must have; implies overwrite.
    pub if_match: Option<String>,
    /// Client-supplied SHA-256 (64 hex digits) the content must match.
    pub expected_sha256: Option<String>,
    /// `None` keeps an overwritten file's metadata (and means `{}` for a new file).
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
    /// The content length if known up front: a doomed write fails before storing anything.
    pub size_hint: Option<u64>,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    pub file: FileRecord,
    /// True when the file is new, false when an existing file was overwritten.
    pub created: bool,
}

/// A signed download URL and when it stops working.
#[derive(Debug, Clone)]
pub struct DownloadUrl {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

/// Longest lifetime of a download URL: 7 days (the GCS V4 / S3 SigV4 maximum).
pub const MAX_LINK_SECONDS: u64 = 7 * 24 * 3600;

/// Filters and page of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// A folder; `None` is the session folder (or the whole workspace without a session).
    pub path: Option<String>,
    /// Take `path` as an absolute folder, ignoring the session.
    pub include_all_sessions: bool,
    pub name_contains: Option<String>,
    /// 1..=1000, default 50.
    pub limit: Option<u32>,
    pub offset: Option<u64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct FilePage {
    pub files: Vec<FileRecord>,
    pub has_more: bool,
    pub next_cursor: Option<String>,
}

/// A workspace's usage.
#[derive(Debug, Clone)]
pub struct Usage {
    pub workspace: Workspace,
    pub used_bytes: u64,
    /// 0 = unlimited.
    pub limit_bytes: u64,
    pub file_count: u64,
}

/// One user's workspace, optionally scoped to an agent session.
#[derive(Clone)]
pub struct WorkspaceManager {
    satchel: Satchel,
    workspace: Workspace,
    scope: PathScope,
}

/// Parses `expected` into lowercase hex, or `invalid_input`.
fn parse_sha256(raw: &str) -> Result<String> {
    if raw.len() == 64 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(Error::invalid_input(
            "the expected SHA-256 must be 64 hexadecimal digits",
        ))
    }
}

/// `If-Match` → precondition. Only strong ETags (the checksum, quoted or not) can match; a weak
/// one can never match, so it fails as a precondition (SPEC §10).
fn parse_if_match(raw: &str) -> Precondition {
    let raw = raw.trim();
    if raw == "*" {
        return Precondition::AnyLive;
    }
    if raw.starts_with("W/") {
        return Precondition::Checksum(String::new());
    }
    Precondition::Checksum(raw.trim_matches('"').to_ascii_lowercase())
}

/// MIME type: the argument, else guessed from the name, else octet-stream; lowercase, no params.
pub fn resolve_mime(given: Option<&str>, filename: &str) -> Result<String> {
    let raw = match given {
        Some(g) => g.to_owned(),
        None => mime_guess::from_path(filename)
            .first_raw()
            .unwrap_or("application/octet-stream")
            .to_owned(),
    };
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let valid = essence.split_once('/').is_some_and(|(t, s)| {
        let token = |x: &str| {
            !x.is_empty()
                && x.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
        };
        token(t) && token(s)
    });
    if !valid {
        return Err(Error::invalid_input(format!("invalid mime_type {raw:?}")));
    }
    Ok(essence)
}

fn check_metadata(metadata: &serde_json::Map<String, serde_json::Value>) -> Result<()> {
    let size = serde_json::to_vec(metadata)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(Error::invalid_input(format!(
            "metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"
        )));
    }
    Ok(())
}

/// `report.pdf` → `report (n).pdf`; a leading dot is not an extension.
fn renamed(path: &VirtualPath, n: u32) -> Result<VirtualPath> {
    let parent = path.parent();
    let name = path.file_name();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    VirtualPath::parse(&format!("{}{stem} ({n}){ext}", parent.as_prefix()))
}

impl WorkspaceManager {
    pub fn workspace(&self) -> &Workspace {
        &self.workspace
    }

    pub fn workspace_id(&self) -> Uuid {
        self.workspace.id
    }

    pub fn session(&self) -> Option<&SessionId> {
        self.scope.session()
    }

    pub fn satchel(&self) -> &Satchel {
        &self.satchel
    }

    /// Resolves a raw path the way every call of this manager does (session scoping included).
    pub fn resolve_path(&self, raw: &str) -> Result<VirtualPath> {
        self.scope.file(raw)
    }

    fn catalog(&self) -> &dyn Catalog {
        self.satchel.catalog.as_ref()
    }

    /// Writes content held in memory.
    pub async fn write_file(
        &self,
        content: impl Into<Bytes>,
        filename: &str,
        mut options: WriteOptions,
    ) -> Result<WriteOutcome> {
        let content = content.into();
        options.size_hint = Some(content.len() as u64);
        let source = futures::stream::once(async move { Ok::<_, std::io::Error>(content) });
        self.write_stream(source, filename, options).await
    }

    /// Writes from an `AsyncRead`, streaming in bounded chunks.
    pub async fn write_reader<R>(
        &self,
        reader: R,
        filename: &str,
        options: WriteOptions,
    ) -> Result<WriteOutcome>
    where
        R: AsyncRead + Send,
    {
        let stream = tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK);
        self.write_stream(stream, filename, options).await
    }

    /// Writes a stream of chunks: size limit → path conflict → quota → stream (hash + scan +
    /// store) → commit (SPEC §3). Nothing is kept unless the commit succeeds.
    pub async fn write_stream<S>(
        &self,
        source: S,
        filename: &str,
        options: WriteOptions,
    ) -> Result<WriteOutcome>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let config = self.satchel.config();
        let name = FileName::parse(filename)?;
        let path = match options.path.as_deref() {
            None => self.scope.file(name.as_str())?,
            Some(p) if p.ends_with('/') => self.scope.file(&format!("{p}{}", name.as_str()))?,
            Some(p) => self.scope.file(p)?,
        };
        let mime_type = resolve_mime(options.mime_type.as_deref(), name.as_str())?;
        let expected_sha256 = options
            .expected_sha256
            .as_deref()
            .map(parse_sha256)
            .transpose()?;
        if let Some(m) = &options.metadata {
            check_metadata(m)?;
        }
        let precondition = match options.if_match.as_deref() {
            Some(raw) => Some(parse_if_match(raw)),
            None if options.on_conflict == OnConflict::Overwrite => Some(Precondition::None),
            None => None,
        };
        if precondition.is_some() && options.on_conflict == OnConflict::Rename {
            return Err(Error::invalid_input(
                "on_conflict=rename cannot be combined with overwrite or If-Match",
            ));
        }

        // Doomed writes fail before any byte is stored.
        let max_bytes = config.max_file_bytes();
        if options.size_hint.is_some_and(|n| n > max_bytes) {
            return Err(Error::too_large(max_bytes));
        }
        let existing = self
            .catalog()
            .get_file_by_path(self.workspace.id, &path)
            .await?;
        match (&precondition, &existing) {
            (None, Some(_)) if options.on_conflict == OnConflict::Error => {
                return Err(CatalogError::PathExists.into())
            }
            (Some(Precondition::AnyLive), None) => {
                return Err(CatalogError::PreconditionFailed.into())
            }
            (Some(Precondition::Checksum(c)), e) if e.as_ref().is_none_or(|f| &f.checksum != c) => {
                return Err(CatalogError::PreconditionFailed.into())
            }
            _ => {}
        }
        let limit = config.quota_bytes();
        if let Some(size) = options.size_hint {
            let replaced = if precondition.is_some() {
                existing.as_ref().map_or(0, |f| f.size_bytes)
            } else {
                0
            };
            let used = self.usage_bytes().await?;
            if limit > 0 && size > replaced && used + (size - replaced) > limit {
                return Err(Error::quota(used, limit));
            }
        }

        let file_id = Uuid::new_v4();
        let storage_path =
            self.satchel
                .store
                .storage_path(self.workspace.id, file_id, name.storage_name());
        let rules = IngestRules {
            max_bytes,
            expected_sha256,
        };
        let blob = match ingest(
            source,
            &self.satchel.store,
            self.satchel.scanner.as_ref(),
            &storage_path,
            &rules,
        )
        .await
        {
            Ok(blob) => blob,
            Err(e) => {
                if let crate::ErrorDetail::Threat(threat) = &e.detail {
                    tracing::warn!(user = %self.workspace.user_id, path = %path, %threat, "infected upload refused");
                }
                return Err(e);
            }
        };
        let new_file = NewFile {
            id: file_id,
            workspace_id: self.workspace.id,
            name: name.as_str().to_owned(),
            path,
            storage_path,
            mime_type,
            size_bytes: blob.size,
            checksum: blob.checksum.clone(),
            metadata: options.metadata,
            now: now(),
        };
        let committed = match (precondition, options.on_conflict) {
            (Some(p), _) => self
                .catalog()
                .overwrite_file(&new_file, &p, limit)
                .await
                .map(|c| WriteOutcome {
                    file: c.record,
                    created: !c.replaced,
                }),
            (None, OnConflict::Rename) => self.commit_renaming(new_file, limit).await,
            (None, _) => self
                .catalog()
                .insert_file(&new_file, limit)
                .await
                .map(|file| WriteOutcome {
                    file,
                    created: true,
                }),
        };
        finish_commit(blob, committed.map_err(Error::from)).await
    }

    /// Inserts at the path, or at `name (1).ext`, `name (2).ext`, … whichever is free first.
    async fn commit_renaming(
        &self,
        mut file: NewFile,
        limit: u64,
    ) -> std::result::Result<WriteOutcome, CatalogError> {
        let original = file.path.clone();
        for n in 0..=MAX_RENAME_ATTEMPTS {
            if n > 0 {
                file.path = renamed(&original, n).map_err(|e| CatalogError::Database(e.message))?;
                file.name = file.path.file_name().to_owned();
            }
            match self.catalog().insert_file(&file, limit).await {
                Err(CatalogError::PathExists) => continue,
                other => {
                    return other.map(|file| WriteOutcome {
                        file,
                        created: true,
                    })
                }
            }
        }
        Err(CatalogError::PathExists)
    }

    async fn current_workspace(&self) -> Result<Workspace> {
        self.catalog()
            .get_workspace(self.workspace.id)
            .await?
            .ok_or_else(|| Error::not_found("workspace not found"))
    }

    async fn usage_bytes(&self) -> Result<u64> {
        Ok(self.current_workspace().await?.used_bytes)
    }

    /// Reads a whole file into memory (for small files; prefer [`Self::open_file`]).
    pub async fn read_file(&self, path: &str) -> Result<Bytes> {
        let file = self.get_file_info_by_path(path).await?;
        self.read_record(&file).await
    }

    pub async fn read_file_by_id(&self, id: Uuid) -> Result<Bytes> {
        let file = self.get_file_info(id).await?;
        self.read_record(&file).await
    }

    async fn read_record(&self, file: &FileRecord) -> Result<Bytes> {
        let stream = self.satchel.store.open(&file.storage_path, None).await?;
        let mut buf = bytes::BytesMut::with_capacity(file.size_bytes as usize);
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.map_err(crate::storage::StorageError::from)?);
        }
        Ok(buf.freeze())
    }

    /// Streams a file's content (or a range of it) by id.
    pub async fn open_file(
        &self,
        id: Uuid,
        range: Option<ByteRange>,
    ) -> Result<(FileRecord, BlobStream)> {
        let file = self.get_file_info(id).await?;
        let stream = self.open_record(&file, range).await?;
        Ok((file, stream))
    }

    pub async fn open_file_by_path(
        &self,
        path: &str,
        range: Option<ByteRange>,
    ) -> Result<(FileRecord, BlobStream)> {
        let file = self.get_file_info_by_path(path).await?;
        let stream = self.open_record(&file, range).await?;
        Ok((file, stream))
    }

    /// Streams the content of a record this manager has already looked up.
    pub async fn open_record(
        &self,
        file: &FileRecord,
        range: Option<ByteRange>,
    ) -> Result<BlobStream> {
        if file.workspace_id != self.workspace.id {
            return Err(Error::not_found("file not found"));
        }
        let stream = self.satchel.store.open(&file.storage_path, range).await?;
        Ok(Box::pin(stream.map_err(|e| {
            std::io::Error::new(e.kind(), format!("reading stored content: {e}"))
        })))
    }

    pub async fn get_file_info(&self, id: Uuid) -> Result<FileRecord> {
        self.catalog()
            .get_file(self.workspace.id, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no file with id {id}")))
    }

    pub async fn get_file_info_by_path(&self, path: &str) -> Result<FileRecord> {
        let path = self.scope.file(path)?;
        self.catalog()
            .get_file_by_path(self.workspace.id, &path)
            .await?
            .ok_or_else(|| Error::not_found(format!("no file at {path}")))
    }

    fn folder(&self, options: &ListOptions) -> Result<FolderPath> {
        if options.include_all_sessions {
            options
                .path
                .as_deref()
                .map_or(Ok(FolderPath::root()), FolderPath::parse)
        } else {
            self.scope.folder(options.path.as_deref())
        }
    }

    fn list_query(&self, options: &ListOptions) -> Result<ListQuery> {
        let limit = options.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(Error::invalid_input(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}"
            )));
        }
        let page = match (&options.offset, &options.cursor) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_input(
                    "use either offset or cursor, not both",
                ))
            }
            (_, Some(c)) => Page::After(
                Cursor::decode(c).ok_or_else(|| Error::invalid_input("cursor is not valid"))?,
            ),
            (Some(o), None) => Page::Offset(*o),
            (None, None) => Page::Offset(0),
        };
        Ok(ListQuery {
            folder: self.folder(options)?,
            name_contains: options.name_contains.clone().filter(|s| !s.is_empty()),
            // One extra row tells whether another page follows.
            limit: limit + 1,
            page,
        })
    }

    fn page(mut files: Vec<FileRecord>, query: &ListQuery) -> FilePage {
        let limit = (query.limit - 1) as usize;
        let has_more = files.len() > limit;
        files.truncate(limit);
        let next_cursor = has_more.then(|| files.last()).flatten().map(|f| {
            Cursor {
                created_at: f.created_at,
                id: f.id,
            }
            .encode()
        });
        FilePage {
            files,
            has_more,
            next_cursor,
        }
    }

    /// Live files in a folder (recursive), newest first.
    pub async fn list_files(&self, options: &ListOptions) -> Result<FilePage> {
        let query = self.list_query(options)?;
        let files = self.catalog().list_files(self.workspace.id, &query).await?;
        Ok(Self::page(files, &query))
    }

    pub async fn get_file_count(&self, options: &ListOptions) -> Result<u64> {
        let folder = self.folder(options)?;
        let name = options.name_contains.as_deref().filter(|s| !s.is_empty());
        Ok(self
            .catalog()
            .count_files(self.workspace.id, &folder, name)
            .await?)
    }

    /// A URL that downloads the file's current content without credentials until it expires
    /// (1 s ≤ `expires_in` ≤ 7 days): the store's native signed URL on GCS and S3, else
    /// `{public_base_url}/v1/download/{token}` with an HMAC-signed token (SPEC §4). The link
    /// stops working when the file is deleted or overwritten.
    pub async fn get_download_url(&self, id: Uuid, expires_in: Duration) -> Result<DownloadUrl> {
        if !(1..=MAX_LINK_SECONDS).contains(&expires_in.as_secs()) || expires_in.subsec_nanos() != 0
        {
            return Err(Error::invalid_input(format!(
                "expires_in must be a whole number of seconds between 1 and {MAX_LINK_SECONDS}"
            )));
        }
        let file = self.get_file_info(id).await?;
        let expires_at = now() + chrono::Duration::seconds(expires_in.as_secs() as i64);
        let native = self
            .satchel
            .store
            .presign_read(&file.storage_path, expires_in, &file.name, &file.mime_type)
            .await?;
        if let Some(url) = native {
            return Ok(DownloadUrl { url, expires_at });
        }
        let token = crate::signing::create_download_token(
            &self.satchel.secrets()?.signing_secret,
            &crate::signing::DownloadClaims {
                workspace_id: file.workspace_id,
                file_id: file.id,
                checksum: file.checksum,
                expires_at: expires_at.timestamp(),
            },
        )?;
        Ok(DownloadUrl {
            url: format!(
                "{}/v1/download/{token}",
                self.satchel.config.public_base_url
            ),
            expires_at: expires_at.trunc_subsecs(0),
        })
    }

    /// Replaces a live file's metadata (a JSON object of at most 16 KiB).
    pub async fn set_metadata(
        &self,
        id: Uuid,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<FileRecord> {
        check_metadata(&metadata)?;
        Ok(self
            .catalog()
            .set_metadata(self.workspace.id, id, &metadata, now())
            .await?)
    }

    /// Soft delete: the file goes to the trash and its path is free at once.
    pub async fn delete_file(&self, id: Uuid) -> Result<FileRecord> {
        Ok(self
            .catalog()
            .soft_delete(self.workspace.id, id, now())
            .await?)
    }

    /// Deleted files not yet purged, newest first; `path` filters on the original path.
    pub async fn list_trash(&self, options: &ListOptions) -> Result<FilePage> {
        let query = self.list_query(options)?;
        let files = self.catalog().list_trash(self.workspace.id, &query).await?;
        Ok(Self::page(files, &query))
    }

    /// Restores a trashed file to its original path, or to `path` if given.
    pub async fn restore_file(&self, id: Uuid, path: Option<&str>) -> Result<FileRecord> {
        let target = match path {
            Some(p) => Some(self.scope.file(p)?),
            None => None,
        };
        let target = match target {
            Some(t) => t,
            None => {
                let record = self.trashed(id).await?;
                let original = record
                    .original_path
                    .ok_or_else(|| Error::internal("trashed file has no original path"))?;
                VirtualPath::from_trusted(original)
            }
        };
        Ok(self
            .catalog()
            .restore(
                self.workspace.id,
                id,
                &target,
                self.satchel.config.quota_bytes(),
                now(),
            )
            .await?)
    }

    async fn trashed(&self, id: Uuid) -> Result<FileRecord> {
        self.catalog()
            .get_trashed(self.workspace.id, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("no file with id {id} in the trash")))
    }

    /// Soft-deletes every file under `/sessions/{session_id}/`.
    pub async fn delete_session(&self, session_id: &str) -> Result<u64> {
        let session = SessionId::parse(session_id)?;
        let folder = PathScope::session_folder(&session);
        Ok(self
            .catalog()
            .soft_delete_folder(self.workspace.id, &folder, now())
            .await?)
    }

    /// The workspace with its usage and limit.
    pub async fn usage(&self) -> Result<Usage> {
        let workspace = self.current_workspace().await?;
        let file_count = self.catalog().live_file_count(self.workspace.id).await?;
        Ok(Usage {
            used_bytes: workspace.used_bytes,
            limit_bytes: self.satchel.config.quota_bytes(),
            file_count,
            workspace,
        })
    }
}

/// Keeps the blob if the commit succeeded, deletes it otherwise.
async fn finish_commit(blob: StoredBlob, committed: Result<WriteOutcome>) -> Result<WriteOutcome> {
    match committed {
        Ok(outcome) => {
            blob.keep();
            Ok(outcome)
        }
        Err(e) => {
            blob.discard().await;
            Err(e)
        }
    }
}
