//! Staff users through the admin API: sign-in, roles, and the owner's management of staff.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit;
use super::auth::{self, CurrentStaff, SubjectKind};
use super::customers::name_rule;
use super::email_address::EmailAddress;
use super::password::NewPassword;
use super::roles::{Permission, Role};
use super::signin::{self, SessionCreated, SignInRequest};
use crate::app::AppState;
use crate::db_run;
use crate::platform::cache::Invalidation;
use crate::platform::db::{Db, dialect};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{self, ClientIp, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(me))
        .routes(routes!(list_staff, create_staff_member))
        .routes(routes!(get_staff_member, update_staff_member))
}

/// A staff member.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct StaffUser {
    pub id: String,
    pub email: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when the account is disabled: it can no longer sign in, and its API keys stop working.
    pub disabled_at: Option<Timestamp>,
    #[serde(skip)]
    pub version: i64,
}

/// A role as stored, decoded into [`Role`].
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(transparent)]
pub struct RoleColumn(pub Role);

impl TryFrom<String> for RoleColumn {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Role::parse(&value).map(RoleColumn).ok_or_else(|| format!("unknown role `{value}`"))
    }
}

const STAFF_COLUMNS: &str = "id, email, name, role, created_at, updated_at, disabled_at, version";

/// What is needed to create a staff member.
pub struct NewStaff<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub name: &'a str,
    pub role: Role,
}

/// Creates a staff member; used by the admin API and by `backroom admin create`.
pub async fn create_staff(db: &Db, new: NewStaff<'_>, actor: Option<(&str, &str)>) -> AppResult<StaffUser> {
    let mut violations = Violations::default();
    let email = violations.check("email", EmailAddress::parse(new.email));
    let password = violations.check("password", NewPassword::parse(new.password));
    let name = violations.check("name", name_rule(new.name));
    violations.finish()?;
    let (Some(email), Some(password), Some(name)) = (email, password, name) else {
        return Err(AppError::internal(anyhow::anyhow!("validated fields missing")));
    };
    let hash = password.hash().await?;
    let now = Timestamp::now();
    let mut tx = db.begin().await?;
    let sql = format!(
        "INSERT INTO staff_users (id, email, password_hash, name, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {STAFF_COLUMNS}"
    );
    let created = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, StaffUser>(&sql)
            .bind(new_id("stf"))
            .bind(email.as_str())
            .bind(&hash)
            .bind(&name)
            .bind(new.role.as_str())
            .bind(now)
            .fetch_one(conn)
            .await
    })
    .map_err(|err| {
        if dialect::is_unique_violation(&err, "staff_users", "email") {
            AppError::conflict("email", "A staff member with this email already exists.")
        } else {
            err.into()
        }
    })?;
    let (actor_kind, actor_id) = actor.unwrap_or(("cli", "cli"));
    audit::record(&mut tx, actor_kind, actor_id, "staff.created", Some(&created.id), new.role.as_str()).await?;
    tx.commit().await?;
    Ok(created)
}

/// Sign in as a staff member.
#[utoipa::path(post, path = "/api/v1/admin/auth/sessions", tag = "admin: staff", operation_id = "admin_sign_in", request_body = SignInRequest,
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
    let (_, session) = signin::sign_in(&state, SubjectKind::Staff, &request, client_ip, &headers).await?;
    Ok(signin::session_response(&state, SubjectKind::Staff, request.mode, session))
}

/// Sign out: ends the current staff session.
#[utoipa::path(delete, path = "/api/v1/admin/auth/session", tag = "admin: staff", operation_id = "admin_sign_out",
    security(("staff_session" = []), ("staff_cookie" = [])),
    responses((status = 204), (status = 400, description = "An API key cannot sign out", body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn sign_out(State(state): State<AppState>, staff: CurrentStaff) -> AppResult<Response> {
    let Some(session_id) = &staff.session_id else {
        return Err(AppError::new(ErrorCode::BadRequest, "An API key has no session; revoke the key instead."));
    };
    signin::sign_out(&state, SubjectKind::Staff, &staff.staff_id, session_id).await
}

/// Who is calling and what they may do.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub staff: StaffUser,
    pub permissions: Vec<Permission>,
    /// Set when the caller is an API key rather than the staff member.
    pub api_key_id: Option<String>,
}

/// The signed-in staff member (or the creator of the API key) and the caller's permissions.
#[utoipa::path(get, path = "/api/v1/admin/me", tag = "admin: staff", operation_id = "admin_me",
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem, content_type = "application/problem+json")))]
async fn me(State(state): State<AppState>, staff: CurrentStaff) -> AppResult<Json<Me>> {
    let user = find_staff(&state.db, &staff.staff_id).await?.ok_or_else(AppError::unauthenticated)?;
    Ok(Json(Me { staff: user, permissions: staff.permissions(), api_key_id: staff.api_key_id.clone() }))
}

async fn find_staff(db: &Db, id: &str) -> AppResult<Option<StaffUser>> {
    let sql = format!("SELECT {STAFF_COLUMNS} FROM staff_users WHERE id = $1");
    Ok(db_run!(db.read().await?, |conn| sqlx::query_as::<_, StaffUser>(&sql).bind(id).fetch_optional(conn).await)?)
}

/// List staff members, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/staff", tag = "admin: staff", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Page<StaffUser>), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_staff(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<StaffUser>>> {
    staff.require(Permission::StaffRead)?;
    let page =
        pagination::oldest_first(&state.db, "staff_users", STAFF_COLUMNS, &page, |row: &StaffUser| &row.id).await?;
    Ok(Json(page))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateStaffRequest {
    pub email: String,
    /// The first password; 8 to 128 characters, not a common one.
    pub password: String,
    #[serde(default)]
    pub name: String,
    pub role: Role,
}

/// Create a staff member. Owners only.
#[utoipa::path(post, path = "/api/v1/admin/staff", tag = "admin: staff", request_body = CreateStaffRequest,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = StaffUser),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_staff_member(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(request): Json<CreateStaffRequest>,
) -> AppResult<Response> {
    staff.require(Permission::StaffManage)?;
    let new = NewStaff { email: &request.email, password: &request.password, name: &request.name, role: request.role };
    let created = create_staff(&state.db, new, Some(staff.actor())).await?;
    let location = format!("/api/v1/admin/staff/{}", created.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], http::tagged(StatusCode::OK, created.version, created))
        .into_response())
}

/// One staff member.
#[utoipa::path(get, path = "/api/v1/admin/staff/{id}", tag = "admin: staff",
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = StaffUser), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_staff_member(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::StaffRead)?;
    if !has_shape(&id, "stf") {
        return Err(AppError::not_found("No staff member has this id."));
    }
    let user = find_staff(&state.db, &id).await?.ok_or_else(|| AppError::not_found("No staff member has this id."))?;
    Ok(http::tagged(StatusCode::OK, user.version, user))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateStaffRequest {
    pub name: Option<String>,
    pub role: Option<Role>,
    /// `true` disables the account (its sessions end), `false` enables it again.
    pub disabled: Option<bool>,
}

/// Change a staff member's name, role, or whether the account is disabled. Owners only; the
/// last active owner can be neither demoted nor disabled.
#[utoipa::path(patch, path = "/api/v1/admin/staff/{id}", tag = "admin: staff", request_body = UpdateStaffRequest,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = StaffUser),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "It would leave the shop without an owner", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_staff_member(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<UpdateStaffRequest>,
) -> AppResult<Response> {
    staff.require(Permission::StaffManage)?;
    let mut violations = Violations::default();
    let name = request.name.as_deref().map(|n| violations.check("name", name_rule(n)));
    violations.finish()?;
    let expected = http::if_match_version(&headers)?;
    let not_found = || AppError::not_found("No staff member has this id.");
    if !has_shape(&id, "stf") {
        return Err(not_found());
    }

    let mut tx = state.db.begin().await?;
    let sql = format!("SELECT {STAFF_COLUMNS} FROM staff_users WHERE id = $1");
    let current = db_run!(tx.conn(), |conn| sqlx::query_as::<_, StaffUser>(&sql).bind(&id).fetch_optional(conn).await)?
        .ok_or_else(not_found)?;
    if expected.is_some_and(|version| version != current.version) {
        return Err(http::stale_version());
    }
    let role = request.role.unwrap_or(current.role.0);
    let now = Timestamp::now();
    let disabled_at = match request.disabled {
        Some(true) => current.disabled_at.or(Some(now)),
        Some(false) => None,
        None => current.disabled_at,
    };
    let stays_active_owner = role == Role::Owner && disabled_at.is_none();
    if current.role.0 == Role::Owner && current.disabled_at.is_none() && !stays_active_owner {
        // The no-op update locks the owners' rows on PostgreSQL, so two owners demoting each
        // other at once cannot both succeed (SQLite has one writer already).
        let owners = db_run!(tx.conn(), |conn| {
            sqlx::query("UPDATE staff_users SET version = version WHERE role = 'owner' AND disabled_at IS NULL")
                .execute(&mut *conn)
                .await
                .map(|done| done.rows_affected())
        })?;
        if owners <= 1 {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "This is the last active owner; make someone else owner first.",
            ));
        }
    }
    let sql = format!(
        "UPDATE staff_users SET name = $1, role = $2, disabled_at = $3, updated_at = $4, version = version + 1 \
         WHERE id = $5 AND version = $6 RETURNING {STAFF_COLUMNS}"
    );
    // The version condition turns an edit that raced this one into a 412, never a lost update
    // (PostgreSQL does not lock the row read above).
    let updated = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, StaffUser>(&sql)
            .bind(name.flatten().unwrap_or(current.name))
            .bind(role.as_str())
            .bind(disabled_at)
            .bind(now)
            .bind(&id)
            .bind(current.version)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(http::stale_version)?;
    // Roles and disabling apply to sessions and API keys at once.
    tx.invalidate(Invalidation::all(auth::CREDENTIALS));
    if disabled_at.is_some() && current.disabled_at.is_none() {
        auth::revoke_sessions_of(&mut tx, SubjectKind::Staff, &id, None).await?;
    }
    let (actor_kind, actor_id) = staff.actor();
    let detail = format!("role={} disabled={}", role.as_str(), disabled_at.is_some());
    audit::record(&mut tx, actor_kind, actor_id, "staff.updated", Some(&id), &detail).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, updated.version, updated))
}
