//! The shop's own words: the blog, its tags, its posts, and the pages ("About us").

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use minijinja::{Value, context};
use serde::Serialize;

use super::page::Freshness;
use super::structured;
use super::{Meta, Picture, Refusal, Shown, cached, chrome, render};
use crate::app::AppState;
use crate::content::Kind;
use crate::content::store::{Found, PublishedEntry, published_entry, published_posts};

/// Posts on a page of the blog.
const PER_PAGE: u32 = 10;
/// The last page number the blog answers.
const MAX_PAGE: u32 = 1_000;

/// A post in a list.
#[derive(Serialize)]
pub struct PostCard {
    url: String,
    title: String,
    excerpt: String,
    published_iso: String,
    published_on: String,
    authors: Vec<String>,
}

pub fn post_cards(posts: Vec<PublishedEntry>) -> Vec<PostCard> {
    posts
        .into_iter()
        .map(|post| PostCard {
            url: format!("/blog/{}", post.slug),
            published_iso: post.published_at.to_rfc3339(),
            published_on: post.published_at.to_date_text(),
            authors: post.authors.into_iter().map(|a| a.name).collect(),
            title: post.title,
            excerpt: post.excerpt,
        })
        .collect()
}

/// The page number of a list's `?page=`; any other parameter changes nothing.
fn page_number(query: Option<&str>) -> Result<u32, Refusal> {
    let mut number = 1;
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if name == "page" {
            number = value
                .parse()
                .ok()
                .filter(|page| (1..=MAX_PAGE).contains(page))
                .ok_or_else(|| Refusal::Invalid(format!("`page` must be a page number from 1 to {MAX_PAGE}.")))?;
        }
    }
    Ok(number)
}

fn at_page(path: &str, page: u32) -> String {
    if page > 1 { format!("{path}?page={page}") } else { path.to_owned() }
}

pub async fn blog(State(state): State<AppState>, headers: HeaderMap, uri: Uri, RawQuery(query): RawQuery) -> Response {
    let page = match page_number(query.as_deref()) {
        Ok(page) => page,
        Err(refusal) => return super::refused(&state, &headers, refusal).await,
    };
    cached(&state, &headers, &uri, at_page("/blog", page), || post_list(&state, None, page)).await
}

pub async fn tag(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(slug): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let page = match page_number(query.as_deref()) {
        Ok(page) => page,
        Err(refusal) => return super::refused(&state, &headers, refusal).await,
    };
    let key = at_page(&format!("/blog/tag/{slug}"), page);
    cached(&state, &headers, &uri, key, || post_list(&state, Some(&slug), page)).await
}

/// The blog, or its posts with the tag `tag`, a page at a time.
async fn post_list(state: &AppState, tag: Option<&str>, page: u32) -> Shown {
    if tag.is_some_and(|tag| !crate::catalog::products::check_handle(tag)) {
        return Err(Refusal::NotFound);
    }
    let chrome = chrome(state).await?;
    let found = published_posts(state, tag, PER_PAGE, None, (page - 1) * PER_PAGE).await?;
    if found.data.is_empty() && (page > 1 || tag.is_some()) {
        return Err(Refusal::NotFound);
    }
    let path = match tag {
        Some(tag) => format!("/blog/tag/{tag}"),
        None => "/blog".to_owned(),
    };
    let tag_name = tag.and_then(|slug| {
        found.data.iter().flat_map(|post| &post.tags).find(|t| t.slug == slug).map(|t| t.name.clone())
    });
    let heading = match &tag_name {
        Some(name) => format!("Posts tagged “{name}”"),
        None => "Blog".to_owned(),
    };
    let title = if page > 1 { format!("{heading}, page {page}") } else { heading.clone() };
    let description = match &tag_name {
        Some(name) => format!("Posts about {name} from {}.", chrome.site.name),
        None => format!("News and stories from {}.", chrome.site.name),
    };
    let here = at_page(&path, page);
    let mut meta = Meta::new(&chrome, &title, &description, Some(&here));
    let prev = (page > 1).then(|| at_page(&path, page - 1));
    let next = found.next_cursor.is_some().then(|| at_page(&path, page + 1));
    meta.prev = prev.as_ref().map(|p| super::absolute(&chrome.base, p));
    meta.next = next.as_ref().map(|p| super::absolute(&chrome.base, p));
    let posts = post_cards(found.data);
    let items: Vec<(String, String)> = posts.iter().map(|post| (post.title.clone(), post.url.clone())).collect();
    meta.json_ld =
        vec![structured::block(&structured::collection_page(&chrome, &heading, &description, &here, &items))];
    let pagination = context! { number => page, prev => prev, next => next };
    let values = context! { heading => heading, posts => Value::from_serialize(&posts), pagination => pagination };
    render(state, &chrome, "blog.html", &meta, &path, values, Freshness::Public)
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, uri: Uri, Path(slug): Path<String>) -> Response {
    cached(&state, &headers, &uri, format!("/blog/{slug}"), || entry_page(&state, Kind::Post, &slug)).await
}

pub async fn page(State(state): State<AppState>, headers: HeaderMap, uri: Uri, Path(slug): Path<String>) -> Response {
    cached(&state, &headers, &uri, format!("/pages/{slug}"), || entry_page(&state, Kind::Page, &slug)).await
}

#[derive(Serialize)]
struct EntryView {
    kind: &'static str,
    title: String,
    body_html: String,
    cover: Option<Picture>,
    tags: Vec<crate::content::store::PublishedTag>,
    authors: Vec<String>,
    published_iso: String,
    published_on: String,
}

fn address(kind: Kind, slug: &str) -> String {
    match kind {
        Kind::Post => format!("/blog/{slug}"),
        Kind::Page => format!("/pages/{slug}"),
    }
}

async fn entry_page(state: &AppState, kind: Kind, slug: &str) -> Shown {
    let entry = match published_entry(state, kind, slug).await? {
        Found::Entry(entry) => entry,
        Found::Moved(current) => return Err(Refusal::Moved(address(kind, &current))),
        Found::Missing => return Err(Refusal::NotFound),
    };
    let chrome = chrome(state).await?;
    let path = address(kind, &entry.slug);
    let canonical = if entry.canonical_url.is_empty() { path.clone() } else { entry.canonical_url.clone() };
    let cover = entry.cover.as_ref().and_then(|image| Picture::of(&image.sizes, &image.alt));
    let description =
        if entry.meta_description.is_empty() { entry.excerpt.clone() } else { entry.meta_description.clone() };
    let mut meta = Meta::new(&chrome, &entry.meta_title, &description, Some(&canonical)).image(&chrome, cover.as_ref());
    if entry.noindex {
        meta = meta.noindex();
    }
    let authors: Vec<String> = entry.authors.iter().map(|a| a.name.clone()).collect();
    let block = match kind {
        Kind::Post => {
            meta.og_type = "article";
            structured::blog_posting(
                &chrome,
                &structured::PostFacts {
                    headline: &entry.title,
                    description: &description,
                    path: &path,
                    image: cover.as_ref().map(|p| super::absolute(&chrome.base, &p.full)),
                    published: entry.published_at.to_rfc3339(),
                    modified: entry.updated_at.to_rfc3339(),
                    authors: authors.iter().map(String::as_str).collect(),
                },
            )
        }
        Kind::Page => structured::web_page(&chrome, &entry.title, &description, &path),
    };
    meta.json_ld = vec![structured::block(&block)];
    let view = EntryView {
        kind: kind.as_str(),
        title: entry.title.clone(),
        body_html: entry.body_html.clone(),
        cover,
        tags: entry.tags.clone(),
        authors,
        published_iso: entry.published_at.to_rfc3339(),
        published_on: entry.published_at.to_date_text(),
    };
    render(
        state,
        &chrome,
        "entry.html",
        &meta,
        &path,
        context! { entry => Value::from_serialize(&view) },
        Freshness::Public,
    )
}
