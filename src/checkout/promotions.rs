//! Promotions: discount codes and automatic promotions.
//!
//! A promotion takes a percentage or a fixed amount off the goods it applies to, makes
//! shipping free, or gives `get_quantity` units for every `buy_quantity` bought (buy X get Y).
//! Conditions narrow it: a minimum subtotal, products, categories (with the categories below
//! them), customers, a first order; a validity window; a limit of uses in all and per customer.
//!
//! Combining: promotions marked `combinable` apply together, one after the other, each on what
//! the previous left. A promotion that is not combinable applies alone. The shopper gets
//! whichever is worth more: the combinable ones together, or the best one that stands alone.
//! A discount is spread over the lines it applies to in proportion to their amounts (largest
//! remainder), so that tax, computed per line after discounts, and refunds stay right.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Settings;
use super::pricing::{allocate, percent_of};
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::money::is_currency;
use crate::catalog::products::single_line;
use crate::platform::db::{Db, Tx, dialect};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{self, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_promotions, create_promotion)).routes(routes!(
        get_promotion,
        update_promotion,
        delete_promotion
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `value` basis points off the goods it applies to.
    Percentage,
    /// `value` minor units of `currency` off the goods it applies to.
    Fixed,
    FreeShipping,
    /// For every `buy_quantity` units bought, `get_quantity` more (the cheapest) at `value`
    /// basis points off: 10000 makes them free.
    BuyXGetY,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Percentage => "percentage",
            Self::Fixed => "fixed",
            Self::FreeShipping => "free_shipping",
            Self::BuyXGetY => "buy_x_get_y",
        }
    }

    fn parse(kind: &str) -> Self {
        match kind {
            "fixed" => Self::Fixed,
            "free_shipping" => Self::FreeShipping,
            "buy_x_get_y" => Self::BuyXGetY,
            _ => Self::Percentage,
        }
    }
}

/// What a cart must hold or be for the promotion to apply. Empty lists do not narrow it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Conditions {
    /// The least subtotal of the goods, per currency (minor units).
    pub min_subtotal: HashMap<String, i64>,
    /// Only these products' lines count, and are discounted.
    pub product_ids: Vec<String>,
    /// Only lines of products in these categories (or below them).
    pub category_ids: Vec<String>,
    /// Only for these customers.
    pub customer_ids: Vec<String>,
    /// Only for a shopper who has never ordered before.
    pub first_order: bool,
}

/// A promotion as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Promotion {
    pub id: String,
    /// What shoppers type, upper case; absent for an automatic promotion.
    pub code: Option<String>,
    pub name: String,
    pub kind: Kind,
    pub value: i64,
    pub currency: Option<String>,
    pub buy_quantity: i64,
    pub get_quantity: i64,
    pub conditions: Conditions,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub times_used: i64,
    pub combinable: bool,
    pub active: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct PromotionRow {
    id: String,
    code: Option<String>,
    name: String,
    kind: String,
    value: i64,
    currency: Option<String>,
    buy_quantity: i64,
    get_quantity: i64,
    conditions: String,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    usage_limit: Option<i64>,
    per_customer_limit: Option<i64>,
    times_used: i64,
    combinable: bool,
    active: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

const COLUMNS: &str = "id, code, name, kind, value, currency, buy_quantity, get_quantity, conditions, starts_at, \
     ends_at, usage_limit, per_customer_limit, times_used, combinable, active, created_at, updated_at, version";

impl From<PromotionRow> for Promotion {
    fn from(row: PromotionRow) -> Self {
        Self {
            id: row.id,
            code: row.code,
            name: row.name,
            kind: Kind::parse(&row.kind),
            value: row.value,
            currency: row.currency,
            buy_quantity: row.buy_quantity,
            get_quantity: row.get_quantity,
            conditions: serde_json::from_str(&row.conditions).unwrap_or_default(),
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            usage_limit: row.usage_limit,
            per_customer_limit: row.per_customer_limit,
            times_used: row.times_used,
            combinable: row.combinable,
            active: row.active,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        }
    }
}

/// A line as promotions see it.
#[derive(Debug, Clone)]
pub struct PromoLine {
    pub product_id: String,
    /// The product's categories and every category above them.
    pub categories: Vec<String>,
    pub unit_amount: i64,
    pub quantity: i64,
}

/// Who is buying, and in what.
#[derive(Debug, Clone, Default)]
pub struct Buyer {
    pub currency: String,
    pub customer_id: Option<String>,
    /// Whether the shopper (by account or email) has ordered before.
    pub ordered_before: bool,
    /// Uses of each promotion by this shopper so far.
    pub uses: HashMap<String, i64>,
    pub now: Timestamp,
}

/// A discount given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Discount {
    pub promotion_id: String,
    pub code: Option<String>,
    pub name: String,
    pub amount: i64,
}

/// The outcome of promotions on a cart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Discount per line, in the lines' order.
    pub line_discounts: Vec<i64>,
    /// Whether shipping is free.
    pub free_shipping: bool,
    pub discounts: Vec<Discount>,
    /// Codes entered that give nothing, with why: `expired`, `not_started`, `used_up`,
    /// `limit_reached`, `min_subtotal`, `no_eligible_items`, `not_for_you`, `first_order_only`,
    /// `wrong_currency`, `inactive`, `not_combinable`.
    pub refused: Vec<(String, &'static str)>,
}

impl Promotion {
    fn eligible(&self, line: &PromoLine) -> bool {
        let conditions = &self.conditions;
        (conditions.product_ids.is_empty() || conditions.product_ids.contains(&line.product_id))
            && (conditions.category_ids.is_empty()
                || line.categories.iter().any(|category| conditions.category_ids.contains(category)))
    }

    /// Why the promotion does not apply to this cart, if it does not.
    pub fn refusal(&self, lines: &[PromoLine], buyer: &Buyer) -> Option<&'static str> {
        let conditions = &self.conditions;
        let subtotal: i64 = lines.iter().map(|line| line.unit_amount.saturating_mul(line.quantity)).sum();
        if !self.active {
            return Some("inactive");
        }
        if self.starts_at.is_some_and(|starts| buyer.now < starts) {
            return Some("not_started");
        }
        if self.ends_at.is_some_and(|ends| buyer.now >= ends) {
            return Some("expired");
        }
        if self.usage_limit.is_some_and(|limit| self.times_used >= limit) {
            return Some("used_up");
        }
        let used = buyer.uses.get(&self.id).copied().unwrap_or(0);
        if self.per_customer_limit.is_some_and(|limit| used >= limit) {
            return Some("limit_reached");
        }
        if self.kind == Kind::Fixed && self.currency.as_deref() != Some(buyer.currency.as_str()) {
            return Some("wrong_currency");
        }
        if !conditions.customer_ids.is_empty()
            && !buyer.customer_id.as_ref().is_some_and(|id| conditions.customer_ids.contains(id))
        {
            return Some("not_for_you");
        }
        if conditions.first_order && buyer.ordered_before {
            return Some("first_order_only");
        }
        if conditions.min_subtotal.get(&buyer.currency).is_some_and(|min| subtotal < *min)
            || (!conditions.min_subtotal.is_empty() && !conditions.min_subtotal.contains_key(&buyer.currency))
        {
            return Some("min_subtotal");
        }
        if self.kind != Kind::FreeShipping && !lines.iter().any(|line| self.eligible(line)) {
            return Some("no_eligible_items");
        }
        if self.kind == Kind::BuyXGetY {
            let units: i64 = lines.iter().filter(|line| self.eligible(line)).map(|line| line.quantity).sum();
            if units < self.buy_quantity + self.get_quantity {
                return Some("no_eligible_items");
            }
        }
        None
    }

    /// The discount on each line, taken from what `left` of each line is still undiscounted.
    fn discount(&self, lines: &[PromoLine], left: &[i64]) -> Vec<i64> {
        let eligible: Vec<usize> = (0..lines.len()).filter(|index| self.eligible(&lines[*index])).collect();
        let weights: Vec<i64> = eligible.iter().map(|index| left[*index]).collect();
        let base: i64 = weights.iter().sum();
        let total = match self.kind {
            Kind::Percentage => percent_of(base, self.value),
            Kind::Fixed => self.value.min(base),
            Kind::FreeShipping => 0,
            Kind::BuyXGetY => return self.buy_x_get_y(lines, left, &eligible),
        };
        let mut out = vec![0; lines.len()];
        for (index, part) in eligible.iter().zip(allocate(total, &weights)) {
            out[*index] = part;
        }
        out
    }

    /// Of the eligible units, most expensive first, each group of `buy + get` gives its `get`
    /// cheapest units at `value` basis points off.
    fn buy_x_get_y(&self, lines: &[PromoLine], left: &[i64], eligible: &[usize]) -> Vec<i64> {
        let mut out = vec![0; lines.len()];
        let group = self.buy_quantity + self.get_quantity;
        if group <= 0 || self.get_quantity <= 0 {
            return out;
        }
        let mut units: Vec<(i64, usize)> = eligible
            .iter()
            .flat_map(|index| std::iter::repeat_n((lines[*index].unit_amount, *index), lines[*index].quantity as usize))
            .collect();
        units.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for chunk in units.chunks(group as usize).filter(|chunk| chunk.len() as i64 == group) {
            for (amount, index) in &chunk[self.buy_quantity as usize..] {
                out[*index] += percent_of(*amount, self.value);
            }
        }
        for (index, discount) in out.iter_mut().enumerate() {
            *discount = (*discount).min(left[index]);
        }
        out
    }
}

/// Applies `promotions` in order, each on what the previous left; the discounts per line, the
/// discounts given, and whether shipping is free.
fn stack(promotions: &[&Promotion], lines: &[PromoLine]) -> (Vec<i64>, Vec<Discount>, bool) {
    let mut left: Vec<i64> = lines.iter().map(|line| line.unit_amount.saturating_mul(line.quantity)).collect();
    let mut given = vec![0; lines.len()];
    let mut discounts = Vec::new();
    let mut free_shipping = false;
    for promotion in promotions {
        let parts = promotion.discount(lines, &left);
        let amount: i64 = parts.iter().sum();
        for (index, part) in parts.into_iter().enumerate() {
            left[index] -= part;
            given[index] += part;
        }
        free_shipping |= promotion.kind == Kind::FreeShipping;
        if amount > 0 || promotion.kind == Kind::FreeShipping {
            discounts.push(Discount {
                promotion_id: promotion.id.clone(),
                code: promotion.code.clone(),
                name: promotion.name.clone(),
                amount,
            });
        }
    }
    (given, discounts, free_shipping)
}

/// What `candidates` (the automatic promotions and the codes entered) give the cart.
/// `shipping` is the price of the chosen shipping, to weigh free shipping against the rest.
pub fn apply(candidates: &[Promotion], lines: &[PromoLine], buyer: &Buyer, shipping: i64) -> Outcome {
    let mut refused = Vec::new();
    let mut valid = Vec::new();
    for promotion in candidates {
        match promotion.refusal(lines, buyer) {
            None => valid.push(promotion),
            Some(reason) => {
                if let Some(code) = &promotion.code {
                    refused.push((code.clone(), reason));
                }
            }
        }
    }
    let worth = |(given, _, free): &(Vec<i64>, Vec<Discount>, bool)| {
        given.iter().sum::<i64>() + if *free { shipping } else { 0 }
    };
    let combinable: Vec<&Promotion> = valid.iter().copied().filter(|p| p.combinable).collect();
    let together = stack(&combinable, lines);
    let alone = valid
        .iter()
        .filter(|p| !p.combinable)
        .map(|p| (p.id.clone(), stack(&[p], lines)))
        .max_by_key(|(_, outcome)| worth(outcome));
    let (chosen, chosen_ids): (_, HashSet<String>) = match alone {
        Some((id, outcome)) if worth(&outcome) > worth(&together) => (outcome, HashSet::from([id])),
        _ => (together, combinable.iter().map(|p| p.id.clone()).collect()),
    };
    for promotion in valid.iter().filter(|p| !chosen_ids.contains(&p.id)) {
        if let Some(code) = &promotion.code {
            refused.push((code.clone(), "not_combinable"));
        }
    }
    let (line_discounts, discounts, free_shipping) = chosen;
    Outcome { line_discounts, free_shipping, discounts, refused }
}

/// The automatic promotions in force and the promotions of `codes`.
pub async fn candidates(state: &AppState, settings: &Settings, codes: &[String]) -> AppResult<Vec<Promotion>> {
    let mut found = settings.automatic.clone();
    if !codes.is_empty() {
        let list: Vec<String> = (1..=codes.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT {COLUMNS} FROM promotions WHERE code IN ({}) ORDER BY id", list.join(", "));
        let rows = db_run!(state.db.read().await?, |conn| {
            let mut query = sqlx::query_as::<_, PromotionRow>(&sql);
            for code in codes {
                query = query.bind(code);
            }
            query.fetch_all(conn).await
        })?;
        found.extend(rows.into_iter().map(Promotion::from));
        found.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Ok(found)
}

/// The active automatic promotions, for the settings cache.
pub async fn automatic(db: &Db) -> AppResult<Vec<Promotion>> {
    let sql = format!("SELECT {COLUMNS} FROM promotions WHERE code IS NULL AND active ORDER BY id");
    let rows = db_run!(db.read().await?, |conn| sqlx::query_as::<_, PromotionRow>(&sql).fetch_all(conn).await)?;
    Ok(rows.into_iter().map(Promotion::from).collect())
}

/// Takes one use of each promotion given, for the payment `payment_id`: a promotion used up
/// meanwhile, or used up by this shopper, is a 409 and nothing is taken.
pub async fn take_uses(
    tx: &mut Tx,
    discounts: &[Discount],
    payment_id: &str,
    email: &str,
    customer_id: Option<&str>,
) -> AppResult<()> {
    for discount in discounts {
        let taken = db_run!(tx.conn(), |conn| {
            sqlx::query_as::<_, (Option<i64>, String, Option<bool>)>(
                "UPDATE promotions SET times_used = times_used + 1 WHERE id = $1 AND active \
                 AND (usage_limit IS NULL OR times_used < usage_limit) \
                 RETURNING per_customer_limit, conditions, times_used = usage_limit",
            )
            .bind(&discount.promotion_id)
            .fetch_optional(conn)
            .await
        })?;
        let used_up = || {
            AppError::new(ErrorCode::Conflict, format!("The promotion “{}” can no longer be used.", discount.name))
                .with_field("codes", "used_up", "a promotion in the cart was used up meanwhile")
        };
        let Some((per_customer, conditions, now_used_up)) = taken else { return Err(used_up()) };
        if now_used_up == Some(true) {
            // Carts read the automatic promotions from the settings cache: this one ends now.
            tx.invalidate(super::settings_changed());
        }
        let first_order = serde_json::from_str::<Conditions>(&conditions).is_ok_and(|c| c.first_order);
        // A first-order promotion: no order yet, and no other checkout of this shopper using it.
        let limit = if first_order { Some(per_customer.unwrap_or(1).min(1)) } else { per_customer };
        if first_order {
            let ordered = db_run!(tx.conn(), |conn| {
                sqlx::query_scalar::<_, String>("SELECT id FROM orders WHERE email = $1 OR customer_id = $2 LIMIT 1")
                    .bind(email)
                    .bind(customer_id)
                    .fetch_optional(conn)
                    .await
            })?;
            if ordered.is_some() {
                return Err(used_up());
            }
        }
        if let Some(limit) = limit {
            let used = db_run!(tx.conn(), |conn| {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM promotion_usages WHERE promotion_id = $1 AND (email = $2 OR customer_id = $3)",
                )
                .bind(&discount.promotion_id)
                .bind(email)
                .bind(customer_id)
                .fetch_one(conn)
                .await
            })?;
            if used >= limit {
                return Err(used_up());
            }
        }
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO promotion_usages (id, promotion_id, payment_id, email, customer_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(new_id("pru"))
            .bind(&discount.promotion_id)
            .bind(payment_id)
            .bind(email)
            .bind(customer_id)
            .bind(Timestamp::now())
            .execute(conn)
            .await
        })?;
    }
    Ok(())
}

/// Gives back the uses taken for a payment whose order was not placed.
pub async fn give_back_uses(tx: &mut Tx, payment_id: &str) -> AppResult<()> {
    let given_back = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE promotions SET times_used = times_used - 1 WHERE id IN \
             (SELECT promotion_id FROM promotion_usages WHERE payment_id = $1 AND order_id IS NULL)",
        )
        .bind(payment_id)
        .execute(conn)
        .await
    })?;
    if given_back > 0 {
        // A promotion that was used up may be usable again.
        tx.invalidate(super::settings_changed());
    }
    db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM promotion_usages WHERE payment_id = $1 AND order_id IS NULL")
            .bind(payment_id)
            .execute(conn)
            .await
    })?;
    Ok(())
}

/// Keeps the uses taken for a payment with the order it placed.
pub async fn keep_uses(tx: &mut Tx, payment_id: &str, order_id: &str) -> AppResult<()> {
    db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE promotion_usages SET order_id = $1 WHERE payment_id = $2")
            .bind(order_id)
            .bind(payment_id)
            .execute(conn)
            .await
    })?;
    Ok(())
}

/// How many times the shopper used each of `promotions`, and whether they ordered before.
pub async fn buyer_history(
    db: &Db,
    promotions: &[Promotion],
    email: Option<&str>,
    customer_id: Option<&str>,
) -> AppResult<(HashMap<String, i64>, bool)> {
    let mut uses = HashMap::new();
    if email.is_none() && customer_id.is_none() {
        return Ok((uses, false));
    }
    for promotion in promotions.iter().filter(|p| p.per_customer_limit.is_some()) {
        let used = db_run!(db.read().await?, |conn| {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM promotion_usages WHERE promotion_id = $1 AND (email = $2 OR customer_id = $3)",
            )
            .bind(&promotion.id)
            .bind(email)
            .bind(customer_id)
            .fetch_one(conn)
            .await
        })?;
        uses.insert(promotion.id.clone(), used);
    }
    let ordered_before = if promotions.iter().any(|p| p.conditions.first_order) {
        db_run!(db.read().await?, |conn| {
            sqlx::query_scalar::<_, String>("SELECT id FROM orders WHERE email = $1 OR customer_id = $2 LIMIT 1")
                .bind(email)
                .bind(customer_id)
                .fetch_optional(conn)
                .await
        })?
        .is_some()
    } else {
        false
    };
    Ok((uses, ordered_before))
}

/// Each product's categories with every category above them, for the products in `ids`.
pub async fn categories_of(db: &Db, ids: &[&str]) -> AppResult<HashMap<String, Vec<String>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql =
        format!("SELECT product_id, category_id FROM product_categories WHERE product_id IN ({})", list.join(", "));
    let pairs = db_run!(db.read().await?, |conn| {
        let mut query = sqlx::query_as::<_, (String, String)>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.fetch_all(conn).await
    })?;
    let parents: HashMap<String, Option<String>> = db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, (String, Option<String>)>("SELECT id, parent_id FROM categories").fetch_all(conn).await
    })?
    .into_iter()
    .collect();
    let mut of: HashMap<String, Vec<String>> = HashMap::new();
    for (product, category) in pairs {
        let set = of.entry(product).or_default();
        let mut at = Some(category);
        while let Some(id) = at {
            if set.contains(&id) {
                break;
            }
            at = parents.get(&id).cloned().flatten();
            set.push(id);
        }
    }
    Ok(of)
}

/// A code as shoppers may type it: trimmed, upper case.
pub fn normalise_code(code: &str) -> String {
    code.trim().to_uppercase()
}

fn is_code(code: &str) -> bool {
    (3..=40).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPromotion {
    /// Absent for an automatic promotion. 3 to 40 letters, digits, `-` and `_`; kept upper case.
    pub code: Option<String>,
    pub name: String,
    pub kind: Kind,
    #[serde(default)]
    pub value: i64,
    /// For `fixed`.
    pub currency: Option<String>,
    #[serde(default)]
    pub buy_quantity: i64,
    #[serde(default)]
    pub get_quantity: i64,
    #[serde(default)]
    pub conditions: Conditions,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    #[serde(default)]
    pub combinable: bool,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromotionPatch {
    pub name: Option<String>,
    pub value: Option<i64>,
    pub conditions: Option<Conditions>,
    pub starts_at: Option<Timestamp>,
    pub ends_at: Option<Timestamp>,
    pub usage_limit: Option<i64>,
    pub per_customer_limit: Option<i64>,
    pub combinable: Option<bool>,
    pub active: Option<bool>,
}

fn check(new: &NewPromotion, violations: &mut Violations) {
    if let Some(code) = &new.code
        && !is_code(&normalise_code(code))
    {
        violations.add("code", "invalid_format", "must be 3 to 40 letters, digits, `-` and `_`");
    }
    check_common(Some(&new.name), Some(new.kind), Some(new.value), Some(&new.conditions), violations);
    match new.kind {
        Kind::Fixed if !new.currency.as_deref().is_some_and(is_currency) => {
            violations.add("currency", "required", "a fixed amount needs its ISO 4217 currency");
        }
        Kind::BuyXGetY if new.buy_quantity < 1 || new.get_quantity < 1 || new.buy_quantity + new.get_quantity > 100 => {
            violations.add("buy_quantity", "out_of_range", "buy and get at least 1 each, and 100 together at most");
        }
        _ => {}
    }
    check_limits(new.starts_at, new.ends_at, new.usage_limit, new.per_customer_limit, violations);
}

fn check_common(
    name: Option<&str>,
    kind: Option<Kind>,
    value: Option<i64>,
    conditions: Option<&Conditions>,
    violations: &mut Violations,
) {
    if name.is_some_and(|name| name.trim().is_empty() || !single_line(name, 100)) {
        violations.add("name", "invalid_format", "must be 1 to 100 characters on one line");
    }
    if let (Some(kind), Some(value)) = (kind, value) {
        let range = match kind {
            Kind::Percentage | Kind::BuyXGetY => 1..=10_000,
            Kind::Fixed => 1..=1_000_000_000_000,
            Kind::FreeShipping => 0..=0,
        };
        if !range.contains(&value) {
            violations.add("value", "out_of_range", format!("must be between {} and {}", range.start(), range.end()));
        }
    }
    if let Some(conditions) = conditions {
        if conditions.min_subtotal.iter().any(|(currency, amount)| !is_currency(currency) || *amount < 0) {
            violations.add("conditions.min_subtotal", "invalid", "amounts per ISO 4217 currency, not negative");
        }
        let lists = [
            ("conditions.product_ids", &conditions.product_ids, "prd"),
            ("conditions.category_ids", &conditions.category_ids, "cat"),
            ("conditions.customer_ids", &conditions.customer_ids, "cus"),
        ];
        for (field, ids, prefix) in lists {
            if ids.len() > 1000 || ids.iter().any(|id| !has_shape(id, prefix)) {
                violations.add(field, "invalid", format!("must be at most 1000 `{prefix}_` ids"));
            }
        }
    }
}

fn check_limits(
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    usage_limit: Option<i64>,
    per_customer_limit: Option<i64>,
    violations: &mut Violations,
) {
    if let (Some(starts), Some(ends)) = (starts_at, ends_at)
        && ends <= starts
    {
        violations.add("ends_at", "invalid", "must be after starts_at");
    }
    if usage_limit.is_some_and(|limit| limit < 1) || per_customer_limit.is_some_and(|limit| limit < 1) {
        violations.add("usage_limit", "out_of_range", "limits are at least 1");
    }
}

fn not_found() -> AppError {
    AppError::not_found("No promotion has this id.")
}

fn code_taken(err: sqlx::Error) -> AppError {
    if dialect::is_unique_violation(&err, "promotions", "code") {
        return AppError::conflict("code", "Another promotion has this code.");
    }
    err.into()
}

async fn find(db: &Db, id: &str) -> AppResult<Promotion> {
    if !has_shape(id, "prm") {
        return Err(not_found());
    }
    let sql = format!("SELECT {COLUMNS} FROM promotions WHERE id = $1");
    let row =
        db_run!(db.read().await?, |conn| sqlx::query_as::<_, PromotionRow>(&sql).bind(id).fetch_optional(conn).await)?;
    row.map(Promotion::from).ok_or_else(not_found)
}

fn to_json<T: Serialize>(value: &T) -> AppResult<String> {
    serde_json::to_string(value).map_err(AppError::internal)
}

/// Create a promotion: a code, or an automatic promotion without one.
#[utoipa::path(post, path = "/api/v1/admin/promotions", tag = "admin: promotions", request_body = NewPromotion,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Promotion, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The code is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_promotion(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(new): Json<NewPromotion>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let mut violations = Violations::default();
    check(&new, &mut violations);
    violations.finish()?;
    let id = new_id("prm");
    let now = Timestamp::now();
    let code = new.code.as_deref().map(normalise_code);
    let currency = if new.kind == Kind::Fixed { new.currency.clone() } else { None };
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO promotions (id, code, name, kind, value, currency, buy_quantity, get_quantity, conditions, \
             starts_at, ends_at, usage_limit, per_customer_limit, combinable, active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)",
        )
        .bind(&id)
        .bind(&code)
        .bind(new.name.trim())
        .bind(new.kind.as_str())
        .bind(new.value)
        .bind(&currency)
        .bind(if new.kind == Kind::BuyXGetY { new.buy_quantity } else { 0 })
        .bind(if new.kind == Kind::BuyXGetY { new.get_quantity } else { 0 })
        .bind(to_json(&new.conditions)?)
        .bind(new.starts_at)
        .bind(new.ends_at)
        .bind(new.usage_limit)
        .bind(new.per_customer_limit)
        .bind(new.combinable)
        .bind(new.active)
        .bind(now)
        .execute(conn)
        .await
    })
    .map_err(code_taken)?;
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "promotion.created", Some(&id), new.name.trim()).await?;
    tx.invalidate(super::settings_changed());
    tx.commit().await?;
    let promotion = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::CREATED, promotion.version, promotion))
}

/// List promotions, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/promotions", tag = "admin: promotions", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Promotion>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_promotions(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Promotion>>> {
    staff.require(Permission::SettingsManage)?;
    let rows = pagination::oldest_first(&state.db, "promotions", COLUMNS, &page, |row: &PromotionRow| &row.id).await?;
    Ok(Json(Page { data: rows.data.into_iter().map(Promotion::from).collect(), next_cursor: rows.next_cursor }))
}

/// Read a promotion, with how many times it was used.
#[utoipa::path(get, path = "/api/v1/admin/promotions/{id}", tag = "admin: promotions", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Promotion, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_promotion(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let promotion = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::OK, promotion.version, promotion))
}

/// Change a promotion. Its code and kind stay; send the `ETag` you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/promotions/{id}", tag = "admin: promotions", request_body = PromotionPatch,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Promotion, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_promotion(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(patch): Json<PromotionPatch>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let current = find(&state.db, &id).await?;
    http::require_version(&headers, current.version)?;
    let mut violations = Violations::default();
    let value = patch.value.unwrap_or(current.value);
    let conditions = patch.conditions.clone().unwrap_or_else(|| current.conditions.clone());
    check_common(patch.name.as_deref(), Some(current.kind), Some(value), Some(&conditions), &mut violations);
    let starts_at = patch.starts_at.or(current.starts_at);
    let ends_at = patch.ends_at.or(current.ends_at);
    let usage_limit = patch.usage_limit.or(current.usage_limit);
    let per_customer_limit = patch.per_customer_limit.or(current.per_customer_limit);
    check_limits(starts_at, ends_at, usage_limit, per_customer_limit, &mut violations);
    violations.finish()?;
    let mut tx = state.db.begin().await?;
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE promotions SET name = $1, value = $2, conditions = $3, starts_at = $4, ends_at = $5, \
             usage_limit = $6, per_customer_limit = $7, combinable = $8, active = $9, updated_at = $10, \
             version = version + 1 WHERE id = $11 AND version = $12",
        )
        .bind(patch.name.as_deref().map_or(current.name.as_str(), str::trim))
        .bind(value)
        .bind(to_json(&conditions)?)
        .bind(starts_at)
        .bind(ends_at)
        .bind(usage_limit)
        .bind(per_customer_limit)
        .bind(patch.combinable.unwrap_or(current.combinable))
        .bind(patch.active.unwrap_or(current.active))
        .bind(Timestamp::now())
        .bind(&id)
        .bind(current.version)
        .execute(conn)
        .await
    })?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "promotion.updated", Some(&id), &current.name).await?;
    tx.invalidate(super::settings_changed());
    tx.commit().await?;
    let promotion = find(&state.db, &id).await?;
    Ok(http::tagged(StatusCode::OK, promotion.version, promotion))
}

/// Delete a promotion that was never used; one that was is deactivated instead.
#[utoipa::path(delete, path = "/api/v1/admin/promotions/{id}", tag = "admin: promotions", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Orders used it; deactivate it instead", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_promotion(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::SettingsManage)?;
    let promotion = find(&state.db, &id).await?;
    if promotion.times_used > 0 {
        return Err(AppError::conflict("id", "Orders used this promotion; set `active` to false instead."));
    }
    let mut tx = state.db.begin().await?;
    let deleted = db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM promotions WHERE id = $1 AND times_used = 0").bind(&id).execute(conn).await
    })?;
    if deleted == 0 {
        return Err(AppError::conflict("id", "Orders used this promotion; set `active` to false instead."));
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "promotion.deleted", Some(&id), &promotion.name).await?;
    tx.invalidate(super::settings_changed());
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn promotion(id: &str, kind: Kind, value: i64, combinable: bool) -> Promotion {
        Promotion {
            id: id.into(),
            code: Some(id.to_uppercase()),
            name: id.into(),
            kind,
            value,
            currency: Some("EUR".into()),
            buy_quantity: 2,
            get_quantity: 1,
            conditions: Conditions::default(),
            starts_at: None,
            ends_at: None,
            usage_limit: None,
            per_customer_limit: None,
            times_used: 0,
            combinable,
            active: true,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            version: 1,
        }
    }

    fn line(product: &str, unit_amount: i64, quantity: i64) -> PromoLine {
        PromoLine { product_id: product.into(), categories: vec![], unit_amount, quantity }
    }

    fn buyer() -> Buyer {
        Buyer { currency: "EUR".into(), now: Timestamp(1_000), ..Buyer::default() }
    }

    #[test]
    fn a_percentage_is_spread_over_lines_by_amount() {
        let lines = [line("prd_a", 3000, 1), line("prd_b", 1000, 1)];
        let outcome = apply(&[promotion("ten", Kind::Percentage, 1000, false)], &lines, &buyer(), 0);
        assert_eq!(outcome.line_discounts, [300, 100]);
        let fixed = apply(&[promotion("five", Kind::Fixed, 1000, false)], &lines, &buyer(), 0);
        assert_eq!(fixed.line_discounts, [750, 250]);
    }

    #[test]
    fn buy_two_get_one_gives_the_cheapest_of_each_three() {
        let lines = [line("prd_a", 1000, 2), line("prd_b", 400, 2)];
        let outcome = apply(&[promotion("b2g1", Kind::BuyXGetY, 10_000, false)], &lines, &buyer(), 0);
        // Units by price: 1000, 1000, 400 | 400: one full group, its cheapest (400) free.
        assert_eq!(outcome.line_discounts, [0, 400]);
    }

    #[test]
    fn the_better_of_alone_or_together_wins_and_refusals_are_named() {
        let lines = [line("prd_a", 10_000, 1)];
        let mut late = promotion("late", Kind::Percentage, 5000, true);
        late.ends_at = Some(Timestamp(500));
        let candidates = [
            promotion("ten", Kind::Percentage, 1000, true),
            promotion("ship", Kind::FreeShipping, 0, true),
            promotion("big", Kind::Percentage, 2000, false),
            late,
        ];
        let outcome = apply(&candidates, &lines, &buyer(), 490);
        assert_eq!(outcome.line_discounts, [2000], "20% alone beats 10% and 4.90 of shipping");
        assert!(!outcome.free_shipping);
        let mut refused = outcome.refused.clone();
        refused.sort();
        assert_eq!(
            refused,
            [
                ("LATE".to_owned(), "expired"),
                ("SHIP".to_owned(), "not_combinable"),
                ("TEN".to_owned(), "not_combinable")
            ]
        );
        let cheap = apply(&candidates, &lines, &buyer(), 1500);
        assert_eq!(cheap.line_discounts, [1000], "10% and free shipping of 15.00 beat 20%");
        assert!(cheap.free_shipping);
    }

    #[test]
    fn conditions_narrow_who_and_what() {
        let lines = [line("prd_a", 1000, 1), line("prd_b", 2000, 1)];
        let mut only_b = promotion("b", Kind::Percentage, 5000, false);
        only_b.conditions.product_ids = vec!["prd_b".into()];
        assert_eq!(apply(std::slice::from_ref(&only_b), &lines, &buyer(), 0).line_discounts, [0, 1000]);
        let mut minimum = promotion("min", Kind::Percentage, 1000, false);
        minimum.conditions.min_subtotal = HashMap::from([("EUR".to_owned(), 5000)]);
        assert_eq!(minimum.refusal(&lines, &buyer()), Some("min_subtotal"));
        let mut first = promotion("first", Kind::Percentage, 1000, false);
        first.conditions.first_order = true;
        let returning = Buyer { ordered_before: true, ..buyer() };
        assert_eq!(first.refusal(&lines, &returning), Some("first_order_only"));
        let mut once = promotion("once", Kind::Percentage, 1000, false);
        once.per_customer_limit = Some(1);
        let used = Buyer { uses: HashMap::from([("once".to_owned(), 1)]), ..buyer() };
        assert_eq!(once.refusal(&lines, &used), Some("limit_reached"));
        let mut dollars = promotion("usd", Kind::Fixed, 500, false);
        dollars.currency = Some("USD".into());
        assert_eq!(dollars.refusal(&lines, &buyer()), Some("wrong_currency"));
    }

    proptest! {
        #[test]
        fn discounts_never_exceed_what_they_apply_to(
            amounts in prop::collection::vec((0i64..100_000, 1i64..20), 1..8),
            percent in 1i64..=10_000,
            fixed in 1i64..1_000_000,
        ) {
            let lines: Vec<PromoLine> =
                amounts.iter().enumerate().map(|(i, (a, q))| line(&format!("prd_{i}"), *a, *q)).collect();
            let candidates = [
                promotion("p", Kind::Percentage, percent, true),
                promotion("f", Kind::Fixed, fixed, true),
                promotion("b", Kind::BuyXGetY, percent, true),
            ];
            let outcome = apply(&candidates, &lines, &buyer(), 0);
            for (discount, line) in outcome.line_discounts.iter().zip(&lines) {
                prop_assert!(*discount >= 0 && *discount <= line.unit_amount * line.quantity);
            }
            let given: i64 = outcome.discounts.iter().map(|d| d.amount).sum();
            prop_assert_eq!(given, outcome.line_discounts.iter().sum::<i64>());
        }
    }
}
