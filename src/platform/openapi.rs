//! The OpenAPI 3.1 document, generated from the handlers, and the docs page that browses it.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{FieldError, Problem};
use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Backroom",
        description = "The store API (`/api/v1/store`, for shoppers) and the admin API (`/api/v1/admin`, for staff \
            and integrations). Errors are RFC 9457 problem documents with a stable `code`.",
    ),
    components(schemas(Problem, FieldError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "store: accounts", description = "Customer registration, sign-in, profile, password and sessions"),
        (name = "admin: staff", description = "Staff sign-in, roles and the audit log"),
        (name = "admin: api keys", description = "Keys for integrations"),
        (name = "admin: customers", description = "Customers as staff see them"),
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description)).build(),
            )
        };
        let cookie = |name: &str, description: &str| {
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(name, description)))
        };
        components.add_security_scheme("customer_session", bearer("A customer session token (`brc_...`)."));
        components.add_security_scheme(
            "customer_cookie",
            cookie("backroom_session", "The customer session cookie; unsafe methods also need `X-CSRF-Token`."),
        );
        components.add_security_scheme("staff_session", bearer("A staff session token (`brs_...`)."));
        components.add_security_scheme(
            "staff_cookie",
            cookie("backroom_admin_session", "The staff session cookie; unsafe methods also need `X-CSRF-Token`."),
        );
        components.add_security_scheme("api_key", bearer("An API key (`brk_...`), limited to its scopes."));
    }
}

/// `/api/docs` and its assets, compiled into the binary.
pub fn docs_router() -> Router<AppState> {
    Router::new()
        .route("/api/docs", get(docs_page))
        .route(
            "/api/docs/swagger-ui.css",
            get(|| asset("text/css", include_bytes!("../../assets/swagger-ui/swagger-ui.css"))),
        )
        .route(
            "/api/docs/swagger-ui-bundle.js",
            get(|| asset("text/javascript", include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"))),
        )
        .route("/api/docs/init.js", get(|| asset("text/javascript", include_bytes!("../../assets/swagger-ui/init.js"))))
}

const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
    font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn docs_page() -> Response {
    let page = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Backroom API</title>
<link rel="stylesheet" href="/api/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script>
</body>
</html>
"#;
    ([(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DOCS_CSP))], Html(page)).into_response()
}

async fn asset(content_type: &'static str, bytes: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400")),
        ],
        bytes,
    )
        .into_response()
}
