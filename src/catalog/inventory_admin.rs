//! Staff and integrations manage stock: locations, the ledger of movements, levels, and the
//! reserve / commit / release cycle that checkout uses.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::inventory::{self, Actor, DEFAULT_LOCATION, Level, MANUAL_KINDS, Reservation};
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::db_run;
use crate::platform::db::dialect;
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{Page, PageParams};
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_locations, create_location))
        .routes(routes!(variant_inventory))
        .routes(routes!(list_movements, record_movement))
        .routes(routes!(create_reservation))
        .routes(routes!(commit_reservation))
        .routes(routes!(release_reservation))
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Location {
    pub id: String,
    pub code: String,
    pub name: String,
}

/// List stock locations.
#[utoipa::path(get, path = "/api/v1/admin/locations", tag = "admin: inventory",
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Vec<Location>), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_locations(State(state): State<AppState>, staff: CurrentStaff) -> AppResult<Json<Vec<Location>>> {
    staff.require(Permission::ProductsRead)?;
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Location>("SELECT id, code, name FROM locations ORDER BY created_at, id")
            .fetch_all(conn)
            .await
    })?;
    Ok(Json(rows))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLocation {
    /// Lowercase letters, digits, `-` and `_`; unique.
    pub code: String,
    pub name: String,
}

/// Add a stock location.
#[utoipa::path(post, path = "/api/v1/admin/locations", tag = "admin: inventory", request_body = NewLocation,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Location),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The code is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_location(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewLocation>,
) -> AppResult<(StatusCode, Json<Location>)> {
    staff.require(Permission::ProductsWrite)?;
    inventory::check_location(&new.code, &new.name)
        .map_err(|(field, message)| AppError::invalid_field(field, "invalid_format", message))?;
    let inserted = db_run!(state.db.write().await?, |conn| {
        sqlx::query_as::<_, Location>(
            "INSERT INTO locations (id, code, name, created_at) VALUES ($1, $2, $3, $4) RETURNING id, code, name",
        )
        .bind(new_id("loc"))
        .bind(&new.code)
        .bind(new.name.trim())
        .bind(Timestamp::now())
        .fetch_one(conn)
        .await
    });
    match inserted {
        Err(err) if dialect::is_unique_violation(&err, "locations", "code") => {
            Err(AppError::conflict("code", "Another location has this code."))
        }
        other => Ok((StatusCode::CREATED, Json(other?))),
    }
}

/// A variant's stock.
#[derive(Debug, Serialize, ToSchema)]
pub struct VariantInventory {
    pub variant_id: String,
    /// On hand less reserved, all locations together.
    pub available: i64,
    pub levels: Vec<Level>,
}

fn variant_not_found() -> AppError {
    AppError::not_found("No variant has this id.")
}

async fn inventory_of(state: &AppState, variant_id: &str) -> AppResult<VariantInventory> {
    let exists = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM product_variants WHERE id = $1")
            .bind(variant_id)
            .fetch_optional(conn)
            .await
    })?;
    exists.ok_or_else(variant_not_found)?;
    let levels = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Level>(
            "SELECT location_id, on_hand, reserved, on_hand - reserved AS available FROM inventory_levels \
             WHERE variant_id = $1 ORDER BY location_id",
        )
        .bind(variant_id)
        .fetch_all(conn)
        .await
    })?;
    let available = levels.iter().map(|l| l.available).sum();
    Ok(VariantInventory { variant_id: variant_id.to_owned(), available, levels })
}

/// Read a variant's stock at each location.
#[utoipa::path(get, path = "/api/v1/admin/variants/{id}/inventory", tag = "admin: inventory", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = VariantInventory),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn variant_inventory(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<VariantInventory>> {
    staff.require(Permission::ProductsRead)?;
    if !has_shape(&id, "var") {
        return Err(variant_not_found());
    }
    Ok(Json(inventory_of(&state, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMovement {
    /// Units in (positive) or out (negative).
    pub quantity: i64,
    /// `received`, `returned` or `adjusted`.
    pub kind: String,
    /// Why, for the ledger: `stock count`, `damaged`...
    #[serde(default)]
    pub reason: String,
    /// Default: the default location.
    pub location_id: Option<String>,
    /// A purchase order, a return...
    pub reference: Option<String>,
}

/// Record a stock movement: the ledger gains a line and the level moves with it. A movement
/// that would leave less than nothing on hand is refused.
#[utoipa::path(post, path = "/api/v1/admin/variants/{id}/inventory/movements", tag = "admin: inventory",
    params(("id" = String, Path)), request_body = NewMovement,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = VariantInventory),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn record_movement(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Json(movement): Json<NewMovement>,
) -> AppResult<(StatusCode, Json<VariantInventory>)> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    if movement.quantity == 0 || !(-1_000_000_000..=1_000_000_000).contains(&movement.quantity) {
        violations.add("quantity", "out_of_range", "must be a non-zero number of units, at most a billion either way");
    }
    if !MANUAL_KINDS.contains(&movement.kind.as_str()) {
        violations.add("kind", "invalid", "must be `received`, `returned` or `adjusted`");
    } else if movement.kind != "adjusted" && movement.quantity < 0 {
        violations.add("quantity", "out_of_range", "must be positive for stock received or returned");
    }
    if !super::products::single_line(&movement.reason, 200) {
        violations.add("reason", "invalid_format", "must be at most 200 characters on one line");
    }
    if movement.reference.as_deref().is_some_and(|r| r.is_empty() || !super::products::single_line(r, 100)) {
        violations.add("reference", "invalid_format", "must be 1 to 100 characters on one line");
    }
    violations.finish()?;
    if !has_shape(&id, "var") {
        return Err(variant_not_found());
    }
    let location = movement.location_id.as_deref().unwrap_or(DEFAULT_LOCATION);
    let mut tx = state.db.begin().await?;
    let known = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM locations WHERE id = $1")
            .bind(location)
            .fetch_optional(conn)
            .await
    })?;
    if known.is_none() {
        return Err(AppError::invalid_field("location_id", "unknown", "names no location"));
    }
    let (actor_kind, actor_id) = staff.actor();
    let line = inventory::Line {
        variant_id: &id,
        location_id: location,
        quantity: movement.quantity,
        kind: &movement.kind,
        reason: movement.reason.trim(),
        reference: movement.reference.as_deref(),
        actor: Actor { kind: actor_kind, id: actor_id },
    };
    inventory::record_movement(&state, &mut tx, line).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(inventory_of(&state, &id).await?)))
}

/// A line of the ledger.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Movement {
    pub id: String,
    pub location_id: String,
    pub quantity: i64,
    /// `received`, `sold`, `returned` or `adjusted`.
    pub kind: String,
    pub reason: String,
    pub reference: Option<String>,
    pub actor_kind: String,
    pub actor_id: String,
    pub created_at: Timestamp,
}

/// List a variant's stock movements, newest first.
#[utoipa::path(get, path = "/api/v1/admin/variants/{id}/inventory/movements", tag = "admin: inventory",
    params(("id" = String, Path), PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Movement>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_movements(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Movement>>> {
    staff.require(Permission::ProductsRead)?;
    let limit = page.limit()?;
    if !has_shape(&id, "var") {
        return Err(variant_not_found());
    }
    inventory_of(&state, &id).await?;
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Movement>(
            "SELECT id, location_id, quantity, kind, reason, reference, actor_kind, actor_id, created_at \
             FROM inventory_movements WHERE variant_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(&id)
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReservation {
    pub variant_id: String,
    pub quantity: i64,
    /// Seconds until the reservation expires unless committed (default 900, at most 86400).
    pub ttl_secs: Option<u64>,
    /// A cart or an order, for the ledger.
    pub reference: Option<String>,
}

/// Reserve stock: all of it at one location, or 409 `conflict` naming `quantity`. Available
/// stock never goes below zero, however many reservations race.
#[utoipa::path(post, path = "/api/v1/admin/inventory/reservations", tag = "admin: inventory", request_body = NewReservation,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Reservation),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_reservation(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewReservation>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let ttl = new.ttl_secs.unwrap_or(900);
    let mut violations = Violations::default();
    if !(1..=86_400).contains(&ttl) {
        violations.add("ttl_secs", "out_of_range", "must be between 1 and 86400");
    }
    if new.reference.as_deref().is_some_and(|r| r.is_empty() || !super::products::single_line(r, 100)) {
        violations.add("reference", "invalid_format", "must be 1 to 100 characters on one line");
    }
    violations.finish()?;
    if !has_shape(&new.variant_id, "var") {
        return Err(variant_not_found());
    }
    let mut tx = state.db.begin().await?;
    let reservation = inventory::reserve(&mut tx, &new.variant_id, new.quantity, ttl, new.reference.as_deref()).await?;
    tx.commit().await?;
    let location = format!("/api/v1/admin/inventory/reservations/{}", reservation.id);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(reservation)).into_response())
}

fn reservation_not_found() -> AppError {
    AppError::not_found("No reservation has this id.")
}

/// Sell a reservation's units: they leave the stock on hand, as a `sold` line in the ledger.
#[utoipa::path(post, path = "/api/v1/admin/inventory/reservations/{id}/commit", tag = "admin: inventory",
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Reservation),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Committed, released or expired already", body = Problem, content_type = "application/problem+json"),
    ))]
async fn commit_reservation(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<Reservation>> {
    end_reservation(&state, &staff, &id, End::Commit).await
}

/// Give a reservation's units back.
#[utoipa::path(post, path = "/api/v1/admin/inventory/reservations/{id}/release", tag = "admin: inventory",
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Reservation),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Committed, released or expired already", body = Problem, content_type = "application/problem+json"),
    ))]
async fn release_reservation(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<Reservation>> {
    end_reservation(&state, &staff, &id, End::Release).await
}

enum End {
    Commit,
    Release,
}

async fn end_reservation(state: &AppState, staff: &CurrentStaff, id: &str, end: End) -> AppResult<Json<Reservation>> {
    staff.require(Permission::ProductsWrite)?;
    if !has_shape(id, "rsv") {
        return Err(reservation_not_found());
    }
    let mut tx = state.db.begin().await?;
    let reservation = match end {
        End::Commit => {
            let (kind, actor_id) = staff.actor();
            inventory::commit(state, &mut tx, id, Actor { kind, id: actor_id }).await?
        }
        End::Release => inventory::release(&mut tx, id).await?,
    };
    tx.commit().await?;
    Ok(Json(reservation))
}
