//! Staff upload a product CSV; a background job imports it while they watch its progress,
//! and its report (row, column, reason for every refusal) stays to read.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::import::{self, ImportOptions, ImportReport};
use super::inventory::Actor;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::messaging::jobs::{self, ClaimedJob, JobError, NewJob};
use crate::platform::error::{AppError, AppResult, ErrorCode, FieldError, Problem};
use crate::platform::http::{self, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The job that runs an import.
pub const RUN_IMPORT: &str = "catalog.import";

/// The largest file an import takes.
const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_import))
        .layer(DefaultBodyLimit::max(MAX_FILE_BYTES))
        .merge(OpenApiRouter::new().routes(routes!(get_import)))
}

/// An import and how far it got.
#[derive(Debug, Serialize, ToSchema)]
pub struct Import {
    pub id: String,
    /// `queued`, `running`, `succeeded` (it ran; see the report for refusals) or `failed`.
    pub status: String,
    pub dry_run: bool,
    pub skip_invalid: bool,
    /// While running, on the node running it: products written of all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Once finished.
    pub report: Option<ImportReport>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

#[derive(sqlx::FromRow)]
struct ImportRow {
    id: String,
    status: String,
    dry_run: bool,
    skip_invalid: bool,
    report: Option<String>,
    created_at: Timestamp,
    finished_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Check the file and tell what would change, writing nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Write the products whose rows are good and report the others, instead of nothing.
    #[serde(default)]
    pub skip_invalid: bool,
}

/// Upload a product CSV (`Content-Type: text/csv`, the layout of `docs/CSV.md`) to be
/// imported in the background. Follow `Location` to watch it.
#[utoipa::path(post, path = "/api/v1/admin/imports/products", tag = "admin: products", params(ImportParams),
    request_body(content = String, content_type = "text/csv"),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 202, body = Import, headers(("Location" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_import(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(params): Query<ImportParams>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<Response> {
    staff.require(Permission::ProductsWrite)?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("text/csv") {
        return Err(AppError::new(ErrorCode::UnsupportedMediaType, "Send the file as `text/csv`."));
    }
    let Ok(content) = String::from_utf8(body.to_vec()) else {
        return Err(AppError::invalid_field("body", "invalid_encoding", "must be UTF-8 text"));
    };
    if content.trim().is_empty() {
        return Err(AppError::invalid_field("body", "required", "is an empty file"));
    }
    let problems = import::check_layout(content.as_bytes());
    if !problems.is_empty() {
        let errors = problems
            .into_iter()
            .take(20)
            .map(|problem| FieldError {
                field: if problem.column.is_empty() { "body".into() } else { format!("body.{}", problem.column) },
                code: "invalid_layout".into(),
                message: format!("row {}: {}", problem.row, problem.reason),
            })
            .collect();
        return Err(AppError::validation(errors));
    }
    let id = new_id("imp");
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO imports (id, status, dry_run, skip_invalid, content, created_by, created_at, updated_at) \
             VALUES ($1, 'queued', $2, $3, $4, $5, $6, $6)",
        )
        .bind(&id)
        .bind(params.dry_run)
        .bind(params.skip_invalid)
        .bind(&content)
        .bind(staff.actor().1)
        .bind(now)
        .execute(conn)
        .await
    })?;
    let job = NewJob::new(RUN_IMPORT, &serde_json::json!({ "import_id": id }))?
        .max_attempts(3)
        .timeout(std::time::Duration::from_secs(30 * 60));
    jobs::enqueue(&mut tx, job).await?;
    tx.commit().await?;
    let import = Import {
        id: id.clone(),
        status: "queued".into(),
        dry_run: params.dry_run,
        skip_invalid: params.skip_invalid,
        progress: None,
        report: None,
        created_at: now,
        finished_at: None,
    };
    let mut response = (StatusCode::ACCEPTED, http::Json(import)).into_response();
    if let Ok(location) = format!("/api/v1/admin/imports/{id}").parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// An import: its state, its progress while it runs, its report once done.
#[utoipa::path(get, path = "/api/v1/admin/imports/{id}", tag = "admin: products", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Import),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_import(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<crate::platform::http::Json<Import>> {
    staff.require(Permission::ProductsRead)?;
    let not_found = || AppError::not_found("No import has this id.");
    if !has_shape(&id, "imp") {
        return Err(not_found());
    }
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, ImportRow>(
            "SELECT id, status, dry_run, skip_invalid, report, created_at, finished_at FROM imports WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(conn)
        .await
    })?
    .ok_or_else(not_found)?;
    let progress = state
        .imports
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&id)
        .map(|(done, total)| Progress { done: *done, total: *total });
    Ok(crate::platform::http::Json(Import {
        report: row.report.as_deref().and_then(|r| serde_json::from_str(r).ok()),
        id: row.id,
        status: row.status,
        dry_run: row.dry_run,
        skip_invalid: row.skip_invalid,
        progress,
        created_at: row.created_at,
        finished_at: row.finished_at,
    }))
}

/// Runs the import a job names; an import that already finished is not run again.
pub(crate) async fn run(state: &AppState, job: &ClaimedJob) -> Result<(), JobError> {
    #[derive(Deserialize)]
    struct Payload {
        import_id: String,
    }
    let payload: Payload = serde_json::from_str(&job.payload).map_err(|err| JobError::Permanent(err.to_string()))?;
    let id = payload.import_id;
    let found = db_run!(state.db.read().await.map_err(JobError::retry)?, |conn| {
        sqlx::query_as::<_, (String, bool, bool, String, String)>(
            "SELECT status, dry_run, skip_invalid, content, created_by FROM imports WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(conn)
        .await
    })
    .map_err(JobError::retry)?;
    let Some((status, dry_run, skip_invalid, content, created_by)) = found else { return Ok(()) };
    if status == "succeeded" || status == "failed" {
        return Ok(());
    }
    set_status(state, &id, "running", None).await.map_err(JobError::retry)?;
    let progress = |done: usize, total: usize| {
        state.imports.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(id.clone(), (done, total));
    };
    let actor = Actor { kind: "staff", id: &created_by };
    let options = ImportOptions { dry_run, skip_invalid };
    let outcome = import::import_products(state, content.as_bytes(), options, actor, &progress).await;
    state.imports.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id);
    let report = match outcome {
        Ok(report) => report,
        Err(err) => {
            // A refusal (a handle taken meanwhile, stock that would go below what is held)
            // will not change by trying again; nor does anything once the attempts run out.
            let last = job.attempts >= job.max_attempts;
            if err.status().is_client_error() || last {
                let failed = serde_json::json!({ "error": err.to_string() }).to_string();
                set_status(state, &id, "failed", Some(&failed)).await.map_err(JobError::retry)?;
                tracing::warn!(import.id = %id, error = %err, "import failed");
                return Ok(());
            }
            set_status(state, &id, "queued", None).await.map_err(JobError::retry)?;
            return Err(JobError::retry(err));
        }
    };
    let report_json = serde_json::to_string(&report).map_err(|err| JobError::Permanent(err.to_string()))?;
    set_status(state, &id, "succeeded", Some(&report_json)).await.map_err(JobError::retry)?;
    tracing::info!(import.id = %id, created = report.created, updated = report.updated, errors = report.errors.len(), "import finished");
    Ok(())
}

async fn set_status(state: &AppState, id: &str, status: &str, report: Option<&str>) -> AppResult<()> {
    let now = Timestamp::now();
    let finished = report.is_some().then_some(now);
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE imports SET status = $1, report = COALESCE($2, report), finished_at = COALESCE($3, finished_at), \
             updated_at = $4 WHERE id = $5",
        )
        .bind(status)
        .bind(report)
        .bind(finished)
        .bind(now)
        .bind(id)
        .execute(conn)
        .await
    })?;
    tx.commit().await?;
    Ok(())
}
