//! The database: embedded SQLite by default, PostgreSQL when the URL says so.
//!
//! Queries are written once, in the SQL both engines understand (`$1` binds, `RETURNING`,
//! `ON CONFLICT`, text ids, integer money and times), and run through [`db_run!`], which
//! expands the same code once per backend. What truly differs lives in [`dialect`].

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::pool::PoolOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{ConnectOptions, Postgres, SqliteConnection};

use super::batch::{self, Batch, Ran};
use super::cache::{CHANNEL, Caches, Invalidation};
use super::config::Config;
use super::pg::{PgConn, PgHeld, PgPool};

/// One value per backend; [`db_run!`] runs the same code on whichever this is.
pub enum Backend<S, P> {
    Sqlite(S),
    Postgres(P),
}

/// Runs `$body` with `$conn` bound to the executor of the backend in use.
///
/// The body is expanded once per backend, so a query written with `sqlx::query_as::<_, Row>`
/// is type-checked against both engines.
#[macro_export]
macro_rules! db_run {
    ($backend:expr, |$conn:ident| $body:expr) => {
        match $backend {
            $crate::platform::db::Backend::Sqlite(mut $conn) => {
                match $crate::platform::db::Executor::executor(&mut $conn) {
                    $conn => $body,
                }
            }
            $crate::platform::db::Backend::Postgres(mut $conn) => {
                match $crate::platform::db::Executor::executor(&mut $conn) {
                    $conn => $body,
                }
            }
        }
    };
}

/// What [`db_run!`] runs statements on: a pool, a transaction's connection, or the SQLite
/// writer while it is held.
pub trait Executor {
    type Out<'a>
    where
        Self: 'a;
    fn executor(&mut self) -> Self::Out<'_>;
}

impl<'p> Executor for &'p SqlitePool {
    type Out<'a>
        = &'p SqlitePool
    where
        Self: 'a;
    fn executor(&mut self) -> &'p SqlitePool {
        self
    }
}

/// [`Executor`] for what derefs to a connection: a transaction's, or a held reader or writer.
macro_rules! connection_executor {
    ($($holder:ty => $conn:ty),* $(,)?) => {$(
        impl Executor for $holder {
            type Out<'a>
                = &'a mut $conn
            where
                Self: 'a;
            fn executor(&mut self) -> &mut $conn {
                self
            }
        }
    )*};
}

connection_executor!(
    &mut SqliteConnection => SqliteConnection,
    &mut PgConn => PgConn,
    PgHeld => PgConn,
    Writer => SqliteConnection,
    Reader => SqliteConnection,
);

/// The SQLite writer's one connection, held: statements run on it one caller at a time.
pub struct Writer(tokio::sync::OwnedMutexGuard<Option<WriterConn>>, Arc<tokio::sync::Notify>);

impl Drop for Writer {
    /// Tells [`keep_log_bounded`] that the log may have grown.
    fn drop(&mut self) {
        self.1.notify_one();
    }
}

impl std::ops::Deref for Writer {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.held().sqlx
    }
}

impl std::ops::DerefMut for Writer {
    /// sqlx's side of the connection, for [`db_run!`]: its thread is then at work on it.
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        let conn = self.held_mut();
        conn.sqlx_busy = true;
        &mut conn.sqlx
    }
}

impl Writer {
    fn held(&self) -> &WriterConn {
        self.0.as_ref().expect("a writer is handed out with its connection")
    }

    fn held_mut(&mut self) -> &mut WriterConn {
        self.0.as_mut().expect("a writer is handed out with its connection")
    }

    /// The connection reached directly, for a [`Batch`].
    async fn direct(&mut self) -> Result<&rusqlite::Connection, sqlx::Error> {
        self.held_mut().direct().await
    }

    /// Closes the connection instead of handing it on: SQLite rolls back what it had not
    /// committed, and the next caller opens a new one.
    fn discard(mut self) {
        drop(self.0.take());
    }
}

/// SQLite's writer connection, reached two ways: through sqlx, whose thread for it runs the
/// statements of [`db_run!`], and directly, on the caller's own thread, for a [`Batch`]. The
/// direct way saves the two thread wake-ups of each trip, which, with every other write
/// waiting for the connection, set the pace of every write under load.
///
/// The two never run at once: the writer is held by one caller at a time, and before a
/// direct use that follows one through sqlx, sqlx's thread is made to let go of the
/// connection. sqlx answers a statement before its thread has finished with it (resetting
/// it), and a caller stopped mid-statement leaves the thread at work.
struct WriterConn {
    /// The same `sqlite3` handle, not owned: declared first, so that it is dropped (its
    /// prepared statements finalised) before sqlx closes the connection.
    direct: rusqlite::Connection,
    /// Whether sqlx's thread may still be at work on the connection.
    sqlx_busy: bool,
    sqlx: SqliteConnection,
}

/// Prepared statements kept for the direct way: those of a checkout and a few more.
const DIRECT_STATEMENTS: usize = 256;

impl WriterConn {
    async fn open(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let mut sqlx = options.connect().await?;
        let handle = sqlx.lock_handle().await?.as_raw_handle();
        // SAFETY: the handle stays open as long as `sqlx`, which `direct` does not outlive
        // (it is dropped first), and `direct` does not close it (`from_handle` does not own
        // it). The two never use it at once (see above): SQLite's connections may be used
        // from one thread after another, but not from two at the same time.
        #[expect(unsafe_code, reason = "one SQLite connection reached both through sqlx and directly")]
        let direct = unsafe { rusqlite::Connection::from_handle(handle.as_ptr()) }.map_err(batch::direct_error)?;
        direct.set_prepared_statement_cache_capacity(DIRECT_STATEMENTS);
        // Its commits never checkpoint: [`keep_log_bounded`] does, on a thread of its own.
        direct.pragma_update(None, "wal_autocheckpoint", 0).map_err(batch::direct_error)?;
        Ok(Self { direct, sqlx_busy: false, sqlx })
    }

    /// The connection reached directly, once sqlx's thread has surely let go of it: taking
    /// sqlx's lock on it waits for the thread to finish every statement sent before.
    async fn direct(&mut self) -> Result<&rusqlite::Connection, sqlx::Error> {
        if self.sqlx_busy {
            drop(self.sqlx.lock_handle().await?);
            self.sqlx_busy = false;
        }
        Ok(&self.direct)
    }
}

impl Drop for WriterConn {
    /// The direct side's statements are finalised as it drops, after this: sqlx's thread
    /// must be done with the connection by then. It is, unless the writer is discarded or
    /// the database closed right after a statement through sqlx; then this waits for it.
    fn drop(&mut self) {
        if self.sqlx_busy {
            drop(wait_for(self.sqlx.lock_handle()));
        }
    }
}

/// Runs `future` to its end on this thread, for the rare wait in a `drop`.
fn wait_for<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        match future.as_mut().poll(&mut context) {
            std::task::Poll::Ready(output) => return output,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

/// Where SQLite's writer lives between callers; emptied by [`Writer::discard`] or at close.
struct WriterSlot {
    conn: Arc<tokio::sync::Mutex<Option<WriterConn>>>,
    options: SqliteConnectOptions,
    closed: std::sync::atomic::AtomicBool,
    /// Told each time a caller is done with the writer, and when the database closes: what
    /// [`keep_log_bounded`] waits for once it has copied all of the log.
    written: Arc<tokio::sync::Notify>,
}

impl Drop for WriterSlot {
    fn drop(&mut self) {
        self.written.notify_one();
    }
}

/// [`db_run!`] for a statement whose body ends in `.execute(conn).await`: the number of rows
/// it changed.
#[macro_export]
macro_rules! db_execute {
    ($backend:expr, |$conn:ident| $body:expr) => {
        $crate::db_run!($backend, |$conn| ($body).map(|done| done.rows_affected()))
    };
}

/// Connections. On SQLite one connection writes and a pool reads, so writers never fight
/// over the lock; on PostgreSQL one pool does both.
///
/// SQLite's writer is a connection of its own behind a lock rather than a pool of one: sqlx
/// pings a pooled connection each time it goes back to its pool, which on SQLite is a trip to
/// the connection's thread while every other write waits.
#[derive(Clone)]
pub struct Db {
    pools: Pools,
    caches: Arc<Caches>,
    listener: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
    /// Wakes idle job workers when a transaction that enqueued jobs commits.
    jobs_signal: Arc<tokio::sync::Notify>,
    /// Names this node in what it announces to the others, so that it ignores its own.
    node: Arc<str>,
}

/// The payload announcing new jobs to other nodes' workers.
const JOBS_PAYLOAD: &str = "jobs";

/// An announcement to the other nodes: `payload`, from `node`.
fn announcement(node: &str, payload: &str) -> String {
    format!("{node} {payload}")
}

/// The most idle workers one commit wakes.
const WAKE_AT_MOST: usize = 16;

#[derive(Clone)]
enum Pools {
    Sqlite { writer: Arc<WriterSlot>, readers: Arc<Readers>, direct_readers: Arc<DirectReaders> },
    Postgres(Arc<PgPool>),
}

/// A transaction on the writer; dropped without [`Tx::commit`] it rolls back, and the cache
/// invalidations it collected are dropped with it.
pub struct Tx {
    inner: Backend<SqliteTx, PgHeld>,
    caches: Arc<Caches>,
    invalidations: Vec<Invalidation>,
    jobs_signal: Arc<tokio::sync::Notify>,
    /// Jobs enqueued: as many idle workers are woken on commit.
    jobs_enqueued: usize,
    node: Arc<str>,
}

/// How many connections a pool holds and how many of them are idle.
pub struct PoolStats {
    pub name: &'static str,
    pub size: u32,
    pub idle: usize,
}

impl Db {
    /// Opens the database named by the configuration, creating a SQLite file if needed.
    pub async fn connect(config: &Config) -> anyhow::Result<Self> {
        let url = config.database_url();
        let url = url.expose_secret();
        if url.starts_with("sqlite:") {
            Self::connect_sqlite(url, config).await
        } else {
            let options = PgConnectOptions::from_str(url)?.application_name("backroom");
            let pool = PgPool::new(options, config.database.max_connections as usize);
            // Opened now, so that a wrong URL or a server that is down stops the start.
            drop(PgPool::take(&pool).await?);
            Ok(Self::new(Pools::Postgres(pool)))
        }
    }

    async fn connect_sqlite(url: &str, config: &Config) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_millis(config.database.busy_timeout_ms))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-16000");
        if let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)?;
        }
        let writer = WriterSlot {
            conn: Arc::new(tokio::sync::Mutex::new(Some(WriterConn::open(&options).await?))),
            options: options.clone(),
            closed: std::sync::atomic::AtomicBool::new(false),
            written: Arc::new(tokio::sync::Notify::new()),
        };
        let direct_readers = Arc::new(DirectReaders::new(&options, config.database.busy_timeout_ms));
        let readers = Arc::new(Readers::new(options, config.database.max_connections as usize));
        let writer = Arc::new(writer);
        keep_log_bounded(&writer, direct_readers.path.clone());
        Ok(Self::new(Pools::Sqlite { writer, readers, direct_readers }))
    }

    fn new(pools: Pools) -> Self {
        Self {
            pools,
            caches: Arc::new(Caches::default()),
            listener: Arc::new(Mutex::new(None)),
            jobs_signal: Arc::new(tokio::sync::Notify::new()),
            node: ulid::Ulid::new().to_string().into(),
        }
    }

    /// The caches that transactions on this database invalidate.
    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// Resolves when a transaction that enqueued jobs commits, here or on another node.
    pub fn workers_woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.jobs_signal.notified()
    }

    /// On PostgreSQL, hears what other nodes announce: cache invalidations, which it applies,
    /// and new jobs, for which it wakes the workers. After a lost connection every cache is
    /// emptied, since announcements may have been missed. SQLite has one node.
    pub async fn listen_for_changes(&self) -> Result<(), sqlx::Error> {
        let Pools::Postgres(pool) = &self.pools else { return Ok(()) };
        // A connection of its own, which sqlx's listener opens again when it is lost.
        let connection = PoolOptions::<Postgres>::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_with(pool.options().clone())
            .await?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&connection).await?;
        listener.ignore_pool_close_event(true);
        listener.listen(CHANNEL).await?;
        let caches = self.caches.clone();
        let jobs_signal = self.jobs_signal.clone();
        let node = self.node.clone();
        let task = tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    // This node's own: applied, and its workers woken, as it committed.
                    Ok(Some(notification)) => match notification.payload().split_once(' ') {
                        Some((from, _)) if *from == *node => {}
                        Some((_, JOBS_PAYLOAD)) => jobs_signal.notify_one(),
                        Some((_, payload)) => caches.apply_payload(payload),
                        None => tracing::debug!(payload = notification.payload(), "an announcement without its node"),
                    },
                    // The connection was lost, and changes announced meanwhile with it: forget
                    // everything now, and once more when listening has surely resumed, for what
                    // was read again in between.
                    Ok(None) => {
                        caches.clear_all();
                        clear_again_soon(&caches);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cache invalidation listener lost; retrying");
                        caches.clear_all();
                        clear_again_soon(&caches);
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        *self.listener.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(task.abort_handle());
        Ok(())
    }

    /// Applies the migrations of the backend in use; safe to run from several nodes at once
    /// (PostgreSQL takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match &self.pools {
            Pools::Sqlite { .. } => {
                let mut writer = self.writer().await.map_err(sqlx::migrate::MigrateError::Execute)?;
                sqlx::migrate!("migrations/sqlite").run(&mut *writer).await
            }
            Pools::Postgres(pool) => {
                let mut conn = PgPool::take(pool).await.map_err(sqlx::migrate::MigrateError::Execute)?;
                sqlx::migrate!("migrations/postgres").run(conn.raw()).await
            }
        }
    }

    /// An executor for reads: on SQLite a reader connection, held until it is dropped.
    pub async fn read(&self) -> Result<Backend<Reader, PgHeld>, sqlx::Error> {
        Ok(match &self.pools {
            Pools::Sqlite { readers, .. } => Backend::Sqlite(Readers::take(readers).await?),
            Pools::Postgres(pool) => Backend::Postgres(PgPool::take(pool).await?),
        })
    }

    /// SQLite's writer, once the caller before has let it go (at most 10 s of waiting, as with
    /// a pool), reopened if it was discarded.
    async fn writer(&self) -> Result<Writer, sqlx::Error> {
        let Pools::Sqlite { writer: slot, .. } = &self.pools else { return Err(sqlx::Error::PoolClosed) };
        let taking = slot.conn.clone().lock_owned();
        let mut held =
            tokio::time::timeout(Duration::from_secs(10), taking).await.map_err(|_| sqlx::Error::PoolTimedOut)?;
        if held.is_none() {
            if slot.closed.load(std::sync::atomic::Ordering::Acquire) {
                return Err(sqlx::Error::PoolClosed);
            }
            *held = Some(WriterConn::open(&slot.options).await?);
        }
        Ok(Writer(held, slot.written.clone()))
    }

    /// An executor for a single write statement outside a transaction.
    pub async fn write(&self) -> Result<Backend<Writer, PgHeld>, sqlx::Error> {
        Ok(match &self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite(self.writer().await?),
            Pools::Postgres(pool) => Backend::Postgres(PgPool::take(pool).await?),
        })
    }

    /// Starts a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so it never fails half-way when another process writes.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(self.begin_with(&Batch::new()).await?.0)
    }

    /// Starts a write transaction with `batch` as its first statements.
    pub async fn begin_with(&self, batch: &Batch) -> Result<(Tx, Vec<Ran>), sqlx::Error> {
        let (inner, ran) = match &self.pools {
            Pools::Sqlite { .. } => {
                // Held by the transaction before `BEGIN` is sent: stopped at any point from
                // here, the transaction rolls back before the writer passes on.
                let mut tx = SqliteTx(Some(self.writer().await?));
                let ran = batch::run_direct(tx.writer().direct().await?, batch, Some("BEGIN IMMEDIATE"), None)?;
                (Backend::Sqlite(tx), ran)
            }
            Pools::Postgres(pool) => {
                let (tx, ran) = PgPool::begin_with(pool, "BEGIN", batch).await?;
                (Backend::Postgres(tx), ran)
            }
        };
        let tx = Tx {
            inner,
            caches: self.caches.clone(),
            invalidations: Vec::new(),
            jobs_signal: self.jobs_signal.clone(),
            jobs_enqueued: 0,
            node: self.node.clone(),
        };
        Ok((tx, ran))
    }

    /// Runs `batch` as a write of its own: on SQLite on the writer directly, on PostgreSQL
    /// on the pool; several statements in a transaction (on PostgreSQL, the one the server
    /// runs a message of several statements in).
    pub async fn write_batch(&self, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
        match &self.pools {
            Pools::Sqlite { .. } if batch.len() > 1 => {
                let (tx, ran) = self.begin_with(batch).await?;
                tx.commit().await?;
                Ok(ran)
            }
            Pools::Sqlite { .. } => {
                let ran = batch::run_direct(self.writer().await?.direct().await?, batch, None, None);
                hand_on_writer().await;
                ran
            }
            Pools::Postgres(pool) => batch::run_postgres(&mut *PgPool::take(pool).await?, batch).await,
        }
    }

    /// Runs `batch` as a read: on SQLite on a reader directly, on PostgreSQL on the pool;
    /// several statements see one snapshot.
    pub async fn read_batch(&self, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
        match &self.pools {
            Pools::Sqlite { direct_readers, .. } => direct_readers.run(batch),
            Pools::Postgres(pool) if batch.len() > 1 => {
                PgPool::run_alone(pool, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", batch).await
            }
            Pools::Postgres(pool) => batch::run_postgres(&mut *PgPool::take(pool).await?, batch).await,
        }
    }

    /// Answers whether the database takes queries, for `/health/ready`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        db_run!(self.read().await?, |conn| sqlx::query("SELECT 1")
            .execute(conn)
            .await
            .map(|done| done.rows_affected()))?;
        Ok(())
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.pools, Pools::Sqlite { .. })
    }

    pub fn backend_name(&self) -> &'static str {
        match self.pools {
            Pools::Sqlite { .. } => "sqlite",
            Pools::Postgres(_) => "postgres",
        }
    }

    pub fn pool_stats(&self) -> Vec<PoolStats> {
        match &self.pools {
            Pools::Sqlite { writer, readers, .. } => vec![
                PoolStats { name: "writer", size: 1, idle: usize::from(writer.conn.try_lock().is_ok()) },
                readers.stats(),
            ],
            Pools::Postgres(pool) => vec![pool.stats()],
        }
    }

    /// Waits for checked-out connections to return and closes every pool.
    pub async fn close(&self) {
        if let Some(listener) = self.listener.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take() {
            listener.abort();
        }
        match &self.pools {
            Pools::Sqlite { writer, readers, direct_readers } => {
                readers.close().await;
                direct_readers.close();
                writer.closed.store(true, std::sync::atomic::Ordering::Release);
                writer.written.notify_one();
                // Once sqlx's thread has let go of it, the connection is closed on that thread.
                if let Some(mut conn) = writer.conn.lock().await.take()
                    && let Err(err) = conn.direct().await
                {
                    tracing::warn!(error = %err, "the SQLite writer did not close cleanly");
                }
            }
            Pools::Postgres(pool) => pool.close().await,
        }
    }
}

/// A value for [`Tx::insert_rows`] and [`Batch`].
#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    MaybeText(Option<String>),
    Int(i64),
    MaybeInt(Option<i64>),
    Bool(bool),
}

/// The most values one statement binds: under SQLite's limit of 32,766 and PostgreSQL's 65,535.
const MAX_BINDS: usize = 30_000;

impl Tx {
    /// Inserts many rows with few statements: `insert` is `INSERT INTO table (columns)`,
    /// `rows` hold one value per column, and `tail` follows the values (`ON CONFLICT ...`).
    pub async fn insert_rows(&mut self, insert: &str, rows: &[Vec<Param>], tail: &str) -> Result<(), sqlx::Error> {
        let Some(width) = rows.first().map(Vec::len).filter(|w| *w > 0) else { return Ok(()) };
        // SQLite finds a numbered parameter's name by a linear scan, which makes binding
        // thousands of `$n` quadratic; anonymous `?`s it binds in order at no such cost.
        let numbered = matches!(self.inner, Backend::Postgres(_));
        for chunk in rows.chunks((MAX_BINDS / width).max(1)) {
            let sql = batch::values_sql(insert, chunk, tail, numbered);
            crate::db_run!(self.conn(), |conn| {
                batch::bind_all!(sqlx::query(&sql), chunk.iter().flatten()).execute(conn).await.map(drop)
            })?;
        }
        Ok(())
    }

    pub fn is_sqlite(&self) -> bool {
        matches!(self.inner, Backend::Sqlite(_))
    }

    /// The transaction's connection, for [`db_run!`].
    pub fn conn(&mut self) -> Backend<&mut SqliteConnection, &mut PgConn> {
        match &mut self.inner {
            Backend::Sqlite(tx) => Backend::Sqlite(tx.conn()),
            Backend::Postgres(tx) => Backend::Postgres(&mut **tx),
        }
    }

    /// Marks cached data this transaction changes; it is evicted once the change commits.
    pub fn invalidate(&mut self, invalidation: Invalidation) {
        if !self.invalidations.contains(&invalidation) {
            self.invalidations.push(invalidation);
        }
    }

    /// Wakes a job worker for one more job, here or on another node, once this transaction
    /// commits.
    pub fn wake_workers(&mut self) {
        self.jobs_enqueued += 1;
    }

    /// Runs `batch` in the transaction.
    pub async fn run(&mut self, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
        match &mut self.inner {
            Backend::Sqlite(tx) => batch::run_direct(tx.writer().direct().await?, batch, None, None),
            Backend::Postgres(tx) => batch::run_postgres(tx, batch).await,
        }
    }

    /// Commits, then evicts what the transaction changed and wakes workers for the jobs it
    /// enqueued: here at once, and on PostgreSQL in every node through the `NOTIFY`s that
    /// commit with it.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.commit_with(&Batch::new()).await.map(drop)
    }

    /// Runs `batch`, then commits, as [`Tx::commit`] does. A statement that fails rolls the
    /// whole transaction back.
    pub async fn commit_with(self, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
        let ran = match self.inner {
            Backend::Sqlite(tx) => {
                let ran = tx.commit_with(batch).await?;
                hand_on_writer().await;
                ran
            }
            Backend::Postgres(tx) => {
                let jobs = (self.jobs_enqueued > 0).then(|| JOBS_PAYLOAD.to_owned());
                let payloads: Vec<String> = (self.invalidations.iter().map(Invalidation::payload).chain(jobs))
                    .map(|payload| batch::text_literal(&announcement(&self.node, &payload)))
                    .collect();
                // All in one statement, sent with the batch and the commit: a checkout
                // announces several products and its jobs.
                let notify = (!payloads.is_empty()).then(|| {
                    format!(
                        "SELECT pg_notify({}, payload) FROM UNNEST(ARRAY[{}]) WITH ORDINALITY AS n(payload, at) \
                         ORDER BY at",
                        batch::text_literal(CHANNEL),
                        payloads.join(", ")
                    )
                });
                let after: Vec<&str> = notify.iter().map(String::as_str).collect();
                tx.commit_with(batch, &after).await?
            }
        };
        for invalidation in &self.invalidations {
            self.caches.apply(invalidation);
        }
        // One idle worker per job rather than all of them: each of those would try to claim
        // it, a write apiece. A worker that finishes a job claims the next one itself.
        for _ in 0..self.jobs_enqueued.min(WAKE_AT_MOST) {
            self.jobs_signal.notify_one();
        }
        Ok(ran)
    }
}

/// SQLite's reader connections, opened as they are first needed, up to `size`: a pool
/// without sqlx's pool, whose ping on every return is a trip to the connection's thread.
pub struct Readers {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<SqliteConnection>>,
    permits: Arc<tokio::sync::Semaphore>,
    size: usize,
    opened: std::sync::atomic::AtomicUsize,
}

/// Lets the task that was waiting for SQLite's writer take it now, rather than after the
/// rest of this task's work.
///
/// Letting go of the writer hands it to the next waiting task, which the runtime then runs
/// next on this thread, once this task waits on something; the runtime's other thread may
/// not take it. A request that has committed goes on to price and render its answer: so
/// long, the writer would be passed on but not used, and every write waits behind it.
async fn hand_on_writer() {
    tokio::task::yield_now().await;
}

/// The pages of SQLite's write-ahead log (16 MiB of them) past which it is checkpointed and
/// started over.
const LOG_LIMIT_PAGES: i64 = 4096;

/// How often the log is checkpointed.
const LOG_CHECK_EVERY: Duration = Duration::from_millis(250);

/// How long that checkpoint waits for readers to finish with the log: a slower one (an
/// export, say) makes it give up until the next look rather than hold the writer for long.
const LOG_READERS_WAIT: Duration = Duration::from_millis(50);

/// Checkpoints SQLite's write-ahead log, and starts it over past [`LOG_LIMIT_PAGES`], for as
/// long as the database is open.
///
/// The writer commits without checkpointing (`wal_autocheckpoint` is off on it, see
/// [`WriterConn::open`]): SQLite's own checkpoint runs in the commit that takes the log past
/// 1,000 pages, and under steady reads some reader nearly always holds a snapshot a commit or
/// two old, so the log never empties and every later commit checkpoints again, syncing the
/// log and the database file while every other write waits. Instead, every
/// [`LOG_CHECK_EVERY`], a connection of this task's own, on a blocking thread, copies what it
/// can of the log into the database (`PASSIVE`: it waits for no one, and no one waits for
/// it). The log starts over only once a write finds all of it copied and no reader in it,
/// which under steady writes and reads seldom happens, so alone it would grow without end.
/// Past the limit, the log is copied again until little was left, then this holds the writer
/// (so that no write comes between) while that connection checkpoints in the mode that waits
/// for the readers to leave the log, so that the next write starts it over: the writer is held
/// for the last few pages only. The log's file keeps its size, as SQLite leaves it by default,
/// and is written over from its start: emptying it (`TRUNCATE`) took the writer 40 to 80 ms a
/// time, freeing its blocks, which the writes then took back one by one.
///
/// Once a copy finds the whole log in the database, the task waits for a caller to be done
/// with the writer before it looks again: an idle shop's process is not woken four times a
/// second for nothing. (Another process's writes to the file are copied after this one's next
/// write.)
fn keep_log_bounded(writer: &Arc<WriterSlot>, database: std::path::PathBuf) {
    let slot = Arc::downgrade(writer);
    let written = writer.written.clone();
    tokio::spawn(async move {
        let mut checkpointer: Option<rusqlite::Connection> = None;
        let mut all_copied = false;
        loop {
            if all_copied {
                written.notified().await;
            }
            tokio::time::sleep(LOG_CHECK_EVERY).await;
            let Some(slot) = slot.upgrade().filter(|slot| !slot.closed.load(std::sync::atomic::Ordering::Acquire))
            else {
                break;
            };
            // Copied again while the last copy took long enough for many more pages to be
            // written, so that little is left to copy with the writer held.
            let mut full = false;
            let mut copied_before = None;
            all_copied = false;
            for _ in 0..CATCH_UP_COPIES {
                let Some((conn, pages, copied)) = checkpoint(checkpointer.take(), &database, "PASSIVE").await else {
                    break;
                };
                checkpointer = Some(conn);
                all_copied = copied == pages;
                full = pages > LOG_LIMIT_PAGES;
                let caught_up = copied_before.is_some_and(|before| copied < before + CAUGHT_UP);
                copied_before = Some(copied);
                if caught_up || !full {
                    break;
                }
            }
            if checkpointer.is_none() || !full {
                continue;
            }
            let held = slot.conn.clone().lock_owned().await;
            checkpointer = checkpoint(checkpointer.take(), &database, "RESTART").await.map(|(conn, ..)| conn);
            drop(held);
        }
    });
}

/// At most how many times in a row the log is copied before it is started over.
const CATCH_UP_COPIES: usize = 8;

/// Pages of the log (about 1 MiB) few enough to copy with the writer held.
const CAUGHT_UP: i64 = 256;

/// Checkpoints SQLite's log in `mode` on a blocking thread, on `conn` or a new connection;
/// answers the connection, the log's pages and how many of them are in the database now,
/// unless it failed.
async fn checkpoint(
    conn: Option<rusqlite::Connection>,
    database: &std::path::Path,
    mode: &'static str,
) -> Option<(rusqlite::Connection, i64, i64)> {
    let database = database.to_owned();
    let checkpointed = tokio::task::spawn_blocking(move || {
        let conn = match conn {
            Some(conn) => conn,
            None => {
                let conn = rusqlite::Connection::open(&database)?;
                conn.busy_handler(Some(wait_for_readers))?;
                conn
            }
        };
        let (pages, copied) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        })?;
        Ok::<_, rusqlite::Error>((conn, pages, copied))
    })
    .await;
    match checkpointed {
        Ok(Ok(done)) => Some(done),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "the SQLite log could not be checkpointed");
            None
        }
        Err(err) => {
            tracing::warn!(error = %err, "the SQLite log's checkpoint stopped");
            None
        }
    }
}

/// How the checkpoint that starts the log over waits for readers to finish with it, up to
/// [`LOG_READERS_WAIT`]: in short steps, since every write waits meanwhile and a read takes
/// well under a millisecond (SQLite's own busy timeout sleeps 1, 2, 5, 10 ms and more).
fn wait_for_readers(tries: i32) -> bool {
    const STEP: Duration = Duration::from_micros(200);
    if STEP * u32::try_from(tries).unwrap_or(u32::MAX) >= LOG_READERS_WAIT {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

/// SQLite readers for batches, reached directly on the caller's thread (see [`WriterConn`]):
/// connections of their own, opened as first needed. A batch holds one only while it runs,
/// without waiting on anything, so there are never more than the threads that run batches.
struct DirectReaders {
    path: std::path::PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<rusqlite::Connection>>,
    closed: std::sync::atomic::AtomicBool,
}

impl DirectReaders {
    fn new(options: &SqliteConnectOptions, busy_timeout_ms: u64) -> Self {
        Self {
            path: options.get_filename().to_owned(),
            busy_timeout: Duration::from_millis(busy_timeout_ms),
            idle: Mutex::new(Vec::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn open(&self) -> Result<rusqlite::Connection, rusqlite::Error> {
        use rusqlite::OpenFlags;
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.set_prepared_statement_cache_capacity(DIRECT_STATEMENTS);
        conn.execute_batch("PRAGMA cache_size = -16000")?;
        Ok(conn)
    }

    /// Runs `batch` on an idle reader, or a new one; several statements in one read
    /// transaction. A reader that failed is closed rather than kept.
    fn run(&self, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.open().map_err(batch::direct_error)?,
        };
        let (before, after) = if batch.len() > 1 { (Some("BEGIN"), Some("COMMIT")) } else { (None, None) };
        let ran = batch::run_direct(&conn, batch, before, after)?;
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
        Ok(ran)
    }

    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::Release);
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

/// A reader connection, back with the others once dropped.
pub struct Reader {
    conn: Option<SqliteConnection>,
    readers: Arc<Readers>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Readers {
    fn new(options: SqliteConnectOptions, size: usize) -> Self {
        Self {
            options,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(tokio::sync::Semaphore::new(size)),
            size,
            opened: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A reader, once one is free; at most 5 s of waiting, as with a pool.
    async fn take(readers: &Arc<Self>) -> Result<Reader, sqlx::Error> {
        let permit = match tokio::time::timeout(Duration::from_secs(5), readers.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let idle = readers.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = readers.options.connect().await?;
                readers.opened.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                conn
            }
        };
        Ok(Reader { conn: Some(conn), readers: readers.clone(), _permit: permit })
    }

    fn stats(&self) -> PoolStats {
        let idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len();
        let size = self.opened.load(std::sync::atomic::Ordering::Relaxed).min(self.size);
        PoolStats { name: "reader", size: u32::try_from(size).unwrap_or(u32::MAX), idle }
    }

    /// Refuses new readers, waits for those in use and closes every connection.
    async fn close(&self) {
        let all = u32::try_from(self.size).unwrap_or(u32::MAX);
        let _every = self.permits.acquire_many(all).await;
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        for conn in idle {
            if let Err(err) = sqlx::Connection::close(conn).await {
                tracing::warn!(error = %err, "a SQLite reader did not close cleanly");
            }
        }
    }
}

impl std::ops::Deref for Reader {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.conn.as_ref().expect("a reader holds its connection until dropped")
    }
}

impl std::ops::DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("a reader holds its connection until dropped")
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.readers.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
        }
    }
}

/// A transaction on SQLite's writer. Dropped before [`SqliteTx::commit`] (an error, or the
/// request's task stopped), it is rolled back before the writer goes to the next caller.
pub struct SqliteTx(Option<Writer>);

impl SqliteTx {
    fn writer(&mut self) -> &mut Writer {
        self.0.as_mut().expect("a transaction holds the writer until it ends")
    }

    fn conn(&mut self) -> &mut SqliteConnection {
        self.writer()
    }

    /// Runs `batch` and commits. Stopped before `COMMIT` has run (while sqlx's thread is let
    /// go of the connection), the transaction rolls back.
    async fn commit_with(mut self, batch: &Batch) -> Result<Vec<Ran>, sqlx::Error> {
        let ran = batch::run_direct(self.writer().direct().await?, batch, None, Some("COMMIT"))?;
        self.0 = None;
        Ok(ran)
    }
}

impl Drop for SqliteTx {
    /// Rolls back at once, on the connection directly, when sqlx's thread is not at work on
    /// it; otherwise in a task that sends `ROLLBACK` after what the thread is running.
    fn drop(&mut self) {
        let Some(mut writer) = self.0.take() else { return };
        let conn = writer.held_mut();
        if !conn.sqlx_busy {
            match conn.direct.execute_batch("ROLLBACK") {
                Ok(()) => return,
                Err(rusqlite::Error::SqliteFailure(_, Some(message)))
                    if message.contains("no transaction is active") =>
                {
                    return;
                }
                Err(err) => {
                    tracing::error!(error = %err, "a SQLite transaction could not be rolled back; reconnecting");
                    writer.discard();
                    return;
                }
            }
        }
        let mut rolling_back = RollingBack(Some(writer));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { rolling_back.run().await });
            }
            // No runtime to roll back on: the connection is closed, which rolls back.
            Err(_) => drop(rolling_back),
        }
    }
}

/// The writer on its way back from a transaction that did not commit. Should the rollback
/// fail, or never run (the runtime stopping), the connection is discarded rather than handed
/// on inside a transaction.
struct RollingBack(Option<Writer>);

impl RollingBack {
    async fn run(&mut self) {
        let Some(writer) = self.0.as_mut() else { return };
        match sqlx::query("ROLLBACK").execute(&mut **writer).await {
            Ok(_) => self.0 = None,
            // `BEGIN` had not run, or `COMMIT` had: there was nothing to undo.
            Err(sqlx::Error::Database(err)) if err.message().contains("no transaction is active") => self.0 = None,
            Err(err) => tracing::error!(error = %err, "a SQLite transaction could not be rolled back; reconnecting"),
        }
    }
}

impl Drop for RollingBack {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take() {
            writer.discard();
        }
    }
}

/// What differs between the engines and cannot be written once.
pub mod dialect {
    /// Whether `err` is a unique violation on `table.column`. PostgreSQL names the
    /// constraint (`{table}_{column}_key`, as the migrations declare it); SQLite names the
    /// columns in its message (`UNIQUE constraint failed: table.column`).
    pub fn is_unique_violation(err: &sqlx::Error, table: &str, column: &str) -> bool {
        let sqlx::Error::Database(db_err) = err else {
            return false;
        };
        if !matches!(db_err.kind(), sqlx::error::ErrorKind::UniqueViolation) {
            return false;
        }
        match db_err.constraint() {
            Some(name) => name == format!("{table}_{column}_key"),
            None => db_err.message().contains(&format!("{table}.{column}")),
        }
    }
}

/// Empties every cache again a few seconds from now: after the listener reconnects.
fn clear_again_soon(caches: &Arc<Caches>) {
    let caches = caches.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        caches.clear_all();
    });
}
