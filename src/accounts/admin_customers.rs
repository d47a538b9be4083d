//! Customers as staff see them through the admin API.

use axum::extract::{Path, State};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::CurrentStaff;
use super::customers::{CUSTOMER_COLUMNS, Customer, find_customer};
use super::roles::Permission;
use crate::app::AppState;
use crate::db_run;
use crate::platform::error::{AppError, AppResult, Problem};
use crate::platform::http::{Json, Query};
use crate::platform::ids::has_shape;
use crate::platform::pagination::{Page, PageParams};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_customers)).routes(routes!(get_customer))
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
    let limit = page.limit()?;
    let sql = format!("SELECT {CUSTOMER_COLUMNS} FROM customers WHERE id > $1 ORDER BY id LIMIT $2");
    let rows = db_run!(state.db.read(), |conn| {
        sqlx::query_as::<_, Customer>(&sql)
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(i64::from(limit) + 1)
            .fetch_all(conn)
            .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
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
