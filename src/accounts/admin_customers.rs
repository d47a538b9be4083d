//! Customers as staff see them through the admin API.

use axum::extract::{Path, State};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::audit;
use super::auth::CurrentStaff;
use super::customers::{CUSTOMER_COLUMNS, CUSTOMERS, Customer, find_customer};
use super::roles::Permission;
use crate::app::AppState;
use crate::db_execute;
use crate::platform::cache::Invalidation;
use crate::platform::error::{AppError, AppResult, Problem};
use crate::platform::http::{Json, Query};
use crate::platform::ids::has_shape;
use crate::platform::pagination::{self, Page, PageParams};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_customers)).routes(routes!(get_customer, update_customer))
}

/// List customers, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/customers", tag = "admin: customers", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Page<Customer>), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn list_customers(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Customer>>> {
    staff.require(Permission::CustomersRead)?;
    let page =
        pagination::oldest_first(&state.db, "customers", CUSTOMER_COLUMNS, &page, |row: &Customer| &row.id).await?;
    Ok(Json(page))
}

/// One customer.
#[utoipa::path(get, path = "/api/v1/admin/customers/{id}", tag = "admin: customers",
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Customer), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_customer(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<axum::response::Response> {
    staff.require(Permission::CustomersRead)?;
    let not_found = || AppError::not_found("No customer has this id.");
    if !has_shape(&id, "cus") {
        return Err(not_found());
    }
    find_customer(&state, &id).await?.map(|view| view.response()).ok_or_else(not_found)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerPatch {
    /// Whether the customer pays no tax: carts are priced without it from their next read.
    pub tax_exempt: Option<bool>,
}

/// Change what staff decide of a customer.
#[utoipa::path(patch, path = "/api/v1/admin/customers/{id}", tag = "admin: customers", request_body = CustomerPatch,
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses((status = 200, body = Customer), (status = 403, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn update_customer(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Json(patch): Json<CustomerPatch>,
) -> AppResult<axum::response::Response> {
    staff.require(Permission::CustomersWrite)?;
    let not_found = || AppError::not_found("No customer has this id.");
    if !has_shape(&id, "cus") || find_customer(&state, &id).await?.is_none() {
        return Err(not_found());
    }
    if let Some(exempt) = patch.tax_exempt {
        let mut tx = state.db.begin().await?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query("UPDATE customers SET tax_exempt = $1, version = version + 1, updated_at = $2 WHERE id = $3")
                .bind(exempt)
                .bind(crate::platform::time::Timestamp::now())
                .bind(&id)
                .execute(conn)
                .await
        })?;
        tx.invalidate(Invalidation::key(CUSTOMERS, &id));
        let (actor_kind, actor_id) = staff.actor();
        let action = if exempt { "customer.tax_exempted" } else { "customer.taxed" };
        audit::record(&mut tx, actor_kind, actor_id, action, Some(&id), "").await?;
        tx.commit().await?;
    }
    find_customer(&state, &id).await?.map(|view| view.response()).ok_or_else(not_found)
}
