//! The pages emailed links lead to: confirming an email address, choosing a new password,
//! confirming a newsletter subscription and leaving it. A link only opens a page; the change
//! is made by the button on it (a POST), so a mail scanner that follows links changes nothing.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::shopping::{private_page, read_form, told};
use crate::accounts::customers::{self, PasswordResetRequest, ResetPassword, TokenRequest};
use crate::app::AppState;
use crate::messaging::newsletter::{self, ConfirmRequest, UnsubscribeParams};
use crate::platform::error::AppError;
use crate::platform::http::{ClientIp, Json, Query};

/// A form of the message page.
#[derive(Serialize)]
struct Form {
    action: &'static str,
    hidden: Vec<Hidden>,
    fields: Vec<Field>,
    button: &'static str,
}

#[derive(Serialize)]
struct Hidden {
    name: &'static str,
    value: String,
}

#[derive(Serialize)]
struct Field {
    name: &'static str,
    label: &'static str,
    kind: &'static str,
    autocomplete: &'static str,
}

#[derive(Serialize)]
struct Next {
    url: &'static str,
    label: &'static str,
}

/// The message page: a heading, what happened (or what went wrong), and a form or a link on.
struct Message {
    heading: &'static str,
    message: Option<String>,
    error: Option<String>,
    form: Option<Form>,
    next: Option<Next>,
}

async fn show(state: &AppState, headers: &HeaderMap, status: StatusCode, path: &str, page: Message) -> Response {
    let values = context! {
        heading => page.heading,
        message => page.message,
        error => page.error,
        form => Value::from_serialize(&page.form),
        next => Value::from_serialize(&page.next),
    };
    private_page(state, headers, status, "message.html", page.heading, path, values).await
}

/// A page saying what happened, with a link on.
async fn done(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    heading: &'static str,
    message: &str,
    next: Option<Next>,
) -> Response {
    let page = Message { heading, message: Some(message.to_owned()), error: None, form: None, next };
    show(state, headers, StatusCode::OK, path, page).await
}

/// A page asking for what the form takes, to act on it.
async fn ask(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    heading: &'static str,
    message: &str,
    form: Form,
) -> Response {
    let message = Some(message.to_owned()).filter(|m| !m.is_empty());
    let page = Message { heading, message, error: None, form: Some(form), next: None };
    show(state, headers, StatusCode::OK, path, page).await
}

/// The value of `name` in the query.
fn query_value(query: Option<&str>, name: &str) -> String {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// A page saying the change did not happen, and why.
async fn failed(state: &AppState, headers: &HeaderMap, path: &str, heading: &'static str, err: &AppError) -> Response {
    let (status, message) = told(err);
    let page = Message { heading, message: None, error: Some(message), form: None, next: None };
    show(state, headers, status, path, page).await
}

fn one_button(action: &'static str, name: &'static str, value: String, button: &'static str) -> Form {
    Form { action, hidden: vec![Hidden { name, value }], fields: Vec::new(), button }
}

#[derive(Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
}

pub async fn show_verify_email(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let token = query_value(query.as_deref(), "token");
    ask(
        &state,
        &headers,
        "/account/verify-email",
        "Confirm your email address",
        "Press the button to confirm that this address is yours.",
        one_button("/account/verify-email", "token", token, "Confirm my address"),
    )
    .await
}

pub async fn verify_email(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: TokenForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let path = "/account/verify-email";
    match customers::verify_email(State(state.clone()), Json(TokenRequest { token: form.token })).await {
        Ok(_) => {
            done(
                &state,
                &headers,
                path,
                "Your email address is confirmed",
                "Thank you.",
                Some(Next { url: "/account", label: "Go to your account" }),
            )
            .await
        }
        Err(err) => failed(&state, &headers, path, "The address could not be confirmed", &err).await,
    }
}

pub async fn show_reset_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let token = query_value(query.as_deref(), "token");
    let path = "/account/reset-password";
    if token.is_empty() {
        let email = Field { name: "email", label: "Email", kind: "email", autocomplete: "email" };
        let form = Form { action: path, hidden: Vec::new(), fields: vec![email], button: "Email me a link" };
        return ask(
            &state,
            &headers,
            path,
            "Forgot your password?",
            "We will email you a link to choose a new one.",
            form,
        )
        .await;
    }
    let password = Field {
        name: "new_password",
        label: "New password (8 characters or more)",
        kind: "password",
        autocomplete: "new-password",
    };
    let form = Form {
        action: path,
        hidden: vec![Hidden { name: "token", value: token }],
        fields: vec![password],
        button: "Save the new password",
    };
    ask(&state, &headers, path, "Choose a new password", "", form).await
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    new_password: String,
}

pub async fn reset_password(State(state): State<AppState>, ip: ClientIp, headers: HeaderMap, body: Bytes) -> Response {
    let form: ResetForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let path = "/account/reset-password";
    if form.token.is_empty() {
        let request = PasswordResetRequest { email: form.email };
        return match customers::request_password_reset(State(state.clone()), ip, Json(request)).await {
            // The same answer whether or not the address has an account.
            Ok(_) => {
                let message = "If this address has an account, a link to choose a new password is on its way.";
                done(&state, &headers, path, "Check your inbox", message, None).await
            }
            Err(err) => failed(&state, &headers, path, "The link could not be sent", &err).await,
        };
    }
    let request = ResetPassword { token: form.token, new_password: form.new_password };
    match customers::reset_password(State(state.clone()), ip, Json(request)).await {
        Ok(_) => {
            done(
                &state,
                &headers,
                path,
                "Your password is changed",
                "Sign in with your new password.",
                Some(Next { url: "/account/signin", label: "Sign in" }),
            )
            .await
        }
        Err(err) => failed(&state, &headers, path, "The password was not changed", &err).await,
    }
}

pub async fn show_newsletter_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let token = query_value(query.as_deref(), "token");
    ask(
        &state,
        &headers,
        "/newsletter/confirm",
        "Confirm your subscription",
        "Press the button to receive our newsletter.",
        one_button("/newsletter/confirm", "token", token, "Confirm my subscription"),
    )
    .await
}

pub async fn newsletter_confirm(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: TokenForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let path = "/newsletter/confirm";
    match newsletter::confirm(State(state.clone()), Json(ConfirmRequest { token: form.token })).await {
        Ok(_) => {
            done(
                &state,
                &headers,
                path,
                "You are subscribed",
                "Thank you: our next newsletter is on its way to you.",
                Some(Next { url: "/", label: "Back to the shop" }),
            )
            .await
        }
        Err(err) => failed(&state, &headers, path, "The subscription could not be confirmed", &err).await,
    }
}

pub async fn show_unsubscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let key = query_value(query.as_deref(), "key");
    ask(
        &state,
        &headers,
        "/newsletter/unsubscribe",
        "Leave the newsletter",
        "Press the button and we will stop sending it to you.",
        one_button("/newsletter/unsubscribe", "key", key, "Unsubscribe"),
    )
    .await
}

#[derive(Deserialize)]
struct KeyForm {
    #[serde(default)]
    key: String,
}

pub async fn unsubscribe(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: KeyForm = match read_form(&state, &headers, &body).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let path = "/newsletter/unsubscribe";
    let params = UnsubscribeParams { key: Some(form.key) };
    match newsletter::unsubscribe(State(state.clone()), Query(params), HeaderMap::new(), Bytes::new()).await {
        Ok(_) => {
            done(
                &state,
                &headers,
                path,
                "You have left the newsletter",
                "We will not send it to you again.",
                Some(Next { url: "/", label: "Back to the shop" }),
            )
            .await
        }
        Err(err) => failed(&state, &headers, path, "You could not be unsubscribed", &err).await,
    }
}
