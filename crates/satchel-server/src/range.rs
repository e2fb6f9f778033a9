//! The `Range` request header (RFC 9110 §14), as a pure function.
//!
//! One `bytes` range is served as 206. Several ranges are answered with the whole body (200):
//! RFC 9110 lets a server ignore `Range`, and a `multipart/byteranges` response is rarely what
//! a client of a file API wants. A header that does not parse, or uses another unit, is ignored
//! as the RFC requires (200 with the whole body).

use satchel::storage::ByteRange;

/// What to send for a request's `Range` header, given the representation's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable `Range`: send everything (200).
    Full,
    /// One satisfiable range (206).
    Partial(ByteRange),
    /// One range that lies entirely outside the content (416).
    Unsatisfiable,
}

/// Interprets a `Range` header value for content of `size` bytes.
pub fn parse_range(header: &str, size: u64) -> RangeRequest {
    let Some((unit, set)) = header.split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Full;
    }
    // RFC 9110 §5.6.1: recipients accept and ignore empty list elements.
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        // None at all (malformed) or several (served whole): either way the full body.
        return RangeRequest::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    match (first, last) {
        // `-n`: the last n bytes.
        ("", suffix) => match digits(suffix) {
            None => RangeRequest::Full,
            Some(0) => RangeRequest::Unsatisfiable,
            Some(_) if size == 0 => RangeRequest::Unsatisfiable,
            Some(n) => RangeRequest::Partial(ByteRange {
                start: size - n.min(size),
                end: size - 1,
            }),
        },
        (first, last) => {
            let Some(start) = digits(first) else {
                return RangeRequest::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match digits(last) {
                    Some(end) if end >= start => end,
                    // `b < a` is an invalid spec, not an unsatisfiable one.
                    _ => return RangeRequest::Full,
                }
            };
            if start >= size {
                return RangeRequest::Unsatisfiable;
            }
            RangeRequest::Partial(ByteRange {
                start,
                end: end.min(size - 1),
            })
        }
    }
}

/// `1*DIGIT` as a number; values past `u64::MAX` saturate (they are past any content's end).
fn digits(raw: &str) -> Option<u64> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(raw.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(start: u64, end: u64) -> RangeRequest {
        RangeRequest::Partial(ByteRange { start, end })
    }

    #[test]
    fn closed_ranges() {
        assert_eq!(parse_range("bytes=0-0", 10), partial(0, 0));
        assert_eq!(parse_range("bytes=2-5", 10), partial(2, 5));
        assert_eq!(parse_range("bytes=0-9", 10), partial(0, 9));
        // An end past the content is clamped.
        assert_eq!(parse_range("bytes=5-100", 10), partial(5, 9));
        assert_eq!(
            parse_range("bytes=5-99999999999999999999999", 10),
            partial(5, 9)
        );
    }

    #[test]
    fn open_ended_and_suffix() {
        assert_eq!(parse_range("bytes=3-", 10), partial(3, 9));
        assert_eq!(parse_range("bytes=9-", 10), partial(9, 9));
        assert_eq!(parse_range("bytes=-3", 10), partial(7, 9));
        // A suffix longer than the content is the whole content.
        assert_eq!(parse_range("bytes=-100", 10), partial(0, 9));
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(parse_range("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=10-20", 10), RangeRequest::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999-", 10),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn malformed_is_ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=a-b",
            "bytes=5-2",
            "bytes=1-2-3",
            "bytes= 1 - 2",
            "bytes=+1-2",
            "bytes=0x1-2",
            "items=0-1",
            "bytes=,",
        ] {
            assert_eq!(parse_range(header, 10), RangeRequest::Full, "{header:?}");
        }
    }

    #[test]
    fn multiple_ranges_are_served_whole() {
        assert_eq!(parse_range("bytes=0-1,3-4", 10), RangeRequest::Full);
        assert_eq!(parse_range("bytes=0-1, -2", 10), RangeRequest::Full);
    }

    #[test]
    fn tolerant_syntax() {
        assert_eq!(parse_range("Bytes=1-2", 10), partial(1, 2));
        assert_eq!(parse_range("bytes= 1-2 ", 10), partial(1, 2));
        // Empty list elements are ignored.
        assert_eq!(parse_range("bytes=1-2,", 10), partial(1, 2));
        assert_eq!(parse_range("bytes=, 1-2", 10), partial(1, 2));
    }
}
