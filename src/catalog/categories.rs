//! Categories: a tree staff arrange, products sit in any number of them, and shoppers browse
//! a category with its descendants.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::products::{self, single_line};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::platform::db::{Tx, dialect};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// How deep the tree may go: a root and seven levels below it.
const MAX_DEPTH: usize = 8;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_categories, create_category)).routes(routes!(
        get_category,
        update_category,
        delete_category
    ))
}

/// A category as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Category {
    pub id: String,
    /// The category above this one; absent at the top of the tree.
    pub parent_id: Option<String>,
    pub handle: String,
    pub name: String,
    pub description: String,
    /// Order among its siblings, lowest first.
    pub position: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

pub(crate) const CATEGORY_COLUMNS: &str =
    "id, parent_id, handle, name, description, position, created_at, updated_at, version";

fn not_found() -> AppError {
    AppError::not_found("No category has this id.")
}

fn handle_taken(err: sqlx::Error) -> AppError {
    if dialect::is_unique_violation(&err, "categories", "handle") {
        return AppError::conflict("handle", "Another category has this handle.");
    }
    err.into()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCategory {
    pub name: String,
    /// Made from the name when absent.
    pub handle: Option<String>,
    pub parent_id: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub position: i64,
}

/// Tells a field sent as `null` (`Some(None)`) from one not sent (`None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CategoryPatch {
    pub name: Option<String>,
    pub handle: Option<String>,
    /// Another category to move under, or `null` to move to the top.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Option<String>>,
    pub description: Option<String>,
    pub position: Option<i64>,
}

fn check_category(
    name: Option<&str>,
    handle: Option<&str>,
    description: Option<&str>,
    position: Option<i64>,
    violations: &mut Violations,
) {
    if name.is_some_and(|name| name.trim().is_empty() || !single_line(name, 100)) {
        violations.add("name", "invalid_format", "must be 1 to 100 characters on one line");
    }
    if handle.is_some_and(|handle| !products::check_handle(handle)) {
        violations.add(
            "handle",
            "invalid_format",
            "must be 1 to 120 lowercase letters, digits and single inner dashes",
        );
    }
    if description.is_some_and(|d| d.chars().count() > 5_000 || d.contains('\0')) {
        violations.add("description", "too_long", "must be at most 5000 characters");
    }
    if position.is_some_and(|p| !(0..=1_000_000).contains(&p)) {
        violations.add("position", "out_of_range", "must be between 0 and 1000000");
    }
}

/// The ids from `id` up to the top of the tree, `id` first.
async fn ancestry(tx: &mut Tx, id: &str) -> AppResult<Vec<String>> {
    let mut chain = vec![id.to_owned()];
    let mut at = id.to_owned();
    while chain.len() <= MAX_DEPTH + 1 {
        let parent = db_run!(tx.conn(), |conn| {
            sqlx::query_scalar::<_, Option<String>>("SELECT parent_id FROM categories WHERE id = $1")
                .bind(&at)
                .fetch_optional(conn)
                .await
        })?
        .flatten();
        match parent {
            Some(parent) => {
                chain.push(parent.clone());
                at = parent;
            }
            None => break,
        }
    }
    Ok(chain)
}

/// How many levels the subtree under `id` holds, `id` included.
async fn height(tx: &mut Tx, id: &str) -> AppResult<usize> {
    let mut level = vec![id.to_owned()];
    let mut height = 0;
    while !level.is_empty() && height <= MAX_DEPTH {
        height += 1;
        let list: Vec<String> = (1..=level.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT id FROM categories WHERE parent_id IN ({})", list.join(", "));
        level = db_run!(tx.conn(), |conn| {
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in &level {
                query = query.bind(id);
            }
            query.fetch_all(conn).await
        })?;
    }
    Ok(height)
}

/// Checks that `parent` exists and can take `height` more levels below it, and, when `moving`
/// is given, that it is not `moving` itself or one of its descendants.
async fn check_parent(tx: &mut Tx, parent: &str, height: usize, moving: Option<&str>) -> AppResult<()> {
    let unknown = || AppError::invalid_field("parent_id", "unknown", "names no category");
    if !has_shape(parent, "cat") {
        return Err(unknown());
    }
    let chain = ancestry(tx, parent).await?;
    let exists = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM categories WHERE id = $1").bind(parent).fetch_one(conn).await
    })?;
    if exists == 0 {
        return Err(unknown());
    }
    if moving.is_some_and(|moving| chain.iter().any(|id| id == moving)) {
        return Err(AppError::invalid_field("parent_id", "cycle", "is this category or one below it"));
    }
    if chain.len() + height > MAX_DEPTH {
        return Err(AppError::invalid_field(
            "parent_id",
            "too_deep",
            format!("would make the tree deeper than {MAX_DEPTH} levels"),
        ));
    }
    Ok(())
}

/// Create a category, at the top or under another.
#[utoipa::path(post, path = "/api/v1/admin/categories", tag = "admin: categories", request_body = NewCategory,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Category, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_category(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewCategory>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    check_category(Some(&new.name), new.handle.as_deref(), Some(&new.description), Some(new.position), &mut violations);
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    if let Some(parent) = &new.parent_id {
        check_parent(&mut tx, parent, 1, None).await?;
    }
    let handle = match &new.handle {
        Some(handle) => handle.clone(),
        None => products::free_handle(&mut tx, "categories", &products::slugify(&new.name)).await?,
    };
    let now = Timestamp::now();
    let category = Category {
        id: new_id("cat"),
        parent_id: new.parent_id,
        handle,
        name: new.name.trim().to_owned(),
        description: new.description,
        position: new.position,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO categories (id, parent_id, handle, name, description, position, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        )
        .bind(&category.id)
        .bind(&category.parent_id)
        .bind(&category.handle)
        .bind(&category.name)
        .bind(&category.description)
        .bind(category.position)
        .bind(now)
        .execute(conn)
        .await
        .map(drop)
    })
    .map_err(handle_taken)?;
    tx.invalidate(super::taxonomy_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "category.created", Some(&category.id), &category.handle).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::CREATED, category.version, category))
}

/// List categories, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/categories", tag = "admin: categories", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Category>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_categories(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Category>>> {
    staff.require(Permission::ProductsRead)?;
    let page =
        pagination::oldest_first(&state.db, "categories", CATEGORY_COLUMNS, &page, |row: &Category| &row.id).await?;
    Ok(Json(page))
}

async fn find(tx: &mut Tx, id: &str) -> AppResult<Category> {
    if !has_shape(id, "cat") {
        return Err(not_found());
    }
    let sql = format!("SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1");
    db_run!(tx.conn(), |conn| sqlx::query_as::<_, Category>(&sql).bind(id).fetch_optional(conn).await)?
        .ok_or_else(not_found)
}

/// Read a category.
#[utoipa::path(get, path = "/api/v1/admin/categories/{id}", tag = "admin: categories", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Category, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_category(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsRead)?;
    if !has_shape(&id, "cat") {
        return Err(not_found());
    }
    let sql = format!("SELECT {CATEGORY_COLUMNS} FROM categories WHERE id = $1");
    let category = db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, Category>(&sql)
        .bind(&id)
        .fetch_optional(conn)
        .await)?
    .ok_or_else(not_found)?;
    Ok(http::tagged(StatusCode::OK, category.version, category))
}

/// Rename, move or reorder a category. Send the `ETag` you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/categories/{id}", tag = "admin: categories", request_body = CategoryPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Category, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_category(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<CategoryPatch>,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let mut violations = Violations::default();
    check_category(
        patch.name.as_deref(),
        patch.handle.as_deref(),
        patch.description.as_deref(),
        patch.position,
        &mut violations,
    );
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    let current = find(&mut tx, &id).await?;
    http::require_version(&headers, current.version)?;
    let parent_id = patch.parent_id.unwrap_or(current.parent_id);
    if let Some(parent) = &parent_id {
        let height = height(&mut tx, &id).await?;
        check_parent(&mut tx, parent, height, Some(&id)).await?;
    }
    let category = Category {
        parent_id,
        handle: patch.handle.unwrap_or(current.handle),
        name: patch.name.map_or(current.name, |name| name.trim().to_owned()),
        description: patch.description.unwrap_or(current.description),
        position: patch.position.unwrap_or(current.position),
        updated_at: Timestamp::now(),
        version: current.version + 1,
        ..current
    };
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE categories SET parent_id = $1, handle = $2, name = $3, description = $4, position = $5, \
             updated_at = $6, version = version + 1 WHERE id = $7 AND version = $8",
        )
        .bind(&category.parent_id)
        .bind(&category.handle)
        .bind(&category.name)
        .bind(&category.description)
        .bind(category.position)
        .bind(category.updated_at)
        .bind(&id)
        .bind(current.version)
        .execute(conn)
        .await
    })
    .map_err(handle_taken)?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    tx.invalidate(super::taxonomy_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "category.updated", Some(&id), &category.handle).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, category.version, category))
}

/// Delete a category with no categories under it; its products simply leave it.
#[utoipa::path(delete, path = "/api/v1/admin/categories/{id}", tag = "admin: categories", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Other categories sit under it", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_category(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::ProductsWrite)?;
    let mut tx = state.db.begin().await?;
    let category = find(&mut tx, &id).await?;
    let children = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM categories WHERE parent_id = $1")
            .bind(&id)
            .fetch_one(conn)
            .await
    })?;
    if children > 0 {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "Other categories sit under this one: move or delete them first.",
        ));
    }
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM categories WHERE id = $1").bind(&id).execute(conn).await)?;
    tx.invalidate(super::taxonomy_changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "category.deleted", Some(&id), &category.handle).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Checks that every id in `ids` names a category, reporting unknown ones as `{field}[n]`.
pub(crate) async fn check_ids(tx: &mut Tx, ids: &[String], field: &str) -> AppResult<()> {
    let mut violations = Violations::default();
    if ids.len() > 50 {
        violations.add(field, "too_many", "must be at most 50");
    }
    let mut known = Vec::new();
    if !ids.is_empty() && ids.len() <= 50 {
        let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT id FROM categories WHERE id IN ({})", list.join(", "));
        known = db_run!(tx.conn(), |conn| {
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in ids {
                query = query.bind(id);
            }
            query.fetch_all(conn).await
        })?;
    }
    for (index, id) in ids.iter().enumerate() {
        if ids.len() <= 50 && !known.contains(id) {
            violations.add(&format!("{field}[{index}]"), "unknown", "names no category");
        }
    }
    violations.finish()
}

/// Puts a product in exactly the categories `ids`.
pub(crate) async fn place(tx: &mut Tx, product_id: &str, ids: &[String]) -> AppResult<()> {
    db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM product_categories WHERE product_id = $1").bind(product_id).execute(conn).await
    })?;
    for id in ids {
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO product_categories (product_id, category_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(product_id)
            .bind(id)
            .execute(conn)
            .await
        })?;
    }
    Ok(())
}
