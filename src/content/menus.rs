//! Navigation menus ("main", "footer"): nested items, each a label and what it leads to.
//! An item names a product, category, collection, page or post by id, so that it follows
//! renames; visitors get each one's address as it is now, and only of what they may see.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{existing, shown_at, site_link_ok};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::products::{self, single_line};
use crate::platform::db::{Tx, dialect};
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_menus, create_menu))
        .routes(routes!(get_menu, update_menu, delete_menu))
        .routes(routes!(menu_by_handle))
}

/// How deep items nest: an item, its children, theirs.
const MAX_DEPTH: usize = 3;
const MAX_ITEMS: usize = 200;

/// An item of a menu as staff write it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuItem {
    pub label: String,
    /// `url`, `home`, `blog`, `product`, `category`, `collection`, `page` or `post`.
    pub kind: String,
    /// For `url`, an `http(s)` address or a path starting with `/`; for the others but
    /// `home` and `blog`, the id of what it leads to.
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    #[schema(no_recursion)]
    pub children: Vec<MenuItem>,
}

/// A menu as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Menu {
    pub id: String,
    /// How a storefront asks for it: `main`, `footer`.
    pub handle: String,
    pub title: String,
    pub items: Vec<MenuItem>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct MenuRow {
    id: String,
    handle: String,
    title: String,
    items: String,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

const COLUMNS: &str = "id, handle, title, items, created_at, updated_at, version";

impl From<MenuRow> for Menu {
    fn from(row: MenuRow) -> Self {
        Menu {
            id: row.id,
            handle: row.handle,
            title: row.title,
            items: serde_json::from_str(&row.items).unwrap_or_default(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// The id prefix of what an item of `kind` names, for the kinds that name something.
fn id_prefix(kind: &str) -> Option<&'static str> {
    match kind {
        "product" => Some("prd"),
        "category" => Some("cat"),
        "collection" => Some("col"),
        "page" => Some("pag"),
        "post" => Some("pst"),
        _ => None,
    }
}

/// Checks `items` at `depth`, naming each failing field by its place (`items[0].children[1].label`).
fn check_items(items: &[MenuItem], prefix: &str, depth: usize, count: &mut usize, violations: &mut Violations) {
    for (index, item) in items.iter().enumerate() {
        *count += 1;
        let at = format!("{prefix}[{index}]");
        if item.label.trim().is_empty() || !single_line(&item.label, 100) {
            violations.add(&format!("{at}.label"), "invalid_format", "must be 1 to 100 characters on one line");
        }
        let target_ok = match (item.kind.as_str(), id_prefix(&item.kind)) {
            ("url", _) => site_link_ok(&item.target),
            ("home" | "blog", _) => item.target.is_empty(),
            (_, Some(prefix)) => has_shape(&item.target, prefix),
            _ => {
                violations.add(
                    &format!("{at}.kind"),
                    "invalid",
                    "must be url, home, blog, product, category, collection, page or post",
                );
                true
            }
        };
        if !target_ok {
            violations.add(&format!("{at}.target"), "invalid", format!("is not what a {} item leads to", item.kind));
        }
        if !item.children.is_empty() && depth + 1 >= MAX_DEPTH {
            violations.add(&format!("{at}.children"), "too_deep", format!("items nest at most {MAX_DEPTH} deep"));
        } else {
            check_items(&item.children, &format!("{at}.children"), depth + 1, count, violations);
        }
    }
    if depth == 0 && *count > MAX_ITEMS {
        violations.add("items", "too_many", format!("a menu holds at most {MAX_ITEMS} items"));
    }
}

/// Every id the items name, by the table it is in.
fn named_ids<'a>(items: &'a [MenuItem], into: &mut HashMap<&'static str, HashSet<&'a str>>) {
    for item in items {
        let table = match item.kind.as_str() {
            "product" => Some("products"),
            "category" => Some("categories"),
            "collection" => Some("collections"),
            "page" | "post" => Some("content"),
            _ => None,
        };
        if let Some(table) = table {
            into.entry(table).or_default().insert(item.target.as_str());
        }
        named_ids(&item.children, into);
    }
}

/// Checks that every id the items name exists: a 422 naming the first missing one's place.
async fn check_targets(tx: &mut Tx, items: &[MenuItem]) -> AppResult<()> {
    let mut named = HashMap::new();
    named_ids(items, &mut named);
    let mut found = HashSet::new();
    for (table, ids) in &named {
        let ids: Vec<&str> = ids.iter().copied().collect();
        found.extend(existing(tx, table, &ids).await?);
    }
    fn first_missing(items: &[MenuItem], prefix: &str, found: &HashSet<String>) -> Option<String> {
        items.iter().enumerate().find_map(|(index, item)| {
            let at = format!("{prefix}[{index}]");
            if id_prefix(&item.kind).is_some() && !found.contains(&item.target) {
                return Some(format!("{at}.target"));
            }
            first_missing(&item.children, &format!("{at}.children"), found)
        })
    }
    match first_missing(items, "items", &found) {
        Some(field) => Err(AppError::invalid_field(&field, "unknown", "names nothing of its kind")),
        None => Ok(()),
    }
}

fn check_menu(handle: Option<&str>, title: Option<&str>, items: Option<&[MenuItem]>, violations: &mut Violations) {
    if handle.is_some_and(|handle| !products::check_handle(handle)) {
        violations.add(
            "handle",
            "invalid_format",
            "must be 1 to 120 lowercase letters, digits and single inner dashes",
        );
    }
    if title.is_some_and(|title| title.trim().is_empty() || !single_line(title, 120)) {
        violations.add("title", "invalid_format", "must be 1 to 120 characters on one line");
    }
    if let Some(items) = items {
        check_items(items, "items", 0, &mut 0, violations);
    }
}

fn handle_taken(err: sqlx::Error) -> AppError {
    if dialect::is_unique_violation(&err, "menus", "handle") {
        return AppError::conflict("handle", "Another menu has this handle.");
    }
    err.into()
}

fn not_found() -> AppError {
    AppError::not_found("No menu has this id.")
}

async fn find(state: &AppState, id: &str) -> AppResult<Menu> {
    if !has_shape(id, "mnu") {
        return Err(not_found());
    }
    let sql = format!("SELECT {COLUMNS} FROM menus WHERE id = $1");
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, MenuRow>(&sql).bind(id).fetch_optional(conn).await
    })?;
    row.map(Menu::from).ok_or_else(not_found)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMenu {
    pub handle: String,
    pub title: String,
    #[serde(default)]
    pub items: Vec<MenuItem>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MenuPatch {
    pub handle: Option<String>,
    pub title: Option<String>,
    /// The whole new list.
    pub items: Option<Vec<MenuItem>>,
}

/// Create a menu.
#[utoipa::path(post, path = "/api/v1/admin/menus", tag = "admin: content", request_body = NewMenu,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Menu, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_menu(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewMenu>,
) -> AppResult<Response> {
    staff.require(Permission::ContentWrite)?;
    let mut violations = Violations::default();
    check_menu(Some(&new.handle), Some(&new.title), Some(&new.items), &mut violations);
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    check_targets(&mut tx, &new.items).await?;
    let now = Timestamp::now();
    let menu = Menu {
        id: new_id("mnu"),
        handle: new.handle,
        title: new.title.trim().to_owned(),
        items: new.items,
        created_at: now,
        updated_at: now,
        version: 1,
    };
    let items = serde_json::to_string(&menu.items).map_err(AppError::internal)?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO menus (id, handle, title, items, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&menu.id)
        .bind(&menu.handle)
        .bind(&menu.title)
        .bind(&items)
        .bind(now)
        .execute(conn)
        .await
    })
    .map_err(handle_taken)?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "menu.created", Some(&menu.id), &menu.handle).await?;
    tx.invalidate(super::site_changed());
    tx.commit().await?;
    Ok(http::tagged(StatusCode::CREATED, menu.version, menu))
}

/// List menus, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/menus", tag = "admin: content", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Menu>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_menus(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Menu>>> {
    staff.require(Permission::ContentRead)?;
    let rows = pagination::oldest_first(&state.db, "menus", COLUMNS, &page, |row: &MenuRow| &row.id).await?;
    Ok(Json(Page { data: rows.data.into_iter().map(Menu::from).collect(), next_cursor: rows.next_cursor }))
}

/// Read a menu.
#[utoipa::path(get, path = "/api/v1/admin/menus/{id}", tag = "admin: content", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Menu, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_menu(State(state): State<AppState>, staff: CurrentStaff, Path(id): Path<String>) -> AppResult<Response> {
    staff.require(Permission::ContentRead)?;
    let menu = find(&state, &id).await?;
    Ok(http::tagged(StatusCode::OK, menu.version, menu))
}

/// Change a menu; `items` replaces them all. Send the `ETag` you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/menus/{id}", tag = "admin: content", request_body = MenuPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Menu, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_menu(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<MenuPatch>,
) -> AppResult<Response> {
    staff.require(Permission::ContentWrite)?;
    let mut violations = Violations::default();
    check_menu(patch.handle.as_deref(), patch.title.as_deref(), patch.items.as_deref(), &mut violations);
    violations.finish()?;
    let current = find(&state, &id).await?;
    http::require_version(&headers, current.version)?;
    let mut tx = state.db.begin().await?;
    if let Some(items) = &patch.items {
        check_targets(&mut tx, items).await?;
    }
    let menu = Menu {
        handle: patch.handle.unwrap_or(current.handle),
        title: patch.title.map_or(current.title, |title| title.trim().to_owned()),
        items: patch.items.unwrap_or(current.items),
        updated_at: Timestamp::now(),
        version: current.version + 1,
        ..current
    };
    let items = serde_json::to_string(&menu.items).map_err(AppError::internal)?;
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE menus SET handle = $1, title = $2, items = $3, updated_at = $4, version = version + 1 \
             WHERE id = $5 AND version = $6",
        )
        .bind(&menu.handle)
        .bind(&menu.title)
        .bind(&items)
        .bind(menu.updated_at)
        .bind(&id)
        .bind(menu.version - 1)
        .execute(conn)
        .await
    })
    .map_err(handle_taken)?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "menu.updated", Some(&id), &menu.handle).await?;
    tx.invalidate(super::site_changed());
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, menu.version, menu))
}

/// Delete a menu.
#[utoipa::path(delete, path = "/api/v1/admin/menus/{id}", tag = "admin: content", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_menu(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::ContentWrite)?;
    let menu = find(&state, &id).await?;
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM menus WHERE id = $1").bind(&id).execute(conn).await)?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "menu.deleted", Some(&id), &menu.handle).await?;
    tx.invalidate(super::site_changed());
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A menu item as visitors get it: where it leads now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShownItem {
    pub label: String,
    pub url: String,
    #[schema(no_recursion)]
    pub children: Vec<ShownItem>,
}

/// A menu as visitors get it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShownMenu {
    pub handle: String,
    pub title: String,
    pub items: Vec<ShownItem>,
}

/// Pairs of id and text that `sql`, ending in `IN (`, reads for `ids`; with `now`, `$1` is
/// that time.
async fn pairs(
    state: &AppState,
    sql: &str,
    ids: &HashSet<&str>,
    now: Option<Timestamp>,
) -> AppResult<Vec<(String, String)>> {
    let ids: Vec<&str> = ids.iter().copied().collect();
    let first = if now.is_some() { 2 } else { 1 };
    let mut found = Vec::new();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = (first..chunk.len() + first).map(|n| format!("${n}")).collect();
        let sql = format!("{sql}{})", list.join(", "));
        let rows = db_run!(state.db.read().await?, |conn| {
            let mut query = sqlx::query_as::<_, (String, String)>(&sql);
            if let Some(now) = now {
                query = query.bind(now);
            }
            for id in chunk {
                query = query.bind(*id);
            }
            query.fetch_all(conn).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}

/// The addresses, as they are now, of what visitors may see among the ids the items name.
async fn addresses(state: &AppState, items: &[MenuItem]) -> AppResult<HashMap<String, String>> {
    let mut named = HashMap::new();
    named_ids(items, &mut named);
    let mut at = HashMap::new();
    let none = HashSet::new();
    let products = named.get("products").unwrap_or(&none);
    let sql = "SELECT id, handle FROM products WHERE status = 'published' AND id IN (";
    for (id, handle) in pairs(state, sql, products, None).await? {
        at.insert(id, format!("/products/{handle}"));
    }
    let collections = named.get("collections").unwrap_or(&none);
    let sql = "SELECT id, handle FROM collections WHERE published AND id IN (";
    for (id, handle) in pairs(state, sql, collections, None).await? {
        at.insert(id, format!("/collections/{handle}"));
    }
    let content = named.get("content").unwrap_or(&none);
    let sql = format!(
        "SELECT c.id, CASE WHEN c.kind = 'post' THEN '/blog/' ELSE '/pages/' END || c.slug FROM content c \
         WHERE {} AND c.id IN (",
        shown_at("$1")
    );
    at.extend(pairs(state, &sql, content, Some(Timestamp::now())).await?);
    if named.contains_key("categories") {
        // A category's address is the path of handles from the top: the whole tree is read.
        let categories = db_run!(state.db.read().await?, |conn| {
            sqlx::query_as::<_, (String, String, Option<String>)>("SELECT id, handle, parent_id FROM categories")
                .fetch_all(conn)
                .await
        })?;
        at.extend(super::seo::category_paths(&categories));
    }
    Ok(at)
}

/// Items as visitors get them: an item whose target they may not see is left out, with what
/// is under it.
fn shown(items: &[MenuItem], at: &HashMap<String, String>) -> Vec<ShownItem> {
    items
        .iter()
        .filter_map(|item| {
            let url = match item.kind.as_str() {
                "url" => item.target.clone(),
                "home" => "/".to_owned(),
                "blog" => "/blog".to_owned(),
                _ => at.get(&item.target)?.clone(),
            };
            Some(ShownItem { label: item.label.clone(), url, children: shown(&item.children, at) })
        })
        .collect()
}

/// Read a menu by its handle, each item with the address it leads to now.
#[utoipa::path(get, path = "/api/v1/store/menus/{handle}", tag = "store: content", params(("handle" = String, Path)),
    responses(
        (status = 200, body = ShownMenu, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn menu_by_handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(handle): Path<String>,
) -> AppResult<Response> {
    let shown = shown_menu(&state, &handle).await?.ok_or_else(|| AppError::not_found("No menu has this handle."))?;
    Ok(http::Rendered::new(&shown)?.respond(&headers))
}

/// The menu `handle` as visitors get it, each item with the address it leads to now.
pub async fn shown_menu(state: &AppState, handle: &str) -> AppResult<Option<ShownMenu>> {
    if !products::check_handle(handle) {
        return Ok(None);
    }
    let sql = format!("SELECT {COLUMNS} FROM menus WHERE handle = $1");
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, MenuRow>(&sql).bind(handle).fetch_optional(conn).await
    })?;
    let Some(row) = row else { return Ok(None) };
    let menu = Menu::from(row);
    let at = addresses(state, &menu.items).await?;
    Ok(Some(ShownMenu { handle: menu.handle, title: menu.title, items: shown(&menu.items, &at) }))
}
