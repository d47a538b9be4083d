//! API keys for integrations: created by staff with scopes, shown once, stored hashed,
//! revocable, with the time of last use.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit;
use super::auth::{self, CurrentStaff};
use super::roles::Permission;
use super::tokens::{self, TokenKind};
use crate::app::AppState;
use crate::db_run;
use crate::platform::cache::Invalidation;
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_api_keys, create_api_key)).routes(routes!(revoke_api_key))
}

/// An API key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub token_prefix: String,
    #[sqlx(try_from = "String")]
    pub scopes: Scopes,
    pub created_by: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

/// Permissions as stored: space-separated names.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(transparent)]
pub struct Scopes(pub Vec<Permission>);

impl From<String> for Scopes {
    fn from(value: String) -> Self {
        Scopes(value.split_whitespace().filter_map(Permission::parse).collect())
    }
}

const API_KEY_COLUMNS: &str =
    "id, name, token_prefix, scopes, created_by, created_at, last_used_at, expires_at, revoked_at";

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    /// What the key is for, such as `CRM sync`.
    pub name: String,
    /// What the key may do: some of the creator's own permissions.
    pub scopes: Vec<Permission>,
    /// Days until the key stops working; without it the key works until revoked.
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The secret, shown this once: send it as `Authorization: Bearer <secret>`.
    pub secret: String,
}

/// Create an API key with some of the caller's permissions. The secret is in this answer only.
#[utoipa::path(post, path = "/api/v1/admin/api-keys", tag = "admin: api keys", request_body = CreateApiKeyRequest,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = ApiKeyCreated),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_api_key(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(request): Json<CreateApiKeyRequest>,
) -> AppResult<Response> {
    staff.require(Permission::ApiKeysManage)?;
    // A leaked key must not be able to outlive its revocation through keys it made.
    if staff.api_key_id.is_some() {
        return Err(AppError::forbidden("API keys cannot create API keys; a staff member signs in to do it."));
    }
    let mut violations = Violations::default();
    let name = request.name.trim();
    if name.is_empty() {
        violations.add("name", "required", "must not be empty");
    } else if name.chars().count() > 100 || name.chars().any(char::is_control) {
        violations.add("name", "invalid_format", "must be at most 100 characters, without control characters");
    }
    if request.scopes.is_empty() {
        violations.add("scopes", "required", "must name at least one permission");
    }
    for (index, scope) in request.scopes.iter().enumerate() {
        if !staff.has(*scope) {
            violations.add(
                &format!("scopes[{index}]"),
                "not_held",
                format!("you do not hold `{}` yourself", scope.as_str()),
            );
        }
    }
    if request.expires_in_days.is_some_and(|days| !(1..=3650).contains(&days)) {
        violations.add("expires_in_days", "out_of_range", "must be between 1 and 3650");
    }
    violations.finish()?;

    let mut scopes: Vec<&str> = request.scopes.iter().map(|p| p.as_str()).collect();
    scopes.sort_unstable();
    scopes.dedup();
    let secret = tokens::generate(TokenKind::ApiKey);
    let now = Timestamp::now();
    let expires_at = request.expires_in_days.map(|days| now.plus_secs(u64::from(days) * 86_400));
    let mut tx = state.db.begin().await?;
    let sql = format!(
        "INSERT INTO api_keys (id, name, token_hash, token_prefix, scopes, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {API_KEY_COLUMNS}"
    );
    let api_key = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, ApiKey>(&sql)
            .bind(new_id("key"))
            .bind(name)
            .bind(tokens::hash(&secret))
            .bind(&secret[..12])
            .bind(scopes.join(" "))
            .bind(&staff.staff_id)
            .bind(now)
            .bind(expires_at)
            .fetch_one(conn)
            .await
    })?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "api_key.created", Some(&api_key.id), &scopes.join(" ")).await?;
    tx.commit().await?;
    let location = format!("/api/v1/admin/api-keys/{}", api_key.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(ApiKeyCreated { api_key, secret })).into_response())
}

/// List API keys, revoked ones included, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/api-keys", tag = "admin: api keys", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Page<ApiKey>), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_api_keys(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<ApiKey>>> {
    staff.require(Permission::ApiKeysManage)?;
    let page = pagination::oldest_first(&state.db, "api_keys", API_KEY_COLUMNS, &page, |row: &ApiKey| &row.id).await?;
    Ok(Json(page))
}

/// Revoke an API key: it stops working at once.
#[utoipa::path(delete, path = "/api/v1/admin/api-keys/{id}", tag = "admin: api keys",
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 204), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn revoke_api_key(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::ApiKeysManage)?;
    let not_found = || AppError::not_found("No live API key has this id.");
    if !has_shape(&id, "key") {
        return Err(not_found());
    }
    let mut tx = state.db.begin().await?;
    let revoked = db_run!(tx.conn(), |conn| {
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(Timestamp::now())
            .bind(&id)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?;
    if revoked == 0 {
        return Err(not_found());
    }
    tx.invalidate(Invalidation::all(auth::CREDENTIALS));
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "api_key.revoked", Some(&id), "").await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_scopes_parse_back() {
        let scopes = Scopes::from("customers:read staff:read".to_owned());
        assert_eq!(scopes.0, vec![Permission::CustomersRead, Permission::StaffRead]);
    }
}
