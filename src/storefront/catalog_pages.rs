//! The shop's pages: home, products, categories, collections and search. They read the
//! shelf, so rendering one never waits on the database.

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use minijinja::{Value, context};
use serde::{Deserialize, Serialize};

use super::page::Freshness;
use super::structured::{self, Crumb};
use super::{Chrome, Meta, Picture, Refusal, Shown, cached, chrome, render};
use crate::app::AppState;
use crate::catalog::media::ImageSize;
use crate::catalog::money;
use crate::catalog::search::{self, Facets, Search};
use crate::catalog::shelf::Contents;

/// Products on a page of a list.
const PER_PAGE: u32 = 24;
/// The last page number a list answers: past it, narrow the list down.
const MAX_PAGE: usize = 400;

/// A product as the shelf renders it, read back for the page: only what pages show.
#[derive(Deserialize)]
struct ShelfProduct {
    handle: String,
    title: String,
    description_html: String,
    vendor: String,
    tags: Vec<String>,
    categories: Vec<String>,
    images: Vec<ShelfImage>,
    options: Vec<ShelfOption>,
    variants: Vec<ShelfVariant>,
    seo_title: String,
    seo_description: String,
}

#[derive(Deserialize)]
struct ShelfImage {
    alt: String,
    sizes: Vec<ImageSize>,
}

#[derive(Deserialize)]
struct ShelfOption {
    name: String,
}

#[derive(Deserialize)]
struct ShelfVariant {
    id: String,
    sku: Option<String>,
    options: BTreeMap<String, String>,
    prices: Vec<ShelfPrice>,
    availability: String,
}

#[derive(Deserialize)]
struct ShelfPrice {
    currency: String,
    amount: i64,
    compare_at_amount: Option<i64>,
}

impl ShelfVariant {
    fn price_in(&self, currency: &str) -> Option<&ShelfPrice> {
        self.prices.iter().find(|price| price.currency == currency)
    }

    fn buyable(&self) -> bool {
        self.availability != "out_of_stock"
    }
}

/// How a shopper reads an availability.
fn availability_text(availability: &str) -> &'static str {
    match availability {
        "in_stock" => "In stock",
        "low_stock" => "Only a few left",
        "backorder" => "Available to order: ships when back in stock",
        _ => "Sold out",
    }
}

/// The currency prices are shown in: the shop's, or else the product's first.
fn currency_of<'a>(chrome: &'a Chrome, product: &'a ShelfProduct) -> Option<&'a str> {
    chrome
        .currency
        .as_deref()
        .or_else(|| product.variants.first().and_then(|v| v.prices.first()).map(|p| p.currency.as_str()))
}

/// A product in a list.
#[derive(Serialize)]
struct Card {
    url: String,
    title: String,
    image: Option<Picture>,
    price: Option<String>,
    /// Its variants do not all cost the same: the price is the lowest.
    from_price: bool,
    compare_at: Option<String>,
    available: bool,
}

fn card(product: &ShelfProduct, currency: Option<&str>) -> Card {
    let prices: Vec<&ShelfPrice> = match currency {
        Some(currency) => product.variants.iter().filter_map(|v| v.price_in(currency)).collect(),
        None => Vec::new(),
    };
    let lowest = prices.iter().min_by_key(|price| price.amount);
    Card {
        url: format!("/products/{}", product.handle),
        title: product.title.clone(),
        image: product.images.first().and_then(|image| Picture::of(&image.sizes, &image.alt)),
        price: lowest.map(|price| money::format(price.amount, &price.currency)),
        from_price: prices.iter().any(|price| Some(price.amount) != lowest.map(|l| l.amount)),
        compare_at: lowest
            .and_then(|price| price.compare_at_amount.filter(|was| *was > price.amount).map(|was| (was, price)))
            .map(|(was, price)| money::format(was, &price.currency)),
        available: product.variants.iter().any(ShelfVariant::buyable),
    }
}

fn read_product(contents: &Contents, slot: u32) -> Option<ShelfProduct> {
    serde_json::from_slice(&contents.item(slot)?.json).ok()
}

fn cards(contents: &Contents, chrome: &Chrome, slots: &[u32]) -> Vec<Card> {
    slots
        .iter()
        .filter_map(|slot| read_product(contents, *slot))
        .map(|product| card(&product, currency_of(chrome, &product)))
        .collect()
}

/// A category's address: the handles from the top of the tree down to it.
fn category_path(contents: &Contents, id: &str) -> String {
    let mut handles: Vec<&str> =
        contents.with_ancestors(id).filter_map(|at| contents.categories.get(at)).map(|c| c.handle.as_str()).collect();
    handles.reverse();
    format!("/categories/{}", handles.join("/"))
}

/// A step of the way down, as templates show it.
#[derive(Serialize)]
struct Step {
    name: String,
    path: String,
}

/// Home, then the categories from the top down to `id` (included).
fn category_steps(contents: &Contents, id: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = contents
        .with_ancestors(id)
        .filter_map(|at| {
            contents.categories.get(at).map(|c| Step { name: c.name.clone(), path: category_path(contents, at) })
        })
        .collect();
    steps.reverse();
    steps
}

fn home_step() -> Step {
    Step { name: "Home".into(), path: "/".into() }
}

fn crumbs_of(steps: &[Step]) -> Vec<Crumb<'_>> {
    steps.iter().map(|step| Crumb { name: &step.name, path: &step.path }).collect()
}

/// A link to a category or a collection.
#[derive(Serialize)]
struct Link {
    name: String,
    url: String,
}

pub async fn home(State(state): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    cached(&state, &headers, &uri, "/".into(), || home_page(&state)).await
}

async fn home_page(state: &AppState) -> Shown {
    let chrome = chrome(state).await?;
    let posts = crate::content::store::published_posts(state, None, 3, None, 0).await?;
    let posts = super::content_pages::post_cards(posts.data);
    let newest = Search::parse("limit=8")?;
    state
        .shelf
        .read(&state.db, |contents| {
            let found = search::run(contents, &newest, false);
            let mut collections: Vec<Link> = contents
                .collections
                .values()
                .filter(|c| c.published)
                .map(|c| Link { name: c.title.clone(), url: format!("/collections/{}", c.handle) })
                .collect();
            collections.sort_by(|a, b| a.name.cmp(&b.name));
            let categories: Vec<Link> = contents
                .children
                .get("")
                .into_iter()
                .flatten()
                .filter_map(|id| contents.categories.get(id))
                .map(|c| Link { name: c.name.clone(), url: category_path(contents, &c.id) })
                .collect();
            let description = if chrome.site.description.is_empty() {
                format!("Shop {} online.", chrome.site.name)
            } else {
                chrome.site.description.clone()
            };
            let mut meta = Meta::new(&chrome, "", &description, Some("/"));
            meta.json_ld = structured::organization_and_site(&chrome).iter().map(structured::block).collect();
            let values = context! {
                products => Value::from_serialize(cards(contents, &chrome, &found.slots)),
                collections => Value::from_serialize(&collections),
                categories => Value::from_serialize(&categories),
                posts => Value::from_serialize(&posts),
            };
            render(state, &chrome, "home.html", &meta, "/", values, Freshness::Public)
        })
        .await?
}

/// A variant as the product page offers it.
#[derive(Serialize)]
struct Choice {
    id: String,
    title: String,
    price: Option<String>,
    available: bool,
    availability: String,
    availability_text: &'static str,
}

#[derive(Serialize)]
struct ProductView {
    title: String,
    vendor: String,
    description_html: String,
    tags: Vec<String>,
    images: Vec<Picture>,
    price: Option<String>,
    from_price: bool,
    compare_at: Option<String>,
    available: bool,
    availability: String,
    availability_text: &'static str,
    option_names: Vec<String>,
    variants: Vec<Choice>,
    /// The variants as the theme's script reads them.
    variants_json: String,
    selected: String,
}

pub async fn product(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(handle): Path<String>,
) -> Response {
    let key = format!("/products/{handle}");
    cached(&state, &headers, &uri, key, || product_page(&state, &handle)).await
}

async fn product_page(state: &AppState, handle: &str) -> Shown {
    let chrome = chrome(state).await?;
    let shown = state
        .shelf
        .read(&state.db, |contents| {
            let slot = contents.by_handle.get(handle)?;
            let product = read_product(contents, *slot)?;
            Some(render_product(state, &chrome, contents, product))
        })
        .await?;
    if let Some(shown) = shown {
        return shown;
    }
    match crate::catalog::store::handle_now(state, handle).await? {
        Some(current) => Err(Refusal::Moved(format!("/products/{current}"))),
        None => Err(Refusal::NotFound),
    }
}

fn render_product(state: &AppState, chrome: &Chrome, contents: &Contents, product: ShelfProduct) -> Shown {
    let currency = currency_of(chrome, &product).map(str::to_owned);
    let summary = card(&product, currency.as_deref());
    let path = format!("/products/{}", product.handle);
    let choices: Vec<Choice> = product
        .variants
        .iter()
        .map(|variant| Choice {
            id: variant.id.clone(),
            title: if variant.options.is_empty() {
                product.title.clone()
            } else {
                variant.options.values().cloned().collect::<Vec<_>>().join(" / ")
            },
            price: currency.as_deref().and_then(|c| variant.price_in(c)).map(|p| money::format(p.amount, &p.currency)),
            available: variant.buyable(),
            availability: variant.availability.clone(),
            availability_text: availability_text(&variant.availability),
        })
        .collect();
    let selected = product.variants.iter().find(|v| v.buyable()).or(product.variants.first());
    let availability = selected.map_or("out_of_stock".to_owned(), |v| v.availability.clone());
    let images: Vec<Picture> =
        product.images.iter().filter_map(|image| Picture::of(&image.sizes, &image.alt)).collect();

    let category = product.categories.first().and_then(|handle| contents.category_by_handle.get(handle));
    let mut steps = vec![home_step()];
    if let Some(id) = category {
        steps.extend(category_steps(contents, id));
    }
    steps.push(Step { name: product.title.clone(), path: path.clone() });

    let description = if product.seo_description.is_empty() {
        crate::content::summarise(&product.description_html, 160)
    } else {
        product.seo_description.clone()
    };
    let title = if product.seo_title.is_empty() { &product.title } else { &product.seo_title };
    let mut meta = Meta::new(chrome, title, &description, Some(&path)).image(chrome, images.first());
    meta.og_type = "product";
    let offers = product
        .variants
        .iter()
        .filter_map(|variant| {
            let price = variant.price_in(currency.as_deref()?)?;
            Some(structured::Offer {
                sku: variant.sku.as_deref(),
                amount: price.amount,
                price: money::decimal(price.amount, &price.currency),
                availability: &variant.availability,
            })
        })
        .collect();
    let facts = structured::ProductFacts {
        name: &product.title,
        description: &description,
        path: &path,
        images: images.iter().map(|p| super::absolute(&chrome.base, &p.full)).collect(),
        brand: &product.vendor,
        currency: currency.as_deref(),
        offers,
    };
    meta.json_ld = vec![
        structured::block(&structured::product(chrome, &facts)),
        structured::block(&structured::breadcrumbs(chrome, &crumbs_of(&steps))),
    ];
    let view = ProductView {
        title: product.title.clone(),
        vendor: product.vendor.clone(),
        description_html: product.description_html.clone(),
        tags: product.tags.clone(),
        price: summary.price,
        from_price: summary.from_price,
        compare_at: summary.compare_at,
        available: summary.available,
        availability_text: availability_text(&availability),
        availability,
        option_names: product.options.iter().map(|o| o.name.clone()).collect(),
        variants_json: serde_json::to_string(&choices).unwrap_or_default(),
        selected: selected.map(|v| v.id.clone()).unwrap_or_default(),
        variants: choices,
        images,
    };
    let values = context! { product => Value::from_serialize(&view), crumbs => Value::from_serialize(&steps) };
    render(state, chrome, "product.html", &meta, &path, values, Freshness::Public)
}

/// What a list's query asks: filters, order and page. Anything else in the query (tracking
/// tags, say) changes nothing and is not part of the page's address.
#[derive(Default)]
struct Listing {
    q: Option<String>,
    tags: Vec<String>,
    options: Vec<String>,
    available: bool,
    sort: Option<String>,
    page: usize,
}

impl Listing {
    fn parse(query: &str) -> Result<Self, Refusal> {
        let mut listing = Listing { page: 1, ..Self::default() };
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            match name.as_ref() {
                "q" => listing.q = Some(value.trim().to_owned()).filter(|q| !q.is_empty()),
                "tag" => listing.tags.push(value.into_owned()),
                "option" => listing.options.push(value.into_owned()),
                "available" => listing.available = value == "true",
                "sort" => listing.sort = Some(value.into_owned()).filter(|s| !s.is_empty()),
                "page" => {
                    listing.page =
                        value.parse().ok().filter(|page| (1..=MAX_PAGE).contains(page)).ok_or_else(|| {
                            Refusal::Invalid(format!("`page` must be a page number from 1 to {MAX_PAGE}."))
                        })?;
                }
                _ => {}
            }
        }
        Ok(listing)
    }

    /// Narrowed or reordered: such pages are not for search engines' indexes.
    fn filtered(&self) -> bool {
        !self.tags.is_empty() || !self.options.is_empty() || self.available || self.sort.is_some()
    }

    /// The query of this list at `page`, in one order: its cache key and its links.
    fn query(&self, page: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(q) = &self.q {
            query.append_pair("q", q);
        }
        for tag in &self.tags {
            query.append_pair("tag", tag);
        }
        for option in &self.options {
            query.append_pair("option", option);
        }
        if self.available {
            query.append_pair("available", "true");
        }
        if let Some(sort) = &self.sort {
            query.append_pair("sort", sort);
        }
        if page > 1 {
            query.append_pair("page", &page.to_string());
        }
        query.finish()
    }

    /// The search that gives this list in `scope` (`category=...`).
    fn search(&self, scope: Option<(&str, &str)>, currency: Option<&str>) -> Result<Search, Refusal> {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some((name, value)) = scope {
            query.append_pair(name, value);
        }
        if let Some(currency) = currency {
            query.append_pair("currency", currency);
        }
        query.append_pair("limit", &PER_PAGE.to_string());
        let own = self.query(1);
        let mut search = Search::parse(&format!("{}&{own}", query.finish()))?;
        search.offset = (self.page - 1) * PER_PAGE as usize;
        Ok(search)
    }
}

fn with_query(path: &str, query: &str) -> String {
    if query.is_empty() { path.to_owned() } else { format!("{path}?{query}") }
}

/// A filter as the list's form offers it.
#[derive(Serialize)]
struct FilterGroup {
    label: String,
    name: &'static str,
    choices: Vec<FilterChoice>,
}

#[derive(Serialize)]
struct FilterChoice {
    value: String,
    label: String,
    count: usize,
    checked: bool,
}

fn filter_groups(facets: &Facets, listing: &Listing) -> Vec<FilterGroup> {
    let mut groups = Vec::new();
    let tags: Vec<FilterChoice> = facets
        .tags
        .iter()
        .map(|tag| FilterChoice {
            checked: listing.tags.iter().any(|t| t.to_lowercase() == tag.value),
            value: tag.value.clone(),
            label: tag.value.clone(),
            count: tag.count,
        })
        .filter(|choice| choice.count > 0 || choice.checked)
        .collect();
    for option in &facets.options {
        let choices: Vec<FilterChoice> = option
            .values
            .iter()
            .map(|value| {
                let pair = format!("{}:{}", option.name, value.value);
                FilterChoice {
                    checked: listing.options.contains(&pair),
                    value: pair,
                    label: value.value.clone(),
                    count: value.count,
                }
            })
            .filter(|choice| choice.count > 0 || choice.checked)
            .collect();
        if !choices.is_empty() {
            groups.push(FilterGroup { label: option.name.clone(), name: "option", choices });
        }
    }
    if !tags.is_empty() {
        groups.push(FilterGroup { label: "Tags".into(), name: "tag", choices: tags });
    }
    let buyable: usize = facets.availability.iter().filter(|a| a.value != "out_of_stock").map(|a| a.count).sum();
    if buyable > 0 || listing.available {
        let choice =
            FilterChoice { value: "true".into(), label: "In stock".into(), count: buyable, checked: listing.available };
        groups.push(FilterGroup { label: "Availability".into(), name: "available", choices: vec![choice] });
    }
    groups
}

#[derive(Serialize)]
struct SortChoice {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Serialize)]
struct Pagination {
    number: usize,
    count: usize,
    prev: Option<String>,
    next: Option<String>,
}

/// What a list page is of.
struct Scope<'a> {
    /// The search's own filter: `("category", handle)`.
    filter: Option<(&'a str, &'a str)>,
    path: &'a str,
    heading: &'a str,
    description: &'a str,
    /// Text before the list, or HTML (sanitised already).
    intro: &'a str,
    intro_html: &'a str,
    steps: Vec<Step>,
    subcategories: Vec<Link>,
    /// A collection's own order is its first.
    by_position: bool,
    /// Search results: never indexed.
    search: bool,
}

fn render_listing(
    state: &AppState,
    chrome: &Chrome,
    contents: &Contents,
    listing: &Listing,
    scope: Scope<'_>,
) -> Shown {
    // The shop's currency; a shop without regions yet has its products' own.
    let currency =
        chrome.currency.clone().or_else(|| contents.items().find_map(|(_, item)| item.prices.keys().next().cloned()));
    let search = listing.search(scope.filter, currency.as_deref())?;
    let found = search::run(contents, &search, true);
    let pages = (found.total.div_ceil(PER_PAGE as usize)).max(1);
    if listing.page > pages {
        return Err(Refusal::NotFound);
    }
    let link = |page: usize| with_query(scope.path, &listing.query(page));
    let pagination = Pagination {
        number: listing.page,
        count: pages,
        prev: (listing.page > 1).then(|| link(listing.page - 1)),
        next: (listing.page < pages).then(|| link(listing.page + 1)),
    };
    let default_sort = if listing.q.is_some() {
        "relevance"
    } else if scope.by_position {
        "position"
    } else {
        "newest"
    };
    let chosen = listing.sort.as_deref().unwrap_or(default_sort);
    let mut sorts = Vec::new();
    if listing.q.is_some() {
        sorts.push(("relevance", "Best match"));
    }
    if scope.by_position {
        sorts.push(("position", "Featured"));
    }
    sorts.push(("newest", "Newest"));
    if currency.is_some() {
        sorts.extend([("price", "Price, low to high"), ("-price", "Price, high to low")]);
    }
    sorts.push(("title", "Name"));
    let sorts: Vec<SortChoice> =
        sorts.into_iter().map(|(value, label)| SortChoice { value, label, selected: value == chosen }).collect();

    let products = cards(contents, chrome, &found.slots);
    let title =
        if listing.page > 1 { format!("{}, page {}", scope.heading, listing.page) } else { scope.heading.to_owned() };
    // Filtered and reordered lists point search engines at the plain list; pages of the
    // plain list are each their own.
    let canonical = match (scope.search, listing.filtered()) {
        (true, _) => None,
        (false, true) => Some(scope.path.to_owned()),
        (false, false) => Some(link(listing.page)),
    };
    let mut meta = Meta::new(chrome, &title, scope.description, canonical.as_deref());
    if scope.search || listing.filtered() {
        meta = meta.noindex();
    }
    meta.prev = pagination.prev.as_ref().map(|p| super::absolute(&chrome.base, p));
    meta.next = pagination.next.as_ref().map(|p| super::absolute(&chrome.base, p));
    meta = meta.image(chrome, products.iter().find_map(|card| card.image.as_ref()));
    if !scope.search {
        let items: Vec<(String, String)> = products.iter().map(|card| (card.title.clone(), card.url.clone())).collect();
        let mut blocks = vec![structured::block(&structured::collection_page(
            chrome,
            scope.heading,
            scope.description,
            scope.path,
            &items,
        ))];
        if scope.steps.len() > 1 {
            blocks.push(structured::block(&structured::breadcrumbs(chrome, &crumbs_of(&scope.steps))));
        }
        meta.json_ld = blocks;
    }
    let values = context! {
        heading => scope.heading,
        intro => scope.intro,
        intro_html => Value::from_safe_string(scope.intro_html.to_owned()),
        crumbs => Value::from_serialize(if scope.steps.len() > 1 { &scope.steps[..] } else { &[] }),
        subcategories => Value::from_serialize(&scope.subcategories),
        products => Value::from_serialize(&products),
        total => found.total,
        filters => Value::from_serialize(found.facets.as_ref().map(|f| filter_groups(f, listing)).unwrap_or_default()),
        filtered => listing.filtered(),
        sorts => Value::from_serialize(&sorts),
        pagination => Value::from_serialize(&pagination),
        query => listing.q.as_deref(),
    };
    let freshness = if scope.search || listing.filtered() { Freshness::Brief } else { Freshness::Public };
    render(state, chrome, "listing.html", &meta, scope.path, values, freshness)
}

pub async fn category(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let listing = match Listing::parse(&query) {
        Ok(listing) => listing,
        Err(refusal) => return super::refused(&state, &headers, refusal).await,
    };
    let key = with_query(&format!("/categories/{path}"), &listing.query(listing.page));
    cached(&state, &headers, &uri, key, || category_page(&state, &path, &query, &listing)).await
}

async fn category_page(state: &AppState, path: &str, query: &str, listing: &Listing) -> Shown {
    let chrome = chrome(state).await?;
    state
        .shelf
        .read(&state.db, |contents| {
            let handle = path.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
            let id = contents.category_by_handle.get(handle).ok_or(Refusal::NotFound)?;
            let category = contents.categories.get(id).ok_or(Refusal::NotFound)?;
            let canonical = category_path(contents, id);
            if canonical != format!("/categories/{path}") {
                return Err(Refusal::Moved(with_query(&canonical, query)));
            }
            let mut steps = vec![home_step()];
            steps.extend(category_steps(contents, id));
            let subcategories = contents
                .children
                .get(id.as_str())
                .into_iter()
                .flatten()
                .filter_map(|child| contents.categories.get(child))
                .map(|c| Link { name: c.name.clone(), url: category_path(contents, &c.id) })
                .collect();
            let description = if category.description.is_empty() {
                format!("{} at {}.", category.name, chrome.site.name)
            } else {
                category.description.clone()
            };
            let scope = Scope {
                filter: Some(("category", &category.handle)),
                path: &canonical,
                heading: &category.name,
                description: &description,
                intro: &category.description,
                intro_html: "",
                steps,
                subcategories,
                by_position: false,
                search: false,
            };
            render_listing(state, &chrome, contents, listing, scope)
        })
        .await?
}

pub async fn collection(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(handle): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let listing = match Listing::parse(&query.unwrap_or_default()) {
        Ok(listing) => listing,
        Err(refusal) => return super::refused(&state, &headers, refusal).await,
    };
    let key = with_query(&format!("/collections/{handle}"), &listing.query(listing.page));
    cached(&state, &headers, &uri, key, || collection_page(&state, &handle, &listing)).await
}

async fn collection_page(state: &AppState, handle: &str, listing: &Listing) -> Shown {
    let chrome = chrome(state).await?;
    state
        .shelf
        .read(&state.db, |contents| {
            let id = contents.collection_by_handle.get(handle).ok_or(Refusal::NotFound)?;
            let collection = contents.collections.get(id).filter(|c| c.published).ok_or(Refusal::NotFound)?;
            let path = format!("/collections/{}", collection.handle);
            let description = crate::content::summarise(&collection.description_html, 160);
            let description = if description.is_empty() {
                format!("{} at {}.", collection.title, chrome.site.name)
            } else {
                description
            };
            let steps = vec![home_step(), Step { name: collection.title.clone(), path: path.clone() }];
            let scope = Scope {
                filter: Some(("collection", &collection.handle)),
                path: &path,
                heading: &collection.title,
                description: &description,
                intro: "",
                intro_html: &collection.description_html,
                steps,
                subcategories: Vec::new(),
                by_position: true,
                search: false,
            };
            render_listing(state, &chrome, contents, listing, scope)
        })
        .await?
}

pub async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(query): RawQuery,
) -> Response {
    let listing = match Listing::parse(&query.unwrap_or_default()) {
        Ok(listing) => listing,
        Err(refusal) => return super::refused(&state, &headers, refusal).await,
    };
    let key = with_query("/search", &listing.query(listing.page));
    cached(&state, &headers, &uri, key, || search_page(&state, &listing)).await
}

async fn search_page(state: &AppState, listing: &Listing) -> Shown {
    let chrome = chrome(state).await?;
    state
        .shelf
        .read(&state.db, |contents| {
            let heading = match &listing.q {
                Some(q) => format!("Results for “{q}”"),
                None => "All products".to_owned(),
            };
            let scope = Scope {
                filter: None,
                path: "/search",
                heading: &heading,
                description: "",
                intro: "",
                intro_html: "",
                steps: Vec::new(),
                subcategories: Vec::new(),
                by_position: false,
                search: true,
            };
            render_listing(state, &chrome, contents, listing, scope)
        })
        .await?
}
