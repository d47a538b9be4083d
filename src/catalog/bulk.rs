//! Changes to many products in one request, all or nothing: publish, archive or unpublish a
//! list of products, or set prices from a list of SKUs.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::money::is_currency;
use super::products::{self, PRODUCT_COLUMNS, Price, Product, ProductRow};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::messaging::webhooks;
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::Json;
use crate::platform::ids::has_shape;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The most products or price lines one request changes.
const MAX_ITEMS: usize = 1_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(bulk_products))
}

/// What to do to many products.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BulkAction {
    /// Shoppers see them.
    Publish { product_ids: Vec<String> },
    /// Back to draft: shoppers no longer see them.
    Unpublish { product_ids: Vec<String> },
    /// Retired: kept with their history, hidden from shoppers.
    Archive { product_ids: Vec<String> },
    /// Set each listed variant's price in a currency (other currencies stay).
    SetPrices { prices: Vec<PriceLine> },
}

/// A variant's new price in one currency.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceLine {
    pub sku: String,
    pub currency: String,
    pub amount: i64,
    #[serde(default)]
    pub compare_at_amount: Option<i64>,
}

/// What a bulk action changed.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkOutcome {
    /// The products that changed; those already as asked are left alone.
    pub updated: Vec<String>,
}

/// Publish, unpublish or archive many products, or set many prices, in one transaction:
/// if any item is refused, nothing changes. Each changed product is announced as
/// `product.updated`.
#[utoipa::path(post, path = "/api/v1/admin/products/bulk", tag = "admin: products", request_body = BulkAction,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = BulkOutcome),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A product changed while this ran; try again", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn bulk_products(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(action): Json<BulkAction>,
) -> AppResult<Json<BulkOutcome>> {
    staff.require(Permission::ProductsWrite)?;
    let (changed, prices_changed) = match action {
        BulkAction::Publish { product_ids } => (set_status(&state, &product_ids, "published").await?, false),
        BulkAction::Unpublish { product_ids } => (set_status(&state, &product_ids, "draft").await?, false),
        BulkAction::Archive { product_ids } => (set_status(&state, &product_ids, "archived").await?, false),
        BulkAction::SetPrices { prices } => (set_prices(&state, &prices).await?, true),
    };
    let updated: Vec<String> = changed.iter().map(|product| product.id.clone()).collect();
    let mut tx = state.db.begin().await?;
    let (actor_kind, actor_id) = staff.actor();
    for product in &changed {
        let now = Timestamp::now();
        let bumped = db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "UPDATE products SET status = $1, published_at = $2, updated_at = $3, version = version + 1 \
                 WHERE id = $4 AND version = $5",
            )
            .bind(&product.status)
            .bind(product.published_at)
            .bind(now)
            .bind(&product.id)
            .bind(product.version - 1)
            .execute(conn)
            .await
        })?;
        if bumped == 0 {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "A product changed while this ran; nothing was changed. Try again.",
            ));
        }
        if prices_changed {
            for variant in &product.variants {
                products::write_prices(&mut tx, &variant.id, &variant.prices).await?;
            }
        }
        tx.invalidate(super::changed(&product.id));
        webhooks::emit(&state, &mut tx, "product.updated", product).await?;
        audit::record(&mut tx, actor_kind, actor_id, "product.updated", Some(&product.id), &product.status).await?;
    }
    tx.commit().await?;
    Ok(Json(BulkOutcome { updated }))
}

/// The products `ids` as they are now, in the order asked; unknown ids are reported as
/// `{field}[n]`.
async fn read_products(state: &AppState, ids: &[String], field: &str) -> AppResult<Vec<Product>> {
    if ids.is_empty() || ids.len() > MAX_ITEMS {
        return Err(AppError::invalid_field(field, "out_of_range", format!("must list 1 to {MAX_ITEMS} items")));
    }
    let mut violations = Violations::default();
    let mut found: HashMap<String, Product> = HashMap::new();
    let wanted: Vec<&String> = ids.iter().filter(|id| has_shape(id, "prd")).collect();
    for chunk in wanted.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ({})", list.join(", "));
        let rows = db_run!(state.db.read().await?, |conn| {
            let mut query = sqlx::query_as::<_, ProductRow>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.fetch_all(conn).await
        })?;
        for product in products::assemble(&state.db, &state.media, rows).await? {
            found.insert(product.id.clone(), product);
        }
    }
    let mut seen = HashSet::new();
    let mut products = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        match found.remove(id) {
            Some(product) => products.push(product),
            None if seen.contains(id) => violations.add(&format!("{field}[{index}]"), "duplicate", "is listed twice"),
            None => violations.add(&format!("{field}[{index}]"), "unknown", "names no product"),
        }
        seen.insert(id);
    }
    violations.finish()?;
    Ok(products)
}

/// The products whose status changes, as they will be.
async fn set_status(state: &AppState, ids: &[String], status: &str) -> AppResult<Vec<Product>> {
    let now = Timestamp::now();
    let products = read_products(state, ids, "product_ids").await?;
    Ok(products
        .into_iter()
        .filter(|product| product.status != status)
        .map(|product| Product {
            status: status.to_owned(),
            published_at: product.published_at.or((status == "published").then_some(now)),
            updated_at: now,
            version: product.version + 1,
            ..product
        })
        .collect())
}

/// The products whose prices change, as they will be.
async fn set_prices(state: &AppState, lines: &[PriceLine]) -> AppResult<Vec<Product>> {
    let mut violations = Violations::default();
    if lines.is_empty() || lines.len() > MAX_ITEMS {
        violations.add("prices", "out_of_range", format!("must list 1 to {MAX_ITEMS} prices"));
    }
    let mut pairs = HashSet::new();
    for (index, line) in lines.iter().enumerate() {
        let at = |field: &str| format!("prices[{index}].{field}");
        if !is_currency(&line.currency) {
            violations.add(&at("currency"), "invalid", "must be an ISO 4217 currency code such as EUR");
        }
        if !(0..=products::MAX_AMOUNT).contains(&line.amount) {
            violations.add(&at("amount"), "out_of_range", "must be between 0 and 1000000000000 minor units");
        }
        if line.compare_at_amount.is_some_and(|c| c <= line.amount || c > products::MAX_AMOUNT) {
            violations.add(&at("compare_at_amount"), "out_of_range", "must be above the amount");
        }
        if !pairs.insert((&line.sku, &line.currency)) {
            violations.add(&at("sku"), "duplicate", "has another price in this currency in the list");
        }
    }
    violations.finish()?;
    let mut violations = Violations::default();
    let skus: Vec<&String> = lines.iter().map(|line| &line.sku).collect::<HashSet<_>>().into_iter().collect();
    let mut owner: HashMap<String, (String, String)> = HashMap::new();
    for chunk in skus.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT sku, id, product_id FROM product_variants WHERE sku IN ({})", list.join(", "));
        let rows = db_run!(state.db.read().await?, |conn| {
            let mut query = sqlx::query_as::<_, (String, String, String)>(&sql);
            for sku in chunk {
                query = query.bind(*sku);
            }
            query.fetch_all(conn).await
        })?;
        owner.extend(rows.into_iter().map(|(sku, variant, product)| (sku, (variant, product))));
    }
    for (index, line) in lines.iter().enumerate() {
        if !owner.contains_key(&line.sku) {
            violations.add(&format!("prices[{index}].sku"), "unknown", "names no variant");
        }
    }
    violations.finish()?;
    let mut product_ids: Vec<String> = owner.values().map(|(_, product)| product.clone()).collect();
    product_ids.sort();
    product_ids.dedup();
    let mut products = read_products(state, &product_ids, "prices").await?;
    let mut new_prices: BTreeMap<&str, Vec<&PriceLine>> = BTreeMap::new();
    for line in lines {
        if let Some((variant, _)) = owner.get(&line.sku) {
            new_prices.entry(variant).or_default().push(line);
        }
    }
    let now = Timestamp::now();
    for product in &mut products {
        for variant in &mut product.variants {
            for line in new_prices.get(variant.id.as_str()).into_iter().flatten() {
                variant.prices.retain(|price| price.currency != line.currency);
                variant.prices.push(Price {
                    currency: line.currency.clone(),
                    amount: line.amount,
                    compare_at_amount: line.compare_at_amount,
                });
            }
            variant.prices.sort_by(|a, b| a.currency.cmp(&b.currency));
            if variant.prices.len() > 30 {
                return Err(AppError::invalid_field("prices", "too_many", "would give a variant more than 30 prices"));
            }
        }
        product.updated_at = now;
        product.version += 1;
    }
    Ok(products)
}
