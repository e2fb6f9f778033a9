//! The HTTP side of the client commands: endpoint URLs, the bearer token, and turning every
//! failure (the server's JSON error, an unreachable server) into one [`ApiError`] with a code.

use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Where the client commands look for the server unless `SATCHEL_URL` says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// A failure the user sees as `error: <code>: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The server's error body: `{"error": {"code": ..., "message": ...}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    code: String,
    #[serde(default)]
    message: String,
}

/// A client of one Satchel server.
pub struct Api {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Api {
    /// `base` is the server's URL without `/v1`, e.g. `http://127.0.0.1:8080`.
    pub fn new(base: &str, token: Option<&str>) -> Result<Api, ApiError> {
        let invalid =
            |why: &str| ApiError::new("invalid_input", format!("SATCHEL_URL {base:?}: {why}"));
        let base = match base.trim() {
            "" => DEFAULT_URL,
            given => given,
        };
        let base = Url::parse(base).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected an http:// or https:// URL"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("expected a base URL without query or fragment"));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("satchel-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::new("internal", format!("cannot set up HTTP: {e}")))?;
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        Ok(Api { http, base, token })
    }

    /// `{base}/v1/{segments...}?{query}`; each segment is percent-encoded as needed.
    pub fn endpoint(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v1").extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// A request with the bearer token, if there is one.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; anything but a 2xx answer becomes an [`ApiError`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ApiError> {
        let response = request.send().await.map_err(|e| self.transport_error(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.error_from(response).await)
    }

    /// Sends a request and reads its JSON answer.
    pub async fn json(&self, request: RequestBuilder) -> Result<serde_json::Value, ApiError> {
        let response = self.send(request).await?;
        self.read_json(response).await
    }

    pub async fn read_json(&self, response: Response) -> Result<serde_json::Value, ApiError> {
        response
            .json()
            .await
            .map_err(|e| ApiError::new("invalid_response", error_chain(&e)))
    }

    /// A failure below HTTP: the server could not be reached, or the exchange broke off.
    pub fn transport_error(&self, err: &reqwest::Error) -> ApiError {
        if err.is_connect() || err.is_timeout() {
            // The innermost cause ("Connection refused") is the informative part.
            let mut cause: &dyn std::error::Error = err;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let base = self.base.as_str().trim_end_matches('/');
            ApiError::new("unreachable", format!("cannot reach {base}: {cause}"))
        } else {
            ApiError::new("transfer_failed", error_chain(err))
        }
    }

    async fn error_from(&self, response: Response) -> ApiError {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let mut error = match serde_json::from_str::<ErrorBody>(&body) {
            Ok(parsed) => ApiError::new(parsed.error.code, parsed.error.message),
            Err(_) => ApiError::new(
                format!("http_{}", status.as_u16()),
                describe_unexpected(status, &body),
            ),
        };
        if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
            error
                .message
                .push_str(" (no token given: set SATCHEL_TOKEN or pass --token)");
        }
        error
    }
}

/// A status without the JSON error body (a proxy, or not a Satchel server).
fn describe_unexpected(status: StatusCode, body: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("unexpected status");
    let snippet: String = body.trim().chars().take(200).collect();
    if snippet.is_empty() {
        format!("the server answered {} {reason}", status.as_u16())
    } else {
        format!(
            "the server answered {} {reason}: {snippet}",
            status.as_u16()
        )
    }
}

/// An error and its causes on one line (reqwest's own message alone says little).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_join_segments_and_encode_them() {
        let api = Api::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(
            api.endpoint(&["files", "abc", "content"], &[]).as_str(),
            "http://127.0.0.1:8080/v1/files/abc/content"
        );
        assert_eq!(
            api.endpoint(&["files", "a/b c"], &[("path", "/x y&z")])
                .as_str(),
            "http://127.0.0.1:8080/v1/files/a%2Fb%20c?path=%2Fx+y%26z"
        );
        let prefixed = Api::new("https://host/satchel/", Some("t")).unwrap();
        assert_eq!(
            prefixed.endpoint(&["workspace"], &[]).as_str(),
            "https://host/satchel/v1/workspace"
        );
    }

    #[test]
    fn an_empty_base_means_the_default() {
        let api = Api::new(" ", None).unwrap();
        assert_eq!(
            api.endpoint(&["workspace"], &[]).as_str(),
            "http://127.0.0.1:8080/v1/workspace"
        );
    }

    #[test]
    fn refuses_bases_that_are_not_http() {
        for base in [
            "localhost:8080",
            "ftp://host",
            "http://host/?q=1",
            "http://",
        ] {
            let err = Api::new(base, None).err().expect(base);
            assert_eq!(err.code, "invalid_input", "{base}");
        }
    }
}
