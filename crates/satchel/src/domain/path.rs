use super::SessionId;
use crate::error::{Error, Result};
use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// Longest stored path in bytes, after session scoping (SPEC §2).
pub const MAX_PATH_BYTES: usize = 1024;
/// Longest single path segment in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;
const SESSIONS_ROOT: &str = "sessions";

/// A normalised absolute path of a stored file: `/a/b.txt`. Never `/`, never ends with `/`,
/// never contains `..`, empty or `.` segments, `\`, or control characters; NFC; bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath(String);

/// A normalised folder: `/` or `/a/b/` (always ends with `/`). Listing a folder matches every
/// path that starts with it, so `/docs/` never matches `/docs2/x`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FolderPath(String);

/// Splits and checks a raw path: NFC, `\`/control characters rejected, `..` rejected,
/// empty and `.` segments dropped.
fn parse_segments(raw: &str) -> Result<Vec<String>> {
    let normalized: String = raw.nfc().collect();
    if let Some(c) = normalized.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(Error::invalid_path(format!(
            "path must not contain {c:?} (control characters and backslashes are rejected)"
        )));
    }
    let mut segments = Vec::new();
    for segment in normalized.split('/') {
        match segment {
            "" | "." => continue,
            ".." => return Err(Error::invalid_path("path must not contain '..' segments")),
            s if s.len() > MAX_SEGMENT_BYTES => {
                return Err(Error::invalid_path(format!(
                    "path segment longer than {MAX_SEGMENT_BYTES} bytes"
                )))
            }
            s => segments.push(s.to_owned()),
        }
    }
    Ok(segments)
}

fn join(segments: &[String]) -> String {
    let mut out = String::with_capacity(segments.iter().map(|s| s.len() + 1).sum());
    for s in segments {
        out.push('/');
        out.push_str(s);
    }
    out
}

impl VirtualPath {
    /// Parses a path as absolute, without session scoping.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::from_segments(parse_segments(raw)?)
    }

    fn from_segments(segments: Vec<String>) -> Result<Self> {
        if segments.is_empty() {
            return Err(Error::invalid_path("path names no file"));
        }
        let joined = join(&segments);
        if joined.len() > MAX_PATH_BYTES {
            return Err(Error::invalid_path(format!(
                "path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        Ok(VirtualPath(joined))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The folder holding this path.
    pub fn parent(&self) -> FolderPath {
        let cut = self.0.rfind('/').map_or(0, |i| i + 1);
        FolderPath(self.0[..cut].to_owned())
    }

    /// Wraps a path read back from the catalog, which only ever stores parsed paths.
    pub(crate) fn from_trusted(path: String) -> Self {
        VirtualPath(path)
    }
}

impl FolderPath {
    pub fn root() -> Self {
        FolderPath("/".to_owned())
    }

    /// Parses a folder as absolute, without session scoping.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::from_segments(&parse_segments(raw)?)
    }

    fn from_segments(segments: &[String]) -> Result<Self> {
        let mut joined = join(segments);
        joined.push('/');
        if joined.len() > MAX_PATH_BYTES {
            return Err(Error::invalid_path(format!(
                "path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        Ok(FolderPath(joined))
    }

    /// The prefix every path in this folder starts with, ending with `/`.
    pub fn as_prefix(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    pub fn contains(&self, path: &VirtualPath) -> bool {
        path.as_str().starts_with(&self.0)
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for FolderPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How raw paths are resolved for one manager: session scoping with `/sessions/` and the
/// configured shared roots taken literally (SPEC §2).
#[derive(Debug, Clone, Default)]
pub struct PathScope {
    session: Option<SessionId>,
    shared_roots: Vec<FolderPath>,
}

impl PathScope {
    pub fn new(session: Option<SessionId>, shared_roots: Vec<FolderPath>) -> Self {
        PathScope {
            session,
            shared_roots,
        }
    }

    pub fn session(&self) -> Option<&SessionId> {
        self.session.as_ref()
    }

    /// Segments after scoping: a relative path, or an absolute one outside `/sessions/` and the
    /// shared roots, goes under `/sessions/{S}/` when the scope has a session.
    ///
    /// A file is taken literally only when it lies strictly *under* `/sessions/` or a shared
    /// root (`/sessions` itself names a file that gets scoped like any other); a folder also
    /// when it *is* one of them (listing `/shared` lists the shared root).
    fn scoped_segments(&self, raw: &str, is_folder: bool) -> Result<Vec<String>> {
        let segments = parse_segments(raw)?;
        let Some(session) = &self.session else {
            return Ok(segments);
        };
        let absolute = raw.starts_with('/');
        if absolute && self.is_literal(&segments, is_folder) {
            return Ok(segments);
        }
        let mut scoped = vec![SESSIONS_ROOT.to_owned(), session.as_str().to_owned()];
        scoped.extend(segments);
        Ok(scoped)
    }

    fn is_literal(&self, segments: &[String], is_folder: bool) -> bool {
        // For a file, the containing folder must start with the root; for a folder, itself.
        let folder = if is_folder {
            format!("{}/", join(segments))
        } else {
            match segments.split_last() {
                Some((_, parent)) => format!("{}/", join(parent)),
                None => return false,
            }
        };
        folder.starts_with(&format!("/{SESSIONS_ROOT}/"))
            || self
                .shared_roots
                .iter()
                .any(|root| folder.starts_with(root.as_prefix()))
    }

    /// Resolves the path of a file.
    pub fn file(&self, raw: &str) -> Result<VirtualPath> {
        if parse_segments(raw)?.is_empty() {
            return Err(Error::invalid_path("path names no file"));
        }
        VirtualPath::from_segments(self.scoped_segments(raw, false)?)
    }

    /// Resolves a folder for listing; `None` is the session folder, or the root without one.
    pub fn folder(&self, raw: Option<&str>) -> Result<FolderPath> {
        match raw {
            Some(raw) => FolderPath::from_segments(&self.scoped_segments(raw, true)?),
            None => match &self.session {
                Some(s) => FolderPath::parse(&format!("/{SESSIONS_ROOT}/{s}/")),
                None => Ok(FolderPath::root()),
            },
        }
    }

    /// The folder of one session: `/sessions/{S}/`.
    pub fn session_folder(session: &SessionId) -> FolderPath {
        FolderPath(format!("/{SESSIONS_ROOT}/{session}/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(session: Option<&str>) -> PathScope {
        PathScope::new(
            session.map(|s| SessionId::parse(s).unwrap()),
            vec![FolderPath::parse("/shared").unwrap()],
        )
    }

    #[test]
    fn normalises() {
        assert_eq!(VirtualPath::parse("/a//./b/").unwrap().as_str(), "/a/b");
        assert_eq!(VirtualPath::parse("a/b").unwrap().as_str(), "/a/b");
        // NFD "é" becomes NFC.
        assert_eq!(VirtualPath::parse("/e\u{301}").unwrap().as_str(), "/\u{e9}");
    }

    #[test]
    fn rejects_bad_paths() {
        let long_segment = format!("/{}", "a".repeat(256));
        let long_path = "/abcdefghi".repeat(103);
        for bad in [
            "/a/../b",
            "..",
            "/a\\b",
            "/a\0b",
            "/a\u{1}b",
            "/a\u{7f}",
            "/a\u{85}",
            "/",
            "",
            "./.",
            long_segment.as_str(),
            long_path.as_str(),
        ] {
            assert_eq!(
                VirtualPath::parse(bad).unwrap_err().code,
                crate::ErrorCode::InvalidPath,
                "{bad:?}"
            );
        }
        assert!(VirtualPath::parse(&format!("/{}", "a".repeat(255))).is_ok());
    }

    #[test]
    fn session_scoping() {
        let s = scope(Some("S1"));
        assert_eq!(
            s.file("report.pdf").unwrap().as_str(),
            "/sessions/S1/report.pdf"
        );
        assert_eq!(s.file("/a/b").unwrap().as_str(), "/sessions/S1/a/b");
        assert_eq!(s.file("/sessions/S2/x").unwrap().as_str(), "/sessions/S2/x");
        assert_eq!(s.file("/shared/x").unwrap().as_str(), "/shared/x");
        assert_eq!(
            s.file("/shared2/x").unwrap().as_str(),
            "/sessions/S1/shared2/x"
        );
        assert_eq!(s.folder(None).unwrap().as_prefix(), "/sessions/S1/");
        for empty in ["", "/", "./", "//"] {
            assert_eq!(
                s.file(empty).unwrap_err().code,
                crate::ErrorCode::InvalidPath
            );
        }
        assert_eq!(
            s.folder(Some("/docs")).unwrap().as_prefix(),
            "/sessions/S1/docs/"
        );
        let none = scope(None);
        assert_eq!(none.file("a/b").unwrap().as_str(), "/a/b");
        assert!(none.folder(None).unwrap().is_root());
        assert_eq!(none.folder(Some("/docs/")).unwrap().as_prefix(), "/docs/");
    }

    #[test]
    fn length_limit_applies_after_scoping() {
        let s = scope(Some("S1"));
        let raw = format!("/{}", "a/".repeat(511)); // 1022 bytes as given
        assert!(VirtualPath::parse(&raw).is_ok());
        assert_eq!(
            s.file(&raw).unwrap_err().code,
            crate::ErrorCode::InvalidPath
        );
    }

    #[test]
    fn folder_prefix_is_exact() {
        let f = FolderPath::parse("/docs").unwrap();
        assert!(f.contains(&VirtualPath::parse("/docs/a").unwrap()));
        assert!(!f.contains(&VirtualPath::parse("/docs2/a").unwrap()));
        assert_eq!(
            VirtualPath::parse("/a/b/c").unwrap().parent().as_prefix(),
            "/a/b/"
        );
    }
}
