//! Shoppers browse published products, search them, and walk the category tree and the
//! collections. Every answer comes from the shelf and carries an `ETag`; send it back in
//! `If-None-Match` to get 304 while nothing changed.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::search::{self, Facets, Search};
use super::shelf::{Contents, StoreProduct};
use crate::app::AppState;
use crate::db_run;
use crate::platform::error::{AppError, AppResult, Problem};
use crate::platform::http::Rendered;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products))
        .routes(routes!(search_products))
        .routes(routes!(product_by_handle))
        .routes(routes!(category_tree))
        .routes(routes!(category_by_handle))
        .routes(routes!(list_collections))
        .routes(routes!(collection_by_handle))
}

/// Filters, sorting and paging of the product list and search. `category`, `tag` and
/// `option` may be given more than once: products matching any of the values pass.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "documents the query string, which is parsed by hand for repeated keys")]
pub struct StoreFilter {
    /// Words to search for in titles, descriptions, SKUs, tags and category names; the last
    /// one may be the start of a word, and longer words may carry a typo.
    q: Option<String>,
    /// A category's handle: products in it or in any category below it.
    category: Option<Vec<String>>,
    /// A published collection's handle.
    collection: Option<String>,
    tag: Option<Vec<String>>,
    /// The currency of `price_min`, `price_max`, `sort=price` and the price facet.
    currency: Option<String>,
    /// In minor units: the product's lowest price in `currency` is at least this.
    price_min: Option<i64>,
    /// In minor units: the product's lowest price in `currency` is at most this.
    price_max: Option<i64>,
    /// `true`: some variant can be bought (in stock, low, or on backorder); `false`: none.
    available: Option<bool>,
    /// `Name:Value`, such as `Size:M`: some variant has it.
    option: Option<Vec<String>>,
    /// `newest` (default), `price`, `-price`, `title`, `relevance` (default with `q`) or
    /// `position` (default with `collection`: the collection's own order).
    sort: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    after: Option<String>,
}

/// A page of products.
#[derive(Serialize, ToSchema)]
pub struct ProductPage {
    pub data: Vec<StoreProduct>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// How many products match in all.
    pub total: usize,
}

/// A page of search results, with facet counts.
#[derive(Serialize, ToSchema)]
pub struct SearchResults {
    pub data: Vec<StoreProduct>,
    pub next_cursor: Option<String>,
    pub total: usize,
    pub facets: Facets,
}

#[derive(Serialize)]
struct Trailer<'a> {
    next_cursor: &'a Option<String>,
    total: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    facets: &'a Option<Facets>,
}

/// Renders a page as `{"data": [...], "next_cursor": ..., "total": ..., "facets": ...}`
/// from the products' JSON as the shelf holds it.
fn render_page(contents: &Contents, search: &Search, with_facets: bool) -> AppResult<Rendered> {
    let found = search::run(contents, search, with_facets);
    let trailer =
        serde_json::to_vec(&Trailer { next_cursor: &found.next_cursor, total: found.total, facets: &found.facets })
            .map_err(AppError::internal)?;
    let mut hasher = DefaultHasher::new();
    let mut json = Vec::with_capacity(found.slots.len() * 2048 + trailer.len() + 16);
    json.extend_from_slice(b"{\"data\":[");
    for (at, item) in found.slots.iter().filter_map(|slot| contents.item(*slot)).enumerate() {
        if at > 0 {
            json.push(b',');
        }
        json.extend_from_slice(&item.json);
        item.hash.hash(&mut hasher);
    }
    json.extend_from_slice(b"],");
    json.extend_from_slice(trailer.get(1..).unwrap_or_default());
    trailer.hash(&mut hasher);
    Ok(Rendered::from_parts(json.into(), hasher.finish()))
}

async fn products_answer(
    state: &AppState,
    headers: &HeaderMap,
    query: Option<String>,
    facets: bool,
) -> AppResult<Response> {
    let query = query.unwrap_or_default();
    let search = Search::parse(&query)?;
    let key = format!("{}:{query}", if facets { "search" } else { "list" });
    let rendered = state.shelf.answer(&state.db, &key, |contents| render_page(contents, &search, facets)).await?;
    Ok(rendered.respond(headers))
}

/// List published products: filtered, sorted, a page at a time.
#[utoipa::path(get, path = "/api/v1/store/products", tag = "store: products", params(StoreFilter),
    responses(
        (status = 200, body = ProductPage, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_products(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    products_answer(&state, &headers, query, false).await
}

/// Search published products, with the same filters as the list, and facet counts: for
/// categories, tags, option values, price ranges (with `currency`) and availability.
#[utoipa::path(get, path = "/api/v1/store/search", tag = "store: products", params(StoreFilter),
    responses(
        (status = 200, body = SearchResults, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn search_products(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> AppResult<Response> {
    products_answer(&state, &headers, query, true).await
}

/// Read a published product by its handle (or by its id).
#[utoipa::path(get, path = "/api/v1/store/products/{handle}", tag = "store: products",
    params(("handle" = String, Path, description = "The product's handle, or its id (`prd_...`)")),
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
    let found = state
        .shelf
        .read(&state.db, |contents| {
            let slot = match contents.by_handle.get(&handle) {
                Some(slot) => slot,
                None => contents.by_id.get(&handle)?,
            };
            let item = contents.item(*slot)?;
            Some(Rendered::from_parts(item.json.clone(), item.hash))
        })
        .await?;
    if let Some(rendered) = found {
        return Ok(rendered.respond(&headers));
    }
    // A handle the product had before: sent on, permanently, to the current one.
    match handle_now(&state, &handle).await? {
        Some(current) => {
            let location = format!("/api/v1/store/products/{current}");
            Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response())
        }
        None => Err(AppError::not_found("No published product has this handle.")),
    }
}

/// The handle now of the published product that had the handle `before`.
pub async fn handle_now(state: &AppState, before: &str) -> AppResult<Option<String>> {
    if !super::products::check_handle(before) {
        return Ok(None);
    }
    Ok(db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>(
            "SELECT p.handle FROM product_handle_history h JOIN products p ON p.id = h.product_id \
             WHERE h.handle = $1 AND p.status = 'published'",
        )
        .bind(before)
        .fetch_optional(conn)
        .await
    })?)
}

/// A category in the tree, with what sits below it.
#[derive(Serialize, ToSchema)]
pub struct CategoryBranch {
    pub handle: String,
    pub name: String,
    pub description: String,
    /// Published products in it or below it.
    pub product_count: usize,
    #[schema(no_recursion)]
    pub children: Vec<CategoryBranch>,
}

/// Published products per category, each counted once in every category above its own.
fn product_counts(contents: &Contents) -> HashMap<&str, usize> {
    let mut counts = vec![0usize; contents.category_ids.len()];
    for (_, item) in contents.items() {
        for number in &item.category_set {
            counts[*number as usize] += 1;
        }
    }
    contents.category_ids.iter().map(String::as_str).zip(counts).collect()
}

fn branch(contents: &Contents, counts: &HashMap<&str, usize>, id: &str, depth: usize) -> Option<CategoryBranch> {
    let category = contents.categories.get(id)?;
    let children = if depth < 16 { children_of(contents, counts, id, depth + 1) } else { Vec::new() };
    Some(CategoryBranch {
        handle: category.handle.clone(),
        name: category.name.clone(),
        description: category.description.clone(),
        product_count: counts.get(id).copied().unwrap_or(0),
        children,
    })
}

fn children_of(contents: &Contents, counts: &HashMap<&str, usize>, id: &str, depth: usize) -> Vec<CategoryBranch> {
    let ids = contents.children.get(id).map(Vec::as_slice).unwrap_or_default();
    ids.iter().filter_map(|child| branch(contents, counts, child, depth)).collect()
}

/// The whole category tree, roots first, each with its product count.
#[utoipa::path(get, path = "/api/v1/store/categories", tag = "store: catalog",
    responses(
        (status = 200, body = Vec<CategoryBranch>, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
    ))]
async fn category_tree(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let rendered = state
        .shelf
        .answer(&state.db, "categories", |contents| {
            let counts = product_counts(contents);
            Rendered::new(&children_of(contents, &counts, "", 0))
        })
        .await?;
    Ok(rendered.respond(&headers))
}

/// A category on the way to another.
#[derive(Serialize, ToSchema)]
pub struct CategoryLink {
    pub handle: String,
    pub name: String,
}

/// A category with the way to it from the top and what sits below it.
#[derive(Serialize, ToSchema)]
pub struct CategoryPage {
    #[serde(flatten)]
    pub category: CategoryBranch,
    /// From the top of the tree down to its parent.
    pub ancestors: Vec<CategoryLink>,
}

/// A category by its handle, with its ancestors (for breadcrumbs) and its subtree.
#[utoipa::path(get, path = "/api/v1/store/categories/{handle}", tag = "store: catalog", params(("handle" = String, Path)),
    responses(
        (status = 200, body = CategoryPage, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn category_by_handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(handle): Path<String>,
) -> AppResult<Response> {
    let found = state
        .shelf
        .read(&state.db, |contents| {
            let id = contents.category_by_handle.get(&handle)?;
            let counts = product_counts(contents);
            let category = branch(contents, &counts, id, 0)?;
            let mut ancestors: Vec<CategoryLink> = contents
                .with_ancestors(id)
                .skip(1)
                .filter_map(|at| contents.categories.get(at))
                .map(|c| CategoryLink { handle: c.handle.clone(), name: c.name.clone() })
                .collect();
            ancestors.reverse();
            Some(Rendered::new(&CategoryPage { category, ancestors }))
        })
        .await?;
    let rendered = found.ok_or_else(|| AppError::not_found("No category has this handle."))??;
    Ok(rendered.respond(&headers))
}

/// A published collection; its products are listed by `/api/v1/store/products?collection=`.
#[derive(Serialize, ToSchema)]
pub struct StoreCollection {
    pub handle: String,
    pub title: String,
    /// Sanitised HTML.
    pub description_html: String,
    /// Its published products.
    pub product_count: usize,
}

fn collections_in(contents: &Contents, only: Option<&str>) -> Vec<StoreCollection> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for (_, item) in contents.items() {
        for (collection, _) in &item.collections {
            *counts.entry(collection.as_str()).or_default() += 1;
        }
    }
    let mut list: Vec<StoreCollection> = contents
        .collections
        .values()
        .filter(|c| c.published && only.is_none_or(|handle| c.handle == handle))
        .map(|c| StoreCollection {
            handle: c.handle.clone(),
            title: c.title.clone(),
            description_html: c.description_html.clone(),
            product_count: counts.get(c.id.as_str()).copied().unwrap_or(0),
        })
        .collect();
    list.sort_by(|a, b| a.title.cmp(&b.title).then_with(|| a.handle.cmp(&b.handle)));
    list
}

/// The published collections, by title.
#[utoipa::path(get, path = "/api/v1/store/collections", tag = "store: catalog",
    responses(
        (status = 200, body = Vec<StoreCollection>, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
    ))]
async fn list_collections(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let rendered =
        state.shelf.answer(&state.db, "collections", |contents| Rendered::new(&collections_in(contents, None))).await?;
    Ok(rendered.respond(&headers))
}

/// A published collection by its handle.
#[utoipa::path(get, path = "/api/v1/store/collections/{handle}", tag = "store: catalog", params(("handle" = String, Path)),
    responses(
        (status = 200, body = StoreCollection, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn collection_by_handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(handle): Path<String>,
) -> AppResult<Response> {
    let found = state
        .shelf
        .read(&state.db, |contents| collections_in(contents, Some(&handle)).pop().map(|c| Rendered::new(&c)))
        .await?;
    let rendered = found.ok_or_else(|| AppError::not_found("No published collection has this handle."))??;
    Ok(rendered.respond(&headers))
}
