//! Stripe, over its HTTP API: PaymentIntents created, confirmed, captured, cancelled and
//! refunded, each request with an `Idempotency-Key`, so that a retry never charges twice.
//!
//! A payment is created first, then confirmed, in two requests: whatever happens to the
//! confirmation (an error, a timeout), the intent's id is known and it can be cancelled.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{Charge, Outcome, Provider, ProviderFuture};

pub struct Stripe {
    client: reqwest::Client,
    base: String,
    key: SecretString,
}

/// The parts of a PaymentIntent this reads.
#[derive(Debug, Deserialize)]
struct Intent {
    id: String,
    status: String,
    #[serde(default)]
    next_action: Option<NextAction>,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
}

#[derive(Debug, Deserialize)]
struct NextAction {
    #[serde(default)]
    redirect_to_url: Option<Redirect>,
}

#[derive(Debug, Deserialize)]
struct Redirect {
    url: String,
}

#[derive(Debug, Deserialize)]
struct StripeError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: StripeError,
}

#[derive(Debug, Deserialize)]
struct RefundObject {
    id: String,
}

/// A Stripe answer: the object, or Stripe's error with the HTTP status.
enum Answer<T> {
    Ok(T),
    Refused(u16, StripeError),
}

impl Stripe {
    /// Each request to Stripe takes at most `timeout`.
    pub fn new(base: &str, key: SecretString, timeout: Duration) -> anyhow::Result<Self> {
        let client =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(5).min(timeout)).timeout(timeout).build()?;
        Ok(Self { client, base: base.trim_end_matches('/').to_owned(), key })
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> anyhow::Result<Answer<T>> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.key.expose_secret())
            .header("idempotency-key", idempotency_key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form)?)
            .send()
            .await?;
        Self::read(response).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<Answer<T>> {
        let response =
            self.client.get(format!("{}{path}", self.base)).bearer_auth(self.key.expose_secret()).send().await?;
        Self::read(response).await
    }

    async fn read<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<Answer<T>> {
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        if (200..300).contains(&status) {
            return Ok(Answer::Ok(serde_json::from_slice(&body)?));
        }
        if status >= 500 || status == 429 {
            anyhow::bail!("Stripe answered {status}");
        }
        let error: ErrorBody = serde_json::from_slice(&body)
            .map_err(|err| anyhow::anyhow!("Stripe answered {status} with an unreadable error: {err}"))?;
        Ok(Answer::Refused(status, error.error))
    }

    fn outcome(intent: Intent) -> anyhow::Result<Outcome> {
        let reference = intent.id;
        Ok(match intent.status.as_str() {
            "succeeded" => Outcome::Captured { reference },
            "requires_capture" => Outcome::Authorized { reference },
            "requires_action" | "requires_confirmation" | "processing" => {
                let redirect_url = intent
                    .next_action
                    .and_then(|action| action.redirect_to_url)
                    .map(|redirect| redirect.url)
                    .unwrap_or_default();
                Outcome::RequiresAction { reference, redirect_url }
            }
            "requires_payment_method" | "canceled" => {
                let reason = intent.last_payment_error.map_or_else(|| intent.status.clone(), |error| reason_of(&error));
                Outcome::Declined { reason }
            }
            other => anyhow::bail!("PaymentIntent {reference} is {other}"),
        })
    }

    async fn cancel(&self, id: &str) -> anyhow::Result<()> {
        let form = [("cancellation_reason", "abandoned".to_owned())];
        match self.post::<Intent>(&format!("/v1/payment_intents/{id}/cancel"), &form, &format!("cancel-{id}")).await? {
            Answer::Ok(_) => Ok(()),
            // Captured already: the money goes back whole.
            Answer::Refused(_, error) if error.code.as_deref() == Some("payment_intent_unexpected_state") => {
                let current = self.get::<Intent>(&format!("/v1/payment_intents/{id}")).await?;
                match current {
                    Answer::Ok(intent) if intent.status == "succeeded" => {
                        let form = [("payment_intent", id.to_owned()), ("reason", "requested_by_customer".to_owned())];
                        match self.post::<RefundObject>("/v1/refunds", &form, &format!("void-{id}")).await? {
                            Answer::Ok(_) => Ok(()),
                            Answer::Refused(status, error) => anyhow::bail!("refund refused ({status}): {error:?}"),
                        }
                    }
                    Answer::Ok(_) => Ok(()),
                    Answer::Refused(status, error) => anyhow::bail!("lookup refused ({status}): {error:?}"),
                }
            }
            Answer::Refused(status, error) => anyhow::bail!("cancel refused ({status}): {error:?}"),
        }
    }
}

fn reason_of(error: &StripeError) -> String {
    error
        .decline_code
        .clone()
        .or_else(|| error.code.clone())
        .or_else(|| error.kind.clone())
        .unwrap_or_else(|| "declined".into())
}

impl Provider for Stripe {
    fn charge<'a>(&'a self, charge: &'a Charge<'a>) -> ProviderFuture<'a, Outcome> {
        Box::pin(async move {
            let Some(payment_method) = charge.details.payment_method.clone() else {
                return Ok(Outcome::Declined { reason: "no_payment_method".into() });
            };
            let capture = if charge.capture { "automatic" } else { "manual" };
            let create = [
                ("amount", charge.amount.to_string()),
                ("currency", charge.currency.to_lowercase()),
                ("capture_method", capture.to_owned()),
                ("payment_method", payment_method.clone()),
                ("metadata[payment_id]", charge.payment_id.to_owned()),
            ];
            let intent = match self.post::<Intent>("/v1/payment_intents", &create, charge.payment_id).await? {
                Answer::Ok(intent) => intent,
                Answer::Refused(_, error) => return Ok(Outcome::Declined { reason: reason_of(&error) }),
            };
            let mut confirm = vec![("payment_method", payment_method)];
            if let Some(return_url) = &charge.details.return_url {
                confirm.push(("return_url", return_url.clone()));
            }
            let path = format!("/v1/payment_intents/{}/confirm", intent.id);
            let confirmed = match self.post::<Intent>(&path, &confirm, &format!("{}-confirm", charge.payment_id)).await
            {
                Ok(answer) => answer,
                Err(err) => {
                    // Unknown outcome: the intent is cancelled (or refunded), so nothing is taken.
                    if let Err(cancel) = self.cancel(&intent.id).await {
                        tracing::error!(error = %cancel, payment.reference = %intent.id, "a Stripe payment could not be cancelled");
                    }
                    return Err(err);
                }
            };
            match confirmed {
                Answer::Ok(intent) => Self::outcome(intent),
                Answer::Refused(402, error) => Ok(Outcome::Declined { reason: reason_of(&error) }),
                Answer::Refused(status, error) => {
                    let _ = self.cancel(&intent.id).await;
                    anyhow::bail!("Stripe refused the confirmation ({status}): {}", error.message.unwrap_or_default())
                }
            }
        })
    }

    fn void<'a>(&'a self, reference: &'a str) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            // A payment that never became an intent has nothing to undo.
            if !reference.starts_with("pi_") {
                return Ok(());
            }
            self.cancel(reference).await
        })
    }

    fn capture<'a>(&'a self, reference: &'a str, amount: i64) -> ProviderFuture<'a, ()> {
        Box::pin(async move {
            let form = [("amount_to_capture", amount.to_string())];
            let path = format!("/v1/payment_intents/{reference}/capture");
            match self.post::<Intent>(&path, &form, &format!("capture-{reference}")).await? {
                Answer::Ok(_) => Ok(()),
                Answer::Refused(status, error) => anyhow::bail!("capture refused ({status}): {error:?}"),
            }
        })
    }

    fn refund<'a>(&'a self, reference: &'a str, amount: i64, key: &'a str) -> ProviderFuture<'a, String> {
        Box::pin(async move {
            let form = [("payment_intent", reference.to_owned()), ("amount", amount.to_string())];
            match self.post::<RefundObject>("/v1/refunds", &form, key).await? {
                Answer::Ok(refund) => Ok(refund.id),
                // Stripe's 5xx leaves the outcome unknown; a 4xx is a definite no.
                Answer::Refused(status, error) if status < 500 => {
                    Err(super::Refused(format!("refund refused ({status}): {error:?}")).into())
                }
                Answer::Refused(status, error) => anyhow::bail!("refund not answered ({status}): {error:?}"),
            }
        })
    }

    fn status<'a>(&'a self, reference: &'a str) -> ProviderFuture<'a, Outcome> {
        Box::pin(async move {
            match self.get::<Intent>(&format!("/v1/payment_intents/{reference}")).await? {
                Answer::Ok(intent) => Self::outcome(intent),
                Answer::Refused(status, error) => anyhow::bail!("lookup refused ({status}): {error:?}"),
            }
        })
    }
}
