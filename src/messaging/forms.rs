//! Contact-style forms: staff define the fields; visitors post them as JSON or as a classic
//! HTML form. A submission passes a per-address rate limit and a honeypot, is checked field
//! by field, stored, emailed to the shop and announced as `form.submitted`, all in one
//! transaction.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use minijinja::context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::webhooks;
use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::customers::phone_rule;
use crate::accounts::email_address::EmailAddress;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::platform::db::dialect;
use crate::platform::error::{AppError, AppResult, FieldRule, Problem, Violations};
use crate::platform::http::{self, ClientIp, FormOrJson, Json, Query};
use crate::platform::ids::{has_shape, new_id};
use crate::platform::pagination::{self, Page, PageParams};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_forms, create_form))
        .routes(routes!(get_form, update_form, delete_form))
        .routes(routes!(list_submissions))
        .routes(routes!(public_form))
        .routes(routes!(submit))
}

/// What a field holds, which decides how it is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// One line of text.
    Text,
    /// Several lines of text.
    Textarea,
    Email,
    Tel,
    Url,
    Number,
    /// Ticked or not; `required` means it must be ticked.
    Checkbox,
    /// One of `options`.
    Select,
}

impl FieldKind {
    fn default_max_length(self) -> u32 {
        match self {
            Self::Textarea => 5000,
            Self::Url => 2000,
            _ => 200,
        }
    }
}

/// One field of a form.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormField {
    /// The name it is posted under: lowercase letters, digits and `_`.
    pub name: String,
    /// What visitors read beside it, and what the shop's email calls it.
    pub label: String,
    #[serde(rename = "type")]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    /// The most characters it takes (default 200; 5000 for `textarea`; at most 20000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// The choices of a `select`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl FormField {
    fn max_length(&self) -> u32 {
        self.max_length.unwrap_or_else(|| self.kind.default_max_length())
    }
}

/// A form's fields as stored: JSON text.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(transparent)]
pub struct Fields(pub Vec<FormField>);

impl TryFrom<String> for Fields {
    type Error = serde_json::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(Fields)
    }
}

/// A submission's values as stored: a JSON object.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Data(pub serde_json::Map<String, Value>);

impl TryFrom<String> for Data {
    type Error = serde_json::Error;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&text).map(Data)
    }
}

/// A form as stored and shown to staff.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Form {
    pub id: String,
    /// Its address: `POST /api/v1/store/forms/{handle}/submissions`.
    pub handle: String,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub fields: Fields,
    /// Where submissions are emailed; without it, `forms.notify_email` or the shop's `mail.from`.
    pub notify_email: Option<String>,
    /// Where a browser posting the form is sent afterwards (303 See Other).
    pub redirect_url: Option<String>,
    /// A field hidden from people; a submission that fills it is dropped as spam.
    pub honeypot_field: String,
    /// `open` takes submissions; `closed` refuses them.
    pub status: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

const FORM_COLUMNS: &str =
    "id, handle, name, fields, notify_email, redirect_url, honeypot_field, status, created_at, updated_at, version";

const MAX_FIELDS: usize = 30;

fn check_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && name.as_bytes()[0].is_ascii_lowercase()
}

fn check_handle(handle: &str) -> bool {
    (1..=60).contains(&handle.len())
        && handle.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !handle.starts_with('-')
        && !handle.ends_with('-')
}

fn single_line(text: &str, max: usize) -> bool {
    !text.trim().is_empty() && text.chars().count() <= max && !text.chars().any(char::is_control)
}

/// The definition staff send, checked as a whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FormDefinition {
    /// Lowercase letters, digits and `-`; unique.
    pub handle: String,
    pub name: String,
    pub fields: Vec<FormField>,
    pub notify_email: Option<String>,
    /// A path on the shop (`/thanks`) or an `https://` address.
    pub redirect_url: Option<String>,
    /// Default `_gotcha`.
    pub honeypot_field: Option<String>,
    /// `open` (default) or `closed`.
    pub status: Option<String>,
}

struct Checked {
    handle: String,
    name: String,
    fields: String,
    notify_email: Option<String>,
    redirect_url: Option<String>,
    honeypot_field: String,
    status: String,
}

fn check_definition(definition: &FormDefinition) -> AppResult<Checked> {
    let mut violations = Violations::default();
    if !check_handle(&definition.handle) {
        violations.add("handle", "invalid_format", "must be 1 to 60 lowercase letters, digits and inner dashes");
    }
    if !single_line(&definition.name, 100) {
        violations.add("name", "invalid_format", "must be 1 to 100 characters on one line");
    }
    if definition.fields.is_empty() || definition.fields.len() > MAX_FIELDS {
        violations.add("fields", "out_of_range", format!("must list between 1 and {MAX_FIELDS} fields"));
    }
    let honeypot = definition.honeypot_field.clone().unwrap_or_else(|| "_gotcha".into());
    if !(honeypot.len() <= 40
        && honeypot.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !honeypot.is_empty())
    {
        violations.add("honeypot_field", "invalid_format", "must be 1 to 40 letters, digits and `_`");
    }
    let mut seen = std::collections::HashSet::new();
    for (index, field) in definition.fields.iter().enumerate() {
        let at = |name: &str| format!("fields[{index}].{name}");
        if !check_name(&field.name) {
            violations.add(
                &at("name"),
                "invalid_format",
                "must start with a letter: lowercase letters, digits and `_`, at most 40",
            );
        } else if !seen.insert(field.name.as_str()) || field.name == honeypot {
            violations.add(&at("name"), "duplicate", "is used by another field or the honeypot");
        }
        if !single_line(&field.label, 100) {
            violations.add(&at("label"), "invalid_format", "must be 1 to 100 characters on one line");
        }
        if field.max_length.is_some_and(|max| !(1..=20_000).contains(&max)) {
            violations.add(&at("max_length"), "out_of_range", "must be between 1 and 20000");
        }
        match (field.kind, field.options.len()) {
            (FieldKind::Select, 1..=100) => {
                if field.options.iter().any(|option| !single_line(option, 200)) {
                    violations.add(&at("options"), "invalid_format", "each must be 1 to 200 characters on one line");
                }
            }
            (FieldKind::Select, _) => violations.add(&at("options"), "required", "a select needs 1 to 100 options"),
            (_, 0) => {}
            (_, _) => violations.add(&at("options"), "not_allowed", "only a select has options"),
        }
    }
    let notify_email = definition.notify_email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let notify_email = notify_email.and_then(|email| violations.check("notify_email", EmailAddress::parse(email)));
    let redirect_url = definition.redirect_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    if let Some(url) = redirect_url
        && (url.len() > 2000
            || url.chars().any(|c| c.is_control() || c.is_whitespace())
            || !((url.starts_with('/') && !url.starts_with("//")) || url.starts_with("https://")))
    {
        violations.add("redirect_url", "invalid_format", "must be a path such as /thanks or an https:// address");
    }
    let status = definition.status.clone().unwrap_or_else(|| "open".into());
    if !matches!(status.as_str(), "open" | "closed") {
        violations.add("status", "invalid", "must be `open` or `closed`");
    }
    violations.finish()?;
    Ok(Checked {
        handle: definition.handle.clone(),
        name: definition.name.trim().to_owned(),
        fields: serde_json::to_string(&definition.fields).map_err(AppError::internal)?,
        notify_email: notify_email.map(|email| email.as_str().to_owned()),
        redirect_url: redirect_url.map(str::to_owned),
        honeypot_field: honeypot,
        status,
    })
}

fn form_not_found() -> AppError {
    AppError::not_found("No form has this id.")
}

fn duplicate_handle() -> AppError {
    AppError::conflict("handle", "Another form has this handle.")
}

/// Define a form.
#[utoipa::path(post, path = "/api/v1/admin/forms", tag = "admin: forms", request_body = FormDefinition,
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 201, body = Form, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_form(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Json(definition): Json<FormDefinition>,
) -> AppResult<Response> {
    staff.require(Permission::FormsManage)?;
    let checked = check_definition(&definition)?;
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let sql = format!(
        "INSERT INTO forms (id, handle, name, fields, notify_email, redirect_url, honeypot_field, status, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {FORM_COLUMNS}"
    );
    let created = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Form>(&sql)
            .bind(new_id("frm"))
            .bind(&checked.handle)
            .bind(&checked.name)
            .bind(&checked.fields)
            .bind(&checked.notify_email)
            .bind(&checked.redirect_url)
            .bind(&checked.honeypot_field)
            .bind(&checked.status)
            .bind(now)
            .fetch_one(conn)
            .await
    });
    let form = match created {
        Err(err) if dialect::is_unique_violation(&err, "forms", "handle") => return Err(duplicate_handle()),
        other => other?,
    };
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "form.created", Some(&form.id), &form.handle).await?;
    tx.commit().await?;
    let location = format!("/api/v1/admin/forms/{}", form.id);
    let etag = http::etag(form.version);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location), (header::ETAG, etag.to_str().unwrap_or("").to_owned())],
        Json(form),
    )
        .into_response())
}

/// List forms, oldest first.
#[utoipa::path(get, path = "/api/v1/admin/forms", tag = "admin: forms", params(PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Form>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_forms(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Form>>> {
    staff.require(Permission::FormsRead)?;
    let page = pagination::oldest_first(&state.db, "forms", FORM_COLUMNS, &page, |row: &Form| &row.id).await?;
    Ok(Json(page))
}

async fn find_form(state: &AppState, id: &str) -> AppResult<Form> {
    if !has_shape(id, "frm") {
        return Err(form_not_found());
    }
    let sql = format!("SELECT {FORM_COLUMNS} FROM forms WHERE id = $1");
    db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, Form>(&sql).bind(id).fetch_optional(conn).await)?
        .ok_or_else(form_not_found)
}

/// Read a form.
#[utoipa::path(get, path = "/api/v1/admin/forms/{id}", tag = "admin: forms", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Form, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_form(State(state): State<AppState>, staff: CurrentStaff, Path(id): Path<String>) -> AppResult<Response> {
    staff.require(Permission::FormsRead)?;
    let form = find_form(&state, &id).await?;
    Ok(http::tagged(StatusCode::OK, form.version, form))
}

/// Replace a form's definition. Submissions already stored keep the fields they were sent with.
#[utoipa::path(put, path = "/api/v1/admin/forms/{id}", tag = "admin: forms", request_body = FormDefinition,
    params(("id" = String, Path), ("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Form, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The handle is taken", body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_form(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(definition): Json<FormDefinition>,
) -> AppResult<Response> {
    staff.require(Permission::FormsManage)?;
    let checked = check_definition(&definition)?;
    let expected = http::if_match_version(&headers)?;
    let current = find_form(&state, &id).await?;
    if expected.is_some_and(|version| version != current.version) {
        return Err(http::stale_version());
    }
    let mut tx = state.db.begin().await?;
    let sql = format!(
        "UPDATE forms SET handle = $1, name = $2, fields = $3, notify_email = $4, redirect_url = $5, \
         honeypot_field = $6, status = $7, updated_at = $8, version = version + 1 WHERE id = $9 AND version = $10 \
         RETURNING {FORM_COLUMNS}"
    );
    let updated = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, Form>(&sql)
            .bind(&checked.handle)
            .bind(&checked.name)
            .bind(&checked.fields)
            .bind(&checked.notify_email)
            .bind(&checked.redirect_url)
            .bind(&checked.honeypot_field)
            .bind(&checked.status)
            .bind(Timestamp::now())
            .bind(&id)
            .bind(current.version)
            .fetch_optional(conn)
            .await
    });
    let form = match updated {
        Err(err) if dialect::is_unique_violation(&err, "forms", "handle") => return Err(duplicate_handle()),
        other => other?.ok_or_else(http::stale_version)?,
    };
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "form.updated", Some(&id), &form.handle).await?;
    tx.commit().await?;
    Ok(http::tagged(StatusCode::OK, form.version, form))
}

/// Delete a form and its submissions.
#[utoipa::path(delete, path = "/api/v1/admin/forms/{id}", tag = "admin: forms", params(("id" = String, Path)),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 204),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_form(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    staff.require(Permission::FormsManage)?;
    if !has_shape(&id, "frm") {
        return Err(form_not_found());
    }
    let mut tx = state.db.begin().await?;
    let deleted =
        db_execute!(tx.conn(), |conn| sqlx::query("DELETE FROM forms WHERE id = $1").bind(&id).execute(conn).await)?;
    if deleted == 0 {
        return Err(form_not_found());
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "form.deleted", Some(&id), "").await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A stored submission.
#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct Submission {
    pub id: String,
    pub form_id: String,
    /// The checked values, by field name.
    #[sqlx(try_from = "String")]
    #[schema(value_type = Object)]
    pub data: Data,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
}

/// List a form's submissions, newest first.
#[utoipa::path(get, path = "/api/v1/admin/forms/{id}/submissions", tag = "admin: forms",
    params(("id" = String, Path), PageParams),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Page<Submission>),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_submissions(
    State(state): State<AppState>,
    staff: CurrentStaff,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
) -> AppResult<Json<Page<Submission>>> {
    staff.require(Permission::FormsRead)?;
    let limit = page.limit()?;
    find_form(&state, &id).await?;
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, Submission>(
            "SELECT id, form_id, data, ip, user_agent, created_at FROM form_submissions \
             WHERE form_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3",
        )
        .bind(&id)
        .bind(page.after.as_deref().unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(conn)
        .await
    })?;
    Ok(Json(Page::from_rows(rows, limit, |row| row.id.clone())))
}

/// A form as a storefront renders it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublicForm {
    pub handle: String,
    pub name: String,
    pub fields: Vec<FormField>,
    /// Render this field hidden from people (and from screen readers), and leave it empty.
    pub honeypot_field: String,
}

async fn open_form(state: &AppState, handle: &str) -> AppResult<Form> {
    let not_found = || AppError::not_found("No open form has this handle.");
    if !check_handle(handle) {
        return Err(not_found());
    }
    let sql = format!("SELECT {FORM_COLUMNS} FROM forms WHERE handle = $1 AND status = 'open'");
    db_run!(state.db.read().await?, |conn| sqlx::query_as::<_, Form>(&sql).bind(handle).fetch_optional(conn).await)?
        .ok_or_else(not_found)
}

/// Read an open form's fields, to render it.
#[utoipa::path(get, path = "/api/v1/store/forms/{handle}", tag = "store: forms", params(("handle" = String, Path)),
    responses((status = 200, body = PublicForm), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn public_form(State(state): State<AppState>, Path(handle): Path<String>) -> AppResult<Json<PublicForm>> {
    let form = open_form(&state, &handle).await?;
    Ok(Json(PublicForm {
        handle: form.handle,
        name: form.name,
        fields: form.fields.0,
        honeypot_field: form.honeypot_field,
    }))
}

/// Checks one posted value against its field: the value to store, `None` when left empty.
fn check_value(field: &FormField, value: Option<&Value>) -> Result<Option<Value>, FieldRule> {
    let text = match value {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Bool(b)) if field.kind == FieldKind::Checkbox => Some(b.to_string()),
        Some(Value::Number(n)) if field.kind == FieldKind::Number => Some(n.to_string()),
        Some(_) => return Err(FieldRule::new("invalid_type", "must be a string")),
    };
    if field.kind == FieldKind::Checkbox {
        let ticked = match text.as_deref().map(str::trim) {
            None | Some("" | "false" | "0" | "off" | "no") => false,
            Some("true" | "1" | "on" | "yes") => true,
            Some(_) => return Err(FieldRule::new("invalid", "must be true or false")),
        };
        if field.required && !ticked {
            return Err(FieldRule::new("required", "must be ticked"));
        }
        return Ok(Some(Value::Bool(ticked)));
    }
    let text = text.map(|t| if field.kind == FieldKind::Textarea { t } else { t.trim().to_owned() });
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return if field.required { Err(FieldRule::new("required", "must not be empty")) } else { Ok(None) };
    };
    let max = field.max_length() as usize;
    if text.chars().count() > max {
        return Err(FieldRule::new("too_long", format!("must be at most {max} characters")));
    }
    let allowed_control = |c: char| field.kind == FieldKind::Textarea && matches!(c, '\n' | '\r' | '\t');
    if text.chars().any(|c| c.is_control() && !allowed_control(c)) {
        return Err(FieldRule::new("invalid_format", "must not contain control characters"));
    }
    let value = match field.kind {
        FieldKind::Email => Value::String(EmailAddress::parse(&text)?.as_str().to_owned()),
        FieldKind::Tel => Value::String(phone_rule(&text)?.unwrap_or_default()),
        FieldKind::Url => {
            let ok = url::Url::parse(&text).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(FieldRule::new("invalid_format", "must be an http:// or https:// address"));
            }
            Value::String(text)
        }
        FieldKind::Number => {
            let number = text.parse::<f64>().ok().filter(|n| n.is_finite()).and_then(serde_json::Number::from_f64);
            Value::Number(number.ok_or_else(|| FieldRule::new("invalid_format", "must be a number"))?)
        }
        FieldKind::Select if !field.options.contains(&text) => {
            return Err(FieldRule::new("invalid", "must be one of the form's options"));
        }
        _ => Value::String(text),
    };
    Ok(Some(value))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Received {
    pub id: String,
    /// `received`.
    pub status: &'static str,
}

/// The shape a submission takes: the form's field names with their values.
#[derive(ToSchema)]
#[schema(value_type = Object)]
#[expect(dead_code, reason = "documents the body in the OpenAPI document only")]
pub struct SubmissionBody(serde_json::Map<String, Value>);

/// Send a form, as JSON or as a classic form post.
///
/// Names starting with `_` are ignored, and so is the honeypot when empty; any other name the
/// form does not have is an error. A browser's form post is sent on to the form's `redirect_url` when it
/// has one. At most `forms.max_per_ip` submissions per address per `forms.window_secs`.
#[utoipa::path(post, path = "/api/v1/store/forms/{handle}/submissions", tag = "store: forms",
    params(("handle" = String, Path)),
    request_body(content(
        (SubmissionBody = "application/json"),
        (SubmissionBody = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 201, body = Received),
        (status = 303, description = "A form post, sent on to the form's `redirect_url`"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    ))]
async fn submit(
    State(state): State<AppState>,
    Path(handle): Path<String>,
    client_ip: ClientIp,
    headers: HeaderMap,
    body: FormOrJson,
) -> AppResult<Response> {
    let form = open_form(&state, &handle).await?;
    state
        .form_submissions
        .take(&format!("form:{}", client_ip.0), state.config.forms.max_per_ip)
        .map_err(AppError::too_many_requests)?;
    let id = new_id("fsb");
    let answer = |id: String| -> Response {
        match (&form.redirect_url, body.form_encoded) {
            (Some(to), true) => (StatusCode::SEE_OTHER, [(header::LOCATION, to.clone())]).into_response(),
            _ => (StatusCode::CREATED, Json(Received { id, status: "received" })).into_response(),
        }
    };
    // A filled honeypot is a bot: it gets the answer a person would, and nothing is kept.
    if body.fields.get(&form.honeypot_field).is_some_and(|v| !matches!(v, Value::Null) && v.as_str() != Some("")) {
        metrics::counter!("form_spam_total", "reason" => "honeypot").increment(1);
        tracing::info!(form = %form.handle, "honeypot filled: submission dropped");
        return Ok(answer(id));
    }

    let mut violations = Violations::default();
    for name in body.fields.keys() {
        let known = name.starts_with('_') || *name == form.honeypot_field;
        if !known && !form.fields.0.iter().any(|field| &field.name == name) {
            violations.add(name, "unknown", "is not a field of this form");
        }
    }
    let mut data = serde_json::Map::new();
    for field in &form.fields.0 {
        if let Some(Some(value)) = violations.check(&field.name, check_value(field, body.fields.get(&field.name))) {
            data.insert(field.name.clone(), value);
        }
    }
    violations.finish()?;

    let now = Timestamp::now();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(300).collect::<String>());
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO form_submissions (id, form_id, data, ip, user_agent, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&form.id)
        .bind(Value::Object(data.clone()).to_string())
        .bind(client_ip.0.to_string())
        .bind(&user_agent)
        .bind(now)
        .execute(conn)
        .await
    })?;
    let email = notification(&state, &form, &data, now).map_err(AppError::internal)?;
    super::send_email(&mut tx, &email).await?;
    let event = serde_json::json!({
        "form": { "id": form.id, "handle": form.handle, "name": form.name },
        "submission": { "id": id, "data": data, "created_at": now },
    });
    webhooks::emit(&state, &mut tx, "form.submitted", &event).await?;
    tx.commit().await?;
    Ok(answer(id))
}

/// The shop's email about a submission; replies go to the sender's address when the form
/// asked for one.
fn notification(
    state: &AppState,
    form: &Form,
    data: &serde_json::Map<String, Value>,
    at: Timestamp,
) -> anyhow::Result<crate::platform::mail::Email> {
    let to = form
        .notify_email
        .clone()
        .or_else(|| state.config.forms.notify_email.clone())
        .unwrap_or_else(|| state.config.mail.from.clone());
    let sender = form
        .fields
        .0
        .iter()
        .find(|f| f.kind == FieldKind::Email)
        .and_then(|f| data.get(&f.name))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let fields: Vec<Value> = form
        .fields
        .0
        .iter()
        .filter_map(|field| {
            let value = match data.get(&field.name)? {
                Value::String(s) => s.clone(),
                Value::Bool(true) => "yes".into(),
                Value::Bool(false) => "no".into(),
                other => other.to_string(),
            };
            Some(serde_json::json!({ "label": field.label, "value": value }))
        })
        .collect();
    let values = context! {
        form_name => &form.name,
        sender => &sender,
        submitted_at => at.to_rfc3339(),
        fields => fields,
    };
    let mut email = state.templates.render("form_submission", &to, values)?;
    email.reply_to = sender;
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: FieldKind, required: bool) -> FormField {
        FormField { name: "f".into(), label: "F".into(), kind, required, max_length: None, options: vec!["a".into()] }
    }

    #[test]
    fn values_are_checked_by_kind() {
        let text = field(FieldKind::Text, true);
        assert_eq!(check_value(&text, Some(&Value::from("  hi "))).unwrap(), Some(Value::from("hi")));
        assert_eq!(check_value(&text, None).unwrap_err().code, "required");
        assert_eq!(check_value(&text, Some(&Value::from("a\u{0}b"))).unwrap_err().code, "invalid_format");
        assert_eq!(check_value(&text, Some(&Value::from("x".repeat(201)))).unwrap_err().code, "too_long");
        let area = field(FieldKind::Textarea, false);
        assert_eq!(check_value(&area, Some(&Value::from("a\nb"))).unwrap(), Some(Value::from("a\nb")));
        assert_eq!(check_value(&area, Some(&Value::from(""))).unwrap(), None);
        let email = field(FieldKind::Email, true);
        assert!(check_value(&email, Some(&Value::from("not an email"))).is_err());
        let number = field(FieldKind::Number, false);
        assert_eq!(check_value(&number, Some(&Value::from("2.5"))).unwrap(), Some(Value::from(2.5)));
        assert!(check_value(&number, Some(&Value::from("NaN"))).is_err());
        let tick = field(FieldKind::Checkbox, true);
        assert_eq!(check_value(&tick, Some(&Value::from("on"))).unwrap(), Some(Value::Bool(true)));
        assert_eq!(check_value(&tick, None).unwrap_err().code, "required");
        let select = field(FieldKind::Select, true);
        assert!(check_value(&select, Some(&Value::from("b"))).is_err());
        let url = field(FieldKind::Url, true);
        assert!(check_value(&url, Some(&Value::from("javascript:alert(1)"))).is_err());
    }
}
