//! The account emails: welcome with verification, verification again, password reset, and
//! the note sent when someone registers with an address that already has an account.

use super::email_address::EmailAddress;
use crate::app::AppState;
use crate::platform::mail::{Email, escape_html};

fn greeting(first_name: &str) -> String {
    if first_name.is_empty() { "Hello,".to_owned() } else { format!("Hello {first_name},") }
}

/// A message of paragraphs and at most one link, in text and HTML.
fn compose(
    state: &AppState,
    to: &EmailAddress,
    subject: String,
    first_name: &str,
    paragraphs: &[&str],
    link: Option<(&str, String)>,
) -> Email {
    let shop = &state.config.shop_name;
    let mut text = format!("{}\n\n", greeting(first_name));
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5\"><p>{}</p>",
        escape_html(&greeting(first_name))
    );
    for paragraph in paragraphs {
        text.push_str(paragraph);
        text.push_str("\n\n");
        html.push_str(&format!("<p>{}</p>", escape_html(paragraph)));
    }
    if let Some((label, url)) = link {
        text.push_str(&format!("{label}: {url}\n\n"));
        html.push_str(&format!("<p><a href=\"{}\">{}</a></p>", escape_html(&url), escape_html(label)));
    }
    text.push_str(&format!("— {shop}\n"));
    html.push_str(&format!("<p>— {}</p></body></html>", escape_html(shop)));
    Email { to: to.as_str().to_owned(), subject, text, html }
}

fn link(state: &AppState, path: &str, token: &str) -> String {
    format!("{}{path}?token={token}", state.config.public_url())
}

pub fn welcome(state: &AppState, to: &EmailAddress, first_name: &str, token: &str) -> Email {
    let hours = state.config.auth.verify_token_hours;
    compose(
        state,
        to,
        format!("Welcome to {}: confirm your email", state.config.shop_name),
        first_name,
        &[
            "Your account is ready. Please confirm that this address is yours.",
            &format!("The link works once and for {hours} hours."),
        ],
        Some(("Confirm your email", link(state, "/account/verify-email", token))),
    )
}

pub fn verify(state: &AppState, to: &EmailAddress, first_name: &str, token: &str) -> Email {
    let hours = state.config.auth.verify_token_hours;
    compose(
        state,
        to,
        format!("{}: confirm your email", state.config.shop_name),
        first_name,
        &["Please confirm that this address is yours.", &format!("The link works once and for {hours} hours.")],
        Some(("Confirm your email", link(state, "/account/verify-email", token))),
    )
}

pub fn reset(state: &AppState, to: &EmailAddress, first_name: &str, token: &str) -> Email {
    let hours = state.config.auth.reset_token_hours;
    compose(
        state,
        to,
        format!("{}: reset your password", state.config.shop_name),
        first_name,
        &[
            "Someone asked to reset the password of your account. If it was you, choose a new password with the link below.",
            &format!(
                "The link works once and for {hours} hour(s). If it was not you, ignore this email: your password stays as it is."
            ),
        ],
        Some(("Choose a new password", link(state, "/account/reset-password", token))),
    )
}

pub fn already_registered(state: &AppState, to: &EmailAddress) -> Email {
    compose(
        state,
        to,
        format!("{}: you already have an account", state.config.shop_name),
        "",
        &[
            "Someone tried to create an account with this address, which already has one.",
            "If it was you, sign in, or reset your password if you forgot it. If not, you can ignore this email.",
        ],
        Some(("Reset your password", format!("{}/account/reset-password", state.config.public_url()))),
    )
}
