//! What a `file` string names, decided by its scheme (matched case-insensitively).

use crate::error::{Error, Result};
use url::Url;
use uuid::Uuid;

/// A classified input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaInput<'a> {
    /// `data:…` (the whole string).
    DataUri(&'a str),
    /// `http(s)://…`, parsed (odd host spellings normalised).
    Url(Url),
    /// `workspace://{id}` or `workspace:///path`, with the `#mime` hint if any.
    Workspace {
        target: WorkspaceTarget,
        /// The reference without its fragment, as written.
        reference: &'a str,
        mime_hint: Option<&'a str>,
    },
    /// `gcs://`, `gs://` (taken as `gcs://`) or `s3://`, with the scheme lowercased.
    Cloud(String),
    /// Anything without a scheme: a path relative to the execution folder.
    Local(&'a str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceTarget {
    Id(Uuid),
    /// Percent-decoded; session scoping is applied by the workspace manager.
    Path(String),
}

/// The URI scheme of `raw` (RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":"`),
/// lowercased, if it has one.
fn scheme_of(raw: &str) -> Option<String> {
    let (scheme, _) = raw.split_once(':')?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

pub fn classify(raw: &str) -> Result<MediaInput<'_>> {
    if raw.is_empty() {
        return Err(Error::invalid_input("file must not be empty"));
    }
    let Some(scheme) = scheme_of(raw) else {
        return Ok(MediaInput::Local(raw));
    };
    let rest = &raw[scheme.len() + 1..];
    match scheme.as_str() {
        "data" => Ok(MediaInput::DataUri(raw)),
        "http" | "https" => {
            let url =
                Url::parse(raw).map_err(|e| Error::invalid_input(format!("invalid URL: {e}")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(Error::invalid_input("the URL has no host"));
            }
            Ok(MediaInput::Url(url))
        }
        "workspace" => parse_workspace(raw, rest),
        "gcs" | "gs" | "s3" => {
            let path = rest
                .strip_prefix("//")
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    Error::invalid_input(format!("a {scheme}:// path needs a bucket and a key"))
                })?;
            let scheme = if scheme == "gs" { "gcs" } else { &scheme };
            Ok(MediaInput::Cloud(format!("{scheme}://{path}")))
        }
        other => {
            // Echo at most a short prefix: the input may be megabytes long.
            let shown: String = other.chars().take(32).collect();
            let ellipsis = if shown.len() < other.len() { "…" } else { "" };
            Err(Error::invalid_input(format!(
                "unsupported input scheme \"{shown}{ellipsis}\": use a data URI, an http(s) URL, \
                 workspace://, gcs://, gs://, s3:// or a path in the execution folder"
            )))
        }
    }
}

fn parse_workspace<'a>(raw: &'a str, rest: &'a str) -> Result<MediaInput<'a>> {
    let body = rest.strip_prefix("//").ok_or_else(|| {
        Error::invalid_input("a workspace reference is workspace://{file_id} or workspace:///path")
    })?;
    let (target, hint) = match body.rsplit_once('#') {
        Some((t, h)) => (t, Some(h.trim()).filter(|h| !h.is_empty())),
        None => (body, None),
    };
    let reference = &raw[..raw.len() - body.len() + target.len()];
    let target = if target.starts_with('/') {
        let path = percent_encoding::percent_decode_str(target)
            .decode_utf8()
            .map_err(|_| Error::invalid_path("the workspace path is not UTF-8 once decoded"))?;
        WorkspaceTarget::Path(path.into_owned())
    } else {
        let id = Uuid::parse_str(target).map_err(|_| {
            Error::invalid_input(format!(
                "workspace://{target} is neither a file id (UUID) nor an absolute path"
            ))
        })?;
        WorkspaceTarget::Id(id)
    };
    Ok(MediaInput::Workspace {
        target,
        reference,
        mime_hint: hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn classifies_by_scheme_in_any_case() {
        assert!(matches!(classify("DaTa:,x"), Ok(MediaInput::DataUri(_))));
        assert!(matches!(
            classify("HTTPS://example.com/a.png"),
            Ok(MediaInput::Url(_))
        ));
        assert_eq!(
            classify("GS://bucket/key").unwrap(),
            MediaInput::Cloud("gcs://bucket/key".into())
        );
        assert_eq!(
            classify("s3://b/k").unwrap(),
            MediaInput::Cloud("s3://b/k".into())
        );
        assert_eq!(classify("a/b.png").unwrap(), MediaInput::Local("a/b.png"));
        assert_eq!(
            classify("report 10:30.txt").unwrap(),
            MediaInput::Local("report 10:30.txt")
        );
        assert_eq!(classify("../x").unwrap(), MediaInput::Local("../x"));
    }

    #[test]
    fn workspace_references() {
        let id = Uuid::new_v4();
        let raw = format!("WORKSPACE://{id}#image/png");
        assert_eq!(
            classify(&raw).unwrap(),
            MediaInput::Workspace {
                target: WorkspaceTarget::Id(id),
                reference: &raw[..raw.len() - "#image/png".len()],
                mime_hint: Some("image/png"),
            }
        );
        let raw = "workspace:///docs/a%23b%20c.txt#text/plain";
        assert_eq!(
            classify(raw).unwrap(),
            MediaInput::Workspace {
                target: WorkspaceTarget::Path("/docs/a#b c.txt".into()),
                reference: "workspace:///docs/a%23b%20c.txt",
                mime_hint: Some("text/plain"),
            }
        );
        for bad in ["workspace://", "workspace://not-a-uuid", "workspace:x"] {
            assert_eq!(
                classify(bad).unwrap_err().code,
                ErrorCode::InvalidInput,
                "{bad}"
            );
        }
        assert_eq!(
            classify("workspace:///%FF").unwrap_err().code,
            ErrorCode::InvalidPath
        );
    }

    #[test]
    fn other_schemes_are_refused() {
        for bad in [
            "file:///etc/passwd",
            "FILE:///etc/passwd",
            "ftp://x",
            "gopher://x",
            "javascript:alert(1)",
            "local://ws/file/name",
            "http://",
            "gcs://",
            "",
        ] {
            assert_eq!(
                classify(bad).unwrap_err().code,
                ErrorCode::InvalidInput,
                "{bad}"
            );
        }
    }
}

/// Properties of the classifier: no input panics; `workspace://` ids and paths survive
/// percent-encoding; cloud schemes are normalised and nothing else is taken as cloud.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn never_panics(raw in "(?i:(workspace|gcs|gs|s3|data|https?|file|ftp)(:|://|:///))?.{0,60}") {
            let _ = classify(&raw);
        }

        #[test]
        fn workspace_ids_round_trip(id in any::<u128>(), hint in prop::option::of("[a-z]{1,6}/[a-z]{1,6}")) {
            let id = Uuid::from_u128(id);
            let raw = match &hint { Some(h) => format!("WorkSpace://{id}#{h}"), None => format!("workspace://{id}") };
            match classify(&raw).unwrap() {
                MediaInput::Workspace { target, mime_hint, .. } => {
                    prop_assert_eq!(target, WorkspaceTarget::Id(id));
                    prop_assert_eq!(mime_hint, hint.as_deref());
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn workspace_paths_are_percent_decoded(segments in prop::collection::vec("[a-zA-Z0-9 #%é_.-]{1,10}", 1..4)) {
            let path = format!("/{}", segments.join("/"));
            let encoded: String = percent_encoding::utf8_percent_encode(&path, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%2F", "/");
            match classify(&format!("workspace://{encoded}#text/plain")) {
                Ok(MediaInput::Workspace { target: WorkspaceTarget::Path(p), mime_hint, .. }) => {
                    prop_assert_eq!(p, path);
                    prop_assert_eq!(mime_hint, Some("text/plain"));
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn cloud_schemes_are_normalised(scheme in "(gcs|GCS|gCs|gs|GS|gS|s3|S3)", key in "[a-z0-9/_.-]{1,30}") {
            match classify(&format!("{scheme}://bucket/{key}")).unwrap() {
                MediaInput::Cloud(s) => {
                    prop_assert!(s.starts_with("gcs://bucket/") || s.starts_with("s3://bucket/"), "{}", s);
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
