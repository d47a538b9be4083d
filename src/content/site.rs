//! What the site says of the shop: its name, description, logo, social profiles, contact
//! details and language. Staff with `settings:manage` change it; everyone reads it.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::accounts::audit;
use crate::accounts::auth::CurrentStaff;
use crate::accounts::email_address::EmailAddress;
use crate::accounts::roles::Permission;
use crate::app::AppState;
use crate::catalog::products::{ImageRef, ProductImage, single_line};
use crate::platform::db::Db;
use crate::platform::error::{AppError, AppResult, Problem, Violations};
use crate::platform::http::{self, Json};
use crate::platform::ids::has_shape;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_site, update_site)).routes(routes!(store_site))
}

/// The social networks a profile may be given for.
pub const NETWORKS: [&str; 10] =
    ["x", "facebook", "instagram", "linkedin", "youtube", "tiktok", "pinterest", "mastodon", "bluesky", "threads"];

/// How to reach the shop.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub phone: String,
    /// Postal address, on several lines.
    #[serde(default)]
    pub address: String,
}

/// The site's settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Site {
    /// The shop's name: the configured one until staff set another.
    pub name: String,
    pub description: String,
    pub logo: Option<ProductImage>,
    /// Profile addresses by network (`instagram`, `x`...).
    pub social: BTreeMap<String, String>,
    pub contact: Contact,
    /// The language pages are written in, as a BCP 47 tag (`en`, `fr-CA`).
    pub language: String,
    /// Lines of its own for `robots.txt`, after the rules every shop has.
    pub robots: String,
    pub updated_at: Timestamp,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
struct SiteRow {
    name: String,
    description: String,
    logo_media_id: Option<String>,
    logo_alt: String,
    logo_width: Option<i64>,
    logo_height: Option<i64>,
    logo_variants: Option<String>,
    social: String,
    contact_email: String,
    contact_phone: String,
    contact_address: String,
    language: String,
    robots: String,
    updated_at: Timestamp,
    version: i64,
}

/// The site's settings as they are.
pub async fn read(state: &AppState) -> AppResult<Site> {
    let row = read_row(&state.db).await?;
    let logo = row.logo_media_id.map(|media_id| ProductImage {
        media_id,
        alt: row.logo_alt,
        width: row.logo_width.unwrap_or(0) as u32,
        height: row.logo_height.unwrap_or(0) as u32,
        sizes: state.media.sizes(row.logo_variants.as_deref().unwrap_or("[]")),
    });
    Ok(Site {
        name: if row.name.is_empty() { state.config.shop_name.clone() } else { row.name },
        description: row.description,
        logo,
        social: serde_json::from_str(&row.social).unwrap_or_default(),
        contact: Contact { email: row.contact_email, phone: row.contact_phone, address: row.contact_address },
        language: row.language,
        robots: row.robots,
        updated_at: row.updated_at,
        version: row.version,
    })
}

async fn read_row(db: &Db) -> AppResult<SiteRow> {
    let row = db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, SiteRow>(
            "SELECT s.name, s.description, s.logo_media_id, s.logo_alt, m.width AS logo_width, \
             m.height AS logo_height, m.variants AS logo_variants, s.social, s.contact_email, s.contact_phone, \
             s.contact_address, s.language, s.robots, s.updated_at, s.version \
             FROM site_settings s LEFT JOIN media m ON m.id = s.logo_media_id WHERE s.id = 1",
        )
        .fetch_optional(conn)
        .await
    })?;
    row.ok_or_else(|| AppError::internal(anyhow::anyhow!("the site's settings row is missing")))
}

/// A change: only the fields sent change; `logo` takes `null` to remove it, `social`
/// replaces every profile.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SitePatch {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "http::nullable")]
    #[schema(value_type = Option<ImageRef>)]
    pub logo: Option<Option<ImageRef>>,
    pub social: Option<BTreeMap<String, String>>,
    pub contact: Option<Contact>,
    pub language: Option<String>,
    /// Lines such as `User-agent: GPTBot` and `Disallow: /`, or comments (`#`).
    pub robots: Option<String>,
}

/// Whether `tag` looks like a BCP 47 language tag: a language, then subtags.
fn language_ok(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let language = parts.next().unwrap_or_default();
    tag.len() <= 35
        && (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|part| (2..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether `text` is lines `robots.txt` understands: `Field: value` with a known field,
/// comments and blank lines.
fn robots_ok(text: &str) -> bool {
    const FIELDS: [&str; 6] = ["user-agent", "allow", "disallow", "crawl-delay", "sitemap", "host"];
    text.len() <= 5_000
        && text.lines().all(|line| {
            let line = line.trim();
            line.is_empty()
                || line.starts_with('#')
                || line.split_once(':').is_some_and(|(field, value)| {
                    FIELDS.contains(&field.trim().to_ascii_lowercase().as_str())
                        && !value.chars().any(|c| c.is_control())
                })
        })
        && !text.chars().any(|c| c.is_control() && c != '\n' && c != '\r')
}

fn https_url(url: &str) -> bool {
    url.len() <= 2_000
        && url::Url::parse(url).is_ok_and(|parsed| parsed.scheme() == "https" && parsed.host_str().is_some())
}

fn check(patch: &SitePatch, violations: &mut Violations) {
    if patch.name.as_deref().is_some_and(|name| name.trim().is_empty() || !single_line(name, 120)) {
        violations.add("name", "invalid_format", "must be 1 to 120 characters on one line");
    }
    if patch.description.as_deref().is_some_and(|text| !single_line(text, 500)) {
        violations.add("description", "invalid_format", "must be at most 500 characters on one line");
    }
    if let Some(Some(logo)) = &patch.logo {
        if !has_shape(&logo.media_id, "med") {
            violations.add("logo.media_id", "unknown", "names no image");
        }
        if !single_line(&logo.alt, 500) {
            violations.add("logo.alt", "invalid_format", "must be at most 500 characters on one line");
        }
    }
    for (network, url) in patch.social.iter().flatten() {
        let field = format!("social.{network}");
        if !NETWORKS.contains(&network.as_str()) {
            violations.add(&field, "unknown", format!("must be one of {}", NETWORKS.join(", ")));
        } else if !https_url(url) {
            violations.add(&field, "invalid_format", "must be an https:// address");
        }
    }
    if let Some(contact) = &patch.contact {
        if !contact.email.is_empty() {
            violations.check("contact.email", EmailAddress::parse(&contact.email));
        }
        let phone_ok =
            contact.phone.len() <= 40 && contact.phone.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c));
        if !phone_ok {
            violations.add("contact.phone", "invalid_format", "must be at most 40 digits, spaces and + - ( ) .");
        }
        let address_ok =
            contact.address.chars().count() <= 500 && !contact.address.chars().any(|c| c.is_control() && c != '\n');
        if !address_ok {
            violations.add("contact.address", "invalid_format", "must be at most 500 characters");
        }
    }
    if patch.robots.as_deref().is_some_and(|text| !robots_ok(text)) {
        violations.add(
            "robots",
            "invalid_format",
            "must be at most 5000 characters of `Field: value` lines (User-agent, Allow, Disallow, Crawl-delay, Sitemap, Host) or comments",
        );
    }
    if patch.language.as_deref().is_some_and(|tag| !language_ok(tag)) {
        violations.add("language", "invalid_format", "must be a language tag such as en or fr-CA");
    }
}

/// Read the site's settings.
#[utoipa::path(get, path = "/api/v1/admin/site", tag = "admin: content",
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Site, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_site(State(state): State<AppState>, staff: CurrentStaff) -> AppResult<Response> {
    staff.require(Permission::ContentRead)?;
    let site = read(&state).await?;
    Ok(http::tagged(StatusCode::OK, site.version, site))
}

/// Change the site's settings. Send the `ETag` you read in `If-Match`.
#[utoipa::path(patch, path = "/api/v1/admin/site", tag = "admin: content", request_body = SitePatch,
    params(("If-Match" = Option<String>, Header, description = "The ETag as read")),
    security(("staff_session" = []), ("staff_cookie" = []), ("api_key" = [])),
    responses(
        (status = 200, body = Site, headers(("ETag" = String))),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn update_site(
    State(state): State<AppState>,
    staff: CurrentStaff,
    headers: HeaderMap,
    Json(patch): Json<SitePatch>,
) -> AppResult<Response> {
    staff.require(Permission::SettingsManage)?;
    let mut violations = Violations::default();
    check(&patch, &mut violations);
    violations.finish()?;
    let current = read_row(&state.db).await?;
    http::require_version(&headers, current.version)?;
    let mut tx = state.db.begin().await?;
    let (logo_media_id, logo_alt) = match patch.logo {
        Some(Some(logo)) => {
            let found = db_run!(tx.conn(), |conn| {
                sqlx::query_scalar::<_, String>("SELECT id FROM media WHERE id = $1")
                    .bind(&logo.media_id)
                    .fetch_optional(conn)
                    .await
            })?;
            if found.is_none() {
                return Err(AppError::invalid_field("logo.media_id", "unknown", "names no image"));
            }
            (Some(logo.media_id), logo.alt.trim().to_owned())
        }
        Some(None) => (None, String::new()),
        None => (current.logo_media_id, current.logo_alt),
    };
    let social = match &patch.social {
        Some(social) => serde_json::to_string(social).map_err(AppError::internal)?,
        None => current.social,
    };
    let contact = patch.contact.unwrap_or(Contact {
        email: current.contact_email,
        phone: current.contact_phone,
        address: current.contact_address,
    });
    let updated = db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE site_settings SET name = $1, description = $2, logo_media_id = $3, logo_alt = $4, social = $5, \
             contact_email = $6, contact_phone = $7, contact_address = $8, language = $9, robots = $10, \
             updated_at = $11, version = version + 1 WHERE id = 1 AND version = $12",
        )
        .bind(patch.name.map_or(current.name, |name| name.trim().to_owned()))
        .bind(patch.description.map_or(current.description, |text| text.trim().to_owned()))
        .bind(logo_media_id)
        .bind(logo_alt)
        .bind(social)
        .bind(contact.email.trim())
        .bind(contact.phone.trim())
        .bind(contact.address.trim())
        .bind(patch.language.unwrap_or(current.language))
        .bind(patch.robots.map_or(current.robots, |text| text.trim().replace("\r\n", "\n")))
        .bind(Timestamp::now())
        .bind(current.version)
        .execute(conn)
        .await
    })?;
    if updated == 0 {
        return Err(http::stale_version());
    }
    let (actor_kind, actor_id) = staff.actor();
    audit::record(&mut tx, actor_kind, actor_id, "site.updated", None, "").await?;
    tx.invalidate(super::site_changed());
    tx.commit().await?;
    let site = read(&state).await?;
    Ok(http::tagged(StatusCode::OK, site.version, site))
}

/// What the site says of the shop, for a storefront's header, footer and search engines.
#[utoipa::path(get, path = "/api/v1/store/site", tag = "store: content",
    responses(
        (status = 200, body = Site, headers(("ETag" = String))),
        (status = 304, description = "Unchanged since the `ETag` sent in `If-None-Match`"),
    ))]
async fn store_site(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    Ok(http::Rendered::new(&read(&state).await?)?.respond(&headers))
}
