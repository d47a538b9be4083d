//! Email templates: plain text and HTML, rendered with minijinja. Each email `name` has
//! `name.subject.txt`, `name.txt` and `name.html` (which extends `layout.html`). The built-in
//! set is compiled in; a file of the same name in the templates folder replaces it, and
//! `name.{locale}.txt` (and so on) is preferred to `name.txt` for the shop's locale. HTML
//! templates escape every value; text templates do not.

use std::path::Path;

use minijinja::{Environment, Value, context};
use serde::Serialize;

use crate::platform::config::Config;
use crate::platform::mail::Email;

const BUILT_IN: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/email/layout.html")),
    ("_button.html", include_str!("../../templates/email/_button.html")),
    ("welcome.subject.txt", include_str!("../../templates/email/welcome.subject.txt")),
    ("welcome.txt", include_str!("../../templates/email/welcome.txt")),
    ("welcome.html", include_str!("../../templates/email/welcome.html")),
    ("verify.subject.txt", include_str!("../../templates/email/verify.subject.txt")),
    ("verify.txt", include_str!("../../templates/email/verify.txt")),
    ("verify.html", include_str!("../../templates/email/verify.html")),
    ("reset.subject.txt", include_str!("../../templates/email/reset.subject.txt")),
    ("reset.txt", include_str!("../../templates/email/reset.txt")),
    ("reset.html", include_str!("../../templates/email/reset.html")),
    ("already_registered.subject.txt", include_str!("../../templates/email/already_registered.subject.txt")),
    ("already_registered.txt", include_str!("../../templates/email/already_registered.txt")),
    ("already_registered.html", include_str!("../../templates/email/already_registered.html")),
    ("webhook_disabled.subject.txt", include_str!("../../templates/email/webhook_disabled.subject.txt")),
    ("webhook_disabled.txt", include_str!("../../templates/email/webhook_disabled.txt")),
    ("webhook_disabled.html", include_str!("../../templates/email/webhook_disabled.html")),
    ("form_submission.subject.txt", include_str!("../../templates/email/form_submission.subject.txt")),
    ("form_submission.txt", include_str!("../../templates/email/form_submission.txt")),
    ("form_submission.html", include_str!("../../templates/email/form_submission.html")),
    ("newsletter_confirm.subject.txt", include_str!("../../templates/email/newsletter_confirm.subject.txt")),
    ("newsletter_confirm.txt", include_str!("../../templates/email/newsletter_confirm.txt")),
    ("newsletter_confirm.html", include_str!("../../templates/email/newsletter_confirm.html")),
    ("newsletter_welcome.subject.txt", include_str!("../../templates/email/newsletter_welcome.subject.txt")),
    ("newsletter_welcome.txt", include_str!("../../templates/email/newsletter_welcome.txt")),
    ("newsletter_welcome.html", include_str!("../../templates/email/newsletter_welcome.html")),
    ("order_confirmation.subject.txt", include_str!("../../templates/email/order_confirmation.subject.txt")),
    ("order_confirmation.txt", include_str!("../../templates/email/order_confirmation.txt")),
    ("order_confirmation.html", include_str!("../../templates/email/order_confirmation.html")),
    ("order_shipped.subject.txt", include_str!("../../templates/email/order_shipped.subject.txt")),
    ("order_shipped.txt", include_str!("../../templates/email/order_shipped.txt")),
    ("order_shipped.html", include_str!("../../templates/email/order_shipped.html")),
    ("order_refunded.subject.txt", include_str!("../../templates/email/order_refunded.subject.txt")),
    ("order_refunded.txt", include_str!("../../templates/email/order_refunded.txt")),
    ("order_refunded.html", include_str!("../../templates/email/order_refunded.html")),
    ("order_cancelled.subject.txt", include_str!("../../templates/email/order_cancelled.subject.txt")),
    ("order_cancelled.txt", include_str!("../../templates/email/order_cancelled.txt")),
    ("order_cancelled.html", include_str!("../../templates/email/order_cancelled.html")),
];

/// The emails every template set must be able to render.
const EMAILS: [&str; 12] = [
    "welcome",
    "verify",
    "reset",
    "already_registered",
    "webhook_disabled",
    "form_submission",
    "newsletter_confirm",
    "newsletter_welcome",
    "order_confirmation",
    "order_shipped",
    "order_refunded",
    "order_cancelled",
];

/// What templates know of the shop.
#[derive(Debug, Clone, Serialize)]
struct Brand {
    name: String,
    url: String,
    logo_url: Option<String>,
    brand_color: String,
}

pub struct EmailTemplates {
    env: Environment<'static>,
    brand: Brand,
    locale: String,
}

impl EmailTemplates {
    /// The built-in templates, then those of the templates folder. Every email is rendered
    /// once with sample values, so that a broken override stops the start, named.
    pub fn load(config: &Config) -> anyhow::Result<Self> {
        let mut env = Environment::new();
        for (name, source) in BUILT_IN {
            env.add_template(name, source)?;
        }
        let folder = config.mail.templates_dir.clone().unwrap_or_else(|| config.data_dir.join("templates/email"));
        add_overrides(&mut env, &folder)?;
        let brand = Brand {
            name: config.shop_name.clone(),
            url: config.public_url(),
            logo_url: config.mail.logo_url.clone(),
            brand_color: config.mail.brand_color.clone(),
        };
        let templates = Self { env, brand, locale: config.mail.locale.clone() };
        for name in EMAILS {
            let sample = context! {
                first_name => "Ana",
                link => "https://shop.example/link",
                unsubscribe_link => "https://shop.example/unsubscribe",
                hours => 1,
                url => "https://crm.example/hooks",
                endpoint_id => "whe_01",
                reason => "Every delivery failed for 1 day.",
                form_name => "Contact",
                sender => "ana@example.com",
                submitted_at => "2026-01-01T00:00:00Z",
                fields => vec![context! { label => "Message", value => "Hello" }],
                number => 1001,
                lines => vec![context! { title => "Mug", variant_title => "Blue", quantity => 2, total => "24.00 EUR" }],
                subtotal => "24.00 EUR",
                shipping => "4.90 EUR",
                shipping_method => "Standard",
                estimate => "2 to 4 working days",
                tax => "4.82 EUR",
                tax_inclusive => true,
                total => "28.90 EUR",
                carrier => "DHL",
                tracking_number => "JJD0001",
                tracking_url => "https://track.example/JJD0001",
                amount => "12.00 EUR",
                address => context! { first_name => "Ana", last_name => "Silva", company => "", line1 => "1 Rua",
                    line2 => "", city => "Lisboa", subdivision => "", postcode => "1000-001", country => "PT" },
            };
            templates
                .render(name, "sample@example.com", sample)
                .map_err(|err| anyhow::anyhow!("email template `{name}` in {}: {err:#}", folder.display()))?;
        }
        Ok(templates)
    }

    /// Renders the email `name` to `to` with `values` (plus `shop` and `locale`).
    pub fn render(&self, name: &str, to: &str, values: Value) -> anyhow::Result<Email> {
        let context = context! { shop => &self.brand, locale => &self.locale, ..values };
        let render = |suffix: &str| -> anyhow::Result<String> {
            let localized = format!("{name}.{}.{suffix}", self.locale);
            let template = match self.env.get_template(&localized) {
                Ok(template) => template,
                Err(_) => self.env.get_template(&format!("{name}.{suffix}"))?,
            };
            Ok(template.render(&context)?)
        };
        let subject = render("subject.txt")?.trim().replace(['\r', '\n'], " ");
        Ok(Email {
            to: to.to_owned(),
            subject,
            text: render("txt")?,
            html: render("html")?,
            reply_to: None,
            unsubscribe_url: None,
        })
    }
}

fn add_overrides(env: &mut Environment<'static>, folder: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(folder) else { return Ok(()) };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
        if !(name.ends_with(".html") || name.ends_with(".txt")) {
            continue;
        }
        let source = std::fs::read_to_string(&path)?;
        env.add_template_owned(name, source)
            .map_err(|err| anyhow::anyhow!("email template {}: {err}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_emails_render_escaped_html_and_plain_text() {
        let templates = EmailTemplates::load(&Config::default()).unwrap();
        let values = context! { first_name => "<b>Ana</b>", link => "https://shop.example/x?token=brm_1", hours => 72 };
        let email = templates.render("welcome", "ana@example.com", values).unwrap();
        assert_eq!(email.subject, "Welcome to Backroom: confirm your email");
        assert!(email.text.starts_with("Hello <b>Ana</b>,"), "text is not escaped");
        assert!(email.html.contains("Hello &lt;b&gt;Ana&lt;"), "HTML is: {}", email.html);
        assert!(!email.html.contains("<b>Ana</b>"));
        assert!(email.html.contains("href=\"https:&#x2f;&#x2f;shop.example&#x2f;x?token=brm_1\""), "{}", email.html);
        assert!(email.text.contains("72 hours"));
    }
}
