//! The audit log: who among staff (or which API key) did what, and when.

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::CurrentStaff;
use super::roles::Permission;
use crate::app::AppState;
use crate::db_run;
use crate::platform::db::Tx;
use crate::platform::error::{AppResult, Problem};
use crate::platform::http::{Json, Query};
use crate::platform::ids::new_id;
use crate::platform::pagination::{Page, PageParams};
use crate::platform::time::Timestamp;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit_log))
}

/// Records a staff action in the same transaction as the action itself.
pub async fn record(
    tx: &mut Tx,
    actor_kind: &str,
    actor_id: &str,
    action: &str,
    subject_id: Option<&str>,
    detail: &str,
) -> AppResult<()> {
    db_run!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO audit_log (id, actor_kind, actor_id, action, subject_id, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id("aud"))
        .bind(actor_kind)
        .bind(actor_id)
        .bind(action)
        .bind(subject_id)
        .bind(detail)
        .bind(Timestamp::now())
        .execute(conn)
        .await
        .map(|done| done.rows_affected())
    })?;
    Ok(())
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct AuditEntry {
    pub id: String,
    /// `staff`, `api_key` or `cli`.
    pub actor_kind: String,
    pub actor_id: String,
    /// Such as `staff.created` or `api_key.revoked`.
    pub action: String,
    pub subject_id: Option<String>,
    pub detail: String,
    pub created_at: Timestamp,
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit-log", tag = "admin: staff", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Page<AuditEntry>), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_audit_log(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<AuditEntry>>> {
    staff.require(Permission::AuditRead)?;
    let limit = page.limit()?;
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, AuditEntry>(
            "SELECT id, actor_kind, actor_id, action, subject_id, detail, created_at FROM audit_log \
             WHERE ($1 = '' OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
}
