//! Staff manage webhook endpoints, read the delivery log and replay deliveries.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::webhooks::{self, AddressPolicy};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::platform::db::Tx;
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{Page, check_page};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_endpoints, create_endpoint))
        .routes(routes!(event_types))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(send_test))
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(replay_delivery))
}

/// An endpoint as staff see it: never its secret.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct WebhookEndpoint {
    pub id: String,
    pub url: String,
    pub description: String,
    /// Event types, `family.*` patterns, or `*`.
    #[sqlx(try_from = "String")]
    pub event_types: EventTypes,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why the endpoint was disabled, when it was by Backroom.
    pub disabled_reason: Option<String>,
    /// When the current run of failed deliveries began; absent while deliveries succeed.
    pub failing_since: Option<Timestamp>,
    /// Until when the previous secret still signs, during a rotation.
    pub previous_secret_expires_at: Option<Timestamp>,
    /// The staff member told when the endpoint is disabled.
    pub created_by: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// Event types as stored: space-separated.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(transparent)]
pub struct EventTypes(pub Vec<String>);

impl From<String> for EventTypes {
    fn from(value: String) -> Self {
        EventTypes(value.split_whitespace().map(str::to_owned).collect())
    }
}

const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, status, disabled_reason, failing_since, \
     previous_secret_expires_at, created_by, created_at, updated_at, version";

fn endpoint_not_found() -> AppError {
    AppError::not_found("No webhook endpoint has this id.")
}

fn check_event_types(types: &[String], violations: &mut Violations) {
    if types.is_empty() {
        violations.add("event_types", "required", "must name at least one event type, `family.*` or `*`");
    }
    if types.len() > 50 {
        violations.add("event_types", "too_many", "must name at most 50");
    }
    for (index, pattern) in types.iter().enumerate() {
        if !webhooks::is_known_pattern(pattern) {
            violations.add(
                &format!("event_types[{index}]"),
                "unknown",
                format!("`{pattern}` names no event type; GET /api/v1/admin/webhooks/event-types lists them"),
            );
        }
    }
}

fn check_description(description: &str, violations: &mut Violations) {
    if description.chars().count() > 500 || description.chars().any(|c| c.is_control() && c != '\n') {
        violations.add("description", "invalid_format", "must be at most 500 characters, without control characters");
    }
}

fn stored_types(types: &[String]) -> String {
    let mut types: Vec<&str> = types.iter().map(String::as_str).collect();
    types.sort_unstable();
    types.dedup();
    types.join(" ")
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventType {
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub description: &'static str,
}

/// List the event types endpoints can subscribe to.
#[utoipa::path(get, path = "/api/v1/admin/webhooks/event-types", tag = "admin: webhooks",
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Vec<EventType>), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn event_types(staff: CurrentStaff) -> AppResult<Json<Vec<EventType>>> {
    staff.require(Permission::WebhooksRead)?;
    Ok(Json(
        webhooks::EVENT_TYPES.iter().map(|(event_type, description)| EventType { event_type, description }).collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateEndpointRequest {
    /// Where events are POSTed: `https://...` (or `http://`).
    pub url: String,
    /// Event types, `family.*` patterns such as `customer.*`, or `*` for all.
    pub event_types: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreated {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// The signing secret, shown this once; rotate it to get a new one.
    pub secret: String,
}

/// Subscribe an endpoint to events. Deliveries are signed with the secret in this answer.
#[utoipa::path(post, path = "/api/v1/admin/webhooks", tag = "admin: webhooks", request_body = CreateEndpointRequest,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = EndpointCreated),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_endpoint(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(request): Json<CreateEndpointRequest>,
) -> AppResult<Response> {
    staff.require(Permission::WebhooksManage)?;
    let mut violations = Violations::default();
    let policy = AddressPolicy::from_config(&state.config.webhooks);
    let url =
        webhooks::check_url(request.url.trim(), policy).map_err(|reason| violations.add("url", "invalid", reason));
    check_event_types(&request.event_types, &mut violations);
    check_description(&request.description, &mut violations);
    violations.finish()?;
    let url = url.map_err(|()| AppError::internal(anyhow::anyhow!("a refused URL passed the checks")))?;

    let secret = webhooks::new_secret();
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let sql = format!(
        "INSERT INTO webhook_endpoints (id, url, description, event_types, secret, status, created_by, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, 'enabled', $6, $7, $7) RETURNING {ENDPOINT_COLUMNS}"
    );
    let endpoint = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(new_id("whe"))
            .bind(url.as_str())
            .bind(request.description.trim())
            .bind(stored_types(&request.event_types))
            .bind(&secret)
            .bind(&staff.staff_id)
            .bind(now)
            .fetch_one(conn)
            .await
    })?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "webhook.created", Some(&endpoint.id), &endpoint.url).await?;
    tx.commit().await?;
    let location = format!("/api/v1/admin/webhooks/{}", endpoint.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(EndpointCreated { endpoint, secret }))
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndpointFilter {
    /// Only endpoints in this state: `enabled` or `disabled`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub after: Option<String>,
}

/// List webhook endpoints, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/webhooks", tag = "admin: webhooks", params(EndpointFilter),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<WebhookEndpoint>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_endpoints(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(filter): Query<EndpointFilter>,
) -> AppResult<Json<Page<WebhookEndpoint>>> {
    staff.require(Permission::WebhooksRead)?;
    let mut violations = Violations::default();
    let limit = check_page(filter.limit, filter.after.as_deref(), &mut violations);
    if filter.status.as_deref().is_some_and(|s| !matches!(s, "enabled" | "disabled")) {
        violations.add("status", "invalid", "must be `enabled` or `disabled`");
    }
    violations.finish()?;
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id > $1 AND ($2 = '' OR status = $2) \
         ORDER BY id LIMIT $3"
    );
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(filter.after.as_deref().unwrap_or(""))
            .bind(filter.status.as_deref().unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(conn)
            .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
}

async fn find_endpoint(state: &AppState, id: &str) -> AppResult<WebhookEndpoint> {
    if !has_shape(id, "whe") {
        return Err(endpoint_not_found());
    }
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
    db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, WebhookEndpoint>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await)?
    .ok_or_else(endpoint_not_found)
}

/// Read one webhook endpoint.
#[utoipa::path(get, path = "/api/v1/admin/webhooks/{id}", tag = "admin: webhooks", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = WebhookEndpoint, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_endpoint(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::WebhooksRead)?;
    let endpoint = find_endpoint(&state, &id).await?;
    Ok(http::tagged(StatusCode::OK, endpoint.version, endpoint))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateEndpointRequest {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    /// `false` stops deliveries (pending ones are cancelled); `true` starts them again.
    pub enabled: Option<bool>,
}

/// Change an endpoint's address, events, description, or whether it is enabled.
#[utoipa::path(patch, path = "/api/v1/admin/webhooks/{id}", tag = "admin: webhooks", request_body = UpdateEndpointRequest,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = WebhookEndpoint, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_endpoint(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<UpdateEndpointRequest>,
) -> AppResult<Response> {
    staff.require(Permission::WebhooksManage)?;
    let mut violations = Violations::default();
    let policy = AddressPolicy::from_config(&state.config.webhooks);
    let url = request.url.as_deref().map(|url| webhooks::check_url(url.trim(), policy));
    if let Some(Err(reason)) = &url {
        violations.add("url", "invalid", reason.clone());
    }
    if let Some(types) = &request.event_types {
        check_event_types(types, &mut violations);
    }
    if let Some(description) = &request.description {
        check_description(description, &mut violations);
    }
    violations.finish()?;
    let expected = http::if_match_version(&headers)?;
    let current = find_endpoint(&state, &id).await?;
    if expected.is_some_and(|version| version != current.version) {
        return Err(http::stale_version());
    }
    let now = Timestamp::now();
    // Enabling or disabling starts the failing streak over; other edits leave it as the
    // deliveries set it (they do not bump the version).
    let (status, reason, restart_streak) = match request.enabled {
        Some(true) => ("enabled", None, true),
        Some(false) => ("disabled", Some("Disabled by staff.".to_owned()), true),
        None => (current.status.as_str(), current.disabled_reason.clone(), false),
    };
    let mut tx = state.db.begin().await?;
    let sql = format!(
        "UPDATE webhook_endpoints SET url = $1, event_types = $2, description = $3, status = $4, \
         disabled_reason = $5, failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END, updated_at = $7, \
         version = version + 1 \
         WHERE id = $8 AND version = $9 RETURNING {ENDPOINT_COLUMNS}"
    );
    let updated = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, WebhookEndpoint>(&sql)
            .bind(match url {
                Some(Ok(url)) => url.to_string(),
                _ => current.url.clone(),
            })
            .bind(request.event_types.as_deref().map_or_else(|| current.event_types.0.join(" "), stored_types))
            .bind(request.description.as_deref().map_or(current.description.as_str(), str::trim))
            .bind(status)
            .bind(reason)
            .bind(restart_streak)
            .bind(now)
            .bind(&id)
            .bind(current.version)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(http::stale_version)?;
    if status == "disabled" && current.status == "enabled" {
        cancel_pending(&mut tx, &id).await?;
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "webhook.updated", Some(&id), &format!("status={status}")).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, updated.version, updated))
}

async fn cancel_pending(tx: &mut Tx, endpoint_id: &str) -> AppResult<u64> {
    Ok(db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'cancelled', updated_at = $1 \
             WHERE endpoint_id = $2 AND status = 'pending'",
        )
        .bind(Timestamp::now())
        .bind(endpoint_id)
        .execute(conn)
        .await
    })?)
}

/// Disables an endpoint that failed for too long, cancels its pending deliveries and emails
/// the staff member who made it (or, when they are gone, the shop's owners).
pub(crate) async fn disable(tx: &mut Tx, state: &AppState, endpoint_id: &str, reason: &str) -> AppResult<()> {
    let now = Timestamp::now();
    let disabled = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String)>(
            "UPDATE webhook_endpoints SET status = 'disabled', disabled_reason = $1, updated_at = $2, \
             version = version + 1 WHERE id = $3 AND status = 'enabled' RETURNING url, created_by",
        )
        .bind(reason)
        .bind(now)
        .bind(endpoint_id)
        .fetch_optional(conn)
        .await
    })?;
    let Some((url, created_by)) = disabled else { return Ok(()) };
    cancel_pending(tx, endpoint_id).await?;
    let recipients = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String)>(
            "SELECT email, name FROM staff_users WHERE disabled_at IS NULL \
             AND (id = $1 OR (role = 'owner' AND NOT EXISTS \
                  (SELECT 1 FROM staff_users WHERE id = $1 AND disabled_at IS NULL)))",
        )
        .bind(&created_by)
        .fetch_all(conn)
        .await
    })?;
    for (email, name) in recipients {
        let first_name = name.split_whitespace().next().unwrap_or("");
        let values = context! { first_name, url, reason, endpoint_id };
        let message = state.templates.render("webhook_disabled", &email, values).map_err(AppError::internal)?;
        super::send_email(tx, &message).await?;
    }
    audit::record(tx, "system", "webhooks", "webhook.disabled", Some(endpoint_id), reason).await?;
    Ok(())
}

/// Delete an endpoint, with its delivery log.
#[utoipa::path(delete, path = "/api/v1/admin/webhooks/{id}", tag = "admin: webhooks", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_endpoint(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::WebhooksManage)?;
    if !has_shape(&id, "whe") {
        return Err(endpoint_not_found());
    }
    let mut tx = state.db.begin().await?;
    let deleted = db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1").bind(&id).execute(conn).await
    })?;
    if deleted == 0 {
        return Err(endpoint_not_found());
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "webhook.deleted", Some(&id), "").await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RotateSecretRequest {
    /// Hours the current secret keeps signing beside the new one (0 to 168, default 24), so
    /// that a receiver can switch without missing a delivery.
    pub overlap_hours: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretRotated {
    /// The new signing secret, shown this once.
    pub secret: String,
    /// Until when deliveries also carry a signature with the previous secret.
    pub previous_secret_expires_at: Option<Timestamp>,
}

/// Give an endpoint a new signing secret. During the overlap, every delivery carries two
/// signatures, one per secret.
#[utoipa::path(post, path = "/api/v1/admin/webhooks/{id}/rotate-secret", tag = "admin: webhooks",
    request_body = RotateSecretRequest, params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = SecretRotated),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn rotate_secret(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Json(request): Json<RotateSecretRequest>,
) -> AppResult<Json<SecretRotated>> {
    staff.require(Permission::WebhooksManage)?;
    let overlap = request.overlap_hours.unwrap_or(24);
    if overlap > 168 {
        return Err(AppError::invalid_field("overlap_hours", "out_of_range", "must be between 0 and 168"));
    }
    if !has_shape(&id, "whe") {
        return Err(endpoint_not_found());
    }
    let secret = webhooks::new_secret();
    let now = Timestamp::now();
    let expires_at = (overlap > 0).then(|| now.plus_secs(u64::from(overlap) * 3600));
    let mut tx = state.db.begin().await?;
    let rotated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE webhook_endpoints SET previous_secret = CASE WHEN $1 IS NULL THEN NULL ELSE secret END, \
             previous_secret_expires_at = $1, secret = $2, updated_at = $3, version = version + 1 WHERE id = $4",
        )
        .bind(expires_at)
        .bind(&secret)
        .bind(now)
        .bind(&id)
        .execute(conn)
        .await
    })?;
    if rotated == 0 {
        return Err(endpoint_not_found());
    }
    let (actor_kind, actor_id) = staff.actor();
    let detail = format!("overlap_hours={overlap}");
    audit::record(&mut tx, actor_kind, actor_id, "webhook.secret_rotated", Some(&id), &detail).await?;
    tx.commit().await?;
    Ok(Json(SecretRotated { secret, previous_secret_expires_at: expires_at }))
}

/// A delivery as the log shows it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Delivery {
    pub id: String,
    /// The event's id: the `webhook-id` header, the same on every attempt and replay.
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: String,
    /// `pending`, `succeeded`, `failed` (out of attempts) or `cancelled` (endpoint disabled).
    pub status: String,
    pub attempts: i64,
    /// The HTTP status of the last answer; absent when none came.
    pub last_status: Option<i64>,
    pub last_latency_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

const DELIVERY_COLUMNS: &str = "d.id, d.event_id, v.type AS event_type, d.endpoint_id, d.status, d.attempts, \
     d.last_status, d.last_latency_ms, d.last_error, d.created_at, d.updated_at";

/// One attempt of a delivery.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeliveryAttempt {
    pub attempted_at: Timestamp,
    /// The HTTP status the receiver answered; absent when it did not answer.
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
    /// The start of the receiver's answer (up to 1 KiB).
    pub response: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub delivery: Delivery,
    /// The body as sent.
    pub payload: serde_json::Value,
    /// Every attempt, oldest first.
    pub attempt_log: Vec<DeliveryAttempt>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// Only deliveries in this state.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub after: Option<String>,
}

/// List an endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/admin/webhooks/{id}/deliveries", tag = "admin: webhooks",
    params(("id" = String, Path), DeliveryFilter),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Delivery>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_deliveries(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Query(filter): Query<DeliveryFilter>,
) -> AppResult<Json<Page<Delivery>>> {
    staff.require(Permission::WebhooksRead)?;
    let mut violations = Violations::default();
    let limit = check_page(filter.limit, filter.after.as_deref(), &mut violations);
    if filter.status.as_deref().is_some_and(|s| !matches!(s, "pending" | "succeeded" | "failed" | "cancelled")) {
        violations.add("status", "invalid", "must be `pending`, `succeeded`, `failed` or `cancelled`");
    }
    violations.finish()?;
    find_endpoint(&state, &id).await?;
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id \
         WHERE d.endpoint_id = $1 AND ($2 = '' OR d.id < $2) AND ($3 = '' OR d.status = $3) \
         ORDER BY d.id DESC LIMIT $4"
    );
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Delivery>(&sql)
            .bind(&id)
            .bind(filter.after.as_deref().unwrap_or(""))
            .bind(filter.status.as_deref().unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(conn)
            .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
}

fn delivery_not_found() -> AppError {
    AppError::not_found("No webhook delivery has this id.")
}

async fn find_delivery(state: &AppState, id: &str) -> AppResult<(Delivery, String)> {
    if !has_shape(id, "whd") {
        return Err(delivery_not_found());
    }
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS}, v.body FROM webhook_deliveries d JOIN webhook_events v ON v.id = d.event_id \
         WHERE d.id = $1"
    );
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query(&sql).bind(id).fetch_optional(conn).await.and_then(|row| {
            row.map(|row| {
                use sqlx::{FromRow, Row};
                Ok((Delivery::from_row(&row)?, row.try_get::<String, _>("body")?))
            })
            .transpose()
        })
    })?;
    row.ok_or_else(delivery_not_found)
}

/// Read a delivery with its body and every attempt.
#[utoipa::path(get, path = "/api/v1/admin/webhook-deliveries/{id}", tag = "admin: webhooks", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = DeliveryDetail),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_delivery(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<DeliveryDetail>> {
    staff.require(Permission::WebhooksRead)?;
    let (delivery, body) = find_delivery(&state, &id).await?;
    let attempt_log = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, DeliveryAttempt>(
            "SELECT attempted_at, status, latency_ms, error, response FROM webhook_attempts \
             WHERE delivery_id = $1 ORDER BY attempted_at, id",
        )
        .bind(&id)
        .fetch_all(conn)
        .await
    })?;
    let payload = serde_json::from_str(&body).map_err(AppError::internal)?;
    Ok(Json(DeliveryDetail { delivery, payload, attempt_log }))
}

/// Send a delivery's event to its endpoint again, as a new delivery with the same
/// `webhook-id`, so that a receiver that already has it can tell.
#[utoipa::path(post, path = "/api/v1/admin/webhook-deliveries/{id}/replay", tag = "admin: webhooks",
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 202, body = Delivery),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn replay_delivery(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::WebhooksManage)?;
    let (delivery, _) = find_delivery(&state, &id).await?;
    let endpoint = find_endpoint(&state, &delivery.endpoint_id).await?;
    if endpoint.status != "enabled" {
        return Err(AppError::new(ErrorCode::Conflict, "The endpoint is disabled; enable it before replaying."));
    }
    let mut tx = state.db.begin().await?;
    let new_id = webhooks::create_delivery(&state, &mut tx, &delivery.event_id, &endpoint.id).await?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "webhook.replayed", Some(&id), &new_id).await?;
    tx.commit().await?;
    accepted(&state, &new_id).await
}

async fn accepted(state: &AppState, delivery_id: &str) -> AppResult<Response> {
    let (delivery, _) = find_delivery(state, delivery_id).await?;
    let location = format!("/api/v1/admin/webhook-deliveries/{delivery_id}");
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(delivery)).into_response())
}

/// Send a `webhook.test` event to this endpoint only.
#[utoipa::path(post, path = "/api/v1/admin/webhooks/{id}/test", tag = "admin: webhooks", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 202, body = Delivery),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The endpoint is disabled", body = Problem, content_type = "application/problem+json"),
    ))]
async fn send_test(State(state): State<AppState>, staff: CurrentStaff, Path(id): Path<String>) -> AppResult<Response> {
    staff.require(Permission::WebhooksManage)?;
    let endpoint = find_endpoint(&state, &id).await?;
    if endpoint.status != "enabled" {
        return Err(AppError::new(ErrorCode::Conflict, "The endpoint is disabled; enable it before testing."));
    }
    let mut tx = state.db.begin().await?;
    let data = serde_json::json!({ "endpoint_id": endpoint.id, "sent_by": staff.staff_id });
    let event_id = webhooks::record_event(&mut tx, "webhook.test", &data).await?;
    let delivery_id = webhooks::create_delivery(&state, &mut tx, &event_id, &endpoint.id).await?;
    tx.commit().await?;
    accepted(&state, &delivery_id).await
}
