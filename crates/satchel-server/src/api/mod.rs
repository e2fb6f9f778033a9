//! The routes. [`endpoints`] is the single list the router is built from and that the OpenAPI
//! test checks the document against; a new route is one entry here plus its handler in
//! [`crate::openapi`].

pub mod files;
pub mod links;
pub mod media;
pub mod service;
pub mod upload;

use crate::error::ApiError;
use crate::{drain, metrics, App};
use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use satchel::ErrorCode;

/// One path of the API: the methods it documents and the handlers serving them.
pub struct Endpoint {
    pub path: &'static str,
    /// Every method served (GET routes also answer HEAD; it is listed where it matters).
    pub methods: &'static [&'static str],
    pub handler: MethodRouter<App>,
}

fn endpoint(
    path: &'static str,
    methods: &'static [&'static str],
    handler: MethodRouter<App>,
) -> Endpoint {
    Endpoint {
        path,
        methods,
        handler,
    }
}

/// Every route of the service.
pub fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint("/healthz", &["GET"], get(service::healthz)),
        endpoint("/readyz", &["GET"], get(service::readyz)),
        endpoint("/metrics", &["GET"], get(service::metrics)),
        endpoint("/openapi.json", &["GET"], get(service::openapi)),
        endpoint("/v1/workspace", &["GET"], get(service::get_workspace)),
        endpoint(
            "/v1/files",
            &["GET", "POST"],
            // Uploads stream; the size cap is the library's (`max_file_size_mb`).
            get(files::list_files).post(upload::upload.layer((
                DefaultBodyLimit::disable(),
                axum::middleware::from_fn(drain::drain_on_error),
            ))),
        ),
        endpoint("/v1/files/count", &["GET"], get(files::count_files)),
        endpoint("/v1/files/by-path", &["GET"], get(files::get_file_by_path)),
        endpoint(
            "/v1/files/by-path/content",
            &["GET", "HEAD"],
            get(files::file_content_by_path),
        ),
        endpoint(
            "/v1/files/{id}",
            &["GET", "DELETE"],
            get(files::get_file).delete(files::delete_file),
        ),
        endpoint(
            "/v1/files/{id}/content",
            &["GET", "HEAD"],
            get(files::file_content),
        ),
        endpoint(
            "/v1/files/{id}/restore",
            &["POST"],
            post(files::restore_file),
        ),
        endpoint(
            "/v1/files/{id}/download-url",
            &["POST"],
            post(links::create_download_url),
        ),
        endpoint("/v1/trash", &["GET"], get(files::list_trash)),
        endpoint(
            "/v1/sessions/{session_id}",
            &["DELETE"],
            delete(files::delete_session),
        ),
        endpoint(
            "/v1/download/{token}",
            &["GET", "HEAD"],
            get(links::signed_download),
        ),
        endpoint(
            "/v1/media",
            &["POST"],
            // The body limit depends on `max_file_size_mb`: the handler enforces it.
            post(media::store_media.layer((
                DefaultBodyLimit::disable(),
                axum::middleware::from_fn(drain::drain_on_error),
            ))),
        ),
    ]
}

/// `(METHOD, path)` of every route, from [`endpoints`].
pub fn route_list() -> Vec<(&'static str, &'static str)> {
    endpoints()
        .iter()
        .flat_map(|e| e.methods.iter().map(move |m| (*m, e.path)))
        .collect()
}

/// Unknown routes: 404 with the error body.
async fn no_route(State(app): State<App>, method: Method, uri: Uri) -> Response {
    let response =
        ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response();
    metrics::record_unmatched(&app, method.as_str(), &response);
    response
}

/// A known route with a method it does not serve: 405 with the error body (axum adds `Allow`).
async fn method_not_allowed(method: Method) -> Response {
    let mut response = ApiError::new(
        ErrorCode::InvalidInput,
        format!("method {method} is not allowed here"),
    )
    .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// The routes with their per-route middleware (metrics) and fallbacks.
pub fn routes(app: &App) -> Router<App> {
    let mut router = Router::new();
    for e in endpoints() {
        router = router.route(e.path, e.handler);
    }
    router
        .method_not_allowed_fallback(method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            metrics::track,
        ))
        .fallback(no_route)
}
