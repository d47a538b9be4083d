//! The durable job queue. A job is a row written in the same transaction as the change that
//! causes it (the outbox), so it exists exactly when the change does. Workers claim due
//! jobs under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the single writer on SQLite),
//! run them with a timeout, and retry failures with exponential backoff and jitter until the
//! last attempt, after which the job is dead and waits for staff.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::db_run;
use crate::platform::batch::Batch;
use crate::platform::db::{Param, Tx};
use crate::platform::error::{AppError, AppResult};
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;

/// Backoff after the first failure; doubled after each next one.
const BACKOFF_BASE_SECS: u64 = 2;
/// The longest wait between two attempts.
const BACKOFF_CAP_SECS: u64 = 3600;

/// A job to enqueue.
pub struct NewJob {
    pub kind: &'static str,
    pub payload: String,
    pub dedupe_key: Option<String>,
    pub run_at: Option<Timestamp>,
    pub max_attempts: u32,
    pub timeout: Duration,
}

impl NewJob {
    pub fn new(kind: &'static str, payload: &impl Serialize) -> AppResult<Self> {
        Ok(Self {
            kind,
            payload: serde_json::to_string(payload).map_err(AppError::internal)?,
            dedupe_key: None,
            run_at: None,
            max_attempts: 10,
            timeout: Duration::from_secs(60),
        })
    }

    /// While a job with this key is queued or running, enqueueing another is a no-op.
    pub fn dedupe_key(mut self, key: impl Into<String>) -> Self {
        self.dedupe_key = Some(key.into());
        self
    }

    /// Runs no earlier than `at`.
    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Writes `job` in the caller's transaction; it becomes visible to workers on commit, which
/// also wakes them. Returns the job's id, or `None` when a live job had the same key.
pub async fn enqueue(tx: &mut Tx, job: NewJob) -> AppResult<Option<String>> {
    let mut batch = Batch::new();
    let id = enqueue_in(tx, &mut batch, job);
    let inserted = tx.run(&batch).await?[0].changed();
    Ok((inserted == 1).then_some(id))
}

/// As [`enqueue`], with the job's `INSERT` added to `batch` for the caller to run in `tx`.
/// Returns the job's id.
pub fn enqueue_in(tx: &mut Tx, batch: &mut Batch, job: NewJob) -> String {
    let id = new_id("job");
    let now = Timestamp::now();
    batch.push(
        "INSERT INTO jobs (id, kind, payload, status, max_attempts, timeout_secs, run_at, dedupe_key, \
         created_at, updated_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $8) ON CONFLICT DO NOTHING",
        vec![
            Param::Text(id.clone()),
            Param::Text(job.kind.to_owned()),
            Param::Text(job.payload),
            Param::Int(i64::from(job.max_attempts)),
            Param::Int(job.timeout.as_secs().max(1) as i64),
            Param::Int(job.run_at.unwrap_or(now).0),
            Param::MaybeText(job.dedupe_key),
            Param::Int(now.0),
        ],
    );
    tx.wake_workers();
    id
}

crate::direct_row! {
    /// A job as a worker holds it.
    #[derive(Debug, sqlx::FromRow)]
    pub struct ClaimedJob {
        pub id: String,
        pub kind: String,
        pub payload: String,
        pub attempts: i64,
        pub max_attempts: i64,
        pub timeout_secs: i64,
        pub run_at: Timestamp,
    }
}

/// Why a job did not succeed.
#[derive(Debug)]
pub enum JobError {
    /// Worth another attempt (a server down, a timeout).
    Retry(String),
    /// Worth another attempt after the given wait rather than the queue's backoff (a
    /// webhook's own retry schedule).
    RetryIn(String, Duration),
    /// Not attempted (its destination's circuit is open): run again after the wait, and the
    /// attempt does not count.
    Defer(Duration),
    /// Will never succeed (a payload that cannot be read): dead at once.
    Permanent(String),
}

impl JobError {
    pub fn retry(err: impl std::fmt::Display) -> Self {
        Self::Retry(err.to_string())
    }
}

/// The wait before attempt `attempt + 1`: exponential, capped, with the upper half jittered
/// so that jobs failing together do not come back together.
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = BACKOFF_BASE_SECS.saturating_mul(1 << exponent).min(BACKOFF_CAP_SECS) * 1000;
    let half = full / 2;
    Duration::from_millis(half + rand::rng().random_range(0..=half))
}

/// The claim: a job whose lease expired comes first (there are at most as many running jobs
/// as workers, so that lookup is short), then the queued job due longest, found on the
/// `(status, run_at)` index in order whatever the length of the queue.
macro_rules! claim_sql {
    ($lease_from:literal, $queue_from:literal, $lock:literal) => {
        claim_sql!($lease_from, $queue_from, $lock, "")
    };
    ($lease_from:literal, $queue_from:literal, $lock:literal, $not_this:literal) => {
        concat!(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, \
             locked_until = $2 + timeout_secs * 1000 + 30000, updated_at = $2 \
             WHERE id = COALESCE((SELECT id FROM ",
            $lease_from,
            " WHERE status = 'running' AND locked_until < $2",
            $not_this,
            " ORDER BY locked_until LIMIT 1",
            $lock,
            "), (SELECT id FROM ",
            $queue_from,
            " WHERE status = 'queued' AND run_at <= $2 ORDER BY run_at LIMIT 1",
            $lock,
            ")) RETURNING id, kind, payload, attempts, max_attempts, timeout_secs, run_at"
        )
    };
}

/// The claim on SQLite, which has no statistics to choose indexes by: each lookup is told
/// its index.
const SQLITE_CLAIM_SQL: &str = claim_sql!("jobs INDEXED BY jobs_lease_idx", "jobs INDEXED BY jobs_due_idx", "");

/// The claim on PostgreSQL, where concurrent workers skip the rows others are claiming.
const POSTGRES_CLAIM_SQL: &str = claim_sql!("jobs", "jobs", " FOR UPDATE SKIP LOCKED");

/// Recording an outcome. The `locked_by` guard keeps a worker whose lease expired from
/// overwriting the outcome of the worker that took the job over.
macro_rules! finish_sql {
    () => {
        "UPDATE jobs SET status = $3, run_at = COALESCE($4, run_at), last_error = $5, \
         finished_at = $6, locked_by = NULL, locked_until = NULL, updated_at = $2, attempts = attempts - $7 \
         WHERE id = $8 AND locked_by = $1"
    };
}
const FINISH_SQL: &str = finish_sql!();

/// How a job ended, as it is written back.
#[derive(Debug)]
struct Outcome {
    job_id: String,
    status: &'static str,
    run_at: Option<Timestamp>,
    error: Option<String>,
    finished_at: Option<Timestamp>,
    /// 1 when the attempt does not count (deferred).
    uncount: i64,
}

impl Outcome {
    fn new(job: &ClaimedJob, result: Result<(), JobError>) -> Self {
        let now = Timestamp::now();
        let after = |wait: Duration| Some(now.plus_millis(wait.as_millis() as i64));
        let (status, run_at, error, uncount) = match result {
            Ok(()) => ("succeeded", None, None, 0),
            Err(JobError::Defer(wait)) => {
                ("queued", after(wait), Some("deferred: the destination's circuit is open".into()), 1)
            }
            Err(JobError::Retry(error)) if job.attempts < job.max_attempts => {
                ("queued", after(backoff(job.attempts as u32)), Some(error), 0)
            }
            Err(JobError::RetryIn(error, wait)) if job.attempts < job.max_attempts => {
                ("queued", after(wait), Some(error), 0)
            }
            Err(JobError::Retry(error) | JobError::RetryIn(error, _) | JobError::Permanent(error)) => {
                ("dead", None, Some(error), 0)
            }
        };
        let error = error.map(|e: String| e.chars().take(2000).collect());
        let finished_at = (status != "queued").then_some(now);
        Self { job_id: job.id.clone(), status, run_at, error, finished_at, uncount }
    }

    /// The binds of `FINISH_SQL` (which `FINISH_THEN_CLAIM_SQL` shares): the worker (`$1`)
    /// and the time (`$2`) are those of the claim too.
    fn params(&self, worker: &str, now: Timestamp) -> Vec<Param> {
        vec![
            Param::Text(worker.to_owned()),
            Param::Int(now.0),
            Param::Text(self.status.to_owned()),
            Param::MaybeInt(self.run_at.map(|at| at.0)),
            Param::MaybeText(self.error.clone()),
            Param::MaybeInt(self.finished_at.map(|at| at.0)),
            Param::Int(self.uncount),
            Param::Text(self.job_id.clone()),
        ]
    }
}

/// Records `done` (the outcome of the worker's previous job, if any) and claims the next due
/// job. On PostgreSQL both happen in one statement, so that a busy worker pays one round
/// trip and one commit per job; on SQLite, two statements in one transaction.
async fn finish_and_claim(state: &AppState, worker: &str, done: Option<&Outcome>) -> AppResult<Option<ClaimedJob>> {
    let now = Timestamp::now();
    let claim = vec![Param::Text(worker.to_owned()), Param::Int(now.0)];
    let mut batch = Batch::new();
    match (state.db.is_sqlite(), done) {
        (true, Some(done)) => batch.push(FINISH_SQL, done.params(worker, now)).push(SQLITE_CLAIM_SQL, claim),
        (true, None) => batch.push(SQLITE_CLAIM_SQL, claim),
        // The finished job is still `running` in the statement's snapshot: the claim leaves
        // it out, or, its lease expired, it would be claimed again and its outcome lost.
        (false, Some(done)) => batch.push(FINISH_THEN_CLAIM_SQL, done.params(worker, now)),
        (false, None) => batch.push(POSTGRES_CLAIM_SQL, claim),
    };
    let ran = state.db.write_batch(&batch).await?;
    Ok(ran.last().map(|claimed| claimed.row::<ClaimedJob>()).transpose()?.flatten())
}

/// `FINISH_SQL` and the claim as one PostgreSQL statement.
const FINISH_THEN_CLAIM_SQL: &str = concat!(
    "WITH finished AS (UPDATE jobs SET status = $3, run_at = COALESCE($4, run_at), last_error = $5, \
     finished_at = $6, locked_by = NULL, locked_until = NULL, updated_at = $2, attempts = attempts - $7 \
     WHERE id = $8 AND locked_by = $1) ",
    claim_sql!("jobs", "jobs", " FOR UPDATE SKIP LOCKED", " AND id <> $8")
);

/// Records an outcome alone: a worker's last job when it stops.
async fn finish(state: &AppState, worker: &str, done: &Outcome) -> AppResult<()> {
    let mut batch = Batch::new();
    batch.push(FINISH_SQL, done.params(worker, Timestamp::now()));
    state.db.write_batch(&batch).await?;
    Ok(())
}

/// Runs one claimed job to its end: its outcome, to be recorded with the next claim.
async fn run(state: &AppState, job: ClaimedJob) -> Outcome {
    let waited = (Timestamp::now().0 - job.run_at.0).max(0) as f64 / 1000.0;
    metrics::histogram!("job_wait_seconds").record(waited);
    let started = Instant::now();
    let span = tracing::info_span!("job", job.id = %job.id, job.kind = %job.kind, job.attempt = job.attempts);
    let result = if job.attempts > job.max_attempts {
        Err(JobError::Permanent("the lease expired after the last attempt: the worker died running it".into()))
    } else {
        let work = super::run_job(state, &job);
        match tokio::time::timeout(Duration::from_secs(job.timeout_secs.max(1) as u64), work).await {
            Ok(result) => result,
            Err(_) => Err(JobError::Retry(format!("timed out after {} s", job.timeout_secs))),
        }
    };
    if let Err(JobError::Retry(error) | JobError::RetryIn(error, _) | JobError::Permanent(error)) = &result {
        span.in_scope(|| tracing::warn!(error = %error, "job failed"));
    }
    let outcome = Outcome::new(&job, result);
    metrics::histogram!("job_duration_seconds", "kind" => job.kind.clone()).record(started.elapsed().as_secs_f64());
    metrics::counter!("jobs_finished_total", "kind" => job.kind, "status" => outcome.status).increment(1);
    outcome
}

/// How often an idle worker looks for due jobs it was not woken for (retries coming due,
/// jobs enqueued by other nodes).
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Finished jobs are kept this long for staff to look at; dead ones until staff act.
const KEEP_FINISHED_MS: i64 = 14 * 24 * 3600 * 1000;

/// Deletes succeeded and cancelled jobs that finished long ago.
pub async fn purge_finished(state: &AppState) -> AppResult<u64> {
    let before = Timestamp(Timestamp::now().0 - KEEP_FINISHED_MS);
    Ok(db_run!(state.db.write().await?, |conn| {
        sqlx::query("DELETE FROM jobs WHERE status IN ('succeeded', 'cancelled') AND finished_at < $1")
            .bind(before)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?)
}

/// On SQLite, where one process runs the workers, jobs left `running` when this process
/// starts belong to a process that died: they are queued again at once rather than after
/// their lease. (On PostgreSQL other nodes may be running them; their leases decide.)
async fn release_orphans(state: &AppState) -> AppResult<u64> {
    if !state.db.is_sqlite() {
        return Ok(0);
    }
    Ok(db_run!(state.db.write().await?, |conn| {
        sqlx::query("UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL WHERE status = 'running'")
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
    })?)
}

/// Runs `count` workers and the scheduler until `shutdown` turns true; jobs already running
/// are finished.
pub async fn run_workers(state: AppState, count: usize, shutdown: watch::Receiver<bool>) {
    match release_orphans(&state).await {
        Ok(0) => {}
        Ok(released) => tracing::warn!(jobs = released, "queued again the jobs a stopped process left running"),
        Err(err) => tracing::error!(error = %err, "jobs left running could not be released"),
    }
    let mut workers = tokio::task::JoinSet::new();
    workers.spawn(super::scheduler::run_scheduler(state.clone(), shutdown.clone()));
    for n in 0..count.max(1) {
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        let name = format!("{}-{n}", new_id("wrk"));
        workers.spawn(async move {
            // The outcome of the job just run, recorded with the next claim.
            let mut done: Option<Outcome> = None;
            loop {
                if *shutdown.borrow() {
                    break;
                }
                match finish_and_claim(&state, &name, done.as_ref()).await {
                    Ok(Some(job)) => done = Some(run(&state, job).await),
                    Ok(None) => {
                        done = None;
                        let wake = state.db.workers_woken();
                        tokio::select! {
                            _ = wake => {}
                            _ = tokio::time::sleep(POLL_EVERY) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                    // The outcome is kept for the next try: it is written with the claim or
                    // not at all.
                    Err(err) => {
                        tracing::warn!(error = %err, "claiming a job failed");
                        tokio::time::sleep(POLL_EVERY).await;
                    }
                }
            }
            if let Some(done) = done {
                for _ in 0..10 {
                    match finish(&state, &name, &done).await {
                        Ok(()) => break,
                        Err(err) => {
                            tracing::error!(error = %err, job.id = %done.job_id, "recording a job's outcome failed");
                            tokio::time::sleep(POLL_EVERY).await;
                        }
                    }
                }
            }
        });
    }
    workers.join_all().await;
}

/// Sets the `jobs` gauge: how many jobs are in each state.
pub async fn record_queue_depth(state: &AppState) -> AppResult<()> {
    let counts = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, i64)>("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetch_all(conn).await
    })?;
    for status in ["queued", "running", "succeeded", "dead", "cancelled"] {
        let count = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        metrics::gauge!("jobs", "status" => status).set(count as f64);
    }
    Ok(())
}

/// A job as staff see it.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Job {
    pub id: String,
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `dead` or `cancelled`.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Timestamp,
    pub last_error: Option<String>,
    pub dedupe_key: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

pub const JOB_COLUMNS: &str =
    "id, kind, status, attempts, max_attempts, run_at, last_error, dedupe_key, created_at, updated_at, finished_at";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        for attempt in 1..=30 {
            let full = (BACKOFF_BASE_SECS * (1u64 << (attempt - 1).min(20))).min(BACKOFF_CAP_SECS) * 1000;
            for _ in 0..20 {
                let wait = backoff(attempt).as_millis() as u64;
                assert!(wait >= full / 2 && wait <= full, "attempt {attempt}: {wait} not in [{}, {full}]", full / 2);
            }
        }
        assert!(backoff(30) <= Duration::from_secs(BACKOFF_CAP_SECS));
    }
}
