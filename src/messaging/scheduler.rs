//! Recurring jobs. Each schedule has a cron expression and the next time it is due; a
//! scheduler in every process looks for due schedules, and the one that advances a
//! schedule's time (a conditional update, so only one node can) enqueues its job.

use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::cron::Cron;
use super::jobs::{NewJob, enqueue};
use crate::app::AppState;
use crate::db_run;
use crate::platform::error::{AppError, AppResult};
use crate::platform::time::Timestamp;

/// The schedules Backroom keeps on its own: name, cron expression, job kind.
pub const BUILT_IN: &[(&str, &str, &str)] =
    &[("cleanup", "*/15 * * * *", super::CLEANUP), ("expire-reservations", "* * * * *", super::EXPIRE_RESERVATIONS)];

/// How often a scheduler looks for due schedules.
const TICK: Duration = Duration::from_secs(5);

fn next_after(cron: &str, after: Timestamp) -> AppResult<Timestamp> {
    let cron: Cron = cron.parse().map_err(AppError::internal)?;
    let after =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(after.0) * 1_000_000).map_err(AppError::internal)?;
    let next = cron
        .next_after(after)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the schedule `{cron:?}` never comes due")))?;
    Ok(Timestamp((next.unix_timestamp_nanos() / 1_000_000) as i64))
}

/// Writes the built-in schedules, keeping the due time of those that already exist.
pub async fn install_built_in(state: &AppState) -> AppResult<()> {
    let now = Timestamp::now();
    for (name, cron, kind) in BUILT_IN {
        let next = next_after(cron, now)?;
        db_run!(state.db.write().await?, |conn| {
            sqlx::query(
                "INSERT INTO schedules (name, cron, kind, next_run_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET cron = excluded.cron, kind = excluded.kind",
            )
            .bind(name)
            .bind(cron)
            .bind(kind)
            .bind(next)
            .execute(conn)
            .await
            .map(|done| done.rows_affected())
        })?;
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct DueSchedule {
    name: String,
    cron: String,
    kind: String,
    next_run_at: Timestamp,
}

/// Enqueues the job of every due schedule once, whichever node gets there first; returns
/// how many this call enqueued.
pub async fn enqueue_due(state: &AppState) -> AppResult<usize> {
    let now = Timestamp::now();
    let due = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, DueSchedule>("SELECT name, cron, kind, next_run_at FROM schedules WHERE next_run_at <= $1")
            .bind(now)
            .fetch_all(conn)
            .await
    })?;
    let mut enqueued = 0;
    for schedule in due {
        let next = next_after(&schedule.cron, now)?;
        let mut tx = state.db.begin().await?;
        let advanced = db_run!(tx.conn(), |conn| {
            sqlx::query("UPDATE schedules SET next_run_at = $1 WHERE name = $2 AND next_run_at = $3")
                .bind(next)
                .bind(&schedule.name)
                .bind(schedule.next_run_at)
                .execute(conn)
                .await
                .map(|done| done.rows_affected())
        })?;
        if advanced == 1 {
            let kind = super::known_kind(&schedule.kind)
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("schedule `{}` names no job kind", schedule.name)))?;
            let job = NewJob::new(kind, &())?.dedupe_key(format!("schedule:{}", schedule.name)).max_attempts(3);
            enqueue(&mut tx, job).await?;
            tx.commit().await?;
            enqueued += 1;
        }
    }
    Ok(enqueued)
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run_scheduler(state: AppState, mut shutdown: watch::Receiver<bool>) {
    if let Err(err) = install_built_in(&state).await {
        tracing::error!(error = %err, "the built-in schedules could not be installed");
    }
    loop {
        if let Err(err) = enqueue_due(&state).await {
            tracing::warn!(error = %err, "enqueueing scheduled jobs failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
}
