//! The customer's pages: sign in, register, and the account with its orders. Plain forms
//! over the same code as the store API: the session is the API's cookie session, and a form
//! sent while signed in carries the session's CSRF token in a hidden field, checked as the
//! API checks its header.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::shopping::{forbidden, private_page, read_form, see_other, told};
use super::{Refusal, refused};
use crate::accounts::auth::{self, CurrentCustomer, MaybeCustomer, SubjectKind};
use crate::accounts::customers::{self, RegisterRequest};
use crate::accounts::signin::{self, SessionMode, SignInRequest};
use crate::app::AppState;
use crate::catalog::money;
use crate::orders::MyOrdersQuery;
use crate::platform::http::{ClientIp, Json, Query, X_CSRF_TOKEN};

/// The signed-in customer, if the request's session is valid; for a form (`csrf` given), only
/// if it carries the session's CSRF token.
pub async fn signed_in(state: &AppState, headers: &HeaderMap, csrf: Option<&str>) -> Option<CurrentCustomer> {
    let method = if csrf.is_some() { Method::POST } else { Method::GET };
    let (mut parts, ()) = Request::builder().method(method).body(()).ok()?.into_parts();
    parts.headers = headers.clone();
    if let Some(token) = csrf.and_then(|token| HeaderValue::from_str(token).ok()) {
        parts.headers.insert(X_CSRF_TOKEN.clone(), token);
    }
    MaybeCustomer::from_request_parts(&mut parts, state).await.ok()?.0
}

/// The customer a form is sent by: 303 to sign in when their session has ended, 403 when the
/// form does not carry the session's token.
async fn session_for_form(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<CurrentCustomer, Response> {
    if signed_in(state, headers, None).await.is_none() {
        return Err(see_other("/account/signin", Vec::new()));
    }
    match signed_in(state, headers, Some(csrf)).await {
        Some(customer) => Ok(customer),
        None => Err(forbidden(state, headers).await),
    }
}

/// The CSRF token a signed-in shopper's forms carry: the session's, as its cookie holds it.
pub fn csrf_of(headers: &HeaderMap) -> Option<String> {
    auth::cookie(headers, SubjectKind::Customer.csrf_cookie())
}

#[derive(Serialize)]
struct OrderRow {
    number: i64,
    placed_on: String,
    placed_iso: String,
    status: String,
    total: String,
}

pub async fn account(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(customer) = signed_in(&state, &headers, None).await else {
        return see_other("/account/signin", Vec::new());
    };
    let query = MyOrdersQuery { limit: Some(50), after: None };
    let orders = match crate::orders::my_orders(State(state.clone()), customer.clone(), Query(query)).await {
        Ok(page) => page.0.data,
        Err(err) => return refused(&state, &headers, Refusal::Failed(err)).await,
    };
    let profile = match customers::find_customer(&state, customer.customer_id()).await {
        Ok(Some(view)) => view,
        Ok(None) => return see_other("/account/signin", Vec::new()),
        Err(err) => return refused(&state, &headers, Refusal::Failed(err)).await,
    };
    let rows: Vec<OrderRow> = orders
        .iter()
        .map(|order| OrderRow {
            number: order.number,
            placed_on: order.placed_at.to_date_text(),
            placed_iso: order.placed_at.to_rfc3339(),
            status: order.status.as_str().replace('_', " "),
            total: money::format(order.totals.total, &order.currency),
        })
        .collect();
    let addresses = match crate::accounts::addresses::addresses_of(&state, customer.customer_id()).await {
        Ok(addresses) => addresses,
        Err(err) => return refused(&state, &headers, Refusal::Failed(err)).await,
    };
    let addresses: Vec<AddressRow> = addresses
        .into_iter()
        .map(|saved| AddressRow { text: one_line_address(&saved.address), id: saved.id, is_default: saved.is_default })
        .collect();
    let countries = match super::shopping::countries(&state).await {
        Ok(countries) => countries,
        Err(err) => return refused(&state, &headers, Refusal::Failed(err)).await,
    };
    let values = context! {
        countries => Value::from_serialize(&countries),
        addresses => Value::from_serialize(&addresses),
        name => format!("{} {}", profile.customer.first_name, profile.customer.last_name).trim().to_owned(),
        email => profile.customer.email.clone(),
        orders => Value::from_serialize(&rows),
        csrf => csrf_of(&headers),
    };
    private_page(&state, &headers, StatusCode::OK, "account.html", "Your account", "/account", values).await
}

#[derive(Serialize)]
struct AddressRow {
    id: String,
    text: String,
    is_default: bool,
}

/// An address on one line, for lists.
pub fn one_line_address(address: &crate::checkout::address::Address) -> String {
    let name = format!("{} {}", address.first_name, address.last_name);
    [name.trim(), &address.company, &address.line1, &address.line2, &address.postcode, &address.city, &address.country]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new address from the account page's form: the address fields, `default`, and `csrf`.
#[derive(Deserialize)]
struct AddressForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    default: Option<String>,
    #[serde(flatten)]
    address: crate::checkout::address::Address,
}

pub async fn add_address(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: AddressForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let customer = match session_for_form(&state, &headers, &form.csrf).await {
        Ok(customer) => customer,
        Err(refusal) => return refusal,
    };
    let input = crate::accounts::addresses::AddressInput { address: form.address, is_default: form.default.is_some() };
    match crate::accounts::addresses::add_address(State(state.clone()), customer, Json(input)).await {
        Ok(_) => see_other("/account#addresses", Vec::new()),
        Err(err) => {
            let (status, message) = told(&err);
            super::error_page(&state, &headers, status, "The address was not saved", &message).await
        }
    }
}

pub async fn remove_address(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let form: CsrfForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let customer = match session_for_form(&state, &headers, &form.csrf).await {
        Ok(customer) => customer,
        Err(refusal) => return refusal,
    };
    match crate::accounts::addresses::delete_address(State(state.clone()), customer, axum::extract::Path(id)).await {
        Ok(_) => see_other("/account#addresses", Vec::new()),
        Err(err) => refused(&state, &headers, Refusal::from(err)).await,
    }
}

#[derive(Default, Deserialize, Serialize)]
struct SignInForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn signin_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    error: Option<String>,
) -> Response {
    let values = context! { email => email, error => error };
    private_page(state, headers, status, "signin.html", "Sign in", "/account/signin", values).await
}

pub async fn show_signin(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if signed_in(&state, &headers, None).await.is_some() {
        return see_other("/account", Vec::new());
    }
    signin_page(&state, &headers, StatusCode::OK, "", None).await
}

pub async fn submit_signin(State(state): State<AppState>, ip: ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let form: SignInForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let request = SignInRequest { email: form.email.clone(), password: form.password, mode: SessionMode::Cookie };
    match signin::sign_in(&state, SubjectKind::Customer, &request, ip, &headers).await {
        Ok((_, session)) => {
            let cookies = auth::session_cookies(SubjectKind::Customer, &session, state.config.secure_cookies());
            see_other("/account", cookies.to_vec())
        }
        Err(err) => {
            let (status, message) = told(&err);
            signin_page(&state, &headers, status, &form.email, Some(message)).await
        }
    }
}

#[derive(Default, Deserialize, Serialize)]
struct RegisterForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

async fn register_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    form: &RegisterForm,
    error: Option<String>,
    done: bool,
) -> Response {
    let values = context! {
        first_name => &form.first_name, last_name => &form.last_name, email => &form.email,
        error => error, done => done,
    };
    private_page(state, headers, status, "register.html", "Create an account", "/account/register", values).await
}

pub async fn show_register(State(state): State<AppState>, headers: HeaderMap) -> Response {
    register_page(&state, &headers, StatusCode::OK, &RegisterForm::default(), None, false).await
}

pub async fn submit_register(State(state): State<AppState>, ip: ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let form: RegisterForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let request = RegisterRequest {
        email: form.email.clone(),
        password: form.password.clone(),
        first_name: form.first_name.clone(),
        last_name: form.last_name.clone(),
        phone: None,
    };
    match customers::register(State(state.clone()), ip, Json(request)).await {
        // The same answer whether or not the address had an account: it reveals nothing.
        Ok(_) => register_page(&state, &headers, StatusCode::OK, &RegisterForm::default(), None, true).await,
        Err(err) => {
            let (status, message) = told(&err);
            let kept = RegisterForm { password: String::new(), ..form };
            register_page(&state, &headers, status, &kept, Some(message), false).await
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: CsrfForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    // Signed out, this browser keeps nothing of the customer: the cart goes too.
    let mut cookies: Vec<HeaderValue> =
        auth::clearing_cookies(SubjectKind::Customer, state.config.secure_cookies()).to_vec();
    cookies.push(super::shopping::set_cookie(&state, super::shopping::CART_COOKIE, "", 0));
    let customer = match signed_in(&state, &headers, None).await {
        // The session has ended already: only the browser's cookies are left to clear.
        None => return see_other("/", cookies),
        Some(_) => match signed_in(&state, &headers, Some(&form.csrf)).await {
            Some(customer) => customer,
            None => return forbidden(&state, &headers).await,
        },
    };
    match signin::sign_out(&state, SubjectKind::Customer, customer.customer_id(), customer.session_id()).await {
        Ok(_) => see_other("/", cookies),
        Err(err) => refused(&state, &headers, Refusal::Failed(err)).await,
    }
}
