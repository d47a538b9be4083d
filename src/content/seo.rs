//! What search engines read besides the pages: `robots.txt` and the sitemaps.
//!
//! `/sitemap.xml` is an index of sitemaps by kind (products, categories, collections, posts,
//! pages), each split into files of at most 50,000 addresses, with each address's last
//! change and its images. They are built once and kept until the catalog or the content
//! changes (or a minute has passed, should another node's change not be heard).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{shown_at, site};
use crate::app::AppState;
use crate::db_run;
use crate::platform::cache::Invalidation;
use crate::platform::encoded::Encoded;
use crate::platform::error::{AppError, AppResult};
use crate::platform::time::Timestamp;

/// The name the built sitemaps are cached and invalidated under.
pub const SITEMAPS: &str = "sitemaps";

/// The most addresses one sitemap file holds: the sitemaps protocol's limit.
const URLS_PER_FILE: usize = 50_000;

/// What search engines are asked not to crawl: pages for one shopper, and the APIs.
const DISALLOWED: [&str; 5] = ["/cart", "/checkout", "/account", "/search", "/api/"];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/robots.txt", get(robots))
        .route("/sitemap.xml", get(sitemap_index))
        .route("/sitemaps/{file}", get(sitemap_file))
}

/// What a write to pages or posts announces: the sitemaps are built again.
pub fn changed() -> Invalidation {
    Invalidation::all(SITEMAPS)
}

/// The sitemap index and its files by name (`products-1.xml`).
pub struct Sitemaps {
    index: Encoded,
    files: HashMap<String, Encoded>,
}

/// An address in a sitemap.
struct Entry {
    path: String,
    lastmod: Option<Timestamp>,
    images: Vec<String>,
}

/// `text` with XML's five special characters escaped.
pub(super) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `url` made absolute on the shop's address when it is a path.
fn absolute(base: &str, url: &str) -> String {
    if url.starts_with('/') { format!("{base}{url}") } else { url.to_owned() }
}

/// A sitemap file of `entries`.
fn urlset(base: &str, entries: &[Entry]) -> String {
    let mut xml = String::with_capacity(entries.len() * 160 + 200);
    xml.push_str(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" \
         xmlns:image=\"http://www.google.com/schemas/sitemap-image/1.1\">\n",
    );
    for entry in entries {
        let _ = write!(xml, "<url><loc>{}</loc>", escape(&absolute(base, &entry.path)));
        if let Some(at) = entry.lastmod {
            let _ = write!(xml, "<lastmod>{}</lastmod>", at.to_rfc3339());
        }
        for image in &entry.images {
            let _ = write!(xml, "<image:image><image:loc>{}</image:loc></image:image>", escape(&absolute(base, image)));
        }
        xml.push_str("</url>\n");
    }
    xml.push_str("</urlset>\n");
    xml
}

/// Splits each kind's entries into files of at most `per_file`, and indexes them.
fn build(base: &str, kinds: Vec<(&str, Vec<Entry>)>, per_file: usize) -> Sitemaps {
    let mut index = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sitemapindex xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
    );
    let mut files = HashMap::new();
    for (kind, entries) in kinds {
        for (number, chunk) in entries.chunks(per_file).enumerate() {
            let name = format!("{kind}-{}.xml", number + 1);
            let _ = write!(index, "<sitemap><loc>{}/sitemaps/{name}</loc>", escape(base));
            if let Some(at) = chunk.iter().filter_map(|entry| entry.lastmod).max() {
                let _ = write!(index, "<lastmod>{}</lastmod>", at.to_rfc3339());
            }
            index.push_str("</sitemap>\n");
            files.insert(name, Encoded::new(urlset(base, chunk).into_bytes(), 6));
        }
    }
    index.push_str("</sitemapindex>\n");
    Sitemaps { index: Encoded::new(index.into_bytes(), 6), files }
}

/// The address of each category: the path of handles from the top of the tree.
pub fn category_paths(rows: &[(String, String, Option<String>)]) -> HashMap<String, String> {
    let parents: HashMap<&str, (&str, Option<&str>)> =
        rows.iter().map(|(id, handle, parent)| (id.as_str(), (handle.as_str(), parent.as_deref()))).collect();
    let mut paths = HashMap::new();
    for (id, _, _) in rows {
        let mut handles = Vec::new();
        let mut next = Some(id.as_str());
        while let Some((handle, parent)) = next.and_then(|id| parents.get(id)) {
            handles.push(*handle);
            next = *parent;
            if handles.len() > 16 {
                break;
            }
        }
        handles.reverse();
        paths.insert(id.clone(), format!("/categories/{}", handles.join("/")));
    }
    paths
}

/// Reads everything the sitemaps list.
async fn gather(state: &AppState) -> AppResult<Vec<(&'static str, Vec<Entry>)>> {
    let largest = |variants: &str| state.media.sizes(variants).pop().map(|size| size.url);
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String, Timestamp, Option<String>)>(
            "SELECT p.id, p.handle, p.updated_at, m.variants FROM products p \
             LEFT JOIN product_images i ON i.product_id = p.id LEFT JOIN media m ON m.id = i.media_id \
             WHERE p.status = 'published' ORDER BY p.id, i.position",
        )
        .fetch_all(conn)
        .await
    })?;
    let mut products: Vec<Entry> = Vec::new();
    let mut last_id = String::new();
    for (id, handle, updated_at, variants) in rows {
        if id != last_id {
            products.push(Entry { path: format!("/products/{handle}"), lastmod: Some(updated_at), images: Vec::new() });
            last_id = id;
        }
        if let (Some(entry), Some(image)) = (products.last_mut(), variants.as_deref().and_then(largest)) {
            entry.images.push(image);
        }
    }
    let categories = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String, Option<String>, Timestamp)>(
            "SELECT id, handle, parent_id, updated_at FROM categories ORDER BY position, id",
        )
        .fetch_all(conn)
        .await
    })?;
    let tree: Vec<(String, String, Option<String>)> =
        categories.iter().map(|(id, handle, parent, _)| (id.clone(), handle.clone(), parent.clone())).collect();
    let paths = category_paths(&tree);
    let categories = categories
        .iter()
        .filter_map(|(id, _, _, updated_at)| {
            Some(Entry { path: paths.get(id)?.clone(), lastmod: Some(*updated_at), images: Vec::new() })
        })
        .collect();
    let collections = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, Timestamp)>(
            "SELECT handle, updated_at FROM collections WHERE published ORDER BY id",
        )
        .fetch_all(conn)
        .await
    })?;
    let collections = collections
        .into_iter()
        .map(|(handle, at)| Entry { path: format!("/collections/{handle}"), lastmod: Some(at), images: Vec::new() })
        .collect();
    let sql = format!(
        "SELECT c.kind, c.slug, c.updated_at, m.variants FROM content c LEFT JOIN media m ON m.id = c.cover_media_id \
         WHERE {} AND NOT c.noindex AND c.canonical_url = '' ORDER BY c.published_at DESC, c.id DESC",
        shown_at("$1")
    );
    let content = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String, Timestamp, Option<String>)>(&sql)
            .bind(Timestamp::now())
            .fetch_all(conn)
            .await
    })?;
    let mut posts = Vec::new();
    let mut pages = vec![
        Entry { path: "/".into(), lastmod: None, images: Vec::new() },
        Entry { path: "/blog".into(), lastmod: None, images: Vec::new() },
    ];
    for (kind, slug, updated_at, cover) in content {
        let images = cover.as_deref().and_then(largest).into_iter().collect();
        match kind.as_str() {
            "post" => posts.push(Entry { path: format!("/blog/{slug}"), lastmod: Some(updated_at), images }),
            _ => pages.push(Entry { path: format!("/pages/{slug}"), lastmod: Some(updated_at), images }),
        }
    }
    Ok(vec![
        ("products", products),
        ("categories", categories),
        ("collections", collections),
        ("posts", posts),
        ("pages", pages),
    ])
}

/// The sitemaps, from the cache or built afresh.
async fn sitemaps(state: &AppState) -> AppResult<Arc<Sitemaps>> {
    if let Some(built) = state.sitemaps.get(SITEMAPS) {
        return Ok(built);
    }
    let generation = state.sitemaps.generation();
    let built = Arc::new(build(&state.config.public_url(), gather(state).await?, URLS_PER_FILE));
    state.sitemaps.insert(SITEMAPS.to_owned(), built.clone(), generation);
    Ok(built)
}

/// A sitemap, compressed as the request allows (each encoding made once), with its `ETag`.
fn xml(headers: &HeaderMap, body: &Encoded) -> Response {
    body.respond(headers, StatusCode::OK, "application/xml; charset=utf-8", "public, max-age=300")
}

async fn sitemap_index(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    Ok(xml(&headers, &sitemaps(&state).await?.index))
}

async fn sitemap_file(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> AppResult<Response> {
    match sitemaps(&state).await?.files.get(&file) {
        Some(body) => Ok(xml(&headers, body)),
        None => Err(AppError::not_found("No sitemap has this name.")),
    }
}

/// The rules every `robots.txt` starts with, then the shop's own lines, then the sitemap.
fn robots_txt(base: &str, own: &str) -> String {
    let mut text = String::from("User-agent: *\n");
    for path in DISALLOWED {
        let _ = writeln!(text, "Disallow: {path}");
    }
    if !own.trim().is_empty() {
        let _ = writeln!(text, "\n{}", own.trim());
    }
    let _ = writeln!(text, "\nSitemap: {base}/sitemap.xml");
    text
}

async fn robots(State(state): State<AppState>) -> AppResult<Response> {
    let site = site::read(&state).await?;
    let text = robots_txt(&state.config.public_url(), &site.robots);
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=300")],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.into(),
            lastmod: Some(Timestamp(1_767_225_600_000)),
            images: vec!["/media/a/640.webp".into()],
        }
    }

    #[test]
    fn each_kind_is_split_into_files_of_at_most_so_many_addresses() {
        let products = (0..5).map(|n| entry(&format!("/products/p{n}"))).collect();
        let built = build("https://shop.example", vec![("products", products), ("posts", vec![entry("/blog/a&b")])], 2);
        let mut names: Vec<&String> = built.files.keys().collect();
        names.sort();
        assert_eq!(names, ["posts-1.xml", "products-1.xml", "products-2.xml", "products-3.xml"]);
        let text = |body: &Encoded| String::from_utf8(body.as_bytes().to_vec()).unwrap();
        let index = text(&built.index);
        assert_eq!(index.matches("<sitemap>").count(), 4);
        assert!(index.contains("<loc>https://shop.example/sitemaps/products-3.xml</loc><lastmod>2026-01-01T00:00:00"));
        assert_eq!(text(&built.files["products-3.xml"]).matches("<url>").count(), 1);
        let posts = &text(&built.files["posts-1.xml"]);
        assert!(posts.contains("<loc>https://shop.example/blog/a&amp;b</loc>"), "{posts}");
        assert!(posts.contains("<image:loc>https://shop.example/media/a/640.webp</image:loc>"), "{posts}");
    }

    #[test]
    fn robots_keep_crawlers_from_carts_and_name_the_sitemap() {
        let text = robots_txt("https://shop.example", "User-agent: GPTBot\nDisallow: /");
        assert!(text.starts_with("User-agent: *\nDisallow: /cart\n"), "{text}");
        assert!(text.contains("\nUser-agent: GPTBot\nDisallow: /\n"), "{text}");
        assert!(text.ends_with("Sitemap: https://shop.example/sitemap.xml\n"), "{text}");
    }
}
