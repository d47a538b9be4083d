//! Staff manage products: create with options, variants and prices; read; edit the product's
//! own fields under `If-Match`; delete. Every change is announced as a `product.*` event.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::markdown;
use super::products::{self, Fields, NewProduct, Product, ProductOption};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::messaging::webhooks;
use crate::platform::db::{Tx, dialect};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{Page, check_page};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_products, create_product)).routes(routes!(
        get_product,
        update_product,
        delete_product
    ))
}

fn not_found() -> AppError {
    AppError::not_found("No product has this id.")
}

fn handle_taken(err: sqlx::Error) -> AppError {
    if dialect::is_unique_violation(&err, "products", "handle") {
        return AppError::conflict("handle", "Another product has this handle.");
    }
    err.into()
}

/// Create a product with its options, variants and prices.
#[utoipa::path(post, path = "/api/v1/admin/products", tag = "admin: products", request_body = NewProduct,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Product, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle or a SKU is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_product(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewProduct>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    products::check_new(&new, &mut violations);
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    let categories = products::clean_ids(&new.categories);
    super::categories::check_ids(&mut tx, &categories, "categories").await?;
    products::check_images(&mut tx, &new.images).await?;
    let product = insert_product(&state, &mut tx, new, categories).await?;
    let id = product.id.clone();
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "product.created", Some(&id), &product.handle).await?;
    tx.commit().await?;
    let location = format!("/api/v1/admin/products/{id}");
    let mut response = http::tagged(StatusCode::CREATED, product.version, product);
    if let Ok(location) = location.parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Writes a product that [`products::check_new`] accepted, in categories known to exist, and
/// announces it; returns it as written.
pub(crate) async fn insert_product(
    state: &AppState,
    tx: &mut Tx,
    new: NewProduct,
    categories: Vec<String>,
) -> AppResult<Product> {
    let now = Timestamp::now();
    let status = new.status.as_deref().unwrap_or("draft");
    let tags = products::clean_tags(&new.tags);
    let handle = match &new.handle {
        Some(handle) => handle.clone(),
        None => products::free_handle(tx, "products", &products::slugify(&new.title)).await?,
    };
    let id = new_id("prd");
    let metadata = new.metadata.clone().unwrap_or(Value::Object(Default::default()));
    let options = serde_json::to_string(&new.options).map_err(AppError::internal)?;
    let description_html = markdown::render(&new.description);
    let inserted = db_run!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO products (id, handle, title, description, description_html, status, product_type, vendor, \
             tags, options, seo_title, seo_description, metadata, published_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        )
        .bind(&id)
        .bind(&handle)
        .bind(new.title.trim())
        .bind(&new.description)
        .bind(&description_html)
        .bind(status)
        .bind(new.product_type.trim())
        .bind(new.vendor.trim())
        .bind(Value::from(tags.clone()).to_string())
        .bind(&options)
        .bind(new.seo_title.trim())
        .bind(new.seo_description.trim())
        .bind(metadata.to_string())
        .bind((status == "published").then_some(now))
        .bind(now)
        .execute(conn)
        .await
        .map(drop)
    });
    inserted.map_err(handle_taken)?;
    products::write_tags(tx, &id, &tags).await?;
    super::categories::place(tx, &id, &categories).await?;
    products::write_images(tx, &id, &new.images).await?;
    let images = products::find_images(tx, state, &id).await?;
    let variants =
        products::insert_variants(tx, &id, &new.variants, now, 0, |index| format!("variants[{index}].sku")).await?;
    let product = Product {
        id: id.clone(),
        handle,
        title: new.title.trim().to_owned(),
        description_html,
        description: new.description,
        status: status.to_owned(),
        product_type: new.product_type.trim().to_owned(),
        vendor: new.vendor.trim().to_owned(),
        tags,
        categories,
        images,
        options: new.options,
        seo_title: new.seo_title.trim().to_owned(),
        seo_description: new.seo_description.trim().to_owned(),
        metadata,
        variants,
        published_at: (status == "published").then_some(now),
        created_at: now,
        updated_at: now,
        version: 1,
    };
    tx.invalidate(super::changed(&id));
    webhooks::emit(state, tx, "product.created", &product).await?;
    Ok(product)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductFilter {
    /// Only products in this state: `draft`, `published` or `archived`.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub after: Option<String>,
}

/// List products, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/products", tag = "admin: products", params(ProductFilter),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Product>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_products(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(filter): Query<ProductFilter>,
) -> AppResult<Json<Page<Product>>> {
    staff.require(Permission::ProductsRead)?;
    let mut violations = Violations::default();
    let limit = check_page(filter.limit, filter.after.as_deref(), &mut violations);
    if filter.status.as_deref().is_some_and(|s| !matches!(s, "draft" | "published" | "archived")) {
        violations.add("status", "invalid", "must be `draft`, `published` or `archived`");
    }
    violations.finish()?;
    let binds = [filter.after.as_deref().unwrap_or(""), filter.status.as_deref().unwrap_or("")];
    let rows =
        products::page(&state.db, &state.media, "id > $1 AND ($2 = '' OR status = $2)", "id", &binds, limit).await?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
}

/// Read a product with its variants and prices.
#[utoipa::path(get, path = "/api/v1/admin/products/{id}", tag = "admin: products", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Product, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_product(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsRead)?;
    if !has_shape(&id, "prd") {
        return Err(not_found());
    }
    let product = products::find(&state, "id", &id, "").await?.ok_or_else(not_found)?;
    Ok(http::tagged(StatusCode::OK, product.version, product))
}

/// The product's own fields to change; variants are left as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub title: Option<String>,
    pub handle: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub product_type: Option<String>,
    pub vendor: Option<String>,
    pub tags: Option<Vec<String>>,
    /// The ids of the categories it sits in: the whole new list.
    pub categories: Option<Vec<String>>,
    /// The whole new list of images, in order.
    pub images: Option<Vec<products::ImageRef>>,
    /// The whole new list of options. Variants keep their values by option name; a new
    /// option gives every variant its first value. A value a variant still uses cannot go.
    pub options: Option<Vec<ProductOption>>,
    pub seo_title: Option<String>,
    pub seo_description: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Change a product's own fields. Send the `ETag` you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/products/{id}", tag = "admin: products", request_body = ProductPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Product, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_product(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<ProductPatch>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    let fields = Fields {
        title: patch.title.as_deref(),
        handle: patch.handle.as_deref(),
        description: patch.description.as_deref(),
        status: patch.status.as_deref(),
        product_type: patch.product_type.as_deref(),
        vendor: patch.vendor.as_deref(),
        tags: patch.tags.as_deref(),
        seo_title: patch.seo_title.as_deref(),
        seo_description: patch.seo_description.as_deref(),
        metadata: patch.metadata.as_ref(),
    };
    products::check_fields(&fields, &mut violations);
    if let Some(options) = &patch.options {
        products::check_options(options, &mut violations);
    }
    violations.finish()?;
    let expected = http::if_match_version(&headers)?;
    if !has_shape(&id, "prd") {
        return Err(not_found());
    }
    let current = products::find(&state, "id", &id, "").await?.ok_or_else(not_found)?;
    if expected.is_some_and(|version| version != current.version) {
        return Err(http::stale_version());
    }
    let now = Timestamp::now();
    let description = patch.description.unwrap_or(current.description);
    let description_html = markdown::render(&description);
    let status = patch.status.unwrap_or(current.status);
    let published_at = current.published_at.or((status == "published").then_some(now));
    let tags = patch.tags.as_deref().map(products::clean_tags);
    let tags_json = Value::from(tags.clone().unwrap_or_else(|| current.tags.clone())).to_string();
    let refitted = match &patch.options {
        Some(options) => Some(products::refit_variants(options, &current.variants)?),
        None => None,
    };
    let options = patch.options.clone().unwrap_or_else(|| current.options.clone());
    let options_json = serde_json::to_string(&options).map_err(AppError::internal)?;
    let mut tx = state.db.begin().await?;
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE products SET title = $1, handle = $2, description = $3, description_html = $4, status = $5, \
             product_type = $6, vendor = $7, tags = $8, seo_title = $9, seo_description = $10, metadata = $11, \
             published_at = $12, updated_at = $13, version = version + 1, options = $16 \
             WHERE id = $14 AND version = $15",
        )
        .bind(patch.title.as_deref().map_or(current.title.as_str(), str::trim))
        .bind(patch.handle.as_deref().unwrap_or(&current.handle))
        .bind(&description)
        .bind(&description_html)
        .bind(&status)
        .bind(patch.product_type.as_deref().map_or(current.product_type.as_str(), str::trim))
        .bind(patch.vendor.as_deref().map_or(current.vendor.as_str(), str::trim))
        .bind(&tags_json)
        .bind(patch.seo_title.as_deref().map_or(current.seo_title.as_str(), str::trim))
        .bind(patch.seo_description.as_deref().map_or(current.seo_description.as_str(), str::trim))
        .bind(patch.metadata.as_ref().unwrap_or(&current.metadata).to_string())
        .bind(published_at)
        .bind(now)
        .bind(&id)
        .bind(current.version)
        .bind(&options_json)
        .execute(conn)
        .await
    })
    .map_err(handle_taken)?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    let mut variants = current.variants;
    if let Some(refitted) = refitted {
        for (variant, (id, values)) in variants.iter_mut().zip(refitted) {
            if variant.options != values {
                let json = serde_json::to_string(&values).map_err(AppError::internal)?;
                db_execute!(tx.conn(), |conn| {
                    sqlx::query("UPDATE product_variants SET option_values = $1, updated_at = $2 WHERE id = $3")
                        .bind(&json)
                        .bind(now)
                        .bind(&id)
                        .execute(conn)
                        .await
                })?;
                variant.options = values;
            }
        }
    }
    if let Some(tags) = &tags {
        products::write_tags(&mut tx, &id, tags).await?;
    }
    let categories = patch.categories.as_deref().map(products::clean_ids);
    if let Some(categories) = &categories {
        super::categories::check_ids(&mut tx, categories, "categories").await?;
        super::categories::place(&mut tx, &id, categories).await?;
    }
    let images = match &patch.images {
        Some(images) => {
            products::check_images(&mut tx, images).await?;
            products::write_images(&mut tx, &id, images).await?;
            Some(products::find_images(&mut tx, &state, &id).await?)
        }
        None => None,
    };
    if let Some(handle) = patch.handle.as_deref().filter(|h| *h != current.handle) {
        // The old address keeps working (the storefront redirects it), and the new one may be
        // an address this product had before.
        db_run!(tx.conn(), |conn| {
            sqlx::query("DELETE FROM product_handle_history WHERE handle = $1")
                .bind(handle)
                .execute(conn)
                .await
                .map(drop)
        })?;
        db_run!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO product_handle_history (handle, product_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (handle) DO UPDATE SET product_id = excluded.product_id, created_at = excluded.created_at",
            )
            .bind(&current.handle)
            .bind(&id)
            .bind(now)
            .execute(conn)
            .await
            .map(drop)
        })?;
    }
    let product = Product {
        title: patch.title.as_deref().map_or(current.title, |t| t.trim().to_owned()),
        handle: patch.handle.unwrap_or(current.handle),
        description_html,
        description,
        status,
        product_type: patch.product_type.as_deref().map_or(current.product_type, |t| t.trim().to_owned()),
        vendor: patch.vendor.as_deref().map_or(current.vendor, |t| t.trim().to_owned()),
        tags: tags.unwrap_or(current.tags),
        categories: categories.unwrap_or(current.categories),
        images: images.unwrap_or(current.images),
        options,
        variants,
        seo_title: patch.seo_title.as_deref().map_or(current.seo_title, |t| t.trim().to_owned()),
        seo_description: patch.seo_description.as_deref().map_or(current.seo_description, |t| t.trim().to_owned()),
        metadata: patch.metadata.unwrap_or(current.metadata),
        published_at,
        updated_at: now,
        version: current.version + 1,
        ..current
    };
    tx.invalidate(super::changed(&id));
    webhooks::emit(&state, &mut tx, "product.updated", &product).await?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "product.updated", Some(&id), &product.status).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, product.version, product))
}

/// Delete a product that was never sold, with its variants, prices and stock history. A product
/// that has been sold is archived instead, and deleting it is refused, as it is while
/// checkouts hold its stock.
#[utoipa::path(delete, path = "/api/v1/admin/products/{id}", tag = "admin: products", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 409, description = "It has been sold, or reservations hold its stock", body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_product(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::ProductsWrite)?;
    if !has_shape(&id, "prd") {
        return Err(not_found());
    }
    let mut tx = state.db.begin().await?;
    let held = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM inventory_reservations r JOIN product_variants v ON v.id = r.variant_id \
             WHERE v.product_id = $1 AND r.status = 'active'",
        )
        .bind(&id)
        .fetch_one(conn)
        .await
    })?;
    let sold = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM inventory_movements m JOIN product_variants v ON v.id = m.variant_id \
             WHERE v.product_id = $1 AND m.kind = 'sold'",
        )
        .bind(&id)
        .fetch_one(conn)
        .await
    })?;
    if sold > 0 {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "This product has been sold, so its history stays: archive it instead (status `archived`).",
        ));
    }
    if held > 0 {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "Checkouts hold stock of this product; archive it now and delete it once they end.",
        ));
    }
    let handle = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>("DELETE FROM products WHERE id = $1 RETURNING handle")
            .bind(&id)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(not_found)?;
    tx.invalidate(super::changed(&id));
    webhooks::emit(&state, &mut tx, "product.deleted", &serde_json::json!({ "id": id, "handle": handle })).await?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "product.deleted", Some(&id), &handle).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
