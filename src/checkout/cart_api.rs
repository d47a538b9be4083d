//! The shopper's cart endpoints. A guest's cart is opened by its id, which only its shopper
//! knows; a customer's cart only by that customer. Every answer is the cart priced again.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::address::Address;
use super::cart::{self, CART_COLUMNS, Cart, CartRow, MAX_LINES, MAX_QUANTITY};
use crate::accounts::auth::{CurrentCustomer, MaybeCustomer};
use crate::accounts::email_address::EmailAddress;
use crate::app::AppState;
use crate::platform::batch::Batch;
use crate::platform::db::{Param, Tx};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{self, Json};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_cart))
        .routes(routes!(get_cart, update_cart))
        .routes(routes!(add_line))
        .routes(routes!(update_line, remove_line))
        .routes(routes!(claim_cart))
        .routes(routes!(add_code))
        .routes(routes!(remove_code))
        .routes(routes!(my_cart))
}

fn not_found() -> AppError {
    AppError::not_found("No cart has this id, or it has expired.")
}

/// The cart, if the caller may open it: a customer's cart is that customer's alone.
async fn open(state: &AppState, id: &str, caller: &MaybeCustomer) -> AppResult<CartRow> {
    opened(cart::find_row(&state.db, None, id).await?, caller)
}

/// As [`open`], with the cart's lines and what the catalog says of the variant `also`, in
/// the same query.
async fn open_with(
    state: &AppState,
    id: &str,
    caller: &MaybeCustomer,
    also: Option<&str>,
) -> AppResult<(CartRow, cart::Contents, Option<cart::Facts>)> {
    let (row, contents, facts) = cart::find_with_contents(&state.db, id, also).await?;
    Ok((opened(row, caller)?, contents, facts))
}

fn opened(row: CartRow, caller: &MaybeCustomer) -> AppResult<CartRow> {
    match &row.customer_id {
        Some(owner) if caller.customer_id() != Some(owner.as_str()) => Err(not_found()),
        _ => Ok(row),
    }
}

fn ttl_secs(state: &AppState) -> u64 {
    state.config.checkout.cart_ttl_days * 86_400
}

/// The condition a cart must meet to be changed, `$1` being now: active, and not being
/// checked out.
const CHANGEABLE: &str = "status = 'active' AND (checkout_until IS NULL OR checkout_until < $1)";

/// How a change extends a cart's life, `$2` being when it would expire from now on: not
/// by less than an hour, so that most changes leave the indexed expiry as it was, and
/// PostgreSQL updates the row in place of its indexes (a heap-only update).
const EXTENDED: &str = "expires_at = CASE WHEN expires_at < $2 - 3600000 THEN $2 ELSE expires_at END";

/// The statement that marks the cart `id` changed (and alive for longer) unless it is being
/// checked out or is already an order; it answers the cart as it now is.
fn change(state: &AppState, id: &str) -> (String, Vec<Param>) {
    let now = Timestamp::now();
    let sql = format!(
        "UPDATE carts SET updated_at = $1, {EXTENDED}, version = version + 1 WHERE id = $3 AND {CHANGEABLE} \
         RETURNING {CART_COLUMNS}"
    );
    (sql, vec![Param::Int(now.0), Param::Int(now.plus_secs(ttl_secs(state)).0), Param::Text(id.to_owned())])
}

/// Marks the cart changed, or answers 409 saying why it cannot be: see [`change`].
async fn begin_change(state: &AppState, tx: &mut Tx, row: &CartRow) -> AppResult<CartRow> {
    let (sql, params) = change(state, &row.id);
    let mut batch = Batch::new();
    batch.push(sql, params);
    let changed = tx.run(&batch).await?.remove(0).row::<CartRow>()?;
    match changed {
        Some(row) => Ok(row),
        None => Err(unchangeable(state, Some(tx), &row.id).await),
    }
}

/// Why the cart `id` could not be changed: it became an order, or it is being checked out.
/// Read in `tx` when there is one, which holds a connection already.
async fn unchangeable(state: &AppState, tx: Option<&mut Tx>, id: &str) -> AppError {
    match cart::find_row(&state.db, tx, id).await {
        Ok(current) if current.status == "completed" => {
            AppError::new(ErrorCode::Conflict, "This cart has become an order; start a new cart.")
        }
        Ok(_) => AppError::new(ErrorCode::Conflict, "This cart is being checked out; try again in a moment."),
        Err(err) => err,
    }
}

fn answer(status: StatusCode, cart: Cart) -> Response {
    (status, Json(cart)).into_response()
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCart {
    /// The shop's default region when absent.
    pub region_id: Option<String>,
    /// A signed-in customer's address when absent.
    pub email: Option<String>,
}

/// Start a cart. Signed in, it is the customer's; otherwise its id is the guest's key to it.
#[utoipa::path(post, path = "/api/v1/store/carts", tag = "store: cart", request_body = NewCart,
    responses(
        (status = 201, body = Cart),
        (status = 409, description = "The shop has no region yet", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_cart(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Json(new): Json<NewCart>,
) -> AppResult<Response> {
    Ok(answer(StatusCode::CREATED, start_cart(&state, &caller, new).await?))
}

/// Starts a cart: the caller's when signed in, else a guest's.
pub(crate) async fn start_cart(state: &AppState, caller: &MaybeCustomer, new: NewCart) -> AppResult<Cart> {
    let mut violations = Violations::default();
    let email = new.email.as_deref().and_then(|raw| violations.check("email", EmailAddress::parse(raw)));
    violations.finish()?;
    let region = match &new.region_id {
        Some(id) => super::settings(state)
            .await?
            .region(id)
            .cloned()
            .ok_or_else(|| AppError::invalid_field("region_id", "unknown", "names no region"))?,
        None => {
            super::settings(state).await?.regions.iter().find(|region| region.is_default).cloned().ok_or_else(|| {
                AppError::new(ErrorCode::Conflict, "The shop has no region yet: staff must create one before carts.")
            })?
        }
    };
    let email = match (email, caller.customer_id()) {
        (Some(email), _) => Some(email.as_str().to_owned()),
        (None, Some(customer)) => db_run!(state.db.read().await?, |conn| {
            sqlx::query_scalar::<_, String>("SELECT email FROM customers WHERE id = $1")
                .bind(customer)
                .fetch_optional(conn)
                .await
        })?,
        (None, None) => None,
    };
    let now = Timestamp::now();
    let sql = format!(
        "INSERT INTO carts (id, customer_id, region_id, email, status, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $6) RETURNING {CART_COLUMNS}"
    );
    let mut batch = Batch::new();
    batch.push(
        sql,
        vec![
            Param::Text(new_id("cart")),
            Param::MaybeText(caller.customer_id().map(str::to_owned)),
            Param::Text(region.id.clone()),
            Param::MaybeText(email),
            Param::Int(now.plus_secs(ttl_secs(state)).0),
            Param::Int(now.0),
        ],
    );
    let row = state.db.write_batch(&batch).await?.remove(0).row::<CartRow>()?;
    let row = row.ok_or_else(|| AppError::internal(anyhow::anyhow!("an INSERT ... RETURNING answered no row")))?;
    cart::priced_with(state, &row, &cart::Contents::default()).await
}

/// Read a cart, priced as the shop is now, with what changed since the last change to it.
#[utoipa::path(get, path = "/api/v1/store/carts/{id}", tag = "store: cart", params(("id" = String, Path)),
    responses(
        (status = 200, body = Cart),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_cart(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path(id): Path<String>,
) -> AppResult<Json<Cart>> {
    let (row, contents, _) = open_with(&state, &id, &caller, None).await?;
    Ok(Json(cart::priced_with(&state, &row, &contents).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CartPatch {
    pub email: Option<String>,
    /// Choosing a country of another region moves the cart to that region and its currency.
    pub shipping_address: Option<Address>,
    /// `null` for the same as the shipping address.
    #[serde(default, deserialize_with = "http::nullable")]
    #[schema(value_type = Option<Address>)]
    pub billing_address: Option<Option<Address>>,
    /// One of the cart's `shipping_options`.
    pub shipping_method_id: Option<String>,
}

fn normalised(address: Address, field: &str, violations: &mut Violations) -> Option<Address> {
    match address.normalised() {
        Ok(address) => Some(address),
        Err(problems) => {
            for problem in problems {
                violations.add(&format!("{field}.{}", problem.field), problem.code, problem.message);
            }
            None
        }
    }
}

/// Set the cart's email, addresses or shipping method.
#[utoipa::path(patch, path = "/api/v1/store/carts/{id}", tag = "store: cart", request_body = CartPatch,
    params(("id" = String, Path)),
    responses(
        (status = 200, body = Cart),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is being checked out or is an order", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn update_cart(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path(id): Path<String>,
    Json(patch): Json<CartPatch>,
) -> AppResult<Json<Cart>> {
    // Read with the cart, to check the shipping method against; still the cart's lines
    // after the change unless another change came between (then they are read again).
    let (row, mut contents, _) = open_with(&state, &id, &caller, None).await?;
    let mut violations = Violations::default();
    let email = patch.email.as_deref().and_then(|raw| violations.check("email", EmailAddress::parse(raw)));
    let shipping = patch.shipping_address.and_then(|a| normalised(a, "shipping_address", &mut violations));
    let billing = match patch.billing_address {
        Some(Some(address)) => normalised(address, "billing_address", &mut violations).map(Some),
        other => other.map(|_| None),
    };
    violations.finish()?;
    let mut region_id = row.region_id.clone();
    if let Some(address) = &shipping {
        let settings = super::settings(&state).await?;
        let all = &settings.regions;
        match all.iter().find(|region| region.countries.contains(&address.country)) {
            Some(region) => region_id = region.id.clone(),
            None if all.iter().any(|region| region.id == row.region_id && region.countries.is_empty()) => {}
            None => {
                return Err(AppError::invalid_field(
                    "shipping_address.country",
                    "not_served",
                    "the shop does not sell to this country",
                ));
            }
        }
    }
    let moved = region_id != row.region_id;
    let currency = super::currency_of(&state, &region_id).await?;
    if moved {
        contents = cart::contents(&state.db, &id, &currency).await?;
    }
    let method = match &patch.shipping_method_id {
        Some(method) => {
            let mut candidate = row.clone();
            candidate.region_id = region_id.clone();
            if let Some(address) = &shipping {
                candidate.shipping_address = Some(serde_json::to_string(address).map_err(AppError::internal)?);
            }
            let priced = cart::priced_with(&state, &candidate, &contents).await?;
            if !priced.shipping_options.iter().any(|option| &option.id == method) {
                return Err(AppError::invalid_field(
                    "shipping_method_id",
                    "unavailable",
                    "is not one of the cart's shipping options",
                ));
            }
            Some(method.clone())
        }
        None if moved => None,
        None => row.shipping_method_id.clone(),
    };
    let to_json = |address: &Address| serde_json::to_string(address).map_err(AppError::internal);
    let shipping_json = match &shipping {
        Some(address) => Some(to_json(address)?),
        None => row.shipping_address.clone(),
    };
    let billing_json = match &billing {
        Some(Some(address)) => Some(to_json(address)?),
        Some(None) => None,
        None => row.billing_address.clone(),
    };
    // One statement: the change and its bookkeeping, if the cart may still be changed.
    let now = Timestamp::now();
    let sql = format!(
        "UPDATE carts SET email = $4, shipping_address = $5, billing_address = $6, shipping_method_id = $7, \
         region_id = $8, updated_at = $1, {EXTENDED}, version = version + 1 WHERE id = $3 AND {CHANGEABLE} \
         RETURNING {CART_COLUMNS}"
    );
    let mut batch = Batch::new();
    batch.push(
        sql,
        vec![
            Param::Int(now.0),
            Param::Int(now.plus_secs(ttl_secs(&state)).0),
            Param::Text(id.clone()),
            Param::MaybeText(email.map_or_else(|| row.email.clone(), |email| Some(email.as_str().to_owned()))),
            Param::MaybeText(shipping_json),
            Param::MaybeText(billing_json),
            Param::MaybeText(method),
            Param::Text(region_id),
        ],
    );
    let changed = state.db.write_batch(&batch).await?.remove(0).row::<CartRow>()?;
    let Some(changed) = changed else { return Err(unchangeable(&state, None, &id).await) };
    if changed.version != row.version + 1 {
        contents = cart::contents(&state.db, &id, &currency).await?;
    }
    cart::acknowledge(&state, &changed, &mut contents).await?;
    Ok(Json(cart::priced_with(&state, &changed, &contents).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    pub variant_id: String,
    /// Added to the quantity already in the cart.
    pub quantity: i64,
}

/// What the catalog says of a variant on sale, priced in `currency`; read before the cart's
/// transaction, so that no transaction waits on a second connection.
async fn sellable(state: &AppState, currency: &str, variant_id: &str) -> AppResult<cart::Facts> {
    on_sale(cart::facts(&state.db, currency, variant_id).await?, currency)
}

/// The facts of a variant, if it is on sale in `currency`.
fn on_sale(fact: Option<cart::Facts>, currency: &str) -> AppResult<cart::Facts> {
    let Some(fact) = fact.filter(|f| f.status == "published") else {
        return Err(AppError::invalid_field("variant_id", "unknown", "names no variant on sale"));
    };
    if fact.amount.is_none() {
        return Err(AppError::invalid_field("variant_id", "not_priced", format!("has no price in {currency}")));
    }
    Ok(fact)
}

fn check_quantity(fact: &cart::Facts, quantity: i64) -> AppResult<()> {
    if quantity > MAX_QUANTITY {
        return Err(AppError::invalid_field(
            "quantity",
            "out_of_range",
            format!("a line holds at most {MAX_QUANTITY}"),
        ));
    }
    if fact.inventory_policy != "continue" && fact.available < quantity {
        return Err(AppError::new(
            ErrorCode::Conflict,
            format!("Not enough stock: {} available.", fact.available.max(0)),
        )
        .with_field("quantity", "insufficient_stock", "is more than is available"));
    }
    Ok(())
}

/// Add a variant to the cart, or more of it.
#[utoipa::path(post, path = "/api/v1/store/carts/{id}/lines", tag = "store: cart", request_body = NewLine,
    params(("id" = String, Path)),
    responses(
        (status = 200, body = Cart),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock, or the cart is being checked out", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn add_line(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path(id): Path<String>,
    Json(new): Json<NewLine>,
) -> AppResult<Json<Cart>> {
    if !(1..=MAX_QUANTITY).contains(&new.quantity) {
        return Err(AppError::invalid_field(
            "quantity",
            "out_of_range",
            format!("must be between 1 and {MAX_QUANTITY}"),
        ));
    }
    if !has_shape(&new.variant_id, "var") {
        return Err(AppError::invalid_field("variant_id", "unknown", "names no variant on sale"));
    }
    // The cart's lines are read with it and the variant, before the change: the answer is
    // priced from them with the line added, unless another change came between.
    let (row, mut contents, fact) = open_with(&state, &id, &caller, Some(&new.variant_id)).await?;
    let currency = super::currency_of(&state, &row.region_id).await?;
    let fact = on_sale(fact, &currency)?;
    let line_id = new_id("cli");
    // The cart marked changed and the line added, in one trip: added only while the cart
    // holds fewer than the most lines besides this variant's. Should the cart not be
    // changeable, the line goes with the transaction.
    let mut batch = Batch::new();
    let (sql, params) = change(&state, &id);
    batch.push(sql, params);
    batch.push(
        "INSERT INTO cart_lines (id, cart_id, variant_id, quantity, created_at, shown_amount) \
         SELECT $1, $2, $3, $4, $5, $6 \
         WHERE (SELECT COUNT(*) FROM cart_lines WHERE cart_id = $2 AND variant_id <> $3) < $7 \
         ON CONFLICT (cart_id, variant_id) DO UPDATE SET quantity = cart_lines.quantity + excluded.quantity, \
         shown_amount = excluded.shown_amount RETURNING quantity",
        vec![
            Param::Text(line_id.clone()),
            Param::Text(id.clone()),
            Param::Text(new.variant_id.clone()),
            Param::Int(new.quantity),
            Param::Int(Timestamp::now().0),
            Param::MaybeInt(fact.amount),
            Param::Int(MAX_LINES as i64),
        ],
    );
    let (mut tx, ran) = state.db.begin_with(&batch).await?;
    let Some(changed) = ran[0].row::<CartRow>()? else {
        return Err(unchangeable(&state, Some(&mut tx), &id).await);
    };
    let Some(quantity) = ran[1].scalar::<i64>()? else {
        return Err(AppError::invalid_field(
            "variant_id",
            "too_many",
            format!("a cart holds at most {MAX_LINES} lines"),
        ));
    };
    check_quantity(&fact, quantity)?;
    tx.commit().await?;
    if changed.version != row.version + 1 {
        return Ok(Json(cart::changed(&state, &changed).await?));
    }
    match contents.lines.iter_mut().find(|line| line.variant_id == new.variant_id) {
        Some(line) => {
            line.quantity = quantity;
            line.shown_amount = fact.amount;
        }
        None => contents.lines.push(cart::LineRow {
            id: line_id,
            variant_id: new.variant_id.clone(),
            quantity,
            shown_amount: fact.amount,
        }),
    }
    contents.facts.insert(new.variant_id, fact);
    cart::acknowledge(&state, &changed, &mut contents).await?;
    Ok(Json(cart::priced_with(&state, &changed, &contents).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinePatch {
    /// The new quantity; 0 removes the line.
    pub quantity: i64,
}

async fn set_quantity(
    state: &AppState,
    caller: &MaybeCustomer,
    id: &str,
    line_id: &str,
    quantity: i64,
) -> AppResult<Cart> {
    let row = open(state, id, caller).await?;
    let no_line = || AppError::not_found("The cart has no line with this id.");
    let variant = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT variant_id FROM cart_lines WHERE id = $1 AND cart_id = $2")
            .bind(line_id)
            .bind(id)
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(no_line)?;
    let currency = super::currency_of(state, &row.region_id).await?;
    let fact = if quantity > 0 { Some(sellable(state, &currency, &variant).await?) } else { None };
    let mut tx = state.db.begin().await?;
    let row = begin_change(state, &mut tx, &row).await?;
    let changed = match &fact {
        None => db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM cart_lines WHERE id = $1 AND cart_id = $2")
            .bind(line_id)
            .bind(id)
            .execute(conn)
            .await)?,
        Some(fact) => {
            check_quantity(fact, quantity)?;
            db_execute!(tx.conn(), |conn| {
                sqlx::query("UPDATE cart_lines SET quantity = $1 WHERE id = $2 AND cart_id = $3")
                    .bind(quantity)
                    .bind(line_id)
                    .bind(id)
                    .execute(conn)
                    .await
            })?
        }
    };
    if changed == 0 {
        return Err(no_line());
    }
    tx.commit().await?;
    cart::changed(state, &row).await
}

/// Change a line's quantity; 0 removes it.
#[utoipa::path(patch, path = "/api/v1/store/carts/{id}/lines/{line_id}", tag = "store: cart", request_body = LinePatch,
    params(("id" = String, Path), ("line_id" = String, Path)),
    responses(
        (status = 200, body = Cart),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock, or the cart is being checked out", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn update_line(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path((id, line_id)): Path<(String, String)>,
    Json(patch): Json<LinePatch>,
) -> AppResult<Json<Cart>> {
    if !(0..=MAX_QUANTITY).contains(&patch.quantity) {
        return Err(AppError::invalid_field(
            "quantity",
            "out_of_range",
            format!("must be between 0 and {MAX_QUANTITY}"),
        ));
    }
    Ok(Json(set_quantity(&state, &caller, &id, &line_id, patch.quantity).await?))
}

/// Remove a line.
#[utoipa::path(delete, path = "/api/v1/store/carts/{id}/lines/{line_id}", tag = "store: cart",
    params(("id" = String, Path), ("line_id" = String, Path)),
    responses(
        (status = 200, body = Cart),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is being checked out", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_line(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path((id, line_id)): Path<(String, String)>,
) -> AppResult<Json<Cart>> {
    Ok(Json(set_quantity(&state, &caller, &id, &line_id, 0).await?))
}

/// The signed-in customer's most recent active cart.
async fn latest_of(tx: &mut Tx, customer_id: &str, except: &str) -> AppResult<Option<CartRow>> {
    let sql = format!(
        "SELECT {CART_COLUMNS} FROM carts WHERE customer_id = $1 AND status = 'active' AND id <> $2 \
         AND expires_at >= $3 ORDER BY updated_at DESC LIMIT 1"
    );
    Ok(db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, CartRow>(&sql)
            .bind(customer_id)
            .bind(except)
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })?)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCode {
    /// As the shopper typed it; case does not matter.
    pub code: String,
}

async fn write_codes(state: &AppState, row: &CartRow, codes: &[String]) -> AppResult<Cart> {
    let codes = serde_json::to_string(codes).map_err(AppError::internal)?;
    let mut tx = state.db.begin().await?;
    let mut changed = begin_change(state, &mut tx, row).await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE carts SET codes = $1 WHERE id = $2").bind(&codes).bind(&row.id).execute(conn).await
    })?;
    tx.commit().await?;
    changed.codes = codes;
    cart::changed(state, &changed).await
}

/// Enter a discount code. A code that gives nothing to this cart now is refused with why:
/// `unknown`, `expired`, `not_started`, `used_up`, `limit_reached`, `min_subtotal`,
/// `no_eligible_items`, `not_for_you`, `first_order_only`, `wrong_currency`, `inactive`,
/// or `not_combinable` (another promotion of the cart is worth more).
#[utoipa::path(post, path = "/api/v1/store/carts/{id}/codes", tag = "store: cart", request_body = NewCode,
    params(("id" = String, Path)),
    responses(
        (status = 200, body = Cart),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is being checked out", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The code gives nothing to this cart", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn add_code(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path(id): Path<String>,
    Json(new): Json<NewCode>,
) -> AppResult<Json<Cart>> {
    let code = super::promotions::normalise_code(&new.code);
    if code.is_empty() || code.len() > 40 {
        return Err(AppError::invalid_field("code", "unknown", "is not a code of this shop"));
    }
    let row = open(&state, &id, &caller).await?;
    let mut codes = row.code_list();
    if codes.contains(&code) {
        return Ok(Json(cart::priced(&state, &row).await?));
    }
    if codes.len() >= 5 {
        return Err(AppError::invalid_field("code", "too_many", "a cart takes at most 5 codes"));
    }
    codes.push(code.clone());
    let mut candidate = row.clone();
    candidate.codes = serde_json::to_string(&codes).map_err(AppError::internal)?;
    let tried = cart::priced(&state, &candidate).await?;
    if !tried.discounts.iter().any(|discount| discount.code.as_deref() == Some(code.as_str())) {
        let settings = super::settings(&state).await?;
        let known = super::promotions::candidates(&state, &settings, std::slice::from_ref(&code))
            .await?
            .into_iter()
            .any(|p| p.code.as_deref() == Some(code.as_str()));
        let reason = tried
            .changes
            .iter()
            .find(|change| change.kind == "code_not_applicable" && change.message.contains(&code))
            .map(|change| change.message.clone());
        return Err(match (known, reason) {
            (true, Some(message)) => AppError::invalid_field("code", "not_applicable", message),
            _ => AppError::invalid_field("code", "unknown", "is not a code of this shop"),
        });
    }
    Ok(Json(write_codes(&state, &row, &codes).await?))
}

/// Remove a discount code.
#[utoipa::path(delete, path = "/api/v1/store/carts/{id}/codes/{code}", tag = "store: cart",
    params(("id" = String, Path), ("code" = String, Path)),
    responses(
        (status = 200, body = Cart),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is being checked out", body = Problem, content_type = "application/problem+json"),
    ))]
async fn remove_code(
    State(state): State<AppState>,
    caller: MaybeCustomer,
    Path((id, code)): Path<(String, String)>,
) -> AppResult<Json<Cart>> {
    let row = open(&state, &id, &caller).await?;
    let code = super::promotions::normalise_code(&code);
    let codes: Vec<String> = row.code_list().into_iter().filter(|entered| *entered != code).collect();
    Ok(Json(write_codes(&state, &row, &codes).await?))
}

/// Moves the lines of cart `from` into cart `into`, adding up the quantities of a variant both
/// hold (up to the most a line holds).
async fn merge_lines(tx: &mut Tx, from: &str, into: &str) -> AppResult<()> {
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE cart_lines SET quantity = (SELECT CASE WHEN cart_lines.quantity + g.quantity > $3 THEN $3 \
             ELSE cart_lines.quantity + g.quantity END FROM cart_lines g WHERE g.cart_id = $1 \
             AND g.variant_id = cart_lines.variant_id) \
             WHERE cart_id = $2 AND variant_id IN (SELECT variant_id FROM cart_lines WHERE cart_id = $1)",
        )
        .bind(from)
        .bind(into)
        .bind(MAX_QUANTITY)
        .execute(conn)
        .await
    })?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "DELETE FROM cart_lines WHERE cart_id = $1 \
             AND variant_id IN (SELECT variant_id FROM cart_lines WHERE cart_id = $2)",
        )
        .bind(from)
        .bind(into)
        .execute(conn)
        .await
    })?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE cart_lines SET cart_id = $2 WHERE cart_id = $1").bind(from).bind(into).execute(conn).await
    })?;
    Ok(())
}

/// Give a guest cart to the signed-in customer, as a storefront does at sign-in. When the
/// customer already has a cart, the guest cart's lines join it (quantities added up) and the
/// guest cart ends; the answer is the cart to use from now on.
#[utoipa::path(post, path = "/api/v1/store/carts/{id}/claim", tag = "store: cart", params(("id" = String, Path)),
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 200, body = Cart),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The cart is being checked out", body = Problem, content_type = "application/problem+json"),
    ))]
async fn claim_cart(
    State(state): State<AppState>,
    customer: CurrentCustomer,
    Path(id): Path<String>,
) -> AppResult<Json<Cart>> {
    let caller = MaybeCustomer(Some(customer.clone()));
    let row = open(&state, &id, &caller).await?;
    let customer_id = customer.customer_id();
    let mut tx = state.db.begin().await?;
    begin_change(&state, &mut tx, &row).await?;
    let kept = match latest_of(&mut tx, customer_id, &id).await? {
        Some(theirs) if row.customer_id.is_none() => {
            begin_change(&state, &mut tx, &theirs).await?;
            merge_lines(&mut tx, &id, &theirs.id).await?;
            db_execute!(tx.conn(), |conn| {
                sqlx::query(
                    "UPDATE carts SET email = COALESCE(email, $1), shipping_address = COALESCE(shipping_address, $2), \
                     billing_address = COALESCE(billing_address, $3) WHERE id = $4",
                )
                .bind(&row.email)
                .bind(&row.shipping_address)
                .bind(&row.billing_address)
                .bind(&theirs.id)
                .execute(conn)
                .await
            })?;
            db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM carts WHERE id = $1")
                .bind(&id)
                .execute(conn)
                .await)?;
            theirs.id
        }
        _ => {
            db_execute!(tx.conn(), |conn| {
                sqlx::query(
                    "UPDATE carts SET customer_id = $1, \
                     email = COALESCE(email, (SELECT email FROM customers WHERE id = $1)) WHERE id = $2",
                )
                .bind(customer_id)
                .bind(&id)
                .execute(conn)
                .await
            })?;
            id
        }
    };
    tx.commit().await?;
    // Whatever changed in the carts' prices is still to be shown: no acknowledgement here.
    let kept = cart::find_row(&state.db, None, &kept).await?;
    Ok(Json(cart::priced(&state, &kept).await?))
}

/// The signed-in customer's most recent active cart.
#[utoipa::path(get, path = "/api/v1/store/customers/me/cart", tag = "store: cart",
    security(("customer_session" = []), ("customer_cookie" = [])),
    responses(
        (status = 200, body = Cart),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No active cart", body = Problem, content_type = "application/problem+json"),
    ))]
async fn my_cart(State(state): State<AppState>, customer: CurrentCustomer) -> AppResult<Json<Cart>> {
    let sql = format!(
        "SELECT {CART_COLUMNS} FROM carts WHERE customer_id = $1 AND status = 'active' AND expires_at >= $2 \
         ORDER BY updated_at DESC LIMIT 1"
    );
    let row = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, CartRow>(&sql)
            .bind(customer.customer_id())
            .bind(Timestamp::now())
            .fetch_optional(conn)
            .await
    })?
    .ok_or_else(|| AppError::not_found("You have no active cart."))?;
    Ok(Json(cart::priced(&state, &row).await?))
}
