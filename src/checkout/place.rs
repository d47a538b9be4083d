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
use axum::response::{IntoResponse, Response};
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
use crate::orders::{self, Order, OrderLine, OrderShipping};
use crate::payments::{self, Charge, Outcome, PaymentDetails};
use crate::platform::batch::Batch;
use crate::platform::db::{Param, Tx};
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
    let method = request.payment.payment_method.as_deref().unwrap_or_default();
    let canonical = format!("{}\n{}:{last_four}\n{method}\n{total}", request.payment.provider, card.len());
    Sha256::digest(canonical.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Asks the provider to void, for at most the payment timeout; whether it did.
async fn void(state: &AppState, provider: &dyn payments::Provider, reference: &str) -> bool {
    payments::void_within(provider, reference, state.config.payment_timeout()).await
}

fn check_payment(state: &AppState, details: &PaymentDetails) -> AppResult<()> {
    let enabled = state.config.checkout.providers.contains(&details.provider);
    if !enabled || state.payments.get(&details.provider).is_none() {
        return Err(AppError::invalid_field("payment.provider", "unknown", "is not a payment method this shop takes"));
    }
    let card = details.card_number.as_deref();
    let method = details.payment_method.as_deref();
    match details.provider.as_str() {
        "test" if !card.is_some_and(payments::luhn_valid) => {
            Err(AppError::invalid_field("payment.card_number", "invalid", "is not a valid card number"))
        }
        "stripe" if !method.is_some_and(|m| m.starts_with("pm_") && m.len() <= 255) => Err(AppError::invalid_field(
            "payment.payment_method",
            "invalid",
            "must be the id of a Stripe PaymentMethod (pm_...)",
        )),
        "stripe"
            if details.return_url.as_deref().is_some_and(|url| !url.starts_with("https://") || url.len() > 2000) =>
        {
            Err(AppError::invalid_field("payment.return_url", "invalid", "must be an https:// address"))
        }
        "test" if method.is_some() => {
            Err(AppError::invalid_field("payment.payment_method", "unexpected", "this method takes a card number"))
        }
        "stripe" if card.is_some() => {
            Err(AppError::invalid_field("payment.card_number", "unexpected", "cards go to Stripe, never here"))
        }
        "manual" if card.is_some() || method.is_some() => {
            Err(AppError::invalid_field("payment.card_number", "unexpected", "this method takes no card"))
        }
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
    let found = db_run!(state.db.read().await?, |conn| {
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
    } else if cart.missing.iter().any(|missing| missing == "code_not_applicable") {
        AppError::new(ErrorCode::Conflict, "A code in the cart gives nothing now; remove it to continue.")
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
        (status = 202, description = "The shopper must authenticate the payment (3-D Secure)", body = ActionRequired),
        (status = 400, description = "No Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 402, description = "The payment was declined", body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Being checked out, already an order, not enough stock, or the total changed", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The cart lacks something, or the payment details are invalid", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The payment provider did not answer; nothing was charged", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn complete_cart(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(request): Json<PlaceOrder>,
) -> AppResult<Response> {
    let key = idempotency_key(&headers)?;
    let hash = request_hash(&request);
    // The cart is read with its lines, which price it unless it has to be read again.
    let (mut row, mut contents, _) = cart::find_with_contents(&state.db, &id, None).await?;
    if row.customer_id.as_deref().is_some_and(|owner| caller.customer_id() != Some(owner)) {
        return Err(AppError::not_found("No cart has this id, or it has expired."));
    }
    if row.status == "completed" {
        return already_placed(&state, &id, &key, &hash).await.map(IntoResponse::into_response);
    }
    check_payment(&state, &request.payment)?;
    let actor = match caller.customer_id() {
        Some(customer) => Actor { kind: "customer", id: customer },
        None => Actor { kind: "guest", id: &id },
    };
    // The shopper back from 3-D Secure: the payment that waited on them is finished, even
    // when they took longer than the hold (it is then refused and voided, never charged twice).
    if row.checkout_until.is_some()
        && let Some(waiting) = waiting_payment(&state, &id).await?
        && waiting.idempotency_key.as_deref() == Some(key.as_str())
    {
        return finish(&state, &waiting, actor).await.map(Finished::into_response);
    }
    if row.checkout_until.is_some_and(|until| until < Timestamp::now()) {
        // An earlier attempt stopped half-way: give its stock back before pricing.
        reopen_lapsed(&state, &row).await?;
        (row, contents, _) = cart::find_with_contents(&state.db, &id, None).await?;
    }
    if row.checkout_until.is_some_and(|until| until >= Timestamp::now()) {
        // Another attempt is paying now; its stock would look taken to this one.
        return already_placed(&state, &id, &key, &hash).await.map(IntoResponse::into_response);
    }
    let priced = cart::priced_with(&state, &row, &contents).await?;
    // Read with the prices: what the stock is taken by.
    let policies = inventory::Policies::new(
        contents.facts.into_values().map(|fact| (fact.variant_id, fact.inventory_policy, fact.product_id)),
    );
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
    let mut snapshot = priced.clone();
    snapshot.customer_id = row.customer_id.clone().or_else(|| caller.customer_id().map(str::to_owned));
    let priced = snapshot;
    let held = match hold(&state, &row, &priced, &policies, &key, &hash, &request.payment).await? {
        Held::Taken(held) => held,
        Held::Busy => return already_placed(&state, &id, &key, &hash).await.map(IntoResponse::into_response),
    };
    let provider = state
        .payments
        .get(&request.payment.provider)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("provider vanished")))?;
    let charge = Charge {
        payment_id: &held.payment_id,
        amount: priced.totals.total,
        currency: &priced.currency,
        capture: state.config.checkout.capture == crate::platform::config::CaptureMode::Immediate,
        details: &request.payment,
    };
    // A little longer than the provider's own limit, so that a provider can clean up after an
    // answer it never got (cancel the payment it could not confirm) before it is cut short.
    let timeout = std::time::Duration::from_secs(state.config.checkout.payment_timeout_secs + 5);
    let outcome = match tokio::time::timeout(timeout, provider.charge(&charge)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, payment.id = %held.payment_id, "payment provider failed");
            void(&state, provider, &held.payment_id).await;
            let problem = AppError::new(ErrorCode::Unavailable, "The payment could not be made; nothing was charged.");
            return Err(give_back(&state, &id, &held, "error", problem).await);
        }
        Err(_) => {
            void(&state, provider, &held.payment_id).await;
            let problem =
                AppError::new(ErrorCode::Timeout, "The payment provider did not answer in time; nothing was charged.");
            return Err(give_back(&state, &id, &held, "timed_out", problem).await);
        }
    };
    conclude(&state, &id, &priced, &held, outcome, &key, &hash, provider, actor).await.map(Finished::into_response)
}

/// How a checkout ended, for the shopper.
pub enum Finished {
    Placed(Box<Order>),
    /// The shopper must act at `redirect_url`, then call `complete` again with the same key.
    Waiting {
        payment_id: String,
        redirect_url: String,
    },
}

/// What a checkout waiting on the shopper answers (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionRequired {
    /// `requires_action`.
    pub status: &'static str,
    pub payment_id: String,
    /// Send the shopper here (3-D Secure); then call `complete` again with the same key, or
    /// let the provider's webhook finish the order.
    pub redirect_url: String,
}

impl Finished {
    fn into_response(self) -> Response {
        match self {
            Self::Placed(order) => (StatusCode::CREATED, Json(order)).into_response(),
            Self::Waiting { payment_id, redirect_url } => {
                let body = ActionRequired { status: "requires_action", payment_id, redirect_url };
                (StatusCode::ACCEPTED, Json(body)).into_response()
            }
        }
    }
}

/// Acts on what the provider answered: places the order, waits on the shopper, or gives the
/// hold back.
#[expect(clippy::too_many_arguments, reason = "the whole of one checkout, passed once")]
async fn conclude(
    state: &AppState,
    cart_id: &str,
    priced: &Cart,
    held: &Hold,
    outcome: Outcome,
    key: &str,
    hash: &str,
    provider: &dyn payments::Provider,
    actor: Actor<'_>,
) -> AppResult<Finished> {
    let (status, reference, captured) = match outcome {
        Outcome::Declined { reason } => {
            let problem = AppError::new(ErrorCode::PaymentDeclined, format!("The payment was declined ({reason})."))
                .with_field("payment", "declined", reason.clone());
            return Err(give_back(state, cart_id, held, &reason, problem).await);
        }
        Outcome::RequiresAction { reference, redirect_url } => {
            wait_on_shopper(state, cart_id, held, &reference).await?;
            return Ok(Finished::Waiting { payment_id: held.payment_id.clone(), redirect_url });
        }
        Outcome::Pending => (Status::PendingPayment, None, 0),
        Outcome::Authorized { reference } => (Status::Authorized, Some(reference), 0),
        Outcome::Captured { reference } => (Status::Paid, Some(reference), priced.totals.total),
    };
    let paid = Paid { status, reference, captured };
    match place(state, cart_id, priced, held, &paid, key, hash, actor).await {
        Ok(order) => Ok(Finished::Placed(Box::new(order))),
        Err(err) => {
            // A commit whose answer was lost may still have placed the order.
            if let Ok((_, Json(order))) = already_placed(state, cart_id, key, hash).await {
                return Ok(Finished::Placed(Box::new(order)));
            }
            tracing::error!(error = %err, payment.id = %held.payment_id, "an order could not be placed; voiding its payment");
            void(state, provider, paid.reference.as_deref().unwrap_or(&held.payment_id)).await;
            Err(give_back(state, cart_id, held, "not_placed", err).await)
        }
    }
}

/// Keeps the hold while the shopper authenticates: the cart stays taken, and its stock held,
/// until the reservations expire.
async fn wait_on_shopper(state: &AppState, cart_id: &str, held: &Hold, reference: &str) -> AppResult<()> {
    // Until a little before the stock's reservations expire.
    let until = held.started.plus_secs(state.config.checkout.hold_secs.saturating_sub(HOLD_MARGIN_SECS));
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE payments SET status = 'requires_action', provider_ref = $1, updated_at = $2, hold_until = $3 \
             WHERE id = $4",
        )
        .bind(reference)
        .bind(Timestamp::now())
        .bind(until)
        .bind(&held.payment_id)
        .execute(conn)
        .await
    })?;
    let kept = db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE carts SET checkout_until = $1 WHERE id = $2 AND status = 'active' AND checkout_until = $3")
            .bind(until)
            .bind(cart_id)
            .bind(held.until)
            .execute(conn)
            .await
    })?;
    if kept != 1 {
        return Err(AppError::new(ErrorCode::Conflict, "This checkout attempt lost its hold on the cart; try again."));
    }
    tx.commit().await?;
    Ok(())
}

/// A payment that waits on the shopper, with what it was for.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Waiting {
    pub id: String,
    pub cart_id: String,
    pub provider: String,
    pub provider_ref: Option<String>,
    pub status: String,
    pub order_id: Option<String>,
    pub reservations: String,
    pub snapshot: Option<String>,
    pub request_hash: Option<String>,
    pub idempotency_key: Option<String>,
    pub hold_until: Option<Timestamp>,
    pub created_at: Timestamp,
}

const WAITING_COLUMNS: &str = "id, cart_id, provider, provider_ref, status, order_id, reservations, snapshot, \
     request_hash, idempotency_key, hold_until, created_at";

async fn waiting_payment(state: &AppState, cart_id: &str) -> AppResult<Option<Waiting>> {
    let sql = format!(
        "SELECT {WAITING_COLUMNS} FROM payments WHERE cart_id = $1 AND status = 'requires_action' \
         AND order_id IS NULL ORDER BY id DESC LIMIT 1"
    );
    Ok(db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, Waiting>(&sql)
        .bind(cart_id)
        .fetch_optional(conn)
        .await)?)
}

/// Our payment `id`.
pub async fn payment_by_id(state: &AppState, id: &str) -> AppResult<Option<Waiting>> {
    let sql = format!("SELECT {WAITING_COLUMNS} FROM payments WHERE id = $1");
    Ok(db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, Waiting>(&sql).bind(id).fetch_optional(conn).await)?)
}

/// The payment the provider knows as `reference`.
pub async fn payment_by_reference(state: &AppState, provider: &str, reference: &str) -> AppResult<Option<Waiting>> {
    let sql = format!("SELECT {WAITING_COLUMNS} FROM payments WHERE provider = $1 AND provider_ref = $2");
    Ok(db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Waiting>(&sql).bind(provider).bind(reference).fetch_optional(conn).await
    })?)
}

/// Finishes a payment that waited on the shopper, as the provider says it stands now: the
/// order is placed, the wait goes on, or the hold is given back. Safe to run more than once,
/// from the shopper's return and from the provider's webhook at the same time.
pub async fn finish(state: &AppState, waiting: &Waiting, actor: Actor<'_>) -> AppResult<Finished> {
    let (Some(reference), Some(snapshot)) = (&waiting.provider_ref, &waiting.snapshot) else {
        return Err(AppError::new(ErrorCode::Conflict, "This payment is not waiting on the shopper."));
    };
    let provider = state
        .payments
        .get(&waiting.provider)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("unknown provider {}", waiting.provider)))?;
    let timeout = state.config.payment_timeout();
    let outcome = match tokio::time::timeout(timeout, provider.status(reference)).await {
        Ok(Ok(outcome)) => outcome,
        _ => return Err(AppError::new(ErrorCode::Unavailable, "The payment provider did not answer; try again.")),
    };
    let priced: Cart = serde_json::from_str(snapshot).map_err(AppError::internal)?;
    let ids: Vec<String> = serde_json::from_str(&waiting.reservations).unwrap_or_default();
    let held = Hold {
        payment_id: waiting.id.clone(),
        provider: waiting.provider.clone(),
        reservations: inventory::reservations(&state.db, &ids).await?,
        until: waiting.hold_until.unwrap_or_default(),
        started: waiting.created_at,
    };
    let key = waiting.idempotency_key.clone().unwrap_or_default();
    let hash = waiting.request_hash.clone().unwrap_or_default();
    if let Outcome::RequiresAction { redirect_url, .. } = outcome {
        return Ok(Finished::Waiting { payment_id: waiting.id.clone(), redirect_url });
    }
    conclude(state, &waiting.cart_id, &priced, &held, outcome, &key, &hash, provider, actor).await
}

/// What the hold took. `until` also tells this attempt's hold of the cart from a later one's.
struct Hold {
    payment_id: String,
    /// The payment provider's name.
    provider: String,
    reservations: Vec<inventory::Reservation>,
    until: Timestamp,
    /// When the stock was reserved: it stays held `checkout.hold_secs` from then.
    started: Timestamp,
}

enum Held {
    Taken(Hold),
    /// Another attempt has the cart, or it became an order meanwhile.
    Busy,
}

/// Takes the cart for this attempt, reserves its stock and records the payment attempt. The
/// stock is taken in the trip that takes the cart; should a line find too little there on
/// PostgreSQL, the transaction rolls back and the stock is taken again line by line once the
/// cart is taken, as [`inventory::reserve_all`] does, looking at every location.
async fn hold(
    state: &AppState,
    row: &CartRow,
    priced: &Cart,
    policies: &inventory::Policies,
    key: &str,
    hash: &str,
    payment: &PaymentDetails,
) -> AppResult<Held> {
    for line_by_line in [false, true] {
        let now = Timestamp::now();
        let until = now.plus_secs(state.config.checkout.payment_timeout_secs + HOLD_MARGIN_SECS);
        // A cart is free when no attempt holds it, or when the last one's hold lapsed: that
        // attempt's leftovers are released with the taking, before any stock is reserved.
        let lapsed = row.checkout_until.is_some();
        let free = if lapsed { "checkout_until < $5" } else { "checkout_until IS NULL" };
        let sql = format!(
            "UPDATE carts SET checkout_key = $1, checkout_until = $2 WHERE id = $3 AND status = 'active' \
             AND version = $4 AND {free}"
        );
        let mut params = vec![
            Param::Text(key.to_owned()),
            Param::Int(until.0),
            Param::Text(row.id.clone()),
            Param::Int(row.version),
        ];
        if lapsed {
            params.push(Param::Int(now.0));
        }
        // One order of locking for every checkout, so that two on PostgreSQL never wait on each other.
        let mut lines: Vec<(usize, &cart::CartLine)> = priced.lines.iter().enumerate().collect();
        lines.sort_by(|a, b| a.1.variant_id.cmp(&b.1.variant_id));
        let wants: Vec<(&str, i64)> = lines.iter().map(|(_, line)| (line.variant_id.as_str(), line.quantity)).collect();
        let mut taking = Batch::new();
        taking.push(sql, params);
        // The stock is taken in the same trip as the cart; should the cart not be taken, the
        // transaction rolls back and nothing was.
        let reserving = if lapsed || line_by_line {
            None
        } else {
            Some(inventory::Reserving::push(&mut taking, policies, &wants)?)
        };
        let (mut tx, ran) = state.db.begin_with(&taking).await?;
        let taken = ran[0].changed();
        if taken == 0 {
            let current = cart::find_row(&state.db, Some(&mut tx), &row.id).await?;
            let busy = current.status == "completed" || current.checkout_until.is_some_and(|until| until >= now);
            if busy {
                return Ok(Held::Busy);
            }
            return Err(AppError::new(ErrorCode::Conflict, "The cart changed meanwhile; read it again."));
        }
        let to_void = if lapsed { release_abandoned(&mut tx, &row.id).await? } else { Vec::new() };
        let hold_secs = state.config.checkout.hold_secs;
        // The reservations and the payment attempt are written with the commit.
        let mut writes = Batch::new();
        let reserved = match reserving {
            Some(reserving) => match reserving.finish(&mut tx, &ran, hold_secs, Some(&row.id), &mut writes)? {
                Some(reserved) => reserved,
                None => continue,
            },
            None => inventory::reserve_all(&mut tx, policies, &wants, hold_secs, Some(&row.id), &mut writes).await?,
        };
        let reservations = match reserved {
            Ok(reservations) => reservations,
            Err(short) => {
                let (index, line) = lines[short];
                return Err(AppError::new(ErrorCode::Conflict, format!("Not enough stock of {}.", line.title))
                    .with_field(
                        &format!("lines[{index}].quantity"),
                        "insufficient_stock",
                        "is more than is available",
                    ));
            }
        };
        let payment_id = new_id("pay");
        let email = priced.email.as_deref().unwrap_or_default();
        promotions::take_uses(&mut tx, &priced.discounts, &payment_id, email, priced.customer_id.as_deref()).await?;
        let ids: Vec<&str> = reservations.iter().map(|reservation| reservation.id.as_str()).collect();
        writes.push(
            "INSERT INTO payments (id, cart_id, provider, status, currency, amount, reservations, created_at, \
             updated_at, snapshot, request_hash, idempotency_key) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $7, $8, $9, $10)",
            vec![
                Param::Text(payment_id.clone()),
                Param::Text(row.id.clone()),
                Param::Text(payment.provider.clone()),
                Param::Text(priced.currency.clone()),
                Param::Int(priced.totals.total),
                Param::Text(serde_json::to_string(&ids).map_err(AppError::internal)?),
                Param::Int(now.0),
                Param::Text(to_json(priced)?),
                Param::Text(hash.to_owned()),
                Param::Text(key.to_owned()),
            ],
        );
        tx.commit_with(&writes).await?;
        void_all(state, to_void).await;
        return Ok(Held::Taken(Hold {
            payment_id,
            provider: payment.provider.clone(),
            reservations,
            until,
            started: now,
        }));
    }
    Err(AppError::internal(anyhow::anyhow!("stock reserved line by line asked to be again")))
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
    let to_void = if taken == 1 { release_abandoned(&mut tx, &row.id).await? } else { Vec::new() };
    tx.commit().await?;
    void_all(state, to_void).await;
    Ok(())
}

/// Ends the attempts on this cart that never finished (the process stopped mid-checkout, or
/// the shopper never finished 3-D Secure): their stock goes back, their promotion uses too,
/// their payments are marked voided. Answers the provider payments to void once this commits.
async fn release_abandoned(tx: &mut Tx, cart_id: &str) -> AppResult<Vec<(String, String)>> {
    let abandoned = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String, String, Option<String>)>(
            "SELECT id, reservations, provider, provider_ref FROM payments WHERE cart_id = $1 \
             AND status IN ('pending', 'requires_action') AND order_id IS NULL",
        )
        .bind(cart_id)
        .fetch_all(conn)
        .await
    })?;
    let mut to_void = Vec::new();
    for (payment_id, reservations, provider, reference) in abandoned {
        to_void.push((provider, reference.unwrap_or_else(|| payment_id.clone())));
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
    Ok(to_void)
}

/// Voids at their providers the payments of attempts that were abandoned.
async fn void_all(state: &AppState, payments: Vec<(String, String)>) {
    state.payments.void_all(payments, state.config.payment_timeout()).await;
}

/// Ends every checkout attempt left unfinished for longer than stock is held: for the
/// cleanup job, so that abandoned 3-D Secure and interrupted checkouts give back their stock
/// and promotion uses even when their carts are never touched again. Returns how many.
pub async fn release_stale(state: &AppState) -> AppResult<u64> {
    let before = Timestamp::now().plus_millis(-((state.config.checkout.hold_secs as i64 + 60) * 1000));
    let carts = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT cart_id FROM payments WHERE status IN ('pending', 'requires_action') \
             AND order_id IS NULL AND created_at < $1",
        )
        .bind(before)
        .fetch_all(conn)
        .await
    })?;
    let mut released = 0;
    for cart_id in carts {
        let mut tx = state.db.begin().await?;
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "UPDATE carts SET checkout_key = NULL, checkout_until = NULL WHERE id = $1 AND status = 'active' \
                 AND checkout_until < $2",
            )
            .bind(&cart_id)
            .bind(Timestamp::now())
            .execute(conn)
            .await
        })?;
        let to_void = release_abandoned(&mut tx, &cart_id).await?;
        tx.commit().await?;
        released += to_void.len() as u64;
        void_all(state, to_void).await;
    }
    Ok(released)
}

/// After a failed attempt: the stock goes back, the payment is marked `failed` with its
/// reason, and the cart is free again. Answers `problem`, or the error that stopped this.
async fn give_back(state: &AppState, cart_id: &str, held: &Hold, reason: &str, problem: AppError) -> AppError {
    let undo = async {
        let mut tx = state.db.begin().await?;
        for reservation in &held.reservations {
            let _ = inventory::release(&mut tx, &reservation.id).await;
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
            .bind(cart_id)
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
            tracing::error!(error = %err, cart.id = %cart_id, "a failed checkout could not be undone; its hold lapses");
            problem
        }
    }
}

struct Paid {
    status: Status,
    reference: Option<String>,
    captured: i64,
}

/// Writes the order, sells the held stock and completes the cart; returns the order as written.
#[expect(clippy::too_many_arguments, reason = "the whole of one checkout, passed once")]
async fn place(
    state: &AppState,
    cart_id: &str,
    priced: &Cart,
    held: &Hold,
    paid: &Paid,
    key: &str,
    hash: &str,
    actor: Actor<'_>,
) -> AppResult<Order> {
    let (Some(shipping_address), Some(method), Some(email)) =
        (&priced.shipping_address, &priced.shipping_method, &priced.email)
    else {
        return Err(AppError::internal(anyhow::anyhow!("a cart without address, method or email reached placing")));
    };
    if held.reservations.len() != priced.lines.len() {
        return Err(AppError::new(ErrorCode::Conflict, "The stock held for this checkout is no longer held."));
    }
    let billing_address = priced.billing_address.as_ref().unwrap_or(shipping_address);
    // A guest cart placed by a signed-in customer is their order (the hold noted who).
    let customer_id = priced.customer_id.as_deref();
    let order_id = new_id("ord");
    let now = Timestamp::now();
    let shipping = OrderShipping {
        id: method.id.clone(),
        name: method.name.clone(),
        amount: method.amount,
        estimate: method.estimate.clone(),
    };
    let totals = &priced.totals;
    // The order and its lines are written in the trip that begins the transaction; the
    // order's number comes from the database's counter as the order is written.
    let mut writing = Batch::new();
    let number_sql = if state.db.is_sqlite() {
        writing.push("UPDATE counters SET value = value + 1 WHERE name = 'order_number'", Vec::new());
        "(SELECT value FROM counters WHERE name = 'order_number')"
    } else {
        "nextval('order_numbers')"
    };
    writing.push(
        format!(
            "INSERT INTO orders (id, number, cart_id, idempotency_key, request_hash, customer_id, email, region_id, \
             currency, tax_inclusive, tax_exempt, status, shipping_address, billing_address, shipping_method, \
             subtotal, discount_total, shipping_total, shipping_tax, tax_total, total, paid_total, placed_at, \
             updated_at, discounts, shipping_discount) VALUES ($1, {number_sql}, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $22, $23, $24) RETURNING number"
        ),
        vec![
            Param::Text(order_id.clone()),
            Param::Text(cart_id.to_owned()),
            Param::Text(key.to_owned()),
            Param::Text(hash.to_owned()),
            Param::MaybeText(customer_id.map(str::to_owned)),
            Param::Text(email.clone()),
            Param::Text(priced.region_id.clone()),
            Param::Text(priced.currency.clone()),
            Param::Bool(priced.tax_inclusive),
            Param::Bool(priced.tax_exempt),
            Param::Text(paid.status.as_str().to_owned()),
            Param::Text(to_json(shipping_address)?),
            Param::Text(to_json(billing_address)?),
            Param::Text(to_json(&shipping)?),
            Param::Int(totals.subtotal),
            Param::Int(totals.discount_total),
            Param::Int(totals.shipping),
            Param::Int(totals.shipping_tax),
            Param::Int(totals.tax_total),
            Param::Int(totals.total),
            Param::Int(paid.captured),
            Param::Int(now.0),
            Param::Text(to_json(&priced.discounts)?),
            Param::Int(totals.shipping_discount),
        ],
    );
    let order_at = writing.len() - 1;
    let lines: Vec<OrderLine> = priced
        .lines
        .iter()
        .map(|line| OrderLine {
            id: new_id("oli"),
            variant_id: line.variant_id.clone(),
            product_id: line.product_id.clone(),
            title: line.title.clone(),
            variant_title: line.variant_title.clone(),
            sku: line.sku.clone(),
            quantity: line.quantity,
            unit_amount: line.unit_amount.unwrap_or(0),
            subtotal: line.subtotal,
            discount: line.discount,
            tax_class: line.tax_class.clone(),
            tax_rate_bps: line.tax_rate_bps,
            tax_name: line.tax_name.clone(),
            tax: line.tax,
            total: line.total,
        })
        .collect();
    let rows: Vec<Vec<Param>> = lines
        .iter()
        .enumerate()
        .map(|(position, line)| {
            vec![
                Param::Text(line.id.clone()),
                Param::Text(order_id.clone()),
                Param::Int(position as i64),
                Param::Text(line.variant_id.clone()),
                Param::Text(line.product_id.clone()),
                Param::Text(line.title.clone()),
                Param::Text(line.variant_title.clone()),
                Param::MaybeText(line.sku.clone()),
                Param::Int(line.quantity),
                Param::Int(line.unit_amount),
                Param::Int(line.subtotal),
                Param::Int(line.discount),
                Param::Text(line.tax_class.clone()),
                Param::Int(line.tax_rate_bps),
                Param::Text(line.tax_name.clone()),
                Param::Int(line.tax),
                Param::Int(line.total),
            ]
        })
        .collect();
    writing.push_rows(
        "INSERT INTO order_lines (id, order_id, position, variant_id, product_id, title, variant_title, sku, \
         quantity, unit_amount, subtotal, discount, tax_class, tax_rate_bps, tax_name, tax, total)",
        rows,
        "",
    );
    // The held stock sold, the payment and the cart completed, in the same trip.
    let sale = inventory::sell_in(&mut writing, &held.reservations, actor, now);
    let payment_status = match paid.status {
        Status::PendingPayment => "pending",
        Status::Authorized => "authorized",
        _ => "captured",
    };
    let payment_at = writing.len();
    writing.push(
        "UPDATE payments SET order_id = $1, status = $2, provider_ref = $3, captured_amount = $4, updated_at = $5 \
         WHERE id = $6 AND status IN ('pending', 'requires_action') AND order_id IS NULL",
        vec![
            Param::Text(order_id.clone()),
            Param::Text(payment_status.to_owned()),
            Param::MaybeText(paid.reference.clone()),
            Param::Int(paid.captured),
            Param::Int(now.0),
            Param::Text(held.payment_id.clone()),
        ],
    );
    writing.push(
        "UPDATE carts SET status = 'completed', order_id = $1, checkout_until = NULL, updated_at = $2 \
         WHERE id = $3 AND status = 'active' AND checkout_until = $4",
        vec![
            Param::Text(order_id.clone()),
            Param::Int(now.0),
            Param::Text(cart_id.to_owned()),
            Param::Int(held.until.0),
        ],
    );
    webhooks::Listeners::load_in(&mut writing);
    let (mut tx, written) = state.db.begin_with(&writing).await?;
    let number = written[order_at]
        .scalar::<i64>()?
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("an order was written without its number")))?;
    if written[payment_at].changed() != 1 || written[payment_at + 1].changed() != 1 {
        return Err(AppError::new(ErrorCode::Conflict, "This checkout attempt lost its hold on the cart; try again."));
    }
    sale.finish(state, &mut tx, &written).await?;
    if !priced.discounts.is_empty() {
        promotions::keep_uses(&mut tx, &held.payment_id, &order_id).await?;
    }
    let summary = serde_json::json!({
        "id": order_id, "number": number, "status": paid.status, "email": email, "currency": priced.currency,
        "total": totals.total, "lines": priced.lines.iter().map(|line| serde_json::json!({
            "variant_id": line.variant_id, "sku": line.sku, "quantity": line.quantity, "total": line.total,
        })).collect::<Vec<_>>(),
    });
    webhooks::Listeners::loaded(&written[payment_at + 2])?.emit(state, &mut tx, "order.placed", &summary).await?;
    // The timeline's first entry and the confirmation go with the commit.
    let mut last = Batch::new();
    let detail = serde_json::json!({ "payment_id": held.payment_id, "provider_status": payment_status });
    orders::event_in(&mut last, &order_id, "placed", Some((None, paid.status)), &detail, actor);
    let email_message = confirmation(state, number, email, priced, shipping_address, &shipping)?;
    messaging::send_email_in(&mut tx, &mut last, &email_message)?;
    let payment = orders::Payment {
        id: held.payment_id.clone(),
        provider: held.provider.clone(),
        status: payment_status.to_owned(),
        amount: totals.total,
        captured_amount: paid.captured,
        refunded_amount: 0,
        created_at: held.started,
    };
    let order = Order {
        id: order_id,
        number,
        status: paid.status,
        email: email.clone(),
        customer_id: customer_id.map(str::to_owned),
        currency: priced.currency.clone(),
        tax_inclusive: priced.tax_inclusive,
        tax_exempt: priced.tax_exempt,
        lines,
        shipping_address: shipping_address.clone(),
        billing_address: billing_address.clone(),
        shipping_method: shipping,
        discounts: priced.discounts.clone(),
        totals: totals.clone(),
        paid_total: paid.captured,
        refunded_total: 0,
        payments: vec![payment],
        fulfillments: Vec::new(),
        refunds: Vec::new(),
        returns: Vec::new(),
        placed_at: now,
        updated_at: now,
        version: 1,
    };
    tx.commit_with(&last).await?;
    Ok(order)
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
