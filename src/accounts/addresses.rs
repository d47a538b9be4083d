//! A customer's address book: the addresses they ship to, checked as checkout checks them,
//! one of them the default that checkout starts from.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::auth::CurrentCustomer;
use crate::app::AppState;
use crate::checkout::address::Address;
use crate::db_run;
use crate::platform::db::Tx;
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::Json;
use crate::platform::ids::{has_shape, new_id};
use crate::platform::time::Timestamp;

/// The most addresses one customer keeps.
pub const MAX_ADDRESSES: i64 = 20;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_addresses, add_address)).routes(routes!(replace_address, delete_address))
}

/// A saved address.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SavedAddress {
    pub id: String,
    pub address: Address,
    /// The one checkout starts from.
    pub is_default: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(sqlx::FromRow)]
struct AddressRow {
    id: String,
    address: String,
    is_default: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
}

impl AddressRow {
    fn saved(self) -> AppResult<SavedAddress> {
        Ok(SavedAddress {
            address: serde_json::from_str(&self.address).map_err(AppError::internal)?,
            id: self.id,
            is_default: self.is_default,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str = "id, address, is_default, created_at, updated_at";

/// An address to save.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    pub address: Address,
    /// Make it the default; the first address saved is the default anyway.
    #[serde(default)]
    pub is_default: bool,
}

/// The address normalised, or 422 naming each field (`address.postcode`...).
fn checked(input: AddressInput) -> AppResult<(String, bool)> {
    match input.address.normalised() {
        Ok(address) => Ok((serde_json::to_string(&address).map_err(AppError::internal)?, input.is_default)),
        Err(problems) => {
            let mut violations = Violations::default();
            for problem in problems {
                violations.add(&format!("address.{}", problem.field), problem.code, problem.message);
            }
            violations.finish()?;
            Err(AppError::internal(anyhow::anyhow!("an address with problems passed")))
        }
    }
}

/// The customer's addresses, the default first, then oldest first.
pub async fn addresses_of(state: &AppState, customer_id: &str) -> AppResult<Vec<SavedAddress>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM customer_addresses WHERE customer_id = $1 ORDER BY is_default DESC, created_at, id"
    );
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, AddressRow>(&sql).bind(customer_id).fetch_all(conn).await
    })?;
    rows.into_iter().map(AddressRow::saved).collect()
}

/// Locks the customer's row: every change to an address book takes it first, so that two at
/// once (in two tabs) see each other's count and default, and never deadlock.
async fn lock_book(tx: &mut Tx, customer_id: &str) -> AppResult<()> {
    db_run!(tx.conn(), |conn| {
        sqlx::query("UPDATE customers SET updated_at = updated_at WHERE id = $1")
            .bind(customer_id)
            .execute(conn)
            .await
            .map(drop)
    })?;
    Ok(())
}

/// Makes `id` the customer's only default address.
async fn make_default(tx: &mut Tx, customer_id: &str, id: &str) -> AppResult<()> {
    db_run!(tx.conn(), |conn| {
        sqlx::query("UPDATE customer_addresses SET is_default = (id = $2) WHERE customer_id = $1")
            .bind(customer_id)
            .bind(id)
            .execute(conn)
            .await
            .map(drop)
    })?;
    Ok(())
}

fn not_found() -> AppError {
    AppError::not_found("You have no address with this id.")
}

/// List the signed-in customer's saved addresses, the default first.
#[utoipa::path(get, path = "/api/v1/store/customers/me/addresses", tag = "store: accounts",
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 200, body = Vec<SavedAddress>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_addresses(
    State(state): State<AppState>,
    customer: CurrentCustomer,
) -> AppResult<Json<Vec<SavedAddress>>> {
    Ok(Json(addresses_of(&state, customer.customer_id()).await?))
}

/// Save an address, checked as checkout checks addresses. At most 20 are kept.
#[utoipa::path(post, path = "/api/v1/store/customers/me/addresses", tag = "store: accounts", request_body = AddressInput,
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 201, body = SavedAddress),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The address book is full", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn add_address(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    Json(input): Json<AddressInput>,
) -> AppResult<(StatusCode, Json<SavedAddress>)> {
    let (address, is_default) = checked(input)?;
    let owner = customer.customer_id();
    let id = new_id("adr");
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    lock_book(&mut tx, owner).await?;
    let kept = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM customer_addresses WHERE customer_id = $1")
            .bind(owner)
            .fetch_one(conn)
            .await
    })?;
    if kept >= MAX_ADDRESSES {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!("An address book keeps at most {MAX_ADDRESSES} addresses; remove one first."),
        ));
    }
    let sql = format!(
        "INSERT INTO customer_addresses (id, customer_id, address, is_default, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING {COLUMNS}"
    );
    let row = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, AddressRow>(&sql)
            .bind(&id)
            .bind(owner)
            .bind(&address)
            .bind(is_default || kept == 0)
            .bind(now)
            .fetch_one(conn)
            .await
    })?;
    if row.is_default {
        make_default(&mut tx, owner, &id).await?;
    }
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.saved()?)))
}

/// Replace a saved address (and whether it is the default).
#[utoipa::path(put, path = "/api/v1/store/customers/me/addresses/{id}", tag = "store: accounts", request_body = AddressInput,
    params(("id" = String, Path)),
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 200, body = SavedAddress),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn replace_address(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    Path(id): Path<String>,
    Json(input): Json<AddressInput>,
) -> AppResult<Json<SavedAddress>> {
    if !has_shape(&id, "adr") {
        return Err(not_found());
    }
    let (address, is_default) = checked(input)?;
    let owner = customer.customer_id();
    let mut tx = state.db.begin().await?;
    lock_book(&mut tx, owner).await?;
    let sql = format!(
        "UPDATE customer_addresses SET address = $1, is_default = is_default OR $2, updated_at = $3 \
         WHERE id = $4 AND customer_id = $5 RETURNING {COLUMNS}"
    );
    let row = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, AddressRow>(&sql)
            .bind(&address)
            .bind(is_default)
            .bind(Timestamp::now())
            .bind(&id)
            .bind(owner)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(not_found)?;
    if is_default {
        make_default(&mut tx, owner, &id).await?;
    }
    tx.commit().await?;
    Ok(Json(row.saved()?))
}

/// Remove a saved address. When it was the default, the oldest one left becomes the default.
#[utoipa::path(delete, path = "/api/v1/store/customers/me/addresses/{id}", tag = "store: accounts",
    params(("id" = String, Path)),
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 204),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn delete_address(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    if !has_shape(&id, "adr") {
        return Err(not_found());
    }
    let owner = customer.customer_id();
    let mut tx = state.db.begin().await?;
    lock_book(&mut tx, owner).await?;
    let was_default = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, bool>(
            "DELETE FROM customer_addresses WHERE id = $1 AND customer_id = $2 RETURNING is_default",
        )
        .bind(&id)
        .bind(owner)
        .fetch_optional(conn)
        .await
    })?
    .ok_or_else(not_found)?;
    if was_default {
        db_run!(tx.conn(), |conn| {
            sqlx::query(
                "UPDATE customer_addresses SET is_default = TRUE WHERE id = \
                 (SELECT id FROM customer_addresses WHERE customer_id = $1 ORDER BY created_at, id LIMIT 1)",
            )
            .bind(owner)
            .execute(conn)
            .await
            .map(drop)
        })?;
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
