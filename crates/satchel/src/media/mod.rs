//! `store_media_file`: turns any file reference a processing step receives into what it needs
//! (SPEC §6).
//!
//! ```text
//! input (by scheme)            exec folder {exec_file_dir}/{graph_exec_id}/      output (return format)
//! data:…            ─ decode ┐
//! http(s)://…       ─ fetch  ├─> cap → SHA-256 → clamd → staged → named ─┐     for_local_processing: name
//! workspace://…     ─ read   │      (one streaming pass, ingest::stream_through)├──> for_external_api: data URI
//! gcs:// gs:// s3:// ─ read  ┘                                             │     for_block_output: workspace://id#mime
//! a/local/path.png  ─ resolved inside the folder (already there, not copied) ┘      (or the data URI in graph runs)
//! ```
//!
//! Modules: [`input`] classifies the string, [`data_uri`] decodes, [`fetch`] is the guarded
//! URL fetcher built on the pure [`address_policy`], [`exec_dir`] owns the execution folder
//! (names, limit, staged writes), [`output`] encodes.

pub mod address_policy;
mod data_uri;
mod exec_dir;
mod fetch;
mod input;
mod output;

pub use address_policy::is_allowed;
pub use exec_dir::check_exec_id;
pub use fetch::{FetchPolicy, MAX_REDIRECTS};

use crate::domain::{FileName, FileRecord, SessionId};
use crate::error::{Error, ErrorCode, ErrorDetail, Result};
use crate::workspace::{resolve_mime, OnConflict, Satchel, WorkspaceManager, WriteOptions};
use bytes::Bytes;
use data_uri::DataUri;
use exec_dir::{ExecFolder, Ingest, LocalFile};
use futures::{Stream, StreamExt};
use input::{MediaInput, WorkspaceTarget};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use url::Url;
use uuid::Uuid;

/// Who is asking: the graph execution (its folder) and the user (their workspace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecutionContext {
    /// `[A-Za-z0-9_-]{1,128}`; names the execution folder.
    pub graph_exec_id: String,
    pub user_id: String,
    /// The user's workspace; required for `workspace://` inputs, and (with `session_id`) for
    /// `for_block_output` to save into the workspace. Must be the user's own.
    pub workspace_id: Option<Uuid>,
    /// The agent chat session; scopes `workspace:///paths` and where block output is saved.
    pub session_id: Option<String>,
}

impl ExecutionContext {
    pub fn new(graph_exec_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        ExecutionContext {
            graph_exec_id: graph_exec_id.into(),
            user_id: user_id.into(),
            workspace_id: None,
            session_id: None,
        }
    }

    pub fn with_workspace(mut self, workspace_id: Uuid) -> Self {
        self.workspace_id = Some(workspace_id);
        self
    }

    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }
}

/// What `store_media_file` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReturnFormat {
    /// The path relative to the execution folder, e.g. `image.png`.
    ForLocalProcessing,
    /// `data:{mime};base64,{…}`.
    ForExternalApi,
    /// `workspace://{file_id}#{mime}` when saved to the workspace (agent chat), else the data URI.
    ForBlockOutput,
}

impl ReturnFormat {
    pub const ALL: [ReturnFormat; 3] = [
        ReturnFormat::ForLocalProcessing,
        ReturnFormat::ForExternalApi,
        ReturnFormat::ForBlockOutput,
    ];

    /// `for_local_processing`, `for_external_api` or `for_block_output`; else `invalid_input`.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == raw)
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "return_format must be for_local_processing, for_external_api or \
                     for_block_output, got {raw:?}"
                ))
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnFormat::ForLocalProcessing => "for_local_processing",
            ReturnFormat::ForExternalApi => "for_external_api",
            ReturnFormat::ForBlockOutput => "for_block_output",
        }
    }
}

impl FromStr for ReturnFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for ReturnFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stores `file` (a data URI, an http(s) URL, a `workspace://` reference, a cloud path of one
/// of the caller's files, or a path in the execution folder) for the execution in `ctx`, and
/// returns it in `format`. See SPEC §6 and the module documentation.
pub async fn store_media_file(
    satchel: &Satchel,
    file: &str,
    ctx: &ExecutionContext,
    format: ReturnFormat,
) -> Result<String> {
    let call = MediaCall::new(satchel, ctx)?;
    let result = call.store(file, format).await;
    if let Err(e) = &result {
        match (&e.code, &e.detail) {
            (ErrorCode::VirusDetected, ErrorDetail::Threat(threat)) => tracing::warn!(
                user = %ctx.user_id, graph_exec_id = %ctx.graph_exec_id, %threat,
                "infected media refused"
            ),
            (ErrorCode::UrlNotAllowed, _) => tracing::warn!(
                user = %ctx.user_id, graph_exec_id = %ctx.graph_exec_id, reason = %e.message,
                "media URL refused"
            ),
            _ => {}
        }
    }
    result
}

/// Removes the execution folder of `graph_exec_id` (a missing folder is fine). Ids that are not
/// `[A-Za-z0-9_-]{1,128}` are refused with `invalid_input`, so nothing outside
/// `exec_file_dir`, nor a sibling folder, can be touched.
pub async fn clean_exec_files(satchel: &Satchel, graph_exec_id: &str) -> Result<()> {
    ExecFolder::new(satchel.config(), graph_exec_id)?
        .remove()
        .await
}

/// Where the execution folder of `graph_exec_id` is (it may not exist yet).
pub fn exec_folder_path(satchel: &Satchel, graph_exec_id: &str) -> Result<PathBuf> {
    Ok(ExecFolder::new(satchel.config(), graph_exec_id)?
        .path()
        .to_owned())
}

/// Remembers the first real failure of a stage whose error the pipeline can only carry as
/// text (the source stream, the writer), so the caller reports it with its own code.
#[derive(Clone, Default)]
pub(crate) struct ErrorStash(Arc<Mutex<Option<Error>>>);

impl ErrorStash {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Error>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, error: Error) {
        let mut slot = self.slot();
        if slot.is_none() {
            *slot = Some(error);
        }
    }

    pub(crate) fn take(&self) -> Option<Error> {
        self.slot().take()
    }

    /// The pipeline's view of `source`: errors become I/O errors, the real one is kept here.
    fn watch<S>(&self, source: S) -> impl Stream<Item = std::io::Result<Bytes>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let stash = self.clone();
        source.map(move |item| {
            item.map_err(|e| {
                let io = std::io::Error::other(e.message.clone());
                stash.set(e);
                io
            })
        })
    }
}

/// Content now in the execution folder, with its MIME type.
struct Content {
    file: LocalFile,
    mime: String,
}

/// One `store_media_file` call: the validated context and what it opened.
struct MediaCall<'a> {
    satchel: &'a Satchel,
    ctx: &'a ExecutionContext,
    session: Option<SessionId>,
    folder: ExecFolder,
    manager: tokio::sync::OnceCell<WorkspaceManager>,
}

impl<'a> MediaCall<'a> {
    fn new(satchel: &'a Satchel, ctx: &'a ExecutionContext) -> Result<Self> {
        if ctx.user_id.is_empty() {
            return Err(Error::invalid_input("user_id is required"));
        }
        let folder = ExecFolder::new(satchel.config(), &ctx.graph_exec_id)?;
        let session = ctx
            .session_id
            .as_deref()
            .map(SessionId::parse)
            .transpose()?;
        Ok(MediaCall {
            satchel,
            ctx,
            session,
            folder,
            manager: tokio::sync::OnceCell::new(),
        })
    }

    /// The caller's workspace (session-scoped); a `workspace_id` in the context must be it.
    async fn manager(&self) -> Result<&WorkspaceManager> {
        self.manager
            .get_or_try_init(|| async {
                let manager = self
                    .satchel
                    .workspace(
                        &self.ctx.user_id,
                        self.session.as_ref().map(SessionId::as_str),
                    )
                    .await?;
                match self.ctx.workspace_id {
                    Some(id) if id != manager.workspace_id() => {
                        Err(Error::not_found(format!("workspace {id} not found")))
                    }
                    _ => Ok(manager),
                }
            })
            .await
    }

    fn max_bytes(&self) -> u64 {
        self.satchel.config().max_file_bytes()
    }

    async fn store(&self, file: &str, format: ReturnFormat) -> Result<String> {
        let input = input::classify(file)?;
        if format == ReturnFormat::ForBlockOutput
            && self.ctx.workspace_id.is_some()
            && self.session.is_some()
        {
            // The output goes to the workspace: check it is the caller's before any work.
            self.manager().await?;
        }
        let content = match input {
            MediaInput::Local(raw) => {
                let file = self.folder.resolve_local(raw).await?;
                let mime = resolve_mime(None, file.file_name())?;
                Content { file, mime }
            }
            MediaInput::DataUri(raw) => self.ingest_data_uri(raw).await?,
            MediaInput::Url(url) => self.ingest_url(&url).await?,
            MediaInput::Workspace {
                target, reference, ..
            } => {
                if self.ctx.workspace_id.is_none() {
                    return Err(Error::invalid_input(
                        "workspace:// inputs need workspace_id in the execution context",
                    ));
                }
                let manager = self.manager().await?;
                let record = match target {
                    WorkspaceTarget::Id(id) => manager.get_file_info(id).await?,
                    WorkspaceTarget::Path(path) => manager.get_file_info_by_path(&path).await?,
                };
                if format == ReturnFormat::ForBlockOutput {
                    // Already in the workspace: its own reference, with the stored MIME type.
                    return Ok(format!("{reference}#{}", record.mime_type));
                }
                self.ingest_record(manager, record).await?
            }
            MediaInput::Cloud(storage_path) => {
                let manager = self.manager().await?;
                let record = self
                    .satchel
                    .catalog()
                    .get_file_by_storage_path(manager.workspace_id(), &storage_path)
                    .await?
                    .ok_or_else(|| {
                        Error::not_found(format!("{storage_path} is not one of your files"))
                    })?;
                if format == ReturnFormat::ForBlockOutput && self.ctx.workspace_id.is_some() {
                    return Ok(format!("workspace://{}#{}", record.id, record.mime_type));
                }
                self.ingest_record(manager, record).await?
            }
        };
        self.output(content, format).await
    }

    async fn ingest<S>(
        &self,
        source: S,
        name: &str,
        size_hint: Option<u64>,
        stash: &ErrorStash,
    ) -> Result<LocalFile>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        self.folder
            .ingest(Ingest {
                source,
                name,
                size_hint,
                max_bytes: self.max_bytes(),
                scanner: self.satchel.scanner().as_ref(),
                stash,
            })
            .await
    }

    async fn ingest_data_uri(&self, raw: &str) -> Result<Content> {
        let uri = DataUri::parse(raw)?;
        let mime = uri.mime.clone();
        let name = format!(
            "{}{}",
            Uuid::new_v4(),
            output::extension_for(&mime).unwrap_or_default()
        );
        let size_hint = uri.len_is_exact().then(|| uri.decoded_len_bound());
        let stash = ErrorStash::default();
        let source = stash.watch(uri.into_stream());
        let file = self.ingest(source, &name, size_hint, &stash).await?;
        Ok(Content { file, mime })
    }

    async fn ingest_url(&self, url: &Url) -> Result<Content> {
        let policy = FetchPolicy::from_config(self.satchel.config());
        let fetched = fetch::fetch(url, &policy).await?;
        if fetched.content_length.is_some_and(|n| n > self.max_bytes()) {
            return Err(Error::too_large(self.max_bytes()));
        }
        // Like a browser: the name of what answered (after redirects), else of what was asked.
        let mut name = url_file_name(&fetched.final_url)
            .or_else(|| url_file_name(url))
            .unwrap_or_else(|| "download".to_owned());
        let declared = fetched
            .content_type
            .as_deref()
            .and_then(|ct| resolve_mime(Some(ct), "").ok())
            .filter(|m| m != "application/octet-stream");
        let mime = match declared {
            Some(m) => m,
            None => resolve_mime(None, &name)?,
        };
        if !output::has_extension(&name) {
            if let Some(ext) = output::extension_for(&mime) {
                name.push_str(&ext);
            }
        }
        let stash = ErrorStash::default();
        let source = stash.watch(fetched.body);
        let file = self
            .ingest(source, &name, fetched.content_length, &stash)
            .await?;
        Ok(Content { file, mime })
    }

    async fn ingest_record(
        &self,
        manager: &WorkspaceManager,
        record: FileRecord,
    ) -> Result<Content> {
        let stream = manager.open_record(&record, None).await?;
        let name = FileName::parse(&record.name)
            .map(|n| n.storage_name().to_owned())
            .unwrap_or_else(|_| "file".to_owned());
        let stash = ErrorStash::default();
        let source = stash.watch(stream.map(|chunk| {
            chunk.map_err(|e| {
                Error::new(
                    ErrorCode::StorageUnavailable,
                    format!("reading the workspace file: {e}"),
                )
            })
        }));
        let file = self
            .ingest(source, &name, Some(record.size_bytes), &stash)
            .await?;
        Ok(Content {
            file,
            mime: record.mime_type,
        })
    }

    async fn output(&self, content: Content, format: ReturnFormat) -> Result<String> {
        let Content { file, mime } = content;
        match format {
            ReturnFormat::ForLocalProcessing => Ok(file.rel),
            ReturnFormat::ForBlockOutput if self.ctx.workspace_id.is_some() => {
                let Some(session) = &self.session else {
                    return self.data_uri(&file, &mime).await;
                };
                let manager = self.manager().await?;
                let reader = tokio::fs::File::open(&file.abs).await.map_err(|e| {
                    Error::new(
                        ErrorCode::StorageUnavailable,
                        format!("reading {}: {e}", file.rel),
                    )
                })?;
                let saved = manager
                    .write_reader(
                        reader,
                        file.file_name(),
                        WriteOptions {
                            path: Some(format!("/sessions/{session}/")),
                            mime_type: Some(mime),
                            on_conflict: OnConflict::Rename,
                            size_hint: Some(file.size),
                            ..WriteOptions::default()
                        },
                    )
                    .await?;
                Ok(format!(
                    "workspace://{}#{}",
                    saved.file.id, saved.file.mime_type
                ))
            }
            ReturnFormat::ForExternalApi | ReturnFormat::ForBlockOutput => {
                self.data_uri(&file, &mime).await
            }
        }
    }

    async fn data_uri(&self, file: &LocalFile, mime: &str) -> Result<String> {
        output::data_uri_of_file(&file.abs, mime, file.size, self.max_bytes()).await
    }
}

/// The sanitised last path segment of a URL, percent-decoded; `None` if there is none.
fn url_file_name(url: &Url) -> Option<String> {
    let last = url.path_segments()?.next_back()?;
    let decoded = percent_encoding::percent_decode_str(last).decode_utf8_lossy();
    FileName::parse(&decoded)
        .ok()
        .map(|name| name.storage_name().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_formats_parse_strictly() {
        for f in ReturnFormat::ALL {
            assert_eq!(ReturnFormat::parse(f.as_str()).unwrap(), f);
            assert_eq!(f.to_string().parse::<ReturnFormat>().unwrap(), f);
        }
        for bad in ["", "FOR_LOCAL_PROCESSING", "local", "for_external_api "] {
            assert_eq!(
                ReturnFormat::parse(bad).unwrap_err().code,
                ErrorCode::InvalidInput
            );
        }
    }

    #[test]
    fn url_names_are_decoded_and_sanitised() {
        let name = |s: &str| url_file_name(&Url::parse(s).unwrap());
        assert_eq!(
            name("https://x.test/a/b/photo.png?x=1").as_deref(),
            Some("photo.png")
        );
        assert_eq!(
            name("https://x.test/my%20file%3A1.txt").as_deref(),
            Some("my_file_1.txt")
        );
        assert_eq!(
            name("https://x.test/a/..%2F..%2Fetc%2Fpasswd").as_deref(),
            Some("passwd")
        );
        assert_eq!(name("https://x.test/%2E%2E").as_deref(), None);
        assert_eq!(name("https://x.test/").as_deref(), None);
        assert_eq!(name("https://x.test/dir/").as_deref(), None);
        assert_eq!(name("https://x.test/.env").as_deref(), Some("_.env"));
    }
}
