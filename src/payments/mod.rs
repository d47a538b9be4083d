//! Payment providers: what checkout asks of a gateway, behind one small interface.
//!
//! - `manual`: bank transfer or cash on delivery. Nothing is charged at checkout; the order
//!   waits for staff to mark it paid.
//! - `test`: a card gateway on this machine, for the demo and the tests. Its card numbers say
//!   what happens: see [`TestCards`].
//! - `stripe`: PaymentIntents over Stripe's HTTP API; see [`stripe`].

pub mod stripe;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What the shopper chose to pay with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentDetails {
    /// `manual` or `test`.
    pub provider: String,
    /// For `test` only: a card number from the test cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_number: Option<String>,
    /// For `stripe`: the PaymentMethod Stripe.js made of the shopper's card (`pm_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// For `stripe`: where the shopper's browser comes back to after 3-D Secure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
}

/// What checkout asks a provider.
#[derive(Debug, Clone)]
pub struct Charge<'a> {
    /// Our payment's id: the provider's idempotency key, so a retry never charges twice.
    pub payment_id: &'a str,
    pub amount: i64,
    pub currency: &'a str,
    /// Capture now, or only authorise.
    pub capture: bool,
    pub details: &'a PaymentDetails,
}

/// What the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing charged yet; the order waits for the money (manual payments).
    Pending,
    Authorized {
        reference: String,
    },
    Captured {
        reference: String,
    },
    /// The shopper must act (3-D Secure) at `redirect_url`; the payment finishes later.
    RequiresAction {
        reference: String,
        redirect_url: String,
    },
    Declined {
        reason: String,
    },
}

pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// A provider's definite no (say, Stripe answering 4xx): the request was not carried out,
/// and asking again with the same key would be refused again. Any other error leaves the
/// outcome unknown.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// A payment gateway.
pub trait Provider: Send + Sync {
    /// Authorises, or captures, a charge.
    fn charge<'a>(&'a self, charge: &'a Charge<'a>) -> ProviderFuture<'a, Outcome>;
    /// Gives up an authorisation that will not be captured, or a charge whose order could not
    /// be placed (refunding it when it was captured).
    fn void<'a>(&'a self, reference: &'a str) -> ProviderFuture<'a, ()>;
    /// Captures `amount` of an authorisation.
    fn capture<'a>(&'a self, reference: &'a str, amount: i64) -> ProviderFuture<'a, ()>;
    /// Gives `amount` back; answers the provider's reference of the refund. `key` makes a
    /// retry of the same refund harmless.
    fn refund<'a>(&'a self, reference: &'a str, amount: i64, key: &'a str) -> ProviderFuture<'a, String>;
    /// Where a payment that waited on the shopper stands now.
    fn status<'a>(&'a self, reference: &'a str) -> ProviderFuture<'a, Outcome> {
        Box::pin(async move { Err(anyhow::anyhow!("payment {reference} cannot be looked up")) })
    }
}

/// Manual payments: nothing happens at checkout.
pub struct Manual;

impl Provider for Manual {
    fn charge<'a>(&'a self, _: &'a Charge<'a>) -> ProviderFuture<'a, Outcome> {
        Box::pin(async { Ok(Outcome::Pending) })
    }

    fn void<'a>(&'a self, _: &'a str) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn capture<'a>(&'a self, _: &'a str, _: i64) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    /// The money goes back the way it came (a transfer, cash): staff do it; this records it.
    fn refund<'a>(&'a self, _: &'a str, _: i64, key: &'a str) -> ProviderFuture<'a, String> {
        Box::pin(async move { Ok(format!("manual_{key}")) })
    }
}

/// The test gateway's card numbers. Any other number that passes the Luhn check succeeds.
pub struct TestCards;

impl TestCards {
    pub const SUCCEEDS: &'static str = "4242424242424242";
    pub const DECLINED: &'static str = "4000000000000002";
    pub const INSUFFICIENT_FUNDS: &'static str = "4000000000009995";
    /// The gateway never answers: checkout gives up after `checkout.payment_timeout_secs`.
    pub const TIMES_OUT: &'static str = "4000000000000119";
    /// The shopper must authenticate (3-D Secure) on the gateway's page first.
    pub const REQUIRES_ACTION: &'static str = "4000002500003155";
}

/// Whether `number` is 12 to 19 digits that pass the Luhn check.
pub fn luhn_valid(number: &str) -> bool {
    if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 { if digit * 2 > 9 { digit * 2 - 9 } else { digit * 2 } } else { digit }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The test gateway.
///
/// Its 3-D Secure is a page of this server
/// (`POST /api/v1/store/test-payments/{reference}/authenticate`); what shoppers answered there
/// is kept in this process only.
#[derive(Default)]
pub struct TestGateway {
    /// Payments waiting on the shopper: whether to capture, and what the shopper answered.
    waiting: std::sync::Mutex<HashMap<String, (bool, Option<bool>)>>,
}

impl TestGateway {
    /// Records the shopper's answer on the 3-D Secure page; whether the payment waited on it.
    pub fn authenticate(&self, reference: &str, succeeded: bool) -> bool {
        let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match waiting.get_mut(reference) {
            Some((_, answer @ None)) => {
                *answer = Some(succeeded);
                true
            }
            _ => false,
        }
    }
}

impl Provider for TestGateway {
    fn charge<'a>(&'a self, charge: &'a Charge<'a>) -> ProviderFuture<'a, Outcome> {
        Box::pin(async move {
            let number = charge.details.card_number.as_deref().unwrap_or_default();
            let reference = format!("test_{}", charge.payment_id);
            Ok(match number {
                TestCards::REQUIRES_ACTION => {
                    let mut waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    waiting.insert(reference.clone(), (charge.capture, None));
                    let redirect_url = format!("/api/v1/store/test-payments/{reference}/authenticate");
                    Outcome::RequiresAction { reference, redirect_url }
                }
                TestCards::DECLINED => Outcome::Declined { reason: "card_declined".into() },
                TestCards::INSUFFICIENT_FUNDS => Outcome::Declined { reason: "insufficient_funds".into() },
                TestCards::TIMES_OUT => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Outcome::Declined { reason: "timed_out".into() }
                }
                _ if charge.capture => Outcome::Captured { reference },
                _ => Outcome::Authorized { reference },
            })
        })
    }

    fn void<'a>(&'a self, _: &'a str) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn capture<'a>(&'a self, _: &'a str, _: i64) -> ProviderFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn refund<'a>(&'a self, _: &'a str, _: i64, key: &'a str) -> ProviderFuture<'a, String> {
        Box::pin(async move { Ok(format!("test_re_{key}")) })
    }

    fn status<'a>(&'a self, reference: &'a str) -> ProviderFuture<'a, Outcome> {
        Box::pin(async move {
            let waiting = self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let reference = reference.to_owned();
            Ok(match waiting.get(&reference) {
                Some((_, None)) => {
                    let redirect_url = format!("/api/v1/store/test-payments/{reference}/authenticate");
                    Outcome::RequiresAction { reference, redirect_url }
                }
                Some((true, Some(true))) => Outcome::Captured { reference },
                Some((false, Some(true))) => Outcome::Authorized { reference },
                Some((_, Some(false))) => Outcome::Declined { reason: "authentication_failed".into() },
                None => anyhow::bail!("the test gateway does not know {reference} (it forgets on restart)"),
            })
        })
    }
}

/// Asks `provider` to void `reference`, for at most `timeout`; whether it did. A failure is
/// logged for staff: the caller has nothing better to do with it.
pub async fn void_within(provider: &dyn Provider, reference: &str, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, provider.void(reference)).await {
        Ok(Ok(())) => true,
        Ok(Err(err)) => {
            tracing::error!(error = %err, payment.reference = %reference, "a payment could not be voided");
            false
        }
        Err(_) => {
            tracing::error!(payment.reference = %reference, "voiding a payment timed out");
            false
        }
    }
}

/// The providers the shop has set up, by name.
#[derive(Clone, Default)]
pub struct Payments {
    providers: HashMap<&'static str, Arc<dyn Provider>>,
    /// The test gateway, for its 3-D Secure page.
    pub test: Arc<TestGateway>,
}

impl Payments {
    pub fn from_config(config: &crate::platform::config::Config) -> anyhow::Result<Self> {
        let mut providers: HashMap<&'static str, Arc<dyn Provider>> = HashMap::new();
        let test = Arc::new(TestGateway::default());
        providers.insert("manual", Arc::new(Manual));
        providers.insert("test", test.clone());
        if let Some(key) = &config.checkout.stripe.secret_key {
            let timeout = Duration::from_secs(config.checkout.payment_timeout_secs);
            let gateway = stripe::Stripe::new(&config.checkout.stripe.api_base, key.clone(), timeout)?;
            providers.insert("stripe", Arc::new(gateway));
        }
        Ok(Self { providers, test })
    }

    /// The provider named `name`, if the shop has it.
    pub fn get(&self, name: &str) -> Option<&dyn Provider> {
        self.providers.get(name).map(|provider| provider.as_ref())
    }

    /// Voids each `(provider, reference)`, each for at most `timeout`.
    pub async fn void_all(&self, payments: Vec<(String, String)>, timeout: Duration) {
        for (provider, reference) in payments {
            if let Some(gateway) = self.get(&provider) {
                void_within(gateway, &reference, timeout).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        let cards = [
            TestCards::SUCCEEDS,
            TestCards::DECLINED,
            TestCards::INSUFFICIENT_FUNDS,
            TestCards::TIMES_OUT,
            TestCards::REQUIRES_ACTION,
        ];
        for number in cards {
            assert!(luhn_valid(number), "{number}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("4242 4242 4242 4242"));
        assert!(!luhn_valid("42"));
    }
}
