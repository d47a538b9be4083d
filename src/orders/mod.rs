//! Orders: what a shopper bought, at the prices, taxes and addresses of the moment they
//! placed it, with a timeline of every change and who made it.

pub mod aftercare;
pub mod refunds;
pub mod status;

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::audit;
use crate::accounts::auth::{CurrentCustomer, CurrentStaff};
use crate::accounts::email_address::EmailAddress;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::inventory::{self, Actor};
use crate::checkout::address::Address;
use crate::checkout::cart::CartTotals;
use crate::messaging::webhooks;
use crate::platform::batch::Batch;
use crate::platform::db::{Db, Param, Tx};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{Page, check_page};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};
use status::Status;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(my_orders))
        .routes(routes!(lookup_order))
        .routes(routes!(list_orders))
        .routes(routes!(export_orders))
        .routes(routes!(get_order))
        .routes(routes!(mark_paid))
        .routes(routes!(cancel_order))
        .merge(aftercare::router())
}

/// A line as bought.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct OrderLine {
    pub id: String,
    pub variant_id: String,
    pub product_id: String,
    pub title: String,
    pub variant_title: String,
    pub sku: Option<String>,
    pub quantity: i64,
    pub unit_amount: i64,
    pub subtotal: i64,
    pub discount: i64,
    pub tax_class: String,
    pub tax_rate_bps: i64,
    /// The tax's name on receipts ("VAT").
    pub tax_name: String,
    pub tax: i64,
    pub total: i64,
}

/// The shipping method as chosen.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderShipping {
    pub id: String,
    pub name: String,
    pub amount: i64,
    pub estimate: String,
}

/// A payment attempt.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Payment {
    pub id: String,
    pub provider: String,
    /// `pending`, `authorized`, `captured`, `partially_refunded`, `refunded`, `voided`, `failed`.
    pub status: String,
    pub amount: i64,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub created_at: Timestamp,
}

/// A change in the order's life.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct OrderEvent {
    pub id: String,
    pub kind: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    /// What the change carried, such as a reason.
    #[schema(value_type = Object)]
    #[sqlx(try_from = "String")]
    pub detail: JsonText,
    /// `customer`, `guest`, `staff`, `api_key` or `system`.
    pub actor_kind: String,
    pub actor_id: String,
    pub created_at: Timestamp,
}

/// JSON kept as text in the database.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct JsonText(serde_json::Value);

impl TryFrom<String> for JsonText {
    type Error = serde_json::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(Self)
    }
}

/// An order.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Order {
    pub id: String,
    /// For people: short and sequential.
    pub number: i64,
    pub status: Status,
    pub email: String,
    pub customer_id: Option<String>,
    pub currency: String,
    pub tax_inclusive: bool,
    pub tax_exempt: bool,
    pub lines: Vec<OrderLine>,
    pub shipping_address: Address,
    pub billing_address: Address,
    pub shipping_method: OrderShipping,
    /// The promotions given.
    pub discounts: Vec<crate::checkout::promotions::Discount>,
    pub totals: CartTotals,
    pub paid_total: i64,
    pub refunded_total: i64,
    pub payments: Vec<Payment>,
    pub fulfillments: Vec<aftercare::Fulfillment>,
    pub refunds: Vec<aftercare::Refund>,
    pub returns: Vec<aftercare::Return>,
    pub placed_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

/// An order with its timeline, for staff.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: Order,
    pub timeline: Vec<OrderEvent>,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: String,
    number: i64,
    status: String,
    email: String,
    customer_id: Option<String>,
    currency: String,
    tax_inclusive: bool,
    tax_exempt: bool,
    shipping_address: String,
    billing_address: String,
    shipping_method: String,
    discounts: String,
    shipping_discount: i64,
    subtotal: i64,
    discount_total: i64,
    shipping_total: i64,
    shipping_tax: i64,
    tax_total: i64,
    total: i64,
    paid_total: i64,
    refunded_total: i64,
    placed_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

const COLUMNS: &str = "id, number, status, email, customer_id, currency, tax_inclusive, tax_exempt, shipping_address, \
     billing_address, shipping_method, discounts, shipping_discount, subtotal, discount_total, shipping_total, shipping_tax, tax_total, total, \
     paid_total, refunded_total, placed_at, updated_at, version";

fn not_found() -> AppError {
    AppError::not_found("No order has this id.")
}

fn corrupt(what: &str) -> impl Fn(serde_json::Error) -> AppError + '_ {
    move |err| AppError::internal(anyhow::anyhow!("order {what} does not parse: {err}"))
}

async fn assemble(db: &Db, rows: Vec<OrderRow>) -> AppResult<Vec<Order>> {
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    // Five queries for a page of orders, whatever its length.
    let mut lines = by_order::<OrderLine>(
        db,
        "SELECT order_id, id, variant_id, product_id, title, variant_title, sku, quantity, unit_amount, subtotal, \
         discount, tax_class, tax_rate_bps, tax_name, tax, total FROM order_lines WHERE order_id IN ({}) \
         ORDER BY order_id, position",
        &ids,
    )
    .await?;
    let mut payments = by_order::<Payment>(
        db,
        "SELECT order_id, id, provider, status, amount, captured_amount, refunded_amount, created_at FROM payments \
         WHERE order_id IN ({}) ORDER BY order_id, id",
        &ids,
    )
    .await?;
    let mut fulfillments = by_order::<aftercare::Fulfillment>(
        db,
        "SELECT order_id, id, status, location_id, lines, carrier, tracking_number, tracking_url, created_at, \
         shipped_at, delivered_at FROM order_fulfillments WHERE order_id IN ({}) ORDER BY order_id, id",
        &ids,
    )
    .await?;
    let mut refunds = by_order::<aftercare::Refund>(
        db,
        "SELECT order_id, id, payment_id, amount, reason, lines, shipping, restock, status, created_at FROM order_refunds \
         WHERE order_id IN ({}) AND status <> 'failed' ORDER BY order_id, id",
        &ids,
    )
    .await?;
    let mut returns = by_order::<aftercare::Return>(
        db,
        "SELECT order_id, id, lines, restocked, reason, created_at FROM order_returns WHERE order_id IN ({}) \
         ORDER BY order_id, id",
        &ids,
    )
    .await?;
    let mut orders = Vec::with_capacity(rows.len());
    for row in rows {
        let lines = lines.remove(&row.id).unwrap_or_default();
        let payments = payments.remove(&row.id).unwrap_or_default();
        let fulfillments = fulfillments.remove(&row.id).unwrap_or_default();
        let refunds = refunds.remove(&row.id).unwrap_or_default();
        let returns = returns.remove(&row.id).unwrap_or_default();
        orders.push(Order {
            status: Status::parse(&row.status)
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown order status {}", row.status)))?,
            shipping_address: serde_json::from_str(&row.shipping_address).map_err(corrupt("shipping address"))?,
            billing_address: serde_json::from_str(&row.billing_address).map_err(corrupt("billing address"))?,
            shipping_method: serde_json::from_str(&row.shipping_method).map_err(corrupt("shipping method"))?,
            discounts: serde_json::from_str(&row.discounts).map_err(corrupt("discounts"))?,
            totals: CartTotals {
                subtotal: row.subtotal,
                discount_total: row.discount_total,
                shipping: row.shipping_total,
                shipping_discount: row.shipping_discount,
                shipping_tax: row.shipping_tax,
                tax_total: row.tax_total,
                total: row.total,
            },
            id: row.id,
            number: row.number,
            email: row.email,
            customer_id: row.customer_id,
            currency: row.currency,
            tax_inclusive: row.tax_inclusive,
            tax_exempt: row.tax_exempt,
            lines,
            paid_total: row.paid_total,
            refunded_total: row.refunded_total,
            payments,
            fulfillments,
            refunds,
            returns,
            placed_at: row.placed_at,
            updated_at: row.updated_at,
            version: row.version,
        });
    }
    Ok(orders)
}

/// The rows of `sql` (whose `{}` takes the list of `ids`, and whose first column is
/// `order_id`) by order.
async fn by_order<T>(db: &Db, sql: &str, ids: &[&str]) -> AppResult<HashMap<String, Vec<T>>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    let mut found: HashMap<String, Vec<T>> = HashMap::new();
    if ids.is_empty() {
        return Ok(found);
    }
    let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = sql.replace("{}", &list.join(", "));
    let rows = db_run!(db.read().await?, |conn| {
        let mut query = sqlx::query(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.fetch_all(conn).await.and_then(|rows| {
            rows.iter()
                .map(|row| Ok((sqlx::Row::try_get::<String, _>(row, "order_id")?, T::from_row(row)?)))
                .collect::<Result<Vec<(String, T)>, sqlx::Error>>()
        })
    })?;
    for (order_id, item) in rows {
        found.entry(order_id).or_default().push(item);
    }
    Ok(found)
}

/// The order `id`.
pub async fn find(db: &Db, id: &str) -> AppResult<Order> {
    if !has_shape(id, "ord") {
        return Err(not_found());
    }
    let sql = format!("SELECT {COLUMNS} FROM orders WHERE id = $1");
    let row =
        db_run!(db.read().await?, |conn| sqlx::query_as::<_, OrderRow>(&sql).bind(id).fetch_optional(conn).await)?
            .ok_or_else(not_found)?;
    assemble(db, vec![row]).await?.pop().ok_or_else(not_found)
}

/// The id of the order the cart `cart_id` became, if it became one.
pub async fn id_of_cart(db: &Db, cart_id: &str) -> AppResult<Option<String>> {
    Ok(db_run!(db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM orders WHERE cart_id = $1")
            .bind(cart_id)
            .fetch_optional(conn)
            .await
    })?)
}

/// Writes a change to the order's timeline.
pub async fn record_event(
    tx: &mut Tx,
    order_id: &str,
    kind: &str,
    change: Option<(Option<Status>, Status)>,
    detail: serde_json::Value,
    actor: Actor<'_>,
) -> AppResult<()> {
    let mut batch = Batch::new();
    event_in(&mut batch, order_id, kind, change, &detail, actor);
    tx.run(&batch).await?;
    Ok(())
}

/// As [`record_event`], with the event's `INSERT` added to `batch`.
pub fn event_in(
    batch: &mut Batch,
    order_id: &str,
    kind: &str,
    change: Option<(Option<Status>, Status)>,
    detail: &serde_json::Value,
    actor: Actor<'_>,
) {
    let (from, to) = match change {
        Some((from, to)) => (from.map(Status::as_str), Some(to.as_str())),
        None => (None, None),
    };
    batch.push(
        "INSERT INTO order_events (id, order_id, kind, from_status, to_status, detail, actor_kind, actor_id, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        vec![
            Param::Text(new_id("oev")),
            Param::Text(order_id.to_owned()),
            Param::Text(kind.to_owned()),
            Param::MaybeText(from.map(str::to_owned)),
            Param::MaybeText(to.map(str::to_owned)),
            Param::Text(detail.to_string()),
            Param::Text(actor.kind.to_owned()),
            Param::Text(actor.id.to_owned()),
            Param::Int(Timestamp::now().0),
        ],
    );
}

/// Takes the order for one change: if someone changed it since it was read, a 409.
pub async fn claim(tx: &mut Tx, order: &Order) -> AppResult<()> {
    let claimed = db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE orders SET version = version + 1, updated_at = $1 WHERE id = $2 AND version = $3")
            .bind(Timestamp::now())
            .bind(&order.id)
            .bind(order.version)
            .execute(conn)
            .await
    })?;
    if claimed == 0 {
        return Err(AppError::new(ErrorCode::Conflict, "The order changed meanwhile; read it again."));
    }
    Ok(())
}

/// Moves the order from `from` to `to` if it is still at `from` and the machine allows it;
/// a 409 otherwise.
pub async fn transition(
    tx: &mut Tx,
    order_id: &str,
    from: Status,
    to: Status,
    detail: serde_json::Value,
    actor: Actor<'_>,
) -> AppResult<()> {
    if !from.can_become(to) {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!("An order that is {} cannot become {}.", from.as_str(), to.as_str()),
        ));
    }
    let moved = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE orders SET status = $1, updated_at = $2, version = version + 1 WHERE id = $3 AND status = $4",
        )
        .bind(to.as_str())
        .bind(Timestamp::now())
        .bind(order_id)
        .bind(from.as_str())
        .execute(conn)
        .await
    })?;
    if moved == 0 {
        return Err(AppError::new(ErrorCode::Conflict, "The order changed meanwhile; read it again."));
    }
    record_event(tx, order_id, "status_changed", Some((Some(from), to)), detail, actor).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this status.
    pub status: Option<String>,
    /// An order number, or a customer's email address.
    pub q: Option<String>,
    pub limit: Option<u32>,
    pub after: Option<String>,
}

async fn page(db: &Db, filter: (&str, Vec<String>), limit: u32, after: Option<&str>) -> AppResult<Page<Order>> {
    let (condition, values) = filter;
    let mut binds = values;
    let mut sql = format!("SELECT {COLUMNS} FROM orders WHERE {condition}");
    if let Some(after) = after {
        binds.push(after.to_owned());
        sql.push_str(&format!(" AND id < ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let rows = db_run!(db.read().await?, |conn| {
        let mut query = sqlx::query_as::<_, OrderRow>(&sql);
        for value in &binds {
            query = query.bind(value);
        }
        query.fetch_all(conn).await
    })?;
    let orders = assemble(db, rows).await?;
    Ok(Page::from_rows(orders, limit, |order| order.id.clone()))
}

/// List orders, newest first; filter by status, or find by number or email.
#[utoipa::path(get, path = "/api/v1/admin/orders", tag = "admin: orders", params(OrderQuery),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Order>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_orders(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(query): Query<OrderQuery>,
) -> AppResult<Json<Page<Order>>> {
    staff.require(Permission::OrdersRead)?;
    let mut violations = Violations::default();
    let limit = check_page(query.limit, query.after.as_deref(), &mut violations);
    if query.status.as_deref().is_some_and(|status| Status::parse(status).is_none()) {
        violations.add("status", "unknown", "is not an order status");
    }
    violations.finish()?;
    let (condition, values) = filter_of(query.status.as_deref(), query.q.as_deref());
    Ok(Json(page(&state.db, (&condition, values), limit, query.after.as_deref()).await?))
}

/// The SQL condition and its values for a status and a search.
fn filter_of(status: Option<&str>, q: Option<&str>) -> (String, Vec<String>) {
    let mut conditions = vec!["1 = 1".to_owned()];
    let mut values = Vec::new();
    if let Some(status) = status {
        values.push(status.to_owned());
        conditions.push(format!("status = ${}", values.len()));
    }
    if let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) {
        match q.trim_start_matches('#').parse::<i64>() {
            Ok(number) => conditions.push(format!("number = {number}")),
            Err(_) => {
                values.push(q.to_lowercase());
                conditions.push(format!("email = ${}", values.len()));
            }
        }
    }
    (conditions.join(" AND "), values)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Only orders in this status.
    pub status: Option<String>,
    /// An order number, or a customer's email address.
    pub q: Option<String>,
}

/// Export orders as CSV, one row per line, newest first; filters as for the list.
#[utoipa::path(get, path = "/api/v1/admin/orders/export", tag = "admin: orders", params(ExportQuery),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The orders as CSV", content_type = "text/csv", body = String),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn export_orders(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(query): Query<ExportQuery>,
) -> AppResult<axum::response::Response> {
    use axum::response::IntoResponse;
    staff.require(Permission::OrdersRead)?;
    if query.status.as_deref().is_some_and(|status| Status::parse(status).is_none()) {
        return Err(AppError::invalid_field("status", "unknown", "is not an order status"));
    }
    let (condition, values) = filter_of(query.status.as_deref(), query.q.as_deref());
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "number",
        "placed_at",
        "status",
        "email",
        "currency",
        "sku",
        "title",
        "variant",
        "quantity",
        "unit_amount",
        "discount",
        "tax",
        "line_total",
        "order_subtotal",
        "order_discount",
        "order_shipping",
        "order_tax",
        "order_total",
        "paid_total",
        "refunded_total",
        "shipping_country",
    ];
    let write_error = |err: csv::Error| AppError::internal(err);
    out.write_record(header).map_err(write_error)?;
    let mut after: Option<String> = None;
    loop {
        let batch = page(&state.db, (&condition, values.clone()), 100, after.as_deref()).await?;
        for order in &batch.data {
            for line in &order.lines {
                let record = [
                    order.number.to_string(),
                    order.placed_at.to_rfc3339(),
                    order.status.as_str().to_owned(),
                    order.email.clone(),
                    order.currency.clone(),
                    line.sku.clone().unwrap_or_default(),
                    line.title.clone(),
                    line.variant_title.clone(),
                    line.quantity.to_string(),
                    line.unit_amount.to_string(),
                    line.discount.to_string(),
                    line.tax.to_string(),
                    line.total.to_string(),
                    order.totals.subtotal.to_string(),
                    order.totals.discount_total.to_string(),
                    order.totals.shipping.to_string(),
                    order.totals.tax_total.to_string(),
                    order.totals.total.to_string(),
                    order.paid_total.to_string(),
                    order.refunded_total.to_string(),
                    order.shipping_address.country.clone(),
                ];
                // Text cells that a spreadsheet would read as a formula are quoted as text.
                out.write_record(record.into_iter().map(crate::catalog::import::defuse)).map_err(write_error)?;
            }
        }
        match batch.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
    }
    let body = out.into_inner().map_err(|err| AppError::internal(anyhow::anyhow!("{err}")))?;
    let headers = [
        (axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8"),
        (axum::http::header::CONTENT_DISPOSITION, "attachment; filename=\"orders.csv\""),
    ];
    Ok((headers, body).into_response())
}

async fn timeline(db: &Db, order_id: &str) -> AppResult<Vec<OrderEvent>> {
    Ok(db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, OrderEvent>(
            "SELECT id, kind, from_status, to_status, detail, actor_kind, actor_id, created_at FROM order_events \
             WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id)
        .fetch_all(conn)
        .await
    })?)
}

/// Read an order with its timeline.
#[utoipa::path(get, path = "/api/v1/admin/orders/{id}", tag = "admin: orders", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = OrderDetail),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_order(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<OrderDetail>> {
    staff.require(Permission::OrdersRead)?;
    let order = find(&state.db, &id).await?;
    let timeline = timeline(&state.db, &id).await?;
    Ok(Json(OrderDetail { order, timeline }))
}

fn staff_actor(staff: &CurrentStaff) -> Actor<'_> {
    let (kind, id) = staff.actor();
    Actor { kind, id }
}

/// Record that the money of a manual payment (bank transfer, cash) arrived.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/mark-paid", tag = "admin: orders", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Order),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is not waiting for a manual payment", body = Problem, content_type = "application/problem+json"),
    ))]
async fn mark_paid(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Json<Order>> {
    staff.require(Permission::OrdersWrite)?;
    let order = find(&state.db, &id).await?;
    let Some(payment) = order.payments.iter().find(|p| p.provider == "manual" && p.status == "pending") else {
        return Err(AppError::new(ErrorCode::Conflict, "This order is not waiting for a manual payment."));
    };
    let mut tx = state.db.begin().await?;
    claim(&mut tx, &order).await?;
    let actor = staff_actor(&staff);
    transition(&mut tx, &id, order.status, Status::Paid, serde_json::json!({ "payment_id": payment.id }), actor)
        .await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE payments SET status = 'captured', captured_amount = amount, updated_at = $1 \
             WHERE id = $2 AND status = 'pending'",
        )
        .bind(Timestamp::now())
        .bind(&payment.id)
        .execute(conn)
        .await
    })?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE orders SET paid_total = paid_total + $1 WHERE id = $2")
            .bind(payment.amount)
            .bind(&id)
            .execute(conn)
            .await
    })?;
    audit::record(&mut tx, actor.kind, actor.id, "order.marked_paid", Some(&id), &order.number.to_string()).await?;
    let paid = Order { status: Status::Paid, ..order };
    webhooks::emit(&state, &mut tx, "order.paid", &paid).await?;
    tx.commit().await?;
    Ok(Json(find(&state.db, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Why, for the timeline and the customer's email.
    #[serde(default)]
    pub reason: String,
    /// Put the goods back in stock (default true).
    #[serde(default = "yes")]
    pub restock: bool,
}

fn yes() -> bool {
    true
}

/// Cancel an order that has not been paid or fulfilled: an authorised payment is voided and
/// the goods go back in stock.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/cancel", tag = "admin: orders", request_body = CancelRequest,
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Order),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order can no longer be cancelled", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_order(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Json(request): Json<CancelRequest>,
) -> AppResult<Json<Order>> {
    staff.require(Permission::OrdersWrite)?;
    if request.reason.chars().count() > 500 {
        return Err(AppError::invalid_field("reason", "too_long", "must be at most 500 characters"));
    }
    let order = find(&state.db, &id).await?;
    if order.status == Status::Paid {
        return Err(AppError::new(ErrorCode::Conflict, "A paid order is cancelled by refunding it."));
    }
    let mut tx = state.db.begin().await?;
    claim(&mut tx, &order).await?;
    let actor = staff_actor(&staff);
    let detail = serde_json::json!({ "reason": request.reason, "restock": request.restock });
    transition(&mut tx, &id, order.status, Status::Cancelled, detail, actor).await?;
    let to_void = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String, Option<String>)>(
            "UPDATE payments SET status = 'voided', updated_at = $1 \
             WHERE order_id = $2 AND status IN ('pending', 'authorized') RETURNING id, provider, provider_ref",
        )
        .bind(Timestamp::now())
        .bind(&id)
        .fetch_all(conn)
        .await
    })?;
    if request.restock {
        // Back to where it was sold from.
        let sold = db_run!(tx.conn(), |conn| {
            sqlx::query_as::<_, (String, String, i64)>(
                "SELECT m.variant_id, m.location_id, CAST(-SUM(m.quantity) AS BIGINT) FROM inventory_movements m \
                 JOIN orders o ON o.cart_id = m.reference WHERE o.id = $1 AND m.kind = 'sold' \
                 GROUP BY m.variant_id, m.location_id ORDER BY m.variant_id, m.location_id",
            )
            .bind(&id)
            .fetch_all(conn)
            .await
        })?;
        for (variant_id, location_id, quantity) in sold.iter().filter(|(_, _, quantity)| *quantity > 0) {
            let movement = inventory::Line {
                variant_id,
                location_id,
                quantity: *quantity,
                kind: "returned",
                reason: "order cancelled",
                reference: Some(&order.id),
                actor,
            };
            inventory::record_movement(&state, &mut tx, movement).await?;
        }
    }
    audit::record(&mut tx, actor.kind, actor.id, "order.cancelled", Some(&id), &order.number.to_string()).await?;
    let values = minijinja::context! {
        number => order.number,
        first_name => order.shipping_address.first_name,
        reason => request.reason.trim(),
    };
    let email = state.templates.render("order_cancelled", &order.email, values).map_err(AppError::internal)?;
    crate::messaging::send_email(&mut tx, &email).await?;
    let cancelled = Order { status: Status::Cancelled, ..order };
    webhooks::emit(&state, &mut tx, "order.cancelled", &cancelled).await?;
    tx.commit().await?;
    // The provider is told once the cancellation stands; a failure here is logged for staff.
    let to_void = to_void.into_iter().map(|(id, provider, reference)| (provider, reference.unwrap_or(id))).collect();
    state.payments.void_all(to_void, state.config.payment_timeout()).await;
    Ok(Json(find(&state.db, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MyOrdersQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
}

/// The signed-in customer's orders, newest first.
#[utoipa::path(get, path = "/api/v1/store/customers/me/orders", tag = "store: orders", params(MyOrdersQuery),
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 200, body = Page<Order>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn my_orders(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    Query(query): Query<MyOrdersQuery>,
) -> AppResult<Json<Page<Order>>> {
    let mut violations = Violations::default();
    let limit = check_page(query.limit, query.after.as_deref(), &mut violations);
    violations.finish()?;
    let filter = ("customer_id = $1", vec![customer.customer_id().to_owned()]);
    Ok(Json(page(&state.db, filter, limit, query.after.as_deref()).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderLookup {
    pub number: i64,
    pub email: String,
}

/// Find an order by its number and the email address it was placed with, as a guest does.
#[utoipa::path(post, path = "/api/v1/store/orders/lookup", tag = "store: orders", request_body = OrderLookup,
    responses(
        (status = 200, body = Order),
        (status = 404, description = "No order has this number and email", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn lookup_order(
    State(state): State<AppState>,
    crate::platform::http::ClientIp(ip): crate::platform::http::ClientIp,
    Json(lookup): Json<OrderLookup>,
) -> AppResult<(StatusCode, Json<Order>)> {
    let mut violations = Violations::default();
    let email = violations.check("email", EmailAddress::parse(&lookup.email));
    violations.finish()?;
    let email = email.map(|e| e.as_str().to_owned()).unwrap_or_default();
    let key = format!("order-lookup:{ip}");
    state.account_requests.take(&key, 30).map_err(AppError::too_many_requests)?;
    let id = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM orders WHERE number = $1 AND email = $2")
            .bind(lookup.number)
            .bind(&email)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(|| AppError::not_found("No order has this number and email address."))?;
    Ok((StatusCode::OK, Json(find(&state.db, &id).await?)))
}
