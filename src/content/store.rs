//! Visitors read published pages and posts: the blog newest first, by tag, and each entry by
//! its slug. An old slug answers 301 to the current one. Answers carry an `ETag`; sent back
//! in `If-None-Match`, it gets 304 while nothing changed.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Author, ENTRY_COLUMNS, ENTRY_FROM, EntryRow, Kind, authors_of, shown_at};
use crate::app::AppState;
use crate::catalog::products::{self, ProductImage};
use crate::db_run;
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{Query, Rendered};
use crate::platform::pagination;
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_posts)).routes(routes!(post_by_slug)).routes(routes!(page_by_slug))
}

/// A published page or post as visitors see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishedEntry {
    pub slug: String,
    pub title: String,
    /// Sanitised HTML.
    pub body_html: String,
    /// The excerpt as written, or else the start of the body's text.
    pub excerpt: String,
    pub cover: Option<ProductImage>,
    pub tags: Vec<PublishedTag>,
    pub authors: Vec<Author>,
    pub published_at: Timestamp,
    pub updated_at: Timestamp,
    /// The title for search engines and social cards.
    pub meta_title: String,
    pub meta_description: String,
    /// Empty for the entry's own address.
    pub canonical_url: String,
    pub noindex: bool,
}

/// A tag, with the slug its page is found by.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishedTag {
    pub name: String,
    pub slug: String,
}

fn published(state: &AppState, row: EntryRow, authors: Vec<Author>) -> PublishedEntry {
    let cover = row.cover(state);
    let excerpt = row.summary();
    let tags = row.tags().into_iter().map(|name| PublishedTag { slug: products::slugify(&name), name }).collect();
    PublishedEntry {
        meta_title: if row.meta_title.is_empty() { row.title.clone() } else { row.meta_title },
        slug: row.slug,
        title: row.title,
        body_html: row.body_html,
        excerpt,
        cover,
        tags,
        authors,
        published_at: row.published_at.unwrap_or(row.created_at),
        updated_at: row.updated_at,
        meta_description: row.meta_description,
        canonical_url: row.canonical_url,
        noindex: row.noindex,
    }
}

/// The blog's filter and page.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PostFilter {
    /// A tag's slug: only the posts with that tag.
    pub tag: Option<String>,
    /// How many to return, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// A page of posts.
#[derive(Debug, Serialize, ToSchema)]
pub struct PostPage {
    pub data: Vec<PublishedEntry>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A cursor is the last post's publish time and id: `1767225600000.pst_...`.
fn parse_cursor(after: &str) -> Option<(i64, &str)> {
    let (at, id) = after.split_once('.')?;
    Some((at.parse().ok()?, id))
}

/// List published posts, newest first.
#[utoipa::path(get, path = "/api/v1/store/posts", tag = "store: content", params(PostFilter),
    responses(
        (status = 200, body = PostPage, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_posts(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(filter): Query<PostFilter>,
) -> AppResult<Response> {
    let mut violations = Violations::default();
    let limit = pagination::check_page(filter.limit, filter.after.as_deref(), &mut violations);
    let cursor = match filter.after.as_deref() {
        Some(after) => {
            let parsed = parse_cursor(after);
            if parsed.is_none() {
                violations.add("after", "invalid", "is not a cursor this API gave out");
            }
            parsed
        }
        None => None,
    };
    if filter.tag.as_deref().is_some_and(|tag| !products::check_handle(tag)) {
        violations.add("tag", "invalid_format", "must be a tag's slug");
    }
    violations.finish()?;
    let page = published_posts(&state, filter.tag.as_deref(), limit, cursor, 0).await?;
    Ok(Rendered::new(&page)?.respond(&headers))
}

/// A page of published posts, newest first: those with the tag `tag` (a slug) only, when
/// given; after the post `after` (its publish time and id) or past the first `offset`.
pub async fn published_posts(
    state: &AppState,
    tag: Option<&str>,
    limit: u32,
    after: Option<(i64, &str)>,
    offset: u32,
) -> AppResult<PostPage> {
    let now = Timestamp::now();
    let (before_at, before_id) = after.unwrap_or((i64::MAX, ""));
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE c.kind = 'post' AND {} \
         AND ($2 = '' OR c.id IN (SELECT content_id FROM content_tags WHERE tag_slug = $2)) \
         AND (c.published_at < $3 OR (c.published_at = $3 AND ($4 = '' OR c.id < $4))) \
         ORDER BY c.published_at DESC, c.id DESC LIMIT $5 OFFSET $6",
        shown_at("$1")
    );
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, EntryRow>(&sql)
            .bind(now)
            .bind(tag.unwrap_or(""))
            .bind(before_at)
            .bind(before_id)
            .bind(i64::from(limit) + 1)
            .bind(i64::from(offset))
            .fetch_all(conn)
            .await
    })?;
    let page =
        pagination::Page::from_rows(rows, limit, |row| format!("{}.{}", row.published_at.map_or(0, |at| at.0), row.id));
    let ids: Vec<&str> = page.data.iter().map(|row| row.id.as_str()).collect();
    let mut authors = authors_of(&state.db, &ids).await?;
    let data = page
        .data
        .into_iter()
        .map(|row| {
            let by = authors.remove(&row.id).unwrap_or_default();
            published(state, row, by)
        })
        .collect();
    Ok(PostPage { data, next_cursor: page.next_cursor })
}

/// What a slug leads to.
pub enum Found {
    Entry(Box<PublishedEntry>),
    /// A slug the entry had before; this is its slug now.
    Moved(String),
    Missing,
}

/// The published entry of `kind` at `slug`, or the slug now of the one that had it before.
pub async fn published_entry(state: &AppState, kind: Kind, slug: &str) -> AppResult<Found> {
    if !products::check_handle(slug) {
        return Ok(Found::Missing);
    }
    let now = Timestamp::now();
    let sql =
        format!("SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE c.kind = $2 AND c.slug = $3 AND {}", shown_at("$1"));
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, EntryRow>(&sql).bind(now).bind(kind.as_str()).bind(slug).fetch_optional(conn).await
    })?;
    if let Some(row) = row {
        let authors = authors_of(&state.db, &[row.id.as_str()]).await?.remove(&row.id).unwrap_or_default();
        return Ok(Found::Entry(Box::new(published(state, row, authors))));
    }
    let sql = format!(
        "SELECT c.slug FROM content_slug_history h JOIN content c ON c.id = h.content_id \
         WHERE h.kind = $2 AND h.slug = $3 AND {}",
        shown_at("$1")
    );
    let moved = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>(&sql).bind(now).bind(kind.as_str()).bind(slug).fetch_optional(conn).await
    })?;
    Ok(moved.map_or(Found::Missing, Found::Moved))
}

/// The published entry of `kind` at `slug`; for a slug it had before, 301 to the current one.
async fn by_slug(state: &AppState, headers: &HeaderMap, kind: Kind, slug: &str) -> AppResult<Response> {
    match published_entry(state, kind, slug).await? {
        Found::Entry(entry) => Ok(Rendered::new(&entry)?.respond(headers)),
        Found::Moved(current) => {
            Ok((StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, kind.store_path(&current))]).into_response())
        }
        Found::Missing => Err(AppError::not_found(match kind {
            Kind::Post => "No published post has this slug.",
            Kind::Page => "No published page has this slug.",
        })),
    }
}

/// Read a published post by its slug.
#[utoipa::path(get, path = "/api/v1/store/posts/{slug}", tag = "store: content", params(("slug" = String, Path)),
    responses(
        (status = 200, body = PublishedEntry, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 301, description = "A slug the post had before: `Location` is its address now"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn post_by_slug(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> AppResult<Response> {
    by_slug(&state, &headers, Kind::Post, &slug).await
}

/// Read a published page by its slug.
#[utoipa::path(get, path = "/api/v1/store/pages/{slug}", tag = "store: content", params(("slug" = String, Path)),
    responses(
        (status = 200, body = PublishedEntry, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
        (status = 301, description = "A slug the page had before: `Location` is its address now"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn page_by_slug(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(slug): Path<String>,
) -> AppResult<Response> {
    by_slug(&state, &headers, Kind::Page, &slug).await
}
