//! Statements sent to the database together.
//!
//! On SQLite a [`Batch`] runs on the writer's connection directly, on the caller's thread:
//! sqlx runs each SQLite connection on a thread of its own, and a statement sent there is two
//! thread wake-ups, with every other write waiting for the answer. SQLite does the work of a
//! few statements in tens of microseconds, far less than the trip. On PostgreSQL the
//! statements go to the server as one message ([`run_postgres_between`]).
//!
//! The statements of a batch cannot look at each other's answers from Rust: what one needs
//! of an earlier one it reads in SQL (a later `UPDATE`'s `WHERE` checks what an earlier one
//! wrote). The caller reads the answers after the batch and, within a transaction, rolls
//! back by returning an error.

use std::borrow::Cow;

use futures_util::TryStreamExt;
use rusqlite::types::Value;
use sqlx::postgres::PgRow;
use sqlx::{Either, FromRow, Row};

use super::db::{Backend, Param};
use super::pg::PgConn;
use super::time::Timestamp;

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

/// What one statement of a batch answered.
pub struct Ran {
    rows: Backend<DirectRows, Vec<PgRow>>,
    changed: u64,
}

/// Rows read from SQLite directly: their columns' names and values.
#[derive(Debug, Default)]
pub struct DirectRows {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl std::fmt::Debug for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = match &self.rows {
            Backend::Sqlite(direct) => direct.rows.len(),
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
        T: FromDirect + for<'r> FromRow<'r, PgRow>,
    {
        match &self.rows {
            Backend::Sqlite(direct) => direct.rows.iter().map(|values| T::from_direct(&direct.row(values))).collect(),
            Backend::Postgres(rows) => rows.iter().map(T::from_row).collect(),
        }
    }

    /// Its first row as a `T`, if it answered any.
    pub fn row<T>(&self) -> Result<Option<T>, sqlx::Error>
    where
        T: FromDirect + for<'r> FromRow<'r, PgRow>,
    {
        Ok(match &self.rows {
            Backend::Sqlite(direct) => {
                direct.rows.first().map(|values| T::from_direct(&direct.row(values))).transpose()?
            }
            Backend::Postgres(rows) => rows.first().map(T::from_row).transpose()?,
        })
    }

    /// The first column of its first row, if it answered any.
    pub fn scalar<T>(&self) -> Result<Option<T>, sqlx::Error>
    where
        T: DirectValue + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        Ok(match &self.rows {
            Backend::Sqlite(direct) => direct.rows.first().map(|values| direct.row(values).get(0)).transpose()?,
            Backend::Postgres(rows) => rows.first().map(|row| row.try_get(0)).transpose()?,
        })
    }
}

impl DirectRows {
    fn row<'a>(&'a self, values: &'a [Value]) -> DirectRow<'a> {
        DirectRow { columns: &self.columns, values }
    }
}

/// One row read from SQLite directly.
pub struct DirectRow<'a> {
    columns: &'a [String],
    values: &'a [Value],
}

impl DirectRow<'_> {
    /// The value of column `at` (from 0) as a `T`.
    pub fn get<T: DirectValue>(&self, at: usize) -> Result<T, sqlx::Error> {
        let value =
            self.values.get(at).ok_or(sqlx::Error::ColumnIndexOutOfBounds { index: at, len: self.values.len() })?;
        T::from_value(value).map_err(|reason| decode_error(&at.to_string(), reason))
    }

    /// The value of the column named `name` as a `T`.
    pub fn named<T: DirectValue>(&self, name: &str) -> Result<T, sqlx::Error> {
        let at = self
            .columns
            .iter()
            .position(|column| column == name)
            .ok_or_else(|| sqlx::Error::ColumnNotFound(name.to_owned()))?;
        T::from_value(&self.values[at]).map_err(|reason| decode_error(name, reason))
    }
}

fn decode_error(column: &str, reason: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: reason.into() }
}

/// A row type read from a batch's answer on SQLite: what [`FromRow`] is to sqlx's rows.
/// Tuples take their columns in order; structs name theirs with [`crate::direct_row!`].
pub trait FromDirect: Sized {
    fn from_direct(row: &DirectRow<'_>) -> Result<Self, sqlx::Error>;
}

/// A column's type read from a batch's answer on SQLite: what sqlx's `Decode` is to its rows.
pub trait DirectValue: Sized {
    fn from_value(value: &Value) -> Result<Self, String>;
}

fn mismatch(wanted: &str, value: &Value) -> String {
    format!("expected {wanted}, found {:?}", value.data_type())
}

impl DirectValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(text) => Ok(text.clone()),
            other => Err(mismatch("text", other)),
        }
    }
}

impl DirectValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Integer(n) => Ok(*n),
            other => Err(mismatch("an integer", other)),
        }
    }
}

impl DirectValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        i64::from_value(value).map(|n| n != 0)
    }
}

impl DirectValue for Timestamp {
    fn from_value(value: &Value) -> Result<Self, String> {
        i64::from_value(value).map(Timestamp)
    }
}

impl<T: DirectValue> DirectValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

macro_rules! tuple_from_direct {
    ($($name:ident $at:tt),+) => {
        impl<$($name: DirectValue),+> FromDirect for ($($name,)+) {
            fn from_direct(row: &DirectRow<'_>) -> Result<Self, sqlx::Error> {
                Ok(($(row.get::<$name>($at)?,)+))
            }
        }
    };
}

tuple_from_direct!(A 0);
tuple_from_direct!(A 0, B 1);
tuple_from_direct!(A 0, B 1, C 2);
tuple_from_direct!(A 0, B 1, C 2, D 3);
tuple_from_direct!(A 0, B 1, C 2, D 3, E 4);
tuple_from_direct!(A 0, B 1, C 2, D 3, E 4, F 5);

/// A struct read from rows by its columns' names, from sqlx's rows (`#[derive(sqlx::FromRow)]`
/// among its attributes) and from a batch's on SQLite: the struct as written, and its
/// [`FromDirect`], each field read from the column of its name.
#[macro_export]
macro_rules! direct_row {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident : $ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty,)*
        }

        impl $crate::platform::batch::FromDirect for $name {
            fn from_direct(row: &$crate::platform::batch::DirectRow<'_>) -> Result<Self, sqlx::Error> {
                Ok(Self { $($field: row.named(stringify!($field))?,)* })
            }
        }
    };
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

/// Runs `batch` on SQLite's connection directly, between `before` and `after` (`BEGIN
/// IMMEDIATE`, `COMMIT`), whose answers are left out. Stops at the first statement that fails;
/// what ran before it stays in the transaction, for the caller to roll back.
pub(crate) fn run_direct(
    conn: &rusqlite::Connection,
    batch: &Batch,
    before: Option<&str>,
    after: Option<&str>,
) -> Result<Vec<Ran>, sqlx::Error> {
    if let Some(before) = before {
        run_one(conn, before, &[])?;
    }
    let ran = batch.statements.iter().map(|(sql, params)| run_one(conn, sql, params)).collect::<Result<Vec<_>, _>>()?;
    if let Some(after) = after {
        run_one(conn, after, &[])?;
    }
    Ok(ran)
}

/// One statement: its binds by their numbers (a statement may use `$2` before `$1`), then
/// its rows, read to the end.
fn run_one(conn: &rusqlite::Connection, sql: &str, params: &[Param]) -> Result<Ran, sqlx::Error> {
    let mut statement = conn.prepare_cached(sql).map_err(direct_error)?;
    for at in 1..=statement.parameter_count() {
        let number = statement.parameter_name(at).and_then(|name| name.strip_prefix('$')?.parse::<usize>().ok());
        let Some(param) = number.and_then(|n| params.get(n.wrapping_sub(1))) else {
            return Err(sqlx::Error::Protocol(format!(
                "bind {at} of `{sql}` is not one of its {} values",
                params.len()
            )));
        };
        match param {
            Param::Text(value) => statement.raw_bind_parameter(at, value.as_str()),
            Param::MaybeText(value) => statement.raw_bind_parameter(at, value.as_deref()),
            Param::Int(value) => statement.raw_bind_parameter(at, value),
            Param::MaybeInt(value) => statement.raw_bind_parameter(at, value),
            Param::Bool(value) => statement.raw_bind_parameter(at, i64::from(*value)),
        }
        .map_err(direct_error)?;
    }
    let width = statement.column_count();
    let mut rows = Vec::new();
    let mut answer = statement.raw_query();
    while let Some(row) = answer.next().map_err(direct_error)? {
        let mut values = Vec::with_capacity(width);
        for at in 0..width {
            values.push(Value::from(row.get_ref(at).map_err(direct_error)?));
        }
        rows.push(values);
    }
    drop(answer);
    // The names only serve to read rows by column: most statements of a checkout answer none.
    let columns =
        if rows.is_empty() { Vec::new() } else { statement.column_names().into_iter().map(str::to_owned).collect() };
    Ok(Ran { rows: Backend::Sqlite(DirectRows { columns, rows }), changed: conn.changes() })
}

/// A SQLite error met on the direct path, as sqlx's own would be: its message, its
/// extended result code and the kind that code makes it.
#[derive(Debug)]
pub struct DirectError {
    message: String,
    code: i32,
}

impl std::fmt::Display for DirectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(code: {}) {}", self.code, self.message)
    }
}

impl std::error::Error for DirectError {}

impl sqlx::error::DatabaseError for DirectError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(self.code.to_string().into())
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        match self.code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                sqlx::error::ErrorKind::UniqueViolation
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => sqlx::error::ErrorKind::ForeignKeyViolation,
            ffi::SQLITE_CONSTRAINT_NOTNULL => sqlx::error::ErrorKind::NotNullViolation,
            ffi::SQLITE_CONSTRAINT_CHECK => sqlx::error::ErrorKind::CheckViolation,
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

/// A rusqlite error as a sqlx one, so that callers handle both paths' errors alike.
pub(crate) fn direct_error(err: rusqlite::Error) -> sqlx::Error {
    match err {
        rusqlite::Error::SqliteFailure(failure, message) => sqlx::Error::Database(Box::new(DirectError {
            message: message.unwrap_or_else(|| failure.to_string()),
            code: failure.extended_code,
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Runs `batch` on PostgreSQL: see [`run_postgres_between`].
pub(crate) async fn run_postgres(conn: &mut PgConn, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
    run_postgres_between(conn, &[], batch, &[]).await
}

/// What a command of a batch's message is, to match the server's answers to it.
enum Command {
    /// `BEGIN`, `COMMIT` and the like, `DEALLOCATE`: its answer is not the caller's.
    Around,
    /// `PREPARE`: once answered, the connection has the statement under this key and number.
    Prepare(String, u64),
    /// One of the batch's statements.
    Statement,
}

/// Runs `before` (statements of literal SQL, such as `BEGIN`), the statements of `batch`,
/// then `after`, as one message to the server: a simple query of several statements. Each of
/// the batch's statements is prepared by name (`PREPARE`) the first time the connection
/// meets it and run with `EXECUTE`, its binds written as literals, so that the server plans
/// it once per connection, as it does the statements sqlx prepares. One message rather than a
/// round trip each: a batch of six statements is one wake-up of each side, not six.
///
/// Without an explicit `BEGIN`, the server runs a message's statements as one transaction.
/// An error stops the message there: the statements after it are not run.
pub(crate) async fn run_postgres_between(
    conn: &mut PgConn,
    before: &[&str],
    batch: &Batch,
    after: &[&str],
) -> Result<Vec<Ran>, sqlx::Error> {
    // A query message is a NUL-terminated string: a text holding NUL goes as a bind instead
    // (and the server refuses it there, as it refuses any text with a NUL).
    let nul = |param: &Param| matches!(param, Param::Text(text) | Param::MaybeText(Some(text)) if text.contains('\0'));
    if batch.statements.iter().any(|(_, params)| params.iter().any(nul)) {
        return run_postgres_apart(conn, before, batch, after).await;
    }
    let mut sql = String::new();
    let mut commands = Vec::with_capacity(before.len() + batch.len() * 2 + after.len());
    for statement in before {
        sql.push_str(statement);
        sql.push_str(";\n");
        commands.push(Command::Around);
    }
    for (statement, params) in &batch.statements {
        let mut key = String::with_capacity(statement.len() + params.len() * 5);
        for param in params {
            key.push_str(pg_type(param));
            key.push(',');
        }
        key.push('\n');
        key.push_str(statement);
        // Prepared before, or earlier in this message.
        let preparing = || {
            commands.iter().find_map(|command| match command {
                Command::Prepare(prepared, number) if *prepared == key => Some(*number),
                _ => None,
            })
        };
        let number = match conn.prepared().number(&key).or_else(preparing) {
            Some(number) => number,
            None => {
                if let Some(old) = conn.prepared().evict() {
                    sql.push_str(&format!("DEALLOCATE br_{old};\n"));
                    commands.push(Command::Around);
                }
                let number = conn.prepared().next_number();
                sql.push_str(&format!("PREPARE br_{number}"));
                if !params.is_empty() {
                    let types: Vec<&str> = params.iter().map(pg_type).collect();
                    sql.push_str(&format!(" ({})", types.join(", ")));
                }
                sql.push_str(" AS ");
                sql.push_str(statement);
                sql.push_str(";\n");
                commands.push(Command::Prepare(key, number));
                number
            }
        };
        sql.push_str(&format!("EXECUTE br_{number}"));
        for (at, param) in params.iter().enumerate() {
            sql.push_str(if at == 0 { "(" } else { ", " });
            push_literal(&mut sql, param);
        }
        if !params.is_empty() {
            sql.push(')');
        }
        sql.push_str(";\n");
        commands.push(Command::Statement);
    }
    for statement in after {
        sql.push_str(statement);
        sql.push_str(";\n");
        commands.push(Command::Around);
    }

    let mut ran = Vec::with_capacity(batch.len());
    let mut answered = 0;
    let outcome = {
        let mut answers = sqlx::Executor::fetch_many(&mut *conn, sqlx::raw_sql(&sql));
        let mut rows = Vec::new();
        loop {
            match answers.try_next().await {
                Ok(Some(Either::Right(row))) => rows.push(row),
                Ok(Some(Either::Left(done))) => {
                    if let Some(Command::Statement) = commands.get(answered) {
                        ran.push(Ran {
                            rows: Backend::Postgres(std::mem::take(&mut rows)),
                            changed: done.rows_affected(),
                        });
                    }
                    rows.clear();
                    answered += 1;
                }
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        }
    };
    // What the server prepared stays prepared, whatever came after it.
    for command in commands.drain(..answered.min(commands.len())) {
        if let Command::Prepare(key, number) = command {
            conn.prepared().add(key, number);
        }
    }
    outcome?;
    if ran.len() != batch.len() {
        return Err(sqlx::Error::Protocol(format!(
            "a batch of {} statements was answered for {}",
            batch.len(),
            ran.len()
        )));
    }
    Ok(ran)
}

/// The type a bind is prepared with: the one sqlx binds it as.
fn pg_type(param: &Param) -> &'static str {
    match param {
        Param::Text(_) | Param::MaybeText(_) => "text",
        Param::Int(_) | Param::MaybeInt(_) => "int8",
        Param::Bool(_) => "bool",
    }
}

/// `text` as an SQL literal: see [`push_text`].
pub(crate) fn text_literal(text: &str) -> String {
    let mut sql = String::with_capacity(text.len() + 3);
    push_text(&mut sql, text);
    sql
}

/// Writes `text` as an escape string (`E'...'`, each quote and backslash doubled), which
/// reads the same whatever `standard_conforming_strings` says.
fn push_text(sql: &mut String, text: &str) {
    sql.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            c => sql.push(c),
        }
    }
    sql.push('\'');
}

/// Writes `param` as an SQL literal.
fn push_literal(sql: &mut String, param: &Param) {
    match param {
        Param::Text(text) | Param::MaybeText(Some(text)) => push_text(sql, text),
        Param::Int(n) | Param::MaybeInt(Some(n)) => sql.push_str(&n.to_string()),
        Param::MaybeText(None) | Param::MaybeInt(None) => sql.push_str("NULL"),
        Param::Bool(b) => sql.push_str(if *b { "true" } else { "false" }),
    }
}

/// As [`run_postgres_between`], a round trip a statement, each of the batch's with its binds.
async fn run_postgres_apart(
    conn: &mut PgConn,
    before: &[&str],
    batch: &Batch,
    after: &[&str],
) -> Result<Vec<Ran>, sqlx::Error> {
    for statement in before {
        sqlx::Executor::execute(&mut *conn, *statement).await?;
    }
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
    for statement in after {
        sqlx::Executor::execute(&mut *conn, *statement).await?;
    }
    Ok(ran)
}
