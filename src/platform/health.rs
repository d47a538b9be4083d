//! Liveness, readiness and metrics endpoints.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{AppError, ErrorCode};
use super::http::Json;
use crate::app::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready)).routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the response is 200.
    pub status: &'static str,
    /// `sqlite` or `postgres`; only on readiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'static str>,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Health)))]
async fn live() -> Json<Health> {
    Json(Health { status: "ok", database: None })
}

/// The process can serve requests: the database answers.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, body = Health),
    (status = 503, description = "The database does not answer", body = crate::platform::error::Problem, content_type = "application/problem+json"),
))]
async fn ready(State(state): State<AppState>) -> Result<Json<Health>, AppError> {
    let ping = tokio::time::timeout(std::time::Duration::from_secs(2), state.db.ping()).await;
    match ping {
        Ok(Ok(())) => Ok(Json(Health { status: "ok", database: Some(state.db.backend_name()) })),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness check failed");
            Err(AppError::new(ErrorCode::Unavailable, "The database does not answer.")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")))
        }
        Err(_) => Err(AppError::new(ErrorCode::Unavailable, "The database does not answer in time.")
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))),
    }
}

/// Prometheus metrics: requests and latency by route and status, database pools, memory, and
/// the job queue (depth by state, wait before start, run time, outcomes).
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")
))]
async fn metrics(State(state): State<AppState>) -> Response {
    if let Err(err) = crate::messaging::jobs::record_queue_depth(&state).await {
        tracing::warn!(error = %err, "queue depth not measured");
    }
    let body = super::telemetry::render_metrics(&state.db);
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
