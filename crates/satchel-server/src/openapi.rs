//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations.

use crate::api::{files, links, media, service, upload};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The content; the part's filename is the file's name.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// A JSON object (before or after the `file` part).
    metadata: Option<String>,
}

/// Raw upload content.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct RawContent(Vec<u8>);

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT whose `sub` is the user id: HS256 with the server's jwt_secret, \
                         or RS256/ES256 with jwt_public_key_file; `exp` required",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Satchel",
        description = "A persistent file workspace per user. Errors are `{\"error\": {\"code\", \"message\"}}`.",
    ),
    paths(
        service::healthz,
        service::readyz,
        service::metrics,
        service::openapi,
        service::get_workspace,
        upload::upload,
        files::list_files,
        files::count_files,
        files::get_file,
        files::get_file_by_path,
        files::file_content,
        files::file_content_by_path,
        files::delete_file,
        files::restore_file,
        files::list_trash,
        files::delete_session,
        links::create_download_url,
        links::signed_download,
        media::store_media,
    ),
    components(schemas(crate::error::ErrorBody, crate::dto::TrashedFileInfo)),
    modifiers(&BearerAuth),
    tags(
        (name = "files", description = "Upload, list, look up and delete files"),
        (name = "content", description = "Download content, directly or through signed links"),
        (name = "trash", description = "Deleted files and restore"),
        (name = "workspace", description = "The caller's workspace"),
        (name = "media", description = "store_media_file: file references turned into what a processing step needs"),
        (name = "service", description = "Health, readiness, metrics, this document"),
    ),
)]
pub struct ApiDoc;

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::route_list;

    fn documented() -> Vec<(String, String)> {
        let doc = serde_json::to_value(document()).unwrap();
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in ["get", "head", "post", "put", "patch", "delete", "options"] {
                if item.get(method).is_some() {
                    out.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let mut routed: Vec<(String, String)> = route_list()
            .into_iter()
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .collect();
        routed.sort();
        assert_eq!(documented(), routed);
    }
}
