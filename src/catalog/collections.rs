//! Collections: lists of products staff curate in their own order ("Summer sale", "Staff
//! picks"). Shoppers see the published ones.

use std::collections::{BTreeMap, HashSet};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::markdown;
use super::products::{self, single_line};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::platform::db::{Db, Tx, dialect};
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The most products one collection holds.
const MAX_PRODUCTS: usize = 5_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_collections, create_collection)).routes(routes!(
        get_collection,
        update_collection,
        delete_collection
    ))
}

/// A collection as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Collection {
    pub id: String,
    pub handle: String,
    pub title: String,
    /// Markdown, as written.
    pub description: String,
    pub description_html: String,
    /// Whether shoppers see it.
    pub published: bool,
    /// Its products, in the order shoppers see them.
    pub product_ids: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct CollectionRow {
    id: String,
    handle: String,
    title: String,
    description: String,
    description_html: String,
    published: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

const COLUMNS: &str = "id, handle, title, description, description_html, published, created_at, updated_at, version";

impl CollectionRow {
    fn with_products(self, product_ids: Vec<String>) -> Collection {
        Collection {
            id: self.id,
            handle: self.handle,
            title: self.title,
            description: self.description,
            description_html: self.description_html,
            published: self.published,
            product_ids,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

fn not_found() -> AppError {
    AppError::not_found("No collection has this id.")
}

fn handle_taken(err: sqlx::Error) -> AppError {
    if dialect::is_unique_violation(&err, "collections", "handle") {
        return AppError::conflict("handle", "Another collection has this handle.");
    }
    err.into()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    pub title: String,
    /// Made from the title when absent.
    pub handle: Option<String>,
    /// Markdown.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub published: bool,
    /// Its products, in order.
    #[serde(default)]
    pub product_ids: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollectionPatch {
    pub title: Option<String>,
    pub handle: Option<String>,
    pub description: Option<String>,
    pub published: Option<bool>,
    /// The whole new list, in order.
    pub product_ids: Option<Vec<String>>,
}

fn check_collection(
    title: Option<&str>,
    handle: Option<&str>,
    description: Option<&str>,
    product_ids: Option<&[String]>,
    violations: &mut Violations,
) {
    if title.is_some_and(|title| title.trim().is_empty() || !single_line(title, 255)) {
        violations.add("title", "invalid_format", "must be 1 to 255 characters on one line");
    }
    if handle.is_some_and(|handle| !products::check_handle(handle)) {
        violations.add(
            "handle",
            "invalid_format",
            "must be 1 to 120 lowercase letters, digits and single inner dashes",
        );
    }
    if description.is_some_and(|d| d.chars().count() > 20_000 || d.contains('\0')) {
        violations.add("description", "too_long", "must be at most 20000 characters");
    }
    if let Some(ids) = product_ids {
        if ids.len() > MAX_PRODUCTS {
            violations.add("product_ids", "too_many", format!("must be at most {MAX_PRODUCTS}"));
        }
        let mut seen = HashSet::new();
        for (index, id) in ids.iter().enumerate().take(MAX_PRODUCTS) {
            if !has_shape(id, "prd") {
                violations.add(&format!("product_ids[{index}]"), "unknown", "names no product");
            } else if !seen.insert(id) {
                violations.add(&format!("product_ids[{index}]"), "duplicate", "is listed twice");
            }
        }
    }
}

/// Replaces the collection's products with `ids`, in order; an id naming no product is a 422.
async fn write_products(tx: &mut Tx, collection_id: &str, ids: &[String]) -> AppResult<()> {
    let mut known = HashSet::new();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT id FROM products WHERE id IN ({})", list.join(", "));
        let found = db_run!(tx.conn(), |conn| {
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                query = query.bind(id);
            }
            query.fetch_all(conn).await
        })?;
        known.extend(found);
    }
    let mut violations = Violations::default();
    for (index, id) in ids.iter().enumerate() {
        if !known.contains(id) {
            violations.add(&format!("product_ids[{index}]"), "unknown", "names no product");
        }
    }
    violations.finish()?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM collection_products WHERE collection_id = $1").bind(collection_id).execute(conn).await
    })?;
    for (position, id) in ids.iter().enumerate() {
        db_execute!(tx.conn(), |conn| {
            sqlx::query("INSERT INTO collection_products (collection_id, product_id, position) VALUES ($1, $2, $3)")
                .bind(collection_id)
                .bind(id)
                .bind(position as i64)
                .execute(conn)
                .await
        })?;
    }
    Ok(())
}

/// The products of each collection in `ids`, in order.
async fn products_of(db: &Db, ids: &[&str]) -> AppResult<BTreeMap<String, Vec<String>>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT collection_id, product_id FROM collection_products WHERE collection_id IN ({}) \
         ORDER BY collection_id, position",
        list.join(", ")
    );
    let rows = db_run!(db.read().await?, |conn| {
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.fetch_all(conn).await
    })?;
    let mut of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (collection, product) in rows {
        of.entry(collection).or_default().push(product);
    }
    Ok(of)
}

async fn find(db: &Db, id: &str) -> AppResult<Collection> {
    if !has_shape(id, "col") {
        return Err(not_found());
    }
    let sql = format!("SELECT {COLUMNS} FROM collections WHERE id = $1");
    let row =
        db_run!(db.read().await?, |conn| sqlx::query_as::<_, CollectionRow>(&sql).bind(id).fetch_optional(conn).await)?
            .ok_or_else(not_found)?;
    let products = products_of(db, &[id]).await?.remove(id).unwrap_or_default();
    Ok(row.with_products(products))
}

/// Create a collection, optionally with its products.
#[utoipa::path(post, path = "/api/v1/admin/collections", tag = "admin: collections", request_body = NewCollection,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Collection, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_collection(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewCollection>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    check_collection(
        Some(&new.title),
        new.handle.as_deref(),
        Some(&new.description),
        Some(&new.product_ids),
        &mut violations,
    );
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    let handle = match &new.handle {
        Some(handle) => handle.clone(),
        None => products::free_handle(&mut tx, "collections", &products::slugify(&new.title)).await?,
    };
    let now = Timestamp::now();
    let collection = Collection {
        id: new_id("col"),
        handle,
        title: new.title.trim().to_owned(),
        description_html: markdown::render(&new.description),
        description: new.description,
        published: new.published,
        product_ids: new.product_ids,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO collections (id, handle, title, description, description_html, published, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&collection.id)
        .bind(&collection.handle)
        .bind(&collection.title)
        .bind(&collection.description)
        .bind(&collection.description_html)
        .bind(collection.published)
        .bind(now)
        .execute(conn)
        .await
        .map(drop)
    })
    .map_err(handle_taken)?;
    write_products(&mut tx, &collection.id, &collection.product_ids).await?;
    tx.invalidate(super::taxonomy_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "collection.created", Some(&collection.id), &collection.handle)
        .await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::CREATED, collection.version, collection))
}

/// List collections, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/collections", tag = "admin: collections", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Collection>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_collections(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Collection>>> {
    staff.require(Permission::ProductsRead)?;
    let rows =
        pagination::oldest_first(&state.db, "collections", COLUMNS, &page, |row: &CollectionRow| &row.id).await?;
    let ids: Vec<&str> = rows.data.iter().map(|row| row.id.as_str()).collect();
    let mut products = products_of(&state.db, &ids).await?;
    let data = rows
        .data
        .into_iter()
        .map(|row| {
            let ids = products.remove(&row.id).unwrap_or_default();
            row.with_products(ids)
        })
        .collect();
    Ok(Json(Page { data, next_cursor: rows.next_cursor }))
}

/// Read a collection with its products' ids.
#[utoipa::path(get, path = "/api/v1/admin/collections/{id}", tag = "admin: collections", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Collection, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_collection(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsRead)?;
    let collection = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::OK, collection.version, collection))
}

/// Change a collection; `product_ids` replaces its products and their order. Send the `ETag`
/// you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/collections/{id}", tag = "admin: collections", request_body = CollectionPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Collection, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_collection(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<CollectionPatch>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    check_collection(
        patch.title.as_deref(),
        patch.handle.as_deref(),
        patch.description.as_deref(),
        patch.product_ids.as_deref(),
        &mut violations,
    );
    violations.finish()?;
    let current = find(&state.db, &id).await?;
    http::require_version(&headers, current.version)?;
    let mut tx = state.db.begin().await?;
    let description = patch.description.unwrap_or(current.description);
    let collection = Collection {
        handle: patch.handle.unwrap_or(current.handle),
        title: patch.title.map_or(current.title, |title| title.trim().to_owned()),
        description_html: markdown::render(&description),
        description,
        published: patch.published.unwrap_or(current.published),
        product_ids: patch.product_ids.clone().unwrap_or(current.product_ids),
        updated_at: Timestamp::now(),
        version: current.version + 1,
        ..current
    };
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE collections SET handle = $1, title = $2, description = $3, description_html = $4, \
             published = $5, updated_at = $6, version = version + 1 WHERE id = $7 AND version = $8",
        )
        .bind(&collection.handle)
        .bind(&collection.title)
        .bind(&collection.description)
        .bind(&collection.description_html)
        .bind(collection.published)
        .bind(collection.updated_at)
        .bind(&id)
        .bind(current.version)
        .execute(conn)
        .await
    })
    .map_err(handle_taken)?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    if let Some(ids) = &patch.product_ids {
        write_products(&mut tx, &id, ids).await?;
    }
    tx.invalidate(super::taxonomy_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "collection.updated", Some(&id), &collection.handle).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, collection.version, collection))
}

/// Delete a collection; its products stay.
#[utoipa::path(delete, path = "/api/v1/admin/collections/{id}", tag = "admin: collections", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_collection(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::ProductsWrite)?;
    let collection = find(&state.db, &id).await?;
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM collections WHERE id = $1").bind(&id).execute(conn).await)?;
    tx.invalidate(super::taxonomy_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "collection.deleted", Some(&id), &collection.handle).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
