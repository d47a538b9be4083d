//! Shoppers browse published products.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::inventory::Availability;
use super::products::{self, Price, Product, ProductOption, Variant};
use crate::app::AppState;
use crate::db_run;
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{Query, Rendered};
use crate::platform::ids::has_shape;
use crate::platform::pagination::{Page, check_page};
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_products)).routes(routes!(product_by_handle))
}

/// A published product as shoppers see it: no draft fields, no staff metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreProduct {
    pub id: String,
    pub handle: String,
    pub title: String,
    /// Sanitised HTML.
    pub description_html: String,
    pub product_type: String,
    pub vendor: String,
    pub tags: Vec<String>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<StoreVariant>,
    pub seo_title: String,
    pub seo_description: String,
    pub published_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A variant as shoppers see it: whether it can be bought, and how many only when the shop
/// shows quantities (`catalog.show_stock_quantity`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreVariant {
    pub id: String,
    pub sku: Option<String>,
    pub options: std::collections::BTreeMap<String, String>,
    pub weight_grams: Option<i64>,
    pub prices: Vec<Price>,
    pub availability: Availability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}

impl StoreVariant {
    fn new(variant: Variant, show_quantity: bool) -> Self {
        Self {
            availability: Availability::of(variant.available, variant.low_stock_threshold, &variant.inventory_policy),
            available: show_quantity.then_some(variant.available.max(0)),
            id: variant.id,
            sku: variant.sku,
            options: variant.options,
            weight_grams: variant.weight_grams,
            prices: variant.prices,
        }
    }
}

impl StoreProduct {
    fn new(product: Product, show_quantity: bool) -> Self {
        Self {
            id: product.id,
            handle: product.handle,
            title: product.title,
            description_html: product.description_html,
            product_type: product.product_type,
            vendor: product.vendor,
            tags: product.tags,
            options: product.options,
            variants: product.variants.into_iter().map(|v| StoreVariant::new(v, show_quantity)).collect(),
            seo_title: product.seo_title,
            seo_description: product.seo_description,
            published_at: product.published_at,
            updated_at: product.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StoreFilter {
    pub limit: Option<u32>,
    pub after: Option<String>,
}

/// A rendered read from the cache, or `read` rendered and cached.
async fn cached<T, F>(state: &AppState, key: String, read: F) -> AppResult<Option<Arc<Rendered>>>
where
    T: Serialize,
    F: std::future::Future<Output = AppResult<Option<T>>>,
{
    if let Some(hit) = state.storefront.get(&key) {
        return Ok(Some(hit));
    }
    let generation = state.storefront.generation();
    let Some(value) = read.await? else { return Ok(None) };
    let rendered = Arc::new(Rendered::new(&value)?);
    state.storefront.insert(key, rendered.clone(), generation);
    Ok(Some(rendered))
}

/// List published products, newest first. Answers carry an `ETag`; send it back in
/// `If-None-Match` to get 304 while nothing changed.
#[utoipa::path(get, path = "/api/v1/store/products", tag = "store: products", params(StoreFilter),
    responses(
        (status = 200, body = Page<StoreProduct>, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_products(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<StoreFilter>,
) -> AppResult<Response> {
    let mut violations = Violations::default();
    let limit = check_page(filter.limit, filter.after.as_deref(), &mut violations);
    // Only real cursors: each distinct one would hold a cached page.
    if filter.after.as_deref().is_some_and(|after| !has_shape(after, "prd")) {
        violations.add("after", "invalid", "is not a cursor this API gave out");
    }
    violations.finish()?;
    let after = filter.after.unwrap_or_default();
    let key = format!("list:{limit}:{after}");
    let rendered = cached(&state, key, async {
        let rows =
            products::page(&state.db, "status = 'published' AND ($1 = '' OR id < $1)", "id DESC", &[&after], limit)
                .await?;
        let page = Page::from_rows(rows, limit, |row| row.id.clone());
        let show = state.config.catalog.show_stock_quantity;
        let data = page.data.into_iter().map(|product| StoreProduct::new(product, show)).collect();
        Ok(Some(Page { data, next_cursor: page.next_cursor }))
    })
    .await?
    .ok_or_else(|| AppError::internal(anyhow::anyhow!("a list page is never absent")))?;
    Ok(rendered.respond(&headers))
}

/// Read a published product by its handle, with an `ETag` as for lists.
#[utoipa::path(get, path = "/api/v1/store/products/{handle}", tag = "store: products", params(("handle" = String, Path)),
    responses(
        (status = 200, body = StoreProduct, headers(("ETag" = String))),
        (status = 301, description = "A handle the product had before: `Location` gives the current address"),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn product_by_handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(handle): Path<String>,
) -> AppResult<Response> {
    let not_found = || AppError::not_found("No published product has this handle.");
    if !products::check_handle(&handle) {
        return Err(not_found());
    }
    let rendered = cached(&state, format!("handle:{handle}"), async {
        let product = products::find(&state.db, "handle", &handle, " AND status = 'published'").await?;
        Ok(product.map(|product| StoreProduct::new(product, state.config.catalog.show_stock_quantity)))
    })
    .await?;
    if let Some(rendered) = rendered {
        return Ok(rendered.respond(&headers));
    }
    // A handle the product had before: sent on, permanently, to the current one.
    let moved = db_run!(state.db.read(), |conn| {
        sqlx::query_scalar::<_, String>(
            "SELECT p.handle FROM product_handle_history h JOIN products p ON p.id = h.product_id \
             WHERE h.handle = $1 AND p.status = 'published'",
        )
        .bind(&handle)
        .fetch_optional(conn)
        .await
    })?;
    match moved {
        Some(current) => {
            let location = format!("/api/v1/store/products/{current}");
            Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response())
        }
        None => Err(not_found()),
    }
}
