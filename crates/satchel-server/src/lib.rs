//! The HTTP edge of Satchel (SPEC §7): axum routes, bearer authentication, signed download
//! links, range requests, metrics and the OpenAPI description. Every decision about files is
//! the library's; this crate only translates HTTP to `WorkspaceManager` calls and errors back.

pub mod api;
pub mod auth;
pub mod content;
pub mod drain;
pub mod dto;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod range;

use anyhow::Context;
use axum::http::{HeaderName, Request, Response};
use satchel::signing::Secrets;
use satchel::Satchel;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// How long `run` lets in-flight requests finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The service: the library handle, secrets, token verifier and metrics. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    satchel: Satchel,
    secrets: Secrets,
    verifier: auth::Verifier,
    metrics: metrics::Metrics,
}

impl App {
    /// Loads (or generates, on first start) the secrets and prepares the token verifier.
    pub async fn new(satchel: Satchel) -> anyhow::Result<App> {
        // The library's own copy, so links it signs and links this server checks agree.
        let shared = satchel.clone();
        let secrets = tokio::task::spawn_blocking(move || shared.secrets().cloned())
            .await
            .context("loading secrets")??;
        let verifier = auth::Verifier::new(satchel.config(), &secrets)?;
        Ok(App {
            inner: Arc::new(Inner {
                satchel,
                secrets,
                verifier,
                metrics: metrics::Metrics::default(),
            }),
        })
    }

    pub fn satchel(&self) -> &Satchel {
        &self.inner.satchel
    }

    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    pub fn verifier(&self) -> &auth::Verifier {
        &self.inner.verifier
    }

    pub fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    /// All routes with their middleware: request ids (`x-request-id`, set or propagated) and a
    /// log span per request naming method, route, user, status and duration.
    pub fn router(&self) -> axum::Router {
        let x_request_id = HeaderName::from_static("x-request-id");
        let trace = TraceLayer::new_for_http()
            .make_span_with(|request: &Request<_>| {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %loggable_path(request.uri().path()),
                    request_id = %header("x-request-id"),
                    bytes_in = %header("content-length"),
                    route = tracing::field::Empty,
                    user = tracing::field::Empty,
                )
            })
            .on_request(())
            .on_response(|response: &Response<_>, latency: Duration, _span: &Span| {
                let bytes_out = response
                    .headers()
                    .get("content-length")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .or_else(|| http_body::Body::size_hint(response.body()).exact());
                tracing::info!(
                    status = response.status().as_u16(),
                    duration_ms = latency.as_millis() as u64,
                    bytes_out,
                    "response"
                );
            });
        api::routes(self)
            .layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new(
                        x_request_id.clone(),
                        MakeRequestUuid,
                    ))
                    .layer(PropagateRequestIdLayer::new(x_request_id))
                    .layer(trace),
            )
            .with_state(self.clone())
    }
}

/// Signed-link tokens are credentials: keep them out of logs.
fn loggable_path(path: &str) -> &str {
    if path.starts_with("/v1/download/") {
        "/v1/download/{token}"
    } else {
        path
    }
}

/// Serves until `shutdown` resolves; graceful (in-flight requests finish).
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown)
        .await
}

/// `satchel serve`: opens the library (migrations run there), logs the scanner's status, binds
/// `bind_address`, runs the periodic gc, and serves until SIGINT/SIGTERM.
pub async fn run(config: satchel::Config) -> anyhow::Result<()> {
    let gc_interval = config.gc_interval_s;
    let bind_address = config.bind_address.clone();
    let satchel = Satchel::open(config).await.context("opening satchel")?;
    satchel.check_scanner_at_startup().await;
    let app = App::new(satchel.clone()).await?;
    let listener = tokio::net::TcpListener::bind(&bind_address)
        .await
        .with_context(|| format!("binding {bind_address}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);

    let gc =
        (gc_interval > 0).then(|| tokio::spawn(gc_loop(satchel, Duration::from_secs(gc_interval))));

    let (signalled_tx, mut signalled_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        let _ = signalled_tx.send(true);
    };
    let server = serve(app, listener, shutdown);
    let deadline = async {
        let _ = signalled_rx.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        r = server => r.context("serving"),
        () = deadline => {
            tracing::warn!("requests still running {} s after the shutdown signal; stopping", SHUTDOWN_GRACE.as_secs());
            Ok(())
        }
    };
    if let Some(gc) = gc {
        gc.abort();
    }
    result
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Runs `satchel::maintenance::gc` every `interval`, the first time one interval after start.
async fn gc_loop(satchel: Satchel, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match satchel::maintenance::gc(&satchel, false).await {
            Ok(report) => tracing::debug!(
                trash_purged = report.trash_purged.len(),
                orphan_blobs = report.orphan_blobs.len(),
                staged_files = report.staged_files.len(),
                "gc finished"
            ),
            Err(e) => tracing::error!(error = %e, "gc failed"),
        }
    }
}
