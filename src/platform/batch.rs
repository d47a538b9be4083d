//! Statements sent to the database together.
//!
//! On SQLite every statement is a trip to the connection's own thread and back, and while a
//! transaction waits for the answer, every other write waits for it. A [`Batch`] goes in one
//! trip: sqlx's SQLite driver runs a string of several statements one after the other and
//! answers each one's rows and changes. On PostgreSQL the statements run one after another
//! in the same transaction, since a prepared statement holds one command there.
//!
//! The statements of a batch cannot look at each other's answers from Rust: what one needs
//! of an earlier one it reads in SQL (a later `UPDATE`'s `WHERE` checks what an earlier one
//! wrote). The caller reads the answers after the batch and, within a transaction, rolls
//! back by returning an error.

use futures_util::TryStreamExt;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Either, FromRow, PgConnection, Row, SqliteConnection};

use super::db::{Backend, Param};

/// Statements to run together, each numbering its binds from `$1`.
#[derive(Debug, Default)]
pub struct Batch {
    statements: Vec<(String, Vec<Param>)>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a statement. Its SQL holds no `$` but in its binds.
    pub fn push(&mut self, sql: impl Into<String>, params: Vec<Param>) -> &mut Self {
        self.statements.push((sql.into(), params));
        self
    }

    /// Adds `insert` (`INSERT INTO table (columns)`) of `rows`, one value per column each, as
    /// one statement, with `tail` after the values (`ON CONFLICT ...`). For the few rows of
    /// one request: [`super::db::Tx::insert_rows`] splits many into statements of a size the
    /// engines take.
    pub fn push_rows(&mut self, insert: &str, rows: Vec<Vec<Param>>, tail: &str) -> &mut Self {
        if rows.is_empty() {
            return self;
        }
        let sql = values_sql(insert, &rows, tail, true);
        self.push(sql, rows.into_iter().flatten().collect())
    }

    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// The statements as one SQLite string, `before` and `after` around them, with each
    /// statement's `$n` moved past the binds of those before it.
    fn sqlite_sql(&self, before: Option<&str>, after: Option<&str>) -> String {
        let mut sql = String::new();
        if let Some(before) = before {
            sql.push_str(before);
            sql.push_str(";\n");
        }
        let mut offset = 0;
        for (statement, params) in &self.statements {
            renumber(statement, offset, &mut sql);
            sql.push_str(";\n");
            offset += params.len();
        }
        if let Some(after) = after {
            sql.push_str(after);
            sql.push(';');
        }
        sql
    }
}

/// `insert` (`INSERT INTO table (columns)`) of `rows`, `tail` after the values, with binds
/// numbered (`$1`) or, for SQLite, anonymous (`?`).
pub(crate) fn values_sql(insert: &str, rows: &[Vec<Param>], tail: &str, numbered: bool) -> String {
    let width = rows.first().map_or(0, Vec::len);
    let mut sql = String::with_capacity(insert.len() + rows.len() * width * 5);
    sql.push_str(insert);
    sql.push_str(" VALUES ");
    let mut n = 0;
    for (at, row) in rows.iter().enumerate() {
        sql.push_str(if at == 0 { "(" } else { ", (" });
        for column in 0..row.len() {
            n += 1;
            if column > 0 {
                sql.push_str(", ");
            }
            if numbered {
                sql.push('$');
                sql.push_str(&n.to_string());
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

/// Copies `statement` to `out` with every `$n` written as `$(n + offset)`.
fn renumber(statement: &str, offset: usize, out: &mut String) {
    let mut rest = statement;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + offset).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
}

/// What one statement of a batch answered.
pub struct Ran {
    rows: Backend<Vec<SqliteRow>, Vec<PgRow>>,
    changed: u64,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = match &self.rows {
            Backend::Sqlite(rows) => rows.len(),
            Backend::Postgres(rows) => rows.len(),
        };
        f.debug_struct("Ran").field("rows", &rows).field("changed", &self.changed).finish()
    }
}

impl Ran {
    /// The rows an `INSERT`, `UPDATE` or `DELETE` changed (on SQLite, for any other statement
    /// this is the count of the last one that changed rows).
    pub fn changed(&self) -> u64 {
        self.changed
    }

    /// Its rows, each as a `T`.
    pub fn rows<T>(&self) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        match &self.rows {
            Backend::Sqlite(rows) => rows.iter().map(T::from_row).collect(),
            Backend::Postgres(rows) => rows.iter().map(T::from_row).collect(),
        }
    }

    /// Its first row as a `T`, if it answered any.
    pub fn row<T>(&self) -> Result<Option<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        Ok(match &self.rows {
            Backend::Sqlite(rows) => rows.first().map(T::from_row).transpose()?,
            Backend::Postgres(rows) => rows.first().map(T::from_row).transpose()?,
        })
    }

    /// The first column of its first row, if it answered any.
    pub fn scalar<T>(&self) -> Result<Option<T>, sqlx::Error>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + for<'r> sqlx::Decode<'r, sqlx::Postgres>
            + sqlx::Type<sqlx::Postgres>,
    {
        Ok(match &self.rows {
            Backend::Sqlite(rows) => rows.first().map(|row| row.try_get(0)).transpose()?,
            Backend::Postgres(rows) => rows.first().map(|row| row.try_get(0)).transpose()?,
        })
    }
}

macro_rules! bind_all {
    ($query:expr, $params:expr) => {{
        let mut query = $query;
        for param in $params {
            query = match param {
                Param::Text(value) => query.bind(value.as_str()),
                Param::MaybeText(value) => query.bind(value.as_deref()),
                Param::Int(value) => query.bind(*value),
                Param::MaybeInt(value) => query.bind(*value),
                Param::Bool(value) => query.bind(*value),
            };
        }
        query
    }};
}
pub(crate) use bind_all;

/// Runs `batch` on SQLite in one trip, between `before` and `after` (`BEGIN IMMEDIATE`,
/// `COMMIT`), whose answers are left out. Stops at the first statement that fails; what ran
/// before it stays in the transaction, for the caller to roll back.
pub(crate) async fn run_sqlite(
    conn: &mut SqliteConnection,
    batch: &Batch,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<Vec<Ran>, sqlx::Error> {
    let sql = batch.sqlite_sql(before, after);
    let query = bind_all!(sqlx::query(&sql), batch.statements.iter().flat_map(|(_, params)| params));
    let mut answers = sqlx::Executor::fetch_many(conn, query);
    let mut ran = Vec::with_capacity(batch.len() + 2);
    let mut rows = Vec::new();
    while let Some(answer) = answers.try_next().await? {
        match answer {
            Either::Right(row) => rows.push(row),
            Either::Left(done) => {
                ran.push(Ran { rows: Backend::Sqlite(std::mem::take(&mut rows)), changed: done.rows_affected() })
            }
        }
    }
    drop(answers);
    if after.is_some() {
        ran.pop();
    }
    if before.is_some() && !ran.is_empty() {
        ran.remove(0);
    }
    if ran.len() != batch.len() {
        return Err(sqlx::Error::Protocol(format!(
            "a batch of {} statements answered {} times",
            batch.len(),
            ran.len()
        )));
    }
    Ok(ran)
}

/// Runs `batch` on PostgreSQL, one statement after another.
pub(crate) async fn run_postgres(conn: &mut PgConnection, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
    let mut ran = Vec::with_capacity(batch.len());
    for (sql, params) in &batch.statements {
        let query = bind_all!(sqlx::query(sql), params);
        let mut answers = sqlx::Executor::fetch_many(&mut *conn, query);
        let mut rows = Vec::new();
        let mut changed = 0;
        while let Some(answer) = answers.try_next().await? {
            match answer {
                Either::Right(row) => rows.push(row),
                Either::Left(done) => changed += done.rows_affected(),
            }
        }
        ran.push(Ran { rows: Backend::Postgres(rows), changed });
    }
    Ok(ran)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_numbered_past_the_statements_before() {
        let mut batch = Batch::new();
        batch.push("UPDATE t SET a = $1 WHERE id = $2", vec![Param::Int(1), Param::Int(2)]);
        batch.push("SELECT $1, $12, 'x' FROM t WHERE b = $2", vec![Param::Int(3), Param::Int(4)]);
        batch.push_rows(
            "INSERT INTO t (a, b)",
            vec![vec![Param::Int(5), Param::Int(6)], vec![Param::Int(7), Param::Int(8)]],
            "",
        );
        assert_eq!(
            batch.sqlite_sql(Some("BEGIN"), Some("COMMIT")),
            "BEGIN;\nUPDATE t SET a = $1 WHERE id = $2;\nSELECT $3, $14, 'x' FROM t WHERE b = $4;\n\
             INSERT INTO t (a, b) VALUES ($5, $6), ($7, $8) ;\nCOMMIT;"
        );
    }
}
