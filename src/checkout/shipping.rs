//! Shipping: zones (countries, subdivisions, postcode patterns) and their methods, and which
//! methods a cart may choose and at what price.
//!
//! An address is served by the most specific zones that match it: a zone that names its
//! postcode beats one that names its subdivision ("US-CA"), which beats one that names only
//! the country. A method applies when it is active, priced in the cart's currency, and, for
//! tiered methods, when a tier covers the cart's weight or subtotal.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::address::{Address, check_subdivision, is_country};
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
    OpenApiRouter::new().routes(routes!(list_zones, create_zone)).routes(routes!(get_zone, update_zone, delete_zone))
}

/// How a method is priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MethodKind {
    /// One price.
    Flat,
    /// By the parcel's weight in grams, from `tiers`.
    Weight,
    /// By the goods' subtotal after discounts, from `tiers`.
    Subtotal,
    /// Collected from the shop.
    Pickup,
}

impl MethodKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Weight => "weight",
            Self::Subtotal => "subtotal",
            Self::Pickup => "pickup",
        }
    }

    fn parse(kind: &str) -> Self {
        match kind {
            "weight" => Self::Weight,
            "subtotal" => Self::Subtotal,
            "pickup" => Self::Pickup,
            _ => Self::Flat,
        }
    }
}

/// A step of a tiered price: up to this weight (grams) or subtotal (minor units), this price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Inclusive; absent for the last, open-ended tier.
    pub up_to: Option<i64>,
    pub amount: i64,
}

/// A way to ship to a zone.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Method {
    /// Given by the server; send it back to keep the method when changing the zone.
    #[serde(default)]
    pub id: String,
    pub name: String,
    pub kind: MethodKind,
    pub currency: String,
    /// The price of `flat` and `pickup` methods, in minor units.
    #[serde(default)]
    pub amount: i64,
    /// The tiers of `weight` and `subtotal` methods, in ascending order.
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// Free when the goods' subtotal after discounts reaches this.
    #[serde(default)]
    pub free_above: Option<i64>,
    /// Shown to shoppers: "2 to 4 working days".
    #[serde(default)]
    pub estimate: String,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// Where a set of methods applies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Zone {
    pub id: String,
    pub name: String,
    /// Countries (`FR`) or subdivisions (`US-CA`).
    pub areas: Vec<String>,
    /// Postcode patterns: a prefix ending in `*` (`75*`), a range of numbers (`10000-19999`),
    /// or a whole postcode. Empty: every postcode of the areas.
    pub postcodes: Vec<String>,
    pub methods: Vec<Method>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// What a cart offers the shopper to choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShippingOption {
    pub id: String,
    pub name: String,
    pub kind: MethodKind,
    /// In the cart's currency; with tax included when the region's prices include it.
    pub amount: i64,
    pub estimate: String,
}

impl Method {
    /// The price of this method for goods of `weight` grams and `subtotal` after discounts, or
    /// `None` when it does not apply.
    pub fn quote(&self, currency: &str, weight: i64, subtotal: i64) -> Option<i64> {
        if !self.active || self.currency != currency {
            return None;
        }
        let price = match self.kind {
            MethodKind::Flat | MethodKind::Pickup => self.amount,
            MethodKind::Weight => tier_for(&self.tiers, weight)?,
            MethodKind::Subtotal => tier_for(&self.tiers, subtotal)?,
        };
        Some(if self.free_above.is_some_and(|free| subtotal >= free) { 0 } else { price })
    }
}

fn tier_for(tiers: &[Tier], value: i64) -> Option<i64> {
    tiers.iter().find(|tier| tier.up_to.is_none_or(|up_to| value <= up_to)).map(|tier| tier.amount)
}

/// Whether `postcode` matches `pattern`, ignoring case and spaces.
pub fn postcode_matches(pattern: &str, postcode: &str) -> bool {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).flat_map(char::to_uppercase).collect::<String>();
    let (pattern, postcode) = (squash(pattern), squash(postcode));
    if let Some(prefix) = pattern.strip_suffix('*') {
        return postcode.starts_with(prefix);
    }
    if let Some((low, high)) = pattern.split_once('-')
        && let (Ok(low), Ok(high)) = (low.parse::<u64>(), high.parse::<u64>())
    {
        return postcode.bytes().all(|b| b.is_ascii_digit())
            && postcode.parse::<u64>().is_ok_and(|code| (low..=high).contains(&code));
    }
    pattern == postcode
}

impl Zone {
    /// How closely the zone names the address: 3 by postcode, 2 by subdivision, 1 by country,
    /// `None` when it does not serve it.
    pub fn specificity(&self, address: &Address) -> Option<u8> {
        let subdivision = format!("{}-{}", address.country, address.subdivision);
        let by_area = self.areas.iter().filter_map(|area| match area {
            area if *area == address.country => Some(1),
            area if !address.subdivision.is_empty() && *area == subdivision => Some(2),
            _ => None,
        });
        let area = by_area.max()?;
        if self.postcodes.is_empty() {
            return Some(area);
        }
        self.postcodes.iter().any(|pattern| postcode_matches(pattern, &address.postcode)).then_some(3)
    }
}

/// The methods a cart may choose: those of the most specific zones serving `address` that
/// have a method for the cart, in the zones' order.
pub fn options(zones: &[Zone], address: &Address, currency: &str, weight: i64, subtotal: i64) -> Vec<ShippingOption> {
    let offered = zones.iter().filter_map(|zone| {
        let score = zone.specificity(address)?;
        let options: Vec<ShippingOption> = zone
            .methods
            .iter()
            .filter_map(|method| {
                method.quote(currency, weight, subtotal).map(|amount| ShippingOption {
                    id: method.id.clone(),
                    name: method.name.clone(),
                    kind: method.kind,
                    amount,
                    estimate: method.estimate.clone(),
                })
            })
            .collect();
        (!options.is_empty()).then_some((score, options))
    });
    let offered: Vec<(u8, Vec<ShippingOption>)> = offered.collect();
    let Some(best) = offered.iter().map(|(score, _)| *score).max() else { return Vec::new() };
    offered.into_iter().filter(|(score, _)| *score == best).flat_map(|(_, options)| options).collect()
}

#[derive(sqlx::FromRow)]
struct ZoneRow {
    id: String,
    name: String,
    areas: String,
    postcodes: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

#[derive(sqlx::FromRow)]
struct MethodRow {
    id: String,
    zone_id: String,
    name: String,
    kind: String,
    currency: String,
    amount: i64,
    tiers: String,
    free_above: Option<i64>,
    estimate: String,
    active: bool,
}

fn not_found() -> AppError {
    AppError::not_found("No shipping zone has this id.")
}

/// Every zone with its methods, oldest first.
pub async fn all(db: &Db) -> AppResult<Vec<Zone>> {
    let zones = db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, ZoneRow>(
            "SELECT id, name, areas, postcodes, created_at, updated_at, version FROM shipping_zones ORDER BY id",
        )
        .fetch_all(conn)
        .await
    })?;
    let methods = db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, MethodRow>(
            "SELECT id, zone_id, name, kind, currency, amount, tiers, free_above, estimate, active \
             FROM shipping_methods ORDER BY zone_id, position",
        )
        .fetch_all(conn)
        .await
    })?;
    let zones = zones
        .into_iter()
        .map(|zone| Zone {
            methods: methods
                .iter()
                .filter(|method| method.zone_id == zone.id)
                .map(|method| Method {
                    id: method.id.clone(),
                    name: method.name.clone(),
                    kind: MethodKind::parse(&method.kind),
                    currency: method.currency.clone(),
                    amount: method.amount,
                    tiers: serde_json::from_str(&method.tiers).unwrap_or_default(),
                    free_above: method.free_above,
                    estimate: method.estimate.clone(),
                    active: method.active,
                })
                .collect(),
            id: zone.id,
            name: zone.name,
            areas: serde_json::from_str(&zone.areas).unwrap_or_default(),
            postcodes: serde_json::from_str(&zone.postcodes).unwrap_or_default(),
            created_at: zone.created_at,
            updated_at: zone.updated_at,
            version: zone.version,
        })
        .collect();
    Ok(zones)
}

async fn find(db: &Db, id: &str) -> AppResult<Zone> {
    if !has_shape(id, "shz") {
        return Err(not_found());
    }
    all(db).await?.into_iter().find(|zone| zone.id == id).ok_or_else(not_found)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewZone {
    pub name: String,
    pub areas: Vec<String>,
    #[serde(default)]
    pub postcodes: Vec<String>,
    #[serde(default)]
    pub methods: Vec<Method>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ZonePatch {
    pub name: Option<String>,
    pub areas: Option<Vec<String>>,
    pub postcodes: Option<Vec<String>>,
    /// The whole new list: a method sent with its `id` is kept (carts that chose it keep it),
    /// one without is new, one left out is removed.
    pub methods: Option<Vec<Method>>,
}

fn check_area(area: &str) -> bool {
    match area.split_once('-') {
        None => is_country(area),
        Some((country, subdivision)) => is_country(country) && check_subdivision(country, subdivision).is_ok(),
    }
}

fn check_method(method: &Method, field: &str, violations: &mut Violations) {
    if method.name.trim().is_empty() || !single_line(&method.name, 100) {
        violations.add(&format!("{field}.name"), "invalid_format", "must be 1 to 100 characters on one line");
    }
    if !is_currency(&method.currency) {
        violations.add(&format!("{field}.currency"), "unknown_currency", "must be an ISO 4217 code in upper case");
    }
    if method.amount < 0 || method.free_above.is_some_and(|free| free < 0) {
        violations.add(&format!("{field}.amount"), "out_of_range", "amounts may not be negative");
    }
    if !single_line(&method.estimate, 100) {
        violations.add(&format!("{field}.estimate"), "invalid_format", "must be at most 100 characters on one line");
    }
    let tiered = matches!(method.kind, MethodKind::Weight | MethodKind::Subtotal);
    if tiered == method.tiers.is_empty() {
        let message = if tiered { "a weight or subtotal method needs tiers" } else { "only tiered methods take tiers" };
        violations.add(&format!("{field}.tiers"), "invalid", message);
    }
    let mut last = None;
    for (index, tier) in method.tiers.iter().enumerate() {
        let ascending = match (last, tier.up_to) {
            (Some(None), _) => false,
            (Some(Some(before)), Some(up_to)) => up_to > before,
            _ => true,
        };
        if tier.amount < 0 || tier.up_to.is_some_and(|up_to| up_to < 0) || !ascending {
            violations.add(
                &format!("{field}.tiers[{index}]"),
                "invalid",
                "tiers ascend, with only the last open-ended, and amounts are not negative",
            );
        }
        last = Some(tier.up_to);
    }
}

fn check(
    name: Option<&str>,
    areas: Option<&[String]>,
    postcodes: Option<&[String]>,
    methods: Option<&[Method]>,
    violations: &mut Violations,
) {
    if name.is_some_and(|name| name.trim().is_empty() || !single_line(name, 100)) {
        violations.add("name", "invalid_format", "must be 1 to 100 characters on one line");
    }
    if areas.is_some_and(|areas| areas.is_empty() || areas.len() > 300) {
        violations.add("areas", "invalid", "must name 1 to 300 countries or subdivisions");
    }
    for (index, area) in areas.unwrap_or_default().iter().enumerate() {
        if !check_area(area) {
            violations.add(
                &format!("areas[{index}]"),
                "unknown_area",
                "must be a country (FR) or a subdivision (US-CA)",
            );
        }
    }
    if postcodes.is_some_and(|postcodes| postcodes.len() > 1000) {
        violations.add("postcodes", "too_many", "must be at most 1000 patterns");
    }
    for (index, pattern) in postcodes.unwrap_or_default().iter().enumerate() {
        if pattern.trim().is_empty() || !single_line(pattern, 40) {
            violations.add(&format!("postcodes[{index}]"), "invalid_format", "must be 1 to 40 characters");
        }
    }
    if methods.is_some_and(|methods| methods.len() > 50) {
        violations.add("methods", "too_many", "must be at most 50 methods");
    }
    for (index, method) in methods.unwrap_or_default().iter().enumerate() {
        check_method(method, &format!("methods[{index}]"), violations);
    }
}

/// Replaces the zone's methods, keeping the ids of those sent with one.
async fn write_methods(tx: &mut Tx, zone_id: &str, methods: &[Method]) -> AppResult<()> {
    let existing = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM shipping_methods WHERE zone_id = $1")
            .bind(zone_id)
            .fetch_all(conn)
            .await
    })?;
    let mut violations = Violations::default();
    for (index, method) in methods.iter().enumerate() {
        if !method.id.is_empty() && !existing.contains(&method.id) {
            violations.add(&format!("methods[{index}].id"), "unknown", "names no method of this zone");
        }
    }
    violations.finish()?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM shipping_methods WHERE zone_id = $1").bind(zone_id).execute(conn).await
    })?;
    for (position, method) in methods.iter().enumerate() {
        let id = if method.id.is_empty() { new_id("shm") } else { method.id.clone() };
        let tiers = serde_json::to_string(&method.tiers).map_err(AppError::internal)?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO shipping_methods (id, zone_id, position, name, kind, currency, amount, tiers, \
                 free_above, estimate, active) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
            .bind(&id)
            .bind(zone_id)
            .bind(position as i64)
            .bind(method.name.trim())
            .bind(method.kind.as_str())
            .bind(&method.currency)
            .bind(method.amount)
            .bind(&tiers)
            .bind(method.free_above)
            .bind(method.estimate.trim())
            .bind(method.active)
            .execute(conn)
            .await
        })?;
    }
    Ok(())
}

fn json_list(list: &[String]) -> AppResult<String> {
    serde_json::to_string(list).map_err(AppError::internal)
}

/// Create a shipping zone with its methods.
#[utoipa::path(post, path = "/api/v1/admin/shipping-zones", tag = "admin: checkout settings", request_body = NewZone,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Zone, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_zone(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewZone>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let mut violations = Violations::default();
    check(Some(&new.name), Some(&new.areas), Some(&new.postcodes), Some(&new.methods), &mut violations);
    for (index, method) in new.methods.iter().enumerate() {
        if !method.id.is_empty() {
            violations.add(&format!("methods[{index}].id"), "unknown", "a new zone's methods have no id yet");
        }
    }
    violations.finish()?;
    let id = new_id("shz");
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO shipping_zones (id, name, areas, postcodes, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&id)
        .bind(new.name.trim())
        .bind(json_list(&new.areas)?)
        .bind(json_list(&new.postcodes)?)
        .bind(now)
        .execute(conn)
        .await
    })?;
    write_methods(&mut tx, &id, &new.methods).await?;
    tx.invalidate(super::settings_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "shipping_zone.created", Some(&id), new.name.trim()).await?;
    tx.commit().await?;
    let zone = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::CREATED, zone.version, zone))
}

/// List the shipping zones with their methods.
#[utoipa::path(get, path = "/api/v1/admin/shipping-zones", tag = "admin: checkout settings",
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Vec<Zone>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_zones(State(state): State<AppState>, staff: CurrentStaff) -> AppResult<Json<Vec<Zone>>> {
    staff.require(Permission::SettingsManage)?;
    Ok(Json(all(&state.db).await?))
}

/// Read a shipping zone.
#[utoipa::path(get, path = "/api/v1/admin/shipping-zones/{id}", tag = "admin: checkout settings", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Zone, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_zone(State(state): State<AppState>, staff: CurrentStaff, Path(id): Path<String>) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let zone = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::OK, zone.version, zone))
}

/// Change a shipping zone. Send the `ETag` you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/shipping-zones/{id}", tag = "admin: checkout settings", request_body = ZonePatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Zone, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_zone(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<ZonePatch>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let mut violations = Violations::default();
    check(
        patch.name.as_deref(),
        patch.areas.as_deref(),
        patch.postcodes.as_deref(),
        patch.methods.as_deref(),
        &mut violations,
    );
    violations.finish()?;
    let current = find(&state.db, &id).await?;
    http::require_version(&headers, current.version)?;
    let mut tx = state.db.begin().await?;
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE shipping_zones SET name = $1, areas = $2, postcodes = $3, updated_at = $4, version = version + 1 \
             WHERE id = $5 AND version = $6",
        )
        .bind(patch.name.as_deref().map_or(current.name.as_str(), str::trim))
        .bind(json_list(patch.areas.as_ref().unwrap_or(&current.areas))?)
        .bind(json_list(patch.postcodes.as_ref().unwrap_or(&current.postcodes))?)
        .bind(Timestamp::now())
        .bind(&id)
        .bind(current.version)
        .execute(conn)
        .await
    })?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    if let Some(methods) = &patch.methods {
        write_methods(&mut tx, &id, methods).await?;
    }
    tx.invalidate(super::settings_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "shipping_zone.updated", Some(&id), &current.name).await?;
    tx.commit().await?;
    let zone = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::OK, zone.version, zone))
}

/// Delete a shipping zone and its methods. Carts that chose one of them are asked to choose
/// again.
#[utoipa::path(delete, path = "/api/v1/admin/shipping-zones/{id}", tag = "admin: checkout settings", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_zone(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::SettingsManage)?;
    let zone = find(&state.db, &id).await?;
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM shipping_zones WHERE id = $1")
        .bind(&id)
        .execute(conn)
        .await)?;
    tx.invalidate(super::settings_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "shipping_zone.deleted", Some(&id), &zone.name).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(country: &str, subdivision: &str, postcode: &str) -> Address {
        Address {
            first_name: "A".into(),
            last_name: "B".into(),
            company: String::new(),
            line1: "1 Road".into(),
            line2: String::new(),
            city: "Town".into(),
            subdivision: subdivision.into(),
            postcode: postcode.into(),
            country: country.into(),
            phone: String::new(),
        }
    }

    fn method(name: &str, kind: MethodKind, amount: i64, tiers: Vec<Tier>, free_above: Option<i64>) -> Method {
        Method {
            id: format!("shm_{name}"),
            name: name.into(),
            kind,
            currency: "USD".into(),
            amount,
            tiers,
            free_above,
            estimate: String::new(),
            active: true,
        }
    }

    fn zone(areas: &[&str], postcodes: &[&str], methods: Vec<Method>) -> Zone {
        Zone {
            id: "shz".into(),
            name: "zone".into(),
            areas: areas.iter().map(|a| (*a).to_owned()).collect(),
            postcodes: postcodes.iter().map(|p| (*p).to_owned()).collect(),
            methods,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            version: 1,
        }
    }

    #[test]
    fn tiers_free_shipping_and_currency() {
        let tiers = vec![Tier { up_to: Some(1000), amount: 500 }, Tier { up_to: Some(5000), amount: 900 }];
        let by_weight = method("w", MethodKind::Weight, 0, tiers, Some(10_000));
        assert_eq!(by_weight.quote("USD", 1000, 0), Some(500));
        assert_eq!(by_weight.quote("USD", 1001, 0), Some(900));
        assert_eq!(by_weight.quote("USD", 5001, 0), None);
        assert_eq!(by_weight.quote("USD", 2000, 10_000), Some(0));
        assert_eq!(by_weight.quote("EUR", 100, 0), None);
        let open = vec![Tier { up_to: Some(5000), amount: 800 }, Tier { up_to: None, amount: 0 }];
        let by_subtotal = method("s", MethodKind::Subtotal, 0, open, None);
        assert_eq!(by_subtotal.quote("USD", 0, 4999), Some(800));
        assert_eq!(by_subtotal.quote("USD", 0, 99_999), Some(0));
    }

    #[test]
    fn the_most_specific_zone_serves_an_address() {
        let zones = vec![
            zone(&["US"], &[], vec![method("ground", MethodKind::Flat, 800, vec![], None)]),
            zone(&["US-CA"], &[], vec![method("california", MethodKind::Flat, 600, vec![], None)]),
            zone(&["US"], &["10000-10299"], vec![method("courier", MethodKind::Flat, 1500, vec![], None)]),
        ];
        let names = |a: &Address| options(&zones, a, "USD", 0, 0).into_iter().map(|o| o.name).collect::<Vec<_>>();
        assert_eq!(names(&address("US", "TX", "75001")), ["ground"]);
        assert_eq!(names(&address("US", "CA", "94105")), ["california"]);
        assert_eq!(names(&address("US", "NY", "10001")), ["courier"]);
        assert!(names(&address("CA", "ON", "K1A 0B1")).is_empty());
    }

    #[test]
    fn postcode_patterns() {
        assert!(postcode_matches("sw1a*", "SW1A 1AA"));
        assert!(!postcode_matches("SW1A*", "SW1 1AA"));
        assert!(postcode_matches("10000-19999", "10001"));
        assert!(!postcode_matches("10000-19999", "20001"));
        assert!(!postcode_matches("10000-19999", "1000A"));
        assert!(postcode_matches("75001", "75001"));
    }
}
