use crate::error::{Error, Result};

/// Longest storage name we emit, in bytes; leaves room under the usual 255-byte file-name limit.
const MAX_STORAGE_NAME_BYTES: usize = 200;

/// A user-supplied file name, reduced to its last segment (SPEC §10), with a storage-safe form.
///
/// `display` is what the user sees (the `name` column); `storage` is what goes into a blob key
/// or onto disk: no separators, no control or shell-hostile characters, never `.`/`..`, bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName {
    display: String,
    storage: String,
}

impl FileName {
    pub fn parse(raw: &str) -> Result<Self> {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
        let display: String = unicode_normalization::UnicodeNormalization::nfc(last).collect();
        if display.is_empty() || display == "." || display == ".." {
            return Err(Error::invalid_input(format!(
                "filename {raw:?} has no usable last segment"
            )));
        }
        if display.chars().any(char::is_control) {
            return Err(Error::invalid_input(
                "filename must not contain control characters",
            ));
        }
        if display.len() > super::MAX_SEGMENT_BYTES {
            return Err(Error::invalid_input(format!(
                "filename is longer than {} bytes",
                super::MAX_SEGMENT_BYTES
            )));
        }
        let storage = sanitize_for_storage(&display);
        Ok(FileName { display, storage })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }

    pub fn storage_name(&self) -> &str {
        &self.storage
    }
}

/// Maps a display name to a name that is safe on every filesystem and object store we write to.
/// Letters and digits of any script survive; everything else but `.`, `-`, `_` becomes `_`.
pub fn sanitize_for_storage(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with('.') {
        out.insert(0, '_');
    }
    if out.chars().all(|c| c == '.' || c == '_') {
        out = format!("file{out}");
    }
    // Last, so that nothing added above can push the name over the limit.
    if out.len() > MAX_STORAGE_NAME_BYTES {
        out = truncate_keeping_extension(&out, MAX_STORAGE_NAME_BYTES);
    }
    out
}

fn truncate_keeping_extension(name: &str, max: usize) -> String {
    let ext = match name.rfind('.') {
        Some(i) if name.len() - i <= 16 => &name[i..],
        _ => "",
    };
    let mut stem_end = max - ext.len();
    while !name.is_char_boundary(stem_end) {
        stem_end -= 1;
    }
    format!("{}{}", &name[..stem_end], ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_last_segment() {
        let f = FileName::parse("a/b\\c/report.pdf").unwrap();
        assert_eq!(f.as_str(), "report.pdf");
        assert_eq!(f.storage_name(), "report.pdf");
    }

    #[test]
    fn rejects_unusable_names() {
        for bad in [
            "",
            ".",
            "..",
            "a/",
            "x/..",
            "a\\..",
            "bad\u{7}name",
            "nul\0",
        ] {
            assert_eq!(
                FileName::parse(bad).unwrap_err().code,
                crate::ErrorCode::InvalidInput,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn storage_name_is_safe() {
        let f = FileName::parse("my file:*?<>|.tar.gz").unwrap();
        assert_eq!(f.as_str(), "my file:*?<>|.tar.gz");
        assert_eq!(f.storage_name(), "my_file______.tar.gz");
        assert_eq!(FileName::parse(".env").unwrap().storage_name(), "_.env");
        assert_eq!(FileName::parse("...").unwrap().storage_name(), "file_...");
        assert_eq!(
            FileName::parse("日本語.txt").unwrap().storage_name(),
            "日本語.txt"
        );
        let long = format!("{}.png", "é".repeat(120));
        let s = FileName::parse(&long).unwrap();
        assert!(s.storage_name().len() <= MAX_STORAGE_NAME_BYTES);
        assert!(s.storage_name().ends_with(".png"));
    }
}
