//! The redirects manager: addresses the site answers with 301, 302 or 410 when nothing else
//! answers them, as an old site's URLs after a move. A rule is an exact path, or a prefix
//! (`/old-blog/*`) whose rest may be carried over to the target (`/blog/*`). Rules are kept
//! in memory, read again after any change on any node.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::platform::cache::Invalidation;
use crate::platform::db::dialect;
use crate::platform::error::{AppError, AppResult, ErrorCode, FieldError, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The name the rules are cached and invalidated under.
pub const REDIRECTS: &str = "redirects";

/// The most rules one CSV file brings.
const MAX_IMPORT_ROWS: usize = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_redirects, create_redirect))
        .routes(routes!(get_redirect, update_redirect, delete_redirect))
        .routes(routes!(import_redirects))
}

/// A rule.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Redirect {
    pub id: String,
    /// A path (`/old-page`), or a prefix ending in `*` (`/old-blog/*`).
    #[sqlx(rename = "from_path")]
    pub from: String,
    /// Where it leads: a path or an `http(s)` address; for a prefix, a `*` at its end takes
    /// the rest of the path. Empty for 410.
    #[sqlx(rename = "to_url")]
    pub to: String,
    /// 301 (moved for good), 302 (for now) or 410 (gone).
    pub status: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

const COLUMNS: &str = "id, from_path, to_url, status, created_at, updated_at, version";

/// Every rule, ready to match a path.
#[derive(Default)]
pub struct Rules {
    exact: HashMap<String, (String, u16)>,
    /// Prefixes without their `*`, longest first.
    prefixes: Vec<(String, String, u16)>,
}

impl Rules {
    fn new(rules: Vec<Redirect>) -> Self {
        let mut table = Rules::default();
        for rule in rules {
            let status = rule.status as u16;
            let from = decoded(&rule.from);
            match from.strip_suffix('*') {
                Some(prefix) => table.prefixes.push((prefix.to_owned(), rule.to, status)),
                None => {
                    table.exact.insert(from.into_owned(), (rule.to, status));
                }
            }
        }
        table.prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        table
    }

    /// Where `path` leads and how, if a rule takes it: the exact rule, else the longest
    /// prefix.
    pub fn find(&self, path: &str) -> Option<(String, u16)> {
        let path = decoded(path);
        let path = normalised(&path);
        if let Some((to, status)) = self.exact.get(path) {
            return Some((to.clone(), *status));
        }
        self.prefixes.iter().find_map(|(prefix, to, status)| {
            let rest = path.strip_prefix(prefix.as_str())?;
            let to = match to.strip_suffix('*') {
                Some(base) => format!("{base}{rest}"),
                None => to.clone(),
            };
            Some((to, *status))
        })
    }
}

/// `path` with its `%XX` escapes decoded, so that `/caf%C3%A9` and `/café` are one path;
/// as it is when the escapes do not decode to UTF-8.
fn decoded(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') {
        return path.into();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 1..at + 3).and_then(|hex| std::str::from_utf8(hex).ok());
        match (bytes[at], hex.and_then(|hex| u8::from_str_radix(hex, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8(out).map_or(path.into(), Into::into)
}

/// `url` fit for a `Location` header: bytes outside visible ASCII written as `%XX`.
fn header_safe(url: &str) -> String {
    let mut safe = String::with_capacity(url.len());
    for byte in url.bytes() {
        if byte.is_ascii_graphic() {
            safe.push(byte as char);
        } else {
            safe.push_str(&format!("%{byte:02X}"));
        }
    }
    safe
}

/// A path without its trailing slash (`/a/` is `/a`), but `/` itself.
fn normalised(path: &str) -> &str {
    match path.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => path,
    }
}

/// The rules, from the cache or read afresh.
pub async fn rules(state: &AppState) -> AppResult<Arc<Rules>> {
    if let Some(rules) = state.redirects.get(REDIRECTS) {
        return Ok(rules);
    }
    let generation = state.redirects.generation();
    let sql = format!("SELECT {COLUMNS} FROM redirects");
    let all = db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, Redirect>(&sql).fetch_all(conn).await)?;
    let rules = Arc::new(Rules::new(all));
    state.redirects.insert(REDIRECTS.to_owned(), rules.clone(), generation);
    Ok(rules)
}

/// The answer of the rule that takes `uri`'s path, if one does: a redirect (the query
/// going along) or 410.
pub async fn answer(state: &AppState, uri: &Uri) -> AppResult<Option<Response>> {
    let Some((to, status)) = rules(state).await?.find(uri.path()) else { return Ok(None) };
    if status == 410 {
        return Ok(Some(AppError::new(ErrorCode::Gone, "This page has been removed.").into_response()));
    }
    // The query goes along, unless the target has one of its own.
    let location = match uri.query() {
        Some(query) if !to.contains('?') => format!("{to}?{query}"),
        _ => to,
    };
    let location = header_safe(&location);
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::MOVED_PERMANENTLY);
    Ok(Some((status, [(header::LOCATION, location)]).into_response()))
}

fn changed() -> Invalidation {
    Invalidation::all(REDIRECTS)
}

fn path_ok(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && path.len() <= 1_000
        && !path.chars().any(|c| c.is_control() || c.is_whitespace() || c == '?' || c == '#')
}

/// Checks a rule, its fields named with `prefix` (`rows[2].` in an import); answers it with
/// `from` normalised.
fn check(from: &str, to: &str, status: i64, prefix: &str, violations: &mut Violations) -> String {
    let wildcard = from.ends_with('*');
    let base = from.strip_suffix('*').unwrap_or(from);
    if !path_ok(base) || base.contains('*') {
        violations.add(
            &format!("{prefix}from"),
            "invalid_format",
            "must be a path starting with / (a * only at its end), without ? or #",
        );
    }
    let from = if wildcard { from.to_owned() } else { normalised(from).to_owned() };
    if ![301, 302, 410].contains(&status) {
        violations.add(&format!("{prefix}status"), "invalid", "must be 301, 302 or 410");
    }
    let target = to.strip_suffix('*').filter(|_| wildcard).unwrap_or(to);
    let to_ok = match status {
        410 => to.is_empty(),
        _ => !target.contains('*') && super::site_link_ok(target),
    };
    if !to_ok {
        let message = if status == 410 {
            "must be empty for 410"
        } else {
            "must be a path starting with / or an http(s) address (a * at its end only for a prefix)"
        };
        violations.add(&format!("{prefix}to"), "invalid_format", message);
    } else if !wildcard && normalised(to) == from {
        violations.add(&format!("{prefix}to"), "loops", "leads back to itself");
    }
    from
}

fn from_taken(err: sqlx::Error) -> AppError {
    if dialect::is_unique_violation(&err, "redirects", "from_path") {
        return AppError::conflict("from", "Another rule has this path.");
    }
    err.into()
}

fn not_found() -> AppError {
    AppError::not_found("No redirect has this id.")
}

async fn find(state: &AppState, id: &str) -> AppResult<Redirect> {
    if !has_shape(id, "rdr") {
        return Err(not_found());
    }
    let sql = format!("SELECT {COLUMNS} FROM redirects WHERE id = $1");
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Redirect>(&sql).bind(id).fetch_optional(conn).await
    })?;
    row.ok_or_else(not_found)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRedirect {
    pub from: String,
    #[serde(default)]
    pub to: String,
    /// 301 when absent.
    pub status: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectPatch {
    pub from: Option<String>,
    pub to: Option<String>,
    pub status: Option<i64>,
}

/// Add a rule.
#[utoipa::path(post, path = "/api/v1/admin/redirects", tag = "admin: content", request_body = NewRedirect,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Redirect, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another rule has this path", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_redirect(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewRedirect>,
) -> AppResult<Response> {
    staff.require(Permission::ContentWrite)?;
    let status = new.status.unwrap_or(301);
    let mut violations = Violations::default();
    let from = check(&new.from, &new.to, status, "", &mut violations);
    violations.finish()?;
    let now = Timestamp::now();
    let rule = Redirect { id: new_id("rdr"), from, to: new.to, status, created_at: now, updated_at: now, version: 1 };
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO redirects (id, from_path, to_url, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
        )
        .bind(&rule.id)
        .bind(&rule.from)
        .bind(&rule.to)
        .bind(rule.status)
        .bind(now)
        .execute(conn)
        .await
    })
    .map_err(from_taken)?;
    tx.invalidate(changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "redirect.created", Some(&rule.id), &rule.from).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::CREATED, rule.version, rule))
}

/// List rules, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/redirects", tag = "admin: content", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Redirect>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_redirects(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Redirect>>> {
    staff.require(Permission::ContentRead)?;
    Ok(Json(pagination::oldest_first(&state.db, "redirects", COLUMNS, &page, |rule: &Redirect| &rule.id).await?))
}

/// Read a rule.
#[utoipa::path(get, path = "/api/v1/admin/redirects/{id}", tag = "admin: content", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Redirect, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_redirect(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::ContentRead)?;
    let rule = find(&state, &id).await?;
    Ok(http::tagged(StatusCode::OK, rule.version, rule))
}

/// Change a rule. Send the `ETag` you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/redirects/{id}", tag = "admin: content", request_body = RedirectPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Redirect, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another rule has this path", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_redirect(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<RedirectPatch>,
) -> AppResult<Response> {
    staff.require(Permission::ContentWrite)?;
    let current = find(&state, &id).await?;
    http::require_version(&headers, current.version)?;
    let status = patch.status.unwrap_or(current.status);
    let to = match (patch.to, status) {
        (Some(to), _) => to,
        (None, 410) => String::new(),
        (None, _) => current.to.clone(),
    };
    let mut violations = Violations::default();
    let from = check(patch.from.as_deref().unwrap_or(&current.from), &to, status, "", &mut violations);
    violations.finish()?;
    let rule = Redirect { from, to, status, updated_at: Timestamp::now(), version: current.version + 1, ..current };
    let mut tx = state.db.begin().await?;
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE redirects SET from_path = $1, to_url = $2, status = $3, updated_at = $4, version = version + 1 \
             WHERE id = $5 AND version = $6",
        )
        .bind(&rule.from)
        .bind(&rule.to)
        .bind(rule.status)
        .bind(rule.updated_at)
        .bind(&id)
        .bind(rule.version - 1)
        .execute(conn)
        .await
    })
    .map_err(from_taken)?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    tx.invalidate(changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "redirect.updated", Some(&id), &rule.from).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, rule.version, rule))
}

/// Delete a rule.
#[utoipa::path(delete, path = "/api/v1/admin/redirects/{id}", tag = "admin: content", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_redirect(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::ContentWrite)?;
    let rule = find(&state, &id).await?;
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM redirects WHERE id = $1").bind(&id).execute(conn).await)?;
    tx.invalidate(changed());
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "redirect.deleted", Some(&id), &rule.from).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    /// Rules added.
    pub created: usize,
    /// Rules whose path was already there, now leading where the file says.
    pub updated: usize,
}

/// Import rules from a CSV file (`Content-Type: text/csv`): a header row `from,to,status`
/// (`status` may be left out: 301), then a rule per row. A rule for a path that has one
/// replaces it. All or nothing: a bad row (422, named `rows[N].field`, counting the header
/// as row 1) imports none.
#[utoipa::path(post, path = "/api/v1/admin/redirects/import", tag = "admin: content",
    request_body(content = String, content_type = "text/csv"),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Imported),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn import_redirects(
    State(state): State<AppState>,
    staff: CurrentStaff,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Json<Imported>> {
    staff.require(Permission::ContentWrite)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("text/csv") {
        return Err(AppError::new(ErrorCode::UnsupportedMediaType, "Send the file as `text/csv`."));
    }
    let rows = parse_csv(&body)?;
    let mut tx = state.db.begin().await?;
    let now = Timestamp::now();
    let (mut created, mut updated) = (0, 0);
    for (from, to, status) in &rows {
        let changed = db_execute!(tx.conn(), |conn| {
            sqlx::query("UPDATE redirects SET to_url = $1, status = $2, updated_at = $3, version = version + 1 WHERE from_path = $4")
                .bind(to)
                .bind(status)
                .bind(now)
                .bind(from)
                .execute(conn)
                .await
        })?;
        if changed > 0 {
            updated += 1;
            continue;
        }
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO redirects (id, from_path, to_url, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(new_id("rdr"))
            .bind(from)
            .bind(to)
            .bind(status)
            .bind(now)
            .execute(conn)
            .await
        })
        .map_err(from_taken)?;
        created += 1;
    }
    tx.invalidate(changed());
    let (actor_kind, actor_id) = staff.actor();
    let detail = format!("{created} created, {updated} updated");
    audit::record(&mut tx, actor_kind, actor_id, "redirect.imported", None, &detail).await?;
    tx.commit().await?;
    Ok(Json(Imported { created, updated }))
}

/// The rules of a CSV file, each checked, `from` normalised; a path given twice keeps its
/// last row.
fn parse_csv(body: &[u8]) -> AppResult<Vec<(String, String, i64)>> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(AppError::invalid_field("body", "invalid_encoding", "must be UTF-8 text"));
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let header: Vec<String> = match reader.headers() {
        Ok(header) => header.iter().map(|name| name.trim().to_lowercase()).collect(),
        Err(err) => return Err(AppError::invalid_field("body", "invalid_layout", format!("row 1: {err}"))),
    };
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(from_at), Some(to_at)) = (column("from"), column("to")) else {
        return Err(AppError::invalid_field(
            "body",
            "invalid_layout",
            "row 1 must name the columns from, to and status",
        ));
    };
    let status_at = column("status");
    let mut violations = Violations::default();
    let mut rules: Vec<(String, String, i64)> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (index, record) in reader.records().enumerate() {
        let row = index + 2;
        if index >= MAX_IMPORT_ROWS {
            violations.add("body", "too_many", format!("a file holds at most {MAX_IMPORT_ROWS} rules"));
            break;
        }
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                violations.add(&format!("rows[{row}]"), "invalid_layout", err.to_string());
                continue;
            }
        };
        let field = |at: usize| record.get(at).unwrap_or_default().trim().to_owned();
        let status = match status_at.map(field).filter(|status| !status.is_empty()) {
            None => 301,
            Some(status) => status.parse().unwrap_or(0),
        };
        let to = field(to_at);
        let from = check(&field(from_at), &to, status, &format!("rows[{row}]."), &mut violations);
        match at.get(&from) {
            Some(&earlier) => rules[earlier] = (from, to, status),
            None => {
                at.insert(from.clone(), rules.len());
                rules.push((from, to, status));
            }
        }
    }
    if rules.is_empty() && violations.is_empty() {
        violations.add("body", "required", "holds no rule");
    }
    let errors: Vec<FieldError> = violations.into_errors().into_iter().take(50).collect();
    if !errors.is_empty() {
        return Err(AppError::validation(errors));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(from: &str, to: &str, status: i64) -> Redirect {
        let now = Timestamp::now();
        Redirect {
            id: String::new(),
            from: from.into(),
            to: to.into(),
            status,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn the_exact_rule_then_the_longest_prefix_takes_a_path() {
        let rules = Rules::new(vec![
            rule("/old-blog/*", "/blog/*", 301),
            rule("/old-blog/2019/*", "/archive", 302),
            rule("/old-blog/launch", "/blog/hello", 301),
            rule("/gone", "", 410),
        ]);
        assert_eq!(rules.find("/old-blog/launch/"), Some(("/blog/hello".into(), 301)));
        assert_eq!(rules.find("/old-blog/2019/may"), Some(("/archive".into(), 302)));
        assert_eq!(rules.find("/old-blog/spring-sale"), Some(("/blog/spring-sale".into(), 301)));
        assert_eq!(rules.find("/gone"), Some((String::new(), 410)));
        assert_eq!(rules.find("/elsewhere"), None);
    }

    #[test]
    fn escaped_and_plain_paths_are_one_and_targets_are_sent_escaped() {
        let rules = Rules::new(vec![rule("/café", "/boutique/thé", 301), rule("/a%2Fb", "/c", 301)]);
        assert_eq!(rules.find("/caf%C3%A9"), Some(("/boutique/thé".into(), 301)));
        assert_eq!(rules.find("/a/b"), Some(("/c".into(), 301)));
        assert_eq!(rules.find("/caf%E9"), None);
        assert_eq!(header_safe("/boutique/thé?q=a b"), "/boutique/th%C3%A9?q=a%20b");
    }
}
