//! Reading what is left of a failed request's body before answering.
//!
//! HTTP/1.1 has no way to refuse a body but to close the connection; a client still writing its
//! upload then gets a reset instead of our `413`/`400`. So on the upload route the body is
//! shared between the handler and this middleware, and after an error response whatever the
//! handler did not read is read and discarded, within a budget (bytes and time), before the
//! response goes out. Bodies known to be larger than the budget are not drained.

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// Most bytes of a failed upload's body read and discarded so the client gets the error.
const DRAIN_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Longest time spent discarding a failed upload's body.
const DRAIN_MAX_TIME: Duration = Duration::from_secs(5);

/// A request body the handler keeps a handle on while the library consumes it, so that what is
/// left of it can be drained after a failure.
#[derive(Clone)]
struct SharedBody(Arc<Mutex<Body>>);

impl SharedBody {
    fn lock(&self) -> std::sync::MutexGuard<'_, Body> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads and discards the rest of the body, within the budget.
    async fn drain(&self, remaining_hint: Option<u64>) {
        if remaining_hint.is_some_and(|n| n > DRAIN_MAX_BYTES) {
            return;
        }
        let body = std::mem::take(&mut *self.lock());
        let mut stream = body.into_data_stream();
        let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
            let mut drained = 0u64;
            while let Some(Ok(chunk)) = stream.next().await {
                drained += chunk.len() as u64;
                if drained > DRAIN_MAX_BYTES {
                    break;
                }
            }
        })
        .await;
    }
}

impl http_body::Body for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut *self.lock()).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.lock().is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.lock().size_hint()
    }
}

/// Middleware: after an error response, drains the rest of the request body.
pub async fn drain_on_error(request: Request, next: Next) -> Response {
    let content_length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (parts, body) = request.into_parts();
    let body = SharedBody(Arc::new(Mutex::new(body)));
    let response = next
        .run(Request::from_parts(parts, Body::new(body.clone())))
        .await;
    if response.status().is_client_error() || response.status().is_server_error() {
        body.drain(content_length).await;
    }
    response
}
