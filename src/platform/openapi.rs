//! The OpenAPI 3.1 document, generated from the handlers, and the docs page that browses it.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{FieldError, PROBLEM_JSON, Problem};
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
        (name = "admin: jobs", description = "The durable job queue: states, retries, cancellation"),
        (name = "admin: webhooks", description = "Endpoints subscribed to events, signed deliveries, replays and secret rotation"),
        (name = "admin: forms", description = "Contact-style forms and their submissions"),
        (name = "admin: newsletter", description = "Subscribers and their export"),
        (name = "admin: products", description = "Products, their options, variants and prices"),
        (name = "admin: inventory", description = "Stock locations, the movement ledger, levels and reservations"),
        (name = "store: forms", description = "Forms visitors send"),
        (name = "store: newsletter", description = "Sign-up with double opt-in, confirmation and unsubscribe"),
        (name = "store: products", description = "Published products"),
        (name = "admin: content", description = "Pages and blog posts: drafts, scheduling, slugs and search-engine fields"),
        (name = "store: content", description = "Published pages and blog posts"),
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

/// Documents, on every operation, the problems that the shared extractors answer before the
/// handler runs, unless the operation already describes that status itself: 401 where a
/// security scheme is required (and 403 for a missing CSRF token on unsafe methods that
/// accept a session cookie), 400/413/415/422 where a JSON body is read, 422 for query
/// parameters, 400 for a path that cannot be decoded. Applied to the merged document.
pub struct ExtractorResponses;

impl Modify for ExtractorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                (false, &mut item.get),
                (false, &mut item.head),
                (true, &mut item.post),
                (true, &mut item.put),
                (true, &mut item.patch),
                (true, &mut item.delete),
            ];
            for (unsafe_method, operation) in operations {
                if let Some(operation) = operation.as_mut() {
                    document_extractor_responses(operation, unsafe_method);
                }
            }
        }
    }
}

fn document_extractor_responses(operation: &mut Operation, unsafe_method: bool) {
    let schemes: Vec<String> = operation
        .security
        .iter()
        .flatten()
        .filter_map(|requirement| serde_json::to_value(requirement).ok())
        .filter_map(|value| value.as_object().map(|names| names.keys().cloned().collect::<Vec<_>>()))
        .flatten()
        .collect();
    let has_in =
        |place: ParameterIn| operation.parameters.iter().flatten().any(|parameter| parameter.parameter_in == place);
    let (has_query, has_path) = (has_in(ParameterIn::Query), has_in(ParameterIn::Path));
    let mut add = Vec::new();
    if operation.request_body.is_some() {
        add.extend([
            ("400", "The body is not valid JSON or could not be read"),
            ("413", "The body is larger than the server accepts"),
            ("415", "The body is not sent as `application/json`"),
            ("422", "Some fields are invalid"),
        ]);
    }
    if has_query {
        add.push(("422", "Some fields are invalid"));
    }
    if has_path {
        add.push(("400", "The path could not be decoded"));
    }
    if !schemes.is_empty() {
        add.push(("401", "Authentication is required, or the token or session is not valid"));
    }
    if unsafe_method && schemes.iter().any(|scheme| scheme.ends_with("_cookie")) {
        add.push(("403", "The session cookie was sent without its `X-CSRF-Token`"));
    }
    for (status, description) in add {
        operation.responses.responses.entry(status.to_owned()).or_insert_with(|| {
            ResponseBuilder::new()
                .description(description)
                .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
                .build()
                .into()
        });
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
