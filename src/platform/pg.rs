//! PostgreSQL's connections: a pool of Backroom's own.
//!
//! sqlx's pool pings every connection that goes back to it, a round trip to the server (a
//! wake-up and system calls on both sides): a checkout took about 20 of them per order, on
//! top of its 50 statements and 5 transactions. This pool hands a connection back as it is,
//! and talks to the server on the way back only when the connection needs it:
//! - a transaction that was not committed (an error, or the request's task stopped) is
//!   rolled back before the connection is taken again, so its locks do not outlive it;
//! - a statement cut short is finished first (sqlx reads what is left of its answer before
//!   the connection's next statement in any case);
//! - a connection that failed (lost, or closed by the server) is not handed out again: every
//!   statement runs through [`PgConn`], which notes such errors.
//!
//! A connection idle for over a second is pinged before it is handed out.
//!
//! Each connection also keeps the statements it prepared by name for batches
//! ([`super::batch`]), so that a batch goes to the server as one message and its statements
//! are planned once per connection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, TryStreamExt};
use sqlx::postgres::{PgConnectOptions, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{ConnectOptions, Connection, Either, PgConnection, Postgres};

use super::batch::{self, Batch, Ran};
use super::db::PoolStats;

/// How long a connection may wait idle before it is pinged on its way out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// How long a connection is kept: a server process holds caches that only grow.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// How long taking a connection may wait for one to be free.
const TAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How many statements a connection keeps prepared for batches; past that, the oldest goes.
/// As many as sqlx keeps of the statements it runs itself.
const MAX_PREPARED: usize = 100;

/// Connections to one PostgreSQL database, opened as first needed, up to `size`.
pub struct PgPool {
    options: PgConnectOptions,
    idle: Mutex<Vec<(PgConn, Instant)>>,
    permits: Arc<tokio::sync::Semaphore>,
    size: usize,
    opened: AtomicUsize,
}

/// A connection, and what Backroom knows of its state. Statements run on it through its
/// [`sqlx::Executor`], which notes an error that leaves it unusable.
pub struct PgConn {
    raw: PgConnection,
    opened_at: Instant,
    /// A failure cut it off from the server: it is closed rather than handed out again.
    severed: bool,
    /// A transaction is open on it: rolled back before the connection is used again.
    in_transaction: bool,
    prepared: Prepared,
}

/// The statements a connection prepared by name (`PREPARE br_<number>`) for batches, by their
/// key (their binds' types and their SQL), oldest first.
#[derive(Default)]
pub(crate) struct Prepared {
    numbers: HashMap<String, u64>,
    order: VecDeque<(String, u64)>,
    last: u64,
}

impl Prepared {
    pub(crate) fn number(&self, key: &str) -> Option<u64> {
        self.numbers.get(key).copied()
    }

    /// A number for a statement to prepare; never one given before on this connection, so
    /// that a `PREPARE` whose fate is unknown (its batch failed) cannot clash with a later one.
    pub(crate) fn next_number(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// Notes a statement the server prepared.
    pub(crate) fn add(&mut self, key: String, number: u64) {
        self.order.push_back((key.clone(), number));
        self.numbers.insert(key, number);
    }

    /// The number of the statement to deallocate before preparing another, when there are
    /// as many as a connection keeps; forgotten here at once.
    pub(crate) fn evict(&mut self) -> Option<u64> {
        if self.numbers.len() < MAX_PREPARED {
            return None;
        }
        let (key, number) = self.order.pop_front()?;
        self.numbers.remove(&key);
        Some(number)
    }
}

/// A connection taken from the pool; it goes back when dropped.
pub struct PgHeld {
    conn: Option<PgConn>,
    pool: Arc<PgPool>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl PgPool {
    pub fn new(options: PgConnectOptions, size: usize) -> Arc<Self> {
        Arc::new(Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            opened: AtomicUsize::new(0),
        })
    }

    pub fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// A connection, once one is free; at most 5 s of waiting.
    pub async fn take(pool: &Arc<Self>) -> Result<PgHeld, sqlx::Error> {
        let permit = match tokio::time::timeout(TAKE_TIMEOUT, pool.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let conn = loop {
            let idle = pool.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
            match idle {
                Some((mut conn, since)) if since.elapsed() > PING_IDLE_AFTER => match conn.raw.ping().await {
                    Ok(()) => break conn,
                    Err(err) => {
                        tracing::debug!(error = %err, "an idle PostgreSQL connection was lost; opening another");
                        pool.opened.fetch_sub(1, Ordering::Relaxed);
                    }
                },
                Some((conn, _)) => break conn,
                None => {
                    let raw = pool.options.connect().await?;
                    pool.opened.fetch_add(1, Ordering::Relaxed);
                    break PgConn {
                        raw,
                        opened_at: Instant::now(),
                        severed: false,
                        in_transaction: false,
                        prepared: Prepared::default(),
                    };
                }
            }
        };
        Ok(PgHeld { conn: Some(conn), pool: pool.clone(), permit: Some(permit) })
    }

    /// A connection with a transaction begun on it; [`PgHeld::commit`] ends it, and dropping
    /// the connection before rolls it back.
    pub async fn begin(pool: &Arc<Self>) -> Result<PgHeld, sqlx::Error> {
        let mut held = Self::take(pool).await?;
        // Marked first: stopped while `BEGIN` is on its way, the connection is rolled back.
        held.in_transaction = true;
        sqlx::Executor::execute(&mut *held, "BEGIN").await?;
        Ok(held)
    }

    /// A connection with a transaction begun on it by `begin`, sent with `batch` in one
    /// message; as [`PgPool::begin`] otherwise.
    pub async fn begin_with(pool: &Arc<Self>, begin: &str, batch: &Batch) -> Result<(PgHeld, Vec<Ran>), sqlx::Error> {
        let mut held = Self::take(pool).await?;
        held.in_transaction = true;
        let ran = batch::run_postgres_between(&mut held, &[begin], batch, &[]).await?;
        Ok((held, ran))
    }

    /// Runs `batch` in a transaction of its own begun by `begin`, in one message.
    pub async fn run_alone(pool: &Arc<Self>, begin: &str, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
        let mut held = Self::take(pool).await?;
        held.in_transaction = true;
        let ran = batch::run_postgres_between(&mut held, &[begin], batch, &["COMMIT"]).await?;
        held.in_transaction = false;
        Ok(ran)
    }

    pub fn stats(&self) -> PoolStats {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len();
        let size = self.opened.load(Ordering::Relaxed).min(self.size);
        PoolStats { name: "main", size: u32::try_from(size).unwrap_or(u32::MAX), idle }
    }

    /// Refuses new takers, waits for the connections in use and closes every one.
    pub async fn close(&self) {
        let all = u32::try_from(self.size).unwrap_or(u32::MAX);
        let _every = self.permits.acquire_many(all).await;
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for (conn, _) in idle {
            if let Err(err) = conn.raw.close().await {
                tracing::warn!(error = %err, "a PostgreSQL connection did not close cleanly");
            }
        }
    }

    /// Takes `conn` back. One that failed is closed at once. One that needs a word with the
    /// server first (a transaction to roll back, a message still unsent), or has lived long
    /// enough, gets it on a task of its own, holding its place in the pool meanwhile: rolled
    /// back or pinged before it is taken again, or closed (which ends its transaction too).
    fn put_back(self: Arc<Self>, mut conn: PgConn, permit: tokio::sync::OwnedSemaphorePermit) {
        if conn.severed {
            self.opened.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let retire = conn.opened_at.elapsed() > MAX_LIFETIME;
        if !retire && !conn.in_transaction && !conn.raw.should_flush() {
            self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((conn, Instant::now()));
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.opened.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        runtime.spawn(async move {
            let _permit = permit;
            if retire {
                self.opened.fetch_sub(1, Ordering::Relaxed);
                if let Err(err) = conn.raw.close().await {
                    tracing::debug!(error = %err, "a PostgreSQL connection did not close cleanly");
                }
                return;
            }
            let settled = if conn.in_transaction {
                sqlx::Executor::execute(&mut conn.raw, "ROLLBACK").await.map(drop)
            } else {
                conn.raw.ping().await
            };
            match settled {
                Ok(()) => {
                    conn.in_transaction = false;
                    self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push((conn, Instant::now()));
                }
                Err(err) => {
                    self.opened.fetch_sub(1, Ordering::Relaxed);
                    tracing::warn!(error = %err, "a PostgreSQL connection could not be settled; it is closed");
                }
            }
        });
    }
}

impl PgHeld {
    /// Runs `batch`, then `after` (statements of literal SQL, such as the transaction's
    /// `NOTIFY`s), then commits the transaction [`PgPool::begin`] began, all in one message.
    /// Should any of it fail, the transaction is rolled back as the connection goes back.
    pub async fn commit_with(mut self, batch: &Batch, after: &[&str]) -> Result<Vec<Ran>, sqlx::Error> {
        let mut last = after.to_vec();
        last.push("COMMIT");
        let ran = batch::run_postgres_between(&mut self, &[], batch, &last).await?;
        self.in_transaction = false;
        Ok(ran)
    }

    /// The connection itself, for what runs outside the executor (migrations).
    pub fn raw(&mut self) -> &mut PgConnection {
        &mut self.conn_mut().raw
    }

    fn conn_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().expect("a connection is held until dropped")
    }
}

impl std::ops::Deref for PgHeld {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn.as_ref().expect("a connection is held until dropped")
    }
}

impl std::ops::DerefMut for PgHeld {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn_mut()
    }
}

impl Drop for PgHeld {
    fn drop(&mut self) {
        if let (Some(conn), Some(permit)) = (self.conn.take(), self.permit.take()) {
            self.pool.clone().put_back(conn, permit);
        }
    }
}

impl PgConn {
    pub(crate) fn prepared(&mut self) -> &mut Prepared {
        &mut self.prepared
    }
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn").field("severed", &self.severed).field("in_transaction", &self.in_transaction).finish()
    }
}

/// Whether `err` leaves the connection it came from unusable: lost, closed by the server, or
/// out of step with it.
fn severs(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions (08) and the server shutting the session down (57P).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

impl<'c> sqlx::Executor<'c> for &'c mut PgConn {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + sqlx::Execute<'q, Postgres>,
    {
        let PgConn { raw, severed, .. } = self;
        Box::pin(sqlx::Executor::fetch_many(raw, query).inspect_err(move |err| *severed |= severs(err)))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + sqlx::Execute<'q, Postgres>,
    {
        let PgConn { raw, severed, .. } = self;
        sqlx::Executor::fetch_optional(raw, query)
            .inspect(move |answer| *severed |= answer.as_ref().is_err_and(severs))
            .boxed()
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        let PgConn { raw, severed, .. } = self;
        sqlx::Executor::prepare_with(raw, sql, parameters)
            .inspect(move |answer| *severed |= answer.as_ref().is_err_and(severs))
            .boxed()
    }

    fn describe<'e, 'q: 'e>(self, sql: &'q str) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        let PgConn { raw, severed, .. } = self;
        sqlx::Executor::describe(raw, sql).inspect(move |answer| *severed |= answer.as_ref().is_err_and(severs)).boxed()
    }
}
