//! Newsletter sign-up with double opt-in: an address is pending until its owner follows the
//! emailed link. Every email to a subscriber carries a one-click unsubscribe link and the
//! `List-Unsubscribe` headers (RFC 8058). Staff list subscribers and export them as CSV.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::jobs::{self, JobError, NewJob};
use super::webhooks;
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::email_address::EmailAddress;
use crate::accounts::roles::Permission;
use crate::accounts::tokens::{self, TokenKind};
use crate::app::AppState;
use crate::platform::db::Tx;
use crate::platform::error::{AppError, AppResult, ErrorCode, Problem, Violations};
use crate::platform::http::{ClientIp, FormOrJson, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{Page, check_page};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The job that mails a confirmation link, made when it runs.
pub const CONFIRM_EMAIL: &str = "newsletter.confirm";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(subscribe))
        .routes(routes!(confirm))
        .routes(routes!(unsubscribe))
        .routes(routes!(list_subscribers))
        .routes(routes!(export_subscribers))
        .routes(routes!(delete_subscriber))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// `accepted`.
    pub status: &'static str,
    pub message: &'static str,
}

/// The fields of a sign-up.
#[derive(ToSchema)]
#[expect(dead_code, reason = "documents the body in the OpenAPI document only")]
pub struct SubscribeBody {
    email: String,
    /// Where the sign-up came from, such as `footer` (at most 50 characters).
    source: Option<String>,
}

/// Sign up for the newsletter. A confirmation email goes to the address; the subscription
/// starts when its link is followed.
///
/// The answer is the same whether or not the address is already subscribed. A filled
/// `_gotcha` field marks a bot: it gets the same answer and nothing happens.
#[utoipa::path(post, path = "/api/v1/store/newsletter/subscriptions", tag = "store: newsletter",
    request_body(content((SubscribeBody = "application/json"), (SubscribeBody = "application/x-www-form-urlencoded"))),
    responses(
        (status = 202, body = Accepted),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn subscribe(State(state): State<AppState>, client_ip: ClientIp, body: FormOrJson) -> AppResult<Response> {
    let text = |name: &str| match body.fields.get(name) {
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        None | Some(Value::Null) => Ok(None),
        Some(_) => Err(()),
    };
    let mut violations = Violations::default();
    let email = match text("email") {
        Ok(Some(raw)) => violations.check("email", EmailAddress::parse(raw)),
        Ok(None) => {
            violations.add("email", "required", "must not be empty");
            None
        }
        Err(()) => {
            violations.add("email", "invalid_type", "must be a string");
            None
        }
    };
    let source = match text("source") {
        Ok(source) => source.map(str::trim).unwrap_or(""),
        Err(()) => {
            violations.add("source", "invalid_type", "must be a string");
            ""
        }
    };
    if source.chars().count() > 50 || source.chars().any(char::is_control) {
        violations.add("source", "invalid_format", "must be at most 50 characters on one line");
    }
    violations.finish()?;
    let Some(email) = email else { return Err(AppError::internal(anyhow::anyhow!("validated email missing"))) };
    state
        .form_submissions
        .take(&format!("newsletter:{}", client_ip.0), state.config.forms.max_per_ip)
        .map_err(AppError::too_many_requests)?;
    let accepted = Accepted { status: "accepted", message: "Check your inbox to confirm your subscription." };
    let answer = (StatusCode::ACCEPTED, Json(accepted)).into_response();
    if body.fields.get("_gotcha").and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
        metrics::counter!("form_spam_total", "reason" => "honeypot").increment(1);
        return Ok(answer);
    }

    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let inserted = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>(
            "INSERT INTO newsletter_subscribers (id, email, status, unsubscribe_key, source, created_at, updated_at) \
             VALUES ($1, $2, 'pending', $3, $4, $5, $5) ON CONFLICT (email) DO UPDATE \
             SET status = 'pending', updated_at = $5 WHERE newsletter_subscribers.status = 'unsubscribed' \
             RETURNING id",
        )
        .bind(new_id("sub"))
        .bind(email.as_str())
        .bind(tokens::generate(TokenKind::Csrf))
        .bind(source)
        .bind(now)
        .fetch_optional(conn)
        .await
    })?;
    let pending = match inserted {
        Some(id) => Some(id),
        // Already there: mail again only while it is still pending.
        None => db_run!(tx.conn(), |conn| {
            sqlx::query_scalar::<_, String>(
                "SELECT id FROM newsletter_subscribers WHERE email = $1 AND status = 'pending'",
            )
            .bind(email.as_str())
            .fetch_optional(conn)
            .await
        })?,
    };
    if let Some(id) = pending {
        let job = NewJob::new(CONFIRM_EMAIL, &ConfirmJob { subscriber_id: id.clone() })?
            .dedupe_key(format!("newsletter-confirm:{id}"))
            .max_attempts(12);
        jobs::enqueue(&mut tx, job).await?;
    }
    tx.commit().await?;
    Ok(answer)
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ConfirmJob {
    pub subscriber_id: String,
}

fn links(state: &AppState, unsubscribe_key: &str) -> (String, String) {
    let base = state.config.public_url();
    (
        format!("{base}/newsletter/unsubscribe?key={unsubscribe_key}"),
        format!("{base}/api/v1/store/newsletter/unsubscribe?key={unsubscribe_key}"),
    )
}

/// Runs a confirmation job: makes the link's token (ending any earlier one) and sends it.
pub(crate) async fn confirmation_email(state: &AppState, job_id: &str, payload: &str) -> Result<(), JobError> {
    let job: ConfirmJob = serde_json::from_str(payload).map_err(|err| JobError::Permanent(err.to_string()))?;
    let token = tokens::generate(TokenKind::Mailed);
    let hours = state.config.forms.confirm_token_hours;
    let expires_at = Timestamp::now().plus_secs(hours * 3600);
    let found = db_run!(state.db.write().await.map_err(JobError::retry)?, |conn| {
        sqlx::query_as::<_, (String, String)>(
            "UPDATE newsletter_subscribers SET confirm_token_hash = $1, confirm_expires_at = $2 \
             WHERE id = $3 AND status = 'pending' RETURNING email, unsubscribe_key",
        )
        .bind(tokens::hash(&token))
        .bind(expires_at)
        .bind(&job.subscriber_id)
        .fetch_optional(conn)
        .await
    })
    .map_err(JobError::retry)?;
    // Confirmed, unsubscribed or deleted since: nothing to send.
    let Some((email, key)) = found else { return Ok(()) };
    let (unsubscribe_link, one_click) = links(state, &key);
    let link = format!("{}/newsletter/confirm?token={token}", state.config.public_url());
    let values = context! { link, unsubscribe_link, hours };
    let mut message = state
        .templates
        .render("newsletter_confirm", &email, values)
        .map_err(|err| JobError::Permanent(format!("{err:#}")))?;
    message.unsubscribe_url = Some(one_click);
    super::deliver(state, job_id, message).await
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// The token from the emailed link.
    pub token: String,
}

/// Confirm a subscription with the token from the emailed link.
#[utoipa::path(post, path = "/api/v1/store/newsletter/confirm", tag = "store: newsletter", request_body = ConfirmRequest,
    responses((status = 204), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn confirm(
    State(state): State<AppState>,
    Json(request): Json<ConfirmRequest>,
) -> AppResult<StatusCode> {
    let invalid = || {
        AppError::new(ErrorCode::InvalidToken, "This link is invalid or has expired; sign up again for a new one.")
            .with_field("token", "invalid", "is invalid or expired")
    };
    if !request.token.starts_with(TokenKind::Mailed.prefix()) || request.token.len() > 100 {
        return Err(invalid());
    }
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let confirmed = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String, String)>(
            "UPDATE newsletter_subscribers SET status = 'subscribed', confirmed_at = $1, updated_at = $1, \
             confirm_token_hash = NULL, confirm_expires_at = NULL \
             WHERE confirm_token_hash = $2 AND confirm_expires_at > $1 AND status = 'pending' \
             RETURNING id, email, unsubscribe_key",
        )
        .bind(now)
        .bind(tokens::hash(&request.token))
        .fetch_optional(conn)
        .await
    })?;
    let Some((id, email, key)) = confirmed else { return Err(invalid()) };
    let (unsubscribe_link, one_click) = links(&state, &key);
    let mut welcome = state
        .templates
        .render("newsletter_welcome", &email, context! { unsubscribe_link })
        .map_err(AppError::internal)?;
    welcome.unsubscribe_url = Some(one_click);
    super::send_email(&mut tx, &welcome).await?;
    let event = serde_json::json!({ "id": id, "email": email, "subscribed_at": now });
    webhooks::emit(&state, &mut tx, "newsletter.subscribed", &event).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnsubscribeParams {
    /// The key from the unsubscribe link.
    pub key: Option<String>,
}

/// The fields of an unsubscribe request; the key may come in the query instead.
#[derive(ToSchema)]
#[expect(dead_code, reason = "documents the body in the OpenAPI document only")]
pub struct UnsubscribeBody {
    key: Option<String>,
    /// `One-Click`, as mail clients send it.
    #[schema(rename = "List-Unsubscribe")]
    list_unsubscribe: Option<String>,
}

/// Leave the newsletter with the key from any newsletter email. This is also the one-click
/// address of the `List-Unsubscribe` header: mail clients POST `List-Unsubscribe=One-Click`
/// to it, as a form or multipart; the key in the address is all that counts. Leaving twice is
/// not an error.
#[utoipa::path(post, path = "/api/v1/store/newsletter/unsubscribe", tag = "store: newsletter", params(UnsubscribeParams),
    request_body(content(
        (UnsubscribeBody = "application/x-www-form-urlencoded"),
        (UnsubscribeBody = "multipart/form-data"),
        (UnsubscribeBody = "application/json"),
    )),
    responses((status = 204), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn unsubscribe(
    State(state): State<AppState>,
    Query(params): Query<UnsubscribeParams>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<StatusCode> {
    // Mail clients post in more than one way (RFC 8058 prefers multipart); the key in the
    // address is enough, and only without it is the body read.
    let key = params.key.or_else(|| key_from_body(&headers, &body));
    let invalid = || AppError::invalid_field("key", "invalid", "is not the key of an unsubscribe link");
    let Some(key) = key.filter(|k| (20..=100).contains(&k.len())) else { return Err(invalid()) };
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    // One conditional update each, so that two clicks at once announce one departure.
    let left = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String)>(
            "UPDATE newsletter_subscribers SET status = 'unsubscribed', unsubscribed_at = $1, updated_at = $1 \
             WHERE unsubscribe_key = $2 AND status = 'subscribed' RETURNING id, email",
        )
        .bind(now)
        .bind(&key)
        .fetch_optional(conn)
        .await
    })?;
    if let Some((id, email)) = left {
        let event = serde_json::json!({ "id": id, "email": email, "unsubscribed_at": now });
        webhooks::emit(&state, &mut tx, "newsletter.unsubscribed", &event).await?;
        tx.commit().await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let known = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE newsletter_subscribers SET status = 'unsubscribed', unsubscribed_at = COALESCE(unsubscribed_at, $1), \
             updated_at = $1, confirm_token_hash = NULL, confirm_expires_at = NULL WHERE unsubscribe_key = $2",
        )
        .bind(now)
        .bind(&key)
        .execute(conn)
        .await
    })?;
    if known == 0 {
        return Err(invalid());
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The `key` of a form post or JSON body, when the address has none.
fn key_from_body(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        form_urlencoded::parse(body).find(|(name, _)| name == "key").map(|(_, value)| value.into_owned())
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice::<Value>(body).ok()?.get("key")?.as_str().map(str::to_owned)
    } else {
        None
    }
}

/// A subscriber as staff see them.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Subscriber {
    pub id: String,
    pub email: String,
    /// `pending` (not confirmed yet), `subscribed` or `unsubscribed`.
    pub status: String,
    pub source: String,
    pub created_at: Timestamp,
    pub confirmed_at: Option<Timestamp>,
    pub unsubscribed_at: Option<Timestamp>,
}

const SUBSCRIBER_COLUMNS: &str = "id, email, status, source, created_at, confirmed_at, unsubscribed_at";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriberFilter {
    /// Only subscribers in this state.
    pub status: Option<String>,
    pub limit: Option<u32>,
    pub after: Option<String>,
}

fn check_status(status: Option<&str>, violations: &mut Violations) {
    if status.is_some_and(|s| !matches!(s, "pending" | "subscribed" | "unsubscribed")) {
        violations.add("status", "invalid", "must be `pending`, `subscribed` or `unsubscribed`");
    }
}

async fn subscriber_page(state: &AppState, status: &str, after: &str, limit: u32) -> AppResult<Vec<Subscriber>> {
    let sql = format!(
        "SELECT {SUBSCRIBER_COLUMNS} FROM newsletter_subscribers WHERE id > $1 AND ($2 = '' OR status = $2) \
         ORDER BY id LIMIT $3"
    );
    Ok(db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Subscriber>(&sql).bind(after).bind(status).bind(i64::from(limit)).fetch_all(conn).await
    })?)
}

/// List subscribers, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/newsletter/subscribers", tag = "admin: newsletter", params(SubscriberFilter),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Subscriber>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_subscribers(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(filter): Query<SubscriberFilter>,
) -> AppResult<Json<Page<Subscriber>>> {
    staff.require(Permission::NewsletterRead)?;
    let mut violations = Violations::default();
    let limit = check_page(filter.limit, filter.after.as_deref(), &mut violations);
    check_status(filter.status.as_deref(), &mut violations);
    violations.finish()?;
    let status = filter.status.as_deref().unwrap_or("");
    let rows = subscriber_page(&state, status, filter.after.as_deref().unwrap_or(""), limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportFilter {
    /// Only subscribers in this state; without it, everyone.
    pub status: Option<String>,
}

/// One CSV field: quoted when it must be, and defused when a spreadsheet would read it as a
/// formula.
fn csv_field(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

fn csv_row(subscriber: &Subscriber) -> String {
    let time = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339).unwrap_or_default();
    [
        csv_field(&subscriber.email),
        csv_field(&subscriber.status),
        csv_field(&subscriber.source),
        time(Some(subscriber.created_at)),
        time(subscriber.confirmed_at),
        time(subscriber.unsubscribed_at),
    ]
    .join(",")
        + "\r\n"
}

/// How many subscribers each read of an export fetches.
const EXPORT_BATCH: u32 = 500;

/// Export subscribers as CSV (RFC 4180), streamed: `email,status,source,created_at,confirmed_at,unsubscribed_at`.
#[utoipa::path(get, path = "/api/v1/admin/newsletter/subscribers/export", tag = "admin: newsletter", params(ExportFilter),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The subscribers, one per line", content_type = "text/csv", body = String),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn export_subscribers(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(filter): Query<ExportFilter>,
) -> AppResult<Response> {
    staff.require(Permission::NewsletterRead)?;
    let mut violations = Violations::default();
    check_status(filter.status.as_deref(), &mut violations);
    violations.finish()?;
    let status = filter.status.unwrap_or_default();
    // The first batch is read before answering, so that a database error is a clean 500.
    let first = subscriber_page(&state, &status, "", EXPORT_BATCH).await?;
    let header_line = "email,status,source,created_at,confirmed_at,unsubscribed_at\r\n".to_owned();
    let batches = futures_util::stream::unfold(Some((first, header_line)), move |step| {
        let state = state.clone();
        let status = status.clone();
        async move {
            let (rows, mut chunk) = step?;
            for row in &rows {
                chunk.push_str(&csv_row(row));
            }
            let next = match rows.last() {
                Some(last) if rows.len() == EXPORT_BATCH as usize => {
                    match subscriber_page(&state, &status, &last.id, EXPORT_BATCH).await {
                        Ok(rows) => Some((rows, String::new())),
                        Err(err) => return Some((Err(std::io::Error::other(err.to_string())), None)),
                    }
                }
                _ => None,
            };
            Some((Ok::<_, std::io::Error>(chunk), next))
        }
    });
    let filename = format!("subscribers-{}.csv", &Timestamp::now().to_rfc3339()[..10]);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        Body::from_stream(batches),
    )
        .into_response())
}

/// Delete a subscriber from the list. (Emails already sent stay in the delivery log, and
/// events already sent in the webhook log, until those are purged.)
#[utoipa::path(delete, path = "/api/v1/admin/newsletter/subscribers/{id}", tag = "admin: newsletter",
    params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_subscriber(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::NewsletterManage)?;
    let not_found = || AppError::not_found("No subscriber has this id.");
    if !has_shape(&id, "sub") {
        return Err(not_found());
    }
    let mut tx: Tx = state.db.begin().await?;
    let deleted = db_execute!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM newsletter_subscribers WHERE id = $1").bind(&id).execute(conn).await
    })?;
    if deleted == 0 {
        return Err(not_found());
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "newsletter.subscriber_deleted", Some(&id), "").await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sign-ups never confirmed are forgotten after this long.
const KEEP_UNCONFIRMED_MS: i64 = 30 * 24 * 3600 * 1000;

/// Deletes sign-ups whose owner never confirmed them.
pub async fn purge_unconfirmed(state: &AppState) -> AppResult<u64> {
    let before = Timestamp(Timestamp::now().0 - KEEP_UNCONFIRMED_MS);
    Ok(db_execute!(state.db.write().await?, |conn| {
        sqlx::query("DELETE FROM newsletter_subscribers WHERE status = 'pending' AND updated_at < $1")
            .bind(before)
            .execute(conn)
            .await
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("ana@example.com"), "ana@example.com");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("-1"), "'-1");
    }
}
