//! The caller's workspace, and the service's own routes: health, readiness, metrics, OpenAPI.

use crate::auth::User;
use crate::dto::{Health, Readiness, WorkspaceInfo};
use crate::error::{ApiResult, ErrorBody};
use crate::App;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::future::Future;
use std::time::Duration;

/// How long a readiness probe waits for each dependency.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The caller's workspace (created on first use) with its usage and quota.
#[utoipa::path(
    get,
    path = "/v1/workspace",
    tag = "workspace",
    responses((status = 200, body = WorkspaceInfo), (status = 401, body = ErrorBody)),
    security(("bearer" = [])),
)]
pub async fn get_workspace(
    State(app): State<App>,
    User(user): User,
) -> ApiResult<Json<WorkspaceInfo>> {
    let manager = app.satchel().workspace(&user, None).await?;
    Ok(Json(WorkspaceInfo::from(&manager.usage().await?)))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

async fn probe<E: std::fmt::Display>(check: impl Future<Output = Result<(), E>>) -> String {
    match tokio::time::timeout(PROBE_TIMEOUT, check).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
    }
}

/// Readiness: database, storage and scanner reachable (a disabled scanner counts as ready).
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is not reachable", body = Readiness),
    ),
)]
pub async fn readyz(State(app): State<App>) -> (StatusCode, Json<Readiness>) {
    let satchel = app.satchel();
    let scanner = async {
        if satchel.scanner().enabled() {
            probe(satchel.scanner().ping()).await
        } else {
            "disabled".to_owned()
        }
    };
    let (database, storage, scanner) = tokio::join!(
        probe(satchel.catalog().ping()),
        probe(satchel.store().ping()),
        scanner
    );
    let ready = database == "ok" && storage == "ok" && (scanner == "ok" || scanner == "disabled");
    let status = if ready {
        StatusCode::OK
    } else {
        tracing::warn!(%database, %storage, %scanner, "not ready");
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            database,
            storage,
            scanner,
        }),
    )
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")),
)]
pub async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics().render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    responses((status = 200, description = "The OpenAPI description of the API", content_type = "application/json")),
)]
pub async fn openapi() -> Response {
    match crate::openapi::document().to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => crate::error::ApiError::from(satchel::Error::internal(format!(
            "rendering the OpenAPI document: {e}"
        )))
        .into_response(),
    }
}
