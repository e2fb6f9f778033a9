//! The guarded URL fetcher (SPEC §6): http(s) only, every resolved address checked by
//! [`is_allowed`](super::address_policy::is_allowed), the connection pinned to the checked
//! addresses, redirects followed by hand and re-checked, and the whole fetch under one deadline.
//!
//! Pinning: each hop resolves the host itself, checks every address, and builds a one-shot
//! `reqwest` client whose resolver answers only that host, only with those addresses. `reqwest`
//! keeps the URL's host for the `Host` header and TLS SNI, so certificates are verified against
//! the name while the socket goes to an address that was checked: a DNS answer that changes
//! between the check and the connect (rebinding) is never used. IP-literal hosts are not
//! resolved at all; they are checked as they are. Proxies from the environment are ignored.

use super::address_policy::is_allowed;
use crate::error::{Error, ErrorCode, Result};
use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};
use url::{Host, Url};

/// Most redirects followed for one fetch.
pub const MAX_REDIRECTS: usize = 10;
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A response body: bytes in arrival order, any failure already an [`Error`].
pub type Body = Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>;

/// How a fetch is bounded.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// The whole fetch: resolution, connects, redirects and the body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Lowercase host names exempt from the address check.
    pub allow_hosts: Vec<String>,
}

impl FetchPolicy {
    pub fn from_config(config: &crate::Config) -> Self {
        FetchPolicy {
            timeout: Duration::from_secs(config.media_url_timeout_s.max(1)),
            connect_timeout: CONNECT_TIMEOUT,
            allow_hosts: config.media_url_allow_hosts.clone(),
        }
    }

    fn exempts(&self, host: &str) -> bool {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.');
        self.allow_hosts.iter().any(|allowed| {
            allowed
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim_end_matches('.')
                .eq_ignore_ascii_case(host)
        })
    }
}

/// A successful (2xx) response whose body has not been read yet.
pub struct Fetched {
    /// The URL that answered, after redirects (without credentials).
    pub final_url: Url,
    /// `Content-Type` as sent (not validated).
    pub content_type: Option<String>,
    pub content_length: Option<u64>,
    /// Streams the body; fails with `upstream_failed` on a read error or at the deadline.
    pub body: Body,
}

fn upstream(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::UpstreamFailed, message)
}

fn not_allowed(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::UrlNotAllowed, message)
}

fn timed_out(policy: &FetchPolicy) -> Error {
    upstream(format!(
        "the fetch did not complete within media_url_timeout_s ({} s)",
        policy.timeout.as_secs()
    ))
}

/// The URL without `user:pass@`.
fn without_credentials(url: &Url) -> Url {
    let mut clean = url.clone();
    // Only fails for URLs that cannot have credentials, which then have none.
    let _ = clean.set_username("");
    let _ = clean.set_password(None);
    clean
}

/// `user:pass@` as a Basic `Authorization` header.
fn basic_auth(url: &Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let mut pair = decode(url.username());
    pair.push(b':');
    pair.extend(decode(url.password().unwrap_or("")));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Fetches `url`, following redirects, and returns the response whose body is still to be
/// read. Credentials in the URL go only to its own origin (scheme, host, port): once a redirect
/// leaves it, they are not sent again. No cookies are ever sent.
pub async fn fetch(url: &Url, policy: &FetchPolicy) -> Result<Fetched> {
    let deadline = Instant::now() + policy.timeout;
    let origin = url.origin();
    let credentials = basic_auth(url);
    let mut send_credentials = credentials.is_some();
    let mut current = without_credentials(url);
    let mut redirects = 0;
    loop {
        if !matches!(current.scheme(), "http" | "https") {
            return Err(not_allowed(format!(
                "redirected to a {}: URL; only http and https are fetched",
                current.scheme()
            )));
        }
        if current.origin() != origin {
            send_credentials = false;
        }
        let auth = credentials.as_ref().filter(|_| send_credentials);
        let response = tokio::time::timeout_at(deadline, hop(&current, policy, auth))
            .await
            .map_err(|_| timed_out(policy))??;
        let status = response.status();
        if status.is_success() {
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let content_length = response.content_length();
            let body = response.bytes_stream().map(|chunk| {
                chunk.map_err(|e| upstream(format!("reading the response body: {e}")))
            });
            return Ok(Fetched {
                final_url: current,
                content_type,
                content_length,
                body: Box::pin(Deadline {
                    inner: Box::pin(body),
                    sleep: Box::pin(tokio::time::sleep_until(deadline)),
                    timeout: policy.timeout,
                    done: false,
                }),
            });
        }
        let host = current.host_str().unwrap_or_default().to_owned();
        if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
            return Err(upstream(format!("{host} answered HTTP {status}")));
        }
        if redirects == MAX_REDIRECTS {
            return Err(upstream(format!(
                "too many redirects (more than {MAX_REDIRECTS})"
            )));
        }
        redirects += 1;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| upstream(format!("{host} redirected without a usable Location")))?;
        let next = current
            .join(location)
            .map_err(|e| upstream(format!("{host} redirected to an invalid URL: {e}")))?;
        // Credentials a redirect embeds are not adopted.
        current = without_credentials(&next);
    }
}

/// One request: resolve, check, connect to the checked addresses only.
async fn hop(
    url: &Url,
    policy: &FetchPolicy,
    auth: Option<&HeaderValue>,
) -> Result<reqwest::Response> {
    let host = url
        .host()
        .ok_or_else(|| Error::invalid_input("the URL has no host"))?;
    let host_str = url.host_str().unwrap_or_default().to_owned();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| Error::invalid_input("the URL has no port"))?;
    let exempt = policy.exempts(&host_str);
    if !exempt && is_localhost_name(&host) {
        return Err(not_allowed(format!(
            "{host_str} is a loopback name, not a public address"
        )));
    }
    let addrs: Vec<SocketAddr> = match &host {
        Host::Ipv4(ip) => vec![SocketAddr::new(IpAddr::V4(*ip), port)],
        Host::Ipv6(ip) => vec![SocketAddr::new(IpAddr::V6(*ip), port)],
        Host::Domain(domain) => tokio::net::lookup_host((*domain, port))
            .await
            .map_err(|e| upstream(format!("cannot resolve {domain}: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(upstream(format!("{host_str} has no address")));
    }
    if !exempt {
        if let Some(refused) = addrs.iter().find(|a| !is_allowed(a.ip())) {
            return Err(not_allowed(format!(
                "{host_str} resolves to {}, which is not a public address",
                refused.ip()
            )));
        }
    }
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(policy.connect_timeout)
        .pool_max_idle_per_host(0)
        .user_agent(concat!("satchel/", env!("CARGO_PKG_VERSION")));
    if let Host::Domain(domain) = host {
        builder = builder.dns_resolver(Arc::new(PinnedResolver {
            name: domain.to_ascii_lowercase(),
            addrs,
        }));
    }
    let client = builder
        .build()
        .map_err(|e| Error::internal(format!("building the HTTP client: {e}")))?;
    let mut request = client.get(url.clone());
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth.clone());
    }
    request.send().await.map_err(|e| {
        let e = e.without_url();
        upstream(format!("fetching from {host_str} failed: {e}"))
    })
}

/// `localhost`, `*.localhost` (RFC 6761), with or without the root's trailing dot: loopback
/// whatever DNS says, and not always resolvable (`localhost.`), so refused by name.
fn is_localhost_name(host: &Host<&str>) -> bool {
    let Host::Domain(name) = host else {
        return false;
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Answers only the checked host, only with the checked addresses.
struct PinnedResolver {
    name: String,
    addrs: Vec<SocketAddr>,
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let answer: reqwest::dns::Addrs = Box::new(self.addrs.clone().into_iter());
        let result = if name.as_str().eq_ignore_ascii_case(&self.name) {
            Ok(answer)
        } else {
            Err(format!("{} was not checked by the address policy", name.as_str()).into())
        };
        Box::pin(std::future::ready(result))
    }
}

/// Ends a body with `upstream_failed` when the fetch's deadline passes.
struct Deadline {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
    timeout: Duration,
    done: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(upstream(format!(
                "the fetch did not complete within media_url_timeout_s ({} s)",
                self.timeout.as_secs()
            )))));
        }
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None | Some(Err(_))) = &next {
            self.done = true;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_basic_auth_and_leave_the_url() {
        let url = Url::parse("https://us%40er:p%3Ass@example.com/a").unwrap();
        let header = basic_auth(&url).unwrap();
        let expected = base64::engine::general_purpose::STANDARD.encode("us@er:p:ss");
        assert_eq!(header.to_str().unwrap(), format!("Basic {expected}"));
        assert!(header.is_sensitive());
        assert_eq!(without_credentials(&url).as_str(), "https://example.com/a");
        assert!(basic_auth(&Url::parse("https://example.com/").unwrap()).is_none());
    }

    #[test]
    fn localhost_names_are_loopback() {
        for name in ["localhost", "LOCALHOST.", "api.localhost", "a.b.localhost."] {
            let url = Url::parse(&format!("http://{name}/")).unwrap();
            assert!(is_localhost_name(&url.host().unwrap()), "{name}");
        }
        for name in ["localhost.example", "notlocalhost", "127.0.0.1"] {
            let url = Url::parse(&format!("http://{name}/")).unwrap();
            assert!(!is_localhost_name(&url.host().unwrap()), "{name}");
        }
    }

    #[test]
    fn allow_list_matches_host_names_without_port_or_case() {
        let policy = FetchPolicy {
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            allow_hosts: vec!["files.internal".into(), "::1".into()],
        };
        assert!(policy.exempts("files.internal"));
        assert!(policy.exempts("FILES.internal."));
        assert!(policy.exempts("[::1]"));
        assert!(!policy.exempts("files.internal.evil"));
        assert!(!policy.exempts("internal"));
    }
}
