//! Cursor pagination: `?limit=&after=`, answered `{ "data": [...], "next_cursor": ... }`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::db::Db;
use super::error::{AppResult, Violations};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many items to return, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
}

impl PageParams {
    /// The limit, checked against the hard maximum.
    pub fn limit(&self) -> AppResult<u32> {
        let mut violations = Violations::default();
        let limit = check_page(self.limit, self.after.as_deref(), &mut violations);
        violations.finish()?;
        Ok(limit)
    }
}

/// Checks a page's `limit` and `after` alongside a list's own parameters, so that every
/// failing one is reported together; returns the limit to use.
pub fn check_page(limit: Option<u32>, after: Option<&str>, violations: &mut Violations) -> u32 {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        violations.add("limit", "out_of_range", format!("must be between 1 and {MAX_LIMIT}"));
    }
    if after.is_some_and(|after| after.len() > 64) {
        violations.add("after", "invalid", "is not a cursor this API gave out");
    }
    limit
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows ordered by their cursor: the extra row only
    /// tells that another page exists.
    pub fn from_rows(mut rows: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(cursor_of) } else { None };
        Self { data: rows, next_cursor }
    }
}

/// Reads one page, oldest first, of `SELECT {columns} FROM {table}`: rows with an `id`
/// column, which is also the cursor.
pub async fn oldest_first<T>(
    db: &Db,
    table: &str,
    columns: &str,
    page: &PageParams,
    id: fn(&T) -> &str,
) -> AppResult<Page<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    let limit = page.limit()?;
    let sql = format!("SELECT {columns} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = crate::db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, T>(&sql)
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(conn)
            .await
    })?;
    Ok(Page::from_rows(rows, limit, |row| id(row).to_owned()))
}
