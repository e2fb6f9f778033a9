//! RFC 2397 data URIs: `data:[<mediatype>][;base64],<data>`.
//!
//! The payload is decoded lazily, one bounded chunk per poll, so decoding never holds a second
//! copy of the content: a 50 MiB URI costs the URI itself plus one chunk. Base64 is decoded
//! strictly (standard alphabet, canonical padding, no whitespace); the decoded size is known
//! from the length before any byte is decoded, so an oversized URI fails at once.

use crate::error::{Error, ErrorCode, Result};
use crate::workspace::resolve_mime;
use base64::Engine as _;
use bytes::Bytes;
use futures::Stream;

/// Base64 characters decoded per chunk: a multiple of 4, 192 KiB of output.
const BASE64_CHUNK_CHARS: usize = 4 * 64 * 1024;
/// Percent-encoded characters decoded per chunk.
const PERCENT_CHUNK_CHARS: usize = 256 * 1024;

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidDataUri, message)
}

/// A parsed data URI, borrowing its payload from the input string.
#[derive(Debug, Clone)]
pub struct DataUri<'a> {
    /// Lowercase `type/subtype`, parameters dropped; `text/plain` when the URI names none.
    pub mime: String,
    payload: &'a str,
    base64: bool,
}

impl<'a> DataUri<'a> {
    /// Parses `raw`, which starts with `data:` (any case). Checks the header and, for base64,
    /// the payload's length and padding; the characters are checked while decoding.
    pub fn parse(raw: &'a str) -> Result<Self> {
        let rest = raw
            .get(..5)
            .filter(|s| s.eq_ignore_ascii_case("data:"))
            .map(|_| &raw[5..])
            .ok_or_else(|| invalid("a data URI starts with data:"))?;
        let (header, payload) = rest
            .split_once(',')
            .ok_or_else(|| invalid("a data URI needs a ',' between its header and its data"))?;
        let mut parts = header.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        let params: Vec<&str> = parts.collect();
        let base64 = params
            .last()
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
        let attributes = if base64 {
            &params[..params.len() - 1]
        } else {
            &params[..]
        };
        if let Some(bad) = attributes.iter().find(|p| !p.contains('=')) {
            return Err(invalid(format!(
                "data URI parameter {bad:?} is not name=value (';base64' must come last)"
            )));
        }
        let mime = if media_type.is_empty() {
            "text/plain".to_owned()
        } else {
            resolve_mime(Some(media_type), "")
                .map_err(|_| invalid(format!("data URI media type {media_type:?} is not valid")))?
        };
        if base64 && payload.len() % 4 != 0 {
            return Err(invalid(
                "the base64 data's length is not a multiple of 4 (padding missing or extra characters)",
            ));
        }
        Ok(DataUri {
            mime,
            payload,
            base64,
        })
    }

    /// The decoded size for base64 (exact); an upper bound for percent-encoded data.
    pub fn decoded_len_bound(&self) -> u64 {
        let n = self.payload.len() as u64;
        if self.base64 {
            let padding = self
                .payload
                .bytes()
                .rev()
                .take_while(|&b| b == b'=')
                .count() as u64;
            n / 4 * 3 - padding.min(2)
        } else {
            n
        }
    }

    /// Whether the decoded size is exact (it is for base64).
    pub fn len_is_exact(&self) -> bool {
        self.base64
    }

    /// The decoded content, one chunk per poll.
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes>> + Send + 'a {
        let payload = self.payload.as_bytes();
        let base64 = self.base64;
        let mut offset = 0usize;
        let mut failed = false;
        futures::stream::iter(std::iter::from_fn(move || {
            if failed || offset >= payload.len() {
                return None;
            }
            let next = if base64 {
                decode_base64_chunk(payload, &mut offset)
            } else {
                decode_percent_chunk(payload, &mut offset)
            };
            failed = next.is_err();
            Some(next)
        }))
    }
}

fn decode_base64_chunk(payload: &[u8], offset: &mut usize) -> Result<Bytes> {
    let end = (*offset + BASE64_CHUNK_CHARS).min(payload.len());
    let chunk = &payload[*offset..end];
    // Padding may only end the whole payload, never a chunk in the middle of it.
    if end < payload.len() && chunk.contains(&b'=') {
        return Err(invalid("base64 padding '=' in the middle of the data"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(chunk)
        .map_err(|e| invalid(format!("invalid base64 near offset {}: {e}", *offset)))?;
    *offset = end;
    Ok(Bytes::from(decoded))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_percent_chunk(payload: &[u8], offset: &mut usize) -> Result<Bytes> {
    let mut end = (*offset + PERCENT_CHUNK_CHARS).min(payload.len());
    // Never split a %XX escape: a '%' in the last two places starts one that crosses the cut.
    if end < payload.len() {
        if let Some(i) = payload[end.saturating_sub(2)..end]
            .iter()
            .position(|&b| b == b'%')
        {
            end = end.saturating_sub(2) + i;
        }
    }
    let chunk = &payload[*offset..end];
    let mut out = Vec::with_capacity(chunk.len());
    let mut i = 0;
    while i < chunk.len() {
        if chunk[i] == b'%' {
            let value = chunk
                .get(i + 1..i + 3)
                .and_then(|h| Some(hex_value(h[0])? << 4 | hex_value(h[1])?))
                .ok_or_else(|| {
                    invalid(format!(
                        "invalid percent-escape at offset {} of the data",
                        *offset + i
                    ))
                })?;
            out.push(value);
            i += 3;
        } else {
            out.push(chunk[i]);
            i += 1;
        }
    }
    *offset = end;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    async fn decode(raw: &str) -> Result<(String, Vec<u8>)> {
        let uri = DataUri::parse(raw)?;
        let mime = uri.mime.clone();
        let chunks: Vec<Bytes> = uri.into_stream().try_collect().await?;
        Ok((mime, chunks.concat()))
    }

    #[tokio::test]
    async fn decodes_base64_and_percent_data() {
        let (mime, data) = decode("data:image/PNG;base64,aGVsbG8=").await.unwrap();
        assert_eq!((mime.as_str(), &data[..]), ("image/png", &b"hello"[..]));
        let (mime, data) = decode("DATA:text/plain;charset=UTF-8;Base64,aGk=")
            .await
            .unwrap();
        assert_eq!((mime.as_str(), &data[..]), ("text/plain", &b"hi"[..]));
        let (mime, data) = decode("data:,Hello%2C%20World%21").await.unwrap();
        assert_eq!(
            (mime.as_str(), &data[..]),
            ("text/plain", &b"Hello, World!"[..])
        );
        let (_, data) = decode("data:application/json;charset=utf-8,%7B%7D")
            .await
            .unwrap();
        assert_eq!(&data[..], b"{}");
        let (_, data) = decode("data:text/plain;base64,").await.unwrap();
        assert!(data.is_empty());
    }

    #[tokio::test]
    async fn rejects_bad_uris() {
        for bad in [
            "data:text/plain;base64",
            "data:image/png;base64,aGVsbG8",
            "data:image/png;base64,aGVs bG8=",
            "data:image/png;base64,aGVsbG8*",
            "data:image/png;base64,aGVsbG9=",
            "data:image/png;base64,a===",
            "data:image/png;base64,aG=sbG8=",
            "data:image/png;base64,aGVs%62G8=",
            "data:image/png;base64,aGVsbG8_",
            "data:image/png;base64;charset=utf-8,aGVsbG8=",
            "data:not a type;base64,aGVsbG8=",
            "data:text/plain;flag,abc",
            "data:,100%",
            "data:,%zz",
            "data:,%4",
        ] {
            let err = decode(bad).await.unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidDataUri, "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn streams_large_payloads_in_chunks_with_an_exact_size() {
        let content: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&content);
        let raw = format!("data:application/octet-stream;base64,{encoded}");
        let uri = DataUri::parse(&raw).unwrap();
        assert_eq!(uri.decoded_len_bound(), content.len() as u64);
        assert!(uri.len_is_exact());
        let chunks: Vec<Bytes> = uri.into_stream().try_collect().await.unwrap();
        assert!(chunks.len() > 3);
        assert!(chunks.iter().all(|c| c.len() <= BASE64_CHUNK_CHARS / 4 * 3));
        assert_eq!(chunks.concat(), content);

        // Percent escapes that straddle a chunk boundary.
        let mut raw = String::from("data:,");
        for i in 0..PERCENT_CHUNK_CHARS {
            raw.push_str(if i % 3 == 0 { "%41" } else { "b" });
        }
        let (_, data) = decode(&raw).await.unwrap();
        assert_eq!(
            data.iter().filter(|&&b| b == b'A').count(),
            PERCENT_CHUNK_CHARS.div_ceil(3)
        );
        assert_eq!(data.len(), PERCENT_CHUNK_CHARS);

        // Padding inside a chunk that is not the last one.
        let bad = format!(
            "data:;base64,{}{}",
            "QQ==".repeat(BASE64_CHUNK_CHARS / 4),
            "QUFB"
        );
        let err = decode(&bad).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidDataUri);
    }
}

/// Properties of the decoder: no input panics, whatever decodes within the bound, and every
/// well-formed encoding of any bytes decodes back to them (base64 and percent forms alike).
#[cfg(test)]
mod properties {
    use super::*;
    use base64::Engine;
    use futures::TryStreamExt;
    use proptest::prelude::*;

    fn decode_blocking(raw: &str) -> Result<(String, Vec<u8>, u64)> {
        let uri = DataUri::parse(raw)?;
        let bound = uri.decoded_len_bound();
        let mime = uri.mime.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let chunks: Vec<Bytes> = rt.block_on(uri.into_stream().try_collect())?;
        Ok((mime, chunks.concat(), bound))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_input_never_panics_and_respects_the_bound(raw in "(?i:data:)[a-z/;=+,%0-9A-Za-z]{0,60}") {
            if let Ok((_, bytes, bound)) = decode_blocking(&raw) {
                prop_assert!(bytes.len() as u64 <= bound);
            }
        }

        #[test]
        fn base64_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..3000), mime in "[a-z]{1,8}/[a-z0-9.+-]{1,12}") {
            let raw = format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(&bytes));
            let (got_mime, got, bound) = decode_blocking(&raw).unwrap();
            prop_assert_eq!(got_mime, mime);
            prop_assert_eq!(&got, &bytes);
            prop_assert!(got.len() as u64 <= bound);
        }

        #[test]
        fn percent_form_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..500)) {
            let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let (_, got, _) = decode_blocking(&format!("data:application/octet-stream,{encoded}")).unwrap();
            prop_assert_eq!(got, bytes);
        }

        #[test]
        fn corrupted_base64_is_refused_not_misread(bytes in prop::collection::vec(any::<u8>(), 1..300), at in any::<prop::sample::Index>(), bad in "[!*@#$^&()\\[\\]{}<>?~`|]") {
            let mut text = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let i = at.index(text.len());
            text.replace_range(i..i + 1, &bad);
            let err = decode_blocking(&format!("data:;base64,{text}")).unwrap_err();
            prop_assert_eq!(err.code, ErrorCode::InvalidDataUri);
        }
    }
}
