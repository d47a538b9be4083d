//! The account emails: welcome with verification, verification again, password reset, and
//! the note sent when someone registers with an address that already has an account. Their
//! words are templates (`templates/email/`), which a shop may replace.

use minijinja::context;

use super::email_address::EmailAddress;
use crate::app::AppState;
use crate::platform::mail::Email;

fn link(state: &AppState, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", state.config.public_url())
}

pub fn welcome(state: &AppState, to: &EmailAddress, first_name: &str, token: &str) -> anyhow::Result<Email> {
    let values = context! {
        first_name,
        link => link(state, "/account/verify-email", token),
        hours => state.config.auth.verify_token_hours,
    };
    state.templates.render("welcome", to.as_str(), values)
}

pub fn verify(state: &AppState, to: &EmailAddress, first_name: &str, token: &str) -> anyhow::Result<Email> {
    let values = context! {
        first_name,
        link => link(state, "/account/verify-email", token),
        hours => state.config.auth.verify_token_hours,
    };
    state.templates.render("verify", to.as_str(), values)
}

pub fn reset(state: &AppState, to: &EmailAddress, first_name: &str, token: &str) -> anyhow::Result<Email> {
    let values = context! {
        first_name,
        link => link(state, "/account/reset-password", token),
        hours => state.config.auth.reset_token_hours,
    };
    state.templates.render("reset", to.as_str(), values)
}

pub fn already_registered(state: &AppState, to: &EmailAddress) -> anyhow::Result<Email> {
    let values = context! { link => format!("{}/account/reset-password", state.config.public_url()) };
    state.templates.render("already_registered", to.as_str(), values)
}
