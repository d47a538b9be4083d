//! Outbound webhooks: events fanned out to the endpoints staff subscribed, each delivery a
//! job, signed per the Standard Webhooks specification, retried on its own schedule for
//! about a day, and refused for addresses inside the shop's network.
//!
//! An event is written in the transaction of the change it reports (the outbox), so a
//! receiver hears of exactly the changes that happened. Every attempt is logged with its
//! status and latency; an endpoint that has failed without a success for
//! `webhooks.disable_after_secs` is disabled and its owner emailed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::jobs::{self, ClaimedJob, JobError, NewJob};
use crate::app::AppState;
use crate::platform::batch::{Batch, Ran};
use crate::platform::breaker::CircuitBreaker;
use crate::platform::config::WebhooksConfig;
use crate::platform::db::Tx;
use crate::platform::error::{AppError, AppResult};
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The job that makes one delivery attempt.
pub const DELIVER: &str = "webhook.deliver";

/// The events Backroom sends, with what each means. Endpoints subscribe to these names, to a
/// family such as `customer.*`, or to `*`.
pub const EVENT_TYPES: &[(&str, &str)] = &[
    ("customer.created", "A customer registered."),
    ("customer.updated", "A customer changed their profile or verified their email address."),
    ("form.submitted", "Someone sent one of the shop's forms."),
    ("inventory.low", "A sale or a stock change left a variant's stock on hand at or below its threshold."),
    ("product.created", "Staff created a product."),
    ("product.updated", "Staff changed a product."),
    ("product.deleted", "Staff deleted a product."),
    ("order.placed", "A shopper placed an order."),
    ("order.paid", "Staff recorded the money of a manual payment."),
    ("order.cancelled", "Staff cancelled an order."),
    ("order.shipped", "A parcel of an order was handed to the carrier."),
    ("order.refunded", "Money was given back for an order."),
    ("newsletter.subscribed", "Someone confirmed their newsletter subscription."),
    ("newsletter.unsubscribed", "A subscriber left the newsletter."),
    ("webhook.test", "Sent on request to one endpoint, to try it."),
];

/// Whether `pattern` (an event type, `family.*` or `*`) names at least one event type.
pub fn is_known_pattern(pattern: &str) -> bool {
    EVENT_TYPES.iter().any(|(event_type, _)| matches(pattern, event_type))
}

/// Whether an endpoint subscribed to `pattern` receives events of `event_type`. `*` takes
/// every event but `webhook.test`, which goes only where it is sent.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => event_type != "webhook.test",
        Some(family) => family.ends_with('.') && event_type.starts_with(family),
        None => pattern == event_type,
    }
}

/// A new signing secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    format!("whsec_{}", BASE64.encode(bytes))
}

/// The `webhook-signature` value for one secret: `v1,` and the base64 HMAC-SHA256 of
/// `{id}.{timestamp}.{body}` under the secret's decoded bytes.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> anyhow::Result<String> {
    let key = BASE64.decode(secret.strip_prefix("whsec_").unwrap_or(secret))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)?;
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// Records `event_type` with `data` and enqueues a delivery to every enabled endpoint
/// subscribed to it, in the caller's transaction. Nothing is written when no endpoint
/// listens.
pub async fn emit(state: &AppState, tx: &mut Tx, event_type: &'static str, data: &impl Serialize) -> AppResult<()> {
    Listeners::load(tx).await?.emit(state, tx, event_type, data).await
}

/// The enabled endpoints and what they listen to, read once for a transaction that emits
/// many events.
pub struct Listeners(Vec<(String, String)>);

impl Listeners {
    pub async fn load(tx: &mut Tx) -> AppResult<Self> {
        let mut batch = Batch::new();
        Self::load_in(&mut batch);
        Self::loaded(&tx.run(&batch).await?[0])
    }

    /// Adds the reading of the listeners to `batch`; [`Listeners::loaded`] takes its answer.
    pub fn load_in(batch: &mut Batch) {
        batch.push("SELECT id, event_types FROM webhook_endpoints WHERE status = 'enabled'", Vec::new());
    }

    pub fn loaded(ran: &Ran) -> AppResult<Self> {
        Ok(Self(ran.rows::<(String, String)>()?))
    }

    /// Whether some endpoint listens to `event_type`.
    pub fn listen_to(&self, event_type: &str) -> bool {
        self.0.iter().any(|(_, patterns)| patterns.split_whitespace().any(|pattern| matches(pattern, event_type)))
    }

    /// As [`emit`], with the endpoints read before.
    pub async fn emit(
        &self,
        state: &AppState,
        tx: &mut Tx,
        event_type: &'static str,
        data: &impl Serialize,
    ) -> AppResult<()> {
        let targets: Vec<&str> = self
            .0
            .iter()
            .filter(|(_, patterns)| patterns.split_whitespace().any(|pattern| matches(pattern, event_type)))
            .map(|(id, _)| id.as_str())
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let event_id = record_event(tx, event_type, data).await?;
        for endpoint_id in targets {
            create_delivery(state, tx, &event_id, endpoint_id).await?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct Envelope<'a, T> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a T,
}

/// Writes the event's body, in the shape the specification recommends:
/// `{"type": ..., "timestamp": ..., "data": ...}`. Returns its id, the `webhook-id`.
pub(crate) async fn record_event(tx: &mut Tx, event_type: &str, data: &impl Serialize) -> AppResult<String> {
    let id = new_id("msg");
    let now = Timestamp::now();
    let body = serde_json::to_string(&Envelope { event_type, timestamp: now.to_rfc3339(), data })
        .map_err(AppError::internal)?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query("INSERT INTO webhook_events (id, type, body, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&id)
            .bind(event_type)
            .bind(&body)
            .bind(now)
            .execute(conn)
            .await
    })?;
    Ok(id)
}

#[derive(Serialize, Deserialize)]
struct DeliveryJob {
    delivery_id: String,
}

/// Creates a pending delivery of the event to the endpoint and enqueues its first attempt.
pub(crate) async fn create_delivery(
    state: &AppState,
    tx: &mut Tx,
    event_id: &str,
    endpoint_id: &str,
) -> AppResult<String> {
    let id = new_id("whd");
    let now = Timestamp::now();
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, status, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $4)",
        )
        .bind(&id)
        .bind(event_id)
        .bind(endpoint_id)
        .bind(now)
        .execute(conn)
        .await
    })?;
    let config = &state.config.webhooks;
    let job = NewJob::new(DELIVER, &DeliveryJob { delivery_id: id.clone() })?
        .max_attempts(config.retry_schedule_secs.len() as u32 + 1)
        .timeout(Duration::from_secs(config.timeout_secs + 10));
    jobs::enqueue(tx, job).await?;
    Ok(id)
}

/// Which addresses deliveries may go to.
#[derive(Debug, Clone, Copy)]
pub struct AddressPolicy {
    pub allow_loopback: bool,
    pub allow_private: bool,
}

impl AddressPolicy {
    pub fn from_config(config: &WebhooksConfig) -> Self {
        Self { allow_loopback: config.allow_loopback, allow_private: config.allow_private }
    }

    /// `Err(why)` for an address deliveries must not reach.
    pub fn check(self, ip: IpAddr) -> Result<(), &'static str> {
        match classify(ip) {
            Reach::Public => Ok(()),
            Reach::Loopback if self.allow_loopback => Ok(()),
            Reach::Loopback => Err("a loopback address"),
            Reach::Private if self.allow_private => Ok(()),
            Reach::Private => Err("a private or reserved address"),
        }
    }
}

enum Reach {
    Public,
    Loopback,
    Private,
}

fn classify(ip: IpAddr) -> Reach {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_v4(v4);
            }
            if v6.is_loopback() || v6.is_unspecified() {
                Reach::Loopback
            } else if v6.is_multicast() || inside_v6(v6.segments()) {
                Reach::Private
            } else {
                Reach::Public
            }
        }
    }
}

/// IPv6 ranges that are not the public internet, or that carry an IPv4 address a gateway
/// on the way could lead inside.
fn inside_v6(s: [u16; 8]) -> bool {
    let ranges = [
        (s[0] & 0xfe00) == 0xfc00,                // unique local
        (s[0] & 0xffc0) == 0xfe80,                // link-local
        (s[0] & 0xffc0) == 0xfec0,                // site-local
        s[0] == 0x2001 && s[1] == 0x0db8,         // documentation
        s[0] == 0x2001 && s[1] == 0,              // Teredo
        s[0] == 0x0064 && s[1] == 0xff9b,         // NAT64
        s[0] == 0x2002,                           // 6to4
        s[..5] == [0, 0, 0, 0, 0],                // IPv4-compatible
        s[..4] == [0, 0, 0, 0] && s[4] == 0xffff, // IPv4-translated
    ];
    ranges.into_iter().any(|inside| inside)
}

fn classify_v4(ip: Ipv4Addr) -> Reach {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() || ip.is_unspecified() || a == 0 {
        Reach::Loopback
    } else if ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a >= 240
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || (a == 192 && b == 0 && c == 0)
    // IETF protocol assignments
    {
        Reach::Private
    } else {
        Reach::Public
    }
}

/// Checks an endpoint's address when staff set it: `http` or `https`, a host, no
/// credentials, and not an address literal the policy refuses. Names are checked again,
/// resolved, at every delivery.
pub fn check_url(raw: &str, policy: AddressPolicy) -> Result<reqwest::Url, String> {
    if raw.len() > 2000 {
        return Err("must be at most 2000 characters".into());
    }
    let url = reqwest::Url::parse(raw).map_err(|err| format!("is not an absolute URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// address".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    let refused = |why: &str| format!("points to {why}, which webhooks may not reach");
    match url.host() {
        None => return Err("must name a host".into()),
        Some(url::Host::Ipv4(ip)) => policy.check(IpAddr::V4(ip)).map_err(refused)?,
        Some(url::Host::Ipv6(ip)) => policy.check(IpAddr::V6(ip)).map_err(refused)?,
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            if (name == "localhost" || name.ends_with(".localhost")) && !policy.allow_loopback {
                return Err(refused("a loopback address"));
            }
        }
    }
    Ok(url)
}

/// Resolves receivers' names and keeps only the addresses the policy allows, so that a name
/// pointing inside the network (or re-pointed there after it was checked) is never reached:
/// the connection goes to the very addresses checked here.
struct GuardedResolver(AddressPolicy);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|addr| policy.check(addr.ip()).is_ok()).collect();
            if allowed.is_empty() {
                let why = if found.is_empty() {
                    "resolves to no address"
                } else {
                    "resolves only to addresses webhooks may not reach"
                };
                return Err(format!("{} {why}", name.as_str()).into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client and the circuit breakers, one per destination.
pub struct Sender {
    client: reqwest::Client,
    policy: AddressPolicy,
    config: WebhooksConfig,
    breakers: Mutex<HashMap<String, Arc<CircuitBreaker>>>,
}

impl Sender {
    pub fn new(config: &WebhooksConfig) -> anyhow::Result<Self> {
        let policy = AddressPolicy::from_config(config);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver(policy)))
            // A proxy would resolve names itself, around the guard.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .timeout(Duration::from_secs(config.timeout_secs))
            .user_agent(concat!("Backroom-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, policy, config: config.clone(), breakers: Mutex::new(HashMap::new()) })
    }

    fn breaker(&self, destination: &str) -> Arc<CircuitBreaker> {
        let mut breakers = self.breakers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        breakers
            .entry(destination.to_owned())
            .or_insert_with(|| {
                Arc::new(CircuitBreaker::new(
                    self.config.circuit_failures,
                    Duration::from_secs(self.config.circuit_cooldown_secs),
                ))
            })
            .clone()
    }

    /// The wait before attempt `attempt + 1` (1-based), with up to a tenth more as jitter.
    fn retry_wait(&self, attempt: i64) -> Duration {
        let schedule = &self.config.retry_schedule_secs;
        let index = (attempt.max(1) as usize - 1).min(schedule.len() - 1);
        let base = schedule[index] * 1000;
        Duration::from_millis(base + rand::rng().random_range(0..=base / 10))
    }
}

/// Everything one attempt needs, read in one query.
#[derive(sqlx::FromRow)]
struct Pending {
    delivery_status: String,
    endpoint_id: String,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_secret_expires_at: Option<Timestamp>,
    endpoint_status: String,
    event_id: String,
    body: String,
}

/// What came of one attempt.
struct Attempt {
    status: Option<u16>,
    latency_ms: i64,
    error: Option<String>,
    response: Option<String>,
}

impl Attempt {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|status| (200..300).contains(&status))
    }
}

/// The most of a receiver's answer kept in the log.
const RESPONSE_KEPT: usize = 1024;

/// Runs one attempt of a delivery job.
pub(crate) async fn run(state: &AppState, job: &ClaimedJob) -> Result<(), JobError> {
    let DeliveryJob { delivery_id } =
        serde_json::from_str(&job.payload).map_err(|err| JobError::Permanent(err.to_string()))?;
    let found = db_run!(state.db.read().await.map_err(JobError::retry)?, |conn| {
        sqlx::query_as::<_, Pending>(
            "SELECT d.status AS delivery_status, e.id AS endpoint_id, e.url, e.secret, e.previous_secret, \
             e.previous_secret_expires_at, e.status AS endpoint_status, v.id AS event_id, v.body \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             JOIN webhook_events v ON v.id = d.event_id WHERE d.id = $1",
        )
        .bind(&delivery_id)
        .fetch_optional(conn)
        .await
    })
    .map_err(JobError::retry)?;
    // Gone with its endpoint, or already settled (cancelled when the endpoint was disabled).
    let Some(pending) = found.filter(|p| p.delivery_status == "pending") else { return Ok(()) };
    if pending.endpoint_status != "enabled" {
        settle(state, &delivery_id, "cancelled").await.map_err(JobError::retry)?;
        return Ok(());
    }
    let sender = &state.webhooks;
    let (attempt, last) = match check_url(&pending.url, sender.policy) {
        Ok(url) => {
            let breaker = sender.breaker(&url[..url::Position::BeforePath]);
            if let Err(wait) = breaker.check() {
                return Err(JobError::Defer(wait + Duration::from_millis(rand::rng().random_range(0..1000))));
            }
            let attempt = send(state, &pending, url).await;
            // The circuit is about the destination being reachable: an answer it chose (a
            // 4xx for this endpoint) is no outage, while no answer, a 5xx or a 429 is.
            match attempt.status {
                Some(status) if status < 500 && status != 429 => breaker.record_success(),
                _ => breaker.record_failure(),
            }
            (attempt, job.attempts >= job.max_attempts)
        }
        // Refused by the address policy: no retry can change that.
        Err(reason) => {
            let error = Some(format!("not sent: the address {reason}"));
            (Attempt { status: None, latency_ms: 0, error, response: None }, true)
        }
    };
    let outcome =
        record_attempt(state, &delivery_id, &pending.endpoint_id, &attempt, last).await.map_err(JobError::retry)?;
    metrics::counter!("webhook_attempts_total", "outcome" => if attempt.succeeded() { "succeeded" } else { "failed" })
        .increment(1);
    metrics::histogram!("webhook_attempt_seconds").record(attempt.latency_ms as f64 / 1000.0);
    match outcome {
        Recorded::Done => Ok(()),
        Recorded::Retry => {
            let error = attempt.error.unwrap_or_else(|| "failed".into());
            Err(JobError::RetryIn(error, sender.retry_wait(job.attempts)))
        }
    }
}

async fn send(state: &AppState, pending: &Pending, url: reqwest::Url) -> Attempt {
    let now = Timestamp::now();
    let timestamp = now.0 / 1000;
    let mut signatures = Vec::with_capacity(2);
    let previous =
        pending.previous_secret.as_deref().filter(|_| pending.previous_secret_expires_at.is_some_and(|at| at > now));
    for secret in std::iter::once(pending.secret.as_str()).chain(previous) {
        match signature(secret, &pending.event_id, timestamp, &pending.body) {
            Ok(signature) => signatures.push(signature),
            Err(err) => {
                return Attempt {
                    status: None,
                    latency_ms: 0,
                    error: Some(format!("signing failed: {err}")),
                    response: None,
                };
            }
        }
    }
    let started = Instant::now();
    let result = state
        .webhooks
        .client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", &pending.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signatures.join(" "))
        .body(pending.body.clone())
        .send()
        .await;
    let outcome = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let mut kept = Vec::new();
            let mut response = response;
            let read_error = loop {
                match response.chunk().await {
                    Ok(Some(chunk)) if kept.len() < RESPONSE_KEPT => kept.extend_from_slice(&chunk),
                    Ok(Some(_)) | Ok(None) => break None,
                    Err(err) => break Some(err),
                }
            };
            kept.truncate(RESPONSE_KEPT);
            let text = String::from_utf8_lossy(&kept).into_owned();
            let error = if (200..300).contains(&status) {
                None
            } else if let Some(err) = read_error {
                Some(format!("answered {status}, then: {}", describe(&err)))
            } else {
                Some(format!("answered {status}"))
            };
            Attempt { status: Some(status), latency_ms: 0, error, response: Some(text) }
        }
        Err(err) => Attempt { status: None, latency_ms: 0, error: Some(describe(&err)), response: None },
    };
    Attempt { latency_ms: started.elapsed().as_millis() as i64, ..outcome }
}

/// A transport error with its causes, which reqwest keeps apart.
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text.chars().take(500).collect()
}

enum Recorded {
    /// Nothing more to do: delivered, out of attempts, or the endpoint was just disabled.
    Done,
    Retry,
}

async fn settle(state: &AppState, delivery_id: &str, status: &str) -> AppResult<()> {
    db_execute!(state.db.write().await?, |conn| {
        sqlx::query("UPDATE webhook_deliveries SET status = $1, updated_at = $2 WHERE id = $3 AND status = 'pending'")
            .bind(status)
            .bind(Timestamp::now())
            .bind(delivery_id)
            .execute(conn)
            .await
    })?;
    Ok(())
}

/// Logs the attempt and moves the delivery and its endpoint on, in one transaction: a
/// success clears the endpoint's failing streak; a failure starts it or, once it has lasted
/// `disable_after_secs`, disables the endpoint, cancels its pending deliveries and emails
/// its owner.
async fn record_attempt(
    state: &AppState,
    delivery_id: &str,
    endpoint_id: &str,
    attempt: &Attempt,
    last: bool,
) -> AppResult<Recorded> {
    let now = Timestamp::now();
    let succeeded = attempt.succeeded();
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO webhook_attempts (id, delivery_id, attempted_at, status, latency_ms, error, response) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id("wha"))
        .bind(delivery_id)
        .bind(now)
        .bind(attempt.status.map(i64::from))
        .bind(attempt.latency_ms)
        .bind(&attempt.error)
        .bind(&attempt.response)
        .execute(conn)
        .await
    })?;
    let status = match (succeeded, last) {
        (true, _) => "succeeded",
        (false, true) => "failed",
        (false, false) => "pending",
    };
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, \
             last_latency_ms = $3, last_error = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(status)
        .bind(attempt.status.map(i64::from))
        .bind(attempt.latency_ms)
        .bind(&attempt.error)
        .bind(now)
        .bind(delivery_id)
        .execute(conn)
        .await
    })?;
    if succeeded {
        db_execute!(tx.conn(), |conn| {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
                .bind(endpoint_id)
                .execute(conn)
                .await
        })?;
        tx.commit().await?;
        return Ok(Recorded::Done);
    }
    let failing_since = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, Timestamp>(
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) WHERE id = $2 \
             RETURNING failing_since",
        )
        .bind(now)
        .bind(endpoint_id)
        .fetch_one(conn)
        .await
    })?;
    let disable_after = state.config.webhooks.disable_after_secs;
    if now.0 - failing_since.0 < (disable_after as i64).saturating_mul(1000) {
        tx.commit().await?;
        return Ok(if last { Recorded::Done } else { Recorded::Retry });
    }
    let reason = format!(
        "Every delivery failed for {} without a success; the last: {}.",
        human_duration(disable_after),
        attempt.error.as_deref().unwrap_or("failed")
    );
    super::webhooks_admin::disable(&mut tx, state, endpoint_id, &reason).await?;
    tx.commit().await?;
    tracing::warn!(webhook.endpoint = endpoint_id, "webhook endpoint disabled after failing for too long");
    Ok(Recorded::Done)
}

pub(crate) fn human_duration(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{} day{}", s / 86_400, if s == 86_400 { "" } else { "s" }),
        s if s % 3600 == 0 => format!("{} hour{}", s / 3600, if s == 3600 { "" } else { "s" }),
        s if s % 60 == 0 => format!("{} minute{}", s / 60, if s == 60 { "" } else { "s" }),
        s => format!("{s} second{}", if s == 1 { "" } else { "s" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_event_types_and_families() {
        assert!(matches("customer.created", "customer.created"));
        assert!(!matches("customer.created", "customer.updated"));
        assert!(matches("customer.*", "customer.updated"));
        assert!(!matches("customer.*", "customers.updated"));
        assert!(!matches("cust*", "customer.created"));
        assert!(matches("*", "form.submitted"));
        assert!(!matches("*", "webhook.test"));
        assert!(is_known_pattern("newsletter.*"));
        assert!(!is_known_pattern("nothing.*"));
    }

    #[test]
    fn signatures_follow_the_specification_example() {
        // The example of the Standard Webhooks specification and its reference libraries.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = r#"{"test": 2432232314}"#;
        let signature = signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[tokio::test]
    async fn names_resolving_inside_the_network_are_refused_when_connecting() {
        use reqwest::dns::Resolve;
        let strict = GuardedResolver(AddressPolicy { allow_loopback: false, allow_private: false });
        let refused = strict.resolve("localhost".parse().unwrap()).await.err().expect("refused").to_string();
        assert!(refused.contains("may not reach"), "{refused}");
        let loopback = GuardedResolver(AddressPolicy { allow_loopback: true, allow_private: false });
        let addresses: Vec<SocketAddr> = loopback.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addresses.is_empty() && addresses.iter().all(|a| a.ip().is_loopback()), "{addresses:?}");
    }

    #[test]
    fn the_guard_refuses_inside_addresses_unless_allowed() {
        let strict = AddressPolicy { allow_loopback: false, allow_private: false };
        for inside in [
            "127.0.0.1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
        ] {
            assert!(strict.check(inside.parse().unwrap()).is_err(), "{inside} must be refused");
        }
        for outside in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(strict.check(outside.parse().unwrap()).is_ok(), "{outside} must be allowed");
        }
        let loopback = AddressPolicy { allow_loopback: true, allow_private: false };
        assert!(loopback.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(loopback.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(check_url("http://localhost:9000/hook", strict).is_err());
        assert!(check_url("http://[::1]/hook", strict).is_err());
        assert!(check_url("https://user:pw@example.com/", strict).is_err());
        assert!(check_url("ftp://example.com/", strict).is_err());
        assert!(check_url("https://example.com/hooks", strict).is_ok());
        assert!(check_url("http://127.0.0.1:9000/", loopback).is_ok());
    }
}
