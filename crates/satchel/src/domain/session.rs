use crate::error::{Error, Result};
use std::fmt;

/// An agent session id: `[A-Za-z0-9_-]{1,128}` (SPEC §2). Safe to embed in a path segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn parse(raw: &str) -> Result<Self> {
        if is_token(raw) {
            Ok(SessionId(raw.to_owned()))
        } else {
            Err(Error::invalid_input(format!(
                "session_id must match [A-Za-z0-9_-]{{1,128}}, got {raw:?}"
            )))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[A-Za-z0-9_-]{1,128}`: the shape of session ids and execution ids.
pub fn is_token(raw: &str) -> bool {
    !raw.is_empty()
        && raw.len() <= 128
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_tokens_and_rejects_the_rest() {
        assert!(SessionId::parse("abc_DEF-123").is_ok());
        assert!(SessionId::parse(&"a".repeat(128)).is_ok());
        for bad in ["", "..", "a/b", "a b", "a.b", "é", &"a".repeat(129), "a\0"] {
            let err = SessionId::parse(bad).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::InvalidInput, "{bad:?}");
        }
    }
}
