//! Streaming a file's bytes: validators, `Range`, and the headers that make a download safe to
//! open (attachment, `nosniff`, a sandboxing CSP). Used by the authenticated content routes and
//! by signed links alike.

use crate::error::{ApiError, ApiResult};
use crate::range::{parse_range, RangeRequest};
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use satchel::domain::FileRecord;
use satchel::storage::{BlobStream, ByteRange};
use satchel::ErrorCode;
use std::future::Future;

/// The strong entity tag of a file: its checksum, quoted.
pub fn etag(record: &FileRecord) -> String {
    format!("\"{}\"", record.checksum)
}

/// `Content-Disposition: attachment` (RFC 6266 with RFC 5987 `filename*`): the same header
/// the object stores are asked to answer with on signed URLs.
pub use satchel::storage::content_disposition;

/// HTTP-date (RFC 9110 §5.6.7).
fn http_date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison, RFC 9110 §13.1.2).
fn none_match(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

fn header_value(raw: &str) -> HeaderValue {
    HeaderValue::from_str(raw)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

/// Builds the response for a download of `record`. `open` streams the content (or a range of
/// it); it is not called for HEAD, 304 or 416.
pub async fn respond<F, Fut>(
    method: &Method,
    request_headers: &HeaderMap,
    record: &FileRecord,
    open: F,
) -> ApiResult<Response>
where
    F: FnOnce(Option<ByteRange>) -> Fut,
    Fut: Future<Output = satchel::Result<BlobStream>>,
{
    let etag = etag(record);
    let size = record.size_bytes;
    let text = |name: header::HeaderName| request_headers.get(name).and_then(|v| v.to_str().ok());

    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert(header::ETAG, header_value(&etag));
    headers.insert(
        header::LAST_MODIFIED,
        header_value(&http_date(record.updated_at)),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );

    if text(header::IF_NONE_MATCH).is_some_and(|h| none_match(h, &etag)) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(response);
    }

    // `If-Range` with anything but our current ETag means "send it all" (a date is not
    // precise enough to be trusted for a partial response).
    let range_allowed = text(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match text(header::RANGE) {
        Some(h) if range_allowed => parse_range(h, size),
        _ => RangeRequest::Full,
    };
    let (status, selected) = match range {
        RangeRequest::Full => (StatusCode::OK, None),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        RangeRequest::Unsatisfiable => {
            return Err(ApiError::new(
                ErrorCode::RangeNotSatisfiable,
                format!("the requested range is outside the content ({size} bytes)"),
            )
            .with_header(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{size}")),
            ));
        }
    };

    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&record.mime_type));
    headers.insert(
        header::CONTENT_DISPOSITION,
        header_value(&content_disposition(&record.name)),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    let length = selected.map_or(size, |r| r.len());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(r) = selected {
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {}-{}/{size}", r.start, r.end)),
        );
    }
    *response.status_mut() = status;

    if method != Method::HEAD {
        let stream = open(selected).await?;
        *response.body_mut() = Body::from_stream(stream);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disposition_ascii() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            content_disposition("my file.txt"),
            "attachment; filename=\"my file.txt\"; filename*=UTF-8''my%20file.txt"
        );
    }

    #[test]
    fn disposition_escapes_quotes_and_unicode() {
        assert_eq!(
            content_disposition("a\"b\\c.txt"),
            "attachment; filename=\"a_b_c.txt\"; filename*=UTF-8''a%22b%5Cc.txt"
        );
        assert_eq!(
            content_disposition("résumé.pdf"),
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"
        );
        assert!(HeaderValue::from_str(&content_disposition("日本\u{7f}\r\n.txt")).is_ok());
    }

    #[test]
    fn if_none_match() {
        let etag = "\"abc\"";
        assert!(none_match("\"abc\"", etag));
        assert!(none_match("W/\"abc\"", etag));
        assert!(none_match("\"x\", \"abc\"", etag));
        assert!(none_match("*", etag));
        assert!(!none_match("\"abd\"", etag));
        assert!(!none_match("abc", etag));
    }

    #[test]
    fn dates() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-12-03T17:09:34.5Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(http_date(t), "Thu, 03 Dec 2026 17:09:34 GMT");
    }
}
