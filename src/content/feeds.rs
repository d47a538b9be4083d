//! The blog's feeds, RSS 2.0 (`/blog/rss.xml`) and Atom (`/blog/atom.xml`): the latest
//! posts visitors see, each with its excerpt and its whole body.

use std::fmt::Write as _;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;

use super::seo::escape;
use super::{ENTRY_COLUMNS, ENTRY_FROM, EntryRow, authors_of, shown_at, site};
use crate::app::AppState;
use crate::db_run;
use crate::platform::encoded::Encoded;
use crate::platform::error::AppResult;
use crate::platform::time::Timestamp;

/// How many posts a feed holds.
const FEED_POSTS: i64 = 20;

pub fn router() -> Router<AppState> {
    Router::new().route("/blog/rss.xml", get(rss)).route("/blog/atom.xml", get(atom))
}

/// A post as a feed shows it.
struct FeedPost {
    title: String,
    link: String,
    summary: String,
    body_html: String,
    published_at: Timestamp,
    updated_at: Timestamp,
    authors: Vec<String>,
    tags: Vec<String>,
}

/// What both feeds say: the site's name and description, its blog's address, the posts.
struct Feed {
    title: String,
    description: String,
    blog: String,
    posts: Vec<FeedPost>,
}

async fn feed(state: &AppState) -> AppResult<Feed> {
    let base = state.config.public_url();
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE c.kind = 'post' AND {} \
         ORDER BY c.published_at DESC, c.id DESC LIMIT {FEED_POSTS}",
        shown_at("$1")
    );
    let rows = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, EntryRow>(&sql).bind(Timestamp::now()).fetch_all(conn).await
    })?;
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let mut authors = authors_of(&state.db, &ids).await?;
    let posts = rows
        .into_iter()
        .map(|row| FeedPost {
            link: format!("{base}/blog/{}", row.slug),
            summary: row.summary(),
            tags: row.tags(),
            authors: authors.remove(&row.id).unwrap_or_default().into_iter().map(|author| author.name).collect(),
            published_at: row.published_at.unwrap_or(row.created_at),
            updated_at: row.updated_at,
            title: row.title,
            body_html: row.body_html,
        })
        .collect();
    let site = site::read(state).await?;
    Ok(Feed { title: site.name, description: site.description, blog: format!("{base}/blog"), posts })
}

/// A feed, compressed as the request allows, with its `ETag`.
fn xml(headers: &HeaderMap, content_type: &'static str, body: String) -> Response {
    Encoded::new(body.into_bytes(), 4).respond(headers, StatusCode::OK, content_type, "public, max-age=300")
}

fn rss_xml(feed: &Feed) -> String {
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<rss version=\"2.0\" \
         xmlns:atom=\"http://www.w3.org/2005/Atom\" xmlns:content=\"http://purl.org/rss/1.0/modules/content/\">\n<channel>\n",
    );
    let _ = write!(
        xml,
        "<title>{}</title>\n<link>{}</link>\n<description>{}</description>\n\
         <atom:link href=\"{}/rss.xml\" rel=\"self\" type=\"application/rss+xml\"/>\n",
        escape(&feed.title),
        escape(&feed.blog),
        escape(&feed.description),
        escape(&feed.blog)
    );
    if let Some(latest) = feed.posts.iter().map(|post| post.published_at).max() {
        let _ = writeln!(xml, "<lastBuildDate>{}</lastBuildDate>", latest.to_rfc2822());
    }
    for post in &feed.posts {
        let _ = write!(
            xml,
            "<item><title>{}</title><link>{}</link><guid isPermaLink=\"true\">{}</guid><pubDate>{}</pubDate>\
             <description>{}</description><content:encoded>{}</content:encoded>",
            escape(&post.title),
            escape(&post.link),
            escape(&post.link),
            post.published_at.to_rfc2822(),
            escape(&post.summary),
            escape(&post.body_html)
        );
        for tag in &post.tags {
            let _ = write!(xml, "<category>{}</category>", escape(tag));
        }
        xml.push_str("</item>\n");
    }
    xml.push_str("</channel>\n</rss>\n");
    xml
}

fn atom_xml(feed: &Feed) -> String {
    let updated = feed.posts.iter().map(|post| post.updated_at).max().unwrap_or(Timestamp(0));
    let mut xml =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let _ = write!(
        xml,
        "<title>{}</title>\n<subtitle>{}</subtitle>\n<id>{}</id>\n<link href=\"{}\"/>\n\
         <link href=\"{}/atom.xml\" rel=\"self\" type=\"application/atom+xml\"/>\n<updated>{}</updated>\n\
         <author><name>{}</name></author>\n",
        escape(&feed.title),
        escape(&feed.description),
        escape(&feed.blog),
        escape(&feed.blog),
        escape(&feed.blog),
        updated.to_rfc3339(),
        escape(&feed.title)
    );
    for post in &feed.posts {
        let _ = write!(
            xml,
            "<entry><title>{}</title><id>{}</id><link href=\"{}\"/><published>{}</published><updated>{}</updated>\
             <summary>{}</summary><content type=\"html\">{}</content>",
            escape(&post.title),
            escape(&post.link),
            escape(&post.link),
            post.published_at.to_rfc3339(),
            post.updated_at.to_rfc3339(),
            escape(&post.summary),
            escape(&post.body_html)
        );
        for author in &post.authors {
            let _ = write!(xml, "<author><name>{}</name></author>", escape(author));
        }
        for tag in &post.tags {
            let _ = write!(xml, "<category term=\"{}\"/>", escape(tag));
        }
        xml.push_str("</entry>\n");
    }
    xml.push_str("</feed>\n");
    xml
}

async fn rss(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    Ok(xml(&headers, "application/rss+xml; charset=utf-8", rss_xml(&feed(&state).await?)))
}

async fn atom(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    Ok(xml(&headers, "application/atom+xml; charset=utf-8", atom_xml(&feed(&state).await?)))
}
