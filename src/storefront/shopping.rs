//! The shopper's own pages: the cart, checkout and the order's confirmation. They are plain
//! forms, so they work without JavaScript, and they go through the same cart and checkout
//! code as the store API (prices, stock, promotions, tax, the `Idempotency-Key` of placing).
//!
//! A guest's cart is found by a cookie holding its id (`HttpOnly; SameSite=Lax`, so another
//! site's forms cannot send it); a form whose request says it came from another site is
//! refused besides. These pages are for one shopper: never stored by shared caches.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::page::Freshness;
use super::{Meta, Refusal, chrome, refused, render};
use crate::accounts::auth::{MaybeCustomer, cookie};
use crate::app::AppState;
use crate::catalog::money;
use crate::checkout::address::Address;
use crate::checkout::cart::{Cart, CartRow};
use crate::checkout::cart_api::{self, CartPatch, LinePatch, NewCart, NewCode, NewLine};
use crate::checkout::place::{self, PlaceOrder};
use crate::payments::PaymentDetails;
use crate::platform::error::AppError;
use crate::platform::http::Json;

/// The cookie holding a guest's cart id.
pub(super) const CART_COOKIE: &str = "backroom_cart";

pub(super) fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.secure_cookies() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"))
        .unwrap_or(HeaderValue::from_static(""))
}

/// Whether a form came from this site's own pages: browsers say where a request comes from
/// in `Sec-Fetch-Site`, or else in `Origin` (the shop's public address, or the host asked).
fn from_this_site(state: &AppState, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin == state.config.public_url() || origin.split_once("://").is_some_and(|(_, authority)| authority == host)
}

/// A guest: these pages hold the cart by its cookie, whoever is signed in elsewhere.
fn guest() -> MaybeCustomer {
    MaybeCustomer(None)
}

/// 303 to `to`, with the cookies set.
pub(super) fn see_other(to: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/")))],
    )
        .into_response();
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The form a POST sent from this site's own pages, or the page that refuses it: 403 for a
/// form from another site, 400 for one that cannot be read.
pub(super) async fn read_form<T: serde::de::DeserializeOwned>(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, Response> {
    if !from_this_site(state, headers) {
        return Err(forbidden(state, headers).await);
    }
    match serde_urlencoded::from_bytes(body) {
        Ok(form) => Ok(form),
        Err(err) => Err(refused(state, headers, Refusal::Invalid(format!("The form could not be read: {err}."))).await),
    }
}

/// The row of the cart in the cookie, unpriced: what a change needs to know of it.
async fn cart_row(state: &AppState, headers: &HeaderMap) -> Option<CartRow> {
    let id = cookie(headers, CART_COOKIE)?;
    crate::checkout::cart::find_row(&state.db, None, &id).await.ok()
}

/// The cart in the cookie, priced, if it can still be opened (not expired, not an order yet).
async fn current_cart(state: &AppState, headers: &HeaderMap) -> Option<Cart> {
    let id = cookie(headers, CART_COOKIE)?;
    let cart = cart_api::get_cart(State(state.clone()), guest(), Path(id)).await.ok()?.0;
    (cart.status == "active").then_some(cart)
}

#[derive(Serialize)]
struct LineView {
    id: String,
    url: String,
    title: String,
    variant_title: String,
    quantity: i64,
    unit: Option<String>,
    total: String,
}

#[derive(Serialize)]
struct CartView {
    lines: Vec<LineView>,
    codes: Vec<String>,
    changes: Vec<String>,
    subtotal: String,
    discount: Option<String>,
    shipping: Option<String>,
    tax: String,
    total: String,
    tax_inclusive: bool,
    tax_estimated: bool,
}

fn cart_view(cart: &Cart) -> CartView {
    let show = |amount: i64| money::format(amount, &cart.currency);
    let totals = &cart.totals;
    CartView {
        lines: cart
            .lines
            .iter()
            .map(|line| LineView {
                id: line.id.clone(),
                url: format!("/products/{}", line.handle),
                title: line.title.clone(),
                variant_title: line.variant_title.clone(),
                quantity: line.quantity,
                unit: line.unit_amount.map(show),
                total: show(line.total),
            })
            .collect(),
        codes: cart.codes.clone(),
        changes: cart.changes.iter().map(|change| change.message.clone()).collect(),
        subtotal: show(totals.subtotal),
        discount: (totals.discount_total > 0).then(|| show(totals.discount_total)),
        shipping: cart.shipping_method.as_ref().map(|_| show(totals.shipping - totals.shipping_discount)),
        tax: show(totals.tax_total + totals.shipping_tax),
        total: show(totals.total),
        tax_inclusive: cart.tax_inclusive,
        tax_estimated: cart.tax_estimated,
    }
}

/// A page for one shopper: rendered, with its status, never stored by shared caches.
pub(super) async fn private_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    template: &str,
    title: &str,
    path: &str,
    values: Value,
) -> Response {
    let chrome = match chrome(state).await {
        Ok(chrome) => chrome,
        Err(err) => return refused(state, headers, Refusal::Failed(err)).await,
    };
    let meta = Meta::new(&chrome, title, "", None).noindex();
    match render(state, &chrome, template, &meta, path, values, Freshness::NoStore) {
        Ok(mut page) => {
            page.status = status;
            page.respond(headers)
        }
        Err(refusal) => refused(state, headers, refusal).await,
    }
}

async fn cart_page(state: &AppState, headers: &HeaderMap, status: StatusCode, error: Option<String>) -> Response {
    let cart = current_cart(state, headers).await;
    let values = context! { cart => Value::from_serialize(cart.as_ref().map(cart_view)), error => error };
    private_page(state, headers, status, "cart.html", "Your cart", "/cart", values).await
}

/// What went wrong, for the shopper, and the status that says so.
pub(super) fn told(err: &AppError) -> (StatusCode, String) {
    let status = err.status();
    if status.is_server_error() {
        err.log();
        return (status, "Something went wrong on our side; nothing was changed. Please try again.".to_owned());
    }
    (status, err.explained())
}

pub async fn show_cart(State(state): State<AppState>, headers: HeaderMap) -> Response {
    cart_page(&state, &headers, StatusCode::OK, None).await
}

#[derive(Deserialize)]
struct AddForm {
    variant_id: String,
    #[serde(default = "one")]
    quantity: String,
}

fn one() -> String {
    "1".into()
}

fn quantity_of(text: &str) -> Result<i64, AppError> {
    text.trim().parse().map_err(|_| AppError::invalid_field("quantity", "invalid", "must be a whole number"))
}

/// Adds a variant to the cart (opening one first when there is none), then shows the cart.
pub async fn add_to_cart(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: AddForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let mut cookies = Vec::new();
    let outcome = async {
        let quantity = quantity_of(&form.quantity)?;
        let id = match cart_row(&state, &headers).await.filter(|row| row.status == "active") {
            Some(row) => row.id,
            None => {
                let cart = cart_api::start_cart(&state, &guest(), NewCart::default()).await?;
                let ttl = state.config.checkout.cart_ttl_days * 86_400;
                cookies.push(set_cookie(&state, CART_COOKIE, &cart.id, ttl));
                cart.id
            }
        };
        let line = NewLine { variant_id: form.variant_id.clone(), quantity };
        cart_api::add_line(State(state.clone()), guest(), Path(id), Json(line)).await
    }
    .await;
    match outcome {
        Ok(_) => see_other("/cart", cookies),
        Err(err) => {
            let (status, message) = told(&err);
            let mut response = cart_page(&state, &headers, status, Some(message)).await;
            for cookie in cookies {
                response.headers_mut().append(header::SET_COOKIE, cookie);
            }
            response
        }
    }
}

#[derive(Deserialize)]
struct QuantityForm {
    quantity: String,
}

/// Changes a line's quantity (0 removes it), then shows the cart.
pub async fn change_line(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(line_id): Path<String>,
    body: Bytes,
) -> Response {
    let form: QuantityForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let Some(cart_id) = cookie(&headers, CART_COOKIE) else { return see_other("/cart", Vec::new()) };
    let outcome = async {
        let patch = LinePatch { quantity: quantity_of(&form.quantity)? };
        cart_api::update_line(State(state.clone()), guest(), Path((cart_id, line_id)), Json(patch)).await
    }
    .await;
    match outcome {
        Ok(_) => see_other("/cart", Vec::new()),
        Err(err) => {
            let (status, message) = told(&err);
            cart_page(&state, &headers, status, Some(message)).await
        }
    }
}

/// Applies a discount code, then shows the cart.
pub async fn apply_code(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: NewCode = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let Some(cart_id) = cookie(&headers, CART_COOKIE) else { return see_other("/cart", Vec::new()) };
    match cart_api::add_code(State(state.clone()), guest(), Path(cart_id), Json(form)).await {
        Ok(_) => see_other("/cart", Vec::new()),
        Err(err) => {
            let (status, message) = told(&err);
            cart_page(&state, &headers, status, Some(message)).await
        }
    }
}

pub(super) async fn forbidden(state: &AppState, headers: &HeaderMap) -> Response {
    let message = "This form was sent from another site, or with an expired page: go back, reload it and try again.";
    super::error_page(state, headers, StatusCode::FORBIDDEN, "Not allowed", message).await
}

/// The checkout form as sent, and as shown again.
#[derive(Debug, Default, Deserialize, Serialize)]
struct CheckoutForm {
    #[serde(default)]
    key: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    company: String,
    #[serde(default)]
    line1: String,
    #[serde(default)]
    line2: String,
    #[serde(default)]
    city: String,
    #[serde(default)]
    subdivision: String,
    #[serde(default)]
    postcode: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    phone: String,
    #[serde(default)]
    shipping_method_id: String,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    card_number: String,
    #[serde(default)]
    action: String,
    /// The session's CSRF token, when the shopper is signed in: the order is then theirs.
    #[serde(default, skip_serializing)]
    csrf: String,
    /// The total the page showed, in minor units: the order is placed only at that total.
    #[serde(default, skip_serializing)]
    total: String,
}

impl CheckoutForm {
    /// The form filled from what the cart holds.
    fn of(cart: &Cart) -> Self {
        let mut form = cart.shipping_address.clone().map(Self::of_address).unwrap_or_default();
        form.email = cart.email.clone().unwrap_or_default();
        form.shipping_method_id = cart.shipping_method.as_ref().map(|m| m.id.clone()).unwrap_or_default();
        form
    }

    /// The form with `address` filled in.
    fn of_address(address: Address) -> Self {
        Self {
            first_name: address.first_name,
            last_name: address.last_name,
            company: address.company,
            line1: address.line1,
            line2: address.line2,
            city: address.city,
            subdivision: address.subdivision,
            postcode: address.postcode,
            country: address.country,
            phone: address.phone,
            ..Self::default()
        }
    }

    fn address(&self) -> Address {
        Address {
            first_name: self.first_name.clone(),
            last_name: self.last_name.clone(),
            company: self.company.clone(),
            line1: self.line1.clone(),
            line2: self.line2.clone(),
            city: self.city.clone(),
            subdivision: self.subdivision.clone(),
            postcode: self.postcode.clone(),
            country: self.country.clone(),
            phone: self.phone.clone(),
        }
    }
}

#[derive(Serialize)]
struct ShippingChoice {
    id: String,
    name: String,
    price: String,
    estimate: String,
    chosen: bool,
}

#[derive(Serialize)]
struct ProviderChoice {
    name: &'static str,
    label: &'static str,
    chosen: bool,
}

#[derive(Serialize)]
pub(super) struct Country {
    code: String,
    name: String,
}

/// The countries the shop sells to, by name.
pub(super) async fn countries(state: &AppState) -> Result<Vec<Country>, AppError> {
    let settings = crate::checkout::settings(state).await?;
    let mut countries: Vec<Country> = settings
        .regions
        .iter()
        .flat_map(|region| &region.countries)
        .map(|code| Country { code: code.clone(), name: country_name(code).unwrap_or(code).to_owned() })
        .collect();
    countries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(countries)
}

async fn checkout_page(
    state: &AppState,
    headers: &HeaderMap,
    cart: &Cart,
    form: &CheckoutForm,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let countries = match countries(state).await {
        Ok(countries) => countries,
        Err(err) => return refused(state, headers, Refusal::Failed(err)).await,
    };
    let chosen_method = if form.shipping_method_id.is_empty() {
        cart.shipping_method.as_ref().map(|m| m.id.clone()).unwrap_or_default()
    } else {
        form.shipping_method_id.clone()
    };
    let shipping_options: Vec<ShippingChoice> = cart
        .shipping_options
        .iter()
        .map(|option| ShippingChoice {
            id: option.id.clone(),
            name: option.name.clone(),
            price: if option.amount == 0 { "free".to_owned() } else { money::format(option.amount, &cart.currency) },
            estimate: option.estimate.clone(),
            chosen: option.id == chosen_method,
        })
        .collect();
    let offered: Vec<&'static str> = ["test", "manual"]
        .into_iter()
        .filter(|name| state.config.checkout.providers.iter().any(|p| p == name))
        .collect();
    let chosen_provider = if offered.contains(&form.provider.as_str()) {
        form.provider.as_str()
    } else {
        offered.first().copied().unwrap_or("")
    };
    let providers: Vec<ProviderChoice> = offered
        .iter()
        .map(|name| ProviderChoice {
            name,
            label: if *name == "test" { "Card (test payments)" } else { "Bank transfer or cash on delivery" },
            chosen: *name == chosen_provider,
        })
        .collect();
    let key = if form.key.is_empty() { ulid::Ulid::new().to_string() } else { form.key.clone() };
    let values = context! {
        cart => Value::from_serialize(cart_view(cart)),
        form => Value::from_serialize(form),
        countries => Value::from_serialize(&countries),
        shipping_options => Value::from_serialize(&shipping_options),
        providers => Value::from_serialize(&providers),
        card => offered.contains(&"test"),
        key => key,
        total => cart.totals.total,
        csrf => super::account::csrf_of(headers),
        error => error,
    };
    private_page(state, headers, status, "checkout.html", "Checkout", "/checkout", values).await
}

pub async fn show_checkout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let cart = match current_cart(&state, &headers).await {
        Some(cart) if !cart.lines.is_empty() => cart,
        _ => return see_other("/cart", Vec::new()),
    };
    let mut form = CheckoutForm::of(&cart);
    // A signed-in customer starts from their default address and their email.
    if cart.shipping_address.is_none()
        && let Some(customer) = super::account::signed_in(&state, &headers, None).await
    {
        let saved = crate::accounts::addresses::addresses_of(&state, customer.customer_id()).await.unwrap_or_default();
        if let Some(default) = saved.into_iter().find(|saved| saved.is_default) {
            form = CheckoutForm {
                email: form.email,
                shipping_method_id: form.shipping_method_id,
                ..CheckoutForm::of_address(default.address)
            };
        }
        if form.email.is_empty()
            && let Ok(Some(view)) = crate::accounts::customers::find_customer(&state, customer.customer_id()).await
        {
            form.email = view.customer.email.clone();
        }
    }
    checkout_page(&state, &headers, &cart, &form, StatusCode::OK, None).await
}

/// Saves the details to the cart; with `action=place`, places the order and sends the
/// shopper to its confirmation. A resent form (the same `key`) gives the same order.
pub async fn submit_checkout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: CheckoutForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let Some(row) = cart_row(&state, &headers).await else { return see_other("/cart", Vec::new()) };
    if row.status != "active" {
        // Placed already (a resent form): its confirmation.
        let to = if row.order_id.is_some() { "/checkout/complete" } else { "/cart" };
        return see_other(to, Vec::new());
    }
    let cart_id = row.id;
    let details = CartPatch {
        email: Some(form.email.clone()),
        shipping_address: Some(form.address()),
        billing_address: None,
        shipping_method_id: None,
    };
    let mut cart =
        match cart_api::update_cart(State(state.clone()), guest(), Path(cart_id.clone()), Json(details)).await {
            Ok(cart) => cart.0,
            Err(err) => {
                let (status, message) = told(&err);
                let Some(cart) = current_cart(&state, &headers).await else { return see_other("/cart", Vec::new()) };
                return checkout_page(&state, &headers, &cart, &form, status, Some(message)).await;
            }
        };
    // The method goes second: the address decides which methods there are. Without one
    // chosen, the first is, so that the total shown is the total to pay.
    let offered = |id: &str| cart.shipping_options.iter().any(|option| option.id == id);
    let wanted = match (&form.shipping_method_id, &cart.shipping_method) {
        (chosen, _) if offered(chosen) => chosen.clone(),
        (_, Some(current)) => current.id.clone(),
        _ => cart.shipping_options.first().map(|option| option.id.clone()).unwrap_or_default(),
    };
    let wanted = &wanted;
    if !wanted.is_empty() && cart.shipping_method.as_ref().is_none_or(|current| &current.id != wanted) {
        let method = CartPatch {
            email: None,
            shipping_address: None,
            billing_address: None,
            shipping_method_id: Some(wanted.clone()),
        };
        match cart_api::update_cart(State(state.clone()), guest(), Path(cart_id.clone()), Json(method)).await {
            Ok(updated) => cart = updated.0,
            Err(err) => {
                let (status, message) = told(&err);
                return checkout_page(&state, &headers, &cart, &form, status, Some(message)).await;
            }
        }
    }
    if form.action != "place" {
        return checkout_page(&state, &headers, &cart, &form, StatusCode::OK, None).await;
    }
    let payment = PaymentDetails {
        provider: form.provider.clone(),
        card_number: Some(form.card_number.replace([' ', '-'], "")).filter(|card| !card.is_empty()),
        payment_method: None,
        return_url: None,
    };
    // The total the shopper saw, unless the details just sent changed it: then they see the
    // new total before anything is placed.
    let shown = form.total.trim().parse::<i64>().ok();
    if shown != Some(cart.totals.total) {
        let message = "The total has changed with these details: check it, then place the order.".to_owned();
        return checkout_page(&state, &headers, &cart, &form, StatusCode::CONFLICT, Some(message)).await;
    }
    let request = PlaceOrder { payment, expected_total: shown };
    let mut key_headers = HeaderMap::new();
    if let Ok(key) = HeaderValue::from_str(&form.key) {
        key_headers.insert("idempotency-key", key);
    }
    // Signed in, the shopper's order is theirs, if the form carries their session's token.
    let caller = if form.csrf.is_empty() {
        guest()
    } else {
        MaybeCustomer(super::account::signed_in(&state, &headers, Some(&form.csrf)).await)
    };
    let placed = place::complete_cart(State(state.clone()), caller, Path(cart_id), key_headers, Json(request)).await;
    match placed {
        Ok(response) => match response.status() {
            // The cart cookie stays: the cart is an order now, so the next thing added starts
            // a new cart, and the confirmation (or the same form sent again) finds this order.
            StatusCode::OK | StatusCode::CREATED => see_other("/checkout/complete", Vec::new()),
            StatusCode::ACCEPTED => {
                let bytes = axum::body::to_bytes(response.into_body(), 1024 * 1024).await.unwrap_or_default();
                let action: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                see_other(action["redirect_url"].as_str().unwrap_or("/checkout"), Vec::new())
            }
            _ => response,
        },
        Err(err) => {
            let (status, message) = told(&err);
            let current = cart_api::get_cart(State(state.clone()), guest(), Path(cart.id.clone()))
                .await
                .map(|c| c.0)
                .unwrap_or(cart);
            checkout_page(&state, &headers, &current, &form, status, Some(message)).await
        }
    }
}

#[derive(Serialize)]
struct OrderView {
    number: i64,
    email: String,
    lines: Vec<LineView>,
    shipping_method: String,
    shipping: String,
    tax: String,
    total: String,
    tax_inclusive: bool,
    address: String,
}

/// The order the browser's cart became: only the browser holding that cart's (secret) id
/// sees it.
pub async fn confirmation(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(cart_id) = cookie(&headers, CART_COOKIE) else { return see_other("/cart", Vec::new()) };
    let order_id = match crate::orders::id_of_cart(&state.db, &cart_id).await {
        Ok(Some(order_id)) => order_id,
        Ok(None) => return see_other("/cart", Vec::new()),
        Err(err) => return refused(&state, &headers, Refusal::Failed(err)).await,
    };
    let order = match crate::orders::find(&state.db, &order_id).await {
        Ok(order) => order,
        Err(err) if err.status() == StatusCode::NOT_FOUND => return see_other("/cart", Vec::new()),
        Err(err) => return refused(&state, &headers, Refusal::Failed(err)).await,
    };
    let show = |amount: i64| money::format(amount, &order.currency);
    let address = &order.shipping_address;
    let view = OrderView {
        number: order.number,
        email: order.email.clone(),
        lines: order
            .lines
            .iter()
            .map(|line| LineView {
                id: line.id.clone(),
                url: String::new(),
                title: line.title.clone(),
                variant_title: line.variant_title.clone(),
                quantity: line.quantity,
                unit: Some(show(line.unit_amount)),
                total: show(line.total),
            })
            .collect(),
        shipping_method: order.shipping_method.name.clone(),
        shipping: show(order.totals.shipping - order.totals.shipping_discount),
        tax: show(order.totals.tax_total + order.totals.shipping_tax),
        total: show(order.totals.total),
        tax_inclusive: order.tax_inclusive,
        address: super::account::one_line_address(address),
    };
    let values = context! { order => Value::from_serialize(&view) };
    private_page(&state, &headers, StatusCode::OK, "confirmation.html", "Thank you", "/checkout/complete", values).await
}

/// The name of a country people most often ship to, in English.
fn country_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "AT" => "Austria",
        "AU" => "Australia",
        "BE" => "Belgium",
        "CA" => "Canada",
        "CH" => "Switzerland",
        "CZ" => "Czechia",
        "DE" => "Germany",
        "DK" => "Denmark",
        "ES" => "Spain",
        "FI" => "Finland",
        "FR" => "France",
        "GB" => "United Kingdom",
        "IE" => "Ireland",
        "IT" => "Italy",
        "JP" => "Japan",
        "LU" => "Luxembourg",
        "NL" => "Netherlands",
        "NO" => "Norway",
        "NZ" => "New Zealand",
        "PL" => "Poland",
        "PT" => "Portugal",
        "SE" => "Sweden",
        "US" => "United States",
        _ => return None,
    })
}
