//! HTTP plumbing shared by every module: request ids, logs and metrics per route, security
//! headers, CORS, body limits, timeouts, the problem+json fallback, and extractors whose
//! rejections are problems too.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{LazyLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use super::error::{AppError, AppResult, ErrorCode, PROBLEM_JSON};
use crate::app::AppState;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_CSRF_TOKEN: HeaderName = HeaderName::from_static("x-csrf-token");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Takes the caller's `x-request-id` when it is sane, or makes one; returns it on the response.
fn request_id_of(headers: &HeaderMap) -> String {
    if let Some(id) = headers
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()))
    {
        return id.to_owned();
    }
    let mut buffer = [0u8; ulid::ULID_LEN];
    let id = ulid::Ulid::new().array_to_str(&mut buffer);
    id.make_ascii_lowercase();
    String::from(&*id)
}

/// The latency histogram of each route, method and status, created on first use: building
/// a labelled handle costs more than recording into it.
static LATENCY: LazyLock<RwLock<HashMap<String, RouteHistograms>>> = LazyLock::new(Default::default);

/// One route's histograms by method and status; a route sees only a handful of each.
type RouteHistograms = Vec<(Method, u16, metrics::Histogram)>;

fn record_latency(route: &str, method: &Method, status: u16, seconds: f64) {
    {
        let histograms = LATENCY.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, _, histogram)) =
            histograms.get(route).and_then(|entries| entries.iter().find(|(m, s, _)| m == method && *s == status))
        {
            histogram.record(seconds);
            return;
        }
    }
    let labels = [("route", route.to_owned()), ("method", method.to_string()), ("status", status.to_string())];
    let histogram = metrics::histogram!("http_request_duration_seconds", &labels);
    histogram.record(seconds);
    let mut histograms = LATENCY.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    histograms.entry(route.to_owned()).or_default().push((method.clone(), status, histogram));
}

/// Security headers on every response, unless the handler chose its own.
fn add_security_headers(headers: &mut HeaderMap, hsts: bool) {
    const DEFAULTS: [(HeaderName, HeaderValue); 6] = [
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("strict-origin-when-cross-origin")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        ),
        (HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
    ];
    for (name, value) in DEFAULTS {
        headers.entry(name).or_insert(value);
    }
    if hsts {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
}

/// The outermost layer: a span with the request id and matched route, the request timeout,
/// a problem+json body for any error response a lower layer produced without one, the
/// security headers, one log line and the latency histogram per request.
/// How long a handler past the request timeout may still run to finish its work.
const TIMED_OUT_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct ObserveLayer(pub AppState);

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner, state: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Observe<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let request_id = request_id_of(request.headers());
        let method = request.method().clone();
        let matched = request.extensions().get::<MatchedPath>().cloned();
        let timeout = self.state.config.request_timeout();
        let hsts = self.state.hsts;
        let inner = self.inner.call(request);
        Box::pin(async move {
            let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
            let span =
                tracing::info_span!("request", request.id = %request_id, http.method = %method, http.route = %route);
            // The handler runs as a task of its own: a client that goes away never cuts a
            // transaction in half (a cancelled transaction can leave SQLite's one writer
            // connection stuck inside it). Past the timeout the client is answered at once,
            // and the handler gets a grace period to finish before it is stopped (a request
            // whose body never finishes arriving would otherwise hold its connection forever).
            let mut handler = tokio::spawn(REQUEST_ID.scope(request_id.clone(), inner.instrument(span.clone())));
            let outcome = tokio::time::timeout(timeout, &mut handler).await;
            if outcome.is_err() {
                tokio::spawn(async move {
                    if tokio::time::timeout(TIMED_OUT_GRACE, &mut handler).await.is_err() {
                        handler.abort();
                    }
                });
            }
            let mut response = REQUEST_ID
                .scope(request_id.clone(), async {
                    match outcome {
                        Ok(Ok(Ok(response))) => response,
                        Ok(Ok(Err(never))) => match never {},
                        Ok(Err(failed)) => {
                            AppError::internal(anyhow::anyhow!("the handler's task failed: {failed}")).into_response()
                        }
                        Err(_) => AppError::new(ErrorCode::Timeout, "The request took too long and was stopped.")
                            .into_response(),
                    }
                })
                .instrument(span.clone())
                .await;
            if (response.status().is_client_error() || response.status().is_server_error())
                && !is_problem(&response)
                && !is_html(&response)
            {
                response = REQUEST_ID.scope(request_id.clone(), async { problem_for(response) }).await;
            }
            add_security_headers(response.headers_mut(), hsts);

            let status = response.status().as_u16();
            let elapsed = started.elapsed();
            span.in_scope(|| {
                tracing::info!(http.status = status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
            });
            record_latency(route, &method, status, elapsed.as_secs_f64());
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(X_REQUEST_ID.clone(), value);
            }
            Ok(response)
        })
    }
}

/// An HTML page: the storefront's own error pages stay what they are.
fn is_html(response: &Response) -> bool {
    response.headers().get(header::CONTENT_TYPE).is_some_and(|value| value.as_bytes().starts_with(b"text/html"))
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// Rewrites an error response from routing or a tower layer as a problem, keeping its headers
/// (`Allow` on a 405, for instance).
fn problem_for(response: Response) -> Response {
    let (parts, _) = response.into_parts();
    let code = ErrorCode::for_status(parts.status);
    let detail = match code {
        ErrorCode::NotFound => "No such resource.".to_owned(),
        ErrorCode::MethodNotAllowed => "This resource does not accept this method; see the `Allow` header.".to_owned(),
        ErrorCode::PayloadTooLarge => "The request body is larger than this server accepts.".to_owned(),
        _ => parts.status.canonical_reason().unwrap_or("Error").to_owned(),
    };
    let mut problem = AppError::new(code, detail).into_response();
    *problem.status_mut() = parts.status;
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// CORS for the configured origins only; with none configured, browsers on other origins get
/// no access.
pub fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|origin| origin.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            X_CSRF_TOKEN.clone(),
            X_REQUEST_ID.clone(),
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([header::ETAG, header::RETRY_AFTER, header::LOCATION, X_REQUEST_ID.clone()])
        .max_age(Duration::from_secs(3600))
}

/// Answers routes that do not exist.
pub async fn not_found() -> AppError {
    AppError::not_found("No such resource.")
}

/// Turns a panic in a handler into a logged 500 problem instead of a dropped connection.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into());
    AppError::internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

/// A JSON body whose every rejection is a problem: 415 without a JSON content type, 400 for
/// malformed JSON, 422 naming the field for a wrong shape, 413 past the body limit.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(request.headers()) {
            return Err(AppError::new(
                ErrorCode::UnsupportedMediaType,
                "Send the body as JSON with `Content-Type: application/json`.",
            ));
        }
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::new(ErrorCode::PayloadTooLarge, "The request body is larger than this server accepts.")
            } else {
                AppError::new(ErrorCode::BadRequest, "The request body could not be read.")
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// A flat object sent as JSON or as a classic HTML form post
/// (`application/x-www-form-urlencoded`), for endpoints browsers post to without scripts.
/// Form values are strings; a name given twice keeps its last value.
pub struct FormOrJson {
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Whether it came as a form post, whose sender is a browser expecting a page.
    pub form_encoded: bool,
}

impl<S: Send + Sync> FromRequest<S> for FormOrJson {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let form_encoded = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if form_encoded {
            let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::new(ErrorCode::PayloadTooLarge, "The request body is larger than this server accepts.")
                } else {
                    AppError::new(ErrorCode::BadRequest, "The request body could not be read.")
                }
            })?;
            let fields = form_urlencoded::parse(&bytes)
                .map(|(name, value)| (name.into_owned(), serde_json::Value::String(value.into_owned())))
                .collect();
            return Ok(Self { fields, form_encoded });
        }
        if !has_json_content_type(request.headers()) {
            return Err(AppError::new(
                ErrorCode::UnsupportedMediaType,
                "Send the body as JSON or as application/x-www-form-urlencoded.",
            ));
        }
        let Json(fields) = Json::<serde_json::Map<String, serde_json::Value>>::from_request(request, state).await?;
        Ok(Self { fields, form_encoded })
    }
}

/// Parses a JSON document, telling a syntax error (400) from a shape error (422 on the field).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    // Syntax first, without building anything, so that a malformed body is a 400 even when
    // its beginning already misses a field.
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(AppError::new(ErrorCode::MalformedJson, format!("The body is not valid JSON: {err}.")));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer);
    value.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                let message = serde_message(&inner);
                let code = if message.starts_with("missing field") { "required" } else { "invalid_type" };
                AppError::validation(vec![super::error::FieldError {
                    field: missing_field_name(&message).map(|name| join_path(&field, name)).unwrap_or(field),
                    code: code.into(),
                    message,
                }])
            }
            _ => AppError::new(ErrorCode::MalformedJson, format!("The body is not valid JSON: {inner}.")),
        }
    })
}

/// serde_json's message without its "at line 1 column 5" suffix.
fn serde_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

fn missing_field_name(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

fn join_path(parent: &str, name: &str) -> String {
    if parent == "body" { name.to_owned() } else { format!("{parent}.{name}") }
}

fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query parameters whose rejections are 422 problems naming the parameter.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(Query).map_err(|err| {
            let field = err.path().to_string();
            AppError::validation(vec![super::error::FieldError {
                field: if field == "." { "query".into() } else { field },
                code: "invalid".into(),
                message: err.into_inner().to_string(),
            }])
        })
    }
}

/// The address of the client: the socket's peer, or the last `X-Forwarded-For` hop when the
/// configuration says a trusted proxy sits in front.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.config.http.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|hop| hop.trim().parse().ok())
        {
            return Ok(Self(ip));
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        Ok(Self(peer.unwrap_or(IpAddr::from([127, 0, 0, 1]))))
    }
}

/// `ETag` for a row at `version`.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"v{version}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"v0\""))
}

/// A hash of bytes, the same on every node running this build: what `ETag`s of rendered
/// answers are made of.
pub fn content_hash(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// A JSON answer rendered once, with a strong `ETag` derived from its bytes, for reads
/// served many times between writes.
pub struct Rendered {
    json: Bytes,
    etag: HeaderValue,
}

impl Rendered {
    pub fn new(value: &impl serde::Serialize) -> AppResult<Self> {
        let json = serde_json::to_vec(value).map_err(AppError::internal)?;
        let tag = content_hash(&json);
        Ok(Self::from_parts(json.into(), tag))
    }

    /// JSON already rendered, with a tag that changes whenever its bytes do.
    pub fn from_parts(json: Bytes, tag: u64) -> Self {
        Self {
            json,
            etag: HeaderValue::from_str(&format!("\"{tag:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\"")),
        }
    }

    /// The size of the body, in bytes.
    pub fn body_len(&self) -> usize {
        self.json.len()
    }

    /// 200 with the body, or 304 when `If-None-Match` names this version. Caches may keep
    /// the answer but must check it again before each use.
    pub fn respond(&self, headers: &HeaderMap) -> Response {
        let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        if if_none_match(headers, &self.etag) {
            return (StatusCode::NOT_MODIFIED, [(header::ETAG, self.etag.clone()), cache]).into_response();
        }
        let content_type = (header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        ([content_type, (header::ETAG, self.etag.clone()), cache], self.json.clone()).into_response()
    }
}

/// Whether `If-None-Match` lists `etag` (weakly compared, as RFC 9110 asks for it) or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let Some(value) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) else { return false };
    let ours = etag.to_str().unwrap_or("");
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours)
}

/// The version an `If-Match` header asks for: `None` when absent or `*`.
pub fn if_match_version(headers: &HeaderMap) -> AppResult<Option<i64>> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("").trim();
    if value == "*" {
        return Ok(None);
    }
    value
        .trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            AppError::new(ErrorCode::PreconditionFailed, "`If-Match` does not name a version of this resource.")
        })
}

/// Refuses with 412 when `If-Match` names another version than `current`.
pub fn require_version(headers: &HeaderMap, current: i64) -> AppResult<()> {
    match if_match_version(headers)? {
        Some(version) if version != current => Err(stale_version()),
        _ => Ok(()),
    }
}

/// A JSON answer for a resource at `version`, with its `ETag`.
pub fn tagged(status: StatusCode, version: i64, value: impl serde::Serialize) -> Response {
    (status, [(header::ETAG, etag(version))], Json(value)).into_response()
}

pub fn stale_version() -> AppError {
    AppError::new(
        ErrorCode::PreconditionFailed,
        "The resource changed since you read it; read it again and reapply your change.",
    )
}

/// For a field that may be cleared: `Some(None)` for an explicit `null`, `None` when the
/// field is absent. Use with `#[serde(default, deserialize_with = "http::nullable")]`.
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
