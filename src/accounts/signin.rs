//! Signing in and out, shared by customers and staff: throttled per account and per address,
//! the same answer and about the same time whether or not the account exists, and a new
//! session on every sign-in.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{self, ClientInfo, NewSession, SubjectKind};
use super::email_address::EmailAddress;
use super::password;
use super::tokens;
use crate::app::AppState;
use crate::db_run;
use crate::platform::cache::Invalidation;
use crate::platform::error::{AppError, AppResult, ErrorCode, Violations};
use crate::platform::http::ClientIp;
use crate::platform::time::Timestamp;

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignInRequest {
    pub email: String,
    pub password: String,
    /// `token` (default) returns a bearer token; `cookie` sets an HttpOnly session cookie
    /// and returns only the CSRF token.
    #[serde(default)]
    pub mode: SessionMode,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionMode {
    #[default]
    Token,
    Cookie,
}

/// A session just opened.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionCreated {
    /// The bearer token; only in `token` mode. It is shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Echo in `X-CSRF-Token` on unsafe requests authenticated by the cookie.
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct Credentials {
    id: String,
    password_hash: String,
}

/// Checks the credentials and opens a session, or says why not without telling whether the
/// account exists.
pub async fn sign_in(
    state: &AppState,
    kind: SubjectKind,
    request: &SignInRequest,
    ClientIp(ip): ClientIp,
    headers: &HeaderMap,
) -> AppResult<(String, NewSession)> {
    let mut violations = Violations::default();
    let email = violations.check("email", EmailAddress::parse(&request.email));
    if request.password.is_empty() {
        violations.add("password", "required", "must not be empty");
    } else if request.password.chars().count() > password::MAX_LENGTH {
        violations.add("password", "too_long", format!("must be at most {} characters", password::MAX_LENGTH));
    }
    violations.finish()?;
    let email = email.ok_or_else(|| AppError::internal(anyhow::anyhow!("email parsed without value")))?;

    let limits = &state.config.auth;
    let account_key = format!("{}:{}", kind.as_str(), email.as_str());
    let ip_key = format!("ip:{ip}");
    // Each attempt counts as a failure until it proves otherwise, so that a burst of
    // concurrent guesses cannot pass the limit before the first one fails.
    let failures = &state.sign_in_failures;
    failures.take(&account_key, limits.max_failures_per_account).map_err(AppError::too_many_requests)?;
    if let Err(wait) = failures.take(&ip_key, limits.max_failures_per_ip) {
        failures.give_back(&account_key);
        return Err(AppError::too_many_requests(wait));
    }

    let sql = match kind {
        SubjectKind::Customer => "SELECT id, password_hash FROM customers WHERE email = $1",
        SubjectKind::Staff => "SELECT id, password_hash FROM staff_users WHERE email = $1 AND disabled_at IS NULL",
    };
    let found = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Credentials>(sql).bind(email.as_str()).fetch_optional(conn).await
    })?;
    let (id, hash) = match found {
        Some(credentials) => (Some(credentials.id), Some(credentials.password_hash)),
        None => (None, None),
    };
    let valid = password::verify(&request.password, hash).await?;
    let Some(subject_id) = id.filter(|_| valid) else {
        return Err(AppError::new(ErrorCode::InvalidCredentials, "The email or password is wrong."));
    };
    failures.clear(&account_key);
    failures.give_back(&ip_key);

    let idle_secs = match kind {
        SubjectKind::Customer => limits.customer_session_days * 24 * 3600,
        SubjectKind::Staff => limits.staff_session_hours * 3600,
    };
    let mut tx = state.db.begin().await?;
    // A session presented at sign-in is replaced, never reused (no session fixation).
    if let Some(previous) = auth::cookie(headers, kind.session_cookie()) {
        tx.invalidate(Invalidation::all(auth::CREDENTIALS));
        db_run!(tx.conn(), |conn| {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                .bind(Timestamp::now())
                .bind(tokens::hash(&previous))
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })?;
    }
    let session = auth::open_session(&mut tx, kind, &subject_id, idle_secs, &ClientInfo::new(ip, headers)).await?;
    tx.commit().await?;
    Ok((subject_id, session))
}

/// The 201 answer to a sign-in: the body, and the cookies in `cookie` mode.
pub fn session_response(state: &AppState, kind: SubjectKind, mode: SessionMode, session: NewSession) -> Response {
    let secure = state.config.secure_cookies();
    let cookies = (mode == SessionMode::Cookie).then(|| auth::session_cookies(kind, &session, secure));
    let body = SessionCreated {
        token: (mode == SessionMode::Token).then_some(session.token),
        csrf_token: session.csrf_token,
        expires_at: session.expires_at,
    };
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    for cookie in cookies.into_iter().flatten() {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Ends the caller's session and clears its cookies.
pub async fn sign_out(state: &AppState, kind: SubjectKind, subject_id: &str, session_id: &str) -> AppResult<Response> {
    auth::revoke_session(state, kind, subject_id, session_id).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    for cookie in auth::clearing_cookies(kind, state.config.secure_cookies()) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
