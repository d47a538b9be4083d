//! Customer accounts through the store API: registration, sign-in, profile, password, email
//! verification, password reset and sessions.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{self, CurrentCustomer, SessionInfo, SubjectKind};
use super::email_address::EmailAddress;
use super::emails;
use super::password::{self, NewPassword};
use super::signin::{self, SessionCreated, SignInRequest};
use super::tokens::{self, TokenKind};
use crate::app::AppState;
use crate::db_run;
use crate::messaging;
use crate::messaging::jobs::{self, JobError, NewJob};
use crate::messaging::webhooks;
use crate::platform::cache::Invalidation;
use crate::platform::db::{Tx, dialect};
use crate::platform::error::{AppError, AppResult, ErrorCode, FieldRule, Problem, Violations};
use crate::platform::http::{self, ClientIp, Json};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::mail::Email;
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(me, update_me))
        .routes(routes!(change_password))
        .routes(routes!(send_verification))
        .routes(routes!(verify_email))
        .routes(routes!(request_password_reset))
        .routes(routes!(reset_password))
        .routes(routes!(my_sessions))
        .routes(routes!(end_my_session))
}

/// A customer's account as they see it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Customer {
    pub id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub phone: Option<String>,
    pub email_verified_at: Option<Timestamp>,
    /// Pays no tax (a reseller, a charity); set by staff.
    pub tax_exempt: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(skip)]
    pub version: i64,
}

pub const CUSTOMER_COLUMNS: &str =
    "id, email, first_name, last_name, phone, email_verified_at, tax_exempt, created_at, updated_at, version";

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    pub email: String,
    /// 8 to 128 characters, not one of the most common passwords.
    pub password: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    pub phone: Option<String>,
}

/// An answer that says the same whatever the account's state, so that it reveals nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub status: &'static str,
    pub message: &'static str,
}

/// A person's name: trimmed, at most 100 characters, no control characters.
pub(crate) fn name_rule(raw: &str) -> Result<String, FieldRule> {
    let name = raw.trim();
    if name.chars().count() > 100 {
        return Err(FieldRule::new("too_long", "must be at most 100 characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldRule::new("invalid_format", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

pub(crate) fn phone_rule(raw: &str) -> Result<Option<String>, FieldRule> {
    let phone = raw.trim();
    if phone.is_empty() {
        return Ok(None);
    }
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    if phone.len() > 32
        || !(5..=15).contains(&digits)
        || !phone.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return Err(FieldRule::new("invalid_format", "must be a phone number such as +44 20 7946 0000"));
    }
    Ok(Some(phone.to_owned()))
}

/// Register a customer account.
///
/// The answer is the same whether or not the email already has an account: a new account
/// gets a verification email, an existing one a note that someone tried to register.
#[utoipa::path(post, path = "/api/v1/store/customers", tag = "store: accounts", request_body = RegisterRequest,
    responses(
        (status = 202, body = Accepted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn register(
    State(state): State<AppState>,
    client_ip: ClientIp,
    Json(request): Json<RegisterRequest>,
) -> AppResult<(StatusCode, Json<Accepted>)> {
    let mut violations = Violations::default();
    let email = violations.check("email", EmailAddress::parse(&request.email));
    let password = violations.check("password", NewPassword::parse(&request.password));
    let first_name = violations.check("first_name", name_rule(&request.first_name));
    let last_name = violations.check("last_name", name_rule(&request.last_name));
    let phone = violations.check("phone", phone_rule(request.phone.as_deref().unwrap_or("")));
    violations.finish()?;
    let (Some(email), Some(password), Some(first_name), Some(last_name), Some(phone)) =
        (email, password, first_name, last_name, phone)
    else {
        return Err(AppError::internal(anyhow::anyhow!("validated fields missing")));
    };

    let ip_key = format!("register:{}", client_ip.0);
    state.account_requests.take(&ip_key, 20).map_err(AppError::too_many_requests)?;

    let hash = password.hash().await?;
    let now = Timestamp::now();
    let id = new_id("cus");
    let mut tx = state.db.begin().await?;
    let inserted = db_run!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO customers (id, email, password_hash, first_name, last_name, phone, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&id)
        .bind(email.as_str())
        .bind(&hash)
        .bind(&first_name)
        .bind(&last_name)
        .bind(&phone)
        .bind(now)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    });
    match inserted {
        Ok(_) => {
            enqueue_account_email(&mut tx, &id, AccountEmail::Welcome).await?;
            let created = Customer {
                id: id.clone(),
                email: email.as_str().to_owned(),
                first_name,
                last_name,
                phone,
                email_verified_at: None,
                tax_exempt: false,
                created_at: now,
                updated_at: now,
                version: 1,
            };
            webhooks::emit(&state, &mut tx, "customer.created", &created).await?;
            tx.commit().await?;
            tracing::info!(customer.id = %id, "customer registered");
        }
        Err(err) if dialect::is_unique_violation(&err, "customers", "email") => {
            // The failed insert ended that transaction on PostgreSQL; the note needs its own.
            drop(tx);
            let mut tx = state.db.begin().await?;
            messaging::send_email(&mut tx, &emails::already_registered(&state, &email)?).await?;
            tx.commit().await?;
        }
        Err(err) => return Err(err.into()),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted { status: "accepted", message: "Check your inbox: we sent a message to this address." }),
    ))
}

/// Sign in as a customer.
///
/// `mode: "cookie"` sets an HttpOnly session cookie for browsers; `mode: "token"` returns a
/// bearer token. Wrong credentials answer 401 whether or not the account exists; after
/// repeated failures the account and the address are throttled with 429.
#[utoipa::path(post, path = "/api/v1/store/auth/sessions", tag = "store: accounts", request_body = SignInRequest,
    responses(
        (status = 201, body = SessionCreated),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn sign_in(
    State(state): State<AppState>,
    client_ip: ClientIp,
    headers: HeaderMap,
    Json(request): Json<SignInRequest>,
) -> AppResult<Response> {
    let (_, session) = signin::sign_in(&state, SubjectKind::Customer, &request, client_ip, &headers).await?;
    Ok(signin::session_response(&state, SubjectKind::Customer, request.mode, session))
}

/// Sign out: ends the current session.
#[utoipa::path(delete, path = "/api/v1/store/auth/session", tag = "store: accounts",
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn sign_out(State(state): State<AppState>, customer: CurrentCustomer) -> AppResult<Response> {
    signin::sign_out(&state, SubjectKind::Customer, customer.customer_id(), customer.session_id()).await
}

/// The cache of customers by id; every write to a customer evicts its entry.
pub const CUSTOMERS: &str = "customers";

/// A customer with its JSON and `ETag` rendered once, for the many reads between writes.
pub struct CustomerView {
    pub customer: Customer,
    json: axum::body::Bytes,
    etag: axum::http::HeaderValue,
}

impl CustomerView {
    pub fn new(customer: Customer) -> AppResult<Self> {
        let json = serde_json::to_vec(&customer).map_err(AppError::internal)?.into();
        Ok(Self { etag: http::etag(customer.version), customer, json })
    }

    /// The customer as a 200 answer with its `ETag`.
    pub fn response(&self) -> Response {
        (
            [
                (header::CONTENT_TYPE, axum::http::HeaderValue::from_static("application/json")),
                (header::ETAG, self.etag.clone()),
            ],
            self.json.clone(),
        )
            .into_response()
    }
}

/// A customer by id, from the cache or the database.
pub async fn find_customer(state: &AppState, id: &str) -> AppResult<Option<Arc<CustomerView>>> {
    if let Some(hit) = state.customers.get(id) {
        return Ok(Some(hit));
    }
    let generation = state.customers.generation();
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1");
    let found = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Customer>(&sql).bind(id).fetch_optional(conn).await
    })?;
    let Some(customer) = found else { return Ok(None) };
    let view = Arc::new(CustomerView::new(customer)?);
    state.customers.insert(view.customer.id.clone(), view.clone(), generation);
    Ok(Some(view))
}

/// The signed-in customer's profile.
#[utoipa::path(get, path = "/api/v1/store/customers/me", tag = "store: accounts",
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 200, body = Customer, headers(("ETag" = String, description = "The version, for If-Match"))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn me(State(state): State<AppState>, customer: CurrentCustomer) -> AppResult<Response> {
    let found = find_customer(&state, customer.customer_id()).await?;
    found.map(|view| view.response()).ok_or_else(AppError::unauthenticated)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// An empty string removes the phone number.
    pub phone: Option<String>,
}

/// Edit the signed-in customer's profile. Send `If-Match` with the `ETag` you read to refuse
/// overwriting a change made in between.
#[utoipa::path(patch, path = "/api/v1/store/customers/me", tag = "store: accounts", request_body = UpdateProfile,
    params(("If-Match" = Option<String>, Header, description = "The ETag of the profile as read")),
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 200, body = Customer),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_me(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    headers: HeaderMap,
    Json(request): Json<UpdateProfile>,
) -> AppResult<Response> {
    let mut violations = Violations::default();
    let first_name = request.first_name.as_deref().map(|v| violations.check("first_name", name_rule(v)));
    let last_name = request.last_name.as_deref().map(|v| violations.check("last_name", name_rule(v)));
    let phone = request.phone.as_deref().map(|v| violations.check("phone", phone_rule(v)));
    violations.finish()?;
    let expected = http::if_match_version(&headers)?;

    let mut tx = state.db.begin().await?;
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id = $1");
    let current = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Customer>(&sql).bind(customer.customer_id()).fetch_optional(conn).await
    })?
    .ok_or_else(AppError::unauthenticated)?;
    if expected.is_some_and(|version| version != current.version) {
        return Err(http::stale_version());
    }
    let first_name = first_name.flatten().unwrap_or(current.first_name);
    let last_name = last_name.flatten().unwrap_or(current.last_name);
    let phone = phone.flatten().unwrap_or(current.phone);
    let sql = format!(
        "UPDATE customers SET first_name = $1, last_name = $2, phone = $3, updated_at = $4, version = version + 1 \
         WHERE id = $5 AND version = $6 RETURNING {CUSTOMER_COLUMNS}"
    );
    // The version condition makes a concurrent edit (between the read above and this write)
    // a 412 instead of a lost update; PostgreSQL does not lock the row read above.
    let updated = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Customer>(&sql)
            .bind(&first_name)
            .bind(&last_name)
            .bind(&phone)
            .bind(Timestamp::now())
            .bind(customer.customer_id())
            .bind(current.version)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(http::stale_version)?;
    tx.invalidate(Invalidation::key(CUSTOMERS, customer.customer_id()));
    webhooks::emit(&state, &mut tx, "customer.updated", &updated).await?;
    tx.commit().await?;
    Ok(CustomerView::new(updated)?.response())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// Change the password. Every other session of the customer ends.
#[utoipa::path(put, path = "/api/v1/store/customers/me/password", tag = "store: accounts", request_body = ChangePassword,
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn change_password(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    Json(request): Json<ChangePassword>,
) -> AppResult<StatusCode> {
    let mut violations = Violations::default();
    let new_password = violations.check("new_password", NewPassword::parse(&request.new_password));
    if request.current_password.chars().count() > password::MAX_LENGTH {
        violations.add("current_password", "too_long", "is longer than any password");
    }
    violations.finish()?;
    let new_password = new_password.ok_or_else(|| AppError::internal(anyhow::anyhow!("validated password missing")))?;

    let throttle_key = format!("password:{}", customer.customer_id());
    let max = state.config.auth.max_failures_per_account;
    state.sign_in_failures.take(&throttle_key, max).map_err(AppError::too_many_requests)?;
    let stored = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT password_hash FROM customers WHERE id = $1")
            .bind(customer.customer_id())
            .fetch_optional(conn)
            .await
    })?;
    if !password::verify(&request.current_password, stored).await? {
        return Err(AppError::invalid_field("current_password", "incorrect", "is not the current password"));
    }
    state.sign_in_failures.clear(&throttle_key);
    let hash = new_password.hash().await?;
    let mut tx = state.db.begin().await?;
    set_password(&mut tx, customer.customer_id(), &hash).await?;
    auth::revoke_sessions_of(&mut tx, SubjectKind::Customer, customer.customer_id(), Some(customer.session_id()))
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_password(tx: &mut Tx, customer_id: &str, hash: &str) -> AppResult<()> {
    tx.invalidate(Invalidation::key(CUSTOMERS, customer_id));
    db_run!(tx.conn(), |conn| {
        sqlx::query("UPDATE customers SET password_hash = $1, updated_at = $2, version = version + 1 WHERE id = $3")
            .bind(hash)
            .bind(Timestamp::now())
            .bind(customer_id)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::ResetPassword => "reset_password",
        }
    }
}

/// Stores a new single-use token for a mailed link, ending earlier unused ones of the same
/// purpose, and returns the token to put in the link.
async fn issue_token(
    tx: &mut Tx,
    state: &AppState,
    customer_id: &str,
    email: &str,
    purpose: Purpose,
) -> AppResult<String> {
    let hours = match purpose {
        Purpose::VerifyEmail => state.config.auth.verify_token_hours,
        Purpose::ResetPassword => state.config.auth.reset_token_hours,
    };
    let token = tokens::generate(TokenKind::Mailed);
    let now = Timestamp::now();
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE customer_tokens SET used_at = $1 WHERE customer_id = $2 AND purpose = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(customer_id)
        .bind(purpose.as_str())
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO customer_tokens (id, token_hash, purpose, customer_id, email, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id("tok"))
        .bind(tokens::hash(&token))
        .bind(purpose.as_str())
        .bind(customer_id)
        .bind(email)
        .bind(now)
        .bind(now.plus_secs(hours * 3600))
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(token)
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    customer_id: String,
    email: String,
}

/// Marks a mailed token used and returns whose it was; `None` when it is unknown, used or
/// expired. Only one of two concurrent uses can succeed.
async fn redeem_token(tx: &mut Tx, token: &str, purpose: Purpose) -> AppResult<Option<TokenRow>> {
    let now = Timestamp::now();
    Ok(db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, TokenRow>(
            "UPDATE customer_tokens SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 \
             AND used_at IS NULL AND expires_at > $1 RETURNING customer_id, email",
        )
        .bind(now)
        .bind(tokens::hash(token))
        .bind(purpose.as_str())
        .fetch_optional(conn)
        .await
    })?)
}

fn invalid_link() -> AppError {
    AppError::new(ErrorCode::InvalidToken, "This link is invalid, already used or expired; ask for a new one.")
        .with_field("token", "invalid", "is invalid, already used or expired")
}

/// Send the verification email again to the signed-in customer.
#[utoipa::path(post, path = "/api/v1/store/customers/me/verification", tag = "store: accounts",
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 202, body = Accepted),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already verified", body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn send_verification(
    State(state): State<AppState>,
    customer: CurrentCustomer,
) -> AppResult<(StatusCode, Json<Accepted>)> {
    let found = find_customer(&state, customer.customer_id()).await?.ok_or_else(AppError::unauthenticated)?;
    let found = &found.customer;
    if found.email_verified_at.is_some() {
        return Err(AppError::new(ErrorCode::Conflict, "This email address is already verified."));
    }
    let key = format!("verify:{}", found.id);
    state.account_requests.take(&key, 5).map_err(AppError::too_many_requests)?;
    let mut tx = state.db.begin().await?;
    enqueue_account_email(&mut tx, &found.id, AccountEmail::Verify).await?;
    tx.commit().await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted", message: "We sent a new verification email." })))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The token from the emailed link.
    pub token: String,
}

/// Verify an email address with the token from the emailed link.
#[utoipa::path(post, path = "/api/v1/store/auth/email-verification", tag = "store: accounts", request_body = TokenRequest,
    responses((status = 204), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn verify_email(
    State(state): State<AppState>,
    Json(request): Json<TokenRequest>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let row = redeem_token(&mut tx, &request.token, Purpose::VerifyEmail).await?.ok_or_else(invalid_link)?;
    // The link verifies the address it was sent to, if it is still the account's.
    let sql = format!(
        "UPDATE customers SET email_verified_at = $1, updated_at = $1, version = version + 1 \
         WHERE id = $2 AND email = $3 AND email_verified_at IS NULL RETURNING {CUSTOMER_COLUMNS}"
    );
    let verified = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Customer>(&sql)
            .bind(Timestamp::now())
            .bind(&row.customer_id)
            .bind(&row.email)
            .fetch_optional(conn)
            .await
    })?;
    if let Some(customer) = verified {
        webhooks::emit(&state, &mut tx, "customer.updated", &customer).await?;
    }
    tx.invalidate(Invalidation::key(CUSTOMERS, &row.customer_id));
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordResetRequest {
    pub email: String,
}

/// Ask for a password reset link. The answer is the same whether or not the address has an
/// account; only an account's address receives a link.
#[utoipa::path(post, path = "/api/v1/store/auth/password-reset", tag = "store: accounts", request_body = PasswordResetRequest,
    responses(
        (status = 202, body = Accepted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn request_password_reset(
    State(state): State<AppState>,
    client_ip: ClientIp,
    Json(request): Json<PasswordResetRequest>,
) -> AppResult<(StatusCode, Json<Accepted>)> {
    let mut violations = Violations::default();
    let email = violations.check("email", EmailAddress::parse(&request.email));
    violations.finish()?;
    let email = email.ok_or_else(|| AppError::internal(anyhow::anyhow!("validated email missing")))?;
    // The address first: one over its limit cannot use up anyone's allowance.
    for (key, max) in [(format!("reset-ip:{}", client_ip.0), 30), (format!("reset:{}", email.as_str()), 5)] {
        state.account_requests.take(&key, max).map_err(AppError::too_many_requests)?;
    }
    // The lookup and the mail happen after the answer, so its timing tells nothing.
    let state = state.clone();
    tokio::spawn(async move {
        if let Err(err) = send_reset_link(&state, &email).await {
            tracing::error!(error = ?err, "password reset link not sent");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted { status: "accepted", message: "If this address has an account, a reset link is on its way." }),
    ))
}

async fn send_reset_link(state: &AppState, email: &EmailAddress) -> AppResult<()> {
    let found = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM customers WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(conn)
            .await
    })?;
    let Some(customer_id) = found else {
        return Ok(());
    };
    let mut tx = state.db.begin().await?;
    enqueue_account_email(&mut tx, &customer_id, AccountEmail::Reset).await?;
    tx.commit().await?;
    Ok(())
}

/// An account email that carries a single-use link.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountEmail {
    Welcome,
    Verify,
    Reset,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AccountEmailJob {
    pub customer_id: String,
    pub email: AccountEmail,
}

/// Enqueues an account email. Its link's token is made when the job runs, so that the
/// token exists only as a hash in the database, never in the job's payload.
async fn enqueue_account_email(tx: &mut Tx, customer_id: &str, email: AccountEmail) -> AppResult<()> {
    let job = AccountEmailJob { customer_id: customer_id.to_owned(), email };
    jobs::enqueue(tx, NewJob::new(messaging::ACCOUNT_EMAIL, &job)?.max_attempts(12)).await?;
    Ok(())
}

/// Prepares an account email job's message: issues the link's token (ending earlier ones)
/// for the account's current address. `None` when the account is gone.
pub async fn account_email(state: &AppState, job: AccountEmailJob) -> Result<Option<Email>, JobError> {
    let found = db_run!(state.db.read().await.map_err(JobError::retry)?, |conn| {
        sqlx::query_as::<_, (String, String)>("SELECT email, first_name FROM customers WHERE id = $1")
            .bind(&job.customer_id)
            .fetch_optional(conn)
            .await
    })
    .map_err(JobError::retry)?;
    let Some((address, first_name)) = found else { return Ok(None) };
    let email = EmailAddress::parse(&address).map_err(|rule| JobError::Permanent(rule.message))?;
    let purpose = match job.email {
        AccountEmail::Welcome | AccountEmail::Verify => Purpose::VerifyEmail,
        AccountEmail::Reset => Purpose::ResetPassword,
    };
    let mut tx = state.db.begin().await.map_err(JobError::retry)?;
    let token = issue_token(&mut tx, state, &job.customer_id, &address, purpose).await.map_err(JobError::retry)?;
    tx.commit().await.map_err(JobError::retry)?;
    let message = match job.email {
        AccountEmail::Welcome => emails::welcome(state, &email, &first_name, &token),
        AccountEmail::Verify => emails::verify(state, &email, &first_name, &token),
        AccountEmail::Reset => emails::reset(state, &email, &first_name, &token),
    };
    message.map(Some).map_err(|err| JobError::Permanent(format!("{err:#}")))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetPassword {
    /// The token from the emailed link.
    pub token: String,
    pub new_password: String,
}

/// Set a new password with the token from a reset link. The link works once; every session
/// of the account ends, and the address counts as verified.
#[utoipa::path(post, path = "/api/v1/store/auth/password-reset/confirm", tag = "store: accounts", request_body = ResetPassword,
    responses((status = 204), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn reset_password(
    State(state): State<AppState>,
    client_ip: ClientIp,
    Json(request): Json<ResetPassword>,
) -> AppResult<StatusCode> {
    let mut violations = Violations::default();
    let new_password = violations.check("new_password", NewPassword::parse(&request.new_password));
    violations.finish()?;
    let new_password = new_password.ok_or_else(|| AppError::internal(anyhow::anyhow!("validated password missing")))?;
    // Hashing is costly: only a live token earns it, and an address that keeps sending dead
    // ones is throttled like failed sign-ins.
    let ip_key = format!("reset-confirm:{}", client_ip.0);
    state.sign_in_failures.take(&ip_key, state.config.auth.max_failures_per_ip).map_err(AppError::too_many_requests)?;
    let live = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>(
            "SELECT id FROM customer_tokens WHERE token_hash = $1 AND purpose = 'reset_password' \
             AND used_at IS NULL AND expires_at > $2",
        )
        .bind(tokens::hash(&request.token))
        .bind(Timestamp::now())
        .fetch_optional(conn)
        .await
    })?;
    if live.is_none() {
        return Err(invalid_link());
    }
    state.sign_in_failures.give_back(&ip_key);
    let hash = new_password.hash().await?;
    let mut tx = state.db.begin().await?;
    let row = redeem_token(&mut tx, &request.token, Purpose::ResetPassword).await?.ok_or_else(invalid_link)?;
    set_password(&mut tx, &row.customer_id, &hash).await?;
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE customers SET email_verified_at = $1 WHERE id = $2 AND email = $3 AND email_verified_at IS NULL",
        )
        .bind(Timestamp::now())
        .bind(&row.customer_id)
        .bind(&row.email)
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    auth::revoke_sessions_of(&mut tx, SubjectKind::Customer, &row.customer_id, None).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in customer's live sessions.
#[utoipa::path(get, path = "/api/v1/store/customers/me/sessions", tag = "store: accounts",
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses((status = 200, body = Vec<SessionInfo>), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn my_sessions(State(state): State<AppState>, customer: CurrentCustomer) -> AppResult<Json<Vec<SessionInfo>>> {
    let sessions =
        auth::list_sessions(&state, SubjectKind::Customer, customer.customer_id(), customer.session_id()).await?;
    Ok(Json(sessions))
}

/// End one of the signed-in customer's sessions, such as one on a lost device.
#[utoipa::path(delete, path = "/api/v1/store/customers/me/sessions/{id}", tag = "store: accounts",
    params(("id" = String, Path, description = "The session's id")),
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses((status = 204), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn end_my_session(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if has_shape(&id, "ses") && auth::revoke_session(&state, SubjectKind::Customer, customer.customer_id(), &id).await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("You have no live session with this id."))
    }
}
