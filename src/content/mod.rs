//! The shop's own words: pages ("About us", "Shipping and returns") and blog posts, written
//! in Markdown by staff and shown to visitors once published; navigation menus; and what the
//! site says of the shop (name, logo, social profiles, contact details).
//!
//! Both are one kind of entry. An entry is a draft, scheduled (shown from its publish time
//! on, with nothing to run at that time) or published; staff read every entry, visitors
//! only those whose publish time has come. A renamed slug keeps its old address, which then
//! leads to the new one.

mod admin;
pub mod demo;
mod feeds;
pub mod menus;
pub mod redirects;
pub mod seo;
pub mod site;
pub mod store;

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::catalog::products::ProductImage;
use crate::db_run;
use crate::platform::db::{Db, Tx};
use crate::platform::error::AppResult;
use crate::platform::time::Timestamp;

/// What search engines and feed readers fetch outside the API: `robots.txt`, the sitemaps,
/// the blog's feeds.
pub fn files_router() -> axum::Router<AppState> {
    seo::router().merge(feeds::router())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(admin::router())
        .merge(store::router())
        .merge(site::router())
        .merge(menus::router())
        .merge(redirects::router())
}

/// The name a change to the site's settings or its menus is announced under: what the pages
/// of the storefront show around their own content.
pub const SITE: &str = "site";

/// What a write to the site's settings or a menu announces.
pub fn site_changed() -> crate::platform::cache::Invalidation {
    crate::platform::cache::Invalidation::all(SITE)
}

/// A page or a blog post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Post,
    Page,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Post => "post",
            Self::Page => "page",
        }
    }

    /// The start of its ids.
    fn id_prefix(self) -> &'static str {
        match self {
            Self::Post => "pst",
            Self::Page => "pag",
        }
    }

    /// Where visitors read it through the store API, by slug.
    fn store_path(self, slug: &str) -> String {
        match self {
            Self::Post => format!("/api/v1/store/posts/{slug}"),
            Self::Page => format!("/api/v1/store/pages/{slug}"),
        }
    }
}

/// Whether `url` may be a link a shop sets (a canonical address, a menu item, a redirect's
/// target): a path on this site (not `//`, which leaves it) or an absolute `http(s)` address,
/// with nothing a browser would read differently (controls, spaces) or that an address must
/// not hold unescaped (quotes, angle brackets...).
pub(crate) fn site_link_ok(url: &str) -> bool {
    let unsafe_char = |c: char| c.is_control() || c.is_whitespace() || "\"<>`{}|\\^".contains(c);
    if url.is_empty() || url.len() > 2_000 || url.chars().any(unsafe_char) {
        return false;
    }
    if url.starts_with('/') {
        return !url.starts_with("//");
    }
    url::Url::parse(url).is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https") && parsed.host_str().is_some())
}

/// The ids among `ids` that name a row of `table`, read in `tx`.
async fn existing(tx: &mut Tx, table: &str, ids: &[&str]) -> AppResult<HashSet<String>> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT id FROM {table} WHERE id IN ({})", list.join(", "));
        let rows = db_run!(tx.conn(), |conn| {
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            query.fetch_all(conn).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}

/// Whom an entry is by.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Author {
    pub id: String,
    pub name: String,
}

/// An entry's row, with its cover image's facts.
#[derive(Debug, Clone, sqlx::FromRow)]
struct EntryRow {
    id: String,
    slug: String,
    title: String,
    body: String,
    body_html: String,
    excerpt: String,
    cover_media_id: Option<String>,
    cover_alt: String,
    cover_width: Option<i64>,
    cover_height: Option<i64>,
    cover_variants: Option<String>,
    tags: String,
    status: String,
    published_at: Option<Timestamp>,
    meta_title: String,
    meta_description: String,
    canonical_url: String,
    noindex: bool,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

/// The columns of [`EntryRow`], over `content c LEFT JOIN media m ON m.id = c.cover_media_id`.
const ENTRY_COLUMNS: &str = "c.id, c.slug, c.title, c.body, c.body_html, c.excerpt, c.cover_media_id, \
     c.cover_alt, m.width AS cover_width, m.height AS cover_height, m.variants AS cover_variants, c.tags, \
     c.status, c.published_at, c.meta_title, c.meta_description, c.canonical_url, c.noindex, c.created_at, \
     c.updated_at, c.version";

/// The tables [`ENTRY_COLUMNS`] read.
const ENTRY_FROM: &str = "content c LEFT JOIN media m ON m.id = c.cover_media_id";

/// Whether visitors see an entry at `$now`: `$now` is the parameter named in the condition.
fn shown_at(now: &str) -> String {
    format!("c.status <> 'draft' AND c.published_at <= {now}")
}

impl EntryRow {
    /// The status as it is now: a scheduled entry whose time has come is published.
    fn status_now(&self, now: Timestamp) -> &str {
        match (self.status.as_str(), self.published_at) {
            ("scheduled", Some(at)) if at <= now => "published",
            (status, _) => status,
        }
    }

    fn tags(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }

    fn cover(&self, state: &AppState) -> Option<ProductImage> {
        let media_id = self.cover_media_id.clone()?;
        Some(ProductImage {
            media_id,
            alt: self.cover_alt.clone(),
            width: self.cover_width.unwrap_or(0) as u32,
            height: self.cover_height.unwrap_or(0) as u32,
            sizes: state.media.sizes(self.cover_variants.as_deref().unwrap_or("[]")),
        })
    }

    /// The excerpt as written, or else the start of the body's text.
    fn summary(&self) -> String {
        if !self.excerpt.is_empty() {
            return self.excerpt.clone();
        }
        summarise(&self.body_html, SUMMARY_CHARS)
    }
}

/// How long an excerpt made from the body is at most, in characters.
const SUMMARY_CHARS: usize = 280;

/// The text of `html`, its tags left out (a block's end parts words) and its entities
/// decoded, cut at a word within `max` characters, with an ellipsis when cut.
pub(crate) fn summarise(html: &str, max: usize) -> String {
    const BLOCKS: [&str; 14] =
        ["p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "br", "blockquote", "pre", "td", "th", "hr"];
    let mut text = String::with_capacity(html.len().min(max * 4));
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('>') else {
            rest = "";
            break;
        };
        let name = rest[open + 1..open + close].trim_start_matches('/');
        let name = name.split(|c: char| c.is_whitespace() || c == '/').next().unwrap_or_default();
        if BLOCKS.contains(&name) {
            text.push(' ');
        }
        rest = &rest[open + close + 1..];
    }
    text.push_str(rest);
    let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'");
    let text = text.replace("&amp;", "&");
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut summary = String::with_capacity(max + 3);
    for word in words.iter() {
        let extra = if summary.is_empty() { 0 } else { 1 };
        if summary.chars().count() + extra + word.chars().count() > max {
            summary.push('…');
            return summary;
        }
        if extra == 1 {
            summary.push(' ');
        }
        summary.push_str(word);
    }
    summary
}

/// The authors of each entry in `ids`, in order.
async fn authors_of(db: &Db, ids: &[&str]) -> AppResult<HashMap<String, Vec<Author>>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT a.content_id, s.id, s.name FROM content_authors a JOIN staff_users s ON s.id = a.staff_id \
         WHERE a.content_id IN ({}) ORDER BY a.content_id, a.position",
        list.join(", ")
    );
    let rows = db_run!(db.read().await?, |conn| {
        let mut query = sqlx::query_as::<_, (String, String, String)>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.fetch_all(conn).await
    })?;
    let mut of: HashMap<String, Vec<Author>> = HashMap::new();
    for (content_id, id, name) in rows {
        of.entry(content_id).or_default().push(Author { id, name });
    }
    Ok(of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_is_the_bodys_text_cut_at_a_word() {
        let html = crate::catalog::markdown::render("# Hello\n\nSoft **cotton**, & wool, <b>made</b> well.");
        assert_eq!(summarise(&html, 100), "Hello Soft cotton, & wool, <b>made</b> well.");
        assert_eq!(summarise(&html, 18), "Hello Soft cotton,…");
        assert_eq!(summarise("<ul>\n<li>One</li>\n<li>Two</li>\n</ul>", 100), "One Two");
        assert_eq!(summarise("", 10), "");
    }
}
