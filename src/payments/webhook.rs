//! Stripe's webhook: `POST /api/v1/payments/stripe/webhook`.
//!
//! The `Stripe-Signature` header is checked against the endpoint's secret (HMAC-SHA256 of
//! `timestamp.payload`, within `checkout.stripe.webhook_tolerance_secs`). Each event is applied
//! once: its id is kept, and a delivery seen and applied before is answered without acting.
//! Events may come twice or in any order, so an event is never trusted for what it says: the
//! payment intent it names is read from Stripe as it stands now, and acted on:
//! - succeeded or authorised: the order is placed, if the shopper's browser never came back;
//! - failed or cancelled: the stock held for it is released and the cart freed;
//! - a payment taken for an attempt that already ended: the money goes back.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::Sha256;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Outcome;
use crate::app::AppState;
use crate::catalog::inventory::Actor;
use crate::checkout::place::{self, Finished};
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stripe_webhook)).routes(routes!(test_authenticate))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestAuthentication {
    /// Whether the shopper passes 3-D Secure.
    pub succeed: bool,
}

/// The test gateway's 3-D Secure page, answered: only while the `test` provider is on. Then
/// call `complete` again with the same key.
#[utoipa::path(post, path = "/api/v1/store/test-payments/{reference}/authenticate", tag = "payments",
    request_body = TestAuthentication, params(("reference" = String, Path)),
    responses(
        (status = 204),
        (status = 404, description = "No test payment waits on this", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn test_authenticate(
    State(state): State<AppState>,
    axum::extract::Path(reference): axum::extract::Path<String>,
    crate::platform::http::Json(answer): crate::platform::http::Json<TestAuthentication>,
) -> AppResult<StatusCode> {
    let enabled = state.config.checkout.providers.iter().any(|p| p == "test");
    if enabled && state.payments.test.authenticate(&reference, answer.succeed) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::not_found("No test payment waits on this."))
    }
}

/// Whether `header` signs `payload` with `secret`, at most `tolerance` seconds ago.
pub fn verify(header: &str, payload: &[u8], secret: &str, now: i64, tolerance: i64) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or("no timestamp")?;
    if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
        return Err("too old");
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| "bad secret")?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let expected = mac.finalize().into_bytes();
    let matches = signatures.iter().any(|signature| {
        let Some(bytes) = hex_decode(signature) else { return false };
        crate::accounts::tokens::constant_time_eq(&bytes, &expected)
    });
    if matches { Ok(()) } else { Err("no matching signature") }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| text.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect()
}

#[derive(Debug, Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Debug, Deserialize)]
struct EventData {
    object: EventObject,
}

#[derive(Debug, Deserialize)]
struct EventObject {
    id: String,
    #[serde(default)]
    payment_intent: Option<String>,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

fn bad_signature(reason: &str) -> AppError {
    AppError::new(ErrorCode::BadRequest, format!("The Stripe-Signature header does not verify: {reason}."))
}

/// Where Stripe sends events about payments. Answers 200 once an event is applied (or was
/// before), 400 when its signature does not verify, and 5xx when it should be sent again.
#[utoipa::path(post, path = "/api/v1/payments/stripe/webhook", tag = "payments",
    request_body(content = String, content_type = "application/json", description = "A Stripe event, as Stripe signs it"),
    params(("Stripe-Signature" = String, Header, description = "t=...,v1=...")),
    responses(
        (status = 200, description = "Applied, now or before"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Stripe is not set up", body = Problem, content_type = "application/problem+json"),
    ))]
async fn stripe_webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> AppResult<StatusCode> {
    let config = &state.config.checkout.stripe;
    let Some(header) = headers.get("stripe-signature").and_then(|value| value.to_str().ok()) else {
        return Err(bad_signature("it is missing"));
    };
    let Some(secret) = &config.webhook_secret else {
        return Err(AppError::not_found("Stripe is not set up in this shop."));
    };
    let now = Timestamp::now().0 / 1000;
    verify(header, &body, secret.expose_secret(), now, config.webhook_tolerance_secs as i64).map_err(bad_signature)?;
    let event: Event = serde_json::from_slice(&body)
        .map_err(|err| AppError::new(ErrorCode::BadRequest, format!("The event does not parse: {err}")))?;
    let seen = db_run!(state.db.write().await?, |conn| {
        sqlx::query_scalar::<_, Option<i64>>(
            "INSERT INTO payment_events (id, provider, type, received_at) VALUES ($1, 'stripe', $2, $3) \
             ON CONFLICT (id) DO UPDATE SET received_at = payment_events.received_at RETURNING processed_at",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(Timestamp::now())
        .fetch_one(conn)
        .await
    })?;
    if seen.is_some() {
        return Ok(StatusCode::OK);
    }
    let intent = match event.kind.split_once('.') {
        Some(("payment_intent", _)) => Some(event.data.object.id.clone()),
        Some(("charge", _)) => event.data.object.payment_intent.clone(),
        _ => None,
    };
    if let Some(intent) = intent {
        let ours = event.data.object.metadata.get("payment_id").map(String::as_str);
        apply(&state, &intent, ours).await?;
    }
    db_execute!(state.db.write().await?, |conn| {
        sqlx::query("UPDATE payment_events SET processed_at = $1 WHERE id = $2")
            .bind(Timestamp::now())
            .bind(&event.id)
            .execute(conn)
            .await
    })?;
    Ok(StatusCode::OK)
}

/// Brings our payment for the intent `reference` in line with what Stripe says of it now.
/// `ours` is our payment's id from the intent's metadata, for an intent whose id we never
/// learned (the process stopped, or the provider failed, between creating and recording it).
async fn apply(state: &AppState, reference: &str, ours: Option<&str>) -> AppResult<()> {
    let payment = match place::payment_by_reference(state, "stripe", reference).await? {
        Some(payment) => Some(payment),
        None => match ours {
            Some(id) => place::payment_by_id(state, id).await?.filter(|payment| payment.provider == "stripe"),
            None => None,
        },
    };
    let Some(payment) = payment else {
        // Not one of ours.
        return Ok(());
    };
    if payment.provider_ref.as_deref().is_some_and(|known| known != reference) {
        return Ok(());
    }
    let actor = Actor { kind: "system", id: "stripe" };
    match payment.status.as_str() {
        "requires_action" => match place::finish(state, &payment, actor).await {
            Ok(Finished::Placed(_) | Finished::Waiting { .. }) => Ok(()),
            // Declined: the hold was given back; nothing more to do.
            Err(err) if err.status() == StatusCode::PAYMENT_REQUIRED => Ok(()),
            // Finished meanwhile by the shopper's return.
            Err(err) if err.status() == StatusCode::CONFLICT => Ok(()),
            Err(err) => Err(err),
        },
        "failed" | "voided" => {
            // The attempt ended on our side; money Stripe took for it anyway goes back.
            let provider = state.payments.get("stripe").ok_or_else(|| AppError::not_found("Stripe is not set up."))?;
            if let Ok(Outcome::Captured { .. } | Outcome::Authorized { .. }) = provider.status(reference).await {
                tracing::warn!(payment.reference = %reference, "a payment taken for an ended checkout; voiding it");
                provider.void(reference).await.map_err(AppError::internal)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
        mac.update(format!("{timestamp}.").as_bytes());
        mac.update(payload);
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        format!("t={timestamp},v1={hex}")
    }

    #[test]
    fn signatures_verify_only_with_the_secret_and_in_time() {
        let payload = br#"{"id":"evt_1"}"#;
        let header = sign("whsec_test", 1_000, payload);
        assert_eq!(verify(&header, payload, "whsec_test", 1_100, 300), Ok(()));
        assert_eq!(verify(&header, payload, "whsec_other", 1_100, 300), Err("no matching signature"));
        assert_eq!(verify(&header, b"{}", "whsec_test", 1_100, 300), Err("no matching signature"));
        assert_eq!(verify(&header, payload, "whsec_test", 2_000, 300), Err("too old"));
        assert_eq!(verify("v1=00", payload, "whsec_test", 1_000, 300), Err("no timestamp"));
        let rotated = format!("{},v1={}", header, "ab".repeat(32));
        assert_eq!(verify(&rotated, payload, "whsec_test", 1_000, 300), Ok(()), "any v1 may match");
    }
}
