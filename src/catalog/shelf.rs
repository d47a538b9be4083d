//! The shelf: every published product held in memory, rendered for shoppers and indexed for
//! search and filters, with the category tree and the collections. Shoppers' reads never
//! touch the database; writes mark what they changed, and the next read brings exactly that
//! up to date first (on every node: the marks travel as cache invalidations).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use serde::Serialize;
use utoipa::ToSchema;

use super::inventory::Availability;
use super::media::MediaStore;
use super::products::{self, PRODUCT_COLUMNS, Price, Product, ProductImage, ProductOption, ProductRow, Variant};
use super::text;
use crate::db_run;
use crate::platform::cache::Evict;
use crate::platform::db::Db;
use crate::platform::error::{AppError, AppResult};
use crate::platform::http::Rendered;
use crate::platform::time::Timestamp;

/// How many products are read from the database at once when the shelf is filled.
const BATCH: usize = 500;

/// A published product as shoppers see it: no draft fields, no staff metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreProduct {
    pub id: String,
    pub handle: String,
    pub title: String,
    /// Sanitised HTML.
    pub description_html: String,
    pub product_type: String,
    pub vendor: String,
    pub tags: Vec<String>,
    /// The handles of the categories it sits in.
    pub categories: Vec<String>,
    /// In display order; the first is the main one.
    pub images: Vec<ProductImage>,
    pub options: Vec<ProductOption>,
    pub variants: Vec<StoreVariant>,
    pub seo_title: String,
    pub seo_description: String,
    pub published_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

/// A variant as shoppers see it: whether it can be bought, and how many only when the shop
/// shows quantities (`catalog.show_stock_quantity`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreVariant {
    pub id: String,
    pub sku: Option<String>,
    pub options: BTreeMap<String, String>,
    pub weight_grams: Option<i64>,
    pub prices: Vec<Price>,
    pub availability: Availability,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
}

impl StoreVariant {
    fn new(variant: Variant, show_quantity: bool) -> Self {
        Self {
            availability: Availability::of(variant.available, variant.low_stock_threshold, &variant.inventory_policy),
            available: show_quantity.then_some(variant.available.max(0)),
            id: variant.id,
            sku: variant.sku,
            options: variant.options,
            weight_grams: variant.weight_grams,
            prices: variant.prices,
        }
    }
}

/// A category as the shelf knows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CategoryNode {
    pub id: String,
    pub parent_id: Option<String>,
    pub handle: String,
    pub name: String,
    pub description: String,
    pub position: i64,
}

/// A collection as the shelf knows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CollectionNode {
    pub id: String,
    pub handle: String,
    pub title: String,
    pub description_html: String,
    pub published: bool,
}

/// One product on the shelf: its rendered JSON, and what search, filters and sorting need.
pub struct Item {
    pub id: String,
    pub handle: String,
    /// The title folded to lowercase, for sorting.
    pub title_key: String,
    pub published_at: i64,
    /// Collection id and the product's position in it.
    pub collections: Vec<(String, i64)>,
    /// The lowest price of its variants in each currency.
    pub prices: BTreeMap<String, i64>,
    /// The best of its variants'.
    pub availability: Availability,
    /// Its tags and option values as numbered on the shelf ([`Contents::facet_keys`]), for
    /// filtering and counting without comparing strings.
    pub facets: Vec<u32>,
    /// Its categories and every category above them, once each, as numbered on the shelf
    /// ([`Contents::category_numbers`]).
    pub category_set: Vec<u32>,
    pub variants: Vec<String>,
    /// Each word of the product once, separated by spaces: what to take out of the index
    /// when the product leaves the shelf.
    pub words: Box<str>,
    pub json: Bytes,
    /// A hash of `json`, for `ETag`s.
    pub hash: u64,
}

/// A product read for the shelf, with what it is filed under: its words with the weight of
/// the field each was found in, its tags (lowercase), its option values and its categories.
pub struct Loaded {
    item: Item,
    words: Vec<(String, u8)>,
    tags: Vec<String>,
    options: Vec<(String, String)>,
    categories: Vec<String>,
}

/// The weight of a word found in each field: a title match beats a description match.
pub mod weight {
    pub const TITLE: u8 = 10;
    pub const SKU: u8 = 8;
    pub const TAG: u8 = 6;
    pub const CATEGORY: u8 = 5;
    pub const VENDOR: u8 = 4;
    pub const OPTION: u8 = 3;
    pub const DESCRIPTION: u8 = 1;
}

/// The slots holding a word, with the weight it has in each.
pub type Postings = Vec<(u32, u8)>;

/// What the shelf holds, under one lock.
#[derive(Default)]
pub struct Contents {
    /// Products by slot; a freed slot is `None` until reused.
    pub items: Vec<Option<Item>>,
    free: Vec<u32>,
    pub by_id: HashMap<String, u32>,
    pub by_handle: HashMap<String, u32>,
    by_variant: HashMap<String, String>,
    /// Every word with the slots holding it and the weight it has there.
    pub postings: BTreeMap<String, Postings>,
    pub categories: HashMap<String, CategoryNode>,
    pub category_by_handle: HashMap<String, String>,
    /// Each category's children ids, in display order; `""` holds the roots.
    pub children: HashMap<String, Vec<String>>,
    pub collections: HashMap<String, CollectionNode>,
    pub collection_by_handle: HashMap<String, String>,
    /// Every tag and option value on the shelf, numbered; numbers stay until the shelf is
    /// filled again.
    pub facet_keys: Vec<FacetKey>,
    facet_numbers: HashMap<FacetKey, u32>,
    /// Category ids by number, and numbers by id.
    pub category_ids: Vec<String>,
    pub category_numbers: HashMap<String, u32>,
}

/// A value products are filtered and counted by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FacetKey {
    Tag(String),
    /// An option's name and value.
    Option(String, String),
}

impl Contents {
    pub fn items(&self) -> impl Iterator<Item = (u32, &Item)> {
        self.items.iter().enumerate().filter_map(|(slot, item)| item.as_ref().map(|item| (slot as u32, item)))
    }

    pub fn item(&self, slot: u32) -> Option<&Item> {
        self.items.get(slot as usize).and_then(Option::as_ref)
    }

    /// `id` and every category above it.
    pub fn with_ancestors<'a>(&'a self, id: &'a str) -> impl Iterator<Item = &'a str> {
        let mut at = Some(id);
        let mut steps = 0;
        std::iter::from_fn(move || {
            let current = at?;
            steps += 1;
            at = self.categories.get(current).and_then(|c| c.parent_id.as_deref()).filter(|_| steps < 16);
            Some(current)
        })
    }

    fn remove(&mut self, id: &str) {
        let Some(slot) = self.by_id.remove(id) else { return };
        let Some(item) = self.items.get_mut(slot as usize).and_then(Option::take) else { return };
        // Another product may have taken the handle (or a variant moved) already.
        if self.by_handle.get(&item.handle) == Some(&slot) {
            self.by_handle.remove(&item.handle);
        }
        for variant in &item.variants {
            if self.by_variant.get(variant) == Some(&item.id) {
                self.by_variant.remove(variant);
            }
        }
        for word in item.words.split(' ') {
            if let Some(list) = self.postings.get_mut(word) {
                list.retain(|(at, _)| *at != slot);
                if list.is_empty() {
                    self.postings.remove(word);
                }
            }
        }
        self.free.push(slot);
    }

    /// Puts `item` on the shelf with its words, each with the weight of the field it was
    /// found in.
    /// The number of a tag or option value, if some product on the shelf has it.
    pub fn facet_number(&self, key: &FacetKey) -> Option<u32> {
        self.facet_numbers.get(key).copied()
    }

    fn number(&mut self, key: FacetKey) -> u32 {
        if let Some(number) = self.facet_numbers.get(&key) {
            return *number;
        }
        let number = self.facet_keys.len() as u32;
        self.facet_keys.push(key.clone());
        self.facet_numbers.insert(key, number);
        number
    }

    fn insert(&mut self, loaded: Loaded) {
        let Loaded { mut item, words: weighted, tags, options, categories } = loaded;
        let mut facets: Vec<u32> = Vec::with_capacity(tags.len() + options.len());
        for tag in tags {
            facets.push(self.number(FacetKey::Tag(tag)));
        }
        for (name, value) in options {
            facets.push(self.number(FacetKey::Option(name, value)));
        }
        facets.sort_unstable();
        facets.dedup();
        item.facets = facets;
        let mut set: Vec<u32> = Vec::new();
        for category in &categories {
            for id in self.with_ancestors(category) {
                if let Some(number) = self.category_numbers.get(id)
                    && !set.contains(number)
                {
                    set.push(*number);
                }
            }
        }
        item.category_set = set;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.items.push(None);
                (self.items.len() - 1) as u32
            }
        };
        self.by_id.insert(item.id.clone(), slot);
        self.by_handle.insert(item.handle.clone(), slot);
        for variant in &item.variants {
            self.by_variant.insert(variant.clone(), item.id.clone());
        }
        for (word, weight) in weighted {
            self.postings.entry(word).or_default().push((slot, weight));
        }
        self.items[slot as usize] = Some(item);
    }

    fn set_categories(&mut self, categories: Vec<CategoryNode>) {
        self.category_by_handle = categories.iter().map(|c| (c.handle.clone(), c.id.clone())).collect();
        let mut children: HashMap<String, Vec<&CategoryNode>> = HashMap::new();
        for category in &categories {
            children.entry(category.parent_id.clone().unwrap_or_default()).or_default().push(category);
        }
        self.children = children
            .into_iter()
            .map(|(parent, mut list)| {
                list.sort_by(|a, b| (a.position, &a.name, &a.id).cmp(&(b.position, &b.name, &b.id)));
                (parent, list.into_iter().map(|c| c.id.clone()).collect())
            })
            .collect();
        self.category_ids = categories.iter().map(|c| c.id.clone()).collect();
        self.category_numbers = self.category_ids.iter().enumerate().map(|(n, id)| (id.clone(), n as u32)).collect();
        self.categories = categories.into_iter().map(|c| (c.id.clone(), c)).collect();
    }

    fn set_collections(&mut self, collections: Vec<CollectionNode>) {
        self.collection_by_handle = collections.iter().map(|c| (c.handle.clone(), c.id.clone())).collect();
        self.collections = collections.into_iter().map(|c| (c.id.clone(), c)).collect();
    }
}

/// Rendered answers by request, and their size.
#[derive(Default)]
struct Answers {
    by_key: HashMap<String, Arc<Rendered>>,
    bytes: usize,
}

impl Answers {
    fn clear(&mut self) {
        self.by_key.clear();
        self.bytes = 0;
    }
}

/// What has changed since the shelf was last brought up to date.
#[derive(Default)]
struct Pending {
    everything: bool,
    ids: HashSet<String>,
}

/// The shelf and what keeps it current.
pub struct Shelf {
    contents: RwLock<Contents>,
    pending: Mutex<Pending>,
    /// Bumped, under `pending`'s lock, by every change noted.
    noted: AtomicU64,
    /// The last value of `noted` whose changes the contents hold.
    applied: AtomicU64,
    refreshing: tokio::sync::Mutex<()>,
    /// Rendered answers by request, emptied whenever the contents change (under their write
    /// lock, so an answer rendered from old contents never lands after).
    answers: RwLock<Answers>,
    show_quantity: bool,
    /// For the addresses of product images.
    media: Arc<MediaStore>,
}

/// How many rendered answers, and how many bytes of them, the shelf keeps before it starts
/// over: a crawler asking for every combination of filters must not grow memory unbounded.
const MAX_ANSWERS: usize = 10_000;
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

impl Evict for Shelf {
    /// A product (`prd_...`) or a variant (`var_...`) changed.
    fn evict(&self, key: &str) {
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.ids.insert(key.to_owned());
        self.noted.fetch_add(1, Ordering::AcqRel);
    }

    /// Anything may have changed: categories, collections, or notes missed from other nodes.
    fn clear(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pending.everything = true;
        self.noted.fetch_add(1, Ordering::AcqRel);
    }
}

impl Shelf {
    /// An empty shelf that fills itself on first use.
    pub fn new(show_quantity: bool, media: Arc<MediaStore>) -> Self {
        Self {
            media,
            contents: RwLock::new(Contents::default()),
            pending: Mutex::new(Pending { everything: true, ids: HashSet::new() }),
            noted: AtomicU64::new(1),
            applied: AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(()),
            answers: RwLock::new(Answers::default()),
            show_quantity,
        }
    }

    /// Reads the contents once every change noted before this call is on the shelf.
    pub async fn read<T>(self: &Arc<Self>, db: &Db, read: impl FnOnce(&Contents) -> T) -> AppResult<T> {
        let wanted = self.noted.load(Ordering::Acquire);
        if self.applied.load(Ordering::Acquire) < wanted {
            // Run apart, so that a reader who gives up cannot leave a refresh half done.
            let shelf = self.clone();
            let db = db.clone();
            tokio::spawn(async move { shelf.refresh(&db, wanted).await })
                .await
                .map_err(|err| AppError::internal(anyhow::anyhow!("the shelf's refresh failed: {err}")))??;
        }
        let contents = self.contents.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(read(&contents))
    }

    /// The answer to the request `key`, rendered by `render` from current contents unless
    /// it was already.
    pub async fn answer(
        self: &Arc<Self>,
        db: &Db,
        key: &str,
        render: impl FnOnce(&Contents) -> AppResult<Rendered>,
    ) -> AppResult<Arc<Rendered>> {
        self.read(db, |contents| {
            if let Some(hit) = self.answers.read().unwrap_or_else(|poisoned| poisoned.into_inner()).by_key.get(key) {
                return Ok(hit.clone());
            }
            let rendered = Arc::new(render(contents)?);
            let mut answers = self.answers.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            let size = key.len() + rendered.body_len();
            if answers.by_key.len() >= MAX_ANSWERS || answers.bytes + size > MAX_ANSWER_BYTES {
                answers.clear();
            }
            answers.bytes += size;
            answers.by_key.insert(key.to_owned(), rendered.clone());
            Ok(rendered)
        })
        .await?
    }

    /// Replaces what the shelf holds, through `change`, and forgets rendered answers.
    fn change(&self, change: impl FnOnce(&mut Contents)) {
        let mut contents = self.contents.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut contents);
        self.answers.write().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    async fn refresh(&self, db: &Db, wanted: u64) -> AppResult<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.applied.load(Ordering::Acquire) >= wanted {
            return Ok(());
        }
        let (pending, upto) = {
            let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            (std::mem::take(&mut *pending), self.noted.load(Ordering::Acquire))
        };
        let done = self.apply(db, &pending).await;
        if done.is_err() {
            // Nothing is lost: what was taken is noted again for the next reader.
            let mut again = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            again.everything |= pending.everything;
            again.ids.extend(pending.ids);
            return done;
        }
        self.applied.store(upto, Ordering::Release);
        Ok(())
    }

    async fn apply(&self, db: &Db, pending: &Pending) -> AppResult<()> {
        if pending.everything {
            let mut contents = Contents::default();
            contents.set_categories(load_categories(db).await?);
            contents.set_collections(load_collections(db).await?);
            let ids = db_run!(db.read().await?, |conn| {
                sqlx::query_scalar::<_, String>("SELECT id FROM products WHERE status = 'published' ORDER BY id")
                    .fetch_all(conn)
                    .await
            })?;
            for chunk in ids.chunks(BATCH) {
                for item in self.load_items(db, &contents, chunk).await? {
                    contents.insert(item);
                }
            }
            self.change(|current| *current = contents);
            return Ok(());
        }
        let ids: Vec<String> = {
            let contents = self.contents.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut ids: HashSet<String> = HashSet::new();
            for id in &pending.ids {
                if id.starts_with("var_") {
                    ids.extend(contents.by_variant.get(id).cloned());
                } else {
                    ids.insert(id.clone());
                }
            }
            ids.into_iter().collect()
        };
        for chunk in ids.chunks(BATCH) {
            let items = {
                // Category names and handles do not change here: that would be `everything`.
                let snapshot = self.taxonomy();
                self.load_items(db, &snapshot, chunk).await?
            };
            self.change(|contents| {
                for id in chunk {
                    contents.remove(id);
                }
                for item in items {
                    contents.insert(item);
                }
            });
        }
        Ok(())
    }

    /// A copy of the categories, to render products with outside the lock.
    fn taxonomy(&self) -> Contents {
        let contents = self.contents.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        Contents { categories: contents.categories.clone(), ..Contents::default() }
    }

    /// The published products among `ids`, read and rendered.
    async fn load_items(&self, db: &Db, taxonomy: &Contents, ids: &[String]) -> AppResult<Vec<Loaded>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let list = list.join(", ");
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE status = 'published' AND id IN ({list})");
        let collections_sql =
            format!("SELECT product_id, collection_id, position FROM collection_products WHERE product_id IN ({list})");
        let rows = db_run!(db.read().await?, |conn| {
            let mut rows = sqlx::query_as::<_, ProductRow>(&sql);
            for id in ids {
                rows = rows.bind(id);
            }
            rows.fetch_all(conn).await
        })?;
        let memberships = db_run!(db.read().await?, |conn| {
            let mut memberships = sqlx::query_as::<_, (String, String, i64)>(&collections_sql);
            for id in ids {
                memberships = memberships.bind(id);
            }
            memberships.fetch_all(conn).await
        })?;
        let mut collections_of: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        for (product, collection, position) in memberships {
            collections_of.entry(product).or_default().push((collection, position));
        }
        let products = products::assemble(db, &self.media, rows).await?;
        products
            .into_iter()
            .map(|product| {
                let collections = collections_of.remove(&product.id).unwrap_or_default();
                item_of(product, collections, taxonomy, self.show_quantity)
            })
            .collect()
    }
}

async fn load_categories(db: &Db) -> AppResult<Vec<CategoryNode>> {
    Ok(db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, CategoryNode>(
            "SELECT id, parent_id, handle, name, description, position FROM categories ORDER BY id",
        )
        .fetch_all(conn)
        .await
    })?)
}

async fn load_collections(db: &Db) -> AppResult<Vec<CollectionNode>> {
    Ok(db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, CollectionNode>(
            "SELECT id, handle, title, description_html, published FROM collections ORDER BY id",
        )
        .fetch_all(conn)
        .await
    })?)
}

/// Renders a product for shoppers and gathers what search and filters need.
fn item_of(
    product: Product,
    collections: Vec<(String, i64)>,
    taxonomy: &Contents,
    show_quantity: bool,
) -> AppResult<Loaded> {
    let mut words: HashMap<String, u8> = HashMap::new();
    let mut add = |text: &str, weight: u8| {
        for word in text::words(text) {
            let best = words.entry(word).or_insert(weight);
            *best = (*best).max(weight);
        }
    };
    add(&product.title, weight::TITLE);
    add(&product.description, weight::DESCRIPTION);
    add(&product.vendor, weight::VENDOR);
    add(&product.product_type, weight::VENDOR);
    for tag in &product.tags {
        add(tag, weight::TAG);
    }
    let category_names: Vec<&CategoryNode> =
        product.categories.iter().filter_map(|id| taxonomy.categories.get(id)).collect();
    for category in &category_names {
        add(&category.name, weight::CATEGORY);
    }
    let mut options = Vec::new();
    let mut prices: BTreeMap<String, i64> = BTreeMap::new();
    let mut availability = None;
    for variant in &product.variants {
        for code in [&variant.sku, &variant.barcode].into_iter().flatten() {
            add(code, weight::SKU);
        }
        for (name, value) in &variant.options {
            add(value, weight::OPTION);
            let pair = (name.clone(), value.clone());
            if !options.contains(&pair) {
                options.push(pair);
            }
        }
        for price in &variant.prices {
            let lowest = prices.entry(price.currency.clone()).or_insert(price.amount);
            *lowest = (*lowest).min(price.amount);
        }
        let this = Availability::of(variant.available, variant.low_stock_threshold, &variant.inventory_policy);
        availability = Some(match (availability, this) {
            (None, this) => this,
            (Some(best), this) => best_of(best, this),
        });
    }
    let store = StoreProduct {
        id: product.id.clone(),
        handle: product.handle.clone(),
        title: product.title.clone(),
        description_html: product.description_html,
        product_type: product.product_type,
        vendor: product.vendor,
        tags: product.tags.clone(),
        categories: category_names.iter().map(|c| c.handle.clone()).collect(),
        images: product.images,
        options: product.options,
        variants: product.variants.iter().cloned().map(|v| StoreVariant::new(v, show_quantity)).collect(),
        seo_title: product.seo_title,
        seo_description: product.seo_description,
        published_at: product.published_at,
        updated_at: product.updated_at,
    };
    let mut json = serde_json::to_vec(&store).map_err(AppError::internal)?;
    // Bytes keeps a vector's spare capacity: up to as much again, times every product.
    json.shrink_to_fit();
    let words: Vec<(String, u8)> = words.into_iter().collect();
    let item = Item {
        variants: product.variants.iter().map(|v| v.id.clone()).collect(),
        title_key: text::words(&product.title).join(" "),
        published_at: product.published_at.map_or(product.created_at.0, |t| t.0),
        collections,
        prices,
        availability: availability.unwrap_or(Availability::OutOfStock),
        facets: Vec::new(),
        category_set: Vec::new(),
        words: words.iter().map(|(word, _)| word.as_str()).collect::<Vec<_>>().join(" ").into(),
        hash: crate::platform::http::content_hash(&json),
        json: json.into(),
        id: product.id,
        handle: product.handle,
    };
    Ok(Loaded {
        item,
        words,
        tags: product.tags.iter().map(|t| t.to_lowercase()).collect(),
        options,
        categories: product.categories,
    })
}

/// Which of two variants' availability the product shows: the most buyable.
fn best_of(a: Availability, b: Availability) -> Availability {
    let rank = |a: Availability| match a {
        Availability::InStock => 3,
        Availability::LowStock => 2,
        Availability::Backorder => 1,
        Availability::OutOfStock => 0,
    };
    if rank(a) >= rank(b) { a } else { b }
}
