//! Products with their options, variants and prices: the checks every write passes, and the
//! queries that read a product whole (four queries, whatever its number of variants).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::media::{ImageSize, MediaStore};
use super::money::is_currency;
use crate::app::AppState;
use crate::db_run;
use crate::platform::db::{Db, Tx, dialect};
use crate::platform::error::{AppError, AppResult, Violations};
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;

/// A price in one currency, in minor units (cents for USD, yen for JPY).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// ISO 4217, such as `EUR`.
    pub currency: String,
    pub amount: i64,
    /// The former price, shown struck through; above `amount` when given.
    #[serde(default)]
    pub compare_at_amount: Option<i64>,
}

/// One option a shopper chooses, such as `Size`, with its values in display order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductOption {
    pub name: String,
    pub values: Vec<String>,
}

/// An image to show with a product: an uploaded image's id and the text that stands for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRef {
    pub media_id: String,
    /// What the image shows, for screen readers and search engines.
    #[serde(default)]
    pub alt: String,
}

/// An image of a product, with its sizes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProductImage {
    pub media_id: String,
    pub alt: String,
    pub width: u32,
    pub height: u32,
    pub sizes: Vec<ImageSize>,
}

/// One purchasable combination of option values.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Variant {
    pub id: String,
    pub sku: Option<String>,
    pub barcode: Option<String>,
    /// The value of each of the product's options, by option name.
    pub options: BTreeMap<String, String>,
    pub weight_grams: Option<i64>,
    pub length_mm: Option<i64>,
    pub width_mm: Option<i64>,
    pub height_mm: Option<i64>,
    /// `standard`, `reduced`, `zero`, `exempt`, or a shop's own class.
    pub tax_class: String,
    pub prices: Vec<Price>,
    /// `deny` (sell only what is there) or `continue` (take backorders).
    pub inventory_policy: String,
    /// At or below this many available units the variant is low on stock.
    pub low_stock_threshold: i64,
    /// Units on hand and not reserved, all locations together.
    pub available: i64,
}

/// A product as staff see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Product {
    pub id: String,
    /// The address part: `/products/{handle}`.
    pub handle: String,
    pub title: String,
    /// Markdown, as written.
    pub description: String,
    /// The description rendered to sanitised HTML.
    pub description_html: String,
    /// `draft`, `published` or `archived`.
    pub status: String,
    pub product_type: String,
    pub vendor: String,
    pub tags: Vec<String>,
    /// The ids of the categories it sits in.
    pub categories: Vec<String>,
    pub options: Vec<ProductOption>,
    pub seo_title: String,
    pub seo_description: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// In display order; the first is the main one.
    pub images: Vec<ProductImage>,
    pub variants: Vec<Variant>,
    pub published_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProductRow {
    id: String,
    handle: String,
    title: String,
    description: String,
    description_html: String,
    status: String,
    product_type: String,
    vendor: String,
    tags: String,
    options: String,
    seo_title: String,
    seo_description: String,
    metadata: String,
    published_at: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
    version: i64,
}

pub(crate) const PRODUCT_COLUMNS: &str = "id, handle, title, description, description_html, status, product_type, \
     vendor, tags, options, seo_title, seo_description, metadata, published_at, created_at, updated_at, version";

#[derive(sqlx::FromRow)]
struct VariantRow {
    id: String,
    product_id: String,
    sku: Option<String>,
    barcode: Option<String>,
    option_values: String,
    weight_grams: Option<i64>,
    length_mm: Option<i64>,
    width_mm: Option<i64>,
    height_mm: Option<i64>,
    tax_class: String,
    inventory_policy: String,
    low_stock_threshold: i64,
}

#[derive(sqlx::FromRow)]
struct PriceRow {
    variant_id: String,
    currency: String,
    amount: i64,
    compare_at_amount: Option<i64>,
}

fn from_json<T: serde::de::DeserializeOwned + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

/// The rows of `sql`, whose binds are the product ids `ids`, in order.
async fn of_products<T>(db: &crate::platform::db::Db, sql: &str, ids: &[&str]) -> AppResult<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    T: Send + Unpin,
{
    Ok(db_run!(db.read().await?, |conn| {
        let mut query = sqlx::query_as::<_, T>(sql);
        for id in ids {
            query = query.bind(*id);
        }
        query.fetch_all(conn).await
    })?)
}

/// Reads the images, variants, prices, stock and categories of `rows` (five queries in all) and assembles the products,
/// in the order of `rows`.
pub(crate) async fn assemble(
    db: &crate::platform::db::Db,
    media: &MediaStore,
    rows: Vec<ProductRow>,
) -> AppResult<Vec<Product>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders: Vec<String> = (1..=rows.len()).map(|n| format!("${n}")).collect();
    let list = placeholders.join(", ");
    let variant_sql = format!(
        "SELECT id, product_id, sku, barcode, option_values, weight_grams, length_mm, width_mm, height_mm, tax_class, \
         inventory_policy, low_stock_threshold FROM product_variants WHERE product_id IN ({list}) \
         ORDER BY product_id, position"
    );
    let price_sql = format!(
        "SELECT p.variant_id, p.currency, p.amount, p.compare_at_amount FROM variant_prices p \
         JOIN product_variants v ON v.id = p.variant_id WHERE v.product_id IN ({list}) ORDER BY p.variant_id, p.currency"
    );
    let categories_sql = format!(
        "SELECT product_id, category_id FROM product_categories WHERE product_id IN ({list}) \
         ORDER BY product_id, category_id"
    );
    let images_sql = format!(
        "SELECT i.product_id, i.media_id, i.alt, m.width, m.height, m.variants FROM product_images i \
         JOIN media m ON m.id = i.media_id WHERE i.product_id IN ({list}) ORDER BY i.product_id, i.position"
    );
    let stock_sql = format!(
        "SELECT l.variant_id, CAST(SUM(l.on_hand - l.reserved) AS BIGINT) FROM inventory_levels l \
         JOIN product_variants v ON v.id = l.variant_id WHERE v.product_id IN ({list}) GROUP BY l.variant_id"
    );
    let images = db_run!(db.read().await?, |conn| {
        let mut images = sqlx::query_as::<_, (String, String, String, i64, i64, String)>(&images_sql);
        for row in &rows {
            images = images.bind(&row.id);
        }
        images.fetch_all(conn).await
    })?;
    let mut images_of: BTreeMap<String, Vec<ProductImage>> = BTreeMap::new();
    for (product, media_id, alt, width, height, variants) in images {
        images_of.entry(product).or_default().push(ProductImage {
            media_id,
            alt,
            width: width as u32,
            height: height as u32,
            sizes: media.sizes(&variants),
        });
    }
    let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
    let variants: Vec<VariantRow> = of_products(db, &variant_sql, &ids).await?;
    let prices: Vec<PriceRow> = of_products(db, &price_sql, &ids).await?;
    let stock: Vec<(String, i64)> = of_products(db, &stock_sql, &ids).await?;
    let categories: Vec<(String, String)> = of_products(db, &categories_sql, &ids).await?;
    let mut categories_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (product, category) in categories {
        categories_of.entry(product).or_default().push(category);
    }
    let stock: BTreeMap<String, i64> = stock.into_iter().collect();
    let mut prices_of: BTreeMap<String, Vec<Price>> = BTreeMap::new();
    for price in prices {
        prices_of.entry(price.variant_id).or_default().push(Price {
            currency: price.currency,
            amount: price.amount,
            compare_at_amount: price.compare_at_amount,
        });
    }
    let mut variants_of: BTreeMap<String, Vec<Variant>> = BTreeMap::new();
    for row in variants {
        let prices = prices_of.remove(&row.id).unwrap_or_default();
        let available = stock.get(&row.id).copied().unwrap_or(0);
        variants_of.entry(row.product_id).or_default().push(Variant {
            options: from_json(&row.option_values),
            id: row.id,
            sku: row.sku,
            barcode: row.barcode,
            weight_grams: row.weight_grams,
            length_mm: row.length_mm,
            width_mm: row.width_mm,
            height_mm: row.height_mm,
            tax_class: row.tax_class,
            prices,
            available,
            inventory_policy: row.inventory_policy,
            low_stock_threshold: row.low_stock_threshold,
        });
    }
    Ok(rows
        .into_iter()
        .map(|row| Product {
            variants: variants_of.remove(&row.id).unwrap_or_default(),
            categories: categories_of.remove(&row.id).unwrap_or_default(),
            images: images_of.remove(&row.id).unwrap_or_default(),
            tags: from_json(&row.tags),
            options: from_json(&row.options),
            metadata: serde_json::from_str(&row.metadata).unwrap_or(Value::Object(Default::default())),
            id: row.id,
            handle: row.handle,
            title: row.title,
            description: row.description,
            description_html: row.description_html,
            status: row.status,
            product_type: row.product_type,
            vendor: row.vendor,
            seo_title: row.seo_title,
            seo_description: row.seo_description,
            published_at: row.published_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            version: row.version,
        })
        .collect())
}

/// One product by a column (`id` or `handle`), with `extra` conditions (`AND status = ...`).
pub(crate) async fn find(state: &AppState, column: &str, value: &str, extra: &str) -> AppResult<Option<Product>> {
    let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE {column} = $1{extra}");
    let db = &state.db;
    let rows =
        db_run!(db.read().await?, |conn| sqlx::query_as::<_, ProductRow>(&sql).bind(value).fetch_all(conn).await)?;
    Ok(assemble(db, &state.media, rows).await?.pop())
}

/// A page of products: `filter` is the rest of a `WHERE` with `$1` the cursor and `$2` the
/// limit.
pub(crate) async fn page(
    db: &Db,
    media: &MediaStore,
    filter: &str,
    order: &str,
    binds: &[&str],
    limit: u32,
) -> AppResult<Vec<Product>> {
    let sql =
        format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE {filter} ORDER BY {order} LIMIT ${}", binds.len() + 1);
    let rows = db_run!(db.read().await?, |conn| {
        let mut query = sqlx::query_as::<_, ProductRow>(&sql);
        for bind in binds {
            query = query.bind(*bind);
        }
        query.bind(i64::from(limit) + 1).fetch_all(conn).await
    })?;
    assemble(db, media, rows).await
}

/// What a product is made with: the body of `POST /api/v1/admin/products`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub title: String,
    /// Lowercase letters, digits and dashes; made from the title when absent.
    pub handle: Option<String>,
    /// Markdown.
    #[serde(default)]
    pub description: String,
    /// `draft` (default), `published` or `archived`.
    pub status: Option<String>,
    #[serde(default)]
    pub product_type: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The ids of the categories it sits in, up to 50.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Uploaded images (`POST /api/v1/admin/media`), in display order, up to 50.
    #[serde(default)]
    pub images: Vec<ImageRef>,
    /// Up to 3 options, such as `{"name": "Size", "values": ["S", "M", "L"]}`.
    #[serde(default)]
    pub options: Vec<ProductOption>,
    /// At least one; with options, one per combination sold.
    pub variants: Vec<NewVariant>,
    #[serde(default)]
    pub seo_title: String,
    #[serde(default)]
    pub seo_description: String,
    /// Any JSON object up to 16 KiB, for integrations.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVariant {
    pub sku: Option<String>,
    pub barcode: Option<String>,
    /// The value of each of the product's options, by option name.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub weight_grams: Option<i64>,
    pub length_mm: Option<i64>,
    pub width_mm: Option<i64>,
    pub height_mm: Option<i64>,
    /// Default `standard`.
    pub tax_class: Option<String>,
    #[serde(default)]
    pub prices: Vec<Price>,
    /// `deny` (default) or `continue` (take backorders).
    pub inventory_policy: Option<String>,
    /// Default 5.
    pub low_stock_threshold: Option<i64>,
}

impl NewVariant {
    /// The variant as written under `id`, its defaults filled in and its prices in currency
    /// order.
    pub(crate) fn written(&self, id: String, available: i64) -> Variant {
        let mut prices = self.prices.clone();
        prices.sort_by(|a, b| a.currency.cmp(&b.currency));
        Variant {
            id,
            sku: self.sku.clone(),
            barcode: self.barcode.clone(),
            options: self.options.clone(),
            weight_grams: self.weight_grams,
            length_mm: self.length_mm,
            width_mm: self.width_mm,
            height_mm: self.height_mm,
            tax_class: self.tax_class.clone().unwrap_or_else(|| "standard".into()),
            prices,
            inventory_policy: self.inventory_policy.clone().unwrap_or_else(|| "deny".into()),
            low_stock_threshold: self.low_stock_threshold.unwrap_or(5),
            available,
        }
    }
}

impl Variant {
    /// The variant as a new one would be given, to check it with new ones.
    pub(crate) fn as_new(&self) -> NewVariant {
        NewVariant {
            sku: self.sku.clone(),
            barcode: self.barcode.clone(),
            options: self.options.clone(),
            weight_grams: self.weight_grams,
            length_mm: self.length_mm,
            width_mm: self.width_mm,
            height_mm: self.height_mm,
            tax_class: Some(self.tax_class.clone()),
            prices: self.prices.clone(),
            inventory_policy: Some(self.inventory_policy.clone()),
            low_stock_threshold: Some(self.low_stock_threshold),
        }
    }
}

pub(crate) fn single_line(text: &str, max: usize) -> bool {
    text.chars().count() <= max && !text.chars().any(char::is_control)
}

pub(crate) fn check_handle(handle: &str) -> bool {
    (1..=120).contains(&handle.len())
        && handle.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !handle.starts_with('-')
        && !handle.ends_with('-')
        && !handle.contains("--")
}

/// A handle made from a title: `Café Crème 2` gives `cafe-creme-2`.
pub fn slugify(title: &str) -> String {
    let mut slug = String::with_capacity(title.len());
    for c in title.chars().flat_map(char::to_lowercase) {
        match super::text::fold(c) {
            Some(folded) => slug.push_str(folded),
            None if c.is_ascii_alphanumeric() => slug.push(c),
            None => slug.push('-'),
        }
    }
    let mut clean = String::with_capacity(slug.len());
    for part in slug.split('-').filter(|part| !part.is_empty()) {
        if !clean.is_empty() {
            clean.push('-');
        }
        clean.push_str(part);
    }
    clean.truncate(100);
    let clean = clean.trim_end_matches('-').to_owned();
    if clean.is_empty() { "product".into() } else { clean }
}

/// A handle not yet taken in `table`: `base`, else `base-2`, `base-3`...
pub(crate) async fn free_handle(tx: &mut Tx, table: &str, base: &str) -> AppResult<String> {
    let sql = format!("SELECT handle FROM {table} WHERE handle = $1 OR handle LIKE $2");
    let taken: Vec<String> = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, String>(&sql).bind(base).bind(format!("{base}-%")).fetch_all(conn).await
    })?;
    Ok(first_free(base, &taken))
}

/// `base` unless `taken` holds it, else the first of `base-2`, `base-3`... it does not hold.
pub(crate) fn first_free(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|h| h == base) {
        return base.to_owned();
    }
    (2..).map(|n| format!("{base}-{n}")).find(|h| !taken.contains(h)).unwrap_or_else(|| new_id("handle"))
}

const TAX_CLASSES: [&str; 4] = ["standard", "reduced", "zero", "exempt"];

fn check_tax_class(class: &str) -> bool {
    TAX_CLASSES.contains(&class)
        || ((1..=40).contains(&class.len())
            && class.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'))
}

const MAX_DIMENSION: i64 = 1_000_000_000;
/// The largest price: ten billion in major units of a two-decimal currency.
pub(crate) const MAX_AMOUNT: i64 = 1_000_000_000_000;
const MAX_METADATA_BYTES: usize = 16 * 1024;

/// Checks the product-level fields shared by create and update.
pub(crate) struct Fields<'a> {
    pub title: Option<&'a str>,
    pub handle: Option<&'a str>,
    pub description: Option<&'a str>,
    pub status: Option<&'a str>,
    pub product_type: Option<&'a str>,
    pub vendor: Option<&'a str>,
    pub tags: Option<&'a [String]>,
    pub seo_title: Option<&'a str>,
    pub seo_description: Option<&'a str>,
    pub metadata: Option<&'a Value>,
}

pub(crate) fn check_fields(fields: &Fields<'_>, violations: &mut Violations) {
    if let Some(title) = fields.title
        && (title.trim().is_empty() || !single_line(title, 255))
    {
        violations.add("title", "invalid_format", "must be 1 to 255 characters on one line");
    }
    if let Some(handle) = fields.handle
        && !check_handle(handle)
    {
        violations.add(
            "handle",
            "invalid_format",
            "must be 1 to 120 lowercase letters, digits and single inner dashes",
        );
    }
    if fields.description.is_some_and(|d| d.chars().count() > 50_000 || d.contains('\0')) {
        violations.add("description", "too_long", "must be at most 50000 characters");
    }
    if fields.status.is_some_and(|s| !matches!(s, "draft" | "published" | "archived")) {
        violations.add("status", "invalid", "must be `draft`, `published` or `archived`");
    }
    for (name, value, max) in [
        ("product_type", fields.product_type, 100),
        ("vendor", fields.vendor, 100),
        ("seo_title", fields.seo_title, 255),
        ("seo_description", fields.seo_description, 500),
    ] {
        if value.is_some_and(|v| !single_line(v, max)) {
            violations.add(name, "invalid_format", format!("must be at most {max} characters on one line"));
        }
    }
    if let Some(tags) = fields.tags {
        if tags.len() > 50 {
            violations.add("tags", "too_many", "must be at most 50");
        }
        for (index, tag) in tags.iter().enumerate() {
            // Commas separate tags in CSV files and in most shops' tools.
            if tag.trim().is_empty() || !single_line(tag, 50) || tag.contains(',') {
                violations.add(
                    &format!("tags[{index}]"),
                    "invalid_format",
                    "must be 1 to 50 characters on one line, without commas",
                );
            }
        }
    }
    if let Some(metadata) = fields.metadata {
        if !metadata.is_object() {
            violations.add("metadata", "invalid_type", "must be a JSON object");
        } else if metadata.to_string().len() > MAX_METADATA_BYTES {
            violations.add("metadata", "too_long", "must be at most 16 KiB as JSON");
        }
    }
}

/// Checks everything about a new product that can be checked without the database.
pub(crate) fn check_new(new: &NewProduct, violations: &mut Violations) {
    let fields = Fields {
        title: Some(&new.title),
        handle: new.handle.as_deref(),
        description: Some(&new.description),
        status: new.status.as_deref(),
        product_type: Some(&new.product_type),
        vendor: Some(&new.vendor),
        tags: Some(&new.tags),
        seo_title: Some(&new.seo_title),
        seo_description: Some(&new.seo_description),
        metadata: new.metadata.as_ref(),
    };
    check_fields(&fields, violations);
    check_options_and_variants(&new.options, &new.variants, violations);
}

/// Trimmed, without duplicates, in the order given.
pub(crate) fn clean_tags(tags: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    tags.iter().map(|t| t.trim().to_owned()).filter(|t| seen.insert(t.to_lowercase())).collect()
}

/// Without duplicates, in the order given.
pub(crate) fn clean_ids(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter().filter(|id| seen.insert(id.as_str())).cloned().collect()
}

/// Checks a product's options: up to 3, named once each, each with 1 to 100 distinct values.
pub(crate) fn check_options(options: &[ProductOption], violations: &mut Violations) {
    if options.len() > 3 {
        violations.add("options", "too_many", "must be at most 3");
    }
    let mut names = HashSet::new();
    for (index, option) in options.iter().enumerate() {
        if option.name.trim().is_empty() || !single_line(&option.name, 50) {
            violations.add(
                &format!("options[{index}].name"),
                "invalid_format",
                "must be 1 to 50 characters on one line",
            );
        } else if !names.insert(option.name.as_str()) {
            violations.add(&format!("options[{index}].name"), "duplicate", "names another option too");
        }
        let mut values = HashSet::new();
        if option.values.is_empty() || option.values.len() > 100 {
            violations.add(&format!("options[{index}].values"), "out_of_range", "must list 1 to 100 values");
        }
        for (at, value) in option.values.iter().enumerate() {
            if value.trim().is_empty() || !single_line(value, 100) || !values.insert(value.as_str()) {
                violations.add(
                    &format!("options[{index}].values[{at}]"),
                    "invalid_format",
                    "must be 1 to 100 characters on one line, once",
                );
            }
        }
    }
}

pub(crate) fn check_options_and_variants(
    options: &[ProductOption],
    variants: &[NewVariant],
    violations: &mut Violations,
) {
    check_options(options, violations);
    if variants.is_empty() || variants.len() > 100 {
        violations.add("variants", "out_of_range", "must list 1 to 100 variants");
    }
    if options.is_empty() && variants.len() > 1 {
        violations.add("variants", "too_many", "a product without options has one variant");
    }
    let mut combinations = HashSet::new();
    let mut skus = HashSet::new();
    for (index, variant) in variants.iter().enumerate() {
        let prefix = format!("variants[{index}].");
        if check_variant(options, variant, &prefix, violations) && !combinations.insert(&variant.options) {
            violations.add(&format!("{prefix}options"), "duplicate", "another variant has the same option values");
        }
        if let Some(sku) = &variant.sku
            && !skus.insert(sku.as_str())
        {
            violations.add(&format!("{prefix}sku"), "duplicate", "is given to another variant too");
        }
    }
}

/// The option values of each variant once the product's options become `options`: values
/// are kept by option name; an option new to the product gives every variant its first
/// value. Refused (naming `options`) when a variant's value would be dropped or two variants
/// would no longer differ.
pub(crate) fn refit_variants(
    options: &[ProductOption],
    variants: &[Variant],
) -> AppResult<Vec<(String, BTreeMap<String, String>)>> {
    let mut refitted = Vec::with_capacity(variants.len());
    let mut combinations = HashSet::new();
    for variant in variants {
        let mut values = BTreeMap::new();
        for option in options {
            let value = match variant.options.get(&option.name) {
                Some(value) if option.values.contains(value) => value.clone(),
                Some(value) => {
                    return Err(AppError::invalid_field(
                        "options",
                        "in_use",
                        format!("`{value}` of `{}` is still used by variant {}", option.name, variant.id),
                    ));
                }
                None => option.values.first().cloned().unwrap_or_default(),
            };
            values.insert(option.name.clone(), value);
        }
        if !combinations.insert(values.clone()) {
            return Err(AppError::invalid_field(
                "options",
                "ambiguous",
                "would leave two variants with the same option values: remove one first",
            ));
        }
        refitted.push((variant.id.clone(), values));
    }
    Ok(refitted)
}

/// Checks one variant against the product's options; its fields are named `{prefix}field`.
/// Whether its option values are a valid combination (to compare with other variants').
pub(crate) fn check_variant(
    options: &[ProductOption],
    variant: &NewVariant,
    prefix: &str,
    violations: &mut Violations,
) -> bool {
    let at = |field: &str| format!("{prefix}{field}");
    let chosen: Vec<&str> = variant.options.keys().map(String::as_str).collect();
    let expected: Vec<&str> = {
        let mut names: Vec<&str> = options.iter().map(|o| o.name.as_str()).collect();
        names.sort_unstable();
        names
    };
    let mut combination = false;
    if chosen != expected {
        violations.add(&at("options"), "mismatch", "must give a value for each of the product's options, and no other");
    } else if let Some((name, value)) = variant
        .options
        .iter()
        .find(|(name, value)| !options.iter().any(|o| &o.name == *name && o.values.contains(value)))
    {
        violations.add(&at("options"), "unknown_value", format!("`{value}` is not a value of option `{name}`"));
    } else {
        combination = true;
    }
    if variant
        .sku
        .as_ref()
        .is_some_and(|sku| sku.is_empty() || sku.len() > 64 || !sku.bytes().all(|b| b.is_ascii_graphic()))
    {
        violations.add(&at("sku"), "invalid_format", "must be 1 to 64 visible ASCII characters");
    }
    check_variant_fields(
        &VariantFields {
            barcode: variant.barcode.as_deref(),
            weight_grams: variant.weight_grams,
            length_mm: variant.length_mm,
            width_mm: variant.width_mm,
            height_mm: variant.height_mm,
            tax_class: variant.tax_class.as_deref(),
            inventory_policy: variant.inventory_policy.as_deref(),
            low_stock_threshold: variant.low_stock_threshold,
            prices: Some(&variant.prices),
        },
        prefix,
        violations,
    );
    combination
}

/// A variant's fields other than its options and SKU, as given.
pub(crate) struct VariantFields<'a> {
    pub barcode: Option<&'a str>,
    pub weight_grams: Option<i64>,
    pub length_mm: Option<i64>,
    pub width_mm: Option<i64>,
    pub height_mm: Option<i64>,
    pub tax_class: Option<&'a str>,
    pub inventory_policy: Option<&'a str>,
    pub low_stock_threshold: Option<i64>,
    pub prices: Option<&'a [Price]>,
}

pub(crate) fn check_variant_fields(variant: &VariantFields<'_>, prefix: &str, violations: &mut Violations) {
    let at = |field: &str| format!("{prefix}{field}");
    if variant.barcode.is_some_and(|b| b.is_empty() || b.len() > 64 || !b.bytes().all(|c| c.is_ascii_alphanumeric())) {
        violations.add(&at("barcode"), "invalid_format", "must be 1 to 64 letters and digits");
    }
    for (field, value) in [
        ("weight_grams", variant.weight_grams),
        ("length_mm", variant.length_mm),
        ("width_mm", variant.width_mm),
        ("height_mm", variant.height_mm),
    ] {
        if value.is_some_and(|v| !(0..=MAX_DIMENSION).contains(&v)) {
            violations.add(&at(field), "out_of_range", format!("must be between 0 and {MAX_DIMENSION}"));
        }
    }
    if variant.inventory_policy.is_some_and(|p| !matches!(p, "deny" | "continue")) {
        violations.add(&at("inventory_policy"), "invalid", "must be `deny` or `continue`");
    }
    if variant.low_stock_threshold.is_some_and(|t| !(0..=1_000_000).contains(&t)) {
        violations.add(&at("low_stock_threshold"), "out_of_range", "must be between 0 and 1000000");
    }
    if variant.tax_class.is_some_and(|class| !check_tax_class(class)) {
        violations.add(
            &at("tax_class"),
            "invalid_format",
            "must be standard, reduced, zero, exempt, or lowercase letters, digits, `_` and `-`",
        );
    }
    let prices = variant.prices.unwrap_or_default();
    if prices.len() > 30 {
        violations.add(&at("prices"), "too_many", "must be at most 30");
    }
    let mut currencies = HashSet::new();
    for (n, price) in prices.iter().enumerate() {
        let at = |field: &str| format!("{prefix}prices[{n}].{field}");
        if !is_currency(&price.currency) {
            violations.add(&at("currency"), "invalid", "must be an ISO 4217 currency code such as EUR");
        } else if !currencies.insert(price.currency.as_str()) {
            violations.add(&at("currency"), "duplicate", "has another price in this variant");
        }
        if !(0..=MAX_AMOUNT).contains(&price.amount) {
            violations.add(&at("amount"), "out_of_range", format!("must be between 0 and {MAX_AMOUNT} minor units"));
        }
        if price.compare_at_amount.is_some_and(|c| c <= price.amount || c > MAX_AMOUNT) {
            violations.add(&at("compare_at_amount"), "out_of_range", "must be above the amount");
        }
    }
}

/// Writes a product's variants and prices, which `check_options_and_variants` accepted, and
/// returns them as read back. A SKU another product uses is a 409 naming the variant.
pub(crate) async fn insert_variants(
    tx: &mut Tx,
    product_id: &str,
    variants: &[NewVariant],
    now: Timestamp,
    first_position: i64,
    sku_field: impl Fn(usize) -> String,
) -> AppResult<Vec<Variant>> {
    let mut written = Vec::with_capacity(variants.len());
    for (index, variant) in variants.iter().enumerate() {
        let position = first_position + index as i64;
        let new = variant.written(new_id("var"), 0);
        let options = serde_json::to_string(&new.options).map_err(AppError::internal)?;
        let inserted = db_run!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO product_variants (id, product_id, position, sku, barcode, option_values, weight_grams, \
                 length_mm, width_mm, height_mm, tax_class, created_at, updated_at, inventory_policy, \
                 low_stock_threshold) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12, $13, $14)",
            )
            .bind(&new.id)
            .bind(product_id)
            .bind(position)
            .bind(&new.sku)
            .bind(&new.barcode)
            .bind(&options)
            .bind(new.weight_grams)
            .bind(new.length_mm)
            .bind(new.width_mm)
            .bind(new.height_mm)
            .bind(&new.tax_class)
            .bind(now)
            .bind(&new.inventory_policy)
            .bind(new.low_stock_threshold)
            .execute(conn)
            .await
            .map(drop)
        });
        match inserted {
            Err(err) if dialect::is_unique_violation(&err, "product_variants", "sku") => {
                return Err(AppError::conflict(&sku_field(index), "Another variant has this SKU."));
            }
            other => other?,
        }
        write_prices(tx, &new.id, &new.prices).await?;
        written.push(new);
    }
    Ok(written)
}

/// Replaces a variant's prices.
pub(crate) async fn write_prices(tx: &mut Tx, variant_id: &str, prices: &[Price]) -> AppResult<()> {
    db_run!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM variant_prices WHERE variant_id = $1").bind(variant_id).execute(conn).await.map(drop)
    })?;
    for price in prices {
        db_run!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO variant_prices (variant_id, currency, amount, compare_at_amount) VALUES ($1, $2, $3, $4)",
            )
            .bind(variant_id)
            .bind(&price.currency)
            .bind(price.amount)
            .bind(price.compare_at_amount)
            .execute(conn)
            .await
            .map(drop)
        })?;
    }
    Ok(())
}

/// Checks a product's images: at most 50, each named once, with alternative text of at most
/// 500 characters on one line, each an uploaded image.
pub(crate) async fn check_images(tx: &mut Tx, images: &[ImageRef]) -> AppResult<()> {
    let mut violations = Violations::default();
    if images.len() > 50 {
        violations.add("images", "too_many", "must be at most 50");
    }
    let ids: Vec<&str> = images.iter().map(|i| i.media_id.as_str()).collect();
    let mut known: Vec<String> = Vec::new();
    if !ids.is_empty() && ids.len() <= 50 {
        let list: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT id FROM media WHERE id IN ({})", list.join(", "));
        known = db_run!(tx.conn(), |conn| {
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for id in &ids {
                query = query.bind(*id);
            }
            query.fetch_all(conn).await
        })?;
    }
    let mut seen = HashSet::new();
    for (index, image) in images.iter().enumerate().take(50) {
        if !known.contains(&image.media_id) {
            violations.add(&format!("images[{index}].media_id"), "unknown", "names no uploaded image");
        } else if !seen.insert(image.media_id.as_str()) {
            violations.add(&format!("images[{index}].media_id"), "duplicate", "is listed twice");
        }
        if !single_line(&image.alt, 500) {
            violations.add(
                &format!("images[{index}].alt"),
                "invalid_format",
                "must be at most 500 characters on one line",
            );
        }
    }
    violations.finish()
}

/// Replaces a product's images, in order.
pub(crate) async fn write_images(tx: &mut Tx, product_id: &str, images: &[ImageRef]) -> AppResult<()> {
    db_run!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM product_images WHERE product_id = $1").bind(product_id).execute(conn).await.map(drop)
    })?;
    for (position, image) in images.iter().enumerate() {
        db_run!(tx.conn(), |conn| {
            sqlx::query("INSERT INTO product_images (product_id, media_id, position, alt) VALUES ($1, $2, $3, $4)")
                .bind(product_id)
                .bind(&image.media_id)
                .bind(position as i64)
                .bind(image.alt.trim())
                .execute(conn)
                .await
                .map(drop)
        })?;
    }
    Ok(())
}

/// A product's images as written in `tx`, with their sizes.
pub(crate) async fn find_images(tx: &mut Tx, state: &AppState, product_id: &str) -> AppResult<Vec<ProductImage>> {
    let rows = db_run!(tx.conn(), |conn| {
        sqlx::query_as::<_, (String, String, i64, i64, String)>(
            "SELECT i.media_id, i.alt, m.width, m.height, m.variants FROM product_images i \
             JOIN media m ON m.id = i.media_id WHERE i.product_id = $1 ORDER BY i.position",
        )
        .bind(product_id)
        .fetch_all(conn)
        .await
    })?;
    Ok(rows
        .into_iter()
        .map(|(media_id, alt, width, height, variants)| ProductImage {
            media_id,
            alt,
            width: width as u32,
            height: height as u32,
            sizes: state.media.sizes(&variants),
        })
        .collect())
}

/// Replaces a product's rows in `product_tags`.
pub(crate) async fn write_tags(tx: &mut Tx, product_id: &str, tags: &[String]) -> AppResult<()> {
    db_run!(tx.conn(), |conn| {
        sqlx::query("DELETE FROM product_tags WHERE product_id = $1").bind(product_id).execute(conn).await.map(drop)
    })?;
    for tag in tags {
        db_run!(tx.conn(), |conn| {
            sqlx::query("INSERT INTO product_tags (product_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(product_id)
                .bind(tag.to_lowercase())
                .execute(conn)
                .await
                .map(drop)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_made_from_titles() {
        assert_eq!(slugify("Café Crème 2"), "cafe-creme-2");
        assert_eq!(slugify("  T-Shirt -- Blue!! "), "t-shirt-blue");
        assert_eq!(slugify("Straße"), "strasse");
        assert_eq!(slugify("日本"), "product");
        assert!(check_handle(&slugify(&"long title ".repeat(30))));
        assert!(!check_handle("a--b") && !check_handle("-a") && !check_handle("A"));
    }
}
