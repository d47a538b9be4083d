//! Errors as RFC 9457 `application/problem+json`, each with a stable `code`.

use std::borrow::Cow;

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable error codes clients may match on, with their status and title.
/// A code never changes meaning once released; `docs/API.md` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    MalformedJson,
    ValidationFailed,
    Unauthenticated,
    InvalidCredentials,
    Forbidden,
    CsrfFailed,
    NotFound,
    Gone,
    MethodNotAllowed,
    Conflict,
    PaymentDeclined,
    PayloadTooLarge,
    UnsupportedMediaType,
    PreconditionFailed,
    TooManyRequests,
    InvalidToken,
    Internal,
    Unavailable,
    Timeout,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::MalformedJson => "malformed_json",
            Self::ValidationFailed => "validation_failed",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Forbidden => "forbidden",
            Self::CsrfFailed => "csrf_failed",
            Self::NotFound => "not_found",
            Self::Gone => "gone",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict => "conflict",
            Self::PaymentDeclined => "payment_declined",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PreconditionFailed => "precondition_failed",
            Self::TooManyRequests => "too_many_requests",
            Self::InvalidToken => "invalid_token",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest | Self::MalformedJson => StatusCode::BAD_REQUEST,
            Self::ValidationFailed | Self::InvalidToken => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::CsrfFailed => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Gone => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable | Self::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Self::BadRequest => "The request could not be understood",
            Self::MalformedJson => "The body is not valid JSON",
            Self::ValidationFailed => "Some fields are invalid",
            Self::Unauthenticated => "Authentication is required",
            Self::InvalidCredentials => "The email or password is wrong",
            Self::Forbidden => "Not allowed",
            Self::CsrfFailed => "The CSRF token is missing or wrong",
            Self::NotFound => "Not found",
            Self::Gone => "Gone for good",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Conflict => "Conflict",
            Self::PaymentDeclined => "The payment was declined",
            Self::PayloadTooLarge => "The body is too large",
            Self::UnsupportedMediaType => "Unsupported content type",
            Self::PreconditionFailed => "The resource has changed",
            Self::TooManyRequests => "Too many requests",
            Self::InvalidToken => "The link or token is invalid or has expired",
            Self::Internal => "Internal error",
            Self::Unavailable => "Temporarily unavailable",
            Self::Timeout => "The request took too long",
        }
    }

    /// The code for a response some layer made without one (a 405 from routing, a 413 from
    /// the body limit).
    pub fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => Self::Unauthenticated,
            403 => Self::Forbidden,
            404 => Self::NotFound,
            410 => Self::Gone,
            405 => Self::MethodNotAllowed,
            408 => Self::Timeout,
            402 => Self::PaymentDeclined,
            409 => Self::Conflict,
            412 => Self::PreconditionFailed,
            413 => Self::PayloadTooLarge,
            415 => Self::UnsupportedMediaType,
            422 => Self::ValidationFailed,
            429 => Self::TooManyRequests,
            503 => Self::Unavailable,
            500..=599 => Self::Internal,
            _ => Self::BadRequest,
        }
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's path in the request, such as `email` or `address.postcode`.
    pub field: String,
    /// A stable code for what is wrong: `required`, `too_short`, `invalid_format`, ...
    pub code: Cow<'static, str>,
    pub message: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:backroom:problem:{code}`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable code to match on.
    pub code: String,
    /// Every invalid field, for `validation_failed`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The request's id, to quote when reporting a server error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The error every handler and service returns.
#[derive(Debug)]
pub struct AppError {
    code: ErrorCode,
    detail: Cow<'static, str>,
    errors: Vec<FieldError>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong inside, for 5xx: logged, never shown.
    source: Option<anyhow::Error>,
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn new(code: ErrorCode, detail: impl Into<Cow<'static, str>>) -> Self {
        Self { code, detail: detail.into(), errors: Vec::new(), headers: Vec::new(), source: None }
    }

    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    pub fn forbidden(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Forbidden, detail)
    }

    pub fn unauthenticated() -> Self {
        Self::new(ErrorCode::Unauthenticated, "Sign in, or send a valid bearer token or API key.")
    }

    /// A 409 naming the field whose value is taken.
    pub fn conflict(field: &str, detail: impl Into<Cow<'static, str>>) -> Self {
        let detail = detail.into();
        Self::new(ErrorCode::Conflict, detail.clone()).with_field(field, "taken", detail.into_owned())
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// A 422 naming every failing field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("`{}`: {}", one.field, one.message),
            many => format!("{} fields are invalid.", many.len()),
        };
        Self { errors, ..Self::new(ErrorCode::ValidationFailed, detail) }
    }

    /// A 422 for one field.
    pub fn invalid_field(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.into(), code: code.into(), message: message.into() }])
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let secs = retry_after_secs.max(1);
        Self::new(ErrorCode::TooManyRequests, format!("Try again in {secs} seconds."))
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
    }

    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        Self { source: Some(source.into()), ..Self::new(ErrorCode::Internal, "Something went wrong on our side.") }
    }

    pub fn with_field(mut self, field: &str, code: &'static str, message: impl Into<String>) -> Self {
        self.errors.push(FieldError { field: field.into(), code: code.into(), message: message.into() });
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl AppError {
    /// Logs a 5xx, once, where it is answered: by its problem, or by an HTML page.
    pub fn log(&self) {
        if self.code.status().is_server_error() {
            match &self.source {
                Some(source) => {
                    tracing::error!(error.code = self.code.as_str(), error = ?source, "request failed")
                }
                None => tracing::warn!(error.code = self.code.as_str(), "request failed"),
            }
        }
    }

    /// What a person needs to read: the detail and each field's message.
    pub fn explained(&self) -> String {
        let mut text = self.detail.to_string();
        for error in &self.errors {
            text.push_str(&format!(" `{}` {}.", error.field, error.message));
        }
        text
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.code.as_str())?;
        for error in &self.errors {
            write!(f, "\n  {}: {}", error.field, error.message)?;
        }
        if let Some(source) = &self.source {
            write!(f, ": {source:#}")?;
        }
        Ok(())
    }
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut => Self {
                source: Some(err.into()),
                ..Self::new(ErrorCode::Unavailable, "The database is busy; try again.")
            }
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
            _ => Self::internal(err),
        }
    }
}

impl From<anyhow::Error> for AppError {
    fn from(err: anyhow::Error) -> Self {
        Self::internal(err)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        self.log();
        let request_id = if status.is_server_error() { super::http::current_request_id() } else { None };
        let problem = Problem {
            type_: format!("urn:backroom:problem:{}", self.code.as_str()),
            title: self.code.title().into(),
            status: status.as_u16(),
            detail: self.detail.into_owned(),
            code: self.code.as_str().into(),
            errors: self.errors,
            request_id,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response =
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON))], body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

/// Collects the failing fields of one request, so that all of them are reported at once.
#[derive(Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.into(), code: code.into(), message: message.into() });
    }

    /// Keeps the value when it parsed, records the failure otherwise.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, FieldRule>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(rule) => {
                self.add(field, rule.code, rule.message);
                None
            }
        }
    }

    /// The failures recorded, to report some other way than a 422.
    pub fn into_errors(self) -> Vec<FieldError> {
        self.0
    }

    /// `Ok` when nothing failed, otherwise the 422 naming every field.
    pub fn finish(self) -> AppResult<()> {
        if self.0.is_empty() { Ok(()) } else { Err(AppError::validation(self.0)) }
    }
}

/// Why a single value was refused, before it is known which field held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRule {
    pub code: &'static str,
    pub message: String,
}

impl FieldRule {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}
