//! Staff write pages and posts: create, read (drafts too), change under `If-Match`, delete.

use std::collections::HashSet;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Author, ENTRY_COLUMNS, ENTRY_FROM, EntryRow, Kind, authors_of, existing, site_link_ok};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::markdown;
use crate::catalog::products::{self, ImageRef, ProductImage, single_line};
use crate::platform::db::{Tx, dialect};
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_posts, create_post))
        .routes(routes!(get_post, update_post, delete_post))
        .routes(routes!(list_pages, create_page))
        .routes(routes!(get_page, update_page, delete_page))
}

const MAX_BODY_CHARS: usize = 200_000;
const MAX_TAGS: usize = 20;
const MAX_AUTHORS: usize = 10;

/// A page or post as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entry {
    pub id: String,
    pub slug: String,
    pub title: String,
    /// Markdown, as written.
    pub body: String,
    /// The body as sanitised HTML: what visitors see.
    pub body_html: String,
    /// As written; empty when visitors see the start of the body instead.
    pub excerpt: String,
    pub cover: Option<ProductImage>,
    pub tags: Vec<String>,
    pub authors: Vec<Author>,
    /// `draft`, `scheduled` (shown from `published_at` on) or `published`.
    pub status: String,
    pub published_at: Option<Timestamp>,
    /// The title search engines show; the title when empty.
    pub meta_title: String,
    pub meta_description: String,
    /// The address search engines should index instead of this entry's own; empty for its own.
    pub canonical_url: String,
    /// Whether search engines are asked not to index it.
    pub noindex: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

fn entry(state: &AppState, row: EntryRow, authors: Vec<Author>, now: Timestamp) -> Entry {
    let cover = row.cover(state);
    let tags = row.tags();
    let status = row.status_now(now).to_owned();
    Entry {
        id: row.id,
        slug: row.slug,
        title: row.title,
        body: row.body,
        body_html: row.body_html,
        excerpt: row.excerpt,
        cover,
        tags,
        authors,
        status,
        published_at: row.published_at,
        meta_title: row.meta_title,
        meta_description: row.meta_description,
        canonical_url: row.canonical_url,
        noindex: row.noindex,
        created_at: row.created_at,
        updated_at: row.updated_at,
        version: row.version,
    }
}

fn not_found(kind: Kind) -> AppError {
    AppError::not_found(match kind {
        Kind::Post => "No post has this id.",
        Kind::Page => "No page has this id.",
    })
}

fn slug_taken(kind: Kind) -> impl Fn(sqlx::Error) -> AppError {
    move |err| {
        if dialect::is_unique_violation(&err, "content", "slug") {
            return AppError::conflict("slug", format!("Another {} has this slug.", kind.as_str()));
        }
        err.into()
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub title: String,
    /// Made from the title when absent.
    pub slug: Option<String>,
    /// Markdown.
    #[serde(default)]
    pub body: String,
    /// Plain text; the start of the body is shown when empty.
    #[serde(default)]
    pub excerpt: String,
    pub cover: Option<ImageRef>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Staff members, in order; the one writing when absent.
    pub author_ids: Option<Vec<String>>,
    /// `draft` (default), `scheduled` or `published`.
    pub status: Option<String>,
    /// When it is, or is to be, published: required for `scheduled` and in the future;
    /// for `published`, now when absent, and not in the future.
    pub published_at: Option<Timestamp>,
    #[serde(default)]
    pub meta_title: String,
    #[serde(default)]
    pub meta_description: String,
    /// An absolute `http(s)` address or a path starting with `/`.
    #[serde(default)]
    pub canonical_url: String,
    #[serde(default)]
    pub noindex: bool,
}

/// A change: only the fields sent change. `cover` and `published_at` take `null` to clear.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPatch {
    pub title: Option<String>,
    pub slug: Option<String>,
    pub body: Option<String>,
    pub excerpt: Option<String>,
    #[serde(default, deserialize_with = "http::nullable")]
    #[schema(value_type = Option<ImageRef>)]
    pub cover: Option<Option<ImageRef>>,
    pub tags: Option<Vec<String>>,
    pub author_ids: Option<Vec<String>>,
    pub status: Option<String>,
    #[serde(default, deserialize_with = "http::nullable")]
    #[schema(value_type = Option<Timestamp>)]
    pub published_at: Option<Option<Timestamp>>,
    pub meta_title: Option<String>,
    pub meta_description: Option<String>,
    pub canonical_url: Option<String>,
    pub noindex: Option<bool>,
}

/// An entry's fields once a create or a change is applied, before they are checked.
struct Fields {
    title: String,
    slug: Option<String>,
    body: String,
    excerpt: String,
    cover: Option<ImageRef>,
    tags: Vec<String>,
    author_ids: Vec<String>,
    status: String,
    published_at: Option<Timestamp>,
    meta_title: String,
    meta_description: String,
    canonical_url: String,
    noindex: bool,
}

fn check_text(violations: &mut Violations, field: &str, text: &str, max: usize, one_line: bool) {
    let fits = text.chars().count() <= max
        && !text.chars().any(|c| c.is_control() && (one_line || !matches!(c, '\n' | '\r' | '\t')));
    if !fits {
        let lines = if one_line { " on one line" } else { "" };
        violations.add(field, "invalid_format", format!("must be at most {max} characters{lines}"));
    }
}

/// Checks `fields`, as they would be written at `now`.
fn check(fields: &Fields, now: Timestamp, violations: &mut Violations) {
    if fields.title.trim().is_empty() || !single_line(&fields.title, 255) {
        violations.add("title", "invalid_format", "must be 1 to 255 characters on one line");
    }
    if fields.slug.as_deref().is_some_and(|slug| !products::check_handle(slug)) {
        violations.add("slug", "invalid_format", "must be 1 to 120 lowercase letters, digits and single inner dashes");
    }
    if fields.body.chars().count() > MAX_BODY_CHARS || fields.body.contains('\0') {
        violations.add("body", "too_long", format!("must be at most {MAX_BODY_CHARS} characters"));
    }
    check_text(violations, "excerpt", &fields.excerpt, 1_000, false);
    check_text(violations, "meta_title", &fields.meta_title, 300, true);
    check_text(violations, "meta_description", &fields.meta_description, 500, true);
    if !fields.canonical_url.is_empty() && !site_link_ok(&fields.canonical_url) {
        violations.add("canonical_url", "invalid_format", "must be an http(s) address or a path starting with /");
    }
    if let Some(cover) = &fields.cover {
        if !has_shape(&cover.media_id, "med") {
            violations.add("cover.media_id", "unknown", "names no image");
        }
        check_text(violations, "cover.alt", &cover.alt, 500, true);
    }
    if fields.tags.len() > MAX_TAGS {
        violations.add("tags", "too_many", format!("must be at most {MAX_TAGS}"));
    }
    for (index, tag) in fields.tags.iter().enumerate() {
        if tag.trim().is_empty() || !single_line(tag, 60) {
            violations.add(&format!("tags[{index}]"), "invalid_format", "must be 1 to 60 characters on one line");
        }
    }
    if fields.author_ids.len() > MAX_AUTHORS {
        violations.add("author_ids", "too_many", format!("must be at most {MAX_AUTHORS}"));
    }
    let mut seen = HashSet::new();
    for (index, id) in fields.author_ids.iter().enumerate() {
        if !has_shape(id, "stf") {
            violations.add(&format!("author_ids[{index}]"), "unknown", "names no staff member");
        } else if !seen.insert(id) {
            violations.add(&format!("author_ids[{index}]"), "duplicate", "is listed twice");
        }
    }
    match (fields.status.as_str(), fields.published_at) {
        ("draft", _) => {}
        ("scheduled", None) => violations.add("published_at", "required", "is required to schedule"),
        ("scheduled", Some(at)) if at <= now => {
            violations.add("published_at", "not_in_future", "must be in the future to schedule")
        }
        ("published", Some(at)) if at > now => {
            violations.add("published_at", "in_future", "is in the future: schedule it instead")
        }
        ("published", None) => {
            violations.add("published_at", "required", "is required to publish: leave it out for now")
        }
        ("scheduled" | "published", _) => {}
        _ => violations.add("status", "invalid", "must be draft, scheduled or published"),
    }
}

/// Checks that the cover image and the authors exist; a 422 naming the field otherwise.
async fn check_references(tx: &mut Tx, fields: &Fields) -> AppResult<()> {
    let mut violations = Violations::default();
    if let Some(cover) = &fields.cover {
        let found = db_run!(tx.conn(), |conn| {
            sqlx::query_scalar::<_, String>("SELECT id FROM media WHERE id = $1")
                .bind(&cover.media_id)
                .fetch_optional(conn)
                .await
        })?;
        if found.is_none() {
            violations.add("cover.media_id", "unknown", "names no image");
        }
    }
    let authors: Vec<&str> = fields.author_ids.iter().map(String::as_str).collect();
    let found = existing(tx, "staff_users", &authors).await?;
    for (index, id) in fields.author_ids.iter().enumerate() {
        if !found.contains(id) {
            violations.add(&format!("author_ids[{index}]"), "unknown", "names no staff member");
        }
    }
    violations.finish()
}

/// A slug not yet taken by an entry of `kind`: `base`, else `base-2`, `base-3`...
async fn free_slug(tx: &mut Tx, kind: Kind, base: &str) -> AppResult<String> {
    let taken: Vec<String> = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>("SELECT slug FROM content WHERE kind = $1 AND (slug = $2 OR slug LIKE $3)")
            .bind(kind.as_str())
            .bind(base)
            .bind(format!("{base}-%"))
            .fetch_all(conn)
            .await
    })?;
    Ok(products::first_free(base, &taken))
}

/// Replaces the entry's authors and tag rows.
async fn write_links(tx: &mut Tx, id: &str, fields: &Fields) -> AppResult<()> {
    db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM content_authors WHERE content_id = $1").bind(id).execute(conn).await
    })?;
    for (position, staff_id) in fields.author_ids.iter().enumerate() {
        db_execute!(tx.conn(), |conn| {
            sqlx::query("INSERT INTO content_authors (content_id, staff_id, position) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(staff_id)
                .bind(position as i64)
                .execute(conn)
                .await
        })?;
    }
    db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM content_tags WHERE content_id = $1").bind(id).execute(conn).await
    })?;
    for tag in &fields.tags {
        db_execute!(tx.conn(), |conn| {
            sqlx::query("INSERT INTO content_tags (content_id, tag_slug) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(products::slugify(tag))
                .execute(conn)
                .await
        })?;
    }
    Ok(())
}

async fn find(state: &AppState, kind: Kind, id: &str) -> AppResult<Entry> {
    if !has_shape(id, kind.id_prefix()) {
        return Err(not_found(kind));
    }
    let sql = format!("SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE c.id = $1 AND c.kind = $2");
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, EntryRow>(&sql).bind(id).bind(kind.as_str()).fetch_optional(conn).await
    })?
    .ok_or_else(|| not_found(kind))?;
    let authors = authors_of(&state.db, &[id]).await?.remove(id).unwrap_or_default();
    Ok(entry(state, row, authors, Timestamp::now()))
}

async fn create(state: AppState, staff: CurrentStaff, kind: Kind, new: NewEntry) -> AppResult<Response> {
    staff.require(Permission::ContentWrite)?;
    let now = Timestamp::now();
    let status = new.status.unwrap_or_else(|| "draft".into());
    let published_at = match (status.as_str(), new.published_at) {
        ("published", None) => Some(now),
        (_, at) => at,
    };
    let fields = Fields {
        title: new.title.trim().to_owned(),
        slug: new.slug,
        body: new.body,
        excerpt: new.excerpt.trim().to_owned(),
        cover: new.cover,
        tags: products::clean_tags(&new.tags),
        author_ids: new.author_ids.unwrap_or_else(|| vec![staff.staff_id.clone()]),
        status,
        published_at,
        meta_title: new.meta_title.trim().to_owned(),
        meta_description: new.meta_description.trim().to_owned(),
        canonical_url: new.canonical_url.trim().to_owned(),
        noindex: new.noindex,
    };
    let mut violations = Violations::default();
    check(&fields, now, &mut violations);
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    check_references(&mut tx, &fields).await?;
    let slug = match &fields.slug {
        Some(slug) => slug.clone(),
        None => free_slug(&mut tx, kind, &products::slugify(&fields.title)).await?,
    };
    let id = new_id(kind.id_prefix());
    write(&mut tx, kind, &id, &slug, &fields, now, None).await?;
    write_links(&mut tx, &id, &fields).await?;
    tx.invalidate(super::seo::changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, &format!("{}.created", kind.as_str()), Some(&id), &slug).await?;
    tx.commit().await?;
    let created = find(&state, kind, &id).await?;
    Ok(http::tagged(StatusCode::CREATED, created.version, created))
}

/// Inserts the entry, or with `version` updates it if it is still at that version (else 412).
async fn write(
    tx: &mut Tx,
    kind: Kind,
    id: &str,
    slug: &str,
    fields: &Fields,
    now: Timestamp,
    version: Option<i64>,
) -> AppResult<()> {
    let sql = match version {
        None => {
            "INSERT INTO content (id, kind, slug, title, body, body_html, excerpt, cover_media_id, cover_alt, tags, \
             status, published_at, meta_title, meta_description, canonical_url, noindex, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)"
        }
        Some(_) => {
            "UPDATE content SET slug = $3, title = $4, body = $5, body_html = $6, excerpt = $7, cover_media_id = $8, \
             cover_alt = $9, tags = $10, status = $11, published_at = $12, meta_title = $13, meta_description = $14, \
             canonical_url = $15, noindex = $16, updated_at = $17, version = version + 1 \
             WHERE id = $1 AND kind = $2 AND version = $18"
        }
    };
    let tags = serde_json::to_string(&fields.tags).map_err(AppError::internal)?;
    let written = db_execute!(tx.conn(), |conn| {
        sqlx::query(sql)
            .bind(id)
            .bind(kind.as_str())
            .bind(slug)
            .bind(&fields.title)
            .bind(&fields.body)
            .bind(markdown::render(&fields.body))
            .bind(&fields.excerpt)
            .bind(fields.cover.as_ref().map(|cover| &cover.media_id))
            .bind(fields.cover.as_ref().map_or("", |cover| cover.alt.trim()))
            .bind(&tags)
            .bind(&fields.status)
            .bind(fields.published_at)
            .bind(&fields.meta_title)
            .bind(&fields.meta_description)
            .bind(&fields.canonical_url)
            .bind(fields.noindex)
            .bind(now)
            .bind(version.unwrap_or(0))
            .execute(conn)
            .await
    })
    .map_err(slug_taken(kind))?;
    if written == 0 {
        return Err(http::stale_version());
    }
    Ok(())
}

async fn update(
    state: AppState,
    staff: CurrentStaff,
    kind: Kind,
    id: String,
    headers: HeaderMap,
    patch: EntryPatch,
) -> AppResult<Response> {
    staff.require(Permission::ContentWrite)?;
    let current = find(&state, kind, &id).await?;
    http::require_version(&headers, current.version)?;
    let now = Timestamp::now();
    let status = patch.status.unwrap_or_else(|| current.status.clone());
    let published_at = match (status.as_str(), patch.published_at) {
        (_, Some(at)) => at,
        // Published anew, or again: its first publish time stands.
        ("published", None) => current.published_at.filter(|at| *at <= now).or(Some(now)),
        (_, None) => current.published_at,
    };
    let cover = match patch.cover {
        Some(cover) => cover,
        None => current.cover.map(|image| ImageRef { media_id: image.media_id, alt: image.alt }),
    };
    let fields = Fields {
        title: patch.title.map_or(current.title, |title| title.trim().to_owned()),
        slug: Some(patch.slug.clone().unwrap_or_else(|| current.slug.clone())),
        body: patch.body.unwrap_or(current.body),
        excerpt: patch.excerpt.map_or(current.excerpt, |excerpt| excerpt.trim().to_owned()),
        cover,
        tags: patch.tags.map_or(current.tags, |tags| products::clean_tags(&tags)),
        author_ids: patch
            .author_ids
            .unwrap_or_else(|| current.authors.iter().map(|author| author.id.clone()).collect()),
        status,
        published_at,
        meta_title: patch.meta_title.map_or(current.meta_title, |text| text.trim().to_owned()),
        meta_description: patch.meta_description.map_or(current.meta_description, |text| text.trim().to_owned()),
        canonical_url: patch.canonical_url.map_or(current.canonical_url, |url| url.trim().to_owned()),
        noindex: patch.noindex.unwrap_or(current.noindex),
    };
    let mut violations = Violations::default();
    check(&fields, now, &mut violations);
    violations.finish()?;
    let slug = fields.slug.clone().unwrap_or_default();
    let mut tx = state.db.begin().await?;
    check_references(&mut tx, &fields).await?;
    write(&mut tx, kind, &id, &slug, &fields, now, Some(current.version)).await?;
    write_links(&mut tx, &id, &fields).await?;
    if slug != current.slug {
        // The old address leads to the new one; the new one may be an address it had before.
        db_execute!(tx.conn(), |conn| {
            sqlx::query("DELETE FROM content_slug_history WHERE kind = $1 AND slug = $2")
                .bind(kind.as_str())
                .bind(&slug)
                .execute(conn)
                .await
        })?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO content_slug_history (kind, slug, content_id, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (kind, slug) DO UPDATE SET content_id = excluded.content_id, \
                 created_at = excluded.created_at",
            )
            .bind(kind.as_str())
            .bind(&current.slug)
            .bind(&id)
            .bind(now)
            .execute(conn)
            .await
        })?;
    }
    tx.invalidate(super::seo::changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, &format!("{}.updated", kind.as_str()), Some(&id), &slug).await?;
    tx.commit().await?;
    let updated = find(&state, kind, &id).await?;
    Ok(http::tagged(StatusCode::OK, updated.version, updated))
}

async fn delete(state: AppState, staff: CurrentStaff, kind: Kind, id: String) -> AppResult<StatusCode> {
    staff.require(Permission::ContentWrite)?;
    let current = find(&state, kind, &id).await?;
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM content WHERE id = $1").bind(&id).execute(conn).await)?;
    tx.invalidate(super::seo::changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, &format!("{}.deleted", kind.as_str()), Some(&id), &current.slug)
        .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which entries a list holds.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EntryFilter {
    /// `draft`, `scheduled` or `published`, as stored: a scheduled entry stays under
    /// `scheduled` once its time has come.
    pub status: Option<String>,
    /// How many to return, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
}

async fn list(state: AppState, staff: CurrentStaff, kind: Kind, filter: EntryFilter) -> AppResult<Json<Page<Entry>>> {
    staff.require(Permission::ContentRead)?;
    let mut violations = Violations::default();
    let limit = pagination::check_page(filter.limit, filter.after.as_deref(), &mut violations);
    if filter.status.as_deref().is_some_and(|status| !["draft", "scheduled", "published"].contains(&status)) {
        violations.add("status", "invalid", "must be draft, scheduled or published");
    }
    violations.finish()?;
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE c.kind = $1 AND c.id > $2 AND ($3 = '' OR c.status = $3) \
         ORDER BY c.id LIMIT $4"
    );
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, EntryRow>(&sql)
            .bind(kind.as_str())
            .bind(filter.after.as_deref().unwrap_or(""))
            .bind(filter.status.as_deref().unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(conn)
            .await
    })?;
    let page = Page::from_rows(rows, limit, |row| row.id.clone());
    let ids: Vec<&str> = page.data.iter().map(|row| row.id.as_str()).collect();
    let mut authors = authors_of(&state.db, &ids).await?;
    let now = Timestamp::now();
    let data = page
        .data
        .into_iter()
        .map(|row| {
            let by = authors.remove(&row.id).unwrap_or_default();
            entry(&state, row, by, now)
        })
        .collect();
    Ok(Json(Page { data, next_cursor: page.next_cursor }))
}

/// Declares the five admin endpoints of one kind of entry, each calling the shared code
/// above with that kind.
macro_rules! endpoints {
    ($kind:expr, $path:literal, $path_id:literal, $tag:literal, $noun:literal,
     $list:ident, $create:ident, $get:ident, $update:ident, $delete:ident) => {
        #[doc = concat!("Create a ", $noun, "; a draft unless `status` says otherwise.")]
        #[utoipa::path(post, path = $path, tag = $tag, request_body = NewEntry,
            security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
            responses(
                (status = 201, body = Entry, headers(("ETag" = String))),
                (status = 403, body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "The slug is taken", body = Problem, content_type = "application/problem+json"),
                (status = 422, body = Problem, content_type = "application/problem+json"),
            ))]
        async fn $create(
            State(state): State<AppState>,
            staff: CurrentStaff,
            Json(new): Json<NewEntry>,
        ) -> AppResult<Response> {
            create(state, staff, $kind, new).await
        }

        #[doc = concat!("List ", $noun, "s, drafts too, oldest first.")]
        #[utoipa::path(get, path = $path, tag = $tag, params(EntryFilter),
            security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
            responses(
                (status = 200, body = Page<Entry>),
                (status = 403, body = Problem, content_type = "application/problem+json"),
                (status = 422, body = Problem, content_type = "application/problem+json"),
            ))]
        async fn $list(
            State(state): State<AppState>,
            staff: CurrentStaff,
            Query(filter): Query<EntryFilter>,
        ) -> AppResult<Json<Page<Entry>>> {
            list(state, staff, $kind, filter).await
        }

        #[doc = concat!("Read a ", $noun, ", whatever its status: drafts are previewed here.")]
        #[utoipa::path(get, path = $path_id, tag = $tag, params(("id" = String, Path)),
            security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
            responses(
                (status = 200, body = Entry, headers(("ETag" = String))),
                (status = 403, body = Problem, content_type = "application/problem+json"),
                (status = 404, body = Problem, content_type = "application/problem+json"),
            ))]
        async fn $get(State(state): State<AppState>, staff: CurrentStaff, Path(id): Path<String>) -> AppResult<Response> {
            staff.require(Permission::ContentRead)?;
            let found = find(&state, $kind, &id).await?;
            Ok(http::tagged(StatusCode::OK, found.version, found))
        }

        #[doc = concat!("Change a ", $noun, ". Send the `ETag` you read in `If-Match`. A new slug keeps \
            the old one as an address that leads to it.")]
        #[utoipa::path(patch, path = $path_id, tag = $tag, request_body = EntryPatch,
            params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
            security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
            responses(
                (status = 200, body = Entry, headers(("ETag" = String))),
                (status = 403, body = Problem, content_type = "application/problem+json"),
                (status = 404, body = Problem, content_type = "application/problem+json"),
                (status = 409, description = "The slug is taken", body = Problem, content_type = "application/problem+json"),
                (status = 412, body = Problem, content_type = "application/problem+json"),
                (status = 422, body = Problem, content_type = "application/problem+json"),
            ))]
        async fn $update(
            State(state): State<AppState>,
            staff: CurrentStaff,
            Path(id): Path<String>,
            headers: HeaderMap,
            Json(patch): Json<EntryPatch>,
        ) -> AppResult<Response> {
            update(state, staff, $kind, id, headers, patch).await
        }

        #[doc = concat!("Delete a ", $noun, ".")]
        #[utoipa::path(delete, path = $path_id, tag = $tag, params(("id" = String, Path)),
            security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
            responses(
                (status = 204),
                (status = 403, body = Problem, content_type = "application/problem+json"),
                (status = 404, body = Problem, content_type = "application/problem+json"),
            ))]
        async fn $delete(
            State(state): State<AppState>,
            staff: CurrentStaff,
            Path(id): Path<String>,
        ) -> AppResult<StatusCode> {
            delete(state, staff, $kind, id).await
        }
    };
}

endpoints!(
    Kind::Post,
    "/api/v1/admin/posts",
    "/api/v1/admin/posts/{id}",
    "admin: content",
    "blog post",
    list_posts,
    create_post,
    get_post,
    update_post,
    delete_post
);
endpoints!(
    Kind::Page,
    "/api/v1/admin/pages",
    "/api/v1/admin/pages/{id}",
    "admin: content",
    "page",
    list_pages,
    create_page,
    get_page,
    update_page,
    delete_page
);
