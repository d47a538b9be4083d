//! Placing the order: one act under an `Idempotency-Key`.
//!
//! 1. **Hold.** One transaction takes the cart for this key (a second attempt meanwhile gets a
//!    409), reserves every line's stock with conditional updates (so nothing is oversold,
//!    whatever the concurrency), and records the payment attempt.
//! 2. **Pay.** The provider is asked, outside any transaction, with the payment's id as its
//!    idempotency key, and at most `checkout.payment_timeout_secs`.
//! 3. **Place.** One transaction writes the order with its lines, prices, taxes and addresses
//!    as priced, sells the held stock, completes the cart and enqueues the confirmation email
//!    and the `order.placed` webhook. A declined or unanswered payment instead releases the
//!    stock and frees the cart; a payment taken for an order that could not be placed is
//!    voided.
//!
//! A retry with the same key and body answers the same order. Should the process die between
//! the steps, the hold lapses: the cart opens again after a short while, its stock is released
//! when the next attempt takes it or when its reservations expire, and nothing was sold.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use minijinja::context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::cart::{self, Cart, CartRow};
use super::promotions;
use crate::accounts::auth::MaybeCustomer;
use crate::app::AppState;
use crate::catalog::inventory::{self, Actor};
use crate::catalog::money;
use crate::messaging::{self, webhooks};
use crate::orders::status::Status;
use crate::orders::{self, Order, OrderShipping};
use crate::payments::{self, Charge, Outcome, PaymentDetails};
use crate::platform::db::{Backend, Tx};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem};
use crate::platform::http::Json;
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(complete_cart))
}

/// How long a cart stays taken by an attempt beyond the payment's own timeout.
const HOLD_MARGIN_SECS: u64 = 30;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub payment: PaymentDetails,
    /// The total the shopper agreed to. When the cart now costs something else, the order is
    /// not placed: 409, with the cart as it is now.
    pub expected_total: Option<i64>,
}

fn idempotency_key(headers: &HeaderMap) -> AppResult<String> {
    let key = headers.get("idempotency-key").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::new(
            ErrorCode::BadRequest,
            "Send an `Idempotency-Key` header of 1 to 255 visible characters, the same on every retry.",
        ));
    }
    Ok(key.to_owned())
}

/// What tells one request from another, kept with the order: the provider, the card's last
/// four digits (never the whole number) and the expected total.
fn request_hash(request: &PlaceOrder) -> String {
    let card = request.payment.card_number.as_deref().unwrap_or_default();
    let last_four = card.get(card.len().saturating_sub(4)..).unwrap_or_default();
    let total = request.expected_total.map(|total| total.to_string()).unwrap_or_default();
    let canonical = format!("{}\n{}:{last_four}\n{total}", request.payment.provider, card.len());
    Sha256::digest(canonical.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Asks the provider to void, for at most the payment timeout; whether it did.
async fn void(state: &AppState, provider: &dyn payments::Provider, reference: &str) -> bool {
    let timeout = std::time::Duration::from_secs(state.config.checkout.payment_timeout_secs);
    match tokio::time::timeout(timeout, provider.void(reference)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::error!(error = %err, payment.reference = %reference, "a payment could not be voided");
            false
        }
        Err(_) => {
            tracing::error!(payment.reference = %reference, "voiding a payment timed out");
            false
        }
    }
}

fn check_payment(state: &AppState, details: &PaymentDetails) -> AppResult<()> {
    let enabled = state.config.checkout.providers.contains(&details.provider);
    if !enabled || payments::provider(&details.provider).is_none() {
        return Err(AppError::invalid_field("payment.provider", "unknown", "is not a payment method this shop takes"));
    }
    match (details.provider.as_str(), details.card_number.as_deref()) {
        ("test", Some(number)) if payments::luhn_valid(number) => Ok(()),
        ("test", _) => Err(AppError::invalid_field("payment.card_number", "invalid", "is not a valid card number")),
        (_, Some(_)) => Err(AppError::invalid_field("payment.card_number", "unexpected", "this method takes no card")),
        _ => Ok(()),
    }
}

/// The answer for a cart that is already an order: the same order for the same key and body.
async fn already_placed(
    state: &AppState,
    cart_id: &str,
    key: &str,
    hash: &str,
) -> AppResult<(StatusCode, Json<Order>)> {
    let found = db_run!(state.db.read(), |conn| {
        sqlx::query_as::<_, (String, String, String, i64)>(
            "SELECT id, idempotency_key, request_hash, number FROM orders WHERE cart_id = $1",
        )
        .bind(cart_id)
        .fetch_optional(conn)
        .await
    })?;
    let Some((order_id, first_key, first_hash, number)) = found else {
        return Err(AppError::new(ErrorCode::Conflict, "This cart is being checked out; try again in a moment.")
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")));
    };
    if first_key != key {
        return Err(AppError::new(ErrorCode::Conflict, format!("This cart is already order #{number}.")));
    }
    if first_hash != hash {
        return Err(AppError::invalid_field(
            "Idempotency-Key",
            "reused",
            "was used for a different request; send a new key for a new request",
        ));
    }
    Ok((StatusCode::CREATED, Json(orders::find(&state.db, &order_id).await?)))
}

/// What a cart still lacks, naming each: a 409 when stock ran out, a 422 otherwise.
fn not_ready(cart: &Cart) -> AppError {
    let mut error = if cart.missing.iter().any(|missing| missing == "insufficient_stock") {
        AppError::new(ErrorCode::Conflict, "Some of the cart is no longer in stock.")
    } else {
        AppError::new(ErrorCode::ValidationFailed, "The cart is not ready to be placed as an order.")
    };
    for missing in &cart.missing {
        let message = match missing.as_str() {
            "lines" => "the cart is empty".to_owned(),
            "email" | "shipping_address" | "shipping_method" => "is required".to_owned(),
            _ => cart
                .changes
                .iter()
                .filter(|change| change.blocking && change.kind == missing)
                .map(|change| change.message.clone())
                .collect::<Vec<_>>()
                .join(" "),
        };
        let code = if ["email", "shipping_address", "shipping_method"].contains(&missing.as_str()) {
            "required"
        } else {
            "blocking"
        };
        error = error.with_field(missing, code, message);
    }
    error
}

/// Place the cart as an order and pay for it. Send an `Idempotency-Key`: a retry with the same
/// key and body answers the same order, and a second order is never made from one cart. A
/// declined payment answers 402 and sells nothing; the cart stays as it was.
#[utoipa::path(post, path = "/api/v1/store/carts/{id}/complete", tag = "store: checkout", request_body = PlaceOrder,
    params(("id" = String, Path), ("Idempotency-Key" = String, Header, description = "The same on every retry of this order")),
    responses(
        (status = 201, body = Order),
        (status = 400, description = "No Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "The payment was declined", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Being checked out, already an order, not enough stock, or the total changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The cart lacks something, or the payment details are invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The payment provider did not answer; nothing was charged", body = Problem, content_type = "application/problem+json"),
    ))]
async fn complete_cart(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<PlaceOrder>,
) -> AppResult<(StatusCode, Json<Order>)> {
    let key = idempotency_key(&headers)?;
    let hash = request_hash(&request);
    let mut row = cart::find_row(&state.db, None, &id).await?;
    if row.customer_id.as_deref().is_some_and(|owner| caller.customer_id() != Some(owner)) {
        return Err(AppError::not_found("No cart has this id, or it has expired."));
    }
    if row.status == "completed" {
        return already_placed(&state, &id, &key, &hash).await;
    }
    check_payment(&state, &request.payment)?;
    if row.checkout_until.is_some_and(|until| until < Timestamp::now()) {
        // An earlier attempt stopped half-way: give its stock back before pricing.
        reopen_lapsed(&state, &row).await?;
        row = cart::find_row(&state.db, None, &id).await?;
    }
    if row.checkout_until.is_some_and(|until| until >= Timestamp::now()) {
        // Another attempt is paying now; its stock would look taken to this one.
        return already_placed(&state, &id, &key, &hash).await;
    }
    let priced = cart::priced(&state.db, &row).await?;
    if !priced.missing.is_empty() {
        return Err(not_ready(&priced));
    }
    if request.expected_total.is_some_and(|total| total != priced.totals.total) {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!("The cart's total is now {}; read the cart again.", priced.totals.total),
        )
        .with_field("expected_total", "changed", "differs from the cart's total now"));
    }
    let held = match hold(&state, &row, &priced, &key, &request.payment).await? {
        Held::Taken(held) => held,
        Held::Busy => return already_placed(&state, &id, &key, &hash).await,
    };
    let provider = payments::provider(&request.payment.provider)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("provider vanished")))?;
    let charge = Charge {
        payment_id: &held.payment_id,
        amount: priced.totals.total,
        currency: &priced.currency,
        capture: state.config.checkout.capture == crate::platform::config::CaptureMode::Immediate,
        details: &request.payment,
    };
    let timeout = std::time::Duration::from_secs(state.config.checkout.payment_timeout_secs);
    let outcome = match tokio::time::timeout(timeout, provider.charge(&charge)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, payment.id = %held.payment_id, "payment provider failed");
            void(&state, provider, &held.payment_id).await;
            let problem = AppError::new(ErrorCode::Unavailable, "The payment could not be made; nothing was charged.");
            return Err(give_back(&state, &row, &held, "error", problem).await);
        }
        Err(_) => {
            void(&state, provider, &held.payment_id).await;
            let problem =
                AppError::new(ErrorCode::Timeout, "The payment provider did not answer in time; nothing was charged.");
            return Err(give_back(&state, &row, &held, "timed_out", problem).await);
        }
    };
    let (status, reference, captured) = match outcome {
        Outcome::Declined { reason } => {
            let problem = AppError::new(ErrorCode::PaymentDeclined, format!("The payment was declined ({reason})."))
                .with_field("payment", "declined", reason.clone());
            return Err(give_back(&state, &row, &held, &reason, problem).await);
        }
        Outcome::Pending => (Status::PendingPayment, None, 0),
        Outcome::Authorized { reference } => (Status::Authorized, Some(reference), 0),
        Outcome::Captured { reference } => (Status::Paid, Some(reference), priced.totals.total),
    };
    let paid = Paid { status, reference, captured };
    match place(&state, &row, &priced, &held, &paid, &key, &hash, &caller).await {
        Ok(order_id) => Ok((StatusCode::CREATED, Json(orders::find(&state.db, &order_id).await?))),
        Err(err) => {
            // A commit whose answer was lost may still have placed the order.
            if let Ok(placed) = already_placed(&state, &id, &key, &hash).await {
                return Ok(placed);
            }
            tracing::error!(error = %err, payment.id = %held.payment_id, "an order could not be placed; voiding its payment");
            void(&state, provider, paid.reference.as_deref().unwrap_or(&held.payment_id)).await;
            Err(give_back(&state, &row, &held, "not_placed", err).await)
        }
    }
}

/// What the hold took. `until` also tells this attempt's hold of the cart from a later one's.
struct Hold {
    payment_id: String,
    reservations: Vec<String>,
    until: Timestamp,
}

enum Held {
    Taken(Hold),
    /// Another attempt has the cart, or it became an order meanwhile.
    Busy,
}

/// Takes the cart for this attempt, reserves its stock and records the payment attempt.
async fn hold(state: &AppState, row: &CartRow, priced: &Cart, key: &str, payment: &PaymentDetails) -> AppResult<Held> {
    let now = Timestamp::now();
    let until = now.plus_secs(state.config.checkout.payment_timeout_secs + HOLD_MARGIN_SECS);
    let mut tx = state.db.begin().await?;
    let taken = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE carts SET checkout_key = $1, checkout_until = $2 WHERE id = $3 AND status = 'active' \
             AND version = $4 AND (checkout_until IS NULL OR checkout_until < $5)",
        )
        .bind(key)
        .bind(until)
        .bind(&row.id)
        .bind(row.version)
        .bind(now)
        .execute(conn)
        .await
    })?;
    if taken == 0 {
        let current = cart::find_row(&state.db, Some(&mut tx), &row.id).await?;
        let busy = current.status == "completed" || current.checkout_until.is_some_and(|until| until >= now);
        if busy {
            return Ok(Held::Busy);
        }
        return Err(AppError::new(ErrorCode::Conflict, "The cart changed meanwhile; read it again."));
    }
    release_abandoned(&mut tx, &row.id).await?;
    let mut reservations = Vec::with_capacity(priced.lines.len());
    // One order of locking for every checkout, so that two on PostgreSQL never wait on each other.
    let mut lines: Vec<(usize, &cart::CartLine)> = priced.lines.iter().enumerate().collect();
    lines.sort_by(|a, b| a.1.variant_id.cmp(&b.1.variant_id));
    for (index, line) in lines {
        let reserved = inventory::reserve(
            &mut tx,
            &line.variant_id,
            line.quantity,
            state.config.checkout.hold_secs,
            Some(&row.id),
        )
        .await;
        match reserved {
            Ok(reservation) => reservations.push(reservation.id),
            Err(err) if err.status() == StatusCode::CONFLICT => {
                return Err(AppError::new(ErrorCode::Conflict, format!("Not enough stock of {}.", line.title))
                    .with_field(
                        &format!("lines[{index}].quantity"),
                        "insufficient_stock",
                        "is more than is available",
                    ));
            }
            Err(err) => return Err(err),
        }
    }
    let payment_id = new_id("pay");
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO payments (id, cart_id, provider, status, currency, amount, reservations, created_at, \
             updated_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $7)",
        )
        .bind(&payment_id)
        .bind(&row.id)
        .bind(&payment.provider)
        .bind(&priced.currency)
        .bind(priced.totals.total)
        .bind(serde_json::to_string(&reservations).map_err(AppError::internal)?)
        .bind(now)
        .execute(conn)
        .await
    })?;
    let email = priced.email.as_deref().unwrap_or_default();
    promotions::take_uses(&mut tx, &priced.discounts, &payment_id, email, row.customer_id.as_deref()).await?;
    tx.commit().await?;
    Ok(Held::Taken(Hold { payment_id, reservations, until }))
}

/// Frees a cart whose checkout attempt stopped half-way (its hold lapsed) and gives back the
/// stock that attempt reserved.
async fn reopen_lapsed(state: &AppState, row: &CartRow) -> AppResult<()> {
    let mut tx = state.db.begin().await?;
    let taken = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE carts SET checkout_key = NULL, checkout_until = NULL WHERE id = $1 AND status = 'active' \
             AND checkout_until = $2",
        )
        .bind(&row.id)
        .bind(row.checkout_until)
        .execute(conn)
        .await
    })?;
    if taken == 1 {
        release_abandoned(&mut tx, &row.id).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Ends the attempts on this cart that never finished (the process stopped mid-checkout):
/// their stock goes back, their payments are marked voided.
async fn release_abandoned(tx: &mut Tx, cart_id: &str) -> AppResult<()> {
    let abandoned = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String)>(
            "SELECT id, reservations FROM payments WHERE cart_id = $1 AND status = 'pending' AND order_id IS NULL",
        )
        .bind(cart_id)
        .fetch_all(conn)
        .await
    })?;
    for (payment_id, reservations) in abandoned {
        let reservations: Vec<String> = serde_json::from_str(&reservations).unwrap_or_default();
        for reservation in reservations {
            // An expired or already released reservation has nothing left to give back.
            let _ = inventory::release(tx, &reservation).await;
        }
        promotions::give_back_uses(tx, &payment_id).await?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query("UPDATE payments SET status = 'voided', failure = 'abandoned', updated_at = $1 WHERE id = $2")
                .bind(Timestamp::now())
                .bind(&payment_id)
                .execute(conn)
                .await
        })?;
    }
    Ok(())
}

/// After a failed attempt: the stock goes back, the payment is marked `failed` with its
/// reason, and the cart is free again. Answers `problem`, or the error that stopped this.
async fn give_back(state: &AppState, row: &CartRow, held: &Hold, reason: &str, problem: AppError) -> AppError {
    let undo = async {
        let mut tx = state.db.begin().await?;
        for reservation in &held.reservations {
            let _ = inventory::release(&mut tx, reservation).await;
        }
        promotions::give_back_uses(&mut tx, &held.payment_id).await?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "UPDATE payments SET status = 'failed', failure = $1, updated_at = $2 \
                 WHERE id = $3 AND order_id IS NULL",
            )
            .bind(reason)
            .bind(Timestamp::now())
            .bind(&held.payment_id)
            .execute(conn)
            .await
        })?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "UPDATE carts SET checkout_key = NULL, checkout_until = NULL WHERE id = $1 AND status = 'active' \
                 AND checkout_until = $2",
            )
            .bind(&row.id)
            .bind(held.until)
            .execute(conn)
            .await
        })?;
        tx.commit().await?;
        AppResult::Ok(())
    };
    match undo.await {
        Ok(()) => problem,
        Err(err) => {
            tracing::error!(error = %err, cart.id = %row.id, "a failed checkout could not be undone; its hold lapses");
            problem
        }
    }
}

struct Paid {
    status: Status,
    reference: Option<String>,
    captured: i64,
}

/// The next order number.
async fn next_number(tx: &mut Tx) -> AppResult<i64> {
    Ok(match tx.conn() {
        Backend::Sqlite(conn) => {
            sqlx::query_scalar::<_, i64>(
                "UPDATE counters SET value = value + 1 WHERE name = 'order_number' RETURNING value",
            )
            .fetch_one(conn)
            .await?
        }
        Backend::Postgres(conn) => {
            sqlx::query_scalar::<_, i64>("SELECT nextval('order_numbers')").fetch_one(conn).await?
        }
    })
}

/// Writes the order, sells the held stock and completes the cart; returns the order's id.
#[expect(clippy::too_many_arguments, reason = "the whole of one checkout, passed once")]
async fn place(
    state: &AppState,
    row: &CartRow,
    priced: &Cart,
    held: &Hold,
    paid: &Paid,
    key: &str,
    hash: &str,
    caller: &MaybeCustomer,
) -> AppResult<String> {
    let (Some(shipping_address), Some(method), Some(email)) =
        (&priced.shipping_address, &priced.shipping_method, &priced.email)
    else {
        return Err(AppError::internal(anyhow::anyhow!("a cart without address, method or email reached placing")));
    };
    let billing_address = priced.billing_address.as_ref().unwrap_or(shipping_address);
    let actor = match caller.customer_id() {
        Some(customer) => Actor { kind: "customer", id: customer },
        None => Actor { kind: "guest", id: &row.id },
    };
    // A guest cart placed by a signed-in customer is their order.
    let customer_id = row.customer_id.as_deref().or(caller.customer_id());
    let order_id = new_id("ord");
    let now = Timestamp::now();
    let shipping = OrderShipping {
        id: method.id.clone(),
        name: method.name.clone(),
        amount: method.amount,
        estimate: method.estimate.clone(),
    };
    let mut tx = state.db.begin().await?;
    let number = next_number(&mut tx).await?;
    let totals = &priced.totals;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO orders (id, number, cart_id, idempotency_key, request_hash, customer_id, email, region_id, \
             currency, tax_inclusive, tax_exempt, status, shipping_address, billing_address, shipping_method, \
             subtotal, discount_total, shipping_total, shipping_tax, tax_total, total, paid_total, placed_at, \
             updated_at, discounts, shipping_discount) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $23, $24, $25)",
        )
        .bind(&order_id)
        .bind(number)
        .bind(&row.id)
        .bind(key)
        .bind(hash)
        .bind(customer_id)
        .bind(email)
        .bind(&priced.region_id)
        .bind(&priced.currency)
        .bind(priced.tax_inclusive)
        .bind(priced.tax_exempt)
        .bind(paid.status.as_str())
        .bind(to_json(shipping_address)?)
        .bind(to_json(billing_address)?)
        .bind(to_json(&shipping)?)
        .bind(totals.subtotal)
        .bind(totals.discount_total)
        .bind(totals.shipping)
        .bind(totals.shipping_tax)
        .bind(totals.tax_total)
        .bind(totals.total)
        .bind(paid.captured)
        .bind(now)
        .bind(to_json(&priced.discounts)?)
        .bind(totals.shipping_discount)
        .execute(conn)
        .await
    })?;
    promotions::keep_uses(&mut tx, &held.payment_id, &order_id).await?;
    for (position, line) in priced.lines.iter().enumerate() {
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO order_lines (id, order_id, position, variant_id, product_id, title, variant_title, sku, \
                 quantity, unit_amount, subtotal, discount, tax_class, tax_rate_bps, tax_name, tax, total) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(new_id("oli"))
            .bind(&order_id)
            .bind(position as i64)
            .bind(&line.variant_id)
            .bind(&line.product_id)
            .bind(&line.title)
            .bind(&line.variant_title)
            .bind(&line.sku)
            .bind(line.quantity)
            .bind(line.unit_amount.unwrap_or(0))
            .bind(line.subtotal)
            .bind(line.discount)
            .bind(&line.tax_class)
            .bind(line.tax_rate_bps)
            .bind(&line.tax_name)
            .bind(line.tax)
            .bind(line.total)
            .execute(conn)
            .await
        })?;
    }
    for reservation in &held.reservations {
        inventory::commit(state, &mut tx, reservation, actor).await?;
    }
    let payment_status = match paid.status {
        Status::PendingPayment => "pending",
        Status::Authorized => "authorized",
        _ => "captured",
    };
    let recorded = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE payments SET order_id = $1, status = $2, provider_ref = $3, captured_amount = $4, updated_at = $5 \
             WHERE id = $6 AND status = 'pending' AND order_id IS NULL",
        )
        .bind(&order_id)
        .bind(payment_status)
        .bind(&paid.reference)
        .bind(paid.captured)
        .bind(now)
        .bind(&held.payment_id)
        .execute(conn)
        .await
    })?;
    let completed = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE carts SET status = 'completed', order_id = $1, checkout_until = NULL, updated_at = $2 \
             WHERE id = $3 AND status = 'active' AND checkout_until = $4",
        )
        .bind(&order_id)
        .bind(now)
        .bind(&row.id)
        .bind(held.until)
        .execute(conn)
        .await
    })?;
    if recorded != 1 || completed != 1 {
        return Err(AppError::new(ErrorCode::Conflict, "This checkout attempt lost its hold on the cart; try again."));
    }
    let detail = serde_json::json!({ "payment_id": held.payment_id, "provider_status": payment_status });
    orders::record_event(&mut tx, &order_id, "placed", Some((None, paid.status)), detail, actor).await?;
    let email_message = confirmation(state, number, email, priced, shipping_address, &shipping)?;
    messaging::send_email(&mut tx, &email_message).await?;
    let summary = serde_json::json!({
        "id": order_id, "number": number, "status": paid.status, "email": email, "currency": priced.currency,
        "total": totals.total, "lines": priced.lines.iter().map(|line| serde_json::json!({
            "variant_id": line.variant_id, "sku": line.sku, "quantity": line.quantity, "total": line.total,
        })).collect::<Vec<_>>(),
    });
    webhooks::emit(state, &mut tx, "order.placed", &summary).await?;
    tx.commit().await?;
    Ok(order_id)
}

/// The order confirmation email.
fn confirmation(
    state: &AppState,
    number: i64,
    email: &str,
    priced: &Cart,
    address: &super::address::Address,
    shipping: &OrderShipping,
) -> AppResult<crate::platform::mail::Email> {
    let currency = priced.currency.as_str();
    let lines: Vec<_> = priced
        .lines
        .iter()
        .map(|line| {
            context! {
                title => line.title,
                variant_title => line.variant_title,
                quantity => line.quantity,
                total => money::format(line.total, currency),
            }
        })
        .collect();
    let totals = &priced.totals;
    let values = context! {
        number,
        lines,
        subtotal => money::format(totals.subtotal, currency),
        shipping => money::format(totals.shipping, currency),
        shipping_method => shipping.name,
        estimate => shipping.estimate,
        tax => money::format(totals.tax_total, currency),
        tax_inclusive => priced.tax_inclusive,
        total => money::format(totals.total, currency),
        address => address,
    };
    state.templates.render("order_confirmation", email, values).map_err(AppError::internal)
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> AppResult<String> {
    serde_json::to_string(value).map_err(AppError::internal)
}
