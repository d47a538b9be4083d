//! Regions: the countries that share a currency and a way of showing prices. In a region whose
//! prices include tax (VAT), a shopper pays the listed price; elsewhere (US sales tax), tax is
//! added at checkout. One region is the shop's default, for carts made before an address is
//! known.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::address::is_country;
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::money::is_currency;
use crate::catalog::products::single_line;
use crate::platform::db::{Db, Tx};
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{self, Json};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_regions, create_region)).routes(routes!(
        get_region,
        update_region,
        delete_region
    ))
}

/// A region as staff and shoppers see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Region {
    pub id: String,
    pub name: String,
    /// ISO 4217: the currency its carts and orders are in.
    pub currency: String,
    /// ISO 3166-1 alpha-2 codes; a country is in one region at most.
    pub countries: Vec<String>,
    /// Whether its prices include tax (VAT) rather than have it added (sales tax).
    pub tax_inclusive: bool,
    /// Whether shipping is taxed, at the standard rate of the address.
    pub shipping_taxable: bool,
    /// The region of carts whose address is not known yet.
    pub is_default: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct RegionRow {
    id: String,
    name: String,
    currency: String,
    tax_inclusive: bool,
    shipping_taxable: bool,
    is_default: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

const COLUMNS: &str =
    "id, name, currency, tax_inclusive, shipping_taxable, is_default, created_at, updated_at, version";

impl RegionRow {
    fn with_countries(self, countries: Vec<String>) -> Region {
        Region {
            id: self.id,
            name: self.name,
            currency: self.currency,
            countries,
            tax_inclusive: self.tax_inclusive,
            shipping_taxable: self.shipping_taxable,
            is_default: self.is_default,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

fn not_found() -> AppError {
    AppError::not_found("No region has this id.")
}

/// Every region, each with its countries, default first.
pub async fn all(db: &Db) -> AppResult<Vec<Region>> {
    let sql = format!("SELECT {COLUMNS} FROM regions ORDER BY is_default DESC, id");
    let rows = db_run!(db.read().await?, |conn| sqlx::query_as::<_, RegionRow>(&sql).fetch_all(conn).await)?;
    let pairs = db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String)>("SELECT region_id, country FROM region_countries ORDER BY country")
            .fetch_all(conn)
            .await
    })?;
    let mut countries: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (region, country) in pairs {
        countries.entry(region).or_default().push(country);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let list = countries.remove(&row.id).unwrap_or_default();
            row.with_countries(list)
        })
        .collect())
}

/// One region, read in `tx` when given so that a checkout sees what it writes against.
pub async fn find(db: &Db, id: &str) -> AppResult<Region> {
    if !has_shape(id, "reg") {
        return Err(not_found());
    }
    all(db).await?.into_iter().find(|region| region.id == id).ok_or_else(not_found)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRegion {
    pub name: String,
    pub currency: String,
    #[serde(default)]
    pub countries: Vec<String>,
    pub tax_inclusive: bool,
    #[serde(default = "yes")]
    pub shipping_taxable: bool,
    /// The first region is the default whatever this says.
    #[serde(default)]
    pub is_default: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionPatch {
    pub name: Option<String>,
    pub currency: Option<String>,
    /// The whole new list.
    pub countries: Option<Vec<String>>,
    pub tax_inclusive: Option<bool>,
    pub shipping_taxable: Option<bool>,
    /// Only `true` is accepted: another region becomes the default by being made so.
    pub is_default: Option<bool>,
}

fn check(name: Option<&str>, currency: Option<&str>, countries: Option<&[String]>, violations: &mut Violations) {
    if name.is_some_and(|name| name.trim().is_empty() || !single_line(name, 100)) {
        violations.add("name", "invalid_format", "must be 1 to 100 characters on one line");
    }
    if currency.is_some_and(|currency| !is_currency(currency)) {
        violations.add("currency", "unknown_currency", "must be an ISO 4217 code in upper case, such as EUR");
    }
    for (index, country) in countries.unwrap_or_default().iter().enumerate() {
        if !is_country(country) {
            violations.add(&format!("countries[{index}]"), "unknown_country", "must be an ISO 3166-1 alpha-2 code");
        } else if countries.unwrap_or_default()[..index].contains(country) {
            violations.add(&format!("countries[{index}]"), "duplicate", "is listed twice");
        }
    }
}

/// Gives the region its countries; a country another region has is a 409.
async fn write_countries(tx: &mut Tx, region_id: &str, countries: &[String]) -> AppResult<()> {
    db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM region_countries WHERE region_id = $1").bind(region_id).execute(conn).await
    })?;
    for country in countries {
        let taken = db_run!(tx.conn(), |conn| {
            sqlx::query_scalar::<_, String>("SELECT region_id FROM region_countries WHERE country = $1")
                .bind(country)
                .fetch_optional(conn)
                .await
        })?;
        if taken.is_some() {
            return Err(AppError::conflict("countries", format!("{country} is already in another region.")));
        }
        db_execute!(tx.conn(), |conn| {
            sqlx::query("INSERT INTO region_countries (country, region_id) VALUES ($1, $2)")
                .bind(country)
                .bind(region_id)
                .execute(conn)
                .await
        })?;
    }
    Ok(())
}

async fn make_default(tx: &mut Tx, region_id: &str) -> AppResult<()> {
    db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE regions SET is_default = FALSE WHERE is_default AND id <> $1")
            .bind(region_id)
            .execute(conn)
            .await
    })?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE regions SET is_default = TRUE WHERE id = $1").bind(region_id).execute(conn).await
    })?;
    Ok(())
}

/// Create a region.
#[utoipa::path(post, path = "/api/v1/admin/regions", tag = "admin: checkout settings", request_body = NewRegion,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Region, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A country is in another region", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_region(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewRegion>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let mut violations = Violations::default();
    check(Some(&new.name), Some(&new.currency), Some(&new.countries), &mut violations);
    violations.finish()?;
    let id = new_id("reg");
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let first = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM regions LIMIT 1").fetch_optional(conn).await
    })?
    .is_none();
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO regions (id, name, currency, tax_inclusive, shipping_taxable, is_default, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, FALSE, $6, $6)",
        )
        .bind(&id)
        .bind(new.name.trim())
        .bind(&new.currency)
        .bind(new.tax_inclusive)
        .bind(new.shipping_taxable)
        .bind(now)
        .execute(conn)
        .await
    })?;
    write_countries(&mut tx, &id, &new.countries).await?;
    if first || new.is_default {
        make_default(&mut tx, &id).await?;
    }
    tx.invalidate(super::settings_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "region.created", Some(&id), new.name.trim()).await?;
    tx.commit().await?;
    let region = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::CREATED, region.version, region))
}

/// List the regions, the default first.
#[utoipa::path(get, path = "/api/v1/admin/regions", tag = "admin: checkout settings",
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Vec<Region>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_regions(State(state): State<AppState>, staff: CurrentStaff) -> AppResult<Json<Vec<Region>>> {
    staff.require(Permission::SettingsManage)?;
    Ok(Json(all(&state.db).await?))
}

/// Read a region.
#[utoipa::path(get, path = "/api/v1/admin/regions/{id}", tag = "admin: checkout settings", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Region, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_region(State(state): State<AppState>, staff: CurrentStaff, Path(id): Path<String>) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let region = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::OK, region.version, region))
}

/// Change a region. Send the `ETag` you read in `If-Match`. Carts in the region are priced the
/// new way at their next read.
#[utoipa::path(patch, path = "/api/v1/admin/regions/{id}", tag = "admin: checkout settings", request_body = RegionPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Region, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A country is in another region", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_region(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<RegionPatch>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let mut violations = Violations::default();
    check(patch.name.as_deref(), patch.currency.as_deref(), patch.countries.as_deref(), &mut violations);
    if patch.is_default == Some(false) {
        violations.add("is_default", "invalid", "make another region the default instead");
    }
    violations.finish()?;
    let current = find(&state.db, &id).await?;
    http::require_version(&headers, current.version)?;
    let mut tx = state.db.begin().await?;
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE regions SET name = $1, currency = $2, tax_inclusive = $3, shipping_taxable = $4, updated_at = $5, \
             version = version + 1 WHERE id = $6 AND version = $7",
        )
        .bind(patch.name.as_deref().map_or(current.name.as_str(), str::trim))
        .bind(patch.currency.as_deref().unwrap_or(&current.currency))
        .bind(patch.tax_inclusive.unwrap_or(current.tax_inclusive))
        .bind(patch.shipping_taxable.unwrap_or(current.shipping_taxable))
        .bind(Timestamp::now())
        .bind(&id)
        .bind(current.version)
        .execute(conn)
        .await
    })?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    if let Some(countries) = &patch.countries {
        write_countries(&mut tx, &id, countries).await?;
    }
    if patch.is_default == Some(true) {
        make_default(&mut tx, &id).await?;
    }
    tx.invalidate(super::settings_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "region.updated", Some(&id), &current.name).await?;
    tx.commit().await?;
    let region = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::OK, region.version, region))
}

/// Delete a region that is not the default and that no active cart uses.
#[utoipa::path(delete, path = "/api/v1/admin/regions/{id}", tag = "admin: checkout settings", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The default region, or one that carts use", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_region(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::SettingsManage)?;
    let region = find(&state.db, &id).await?;
    if region.is_default {
        return Err(AppError::conflict("is_default", "Make another region the default before deleting this one."));
    }
    let mut tx = state.db.begin().await?;
    let in_use = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM carts WHERE region_id = $1 LIMIT 1")
            .bind(&id)
            .fetch_optional(conn)
            .await
    })?;
    if in_use.is_some() {
        return Err(AppError::conflict("id", "Carts use this region; remove its countries instead."));
    }
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM regions WHERE id = $1").bind(&id).execute(conn).await)?;
    tx.invalidate(super::settings_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "region.deleted", Some(&id), &region.name).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
