//! The storefront: the shop and its blog as HTML pages, served by the binary at `/`.
//!
//! Pages are rendered from the shelf and the content with the theme's templates, compressed
//! once, and kept until the catalog, the content, the site's settings or the checkout
//! settings change (on every node). They work without JavaScript; the theme's script only
//! adds to them. Every page has one canonical address, its title and description, social
//! cards and JSON-LD.

mod account;
mod catalog_pages;
mod content_pages;
mod links;
pub mod page;
mod shopping;
mod structured;
pub mod theme;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use minijinja::{Value, context};
use serde::Serialize;

use self::page::{Freshness, Page};
use self::theme::Theme;
use crate::app::AppState;
use crate::catalog::media::ImageSize;
use crate::content::menus::ShownItem;
use crate::platform::cache::{Caches, Evict, TtlCache};
use crate::platform::error::AppError;

/// The name rendered pages are cached under.
pub const PAGES: &str = "storefront_pages";

/// How long a rendered page is kept without a change being heard.
const PAGE_TTL: Duration = Duration::from_secs(60);

/// How many bytes of pages the cache takes in before it starts over: a crawler walking every
/// filter of every list must not grow memory without bound.
const MAX_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// The theme and what is kept of its pages.
pub struct Storefront {
    pub theme: Theme,
    /// Rendered pages by path and query.
    pages: Arc<TtlCache<Page>>,
    /// The bytes of pages put in the cache since it last started over.
    page_bytes: AtomicUsize,
    /// The cache's generation when `page_bytes` started counting.
    counted_from: AtomicU64,
    /// What every page shows around its own content.
    chrome: Arc<TtlCache<Chrome>>,
}

impl Storefront {
    /// Keeps a page rendered from what was current at `generation`; the cache starts over once
    /// the pages put in it since it last did pass [`MAX_PAGE_BYTES`].
    fn keep(&self, key: String, page: Arc<Page>, generation: u64) {
        // An invalidation empties the cache: counting starts again from there.
        if self.counted_from.swap(generation, Ordering::Relaxed) != generation {
            self.page_bytes.store(0, Ordering::Relaxed);
        }
        if self.page_bytes.fetch_add(page.kept_size(), Ordering::Relaxed) > MAX_PAGE_BYTES {
            self.page_bytes.store(0, Ordering::Relaxed);
            self.pages.clear();
            return;
        }
        self.pages.insert(key, page, generation);
    }

    /// Loads the theme and registers its caches, emptied by any change to what pages show.
    pub fn new(config: &crate::platform::config::Config, caches: &Caches) -> anyhow::Result<Self> {
        let pages = caches.register::<Page>(PAGES, PAGE_TTL);
        let chrome = caches.register::<Chrome>(crate::content::SITE, PAGE_TTL);
        caches.clear_on(crate::content::SITE, pages.clone());
        for name in [crate::catalog::CATALOG, crate::content::seo::SITEMAPS, crate::checkout::SETTINGS] {
            caches.clear_on(name, pages.clone());
            caches.clear_on(name, chrome.clone());
        }
        Ok(Self {
            theme: Theme::load(config)?,
            pages,
            page_bytes: AtomicUsize::new(0),
            counted_from: AtomicU64::new(0),
            chrome,
        })
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(catalog_pages::home))
        .route("/products/{handle}", get(catalog_pages::product))
        .route("/categories/{*path}", get(catalog_pages::category))
        .route("/collections/{handle}", get(catalog_pages::collection))
        .route("/search", get(catalog_pages::search))
        .route("/blog", get(content_pages::blog))
        .route("/blog/tag/{slug}", get(content_pages::tag))
        .route("/blog/{slug}", get(content_pages::post))
        .route("/pages/{slug}", get(content_pages::page))
        .route("/cart", get(shopping::show_cart))
        .route("/cart/lines", post(shopping::add_to_cart))
        .route("/cart/lines/{line}", post(shopping::change_line))
        .route("/cart/codes", post(shopping::apply_code))
        .route("/checkout", get(shopping::show_checkout).post(shopping::submit_checkout))
        .route("/checkout/complete", get(shopping::confirmation))
        .route("/account", get(account::account))
        .route("/account/signin", get(account::show_signin).post(account::submit_signin))
        .route("/account/register", get(account::show_register).post(account::submit_register))
        .route("/account/signout", post(account::sign_out))
        .route("/account/addresses", post(account::add_address))
        .route("/account/addresses/{id}/delete", post(account::remove_address))
        .route("/account/verify-email", get(links::show_verify_email).post(links::verify_email))
        .route("/account/reset-password", get(links::show_reset_password).post(links::reset_password))
        .route("/newsletter/confirm", get(links::show_newsletter_confirm).post(links::newsletter_confirm))
        .route("/newsletter/unsubscribe", get(links::show_unsubscribe).post(links::unsubscribe))
        .route("/assets/{file}", get(asset))
}

/// Why a page is not shown.
pub enum Refusal {
    NotFound,
    /// It lives at this address now (a path).
    Moved(String),
    /// The query asks for something that cannot be: the reason, for people.
    Invalid(String),
    Failed(AppError),
}

impl From<AppError> for Refusal {
    fn from(err: AppError) -> Self {
        match err.status() {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => Self::Invalid(err.explained()),
            // Any other (busy, too many requests, failed) is answered with its own status.
            _ => Self::Failed(err),
        }
    }
}

impl From<minijinja::Error> for Refusal {
    fn from(err: minijinja::Error) -> Self {
        Self::Failed(AppError::internal(anyhow::anyhow!("rendering a page: {err:#}")))
    }
}

pub type Shown = Result<Page, Refusal>;

/// The site as templates see it.
#[derive(Debug, Clone, Serialize)]
struct SiteView {
    name: String,
    description: String,
    language: String,
    logo: Option<Picture>,
    social: std::collections::BTreeMap<String, String>,
    contact: crate::content::site::Contact,
    /// The shop's handle on X, for its cards (`@shop`).
    twitter: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Menus {
    main: Vec<ShownItem>,
    footer: Vec<ShownItem>,
}

/// What every page shows around its own content, and what its structured data says of the
/// shop.
pub struct Chrome {
    site: SiteView,
    menus: Menus,
    /// The currency prices are shown in: the default region's.
    currency: Option<String>,
    /// The shop's address, without a trailing slash.
    base: String,
    /// The shop's logo, full size, for structured data; the theme's when the shop has none.
    logo_url: String,
    /// The image of pages without one of their own: the theme's `share.png`.
    share_image: SocialImage,
}

async fn chrome(state: &AppState) -> Result<Arc<Chrome>, AppError> {
    let cache = &state.storefront.chrome;
    if let Some(chrome) = cache.get("") {
        return Ok(chrome);
    }
    let generation = cache.generation();
    let site = crate::content::site::read(state).await?;
    let menu = |handle: &'static str| async move {
        Ok::<_, AppError>(
            crate::content::menus::shown_menu(state, handle).await?.map(|menu| menu.items).unwrap_or_default(),
        )
    };
    let menus = Menus { main: menu("main").await?, footer: menu("footer").await? };
    let settings = crate::checkout::settings(state).await?;
    let base = state.config.public_url();
    let theme = &state.storefront.theme;
    let twitter = site
        .social
        .get("x")
        .and_then(|url| url.trim_end_matches('/').rsplit('/').next())
        .filter(|handle| !handle.is_empty() && !handle.contains(['.', ':']))
        .map(|handle| format!("@{}", handle.trim_start_matches('@')));
    let chrome = Arc::new(Chrome {
        logo_url: site
            .logo
            .as_ref()
            .and_then(|logo| Picture::of(&logo.sizes, &logo.alt))
            .map(|p| p.full)
            .or_else(|| theme.asset_path("logo.png").map(str::to_owned))
            .map(|path| absolute(&base, &path))
            .unwrap_or_default(),
        share_image: SocialImage {
            url: absolute(&base, theme.asset_path("share.png").unwrap_or("/")),
            width: 1200,
            height: 630,
            alt: site.name.clone(),
        },
        site: SiteView {
            logo: site.logo.as_ref().and_then(|logo| Picture::of(&logo.sizes, &logo.alt)),
            name: site.name,
            description: site.description,
            language: site.language,
            social: site.social,
            contact: site.contact,
            twitter,
        },
        menus,
        currency: settings.regions.first().map(|region| region.currency.clone()),
        base,
    });
    cache.insert(String::new(), chrome.clone(), generation);
    Ok(chrome)
}

/// An image as templates show it: a size fit for the page, the others as `srcset`.
#[derive(Debug, Clone, Serialize)]
pub struct Picture {
    src: String,
    srcset: String,
    width: u32,
    height: u32,
    alt: String,
    /// The largest size.
    #[serde(skip)]
    full: String,
}

impl Picture {
    /// The image's sizes, with `src` the smallest at least 600 pixels wide (or the largest).
    fn of(sizes: &[ImageSize], alt: &str) -> Option<Self> {
        let mut sizes = sizes.to_vec();
        sizes.sort_by_key(|size| size.width);
        let largest = sizes.last()?;
        let shown = sizes.iter().find(|size| size.width >= 600).unwrap_or(largest);
        Some(Self {
            src: shown.url.clone(),
            srcset: if sizes.len() > 1 {
                sizes.iter().map(|size| format!("{} {}w", size.url, size.width)).collect::<Vec<_>>().join(", ")
            } else {
                String::new()
            },
            width: shown.width,
            height: shown.height,
            alt: alt.to_owned(),
            full: largest.url.clone(),
        })
    }
}

/// What the head of a page says of it.
#[derive(Debug, Default, Serialize)]
pub struct Meta {
    /// The whole `<title>`.
    title: String,
    /// The title on social cards: without the shop's name.
    social_title: String,
    description: String,
    canonical: Option<String>,
    robots: &'static str,
    og_type: &'static str,
    image: Option<SocialImage>,
    prev: Option<String>,
    next: Option<String>,
    /// JSON-LD blocks, safe inside a `<script>` element.
    json_ld: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct SocialImage {
    url: String,
    width: u32,
    height: u32,
    alt: String,
}

impl Meta {
    /// A page titled `title` (followed by the shop's name), indexed, at `canonical` (a path).
    fn new(chrome: &Chrome, title: &str, description: &str, canonical: Option<&str>) -> Self {
        let full = if title.is_empty() || title == chrome.site.name {
            chrome.site.name.clone()
        } else {
            format!("{title} · {}", chrome.site.name)
        };
        Self {
            title: full,
            social_title: if title.is_empty() { chrome.site.name.clone() } else { title.to_owned() },
            description: one_line(description, 300),
            canonical: canonical.map(|path| absolute(&chrome.base, path)),
            robots: "index, follow",
            og_type: "website",
            image: Some(chrome.share_image.clone()),
            ..Self::default()
        }
    }

    /// Shown with `picture` on social cards, when there is one.
    fn image(mut self, chrome: &Chrome, picture: Option<&Picture>) -> Self {
        if let Some(p) = picture {
            self.image = Some(SocialImage {
                url: absolute(&chrome.base, &p.src),
                width: p.width,
                height: p.height,
                alt: if p.alt.is_empty() { self.social_title.clone() } else { p.alt.clone() },
            });
        }
        self
    }

    /// Kept out of search engines' indexes, its links still followed.
    fn noindex(mut self) -> Self {
        self.robots = "noindex, follow";
        self
    }
}

/// `text` on one line, cut at a word within `max` characters.
fn one_line(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let cut: String = text.chars().take(max).collect();
    match cut.rfind(' ') {
        Some(at) => format!("{}…", &cut[..at]),
        None => format!("{cut}…"),
    }
}

/// `path` on the shop's address, unless already absolute.
fn absolute(base: &str, path: &str) -> String {
    if path.starts_with('/') { format!("{base}{path}") } else { path.to_owned() }
}

/// Renders `template` with what every page has and `values`.
fn render(
    state: &AppState,
    chrome: &Chrome,
    template: &str,
    meta: &Meta,
    current_path: &str,
    values: Value,
    freshness: Freshness,
) -> Shown {
    let context = context! {
        site => Value::from_serialize(&chrome.site),
        menus => Value::from_serialize(&chrome.menus),
        page => Value::from_serialize(meta),
        current_path => current_path,
        ..values
    };
    let html = state.storefront.theme.render(template, context)?;
    Ok(Page::new(StatusCode::OK, html, freshness))
}

/// The page at `key` (its path and the query that matters), from the cache or built by
/// `build` and kept when it is a 200.
async fn cached<F, Fut>(state: &AppState, headers: &HeaderMap, uri: &Uri, key: String, build: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Shown>,
{
    let cache = &state.storefront.pages;
    if let Some(page) = cache.get(&key) {
        return page.respond(headers);
    }
    let generation = cache.generation();
    match build().await {
        Ok(page) => {
            let page = Arc::new(page);
            let response = page.respond(headers);
            if page.status == StatusCode::OK && page.size() < 1024 * 1024 {
                state.storefront.keep(key, page, generation);
            }
            response
        }
        // A redirect rule may take a path that a page no longer answers (a product gone).
        Err(Refusal::NotFound) => match crate::content::redirects::answer(state, uri).await {
            Ok(Some(response)) => response,
            Ok(None) => refused(state, headers, Refusal::NotFound).await,
            Err(err) => refused(state, headers, Refusal::Failed(err)).await,
        },
        Err(refusal) => refused(state, headers, refusal).await,
    }
}

/// The answer to a refusal: a redirect, or the theme's error page with its status.
async fn refused(state: &AppState, headers: &HeaderMap, refusal: Refusal) -> Response {
    let (status, heading, message) = match refusal {
        Refusal::Moved(to) => {
            let location = HeaderValue::from_str(&to).unwrap_or(HeaderValue::from_static("/"));
            return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response();
        }
        Refusal::NotFound => {
            (StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address. It may have moved.".to_owned())
        }
        Refusal::Invalid(reason) => (StatusCode::BAD_REQUEST, "This page cannot be shown", reason),
        Refusal::Failed(err) if err.status().is_server_error() => {
            err.log();
            let reference = crate::platform::http::current_request_id().unwrap_or_default();
            (
                err.status(),
                "Something went wrong",
                format!("This page could not be shown. Please try again in a moment (reference {reference})."),
            )
        }
        Refusal::Failed(err) => (err.status(), "This page cannot be shown", err.explained()),
    };
    error_page(state, headers, status, heading, &message).await
}

/// The theme's error page; a plain one when even that cannot be rendered.
async fn error_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    heading: &str,
    message: &str,
) -> Response {
    let rendered = match chrome(state).await {
        Ok(chrome) => {
            let meta = Meta::new(&chrome, heading, "", None).noindex();
            let values = context! { heading => heading, message => message };
            render(state, &chrome, "error.html", &meta, "", values, Freshness::NoStore).ok()
        }
        Err(err) => {
            err.log();
            None
        }
    };
    let mut page = rendered.unwrap_or_else(|| {
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{heading}</title></head>\
             <body><main><h1>{heading}</h1><p><a href=\"/\">Back to the shop</a></p></main></body></html>"
        );
        Page::new(status, html, Freshness::NoStore)
    });
    page.status = status;
    page.respond(headers)
}

/// A theme asset by its hashed name: kept for ever by browsers and CDNs.
async fn asset(State(state): State<AppState>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    match state.storefront.theme.asset(&file) {
        Some(asset) => {
            asset.body.respond(&headers, StatusCode::OK, asset.content_type, "public, max-age=31536000, immutable")
        }
        None => AppError::not_found("The theme has no such file.").into_response(),
    }
}

/// Answers what no route took: a redirect rule's answer; a path with a trailing slash sent
/// to the one without; else 404, as the theme's page for browsers outside `/api/`, or a
/// problem.
pub async fn fallback(State(state): State<AppState>, method: Method, headers: HeaderMap, uri: Uri) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return crate::platform::http::not_found().await.into_response();
    }
    match crate::content::redirects::answer(&state, &uri).await {
        Ok(Some(response)) => return response,
        Ok(None) => {}
        Err(err) => return err.into_response(),
    }
    let path = uri.path();
    let api = path.starts_with("/api/") || path == "/api";
    if !api && path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        // `//host` and `/\host` would lead browsers to another site.
        if !trimmed.starts_with("//") && !trimmed.starts_with("/\\") {
            let location = match uri.query() {
                Some(query) => format!("{trimmed}?{query}"),
                None => trimmed.to_owned(),
            };
            if let Ok(location) = HeaderValue::from_str(&location) {
                return (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response();
            }
        }
    }
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if api || !wants_html {
        return crate::platform::http::not_found().await.into_response();
    }
    refused(&state, &headers, Refusal::NotFound).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_one_line_cut_at_a_word() {
        assert_eq!(one_line("  A  mug\nfor tea ", 300), "A mug for tea");
        assert_eq!(one_line("A mug for tea", 8), "A mug…");
    }
}
