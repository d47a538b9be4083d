//! Staff change a product's variants after it was made: add one, change one (its prices
//! replaced whole), remove one. Each change is a new version of the product, announced as
//! `product.updated`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::products::{self, NewVariant, Price, Product, VariantFields};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::messaging::webhooks;
use crate::platform::db::{Tx, dialect};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{self, Json};
use crate::platform::ids::has_shape;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(add_variant)).routes(routes!(update_variant, delete_variant))
}

fn product_not_found() -> AppError {
    AppError::not_found("No product has this id.")
}

fn variant_not_found() -> AppError {
    AppError::not_found("No variant has this id.")
}

/// The product a variant belongs to, as it is now.
async fn product_of_variant(state: &AppState, variant_id: &str) -> AppResult<Product> {
    if !has_shape(variant_id, "var") {
        return Err(variant_not_found());
    }
    let product_id = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT product_id FROM product_variants WHERE id = $1")
            .bind(variant_id)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(variant_not_found)?;
    products::find(state, "id", &product_id, "").await?.ok_or_else(variant_not_found)
}

/// Makes the change a new version of the product, provided it is still the version the
/// change was made from; then announces the product as it now is.
async fn finish(
    state: &AppState,
    mut tx: Tx,
    staff: &CurrentStaff,
    mut product: Product,
    action: &str,
    subject: &str,
) -> AppResult<Product> {
    let now = Timestamp::now();
    let bumped = db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE products SET updated_at = $1, version = version + 1 WHERE id = $2 AND version = $3")
            .bind(now)
            .bind(&product.id)
            .bind(product.version)
            .execute(conn)
            .await
    })?;
    if bumped == 0 {
        return Err(http::stale_version());
    }
    product.version += 1;
    product.updated_at = now;
    tx.invalidate(super::changed(&product.id));
    webhooks::emit(state, &mut tx, "product.updated", &product).await?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, action, Some(subject), &product.handle).await?;
    tx.commit().await?;
    Ok(product)
}

/// Add a variant: a combination of option values the product does not sell yet.
#[utoipa::path(post, path = "/api/v1/admin/products/{id}/variants", tag = "admin: products",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The product's ETag as read")),
    request_body = NewVariant,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Product, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The SKU is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn add_variant(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(variant): Json<NewVariant>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    if !has_shape(&id, "prd") {
        return Err(product_not_found());
    }
    let mut product = products::find(&state, "id", &id, "").await?.ok_or_else(product_not_found)?;
    http::require_version(&headers, product.version)?;
    let mut violations = Violations::default();
    let combination = products::check_variant(&product.options, &variant, "", &mut violations);
    if product.options.is_empty() {
        violations.add("options", "not_allowed", "a product without options has one variant; give it options first");
    } else if combination && product.variants.iter().any(|v| v.options == variant.options) {
        violations.add("options", "duplicate", "another variant has the same option values");
    }
    if product.variants.len() >= 100 {
        violations.add("options", "too_many", "a product has at most 100 variants");
    }
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    let position = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COALESCE(MAX(position), -1) + 1 AS BIGINT) FROM product_variants WHERE product_id = $1",
        )
        .bind(&id)
        .fetch_one(conn)
        .await
    })?;
    let mut added =
        products::insert_variants(&mut tx, &id, std::slice::from_ref(&variant), Timestamp::now(), position, |_| {
            "sku".to_owned()
        })
        .await?;
    let new_id = added.first().map(|v| v.id.clone()).unwrap_or_default();
    product.variants.append(&mut added);
    let product = finish(&state, tx, &staff, product, "product.variant_added", &new_id).await?;
    Ok(http::tagged(StatusCode::CREATED, product.version, product))
}

/// What to change in a variant. `prices`, when given, replaces all its prices.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantPatch {
    pub sku: Option<String>,
    pub barcode: Option<String>,
    pub weight_grams: Option<i64>,
    pub length_mm: Option<i64>,
    pub width_mm: Option<i64>,
    pub height_mm: Option<i64>,
    pub tax_class: Option<String>,
    pub inventory_policy: Option<String>,
    pub low_stock_threshold: Option<i64>,
    pub prices: Option<Vec<Price>>,
}

/// Change a variant. Send the product's `ETag` in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/variants/{id}", tag = "admin: products", request_body = VariantPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The product's ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Product, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The SKU is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_variant(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<VariantPatch>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    if patch
        .sku
        .as_ref()
        .is_some_and(|sku| sku.is_empty() || sku.len() > 64 || !sku.bytes().all(|b| b.is_ascii_graphic()))
    {
        violations.add("sku", "invalid_format", "must be 1 to 64 visible ASCII characters");
    }
    let fields = VariantFields {
        barcode: patch.barcode.as_deref(),
        weight_grams: patch.weight_grams,
        length_mm: patch.length_mm,
        width_mm: patch.width_mm,
        height_mm: patch.height_mm,
        tax_class: patch.tax_class.as_deref(),
        inventory_policy: patch.inventory_policy.as_deref(),
        low_stock_threshold: patch.low_stock_threshold,
        prices: patch.prices.as_deref(),
    };
    products::check_variant_fields(&fields, "", &mut violations);
    violations.finish()?;
    let mut product = product_of_variant(&state, &id).await?;
    http::require_version(&headers, product.version)?;
    let Some(variant) = product.variants.iter_mut().find(|v| v.id == id) else { return Err(variant_not_found()) };
    if let Some(sku) = patch.sku {
        variant.sku = Some(sku);
    }
    macro_rules! take {
        ($($field:ident),*) => { $( if let Some(value) = patch.$field { variant.$field = value.into(); } )* };
    }
    take!(barcode, weight_grams, length_mm, width_mm, height_mm, tax_class, inventory_policy, low_stock_threshold);
    if let Some(mut prices) = patch.prices {
        prices.sort_by(|a, b| a.currency.cmp(&b.currency));
        variant.prices = prices;
    }
    let variant = variant.clone();
    let mut tx = state.db.begin().await?;
    let written = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE product_variants SET sku = $1, barcode = $2, weight_grams = $3, length_mm = $4, width_mm = $5, \
             height_mm = $6, tax_class = $7, inventory_policy = $8, low_stock_threshold = $9, updated_at = $10 \
             WHERE id = $11",
        )
        .bind(&variant.sku)
        .bind(&variant.barcode)
        .bind(variant.weight_grams)
        .bind(variant.length_mm)
        .bind(variant.width_mm)
        .bind(variant.height_mm)
        .bind(&variant.tax_class)
        .bind(&variant.inventory_policy)
        .bind(variant.low_stock_threshold)
        .bind(Timestamp::now())
        .bind(&id)
        .execute(conn)
        .await
    });
    match written {
        Err(err) if dialect::is_unique_violation(&err, "product_variants", "sku") => {
            return Err(AppError::conflict("sku", "Another variant has this SKU."));
        }
        other => other?,
    };
    products::write_prices(&mut tx, &id, &variant.prices).await?;
    let product = finish(&state, tx, &staff, product, "product.variant_updated", &id).await?;
    Ok(http::tagged(StatusCode::OK, product.version, product))
}

/// Remove a variant that was never sold and that no checkout holds; a product keeps at least one.
#[utoipa::path(delete, path = "/api/v1/admin/variants/{id}", tag = "admin: products",
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The product's ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Product, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last variant, sold, or held by a checkout", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_variant(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut product = product_of_variant(&state, &id).await?;
    http::require_version(&headers, product.version)?;
    if product.variants.len() <= 1 {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "A product keeps at least one variant; delete or archive the product.",
        ));
    }
    let mut tx = state.db.begin().await?;
    let history = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>(
            "SELECT (SELECT COUNT(*) FROM inventory_movements WHERE variant_id = $1 AND kind = 'sold') + \
             (SELECT COUNT(*) FROM inventory_reservations WHERE variant_id = $1 AND status = 'active')",
        )
        .bind(&id)
        .fetch_one(conn)
        .await
    })?;
    if history > 0 {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "This variant has been sold or is held by a checkout; it stays.",
        ));
    }
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM product_variants WHERE id = $1")
        .bind(&id)
        .execute(conn)
        .await)?;
    product.variants.retain(|v| v.id != id);
    let product = finish(&state, tx, &staff, product, "product.variant_deleted", &id).await?;
    Ok(http::tagged(StatusCode::OK, product.version, product))
}
