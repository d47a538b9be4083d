//! Jobs as staff see them: listed by state, retried when dead, cancelled while queued.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::{JOB_COLUMNS, Job};
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::db_run;
use crate::platform::batch::Batch;
use crate::platform::db::{Param, dialect};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{Json, Query};
use crate::platform::ids::has_shape;
use crate::platform::pagination::{Page, check_page};
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(retry_job))
        .routes(routes!(cancel_job))
        .routes(routes!(list_deliveries))
}

/// Records that the email of job `job_id` was accepted. A retried job records once.
pub async fn record_delivery(
    state: &AppState,
    job_id: &str,
    recipient: &str,
    subject: &str,
    message_id: &str,
) -> AppResult<()> {
    let mut batch = Batch::new();
    batch.push(
        "INSERT INTO email_deliveries (job_id, recipient, subject, message_id, delivered_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id) DO UPDATE SET delivered_at = excluded.delivered_at",
        vec![
            Param::Text(job_id.to_owned()),
            Param::Text(recipient.to_owned()),
            Param::Text(subject.to_owned()),
            Param::Text(message_id.to_owned()),
            Param::Int(Timestamp::now().0),
        ],
    );
    state.db.write_batch(&batch).await?;
    Ok(())
}

/// An email the mail server accepted.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Delivery {
    /// The job that sent it.
    pub job_id: String,
    pub recipient: String,
    pub subject: String,
    /// The `Message-ID` header, to find the message in the mail server's logs.
    pub message_id: String,
    pub delivered_at: Timestamp,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryFilter {
    /// Only emails to this address.
    pub recipient: Option<String>,
    /// How many to return, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// The delivery log: emails accepted by the mail server, newest first.
#[utoipa::path(get, path = "/api/v1/admin/emails", tag = "admin: jobs", params(DeliveryFilter),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Page<Delivery>), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn list_deliveries(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(filter): Query<DeliveryFilter>,
) -> AppResult<Json<Page<Delivery>>> {
    staff.require(Permission::JobsRead)?;
    let mut violations = Violations::default();
    let limit = check_page(filter.limit, filter.after.as_deref(), &mut violations);
    violations.finish()?;
    let recipient = filter.recipient.as_deref().map(|r| r.trim().to_lowercase()).unwrap_or_default();
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Delivery>(
            "SELECT job_id, recipient, subject, message_id, delivered_at FROM email_deliveries \
             WHERE ($1 = '' OR recipient = $1) AND ($2 = '' OR job_id < $2) ORDER BY job_id DESC LIMIT $3",
        )
        .bind(&recipient)
        .bind(filter.after.as_deref().unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.job_id.clone())))
}

const STATUSES: [&str; 5] = ["queued", "running", "succeeded", "dead", "cancelled"];

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// Only jobs in this state: `queued`, `running`, `succeeded`, `dead` or `cancelled`.
    pub status: Option<String>,
    /// How many jobs to return, 1 to 100 (default 20).
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
}

/// List jobs, newest first, optionally in one state.
#[utoipa::path(get, path = "/api/v1/admin/jobs", tag = "admin: jobs", params(JobFilter),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Page<Job>), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn list_jobs(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(filter): Query<JobFilter>,
) -> AppResult<Json<Page<Job>>> {
    staff.require(Permission::JobsRead)?;
    let mut violations = Violations::default();
    let limit = check_page(filter.limit, filter.after.as_deref(), &mut violations);
    if filter.status.as_deref().is_some_and(|status| !STATUSES.contains(&status)) {
        violations.add("status", "invalid", format!("must be one of {}", STATUSES.join(", ")));
    }
    violations.finish()?;
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 = '' OR status = $1) AND ($2 = '' OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    );
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Job>(&sql)
            .bind(filter.status.as_deref().unwrap_or(""))
            .bind(filter.after.as_deref().unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(conn)
            .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |job| job.id.clone())))
}

/// Move a job from `from` to `to` as staff asked, or say why not.
async fn transition(state: &AppState, id: &str, from: &[&str], set: &str) -> AppResult<Job> {
    if !has_shape(id, "job") {
        return Err(AppError::not_found("No job has this id."));
    }
    let sql = format!(
        "UPDATE jobs SET {set}, updated_at = $1 WHERE id = $2 AND status IN ({}) RETURNING {JOB_COLUMNS}",
        from.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ")
    );
    let mut tx = state.db.begin().await?;
    let updated = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Job>(&sql).bind(Timestamp::now()).bind(id).fetch_optional(conn).await
    })
    .map_err(|err| {
        if dialect::is_unique_violation(&err, "jobs", "dedupe_key") {
            AppError::new(ErrorCode::Conflict, "A job with the same de-duplication key is already queued or running.")
        } else {
            err.into()
        }
    })?;
    let Some(job) = updated else {
        let exists = db_run!(tx.conn(), |conn| {
            sqlx::query_scalar::<_, String>("SELECT status FROM jobs WHERE id = $1").bind(id).fetch_optional(conn).await
        })?;
        return Err(match exists {
            None => AppError::not_found("No job has this id."),
            Some(status) => AppError::new(
                ErrorCode::Conflict,
                format!("The job is {status}; this only applies to {}.", from.join(" or ")),
            ),
        });
    };
    if job.status == "queued" {
        tx.wake_workers();
    }
    tx.commit().await?;
    Ok(job)
}

/// Run a dead or cancelled job again, from its first attempt.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/retry", tag = "admin: jobs", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Job), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn retry_job(State(state): State<AppState>, staff: CurrentStaff, Path(id): Path<String>) -> AppResult<Json<Job>> {
    staff.require(Permission::JobsManage)?;
    let set = "status = 'queued', attempts = 0, run_at = $1, finished_at = NULL, last_error = NULL";
    transition(&state, &id, &["dead", "cancelled"], set).await.map(Json)
}

/// Cancel a queued job: it will not run.
#[utoipa::path(post, path = "/api/v1/admin/jobs/{id}/cancel", tag = "admin: jobs", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Job), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn cancel_job(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<Job>> {
    staff.require(Permission::JobsManage)?;
    transition(&state, &id, &["queued"], "status = 'cancelled', finished_at = $1").await.map(Json)
}
