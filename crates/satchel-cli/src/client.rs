//! The client commands: `put`, `get`, `ls`, `rm`, `restore`, `url`, `usage`. Each prints a short
//! human answer, or the server's JSON with `--json`. Content is streamed both ways: memory does
//! not grow with the file.

use crate::api::{Api, ApiError};
use anyhow::{bail, Context};
use futures::{Stream, StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Upload read size; also the granularity of the progress bar.
const CHUNK: usize = 256 * 1024;
/// Largest page the server serves (SPEC §7).
const MAX_PAGE: u32 = 1000;

/// What a client command needs besides its own arguments.
pub struct Client {
    pub api: Api,
    pub json: bool,
}

/// The fields of a FileInfo the human output shows.
#[derive(Deserialize)]
struct FileView {
    id: String,
    path: String,
    size_bytes: u64,
    mime_type: String,
}

fn file_view(value: &Value) -> anyhow::Result<FileView> {
    Ok(FileView::deserialize(value).map_err(|e| {
        ApiError::new(
            "invalid_response",
            format!("unexpected file description: {e}"),
        )
    })?)
}

fn invalid(message: String) -> ApiError {
    ApiError::new("invalid_input", message)
}

fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A byte count for people: `1.5 MiB`, `512 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A progress bar on stderr, only when someone is watching it.
fn progress_bar(total: Option<u64>, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(len) => (
            ProgressBar::new(len),
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_owned());
    bar
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a local file (a separate read, for `put --checksum`).
async fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnConflict {
    Error,
    Overwrite,
    Rename,
}

impl OnConflict {
    fn as_str(self) -> &'static str {
        match self {
            OnConflict::Error => "error",
            OnConflict::Overwrite => "overwrite",
            OnConflict::Rename => "rename",
        }
    }
}

pub struct PutRequest {
    pub file: PathBuf,
    pub path: Option<String>,
    pub session: Option<String>,
    pub overwrite: bool,
    pub on_conflict: Option<OnConflict>,
    pub mime_type: Option<String>,
    pub metadata: Option<String>,
    pub checksum: bool,
}

impl Client {
    /// `put`: streams the file as the raw request body.
    pub async fn put(&self, req: PutRequest) -> anyhow::Result<()> {
        let file = tokio::fs::File::open(&req.file)
            .await
            .with_context(|| format!("cannot open {}", req.file.display()))?;
        let meta = file
            .metadata()
            .await
            .with_context(|| format!("cannot read {}", req.file.display()))?;
        if !meta.is_file() {
            bail!(invalid(format!(
                "{} is not a regular file",
                req.file.display()
            )));
        }
        let filename = req
            .file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| invalid(format!("{} has no file name", req.file.display())))?;
        let metadata = match &req.metadata {
            Some(raw) => Some(compact_metadata(raw)?),
            None => None,
        };
        let checksum = match req.checksum {
            true => Some(sha256_file(&req.file).await?),
            false => None,
        };

        let mut query: Vec<(&str, &str)> = vec![("filename", &filename)];
        let optional = [
            ("path", req.path.as_deref()),
            ("session_id", req.session.as_deref()),
            ("mime_type", req.mime_type.as_deref()),
            ("metadata", metadata.as_deref()),
            ("on_conflict", req.on_conflict.map(OnConflict::as_str)),
            ("overwrite", req.overwrite.then_some("true")),
        ];
        query.extend(optional.iter().filter_map(|(k, v)| v.map(|v| (*k, v))));
        let url = self.api.endpoint(&["files"], &query);

        let size = meta.len();
        let bar = progress_bar(Some(size), "uploading");
        let counter = bar.clone();
        let body = tokio_util::io::ReaderStream::with_capacity(file, CHUNK)
            .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
        let mut request = self
            .api
            .request(Method::POST, url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(sum) = &checksum {
            request = request.header("X-Checksum-Sha256", sum);
        }
        let sent = self.api.send(request).await;
        bar.finish_and_clear();
        let response = sent?;
        let created = response.status() == StatusCode::CREATED;
        let info = self.api.read_json(response).await?;

        if self.json {
            return print_json(&info);
        }
        let f = file_view(&info)?;
        let verb = if created { "stored" } else { "overwrote" };
        println!(
            "{verb} {} ({} bytes, {}) id {}",
            f.path, f.size_bytes, f.mime_type, f.id
        );
        Ok(())
    }

    /// `get`: streams the content to `out` (through a temporary file renamed at the end) or
    /// to stdout.
    pub async fn get(
        &self,
        id: Option<&str>,
        path: Option<&str>,
        session: Option<&str>,
        out: Option<&Path>,
    ) -> anyhow::Result<()> {
        let out = out.filter(|o| o.as_os_str() != "-");
        if let Some(o) = out {
            if o.is_dir() {
                bail!(invalid(format!(
                    "{} is a directory: give a file name to -o",
                    o.display()
                )));
            }
        }
        let url = match (id, path) {
            (Some(id), _) => self.api.endpoint(&["files", id, "content"], &[]),
            (None, Some(path)) => {
                let mut query = vec![("path", path)];
                if let Some(s) = session {
                    query.push(("session_id", s));
                }
                self.api.endpoint(&["files", "by-path", "content"], &query)
            }
            (None, None) => bail!(invalid("give a file id or --path".into())),
        };
        let response = self.api.send(self.api.request(Method::GET, url)).await?;
        let expected = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_ascii_lowercase())
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()));
        let total = response.content_length();
        let bytes = response.bytes_stream();

        let (written, checksum) = match out {
            Some(out) => {
                let bar = progress_bar(total, "downloading");
                let result = self
                    .download_to_file(bytes, out, expected.as_deref(), &bar)
                    .await;
                bar.finish_and_clear();
                result?
            }
            None => {
                let mut stdout = tokio::io::stdout();
                let copied = self
                    .copy_verified(bytes, &mut stdout, &ProgressBar::hidden())
                    .await?;
                check_sum(expected.as_deref(), &copied.1)?;
                copied
            }
        };

        if self.json {
            let summary = json!({
                "output": out.map(|o| o.display().to_string()),
                "size_bytes": written,
                "checksum": checksum,
            });
            let text = serde_json::to_string_pretty(&summary)?;
            // With the bytes on stdout, the summary must not mix into them.
            match out {
                Some(_) => println!("{text}"),
                None => eprintln!("{text}"),
            }
        }
        Ok(())
    }

    /// Writes next to `out` under a temporary name, checks, fsyncs, then renames: a failed
    /// download never leaves a truncated `out` (nor the temporary file).
    async fn download_to_file(
        &self,
        bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
        out: &Path,
        expected: Option<&str>,
        bar: &ProgressBar,
    ) -> anyhow::Result<(u64, String)> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = out
            .file_name()
            .ok_or_else(|| invalid(format!("{} does not name a file", out.display())))?;
        let mut builder = tempfile::Builder::new();
        let prefix = format!(".{}.", base.to_string_lossy());
        builder.prefix(&prefix).suffix(".part");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Keep the permissions of a file being replaced; a new one gets the usual
            // 0666 less the umask, not the temporary file's 0600.
            let permissions = std::fs::metadata(out)
                .map(|m| m.permissions())
                .unwrap_or_else(|_| std::fs::Permissions::from_mode(0o666));
            builder.permissions(permissions);
        }
        let temp = builder
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        let handle = temp
            .as_file()
            .try_clone()
            .with_context(|| format!("cannot write to {}", temp.path().display()))?;
        let mut file = tokio::fs::File::from_std(handle);
        let (written, checksum) = self.copy_verified(bytes, &mut file, bar).await?;
        check_sum(expected, &checksum)?;
        file.sync_all()
            .await
            .with_context(|| format!("cannot write to {}", temp.path().display()))?;
        drop(file);
        temp.persist(out)
            .map_err(|e| anyhow::Error::new(e.error))
            .with_context(|| format!("cannot write {}", out.display()))?;
        Ok((written, checksum))
    }

    /// Copies the body to `sink`, hashing as it goes.
    async fn copy_verified(
        &self,
        mut bytes: impl Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
        sink: &mut (impl AsyncWrite + Unpin),
        bar: &ProgressBar,
    ) -> anyhow::Result<(u64, String)> {
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.map_err(|e| self.api.transport_error(&e))?;
            hasher.update(&chunk);
            sink.write_all(&chunk)
                .await
                .context("cannot write the content")?;
            written += chunk.len() as u64;
            bar.inc(chunk.len() as u64);
        }
        sink.flush().await.context("cannot write the content")?;
        Ok((written, hex(&hasher.finalize())))
    }

    /// `ls`: follows the server's cursor until `limit` files (or all of them) are listed.
    pub async fn ls(
        &self,
        folder: Option<&str>,
        session: Option<&str>,
        all_sessions: bool,
        limit: Option<u32>,
    ) -> anyhow::Result<()> {
        let mut files: Vec<Value> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut has_more;
        loop {
            let remaining = limit.map(|l| l - files.len() as u32);
            let page_size = remaining.unwrap_or(MAX_PAGE).min(MAX_PAGE).to_string();
            let mut query = vec![("limit", page_size.as_str())];
            if let Some(f) = folder {
                query.push(("path", f));
            }
            if let Some(s) = session {
                query.push(("session_id", s));
            }
            if all_sessions {
                query.push(("include_all_sessions", "true"));
            }
            if let Some(c) = &cursor {
                query.push(("cursor", c));
            }
            let url = self.api.endpoint(&["files"], &query);
            let mut page = self.api.json(self.api.request(Method::GET, url)).await?;
            let batch = match page.get_mut("files").map(Value::take) {
                Some(Value::Array(batch)) => batch,
                _ => bail!(ApiError::new(
                    "invalid_response",
                    "the listing has no `files` array"
                )),
            };
            files.extend(batch);
            has_more = page
                .get("has_more")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            cursor = page
                .get("next_cursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            let full = limit.is_some_and(|l| files.len() as u32 >= l);
            if !has_more || full || cursor.is_none() {
                break;
            }
        }

        if self.json {
            return print_json(&json!({
                "files": files,
                "has_more": has_more,
                "next_cursor": if has_more { cursor } else { None },
            }));
        }
        let rows = files
            .iter()
            .map(file_view)
            .collect::<anyhow::Result<Vec<_>>>()?;
        print!("{}", file_table(&rows));
        if has_more {
            eprintln!("(more files: raise --limit to see them)");
        }
        Ok(())
    }

    /// `rm`: moves a file to the trash.
    pub async fn rm(&self, id: &str) -> anyhow::Result<()> {
        let url = self.api.endpoint(&["files", id], &[]);
        self.api.send(self.api.request(Method::DELETE, url)).await?;
        if self.json {
            return print_json(&json!({ "id": id, "deleted": true }));
        }
        println!("moved {id} to the trash (undo with `satchel restore {id}`)");
        Ok(())
    }

    /// `restore`: brings a file back from the trash, to its old path or to `path`.
    pub async fn restore(&self, id: &str, path: Option<&str>) -> anyhow::Result<()> {
        let url = self.api.endpoint(&["files", id, "restore"], &[]);
        let body = match path {
            Some(p) => json!({ "path": p }),
            None => json!({}),
        };
        let info = self
            .api
            .json(self.api.request(Method::POST, url).json(&body))
            .await?;
        if self.json {
            return print_json(&info);
        }
        let f = file_view(&info)?;
        println!("restored {} to {}", f.id, f.path);
        Ok(())
    }

    /// `url`: a signed download link.
    pub async fn url(&self, id: &str, expires_in: Option<u64>) -> anyhow::Result<()> {
        let url = self.api.endpoint(&["files", id, "download-url"], &[]);
        let body = match expires_in {
            Some(s) => json!({ "expires_in": s }),
            None => json!({}),
        };
        let answer = self
            .api
            .json(self.api.request(Method::POST, url).json(&body))
            .await?;
        if self.json {
            return print_json(&answer);
        }
        match answer.get("url").and_then(Value::as_str) {
            Some(link) => println!("{link}"),
            None => bail!(ApiError::new("invalid_response", "the answer has no `url`")),
        }
        Ok(())
    }

    /// `usage`: the workspace's used bytes, limit and file count.
    pub async fn usage(&self) -> anyhow::Result<()> {
        let url = self.api.endpoint(&["workspace"], &[]);
        let workspace = self.api.json(self.api.request(Method::GET, url)).await?;
        if self.json {
            return print_json(&workspace);
        }
        let number = |key: &str| {
            workspace.get(key).and_then(Value::as_u64).ok_or_else(|| {
                ApiError::new("invalid_response", format!("the workspace has no `{key}`"))
            })
        };
        let (used, limit, count) = (
            number("used_bytes")?,
            number("limit_bytes")?,
            number("file_count")?,
        );
        println!("used:  {} ({used} bytes)", human_bytes(used));
        if limit == 0 {
            println!("limit: unlimited");
        } else {
            let percent = used as f64 * 100.0 / limit as f64;
            println!(
                "limit: {} ({limit} bytes, {percent:.1}% used)",
                human_bytes(limit)
            );
        }
        println!("files: {count}");
        Ok(())
    }
}

/// `--metadata`: must be a JSON object; sent compact.
fn compact_metadata(raw: &str) -> anyhow::Result<String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v.to_string()),
        Ok(_) => bail!(ApiError::new(
            "invalid_input",
            "--metadata must be a JSON object"
        )),
        Err(e) => bail!(ApiError::new(
            "invalid_input",
            format!("--metadata is not valid JSON: {e}")
        )),
    }
}

/// Fails when the server announced a checksum (its ETag) the received bytes do not have.
fn check_sum(expected: Option<&str>, actual: &str) -> anyhow::Result<()> {
    match expected {
        Some(e) if e != actual => bail!(ApiError::new(
            "checksum_mismatch",
            format!("the downloaded content has SHA-256 {actual}, the server announced {e}")
        )),
        _ => Ok(()),
    }
}

/// `ls`'s table: id, size, mime, path; nothing at all for an empty listing.
fn file_table(rows: &[FileView]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let size_width = rows
        .iter()
        .map(|r| r.size_bytes.to_string().len())
        .chain(["SIZE".len()])
        .max()
        .unwrap_or(4);
    let mime_width = rows
        .iter()
        .map(|r| r.mime_type.len())
        .chain(["MIME".len()])
        .max()
        .unwrap_or(4);
    let id_width = rows
        .iter()
        .map(|r| r.id.len())
        .chain(["ID".len()])
        .max()
        .unwrap_or(2);
    let mut out = format!(
        "{:<id_width$}  {:>size_width$}  {:<mime_width$}  PATH\n",
        "ID", "SIZE", "MIME"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<id_width$}  {:>size_width$}  {:<mime_width$}  {}\n",
            r.id, r.size_bytes, r.mime_type, r.path
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.0 MiB");
    }

    #[test]
    fn metadata_must_be_an_object() {
        assert_eq!(compact_metadata(r#"{ "a": 1 }"#).unwrap(), r#"{"a":1}"#);
        for bad in ["[1]", "3", "{", ""] {
            let err = compact_metadata(bad).unwrap_err();
            assert_eq!(
                err.downcast_ref::<ApiError>().unwrap().code,
                "invalid_input"
            );
        }
    }

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            FileView {
                id: "a".into(),
                path: "/x.txt".into(),
                size_bytes: 5,
                mime_type: "text/plain".into(),
            },
            FileView {
                id: "b".into(),
                path: "/big.bin".into(),
                size_bytes: 123456,
                mime_type: "application/octet-stream".into(),
            },
        ];
        let table = file_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID"));
        assert!(lines[1].ends_with("/x.txt"));
        let path_column = lines[0].find("PATH").unwrap();
        assert_eq!(lines[1].find("/x.txt"), Some(path_column));
        assert_eq!(lines[2].find("/big.bin"), Some(path_column));
        assert_eq!(file_table(&[]), "");
    }

    #[test]
    fn checksum_mismatch_is_reported() {
        assert!(check_sum(None, "ab").is_ok());
        assert!(check_sum(Some("ab"), "ab").is_ok());
        let err = check_sum(Some("ab"), "cd").unwrap_err();
        assert_eq!(
            err.downcast_ref::<ApiError>().unwrap().code,
            "checksum_mismatch"
        );
    }
}
