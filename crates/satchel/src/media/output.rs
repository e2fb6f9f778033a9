//! Turning stored content into what the caller asked for: names with the right extension, and
//! data URIs encoded straight from disk into one preallocated string.

use crate::error::{Error, ErrorCode, Result};
use base64::Engine as _;
use std::io::Read;
use std::path::Path;

/// Bytes read per step of the encoder: a multiple of 3, so no padding appears mid-string.
const ENCODE_CHUNK: usize = 3 * 64 * 1024;

/// The usual extension of a MIME type, with a leading dot; `None` if unknown.
pub fn extension_for(mime: &str) -> Option<String> {
    let common = match mime {
        "image/png" => "png",
        "image/jpeg" | "image/pjpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/svg+xml" => "svg",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        "image/x-icon" | "image/vnd.microsoft.icon" => "ico",
        "image/avif" => "avif",
        "image/heic" => "heic",
        "application/pdf" => "pdf",
        "application/json" => "json",
        "application/xml" | "text/xml" => "xml",
        "application/zip" => "zip",
        "application/gzip" => "gz",
        "application/octet-stream" => "bin",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "text/html" => "html",
        "text/markdown" => "md",
        "text/css" => "css",
        "text/javascript" | "application/javascript" => "js",
        "audio/mpeg" => "mp3",
        "audio/wav" | "audio/x-wav" => "wav",
        "audio/ogg" => "ogg",
        "audio/flac" => "flac",
        "audio/mp4" => "m4a",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        "video/mpeg" => "mpeg",
        _ => {
            // mime_guess lists extensions alphabetically; prefer one that maps back to `mime`.
            let candidates = mime_guess::get_mime_extensions_str(mime)?;
            let ext = candidates
                .iter()
                .find(|ext| mime_guess::from_ext(ext).first_raw() == Some(mime))
                .or(candidates.first())?;
            return Some(format!(".{ext}"));
        }
    };
    Some(format!(".{common}"))
}

/// Whether `name` has an extension (a dot that is neither first nor last).
pub fn has_extension(name: &str) -> bool {
    name.rfind('.').is_some_and(|i| i > 0 && i + 1 < name.len())
}

/// `data:{mime};base64,{…}` of a file, read and encoded in bounded steps into one string
/// allocated at its final size (the output is the only thing that grows with the file).
pub async fn data_uri_of_file(
    path: &Path,
    mime: &str,
    size: u64,
    max_bytes: u64,
) -> Result<String> {
    if size > max_bytes {
        return Err(Error::too_large(max_bytes));
    }
    let path = path.to_owned();
    let mime = mime.to_owned();
    tokio::task::spawn_blocking(move || encode_file(&path, &mime, size, max_bytes))
        .await
        .map_err(|e| Error::internal(format!("encoding a data URI: {e}")))?
}

fn encode_file(path: &Path, mime: &str, size: u64, max_bytes: u64) -> Result<String> {
    let io = |e: std::io::Error| {
        Error::new(
            ErrorCode::StorageUnavailable,
            format!("reading {}: {e}", path.display()),
        )
    };
    let prefix_len = "data:".len() + mime.len() + ";base64,".len();
    let encoded_len =
        usize::try_from(size.div_ceil(3) * 4).map_err(|_| Error::too_large(max_bytes))?;
    let mut out = String::with_capacity(prefix_len + encoded_len);
    out.push_str("data:");
    out.push_str(mime);
    out.push_str(";base64,");
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut buf = vec![0u8; ENCODE_CHUNK];
    let mut total: u64 = 0;
    loop {
        // Fill the buffer completely (short reads happen) so every step but the last is a
        // multiple of 3 bytes.
        let mut filled = 0;
        while filled < buf.len() {
            match file.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(e)),
            }
        }
        if filled == 0 {
            break;
        }
        total += filled as u64;
        if total > max_bytes {
            return Err(Error::too_large(max_bytes));
        }
        base64::engine::general_purpose::STANDARD.encode_string(&buf[..filled], &mut out);
        if filled < buf.len() {
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions() {
        assert_eq!(extension_for("image/png").as_deref(), Some(".png"));
        assert_eq!(extension_for("image/jpeg").as_deref(), Some(".jpg"));
        assert_eq!(extension_for("text/plain").as_deref(), Some(".txt"));
        assert_eq!(extension_for("application/x-nothing-known"), None);
        assert!(has_extension("a.png"));
        assert!(!has_extension("README"));
        assert!(!has_extension(".env"));
        assert!(!has_extension("a."));
    }

    #[tokio::test]
    async fn encodes_files_of_every_remainder() {
        let dir = tempfile::tempdir().unwrap();
        for len in [
            0usize,
            1,
            2,
            3,
            ENCODE_CHUNK - 1,
            ENCODE_CHUNK,
            ENCODE_CHUNK + 1,
            3 * ENCODE_CHUNK + 2,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            std::fs::write(&path, &data).unwrap();
            let uri = data_uri_of_file(&path, "image/png", len as u64, u64::MAX)
                .await
                .unwrap();
            let expected = format!(
                "data:image/png;base64,{}",
                base64::engine::general_purpose::STANDARD.encode(&data)
            );
            assert_eq!(uri, expected, "{len}");
            assert_eq!(uri.capacity(), uri.len(), "preallocated exactly ({len})");
        }
        let path = dir.path().join("big");
        std::fs::write(&path, [0u8; 10]).unwrap();
        let err = data_uri_of_file(&path, "a/b", 10, 9).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::FileTooLarge);
    }
}
