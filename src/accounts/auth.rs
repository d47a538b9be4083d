//! Who is calling: sessions (cookie or bearer), API keys, CSRF, and the extractors that
//! handlers take to require a customer or a staff member with a permission.
//!
//! Sessions are opaque random tokens stored as hashes (see `docs/AUTH.md` for why): a
//! session can be revoked at once, on every node, by one update.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use serde::Serialize;
use utoipa::ToSchema;

use super::roles::{Permission, Role};
use super::tokens::{self, TokenKind};
use crate::app::AppState;
use crate::db_run;
use crate::platform::cache::Invalidation;
use crate::platform::db::Tx;
use crate::platform::error::{AppError, AppResult, ErrorCode};
use crate::platform::http::X_CSRF_TOKEN;
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;

/// Browsers cap cookie lifetimes at 400 days.
const COOKIE_MAX_AGE_SECS: u64 = 400 * 24 * 3600;

/// A session's `last_used_at` is written at most this often, so reads stay reads.
const TOUCH_EVERY_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectKind {
    Customer,
    Staff,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
        }
    }

    fn token_kind(self) -> TokenKind {
        match self {
            Self::Customer => TokenKind::CustomerSession,
            Self::Staff => TokenKind::StaffSession,
        }
    }

    pub fn session_cookie(self) -> &'static str {
        match self {
            Self::Customer => "backroom_session",
            Self::Staff => "backroom_admin_session",
        }
    }

    pub fn csrf_cookie(self) -> &'static str {
        match self {
            Self::Customer => "backroom_csrf",
            Self::Staff => "backroom_admin_csrf",
        }
    }
}

/// A session just opened: the secret token is known only now.
pub struct NewSession {
    pub id: String,
    pub token: String,
    pub csrf_token: String,
    pub expires_at: Timestamp,
    pub idle_secs: u64,
}

/// Opens a session for `subject_id`, inside the caller's transaction.
pub async fn open_session(
    tx: &mut Tx,
    kind: SubjectKind,
    subject_id: &str,
    idle_secs: u64,
    client: &ClientInfo,
) -> AppResult<NewSession> {
    let id = new_id("ses");
    let token = tokens::generate(kind.token_kind());
    let csrf_token = tokens::generate(TokenKind::Csrf);
    let now = Timestamp::now();
    let expires_at = now.plus_secs(idle_secs);
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, subject_kind, subject_id, csrf_token, idle_secs, created_at, \
             last_used_at, expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, $10)",
        )
        .bind(&id)
        .bind(tokens::hash(&token))
        .bind(kind.as_str())
        .bind(subject_id)
        .bind(&csrf_token)
        .bind(idle_secs as i64)
        .bind(now)
        .bind(expires_at)
        .bind(&client.ip)
        .bind(&client.user_agent)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(NewSession { id, token, csrf_token, expires_at, idle_secs })
}

/// Revokes every session of a subject, except `keep` when given.
pub async fn revoke_sessions_of(tx: &mut Tx, kind: SubjectKind, subject_id: &str, keep: Option<&str>) -> AppResult<()> {
    tx.invalidate(Invalidation::all(CREDENTIALS));
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE subject_kind = $2 AND subject_id = $3 \
             AND revoked_at IS NULL AND id <> $4",
        )
        .bind(Timestamp::now())
        .bind(kind.as_str())
        .bind(subject_id)
        .bind(keep.unwrap_or(""))
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(())
}

/// Revokes one session of a subject; false when it was not theirs or already ended.
pub async fn revoke_session(
    state: &AppState,
    kind: SubjectKind,
    subject_id: &str,
    session_id: &str,
) -> AppResult<bool> {
    let mut tx = state.db.begin().await?;
    let revoked = db_run!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND subject_kind = $3 AND subject_id = $4 \
             AND revoked_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(session_id)
        .bind(kind.as_str())
        .bind(subject_id)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    tx.invalidate(Invalidation::all(CREDENTIALS));
    tx.commit().await?;
    Ok(revoked == 1)
}

/// Ended sessions and used or expired mailed tokens are kept this long, then deleted.
const KEEP_ENDED_MS: i64 = 7 * 24 * 3600 * 1000;

/// Deletes sessions and mailed tokens that ended more than a week ago.
pub async fn purge_ended(state: &AppState) -> AppResult<u64> {
    let before = Timestamp(Timestamp::now().0 - KEEP_ENDED_MS);
    let mut tx = state.db.begin().await?;
    let mut deleted = 0;
    for sql in [
        "DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1",
        "DELETE FROM customer_tokens WHERE expires_at < $1 OR used_at < $1",
    ] {
        deleted += db_run!(tx.conn(), |conn| {
            sqlx::query(sql).bind(before).execute(conn).await.map(|done| done.rows_affected())
        })?;
    }
    tx.commit().await?;
    Ok(deleted)
}

/// One of a subject's live sessions, as the subject may see it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: Timestamp,
    pub last_used_at: Timestamp,
    pub expires_at: Timestamp,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    #[sqlx(skip)]
    pub current: bool,
}

pub async fn list_sessions(
    state: &AppState,
    kind: SubjectKind,
    subject_id: &str,
    current: &str,
) -> AppResult<Vec<SessionInfo>> {
    let mut sessions = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, SessionInfo>(
            "SELECT id, created_at, last_used_at, expires_at, ip, user_agent FROM sessions \
             WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL AND expires_at > $3 \
             ORDER BY created_at DESC",
        )
        .bind(kind.as_str())
        .bind(subject_id)
        .bind(Timestamp::now())
        .fetch_all(conn)
        .await
    })?;
    for session in &mut sessions {
        session.current = session.id == current;
    }
    Ok(sessions)
}

/// Where a request came from, kept with its session.
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn new(ip: std::net::IpAddr, headers: &HeaderMap) -> Self {
        let user_agent =
            headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
        Self { ip: Some(ip.to_string()), user_agent }
    }
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Cookie,
    Bearer,
    ApiKey,
}

/// A token presented by the caller, and where it came from.
struct Presented {
    token: String,
    via: Credential,
}

/// The bearer token, or else the session cookie of `kind`.
fn presented(headers: &HeaderMap, kind: SubjectKind) -> Result<Option<Presented>, AppError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| invalid_token())?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                AppError::new(ErrorCode::Unauthenticated, "Use `Authorization: Bearer <token>`.")
                    .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            })?
            .trim();
        let via = if TokenKind::of(token) == Some(TokenKind::ApiKey) { Credential::ApiKey } else { Credential::Bearer };
        return Ok(Some(Presented { token: token.to_owned(), via }));
    }
    Ok(cookie(headers, kind.session_cookie()).map(|token| Presented { token, via: Credential::Cookie }))
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

fn invalid_token() -> AppError {
    AppError::new(ErrorCode::Unauthenticated, "The session has ended or the token is not valid; sign in again.")
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""))
}

fn unauthenticated() -> AppError {
    AppError::unauthenticated().with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
}

/// Unsafe methods authenticated by a cookie must echo the session's CSRF token in
/// `X-CSRF-Token`; a cross-site form cannot read it.
fn check_csrf(parts: &Parts, via: Credential, expected: &str) -> AppResult<()> {
    if via != Credential::Cookie || matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let sent = parts.headers.get(&X_CSRF_TOKEN).map(|v| v.as_bytes()).unwrap_or_default();
    if tokens::constant_time_eq(sent, expected.as_bytes()) {
        Ok(())
    } else {
        Err(AppError::new(ErrorCode::CsrfFailed, "Send the CSRF token given at sign-in in the `X-CSRF-Token` header."))
    }
}

/// What a presented token resolves to. Cached for a minute under the token's hash; any
/// revocation, role change or disabling evicts every entry, on every node.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The session's or the API key's id.
    id: String,
    /// The customer or staff member.
    subject_id: String,
    csrf_token: String,
    expires_at: Option<Timestamp>,
    role: Option<Role>,
    scopes: Option<Vec<Permission>>,
}

/// The cache of [`Resolved`] credentials.
pub const CREDENTIALS: &str = "credentials";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    subject_id: String,
    csrf_token: String,
    idle_secs: i64,
    last_used_at: Timestamp,
    expires_at: Timestamp,
    role: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ApiKeyRow {
    id: String,
    scopes: String,
    created_by: String,
    role: String,
    last_used_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
}

fn parse_role(role: &str) -> AppResult<Role> {
    Role::parse(role).ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown role `{role}` in the database")))
}

/// Finds the live session or API key behind `token`, from the cache or the database.
async fn resolve(state: &AppState, kind: TokenKind, token: &str) -> AppResult<Option<Arc<Resolved>>> {
    let hash = tokens::hash(token);
    let now = Timestamp::now();
    if let Some(hit) = state.credentials.get(&hash) {
        return Ok(hit.expires_at.is_none_or(|at| at > now).then_some(hit));
    }
    let generation = state.credentials.generation();
    let resolved = match kind {
        TokenKind::CustomerSession | TokenKind::StaffSession => {
            let sql = if kind == TokenKind::CustomerSession {
                "SELECT id, subject_id, csrf_token, idle_secs, last_used_at, expires_at, NULL AS role FROM sessions \
                 WHERE token_hash = $1 AND subject_kind = 'customer' AND revoked_at IS NULL AND expires_at > $2"
            } else {
                "SELECT s.id, s.subject_id, s.csrf_token, s.idle_secs, s.last_used_at, s.expires_at, u.role \
                 FROM sessions s JOIN staff_users u ON u.id = s.subject_id \
                 WHERE s.token_hash = $1 AND s.subject_kind = 'staff' AND s.revoked_at IS NULL \
                 AND s.expires_at > $2 AND u.disabled_at IS NULL"
            };
            let row = db_run!(state.db.read().await?, |conn| {
                sqlx::query_as::<_, SessionRow>(sql).bind(&hash).bind(now).fetch_optional(conn).await
            })?;
            let Some(mut row) = row else { return Ok(None) };
            // Use slides the expiry forward; written at most once a minute.
            if now.0 - row.last_used_at.0 >= TOUCH_EVERY_MS {
                row.expires_at = now.plus_secs(row.idle_secs as u64);
                db_run!(state.db.write().await?, |conn| {
                    sqlx::query(
                        "UPDATE sessions SET last_used_at = $1, expires_at = $2 WHERE id = $3 AND revoked_at IS NULL",
                    )
                    .bind(now)
                    .bind(row.expires_at)
                    .bind(&row.id)
                    .execute(conn)
                    .await
                    .map(|done| done.rows_affected())
                })?;
            }
            Resolved {
                role: row.role.as_deref().map(parse_role).transpose()?,
                id: row.id,
                subject_id: row.subject_id,
                csrf_token: row.csrf_token,
                expires_at: Some(row.expires_at),
                scopes: None,
            }
        }
        TokenKind::ApiKey => {
            let row = db_run!(state.db.read().await?, |conn| {
                sqlx::query_as::<_, ApiKeyRow>(
                    "SELECT k.id, k.scopes, k.created_by, u.role, k.last_used_at, k.expires_at \
                     FROM api_keys k JOIN staff_users u ON u.id = k.created_by \
                     WHERE k.token_hash = $1 AND k.revoked_at IS NULL \
                     AND (k.expires_at IS NULL OR k.expires_at > $2) AND u.disabled_at IS NULL",
                )
                .bind(&hash)
                .bind(now)
                .fetch_optional(conn)
                .await
            })?;
            let Some(row) = row else { return Ok(None) };
            if row.last_used_at.is_none_or(|used| now.0 - used.0 >= TOUCH_EVERY_MS) {
                db_run!(state.db.write().await?, |conn| {
                    sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(&row.id)
                        .execute(conn)
                        .await
                        .map(|done| done.rows_affected())
                })?;
            }
            Resolved {
                role: Some(parse_role(&row.role)?),
                id: row.id,
                subject_id: row.created_by,
                csrf_token: String::new(),
                expires_at: row.expires_at,
                scopes: Some(row.scopes.split_whitespace().filter_map(Permission::parse).collect()),
            }
        }
        TokenKind::Mailed | TokenKind::Csrf => return Ok(None),
    };
    let resolved = Arc::new(resolved);
    state.credentials.insert(hash, resolved.clone(), generation);
    Ok(Some(resolved))
}

/// A signed-in customer. Handlers that take it answer 401 to anyone else.
#[derive(Debug, Clone)]
pub struct CurrentCustomer {
    session: Arc<Resolved>,
    pub via: Credential,
}

impl CurrentCustomer {
    pub fn customer_id(&self) -> &str {
        &self.session.subject_id
    }

    pub fn session_id(&self) -> &str {
        &self.session.id
    }
}

impl FromRequestParts<AppState> for CurrentCustomer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(presented) = presented(&parts.headers, SubjectKind::Customer)? else {
            return Err(unauthenticated());
        };
        if TokenKind::of(&presented.token) != Some(TokenKind::CustomerSession) {
            return Err(invalid_token());
        }
        let session = resolve(state, TokenKind::CustomerSession, &presented.token).await?.ok_or_else(invalid_token)?;
        check_csrf(parts, presented.via, &session.csrf_token)?;
        Ok(Self { session, via: presented.via })
    }
}

/// A signed-in customer, or nobody. A credential that is sent but not valid is still a 401.
#[derive(Debug, Clone)]
pub struct MaybeCustomer(pub Option<CurrentCustomer>);

impl MaybeCustomer {
    pub fn customer_id(&self) -> Option<&str> {
        self.0.as_ref().map(CurrentCustomer::customer_id)
    }
}

impl FromRequestParts<AppState> for MaybeCustomer {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if presented(&parts.headers, SubjectKind::Customer)?.is_none() {
            return Ok(Self(None));
        }
        CurrentCustomer::from_request_parts(parts, state).await.map(|customer| Self(Some(customer)))
    }
}

/// A signed-in staff member or an API key, with what it may do. Handlers call
/// [`CurrentStaff::require`] with the permission their endpoint needs.
#[derive(Debug, Clone)]
pub struct CurrentStaff {
    /// The staff member, or for an API key the staff member who created it.
    pub staff_id: String,
    pub role: Role,
    pub session_id: Option<String>,
    pub api_key_id: Option<String>,
    pub via: Credential,
    scopes: Option<Vec<Permission>>,
}

impl CurrentStaff {
    pub fn has(&self, permission: Permission) -> bool {
        self.role.grants(permission) && self.scopes.as_ref().is_none_or(|scopes| scopes.contains(&permission))
    }

    /// 403 unless the caller holds `permission`.
    pub fn require(&self, permission: Permission) -> AppResult<()> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(AppError::forbidden(format!("This needs the `{}` permission.", permission.as_str())))
        }
    }

    /// The permissions the caller holds: the role's, narrowed by an API key's scopes.
    pub fn permissions(&self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|p| self.has(*p)).collect()
    }

    /// Who to record in the audit log.
    pub fn actor(&self) -> (&'static str, &str) {
        match &self.api_key_id {
            Some(key) => ("api_key", key),
            None => ("staff", &self.staff_id),
        }
    }
}

impl FromRequestParts<AppState> for CurrentStaff {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Some(presented) = presented(&parts.headers, SubjectKind::Staff)? else {
            return Err(unauthenticated());
        };
        // API keys travel only in the Authorization header, never in a cookie.
        let kind = match (TokenKind::of(&presented.token), presented.via) {
            (Some(TokenKind::StaffSession), Credential::Cookie | Credential::Bearer) => TokenKind::StaffSession,
            (Some(TokenKind::ApiKey), Credential::ApiKey) => TokenKind::ApiKey,
            _ => return Err(invalid_token()),
        };
        let resolved = resolve(state, kind, &presented.token).await?.ok_or_else(invalid_token)?;
        let role = resolved.role.ok_or_else(|| AppError::internal(anyhow::anyhow!("staff credential without role")))?;
        if kind == TokenKind::ApiKey {
            return Ok(Self {
                staff_id: resolved.subject_id.clone(),
                role,
                session_id: None,
                api_key_id: Some(resolved.id.clone()),
                via: Credential::ApiKey,
                scopes: resolved.scopes.clone(),
            });
        }
        check_csrf(parts, presented.via, &resolved.csrf_token)?;
        Ok(Self {
            staff_id: resolved.subject_id.clone(),
            role,
            session_id: Some(resolved.id.clone()),
            api_key_id: None,
            via: presented.via,
            scopes: None,
        })
    }
}

/// `Set-Cookie` values for a new session: the HttpOnly session cookie and the CSRF cookie
/// that the page's script reads and echoes.
pub fn session_cookies(kind: SubjectKind, session: &NewSession, secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    // The server decides when a session ends (it slides with use); the cookie only has to
    // outlive it, so it gets the longest lifetime browsers keep.
    let max_age = COOKIE_MAX_AGE_SECS.max(session.idle_secs);
    [
        format!(
            "{}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            kind.session_cookie(),
            session.token
        ),
        format!("{}={}; Path=/; Max-Age={max_age}; SameSite=Lax{secure}", kind.csrf_cookie(), session.csrf_token),
    ]
    .map(|cookie| HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("")))
}

/// `Set-Cookie` values that end the session in the browser.
pub fn clearing_cookies(kind: SubjectKind, secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    [
        format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}", kind.session_cookie()),
        format!("{}=; Path=/; Max-Age=0; SameSite=Lax{secure}", kind.csrf_cookie()),
    ]
    .map(|cookie| HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("")))
}
