//! A cart and its pricing. A cart is priced again on every read and change, from the catalog
//! as it is now: prices, stock, tax at the address, shipping. What changed since the shopper
//! last saw it, and what still stands in the way of placing the order, is said in the answer.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::address::Address;
use super::pricing::{self, PriceInput, PriceLine};
use super::promotions::{self, Buyer, Discount, PromoLine, Promotion};
use super::regions::Region;
use super::shipping::{self, ShippingOption};
use super::tax::{Applied, TaxProvider, TaxRequest};
use crate::app::AppState;
use crate::db_run;
use crate::platform::batch::Batch;
use crate::platform::db::{Db, Param, Tx};
use crate::platform::error::{AppError, AppResult};
use crate::platform::ids::has_shape;
use crate::platform::time::Timestamp;

/// The most lines a cart holds, and units a line.
pub const MAX_LINES: usize = 100;
pub const MAX_QUANTITY: i64 = 1_000;

crate::direct_row! {
    #[derive(Debug, Clone, sqlx::FromRow)]
    pub struct CartRow {
        pub id: String,
        pub customer_id: Option<String>,
        pub region_id: String,
        pub email: Option<String>,
        pub shipping_address: Option<String>,
        pub billing_address: Option<String>,
        pub shipping_method_id: Option<String>,
        pub status: String,
        pub checkout_key: Option<String>,
        pub checkout_until: Option<Timestamp>,
        pub order_id: Option<String>,
        /// The codes entered, as a JSON list.
        pub codes: String,
        pub expires_at: Timestamp,
        pub created_at: Timestamp,
        pub updated_at: Timestamp,
        pub version: i64,
    }
}

impl CartRow {
    pub fn code_list(&self) -> Vec<String> {
        serde_json::from_str(&self.codes).unwrap_or_default()
    }
}

pub const CART_COLUMNS: &str = "id, customer_id, region_id, email, shipping_address, billing_address, \
     shipping_method_id, status, checkout_key, checkout_until, order_id, codes, expires_at, created_at, updated_at, \
     version";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LineRow {
    pub id: String,
    pub variant_id: String,
    pub quantity: i64,
    pub shown_amount: Option<i64>,
}

/// What the catalog says of a line's variant now.
#[derive(Debug, Clone)]
pub struct Facts {
    pub variant_id: String,
    pub product_id: String,
    pub handle: String,
    pub title: String,
    pub status: String,
    pub sku: Option<String>,
    pub option_values: String,
    pub weight_grams: Option<i64>,
    pub tax_class: String,
    pub inventory_policy: String,
    pub amount: Option<i64>,
    pub compare_at_amount: Option<i64>,
    pub available: i64,
}

impl Facts {
    /// "Red / M": the variant's option values in the product's order.
    pub fn variant_title(&self) -> String {
        let values: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.option_values).unwrap_or_default();
        values.values().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" / ")
    }
}

/// Everything pricing needs besides the cart.
pub struct Context {
    pub region: Region,
    /// The rate of each tax class of the cart at the address, as the tax provider answered;
    /// `standard` also taxes shipping.
    pub rates: HashMap<String, Applied>,
    pub settings: std::sync::Arc<super::Settings>,
    pub tax_exempt: bool,
    /// The automatic promotions and those of the codes entered.
    pub promotions: Vec<Promotion>,
    pub buyer: Buyer,
    /// Each product's categories with those above them, when a promotion asks.
    pub categories: HashMap<String, Vec<String>>,
}

impl Context {
    pub async fn load(state: &AppState, cart: &CartRow) -> AppResult<Self> {
        let db = &state.db;
        let settings = super::settings(state).await?;
        let region = settings
            .region(&cart.region_id)
            .cloned()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("cart {} has no region", cart.id)))?;
        let tax_exempt = match &cart.customer_id {
            Some(customer) => db_run!(db.read().await?, |conn| {
                sqlx::query_scalar::<_, bool>("SELECT tax_exempt FROM customers WHERE id = $1")
                    .bind(customer)
                    .fetch_optional(conn)
                    .await
            })?
            .unwrap_or(false),
            None => false,
        };
        let promotions = promotions::candidates(state, &settings, &cart.code_list()).await?;
        let (uses, ordered_before) =
            promotions::buyer_history(db, &promotions, cart.email.as_deref(), cart.customer_id.as_deref()).await?;
        let buyer = Buyer {
            currency: region.currency.clone(),
            customer_id: cart.customer_id.clone(),
            ordered_before,
            uses,
            now: Timestamp::now(),
        };
        Ok(Self { region, rates: HashMap::new(), settings, tax_exempt, promotions, buyer, categories: HashMap::new() })
    }

    fn rate(&self, class: &str) -> Applied {
        self.rates.get(class).cloned().unwrap_or(Applied { rate_bps: 0, name: String::new() })
    }
}

/// Where tax is charged: the shipping address, or before there is one the region's first
/// country, as an estimate. Country, subdivision and postcode.
fn tax_place(row: &CartRow, region: &Region) -> (String, String, String) {
    match parse_address(row.shipping_address.as_deref()) {
        Some(address) => (address.country, address.subdivision, address.postcode),
        None => (region.countries.first().cloned().unwrap_or_default(), String::new(), String::new()),
    }
}

/// Asks the tax provider the rate of each class at the cart's place.
async fn rates(
    provider: &dyn TaxProvider,
    taxes: std::sync::Arc<super::tax::TaxTable>,
    row: &CartRow,
    region: &Region,
    facts: &HashMap<String, Facts>,
) -> AppResult<HashMap<String, Applied>> {
    let (country, subdivision, postcode) = tax_place(row, region);
    if country.is_empty() {
        return Ok(HashMap::new());
    }
    let mut classes: Vec<String> = facts.values().map(|fact| fact.tax_class.clone()).collect();
    classes.push("standard".into());
    classes.sort();
    classes.dedup();
    let request = TaxRequest { country, subdivision, postcode, classes, table: taxes };
    let answered = provider.rates(&request).await.map_err(AppError::internal)?;
    Ok(request.classes.into_iter().zip(answered).collect())
}

/// A line as the shopper sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CartLine {
    pub id: String,
    pub variant_id: String,
    pub product_id: String,
    pub handle: String,
    pub title: String,
    /// The variant's option values: "Red / M".
    pub variant_title: String,
    pub sku: Option<String>,
    pub quantity: i64,
    /// Absent when the variant can no longer be bought.
    pub unit_amount: Option<i64>,
    pub compare_at_amount: Option<i64>,
    pub subtotal: i64,
    pub discount: i64,
    pub tax: i64,
    pub tax_rate_bps: i64,
    pub total: i64,
    /// Units that can be sold now; absent for variants that take backorders.
    pub available: Option<i64>,
    pub tax_class: String,
    /// The tax's name on receipts ("VAT").
    pub tax_name: String,
    #[serde(skip)]
    pub weight_grams: i64,
}

/// Something that changed since the shopper last saw the cart, or that stops the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Change {
    /// `price_changed`, `unavailable`, `insufficient_stock`, `shipping_method_unavailable`.
    pub kind: &'static str,
    pub line_id: Option<String>,
    pub message: String,
    /// Whether the order cannot be placed until the shopper acts.
    pub blocking: bool,
}

/// The money of a cart, in minor units of its currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CartTotals {
    /// The goods at their listed prices.
    pub subtotal: i64,
    pub discount_total: i64,
    pub shipping: i64,
    pub shipping_discount: i64,
    pub shipping_tax: i64,
    /// Included in the prices when `tax_inclusive`, added to them otherwise.
    pub tax_total: i64,
    /// What the shopper pays.
    pub total: i64,
}

/// A cart, priced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Cart {
    pub id: String,
    pub region_id: String,
    pub currency: String,
    pub tax_inclusive: bool,
    /// Whether tax is only an estimate: no shipping address yet.
    pub tax_estimated: bool,
    /// Whether the customer pays no tax.
    pub tax_exempt: bool,
    pub customer_id: Option<String>,
    pub email: Option<String>,
    pub shipping_address: Option<Address>,
    pub billing_address: Option<Address>,
    pub lines: Vec<CartLine>,
    /// The codes entered.
    pub codes: Vec<String>,
    /// The promotions given, and how much each takes off.
    pub discounts: Vec<Discount>,
    /// The chosen method, as priced now.
    pub shipping_method: Option<ShippingOption>,
    /// The methods that can be chosen for the shipping address.
    pub shipping_options: Vec<ShippingOption>,
    pub totals: CartTotals,
    #[serde(skip_deserializing)]
    pub changes: Vec<Change>,
    /// What is still needed before the order can be placed: `lines`, `email`,
    /// `shipping_address`, `shipping_method`, or a blocking change.
    pub missing: Vec<String>,
    /// `active`, or `completed` once it became an order.
    pub status: String,
    pub order_id: Option<String>,
    pub expires_at: Timestamp,
    pub updated_at: Timestamp,
}

fn not_found() -> AppError {
    AppError::not_found("No cart has this id, or it has expired.")
}

/// The cart `id`, unless it has expired; read in `tx` when given.
pub async fn find_row(db: &Db, tx: Option<&mut Tx>, id: &str) -> AppResult<CartRow> {
    if !has_shape(id, "cart") {
        return Err(not_found());
    }
    let sql = format!("SELECT {CART_COLUMNS} FROM carts WHERE id = $1");
    let mut batch = Batch::new();
    batch.push(sql, vec![Param::Text(id.to_owned())]);
    let row = match tx {
        Some(tx) => tx.run(&batch).await?,
        None => db.read_batch(&batch).await?,
    }
    .remove(0)
    .row::<CartRow>()?;
    let row = row.ok_or_else(not_found)?;
    if row.status == "active" && row.expires_at < Timestamp::now() {
        return Err(not_found());
    }
    Ok(row)
}

/// A cart's lines, each with what the catalog says of its variant now (absent for a variant
/// that no longer exists), priced in the cart's currency.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    pub lines: Vec<LineRow>,
    pub facts: HashMap<String, Facts>,
}

crate::direct_row! {
    /// A line joined with its variant's facts; the fact columns are null when the variant is
    /// gone. The line's columns are null on the row of a variant the cart does not hold, and
    /// every column on the row of a cart without lines read with the cart.
    #[derive(sqlx::FromRow)]
    struct JoinedLine {
        line_id: Option<String>,
        variant_id: Option<String>,
        quantity: Option<i64>,
        shown_amount: Option<i64>,
        product_id: Option<String>,
        handle: Option<String>,
        title: Option<String>,
        product_status: Option<String>,
        sku: Option<String>,
        option_values: Option<String>,
        weight_grams: Option<i64>,
        tax_class: Option<String>,
        inventory_policy: Option<String>,
        amount: Option<i64>,
        compare_at_amount: Option<i64>,
        available: Option<i64>,
    }
}

/// The columns of the facts `f` of a variant; `available` is read for the variant
/// `$variant`.
macro_rules! fact_columns {
    ($variant:literal) => {
        concat!(
            "f.product_id, f.handle, f.title, f.status AS product_status, f.sku, f.option_values, \
             f.weight_grams, f.tax_class, f.inventory_policy, f.amount, f.compare_at_amount, \
             CAST(COALESCE((SELECT SUM(il.on_hand - il.reserved) FROM inventory_levels il \
               WHERE il.variant_id = ",
            $variant,
            "), 0) AS BIGINT) AS available"
        )
    };
}

/// The variants picked by `$filter`, with their product and price in `$currency`, as `f`.
macro_rules! facts_of {
    ($filter:expr, $currency:expr) => {
        concat!(
            "(SELECT v.id, v.product_id, p.handle, p.title, p.status, v.sku, v.option_values, v.weight_grams, \
               v.tax_class, v.inventory_policy, pr.amount, pr.compare_at_amount \
               FROM product_variants v JOIN products p ON p.id = v.product_id \
               LEFT JOIN variant_prices pr ON pr.variant_id = v.id AND pr.currency = ",
            $currency,
            " WHERE ",
            $filter,
            ") f"
        )
    };
}

/// The lines of the cart `$1` with their variants' facts in `$currency`; then, with
/// `$also`, the facts of the variant `$also` (its line's columns null).
///
/// The variants are picked by the cart's own lines (`IN`) before they are joined: joined to
/// the lines directly, PostgreSQL without statistics on the tables (a new shop's, until
/// autovacuum has analysed them) scans every variant and every price, a query twice as slow
/// and growing with the catalog.
macro_rules! lines_of {
    ($currency:expr) => {
        concat!(
            "SELECT l.id AS line_id, l.variant_id, l.quantity, l.shown_amount, l.created_at AS at, ",
            fact_columns!("l.variant_id"),
            " FROM cart_lines l LEFT JOIN ",
            facts_of!("v.id IN (SELECT variant_id FROM cart_lines WHERE cart_id = $1)", $currency),
            " ON f.id = l.variant_id WHERE l.cart_id = $1"
        )
    };
    ($currency:expr, $also:expr) => {
        concat!(
            lines_of!($currency),
            " UNION ALL SELECT NULL, f.id, NULL, NULL, NULL, ",
            fact_columns!("f.id"),
            " FROM ",
            facts_of!(concat!("v.id = ", $also), $currency)
        )
    };
}

/// The currency of the region of the cart `$1`.
macro_rules! cart_currency {
    () => {
        "(SELECT r.currency FROM regions r JOIN carts rc ON rc.region_id = r.id WHERE rc.id = $1)"
    };
}

/// The cart `$1`'s row, then its lines (see [`lines_of`]): the cart's columns on every row.
macro_rules! cart_with_lines {
    ($lines:expr) => {
        concat!(
            "SELECT c.id, c.customer_id, c.region_id, c.email, c.shipping_address, c.billing_address, \
             c.shipping_method_id, c.status, c.checkout_key, c.checkout_until, c.order_id, c.codes, \
             c.expires_at, c.created_at, c.updated_at, c.version, j.* FROM carts c LEFT JOIN (",
            $lines,
            ") j ON 1 = 1 WHERE c.id = $1 ORDER BY j.at, j.line_id"
        )
    };
}

/// The lines of cart `cart_id` and their variants' facts in `currency`, in one query.
pub async fn contents(db: &Db, cart_id: &str, currency: &str) -> AppResult<Contents> {
    let mut batch = Batch::new();
    batch.push(
        concat!(lines_of!("$2"), " ORDER BY at, l.id"),
        vec![Param::Text(cart_id.to_owned()), Param::Text(currency.to_owned())],
    );
    let rows = db.read_batch(&batch).await?.remove(0).rows::<JoinedLine>()?;
    Ok(gather(rows).0)
}

/// The cart `id` with its lines and their variants' facts in the cart's currency, and what
/// the catalog says of the variant `also`: one query. As [`find_row`] for a cart that does
/// not exist or has expired.
pub async fn find_with_contents(
    db: &Db,
    id: &str,
    also: Option<&str>,
) -> AppResult<(CartRow, Contents, Option<Facts>)> {
    if !has_shape(id, "cart") {
        return Err(not_found());
    }
    let mut params = vec![Param::Text(id.to_owned())];
    let sql = match also {
        Some(variant_id) => {
            params.push(Param::Text(variant_id.to_owned()));
            cart_with_lines!(lines_of!(cart_currency!(), "$2"))
        }
        None => cart_with_lines!(lines_of!(cart_currency!())),
    };
    let mut batch = Batch::new();
    batch.push(sql, params);
    let ran = db.read_batch(&batch).await?.remove(0);
    let row = ran.row::<CartRow>()?.ok_or_else(not_found)?;
    if row.status == "active" && row.expires_at < Timestamp::now() {
        return Err(not_found());
    }
    let (contents, also_facts) = gather(ran.rows::<JoinedLine>()?);
    Ok((row, contents, also_facts))
}

/// A cart's contents from its joined rows, and the facts of the variant read besides.
fn gather(rows: Vec<JoinedLine>) -> (Contents, Option<Facts>) {
    let mut contents = Contents { lines: Vec::with_capacity(rows.len()), facts: HashMap::new() };
    let mut also_facts = None;
    for row in rows {
        let Some(variant_id) = row.variant_id else { continue };
        let fact = match (row.product_id, row.handle, row.title, row.product_status) {
            (Some(product_id), Some(handle), Some(title), Some(status)) => Some(Facts {
                variant_id: variant_id.clone(),
                product_id,
                handle,
                title,
                status,
                sku: row.sku,
                option_values: row.option_values.unwrap_or_default(),
                weight_grams: row.weight_grams,
                tax_class: row.tax_class.unwrap_or_default(),
                inventory_policy: row.inventory_policy.unwrap_or_default(),
                amount: row.amount,
                compare_at_amount: row.compare_at_amount,
                available: row.available.unwrap_or(0),
            }),
            _ => None,
        };
        let (Some(id), Some(quantity)) = (row.line_id, row.quantity) else {
            also_facts = fact;
            continue;
        };
        if let Some(fact) = fact {
            contents.facts.insert(variant_id.clone(), fact);
        }
        contents.lines.push(LineRow { id, variant_id, quantity, shown_amount: row.shown_amount });
    }
    (contents, also_facts)
}

impl Contents {
    /// Whether a line's price differs from the one last shown to the shopper.
    fn unacknowledged(&self) -> bool {
        self.lines.iter().any(|line| {
            let amount = self.facts.get(&line.variant_id).and_then(|fact| fact.amount);
            amount.is_some() && line.shown_amount != amount
        })
    }
}

/// What the catalog says now of the variant `id`, priced in `currency`.
pub async fn facts(db: &Db, currency: &str, id: &str) -> AppResult<Option<Facts>> {
    const SQL: &str = concat!(
        "SELECT NULL AS line_id, f.id AS variant_id, NULL AS quantity, NULL AS shown_amount, ",
        fact_columns!("f.id"),
        " FROM ",
        facts_of!("v.id = $2", "$1")
    );
    let mut batch = Batch::new();
    batch.push(SQL, vec![Param::Text(currency.to_owned()), Param::Text(id.to_owned())]);
    let rows = db.read_batch(&batch).await?.remove(0).rows::<JoinedLine>()?;
    Ok(gather(rows).1)
}

/// Prices a cart row as the catalog and settings are now.
pub async fn priced(state: &AppState, row: &CartRow) -> AppResult<Cart> {
    let currency = super::currency_of(state, &row.region_id).await?;
    let contents = contents(&state.db, &row.id, &currency).await?;
    priced_with(state, row, &contents).await
}

/// Prices a cart that was just changed: the prices it now shows are the ones the shopper has
/// seen, so a later change of price is told from them.
pub async fn changed(state: &AppState, row: &CartRow) -> AppResult<Cart> {
    let currency = super::currency_of(state, &row.region_id).await?;
    let mut contents = contents(&state.db, &row.id, &currency).await?;
    acknowledge(state, row, &mut contents).await?;
    priced_with(state, row, &contents).await
}

/// Records the prices of `contents` as shown, when one differs from the price last shown.
pub async fn acknowledge(state: &AppState, row: &CartRow, contents: &mut Contents) -> AppResult<()> {
    if !contents.unacknowledged() {
        return Ok(());
    }
    // The prices this answer shows, not the catalog's now: a price changed since they were
    // read is still told next time.
    for line in &mut contents.lines {
        line.shown_amount = contents.facts.get(&line.variant_id).and_then(|fact| fact.amount);
    }
    let mut cases = String::new();
    for n in 0..contents.lines.len() {
        cases.push_str(&format!(" WHEN ${} THEN ${}", 2 * n + 2, 2 * n + 3));
    }
    let sql = format!("UPDATE cart_lines SET shown_amount = CASE id{cases} ELSE shown_amount END WHERE cart_id = $1");
    crate::db_execute!(state.db.write().await?, |conn| {
        let mut query = sqlx::query(&sql).bind(&row.id);
        for line in &contents.lines {
            query = query.bind(&line.id).bind(line.shown_amount);
        }
        query.execute(conn).await
    })?;
    Ok(())
}

/// Prices a cart row with its contents as read.
pub async fn priced_with(state: &AppState, row: &CartRow, contents: &Contents) -> AppResult<Cart> {
    let mut context = Context::load(state, row).await?;
    let taxes = context.settings.taxes.clone();
    context.rates = rates(state.tax.as_ref(), taxes, row, &context.region, &contents.facts).await?;
    if context.promotions.iter().any(|p| !p.conditions.category_ids.is_empty()) {
        let products: Vec<&str> = contents.facts.values().map(|fact| fact.product_id.as_str()).collect();
        context.categories = promotions::categories_of(&state.db, &products).await?;
    }
    Ok(price(row, &contents.lines, &contents.facts, &context))
}

fn parse_address(json: Option<&str>) -> Option<Address> {
    json.and_then(|json| serde_json::from_str(json).ok())
}

/// Prices a cart: pure, from what was read.
pub fn price(row: &CartRow, lines: &[LineRow], facts: &HashMap<String, Facts>, context: &Context) -> Cart {
    let region = &context.region;
    let shipping_address = parse_address(row.shipping_address.as_deref());
    let billing_address = parse_address(row.billing_address.as_deref());
    let (country, _, _) = tax_place(row, region);
    let mut changes = Vec::new();
    let mut priced_lines = Vec::with_capacity(lines.len());
    for line in lines {
        let fact = facts.get(&line.variant_id);
        let sellable = fact.filter(|f| f.status == "published" && f.amount.is_some());
        let Some(fact) = sellable else {
            changes.push(Change {
                kind: "unavailable",
                line_id: Some(line.id.clone()),
                message: "This item can no longer be bought; remove it to continue.".into(),
                blocking: true,
            });
            priced_lines.push(CartLine {
                id: line.id.clone(),
                variant_id: line.variant_id.clone(),
                product_id: fact.map(|f| f.product_id.clone()).unwrap_or_default(),
                handle: fact.map(|f| f.handle.clone()).unwrap_or_default(),
                title: fact.map(|f| f.title.clone()).unwrap_or_default(),
                variant_title: fact.map(Facts::variant_title).unwrap_or_default(),
                sku: fact.and_then(|f| f.sku.clone()),
                quantity: line.quantity,
                unit_amount: None,
                compare_at_amount: None,
                subtotal: 0,
                discount: 0,
                tax: 0,
                tax_rate_bps: 0,
                total: 0,
                available: Some(0),
                tax_class: String::new(),
                tax_name: String::new(),
                weight_grams: 0,
            });
            continue;
        };
        let amount = fact.amount.unwrap_or_default();
        if let Some(shown) = line.shown_amount
            && shown != amount
        {
            changes.push(Change {
                kind: "price_changed",
                line_id: Some(line.id.clone()),
                message: format!("The price of {} changed from {shown} to {amount}.", fact.title),
                blocking: false,
            });
        }
        let backorders = fact.inventory_policy == "continue";
        if !backorders && fact.available < line.quantity {
            changes.push(Change {
                kind: "insufficient_stock",
                line_id: Some(line.id.clone()),
                message: format!("Only {} of {} can be sold now.", fact.available.max(0), fact.title),
                blocking: true,
            });
        }
        // Pricing takes an exempt customer's tax off; it needs the rate to know how much.
        let applied = context.rate(&fact.tax_class);
        priced_lines.push(CartLine {
            id: line.id.clone(),
            variant_id: line.variant_id.clone(),
            product_id: fact.product_id.clone(),
            handle: fact.handle.clone(),
            title: fact.title.clone(),
            variant_title: fact.variant_title(),
            sku: fact.sku.clone(),
            quantity: line.quantity,
            unit_amount: Some(amount),
            compare_at_amount: fact.compare_at_amount,
            subtotal: 0,
            discount: 0,
            tax: 0,
            tax_rate_bps: applied.rate_bps,
            total: 0,
            available: (!backorders).then_some(fact.available.max(0)),
            tax_class: fact.tax_class.clone(),
            tax_name: applied.name,
            weight_grams: fact.weight_grams.unwrap_or(0).max(0) * line.quantity,
        });
    }
    let goods: i64 = priced_lines.iter().map(|line| line.unit_amount.unwrap_or(0) * line.quantity).sum();
    let weight: i64 = priced_lines.iter().map(|line| line.weight_grams).sum();
    let quote = |subtotal: i64| match &shipping_address {
        Some(address) => shipping::options(&context.settings.zones, address, &region.currency, weight, subtotal),
        None => Vec::new(),
    };
    let chosen = |options: &[ShippingOption]| {
        row.shipping_method_id.as_ref().and_then(|id| options.iter().find(|option| &option.id == id).cloned())
    };
    // Promotions first: free shipping is weighed at the chosen method's price before them.
    let before = chosen(&quote(goods)).map_or(0, |method| method.amount);
    let promo_lines: Vec<PromoLine> = priced_lines
        .iter()
        .map(|line| PromoLine {
            categories: context.categories.get(&line.product_id).cloned().unwrap_or_default(),
            product_id: line.product_id.clone(),
            unit_amount: line.unit_amount.unwrap_or(0),
            quantity: if line.unit_amount.is_some() { line.quantity } else { 0 },
        })
        .collect();
    let outcome = promotions::apply(&context.promotions, &promo_lines, &context.buyer, before);
    let entered = row.code_list();
    // A code that stopped giving what the shopper entered it for stops the order until they
    // remove it; one outshone by a better promotion does not.
    for (code, reason) in &outcome.refused {
        changes.push(Change {
            kind: "code_not_applicable",
            line_id: None,
            message: format!("The code {code} gives nothing now: {}.", reason.replace('_', " ")),
            blocking: *reason != "not_combinable",
        });
    }
    for code in entered.iter().filter(|code| !context.promotions.iter().any(|p| p.code.as_ref() == Some(*code))) {
        changes.push(Change {
            kind: "code_not_applicable",
            line_id: None,
            message: format!("The code {code} no longer exists."),
            blocking: true,
        });
    }
    let discounted: i64 = outcome.line_discounts.iter().sum();
    let shipping_options = quote(goods - discounted);
    let shipping_method = chosen(&shipping_options);
    if row.shipping_method_id.is_some() && shipping_method.is_none() {
        changes.push(Change {
            kind: "shipping_method_unavailable",
            line_id: None,
            message: "The chosen shipping method does not serve this cart any more; choose another.".into(),
            blocking: true,
        });
    }
    let shipping_rate =
        if region.shipping_taxable && !country.is_empty() { context.rate("standard").rate_bps } else { 0 };
    let shipping_amount = shipping_method.as_ref().map_or(0, |method| method.amount);
    let input = PriceInput {
        lines: priced_lines
            .iter()
            .zip(&outcome.line_discounts)
            .map(|(line, discount)| PriceLine {
                unit_amount: line.unit_amount.unwrap_or(0),
                quantity: line.quantity,
                tax_rate_bps: line.tax_rate_bps,
                discount: *discount,
            })
            .collect(),
        tax_inclusive: region.tax_inclusive,
        tax_exempt: context.tax_exempt,
        shipping_amount,
        shipping_discount: if outcome.free_shipping { shipping_amount } else { 0 },
        shipping_tax_rate_bps: shipping_rate,
    };
    let mut discounts = outcome.discounts.clone();
    // A free-shipping promotion is worth the shipping it saves (the first, should two apply).
    if let Some(free) = discounts.iter_mut().find(|discount| discount.amount == 0) {
        free.amount = input.shipping_discount;
    }
    let totals = pricing::compute(&input);
    for (line, computed) in priced_lines.iter_mut().zip(&totals.lines) {
        line.subtotal = computed.subtotal;
        line.discount = computed.discount;
        line.tax = computed.tax;
        line.total = computed.total;
    }
    let mut missing = Vec::new();
    if priced_lines.is_empty() {
        missing.push("lines".to_owned());
    }
    if row.email.is_none() {
        missing.push("email".to_owned());
    }
    if shipping_address.is_none() {
        missing.push("shipping_address".to_owned());
    }
    if shipping_method.is_none() {
        missing.push("shipping_method".to_owned());
    }
    for change in changes.iter().filter(|change| change.blocking) {
        if !missing.iter().any(|kind| kind == change.kind) {
            missing.push(change.kind.to_owned());
        }
    }
    Cart {
        id: row.id.clone(),
        region_id: region.id.clone(),
        currency: region.currency.clone(),
        tax_inclusive: region.tax_inclusive,
        tax_estimated: shipping_address.is_none(),
        tax_exempt: context.tax_exempt,
        customer_id: row.customer_id.clone(),
        email: row.email.clone(),
        billing_address: billing_address.or_else(|| shipping_address.clone()),
        shipping_address,
        lines: priced_lines,
        codes: entered,
        discounts,
        shipping_method,
        shipping_options,
        totals: CartTotals {
            subtotal: totals.subtotal,
            discount_total: totals.discount_total,
            shipping: totals.shipping,
            shipping_discount: totals.shipping_discount,
            shipping_tax: totals.shipping_tax,
            tax_total: totals.tax_total,
            total: totals.total,
        },
        changes,
        missing,
        status: row.status.clone(),
        order_id: row.order_id.clone(),
        expires_at: row.expires_at,
        updated_at: row.updated_at,
    }
}

/// Deletes carts that expired unplaced (their lines go with them); returns how many.
pub async fn purge_expired(state: &AppState) -> AppResult<u64> {
    let now = Timestamp::now();
    Ok(crate::db_execute!(state.db.write().await?, |conn| {
        sqlx::query(
            "DELETE FROM carts WHERE status = 'active' AND expires_at < $1 \
             AND (checkout_until IS NULL OR checkout_until < $1)",
        )
        .bind(now)
        .execute(conn)
        .await
    })?)
}
