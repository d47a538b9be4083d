//! After the order is placed: fulfilment by line and location, shipping with tracking,
//! delivery, refunds through the payment's provider, and returns.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use minijinja::context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::refunds::{self, RefundRequest, RefundableLine};
use super::status::Status;
use super::{Order, find, record_event, transition};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::inventory::{self, Actor};
use crate::catalog::money;
use crate::catalog::products::single_line;
use crate::messaging::{self, webhooks};
use crate::platform::db::Tx;
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem};
use crate::platform::http::Json;
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(fulfil))
        .routes(routes!(ship))
        .routes(routes!(deliver))
        .routes(routes!(refund))
        .routes(routes!(take_return))
}

/// Units of one line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineUnits {
    pub line_id: String,
    pub quantity: i64,
}

/// Units of lines, kept as JSON.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub struct Units(pub Vec<LineUnits>);

impl TryFrom<String> for Units {
    type Error = serde_json::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(Self)
    }
}

impl std::ops::Deref for Units {
    type Target = [LineUnits];

    fn deref(&self) -> &[LineUnits] {
        &self.0
    }
}

/// A parcel.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Fulfillment {
    pub id: String,
    /// `fulfilled` (packed), `shipped` or `delivered`.
    pub status: String,
    pub location_id: String,
    #[sqlx(try_from = "String")]
    #[schema(value_type = Vec<LineUnits>)]
    pub lines: Units,
    pub carrier: String,
    pub tracking_number: String,
    pub tracking_url: String,
    pub created_at: Timestamp,
    pub shipped_at: Option<Timestamp>,
    pub delivered_at: Option<Timestamp>,
}

/// Money given back.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Refund {
    pub id: String,
    pub payment_id: String,
    pub amount: i64,
    pub reason: String,
    #[sqlx(try_from = "String")]
    #[schema(value_type = Vec<LineUnits>)]
    pub lines: Units,
    /// The shipping given back with it.
    pub shipping: i64,
    /// Its units go back in stock (once the provider has refunded).
    pub restock: bool,
    /// `pending` while the provider is asked, then `succeeded`.
    pub status: String,
    pub created_at: Timestamp,
}

/// Goods sent back.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Return {
    pub id: String,
    #[sqlx(try_from = "String")]
    #[schema(value_type = Vec<LineUnits>)]
    pub lines: Units,
    pub restocked: bool,
    pub reason: String,
    pub created_at: Timestamp,
}

pub async fn fulfillments_of(db: &crate::platform::db::Db, order_id: &str) -> AppResult<Vec<Fulfillment>> {
    Ok(db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, Fulfillment>(
            "SELECT id, status, location_id, lines, carrier, tracking_number, tracking_url, created_at, shipped_at, \
             delivered_at FROM order_fulfillments WHERE order_id = $1 ORDER BY id",
        )
        .bind(order_id)
        .fetch_all(conn)
        .await
    })?)
}

/// Units per line id over `records`.
fn units_by_line<'a>(records: impl Iterator<Item = &'a [LineUnits]>) -> HashMap<String, i64> {
    let mut by_line = HashMap::new();
    for lines in records {
        for line in lines {
            *by_line.entry(line.line_id.clone()).or_insert(0) += line.quantity;
        }
    }
    by_line
}

/// Refuses to put back in stock a unit already back: each unit of a line goes back at most
/// once, by a refund or by a return. `going` are the units about to go back.
fn check_restock(order: &Order, going: &[LineUnits]) -> AppResult<()> {
    let back = units_by_line(
        (order.refunds.iter().filter(|refund| refund.restock).map(|refund| &*refund.lines))
            .chain(order.returns.iter().filter(|back| back.restocked).map(|back| &*back.lines)),
    );
    for (index, units) in going.iter().enumerate() {
        let Some(line) = order.lines.iter().find(|line| line.id == units.line_id) else { continue };
        let already = back.get(&line.id).copied().unwrap_or(0);
        let before = going[..index].iter().filter(|u| u.line_id == line.id).map(|u| u.quantity).sum::<i64>();
        let left = line.quantity - already - before;
        if units.quantity > left {
            return Err(AppError::invalid_field(
                "restock",
                "already_restocked",
                format!(
                    "{already} of the {} units of line {} are back in stock already; {} more can go back",
                    line.quantity,
                    line.id,
                    left.max(0)
                ),
            ));
        }
    }
    Ok(())
}

/// Checks `asked` against what each line has left (`done` already); an empty list asks for
/// every unit left. Answers the units to use.
fn check_units(order: &Order, asked: &[LineUnits], done: &HashMap<String, i64>) -> AppResult<Vec<LineUnits>> {
    if asked.is_empty() {
        let all: Vec<LineUnits> = order
            .lines
            .iter()
            .map(|line| LineUnits {
                line_id: line.id.clone(),
                quantity: line.quantity - done.get(&line.id).copied().unwrap_or(0),
            })
            .filter(|units| units.quantity > 0)
            .collect();
        if all.is_empty() {
            return Err(AppError::new(ErrorCode::Conflict, "Every unit of this order was handled already."));
        }
        return Ok(all);
    }
    for (index, units) in asked.iter().enumerate() {
        let Some(line) = order.lines.iter().find(|line| line.id == units.line_id) else {
            return Err(AppError::invalid_field(
                &format!("lines[{index}].line_id"),
                "unknown",
                "names no line of this order",
            ));
        };
        let left = line.quantity
            - done.get(&line.id).copied().unwrap_or(0)
            - asked[..index].iter().filter(|u| u.line_id == line.id).map(|u| u.quantity).sum::<i64>();
        if units.quantity < 1 || units.quantity > left {
            return Err(AppError::invalid_field(
                &format!("lines[{index}].quantity"),
                "out_of_range",
                format!("must be between 1 and {left}"),
            ));
        }
    }
    Ok(asked.to_vec())
}

fn staff_actor(staff: &CurrentStaff) -> Actor<'_> {
    let (kind, id) = staff.actor();
    Actor { kind, id }
}

/// The payment of the order that holds money: the one authorised or captured.
async fn money_payment(
    db: &crate::platform::db::Db,
    order_id: &str,
) -> AppResult<Option<(String, String, String, i64, i64, i64)>> {
    Ok(db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String, String, i64, i64, i64)>(
            "SELECT id, provider, COALESCE(provider_ref, id), amount, captured_amount, refunded_amount FROM payments \
             WHERE order_id = $1 AND status IN ('authorized', 'captured', 'partially_refunded') ORDER BY id LIMIT 1",
        )
        .bind(order_id)
        .fetch_optional(conn)
        .await
    })?)
}

/// Where each variant of the order was sold from.
async fn sold_from(tx: &mut Tx, order_id: &str) -> AppResult<HashMap<String, String>> {
    let pairs = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String)>(
            "SELECT m.variant_id, m.location_id FROM inventory_movements m JOIN orders o ON o.cart_id = m.reference \
             WHERE o.id = $1 AND m.kind = 'sold'",
        )
        .bind(order_id)
        .fetch_all(conn)
        .await
    })?;
    Ok(pairs.into_iter().collect())
}

/// Puts `units` back in stock where they were sold from.
async fn restock(
    state: &AppState,
    tx: &mut Tx,
    order: &Order,
    units: &[LineUnits],
    reason: &str,
    actor: Actor<'_>,
) -> AppResult<()> {
    let from = sold_from(tx, &order.id).await?;
    for unit in units {
        let Some(line) = order.lines.iter().find(|line| line.id == unit.line_id) else { continue };
        let location = from.get(&line.variant_id).map_or(inventory::DEFAULT_LOCATION, String::as_str);
        let movement = inventory::Line {
            variant_id: &line.variant_id,
            location_id: location,
            quantity: unit.quantity,
            kind: "returned",
            reason,
            reference: Some(&order.id),
            actor,
        };
        match inventory::record_movement(state, tx, movement).await {
            // A variant deleted since has no stock to take the units back.
            Err(err) if err.status() == axum::http::StatusCode::NOT_FOUND => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFulfillment {
    /// The units packed; empty for everything not yet fulfilled.
    #[serde(default)]
    pub lines: Vec<LineUnits>,
    /// Where it leaves from; the location the stock was sold from when absent.
    pub location_id: Option<String>,
}

/// Pack lines of an order. An authorised card payment is captured at the first fulfilment.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/fulfillments", tag = "admin: orders", request_body = NewFulfillment,
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Order),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not paid, or nothing left to fulfil", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The capture failed", body = Problem, content_type = "application/problem+json"),
    ))]
async fn fulfil(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Json(new): Json<NewFulfillment>,
) -> AppResult<Json<Order>> {
    staff.require(Permission::OrdersWrite)?;
    let order = find(&state.db, &id).await?;
    if order.status == Status::PendingPayment {
        return Err(AppError::new(ErrorCode::Conflict, "This order is not paid yet."));
    }
    let done = units_by_line(order.fulfillments.iter().map(|f| &*f.lines));
    let units = check_units(&order, &new.lines, &done)?;
    let after: i64 = done.values().sum::<i64>() + units.iter().map(|u| u.quantity).sum::<i64>();
    let ordered: i64 = order.lines.iter().map(|line| line.quantity).sum();
    let next = if after >= ordered { Status::Fulfilled } else { Status::PartiallyFulfilled };
    if !order.status.can_become(next) {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!("An order that is {} is not fulfilled.", order.status.as_str()),
        ));
    }
    if let Some(location) = &new.location_id {
        let known = db_run!(state.db.read().await?, |conn| {
            sqlx::query_scalar::<_, String>("SELECT id FROM locations WHERE id = $1")
                .bind(location)
                .fetch_optional(conn)
                .await
        })?;
        if known.is_none() {
            return Err(AppError::invalid_field("location_id", "unknown", "names no location"));
        }
    }
    // The capture is asked before any write (a retry asks again harmlessly: the provider's
    // key makes it one capture), so no lock is held while the provider answers.
    let to_capture = match money_payment(&state.db, &id).await? {
        Some((payment_id, provider, reference, amount, _, _)) if order.status == Status::Authorized => {
            let gateway = state
                .payments
                .get(&provider)
                .ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown provider {provider}")))?;
            let timeout = state.config.payment_timeout();
            if !matches!(tokio::time::timeout(timeout, gateway.capture(&reference, amount)).await, Ok(Ok(()))) {
                return Err(AppError::new(
                    ErrorCode::Unavailable,
                    "The payment could not be captured; nothing was fulfilled.",
                ));
            }
            Some((payment_id, amount))
        }
        _ => None,
    };
    let mut tx = state.db.begin().await?;
    super::claim(&mut tx, &order).await?;
    let location = match &new.location_id {
        Some(location) => location.clone(),
        None => {
            let from = sold_from(&mut tx, &id).await?;
            from.values().next().cloned().unwrap_or_else(|| inventory::DEFAULT_LOCATION.to_owned())
        }
    };
    let actor = staff_actor(&staff);
    if let Some((payment_id, amount)) = to_capture {
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "UPDATE payments SET status = 'captured', captured_amount = amount, updated_at = $1 WHERE id = $2",
            )
            .bind(Timestamp::now())
            .bind(&payment_id)
            .execute(conn)
            .await
        })?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query("UPDATE orders SET paid_total = $1 WHERE id = $2").bind(amount).bind(&id).execute(conn).await
        })?;
        record_event(&mut tx, &id, "payment_captured", None, serde_json::json!({ "amount": amount }), actor).await?;
    }
    let fulfillment_id = new_id("ful");
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO order_fulfillments (id, order_id, status, location_id, lines, created_at) \
             VALUES ($1, $2, 'fulfilled', $3, $4, $5)",
        )
        .bind(&fulfillment_id)
        .bind(&id)
        .bind(&location)
        .bind(serde_json::to_string(&units).map_err(AppError::internal)?)
        .bind(Timestamp::now())
        .execute(conn)
        .await
    })?;
    let detail = serde_json::json!({ "fulfillment_id": fulfillment_id, "lines": units });
    transition(&mut tx, &id, order.status, next, detail, actor).await?;
    audit::record(&mut tx, actor.kind, actor.id, "order.fulfilled", Some(&id), &fulfillment_id).await?;
    tx.commit().await?;
    Ok(Json(find(&state.db, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    pub carrier: String,
    pub tracking_number: String,
    /// Where the customer follows the parcel (`https://`).
    #[serde(default)]
    pub tracking_url: String,
    /// Email the customer (default true).
    #[serde(default = "yes")]
    pub notify: bool,
}

fn yes() -> bool {
    true
}

/// Whether every unit of the order is in a parcel at `status` or later.
fn all_at(order: &Order, parcels: &[Fulfillment], statuses: &[&str]) -> bool {
    let done = units_by_line(parcels.iter().filter(|p| statuses.contains(&p.status.as_str())).map(|p| &*p.lines));
    order.lines.iter().all(|line| done.get(&line.id).copied().unwrap_or(0) >= line.quantity)
}

async fn parcel(state: &AppState, order_id: &str, fulfillment_id: &str) -> AppResult<Fulfillment> {
    fulfillments_of(&state.db, order_id)
        .await?
        .into_iter()
        .find(|f| f.id == fulfillment_id)
        .ok_or_else(|| AppError::not_found("The order has no fulfillment with this id."))
}

/// Hand a parcel to the carrier, with its tracking; the customer is emailed the link. Once
/// every unit has shipped, the order is `shipped`.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/fulfillments/{fulfillment_id}/ship", tag = "admin: orders",
    request_body = Shipment, params(("id" = String, Path), ("fulfillment_id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Order),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already shipped", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn ship(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path((id, fulfillment_id)): Path<(String, String)>,
    Json(shipment): Json<Shipment>,
) -> AppResult<Json<Order>> {
    staff.require(Permission::OrdersWrite)?;
    let mut violations = crate::platform::error::Violations::default();
    if shipment.carrier.trim().is_empty() || !single_line(&shipment.carrier, 100) {
        violations.add("carrier", "invalid_format", "must be 1 to 100 characters on one line");
    }
    if shipment.tracking_number.trim().is_empty() || !single_line(&shipment.tracking_number, 100) {
        violations.add("tracking_number", "invalid_format", "must be 1 to 100 characters on one line");
    }
    if !shipment.tracking_url.is_empty()
        && (!shipment.tracking_url.starts_with("https://") || !single_line(&shipment.tracking_url, 500))
    {
        violations.add("tracking_url", "invalid_format", "must be an https:// address");
    }
    violations.finish()?;
    let order = find(&state.db, &id).await?;
    let current = parcel(&state, &id, &fulfillment_id).await?;
    if current.status != "fulfilled" {
        return Err(AppError::new(ErrorCode::Conflict, "This parcel has shipped already."));
    }
    // Read before the transaction: no transaction waits on a second connection.
    let mut parcels = order.fulfillments.clone();
    let mut tx = state.db.begin().await?;
    super::claim(&mut tx, &order).await?;
    let now = Timestamp::now();
    let shipped = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE order_fulfillments SET status = 'shipped', carrier = $1, tracking_number = $2, tracking_url = $3, \
             shipped_at = $4 WHERE id = $5 AND status = 'fulfilled'",
        )
        .bind(shipment.carrier.trim())
        .bind(shipment.tracking_number.trim())
        .bind(&shipment.tracking_url)
        .bind(now)
        .bind(&fulfillment_id)
        .execute(conn)
        .await
    })?;
    if shipped != 1 {
        return Err(AppError::new(ErrorCode::Conflict, "This parcel has shipped already."));
    }
    let actor = staff_actor(&staff);
    for p in parcels.iter_mut().filter(|p| p.id == fulfillment_id) {
        p.status = "shipped".into();
    }
    let detail = serde_json::json!({ "fulfillment_id": fulfillment_id, "carrier": shipment.carrier,
        "tracking_number": shipment.tracking_number });
    if all_at(&order, &parcels, &["shipped", "delivered"]) && order.status.can_become(Status::Shipped) {
        transition(&mut tx, &id, order.status, Status::Shipped, detail, actor).await?;
    } else {
        record_event(&mut tx, &id, "parcel_shipped", None, detail, actor).await?;
    }
    if shipment.notify {
        let values = context! {
            number => order.number,
            first_name => order.shipping_address.first_name,
            carrier => shipment.carrier.trim(),
            tracking_number => shipment.tracking_number.trim(),
            tracking_url => shipment.tracking_url,
        };
        let email = state.templates.render("order_shipped", &order.email, values).map_err(AppError::internal)?;
        messaging::send_email(&mut tx, &email).await?;
    }
    webhooks::emit(
        &state,
        &mut tx,
        "order.shipped",
        &serde_json::json!({ "id": id, "number": order.number,
        "fulfillment_id": fulfillment_id, "tracking_number": shipment.tracking_number }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(find(&state.db, &id).await?))
}

/// Record that a parcel arrived. Once every unit has arrived, the order is `delivered`.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/fulfillments/{fulfillment_id}/deliver", tag = "admin: orders",
    params(("id" = String, Path), ("fulfillment_id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Order),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not shipped yet, or delivered already", body = Problem, content_type = "application/problem+json"),
    ))]
async fn deliver(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path((id, fulfillment_id)): Path<(String, String)>,
) -> AppResult<Json<Order>> {
    staff.require(Permission::OrdersWrite)?;
    let order = find(&state.db, &id).await?;
    let current = parcel(&state, &id, &fulfillment_id).await?;
    if current.status != "shipped" {
        return Err(AppError::new(ErrorCode::Conflict, "Only a shipped parcel can be delivered."));
    }
    let mut parcels = order.fulfillments.clone();
    let mut tx = state.db.begin().await?;
    super::claim(&mut tx, &order).await?;
    let delivered = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE order_fulfillments SET status = 'delivered', delivered_at = $1 WHERE id = $2 AND status = 'shipped'",
        )
        .bind(Timestamp::now())
        .bind(&fulfillment_id)
        .execute(conn)
        .await
    })?;
    if delivered != 1 {
        return Err(AppError::new(ErrorCode::Conflict, "Only a shipped parcel can be delivered."));
    }
    for p in parcels.iter_mut().filter(|p| p.id == fulfillment_id) {
        p.status = "delivered".into();
    }
    let actor = staff_actor(&staff);
    let detail = serde_json::json!({ "fulfillment_id": fulfillment_id });
    if all_at(&order, &parcels, &["delivered"]) && order.status.can_become(Status::Delivered) {
        transition(&mut tx, &id, order.status, Status::Delivered, detail, actor).await?;
    } else {
        record_event(&mut tx, &id, "parcel_delivered", None, detail, actor).await?;
    }
    tx.commit().await?;
    Ok(Json(find(&state.db, &id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    /// Units of lines to refund, each at what the customer paid for it.
    #[serde(default)]
    pub lines: Vec<LineUnits>,
    /// Refund the shipping paid (what is left of it).
    #[serde(default)]
    pub shipping: bool,
    /// An amount on top, in minor units.
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub reason: String,
    /// Put the refunded units back in stock.
    #[serde(default)]
    pub restock: bool,
    /// Email the customer (default true).
    #[serde(default = "yes")]
    pub notify: bool,
}

/// Give money back through the payment's provider: units of lines, the shipping, or an
/// amount; never more than was paid and not yet refunded.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/refunds", tag = "admin: orders", request_body = NewRefund,
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Order),
        (status = 202, description = "The provider did not answer in time: the refund stays pending, its money set aside, and is asked again with the same key (never refunded twice)", body = Order),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing was paid that can be refunded", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The provider did not refund", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refund(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Json(new): Json<NewRefund>,
) -> AppResult<(StatusCode, Json<Order>)> {
    staff.require(Permission::OrdersWrite)?;
    if !single_line(&new.reason, 500) {
        return Err(AppError::invalid_field("reason", "too_long", "must be at most 500 characters on one line"));
    }
    let order = find(&state.db, &id).await?;
    let Some((payment_id, provider, reference, _, captured, refunded)) = money_payment(&state.db, &id).await? else {
        return Err(AppError::new(ErrorCode::Conflict, "Nothing paid for this order can be refunded."));
    };
    if captured == 0 {
        return Err(AppError::new(ErrorCode::Conflict, "The payment is only authorised: cancel the order instead."));
    }
    let refunded_units = units_by_line(order.refunds.iter().map(|r| &*r.lines));
    let lines: Vec<RefundableLine> = order
        .lines
        .iter()
        .map(|line| RefundableLine {
            id: line.id.clone(),
            quantity: line.quantity,
            total: line.total,
            refunded_units: refunded_units.get(&line.id).copied().unwrap_or(0),
        })
        .collect();
    let shipping_paid = order.totals.shipping - order.totals.shipping_discount
        + if order.tax_inclusive || order.tax_exempt { 0 } else { order.totals.shipping_tax };
    let shipping_left = shipping_paid - order.refunds.iter().map(|r| r.shipping).sum::<i64>();
    let request = RefundRequest {
        lines: new.lines.iter().map(|l| (l.line_id.clone(), l.quantity)).collect(),
        shipping: new.shipping,
        extra: new.amount,
    };
    let amount = refunds::amount(&lines, &request, shipping_left, captured - refunded)
        .map_err(|refused| AppError::invalid_field(&refused.field, refused.code, refused.message))?;
    if new.restock {
        check_restock(&order, &new.lines)?;
    }
    let gateway = state
        .payments
        .get(&provider)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown provider {provider}")))?;

    // 1. The refund is recorded, and the money set aside, before the provider is asked: a
    //    concurrent refund, or any change to the order meanwhile, is refused here.
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    super::claim(&mut tx, &order).await?;
    let set_aside = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE payments SET refunded_amount = refunded_amount + $1, updated_at = $2 \
             WHERE id = $3 AND refunded_amount + $1 <= captured_amount",
        )
        .bind(amount)
        .bind(now)
        .bind(&payment_id)
        .execute(conn)
        .await
    })?;
    if set_aside != 1 {
        return Err(AppError::new(
            ErrorCode::Conflict,
            "Another refund took this money meanwhile; read the order again.",
        ));
    }
    let actor = staff_actor(&staff);
    let asked = Asked {
        id: new_id("ref"),
        order_id: id.clone(),
        payment_id,
        amount,
        reason: new.reason.trim().to_owned(),
        lines: Units(new.lines),
        restock: new.restock,
        notify: new.notify,
        actor_kind: actor.kind.to_owned(),
        actor_id: actor.id.to_owned(),
    };
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO order_refunds (id, order_id, payment_id, amount, reason, lines, shipping, restock, notify, \
             actor_kind, actor_id, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12)",
        )
        .bind(&asked.id)
        .bind(&id)
        .bind(&asked.payment_id)
        .bind(amount)
        .bind(&asked.reason)
        .bind(serde_json::to_string(&asked.lines.0).map_err(AppError::internal)?)
        .bind(if new.shipping { shipping_left } else { 0 })
        .bind(asked.restock)
        .bind(asked.notify)
        .bind(&asked.actor_kind)
        .bind(&asked.actor_id)
        .bind(now)
        .execute(conn)
        .await
    })?;
    tx.commit().await?;

    // 2. The provider, with the refund's id as its key: asking twice refunds once; then 3.
    match ask(&state, &asked, gateway, &reference).await? {
        Asking::Settled => Ok((StatusCode::OK, Json(find(&state.db, &id).await?))),
        // The provider may have refunded: the refund stays pending, its money set aside, and
        // the cleanup job asks again with the same key.
        Asking::Unanswered => Ok((StatusCode::ACCEPTED, Json(find(&state.db, &id).await?))),
        Asking::Refused => {
            Err(AppError::new(ErrorCode::Unavailable, "The provider did not refund; nothing was given back."))
        }
    }
}

/// A refund recorded and its money set aside, to be asked of the provider and settled.
#[derive(Debug, sqlx::FromRow)]
struct Asked {
    id: String,
    order_id: String,
    payment_id: String,
    amount: i64,
    reason: String,
    #[sqlx(try_from = "String")]
    lines: Units,
    restock: bool,
    notify: bool,
    actor_kind: String,
    actor_id: String,
}

/// How asking the provider for a refund ended.
enum Asking {
    /// Refunded, and settled here (or already, by another asking).
    Settled,
    /// The provider said no: the refund failed and its money is no longer set aside.
    Refused,
    /// No answer in time, or one that leaves the outcome unknown: the refund stays pending,
    /// its money set aside, until asked again.
    Unanswered,
}

/// Asks the provider for `refund` (its id the idempotency key, so that asking again never
/// refunds twice) and settles it as the provider answered.
async fn ask(
    state: &AppState,
    refund: &Asked,
    gateway: &dyn crate::payments::Provider,
    reference: &str,
) -> AppResult<Asking> {
    let timeout = state.config.payment_timeout();
    match tokio::time::timeout(timeout, gateway.refund(reference, refund.amount, &refund.id)).await {
        Ok(Ok(provider_ref)) => {
            settle(state, refund, &provider_ref).await?;
            Ok(Asking::Settled)
        }
        Ok(Err(err)) if err.downcast_ref::<crate::payments::Refused>().is_none() => {
            tracing::warn!(error = %err, refund.id = %refund.id, "a refund went unanswered; it is asked again later");
            Ok(Asking::Unanswered)
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, refund.id = %refund.id, "the provider refused a refund");
            let mut tx = state.db.begin().await?;
            let failed = db_execute!(tx.conn(), |conn| {
                sqlx::query("UPDATE order_refunds SET status = 'failed' WHERE id = $1 AND status = 'pending'")
                    .bind(&refund.id)
                    .execute(conn)
                    .await
            })?;
            if failed == 1 {
                db_execute!(tx.conn(), |conn| {
                    sqlx::query("UPDATE payments SET refunded_amount = refunded_amount - $1 WHERE id = $2")
                        .bind(refund.amount)
                        .bind(&refund.payment_id)
                        .execute(conn)
                        .await
                })?;
            }
            tx.commit().await?;
            Ok(Asking::Refused)
        }
        Err(_) => Ok(Asking::Unanswered),
    }
}

/// 3. A refund the provider made, settled once: the order, its timeline, stock, the
///    customer's email and the webhook. A refund settled already is left as it is.
async fn settle(state: &AppState, refund: &Asked, provider_ref: &str) -> AppResult<()> {
    let order = find(&state.db, &refund.order_id).await?;
    let id = &refund.order_id;
    let amount = refund.amount;
    let mut tx = state.db.begin().await?;
    let settled = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE order_refunds SET status = 'succeeded', provider_ref = $1 WHERE id = $2 AND status = 'pending'",
        )
        .bind(provider_ref)
        .bind(&refund.id)
        .execute(conn)
        .await
    })?;
    if settled != 1 {
        return Ok(());
    }
    let fully = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, bool>(
            "UPDATE payments SET status = CASE WHEN refunded_amount >= captured_amount THEN 'refunded' \
             ELSE 'partially_refunded' END, updated_at = $1 WHERE id = $2 RETURNING refunded_amount >= captured_amount",
        )
        .bind(Timestamp::now())
        .bind(&refund.payment_id)
        .fetch_one(conn)
        .await
    })?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE orders SET refunded_total = refunded_total + $1 WHERE id = $2")
            .bind(amount)
            .bind(id)
            .execute(conn)
            .await
    })?;
    let actor = Actor { kind: &refund.actor_kind, id: &refund.actor_id };
    let next = if fully { Status::Refunded } else { Status::PartiallyRefunded };
    let detail = serde_json::json!({ "refund_id": refund.id, "amount": amount, "reason": refund.reason });
    if order.status.can_become(next) {
        transition(&mut tx, id, order.status, next, detail, actor).await?;
    } else {
        record_event(&mut tx, id, "refunded", None, detail, actor).await?;
    }
    if refund.restock {
        restock(state, &mut tx, &order, &refund.lines, "refunded", actor).await?;
    }
    if refund.notify {
        let values = context! {
            number => order.number,
            first_name => order.shipping_address.first_name,
            amount => money::format(amount, &order.currency),
            reason => refund.reason,
        };
        let email = state.templates.render("order_refunded", &order.email, values).map_err(AppError::internal)?;
        messaging::send_email(&mut tx, &email).await?;
    }
    audit::record(&mut tx, actor.kind, actor.id, "order.refunded", Some(id), &amount.to_string()).await?;
    webhooks::emit(
        state,
        &mut tx,
        "order.refunded",
        &serde_json::json!({ "id": id, "number": order.number,
        "refund_id": refund.id, "amount": amount, "currency": order.currency }),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Finishes the refunds left pending for longer than the provider is given to answer (the
/// process stopped, or the provider never answered, between recording and settling them):
/// each is asked again with its own key, so the provider refunds it at most once, and is
/// settled as it answers. For the cleanup job; returns how many were settled or failed.
pub async fn finish_pending_refunds(state: &AppState) -> AppResult<u64> {
    let before = Timestamp::now().plus_millis(-(state.config.payment_timeout().as_millis() as i64 + 60_000));
    let pending = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Asked>(
            "SELECT id, order_id, payment_id, amount, reason, lines, restock, notify, actor_kind, actor_id \
             FROM order_refunds WHERE status = 'pending' AND created_at < $1 ORDER BY id LIMIT 100",
        )
        .bind(before)
        .fetch_all(conn)
        .await
    })?;
    let mut finished = 0;
    for refund in pending {
        let payment = db_run!(state.db.read().await?, |conn| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT provider, COALESCE(provider_ref, id) FROM payments WHERE id = $1",
            )
            .bind(&refund.payment_id)
            .fetch_optional(conn)
            .await
        })?;
        let Some((provider, reference)) = payment else { continue };
        let Some(gateway) = state.payments.get(&provider) else { continue };
        if !matches!(ask(state, &refund, gateway, &reference).await?, Asking::Unanswered) {
            finished += 1;
        }
    }
    Ok(finished)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReturn {
    /// The units sent back; empty for every unit shipped.
    #[serde(default)]
    pub lines: Vec<LineUnits>,
    /// Put them back in stock, where they were sold from.
    #[serde(default)]
    pub restock: bool,
    #[serde(default)]
    pub reason: String,
}

/// Record goods the customer sent back, optionally restocking them (each unit goes back in
/// stock once, by a return or a refund). Refund them with `.../refunds`.
#[utoipa::path(post, path = "/api/v1/admin/orders/{id}/returns", tag = "admin: orders", request_body = NewReturn,
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Order),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing was shipped", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn take_return(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Json(new): Json<NewReturn>,
) -> AppResult<Json<Order>> {
    staff.require(Permission::OrdersWrite)?;
    if !single_line(&new.reason, 500) {
        return Err(AppError::invalid_field("reason", "too_long", "must be at most 500 characters on one line"));
    }
    let order = find(&state.db, &id).await?;
    if !order.status.can_become(Status::Returned) && order.status != Status::Returned {
        return Err(AppError::new(ErrorCode::Conflict, "Only shipped or delivered goods come back."));
    }
    // Only what left can come back: units not yet shipped count as already returned.
    let shipped = units_by_line(
        order.fulfillments.iter().filter(|f| f.status == "shipped" || f.status == "delivered").map(|f| &*f.lines),
    );
    let mut unavailable = units_by_line(order.returns.iter().map(|r| &*r.lines));
    for line in &order.lines {
        let not_sent = line.quantity - shipped.get(&line.id).copied().unwrap_or(0);
        *unavailable.entry(line.id.clone()).or_insert(0) += not_sent;
    }
    let units = check_units(&order, &new.lines, &unavailable)?;
    if new.restock {
        check_restock(&order, &units)?;
    }
    let mut tx = state.db.begin().await?;
    super::claim(&mut tx, &order).await?;
    let return_id = new_id("rtn");
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO order_returns (id, order_id, lines, restocked, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&return_id)
        .bind(&id)
        .bind(serde_json::to_string(&units).map_err(AppError::internal)?)
        .bind(new.restock)
        .bind(new.reason.trim())
        .bind(Timestamp::now())
        .execute(conn)
        .await
    })?;
    let actor = staff_actor(&staff);
    let detail = serde_json::json!({ "return_id": return_id, "lines": units, "restock": new.restock });
    if order.status == Status::Returned {
        record_event(&mut tx, &id, "returned", None, detail, actor).await?;
    } else {
        transition(&mut tx, &id, order.status, Status::Returned, detail, actor).await?;
    }
    if new.restock {
        restock(&state, &mut tx, &order, &units, "returned", actor).await?;
    }
    audit::record(&mut tx, actor.kind, actor.id, "order.returned", Some(&id), &return_id).await?;
    tx.commit().await?;
    Ok(Json(find(&state.db, &id).await?))
}
