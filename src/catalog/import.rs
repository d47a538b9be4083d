//! Products in and out as CSV, one row per variant (the layout is in `docs/CSV.md`).
//! An import upserts products by handle and variants by SKU (or, without one, by option
//! values), so importing the same file twice changes nothing. Every row is checked before
//! anything is written; by default one bad row stops the whole import.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::inventory::{self, Actor, DEFAULT_LOCATION, Line};
use super::markdown;
use super::products::{self, NewProduct, NewVariant, PRODUCT_COLUMNS, Price, Product, ProductOption, ProductRow};
use crate::app::AppState;
use crate::messaging::webhooks::Listeners;
use crate::platform::db::{Db, Tx};
use crate::platform::error::{AppError, AppResult, FieldError, Violations};
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

/// The columns of a product row, before the price columns (`price_EUR`,
/// `compare_at_price_EUR`, one pair per currency).
pub const COLUMNS: [&str; 26] = [
    "handle",
    "title",
    "description",
    "status",
    "product_type",
    "vendor",
    "tags",
    "categories",
    "seo_title",
    "seo_description",
    "option1_name",
    "option1_value",
    "option2_name",
    "option2_value",
    "option3_name",
    "option3_value",
    "sku",
    "barcode",
    "weight_grams",
    "length_mm",
    "width_mm",
    "height_mm",
    "tax_class",
    "inventory_policy",
    "low_stock_threshold",
    "inventory",
];

/// The most rows one import takes.
pub const MAX_ROWS: usize = 200_000;

/// How an import runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Check and count, write nothing.
    pub dry_run: bool,
    /// Write the products whose rows are all good and report the others, instead of
    /// writing nothing when any row is bad.
    pub skip_invalid: bool,
}

/// Why one cell was refused. Row 1 is the header.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct RowError {
    pub row: usize,
    pub column: String,
    pub reason: String,
}

/// What an import found and did.
#[derive(Debug, Default, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Variant rows read.
    pub rows: usize,
    /// Distinct handles.
    pub products: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Products left out because some of their rows were bad (with `skip_invalid`).
    pub skipped: usize,
    pub errors: Vec<RowError>,
    /// Whether anything was written: false on a dry run or when errors stopped it.
    pub written: bool,
}

/// A CSV file read into rows, with its columns found.
struct Sheet {
    columns: HashMap<String, usize>,
    currencies: Vec<String>,
    rows: Vec<csv::StringRecord>,
}

impl Sheet {
    /// A cell, trimmed, with the apostrophe an export puts before a formula sign taken off.
    fn cell<'a>(&self, row: &'a csv::StringRecord, column: &str) -> Option<&'a str> {
        self.raw_cell(row, column).map(|cell| undefuse(cell.trim()))
    }

    /// A cell as written, but for that apostrophe.
    fn raw_cell<'a>(&self, row: &'a csv::StringRecord, column: &str) -> Option<&'a str> {
        self.columns.get(column).map(|at| undefuse(row.get(*at).unwrap_or("")))
    }

    fn has(&self, column: &str) -> bool {
        self.columns.contains_key(column)
    }
}

/// Takes off the apostrophe an export puts before a cell a spreadsheet would run.
fn undefuse(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '@', '-']) => rest,
        _ => cell,
    }
}

fn read_sheet(csv_text: &[u8], errors: &mut Vec<RowError>) -> Option<Sheet> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(csv_text);
    let headers = match reader.headers() {
        Ok(headers) => headers.clone(),
        Err(err) => {
            errors.push(RowError { row: 1, column: String::new(), reason: format!("cannot be read as CSV: {err}") });
            return None;
        }
    };
    let mut columns = HashMap::new();
    let mut currencies = Vec::new();
    for (at, name) in headers.iter().enumerate() {
        let name = name.trim().trim_start_matches('\u{feff}');
        let currency = name.strip_prefix("compare_at_price_").or_else(|| name.strip_prefix("price_"));
        let known = COLUMNS.contains(&name) || currency.is_some_and(super::money::is_currency);
        if !known {
            errors.push(RowError {
                row: 1,
                column: name.into(),
                reason: "is not a column of the product layout".into(),
            });
        } else if columns.insert(name.to_owned(), at).is_some() {
            errors.push(RowError { row: 1, column: name.into(), reason: "appears twice".into() });
        }
        if let Some(currency) = currency.filter(|c| super::money::is_currency(c))
            && !currencies.iter().any(|c| c == currency)
        {
            currencies.push(currency.to_owned());
        }
    }
    if !columns.contains_key("handle") {
        errors.push(RowError {
            row: 1,
            column: "handle".into(),
            reason: "is required: it names each row's product".into(),
        });
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        match record {
            Ok(record) => rows.push(record),
            Err(err) => {
                let row = err.position().map_or(0, |p| p.line() as usize);
                errors.push(RowError { row, column: String::new(), reason: format!("cannot be read as CSV: {err}") });
                return None;
            }
        }
        if rows.len() > MAX_ROWS {
            errors.push(RowError {
                row: rows.len() + 1,
                column: String::new(),
                reason: format!("more than {MAX_ROWS} rows"),
            });
            return None;
        }
    }
    errors.is_empty().then_some(Sheet { columns, currencies, rows })
}

/// The problems with a file's header row (unknown or repeated columns, no `handle`) or its
/// CSV itself: what can be told at once, before an import is queued.
pub fn check_layout(csv_text: &[u8]) -> Vec<RowError> {
    let mut errors = Vec::new();
    read_sheet(csv_text, &mut errors);
    errors
}

/// One product's rows, as the file wants it.
struct Wanted {
    handle: String,
    /// The data row numbers (1 is the header) of its variants, in order.
    rows: Vec<usize>,
    product: NewProduct,
    /// Category handles.
    category_handles: Vec<String>,
    /// Per variant (in `product.variants` order): the on-hand count asked for at the default
    /// location, and the currencies whose price columns the file has.
    inventory: Vec<Option<i64>>,
}

fn number(cell: Option<&str>, column: &str, row: usize, errors: &mut Vec<RowError>) -> Option<i64> {
    let cell = cell.filter(|c| !c.is_empty())?;
    match cell.parse::<i64>() {
        Ok(value) => Some(value),
        Err(_) => {
            errors.push(RowError { row, column: column.into(), reason: "must be a whole number".into() });
            None
        }
    }
}

fn list(cell: Option<&str>) -> Vec<String> {
    cell.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Builds each product the file describes, from its rows in order of first appearance.
fn wanted_products(sheet: &Sheet, errors: &mut Vec<RowError>) -> Vec<Wanted> {
    let mut order: Vec<String> = Vec::new();
    let mut rows_of: HashMap<String, Vec<usize>> = HashMap::new();
    for (index, record) in sheet.rows.iter().enumerate() {
        let row = index + 2;
        let handle = sheet.cell(record, "handle").unwrap_or("");
        if handle.is_empty() {
            errors.push(RowError { row, column: "handle".into(), reason: "is required on every row".into() });
            continue;
        }
        if !rows_of.contains_key(handle) {
            order.push(handle.to_owned());
        }
        rows_of.entry(handle.to_owned()).or_default().push(row);
    }
    let mut wanted = Vec::with_capacity(order.len());
    for handle in order {
        let rows = rows_of.remove(&handle).unwrap_or_default();
        let first = &sheet.rows[rows[0] - 2];
        let text = |column: &str| sheet.cell(first, column).unwrap_or("").to_owned();
        // A description is Markdown, where trailing spaces and newlines can mean something.
        let description = sheet.raw_cell(first, "description").unwrap_or("").to_owned();
        let mut options: Vec<ProductOption> = Vec::new();
        for n in 1..=3 {
            let name = text(&format!("option{n}_name"));
            if !name.is_empty() {
                options.push(ProductOption { name, values: Vec::new() });
            }
        }
        let mut variants = Vec::with_capacity(rows.len());
        let mut inventory = Vec::with_capacity(rows.len());
        for &row in &rows {
            let record = &sheet.rows[row - 2];
            let cell = |column: &str| sheet.cell(record, column);
            let optional = |column: &str| cell(column).filter(|c| !c.is_empty()).map(str::to_owned);
            let mut values = BTreeMap::new();
            for (n, option) in options.iter_mut().enumerate() {
                let column = format!("option{}_value", n + 1);
                let value = cell(&column).unwrap_or("").to_owned();
                if value.is_empty() {
                    errors.push(RowError {
                        row,
                        column,
                        reason: format!("needs a value for option `{}`", option.name),
                    });
                    continue;
                }
                if !option.values.contains(&value) {
                    option.values.push(value.clone());
                }
                values.insert(option.name.clone(), value);
            }
            let mut prices = Vec::new();
            for currency in &sheet.currencies {
                let amount = number(cell(&format!("price_{currency}")), &format!("price_{currency}"), row, errors);
                let compare_column = format!("compare_at_price_{currency}");
                let compare_at = number(cell(&compare_column), &compare_column, row, errors);
                match (amount, compare_at) {
                    (Some(amount), compare_at_amount) => {
                        prices.push(Price { currency: currency.clone(), amount, compare_at_amount });
                    }
                    (None, Some(_)) => errors.push(RowError {
                        row,
                        column: compare_column,
                        reason: "needs a price in the same currency".into(),
                    }),
                    (None, None) => {}
                }
            }
            inventory.push(number(cell("inventory"), "inventory", row, errors));
            if inventory.last().copied().flatten().is_some_and(|units| units < 0) {
                errors.push(RowError { row, column: "inventory".into(), reason: "must not be negative".into() });
            }
            variants.push(NewVariant {
                sku: optional("sku"),
                barcode: optional("barcode"),
                options: values,
                weight_grams: number(cell("weight_grams"), "weight_grams", row, errors),
                length_mm: number(cell("length_mm"), "length_mm", row, errors),
                width_mm: number(cell("width_mm"), "width_mm", row, errors),
                height_mm: number(cell("height_mm"), "height_mm", row, errors),
                tax_class: optional("tax_class"),
                prices,
                inventory_policy: optional("inventory_policy"),
                low_stock_threshold: number(cell("low_stock_threshold"), "low_stock_threshold", row, errors),
            });
        }
        let status = text("status");
        wanted.push(Wanted {
            category_handles: list(sheet.cell(first, "categories")),
            product: NewProduct {
                title: text("title"),
                handle: Some(handle.clone()),
                description,
                status: (!status.is_empty()).then_some(status),
                product_type: text("product_type"),
                vendor: text("vendor"),
                tags: list(sheet.cell(first, "tags")),
                categories: Vec::new(),
                images: Vec::new(),
                options,
                variants,
                seo_title: text("seo_title"),
                seo_description: text("seo_description"),
                metadata: None,
            },
            handle,
            rows,
            inventory,
        });
    }
    wanted
}

/// Where a check's field (`variants[2].prices[0].amount`) sits in the file.
fn locate(wanted: &Wanted, field: &str, currencies: &[Price]) -> (usize, String) {
    let first = wanted.rows[0];
    if let Some(rest) = field.strip_prefix("variants[") {
        let (index, rest) = rest.split_once(']').unwrap_or(("0", ""));
        let row = index.parse::<usize>().ok().and_then(|i| wanted.rows.get(i)).copied().unwrap_or(first);
        let rest = rest.trim_start_matches('.');
        let column = if let Some(price) = rest.strip_prefix("prices[") {
            let (n, what) = price.split_once("].").unwrap_or(("0", "amount"));
            let currency = n.parse::<usize>().ok().and_then(|n| currencies.get(n)).map_or("", |p| p.currency.as_str());
            if what == "compare_at_amount" {
                format!("compare_at_price_{currency}")
            } else {
                format!("price_{currency}")
            }
        } else if rest.starts_with("options") {
            "option1_value".to_owned()
        } else if rest.is_empty() {
            "sku".to_owned()
        } else {
            rest.to_owned()
        };
        return (row, column);
    }
    if let Some(rest) = field.strip_prefix("options[") {
        let n = rest.split(']').next().and_then(|n| n.parse::<usize>().ok()).unwrap_or(0) + 1;
        let what = if rest.contains("values") { "value" } else { "name" };
        return (first, format!("option{n}_{what}"));
    }
    let column = field.split('[').next().unwrap_or(field);
    (first, if column == "variants" { "sku".into() } else { column.to_owned() })
}

/// A product as the file leaves it: the current one with the file's changes.
struct Plan {
    wanted: Wanted,
    current: Option<Product>,
    categories: Vec<String>,
    /// Whether a row without a SKU is matched by SKU only (the file has no option columns,
    /// so its option values say nothing).
    by_sku_only: bool,
}

/// Reads products by handle, whole.
async fn current_products(
    db: &Db,
    media: &super::media::MediaStore,
    handles: &[&str],
) -> AppResult<HashMap<String, Product>> {
    let mut found = HashMap::new();
    for chunk in handles.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE handle IN ({})", list.join(", "));
        let rows = db_run!(db.read().await?, |conn| {
            let mut query = sqlx::query_as::<_, ProductRow>(&sql);
            for handle in chunk {
                query = query.bind(*handle);
            }
            query.fetch_all(conn).await
        })?;
        for product in products::assemble(db, media, rows).await? {
            found.insert(product.handle.clone(), product);
        }
    }
    Ok(found)
}

/// Which product owns each SKU.
async fn sku_owners(db: &Db, skus: &[&str]) -> AppResult<HashMap<String, String>> {
    let mut owners = HashMap::new();
    for chunk in skus.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT v.sku, p.handle FROM product_variants v JOIN products p ON p.id = v.product_id WHERE v.sku IN ({})",
            list.join(", ")
        );
        let rows = db_run!(db.read().await?, |conn| {
            let mut query = sqlx::query_as::<_, (String, String)>(&sql);
            for sku in chunk {
                query = query.bind(*sku);
            }
            query.fetch_all(conn).await
        })?;
        owners.extend(rows);
    }
    Ok(owners)
}

/// The existing variant a row stands for: the one with its SKU, else the one with its
/// option values.
fn matching_variant<'a>(
    current: &'a Product,
    variant: &NewVariant,
    by_sku_only: bool,
) -> Option<&'a products::Variant> {
    match &variant.sku {
        Some(sku) => current.variants.iter().find(|v| v.sku.as_deref() == Some(sku)),
        // Without option columns a row without a SKU can only stand for a product's one variant.
        None if by_sku_only => match current.variants.as_slice() {
            [only] if only.sku.is_none() => Some(only),
            _ => None,
        },
        None => current.variants.iter().find(|v| v.sku.is_none() && v.options == variant.options),
    }
}

/// Merges the file's product into the current one: the file's columns win, columns the
/// file does not have keep their values, its variants replace or join the current ones, and
/// variants it does not name stay.
fn merge(wanted: &mut Wanted, current: &Product, sheet: &Sheet) {
    let new = &mut wanted.product;
    let keep = |column: &str| !sheet.has(column);
    if keep("title") {
        new.title = current.title.clone();
    }
    if keep("description") {
        new.description = current.description.clone();
    }
    if keep("status") || new.status.is_none() {
        new.status = Some(current.status.clone());
    }
    if keep("product_type") {
        new.product_type = current.product_type.clone();
    }
    if keep("vendor") {
        new.vendor = current.vendor.clone();
    }
    if keep("tags") {
        new.tags = current.tags.clone();
    }
    if keep("seo_title") {
        new.seo_title = current.seo_title.clone();
    }
    if keep("seo_description") {
        new.seo_description = current.seo_description.clone();
    }
    new.metadata = Some(current.metadata.clone());
    let options_kept = keep("option1_name");
    if options_kept {
        new.options = current.options.clone();
    } else {
        let mut options = current.options.clone();
        for option in &new.options {
            match options.iter_mut().find(|o| o.name == option.name) {
                Some(existing) => {
                    for value in &option.values {
                        if !existing.values.contains(value) {
                            existing.values.push(value.clone());
                        }
                    }
                }
                None => options.push(option.clone()),
            }
        }
        options.retain(|o| new.options.iter().any(|n| n.name == o.name));
        new.options = options;
    }
    for variant in &mut new.variants {
        let Some(existing) = matching_variant(current, variant, options_kept) else { continue };
        if options_kept {
            variant.options = existing.options.clone();
        }
        if keep("barcode") {
            variant.barcode = existing.barcode.clone();
        }
        for (column, value, old) in [
            ("weight_grams", &mut variant.weight_grams, existing.weight_grams),
            ("length_mm", &mut variant.length_mm, existing.length_mm),
            ("width_mm", &mut variant.width_mm, existing.width_mm),
            ("height_mm", &mut variant.height_mm, existing.height_mm),
        ] {
            if keep(column) {
                *value = old;
            }
        }
        if keep("tax_class") || variant.tax_class.is_none() {
            variant.tax_class = Some(existing.tax_class.clone());
        }
        if keep("inventory_policy") || variant.inventory_policy.is_none() {
            variant.inventory_policy = Some(existing.inventory_policy.clone());
        }
        if keep("low_stock_threshold") || variant.low_stock_threshold.is_none() {
            variant.low_stock_threshold = Some(existing.low_stock_threshold);
        }
        // Currencies without a column keep their prices.
        for price in &existing.prices {
            if !sheet.currencies.contains(&price.currency) {
                variant.prices.push(price.clone());
            }
        }
        variant.prices.sort_by(|a, b| a.currency.cmp(&b.currency));
    }
}

/// Checks the file and, unless told not to or something is wrong, writes it in one
/// transaction. `progress` hears how many products were written of how many.
pub async fn import_products(
    state: &AppState,
    csv_text: &[u8],
    options: ImportOptions,
    actor: Actor<'_>,
    progress: &(dyn Fn(usize, usize) + Send + Sync),
) -> AppResult<ImportReport> {
    let mut report = ImportReport::default();
    let Some(sheet) = read_sheet(csv_text, &mut report.errors) else { return Ok(report) };
    report.rows = sheet.rows.len();
    let mut errors = Vec::new();
    let wanted = wanted_products(&sheet, &mut errors);
    report.products = wanted.len();
    let handles: Vec<&str> = wanted.iter().map(|w| w.handle.as_str()).collect();
    let mut current = current_products(&state.db, &state.media, &handles).await?;
    let skus: Vec<&str> =
        wanted.iter().flat_map(|w| w.product.variants.iter().filter_map(|v| v.sku.as_deref())).collect();
    let owners = sku_owners(&state.db, &skus).await?;
    let categories: HashMap<String, String> = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String)>("SELECT handle, id FROM categories").fetch_all(conn).await
    })?
    .into_iter()
    .collect();

    let mut plans = Vec::with_capacity(wanted.len());
    let mut bad_handles: HashSet<String> = errors
        .iter()
        .filter_map(|e: &RowError| sheet.rows.get(e.row.wrapping_sub(2)))
        .filter_map(|record| sheet.cell(record, "handle").map(str::to_owned))
        .collect();
    let mut seen_skus: HashMap<String, usize> = HashMap::new();
    for mut wanted in wanted {
        let mut problems = Vec::new();
        let existing = current.remove(&wanted.handle);
        for (variant, row) in wanted.product.variants.iter().zip(&wanted.rows) {
            if let Some(sku) = &variant.sku {
                if let Some(owner) = owners.get(sku).filter(|owner| **owner != wanted.handle) {
                    problems.push(RowError {
                        row: *row,
                        column: "sku".into(),
                        reason: format!("belongs to product `{owner}`"),
                    });
                }
                if let Some(other) = seen_skus.insert(sku.clone(), *row) {
                    problems.push(RowError {
                        row: *row,
                        column: "sku".into(),
                        reason: format!("is on row {other} too"),
                    });
                }
            }
        }
        let mut category_ids = Vec::new();
        for handle in &wanted.category_handles {
            match categories.get(handle) {
                Some(id) => category_ids.push(id.clone()),
                None => problems.push(RowError {
                    row: wanted.rows[0],
                    column: "categories".into(),
                    reason: format!("`{handle}` names no category"),
                }),
            }
        }
        if let Some(current) = &existing {
            merge(&mut wanted, current, &sheet);
            if !sheet.has("categories") {
                category_ids = current.categories.clone();
            }
        }
        // The product as it will be, with the variants the file leaves alone, passes the
        // same checks as one made through the API.
        let by_sku_only = !sheet.has("option1_name");
        let mut whole = wanted.product.clone();
        if let Some(current) = &existing {
            for variant in &current.variants {
                let named = wanted
                    .product
                    .variants
                    .iter()
                    .any(|v| matching_variant(current, v, by_sku_only).is_some_and(|m| m.id == variant.id));
                if !named {
                    whole.variants.push(variant.as_new());
                }
            }
        }
        let mut violations = Violations::default();
        products::check_new(&whole, &mut violations);
        for FieldError { field, message, .. } in violations.into_errors() {
            let prices = field
                .strip_prefix("variants[")
                .and_then(|rest| rest.split(']').next())
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| whole.variants.get(i))
                .map(|v| v.prices.clone())
                .unwrap_or_default();
            let (row, column) = locate(&wanted, &field, &prices);
            problems.push(RowError { row, column, reason: message });
        }
        if !problems.is_empty() {
            bad_handles.insert(wanted.handle.clone());
            errors.extend(problems);
            continue;
        }
        plans.push(Plan { wanted, current: existing, categories: category_ids, by_sku_only });
    }
    errors.sort_by(|a, b| (a.row, &a.column).cmp(&(b.row, &b.column)));
    report.errors = errors;
    plans.retain(|plan| !bad_handles.contains(&plan.wanted.handle));
    report.skipped = if options.skip_invalid { bad_handles.len() } else { 0 };
    if (!report.errors.is_empty() && !options.skip_invalid) || plans.is_empty() && !report.errors.is_empty() {
        return Ok(report);
    }

    let total = plans.len();
    let many = total > 1_000;
    let mut tx = state.db.begin().await?;
    let listeners = Listeners::load(&mut tx).await?;
    let (new, existing): (Vec<Plan>, Vec<Plan>) = plans.into_iter().partition(|plan| plan.current.is_none());
    let mut done = 0;
    let mut new = new.into_iter().peekable();
    while new.peek().is_some() {
        let batch: Vec<Plan> = new.by_ref().take(200).collect();
        done += batch.len();
        report.created += create_batch(state, &mut tx, &listeners, batch, actor, !many).await?;
        progress(done, total);
    }
    for plan in existing {
        match write_plan(state, &mut tx, &listeners, plan, actor, !many).await? {
            Outcome::Updated => report.updated += 1,
            Outcome::Unchanged => report.unchanged += 1,
        }
        done += 1;
        if done % 100 == 0 || done == total {
            progress(done, total);
        }
    }
    if many {
        // One refill of the shelf costs less than thousands of single refreshes.
        tx.invalidate(super::taxonomy_changed());
    }
    if options.dry_run {
        drop(tx);
        return Ok(report);
    }
    tx.commit().await?;
    report.written = true;
    Ok(report)
}

enum Outcome {
    Updated,
    Unchanged,
}

/// Writes new products many rows to a statement; returns how many.
async fn create_batch(
    state: &AppState,
    tx: &mut Tx,
    listeners: &Listeners,
    plans: Vec<Plan>,
    actor: Actor<'_>,
    announce: bool,
) -> AppResult<usize> {
    use crate::platform::db::Param::{Int, MaybeInt, MaybeText, Text};
    let now = Timestamp::now();
    let count = plans.len();
    let tell = listeners.listen_to("product.created");
    let (mut products_rows, mut tag_rows, mut category_rows) = (Vec::new(), Vec::new(), Vec::new());
    let (mut variant_rows, mut price_rows, mut movement_rows, mut level_rows) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut created = Vec::new();
    for Plan { wanted, categories, .. } in plans {
        let Wanted { product: new, inventory, handle, .. } = wanted;
        let id = crate::platform::ids::new_id("prd");
        let status = new.status.clone().unwrap_or_else(|| "draft".into());
        let published_at = (status == "published").then_some(now);
        let tags = products::clean_tags(&new.tags);
        let description_html = markdown::render(&new.description);
        let options = serde_json::to_string(&new.options).map_err(AppError::internal)?;
        products_rows.push(vec![
            Text(id.clone()),
            Text(handle.clone()),
            Text(new.title.trim().to_owned()),
            Text(new.description.clone()),
            Text(description_html.clone()),
            Text(status.clone()),
            Text(new.product_type.trim().to_owned()),
            Text(new.vendor.trim().to_owned()),
            Text(Value::from(tags.clone()).to_string()),
            Text(options),
            Text(new.seo_title.trim().to_owned()),
            Text(new.seo_description.trim().to_owned()),
            Text("{}".into()),
            MaybeInt(published_at.map(|t| t.0)),
            Int(now.0),
            Int(now.0),
        ]);
        for tag in &tags {
            tag_rows.push(vec![Text(id.clone()), Text(tag.to_lowercase())]);
        }
        for category in &categories {
            category_rows.push(vec![Text(id.clone()), Text(category.clone())]);
        }
        let mut variants = Vec::with_capacity(new.variants.len());
        for (position, (variant, units)) in new.variants.iter().zip(inventory).enumerate() {
            let units = units.unwrap_or(0);
            let variant = variant.written(crate::platform::ids::new_id("var"), units);
            let variant_id = variant.id.clone();
            variant_rows.push(vec![
                Text(variant_id.clone()),
                Text(id.clone()),
                Int(position as i64),
                MaybeText(variant.sku.clone()),
                MaybeText(variant.barcode.clone()),
                Text(serde_json::to_string(&variant.options).map_err(AppError::internal)?),
                MaybeInt(variant.weight_grams),
                MaybeInt(variant.length_mm),
                MaybeInt(variant.width_mm),
                MaybeInt(variant.height_mm),
                Text(variant.tax_class.clone()),
                Int(now.0),
                Int(now.0),
                Text(variant.inventory_policy.clone()),
                Int(variant.low_stock_threshold),
            ]);
            for price in &variant.prices {
                price_rows.push(vec![
                    Text(variant_id.clone()),
                    Text(price.currency.clone()),
                    Int(price.amount),
                    MaybeInt(price.compare_at_amount),
                ]);
            }
            if units > 0 {
                movement_rows.push(vec![
                    Text(crate::platform::ids::new_id("mov")),
                    Text(variant_id.clone()),
                    Text(DEFAULT_LOCATION.into()),
                    Int(units),
                    Text("adjusted".into()),
                    Text("import".into()),
                    MaybeText(None),
                    Text(actor.kind.into()),
                    Text(actor.id.into()),
                    Int(now.0),
                ]);
                level_rows.push(vec![
                    Text(variant_id.clone()),
                    Text(DEFAULT_LOCATION.into()),
                    Int(units),
                    Int(0),
                    Int(now.0),
                ]);
            }
            if tell {
                variants.push(variant);
            }
        }
        if announce {
            tx.invalidate(super::changed(&id));
        }
        if tell {
            created.push(Product {
                id,
                handle,
                title: new.title.trim().to_owned(),
                description: new.description.clone(),
                description_html,
                status,
                product_type: new.product_type.trim().to_owned(),
                vendor: new.vendor.trim().to_owned(),
                tags,
                categories,
                options: new.options.clone(),
                seo_title: new.seo_title.trim().to_owned(),
                seo_description: new.seo_description.trim().to_owned(),
                metadata: Value::Object(Default::default()),
                images: Vec::new(),
                variants,
                published_at,
                created_at: now,
                updated_at: now,
                version: 1,
            });
        }
    }
    let taken = |err: sqlx::Error| {
        if crate::platform::db::dialect::is_unique_violation(&err, "products", "handle")
            || crate::platform::db::dialect::is_unique_violation(&err, "product_variants", "sku")
        {
            return AppError::new(
                crate::platform::error::ErrorCode::Conflict,
                "A handle or SKU in the file was taken while the import ran; nothing was written. Try again.",
            );
        }
        err.into()
    };
    tx.insert_rows(
        "INSERT INTO products (id, handle, title, description, description_html, status, product_type, vendor, \
         tags, options, seo_title, seo_description, metadata, published_at, created_at, updated_at)",
        &products_rows,
        "",
    )
    .await
    .map_err(taken)?;
    tx.insert_rows("INSERT INTO product_tags (product_id, tag)", &tag_rows, "ON CONFLICT DO NOTHING").await?;
    tx.insert_rows(
        "INSERT INTO product_categories (product_id, category_id)",
        &category_rows,
        "ON CONFLICT DO NOTHING",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO product_variants (id, product_id, position, sku, barcode, option_values, weight_grams, \
         length_mm, width_mm, height_mm, tax_class, created_at, updated_at, inventory_policy, low_stock_threshold)",
        &variant_rows,
        "",
    )
    .await
    .map_err(taken)?;
    tx.insert_rows("INSERT INTO variant_prices (variant_id, currency, amount, compare_at_amount)", &price_rows, "")
        .await?;
    tx.insert_rows(
        "INSERT INTO inventory_movements (id, variant_id, location_id, quantity, kind, reason, reference, \
         actor_kind, actor_id, created_at)",
        &movement_rows,
        "",
    )
    .await?;
    tx.insert_rows(
        "INSERT INTO inventory_levels (variant_id, location_id, on_hand, reserved, updated_at)",
        &level_rows,
        "",
    )
    .await?;
    for product in &created {
        listeners.emit(state, tx, "product.created", product).await?;
    }
    Ok(count)
}

/// Brings one variant's on-hand count at the default location to `units` with an
/// adjustment; whether it moved.
async fn set_stock(state: &AppState, tx: &mut Tx, variant_id: &str, units: i64, actor: Actor<'_>) -> AppResult<bool> {
    let on_hand = db_run!(tx.conn(), |conn| {
        sqlx::query_scalar::<_, i64>("SELECT on_hand FROM inventory_levels WHERE variant_id = $1 AND location_id = $2")
            .bind(variant_id)
            .bind(DEFAULT_LOCATION)
            .fetch_optional(conn)
            .await
    })?
    .unwrap_or(0);
    if on_hand == units {
        return Ok(false);
    }
    let line = Line {
        variant_id,
        location_id: DEFAULT_LOCATION,
        quantity: units - on_hand,
        kind: "adjusted",
        reason: "import",
        reference: None,
        actor,
    };
    inventory::record_movement(state, tx, line).await?;
    Ok(true)
}

async fn write_plan(
    state: &AppState,
    tx: &mut Tx,
    listeners: &Listeners,
    plan: Plan,
    actor: Actor<'_>,
    announce: bool,
) -> AppResult<Outcome> {
    let Plan { wanted, current, categories, by_sku_only } = plan;
    let Some(current) = current else { return Ok(Outcome::Unchanged) };
    let new = &wanted.product;
    let now = Timestamp::now();
    let tags = products::clean_tags(&new.tags);
    let status = new.status.clone().unwrap_or_else(|| "draft".into());
    let mut changed = false;
    let own_fields_differ = current.title != new.title.trim()
        || current.description != new.description
        || current.status != status
        || current.product_type != new.product_type.trim()
        || current.vendor != new.vendor.trim()
        || current.tags != tags
        || current.categories.iter().collect::<HashSet<_>>() != categories.iter().collect::<HashSet<_>>()
        || current.seo_title != new.seo_title.trim()
        || current.seo_description != new.seo_description.trim()
        || serde_json::to_value(&current.options).ok() != serde_json::to_value(&new.options).ok();
    if own_fields_differ {
        let options = serde_json::to_string(&new.options).map_err(AppError::internal)?;
        let published_at = current.published_at.or((status == "published").then_some(now));
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "UPDATE products SET title = $1, description = $2, description_html = $3, status = $4, \
                 product_type = $5, vendor = $6, tags = $7, seo_title = $8, seo_description = $9, options = $10, \
                 published_at = $11 WHERE id = $12",
            )
            .bind(new.title.trim())
            .bind(&new.description)
            .bind(markdown::render(&new.description))
            .bind(&status)
            .bind(new.product_type.trim())
            .bind(new.vendor.trim())
            .bind(Value::from(tags.clone()).to_string())
            .bind(new.seo_title.trim())
            .bind(new.seo_description.trim())
            .bind(&options)
            .bind(published_at)
            .bind(&current.id)
            .execute(conn)
            .await
        })?;
        products::write_tags(tx, &current.id, &tags).await?;
        super::categories::place(tx, &current.id, &categories).await?;
        changed = true;
    }
    let mut variants = current.variants.clone();
    let mut position = current.variants.len() as i64;
    for (variant, units) in new.variants.iter().zip(&wanted.inventory) {
        let id = match matching_variant(&current, variant, by_sku_only) {
            Some(existing) => {
                let tax_class = variant.tax_class.clone().unwrap_or_else(|| "standard".into());
                let policy = variant.inventory_policy.clone().unwrap_or_else(|| "deny".into());
                let threshold = variant.low_stock_threshold.unwrap_or(5);
                let differs = existing.barcode != variant.barcode
                    || existing.options != variant.options
                    || existing.weight_grams != variant.weight_grams
                    || existing.length_mm != variant.length_mm
                    || existing.width_mm != variant.width_mm
                    || existing.height_mm != variant.height_mm
                    || existing.tax_class != tax_class
                    || existing.inventory_policy != policy
                    || existing.low_stock_threshold != threshold;
                if differs {
                    db_execute!(tx.conn(), |conn| {
                        sqlx::query(
                            "UPDATE product_variants SET barcode = $1, option_values = $2, weight_grams = $3, \
                             length_mm = $4, width_mm = $5, height_mm = $6, tax_class = $7, inventory_policy = $8, \
                             low_stock_threshold = $9, updated_at = $10 WHERE id = $11",
                        )
                        .bind(&variant.barcode)
                        .bind(serde_json::to_string(&variant.options).unwrap_or_default())
                        .bind(variant.weight_grams)
                        .bind(variant.length_mm)
                        .bind(variant.width_mm)
                        .bind(variant.height_mm)
                        .bind(&tax_class)
                        .bind(&policy)
                        .bind(threshold)
                        .bind(now)
                        .bind(&existing.id)
                        .execute(conn)
                        .await
                    })?;
                    changed = true;
                }
                let same_prices =
                    serde_json::to_value(&existing.prices).ok() == serde_json::to_value(&variant.prices).ok();
                if !same_prices {
                    products::write_prices(tx, &existing.id, &variant.prices).await?;
                    changed = true;
                }
                if let Some(written) = variants.iter_mut().find(|v| v.id == existing.id) {
                    written.barcode = variant.barcode.clone();
                    written.options = variant.options.clone();
                    written.weight_grams = variant.weight_grams;
                    written.length_mm = variant.length_mm;
                    written.width_mm = variant.width_mm;
                    written.height_mm = variant.height_mm;
                    written.tax_class = tax_class;
                    written.inventory_policy = policy;
                    written.low_stock_threshold = threshold;
                    written.prices = variant.prices.clone();
                }
                existing.id.clone()
            }
            None => {
                let added =
                    products::insert_variants(tx, &current.id, std::slice::from_ref(variant), now, position, |_| {
                        "sku".into()
                    })
                    .await?;
                position += 1;
                changed = true;
                let id = added.first().map(|v| v.id.clone()).unwrap_or_default();
                variants.extend(added);
                id
            }
        };
        if let Some(units) = units {
            changed |= set_stock(state, tx, &id, *units, actor).await?;
        }
    }
    if !changed {
        return Ok(Outcome::Unchanged);
    }
    // The product was read before the transaction: if staff changed it since, stop rather
    // than write over their change.
    let bumped = db_execute!(tx.conn(), |conn| {
        sqlx::query("UPDATE products SET updated_at = $1, version = version + 1 WHERE id = $2 AND version = $3")
            .bind(now)
            .bind(&current.id)
            .bind(current.version)
            .execute(conn)
            .await
    })?;
    if bumped == 0 {
        return Err(AppError::new(
            crate::platform::error::ErrorCode::Conflict,
            format!("Product `{}` changed while the import ran; nothing was written. Try again.", current.handle),
        ));
    }
    if announce {
        tx.invalidate(super::changed(&current.id));
    }
    let product = Product {
        title: new.title.trim().to_owned(),
        description_html: markdown::render(&new.description),
        description: new.description.clone(),
        published_at: current.published_at.or((status == "published").then_some(now)),
        status,
        product_type: new.product_type.trim().to_owned(),
        vendor: new.vendor.trim().to_owned(),
        tags,
        categories,
        options: new.options.clone(),
        seo_title: new.seo_title.trim().to_owned(),
        seo_description: new.seo_description.trim().to_owned(),
        variants,
        updated_at: now,
        version: current.version + 1,
        ..current
    };
    listeners.emit(state, tx, "product.updated", &product).await?;
    Ok(Outcome::Updated)
}

/// Writes every product, one row per variant, in the import layout: what this writes,
/// importing changes nothing.
pub async fn export_products(
    db: &Db,
    media: &super::media::MediaStore,
    out: &mut (dyn std::io::Write + Send),
) -> AppResult<usize> {
    let currencies: Vec<String> = db_run!(db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT DISTINCT currency FROM variant_prices ORDER BY currency")
            .fetch_all(conn)
            .await
    })?;
    let categories: HashMap<String, String> = db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String)>("SELECT id, handle FROM categories").fetch_all(conn).await
    })?
    .into_iter()
    .collect();
    let stock: HashMap<String, i64> = db_run!(db.read().await?, |conn| {
        sqlx::query_as::<_, (String, i64)>("SELECT variant_id, on_hand FROM inventory_levels WHERE location_id = $1")
            .bind(DEFAULT_LOCATION)
            .fetch_all(conn)
            .await
    })?
    .into_iter()
    .collect();
    let mut writer = csv::Writer::from_writer(out);
    let mut header: Vec<String> = COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    for currency in &currencies {
        header.push(format!("price_{currency}"));
        header.push(format!("compare_at_price_{currency}"));
    }
    let failed = |err: csv::Error| AppError::internal(anyhow::anyhow!("cannot write the export: {err}"));
    writer.write_record(&header).map_err(failed)?;
    let mut after = String::new();
    let mut rows = 0;
    loop {
        let page = products::page(db, media, "id > $1", "id", &[&after], 500).await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for product in &page {
            let category_handles: Vec<&str> =
                product.categories.iter().filter_map(|id| categories.get(id).map(String::as_str)).collect();
            for (at, variant) in product.variants.iter().enumerate() {
                let first = at == 0;
                let product_cell = |value: &str| if first { value.to_owned() } else { String::new() };
                let mut record = vec![
                    product.handle.clone(),
                    product_cell(&product.title),
                    product_cell(&product.description),
                    product_cell(&product.status),
                    product_cell(&product.product_type),
                    product_cell(&product.vendor),
                    product_cell(&product.tags.join(", ")),
                    product_cell(&category_handles.join(", ")),
                    product_cell(&product.seo_title),
                    product_cell(&product.seo_description),
                ];
                for n in 0..3 {
                    match product.options.get(n) {
                        Some(option) => {
                            record.push(product_cell(&option.name));
                            record.push(variant.options.get(&option.name).cloned().unwrap_or_default());
                        }
                        None => record.extend([String::new(), String::new()]),
                    }
                }
                let number = |value: Option<i64>| value.map(|v| v.to_string()).unwrap_or_default();
                record.extend([
                    variant.sku.clone().unwrap_or_default(),
                    variant.barcode.clone().unwrap_or_default(),
                    number(variant.weight_grams),
                    number(variant.length_mm),
                    number(variant.width_mm),
                    number(variant.height_mm),
                    variant.tax_class.clone(),
                    variant.inventory_policy.clone(),
                    variant.low_stock_threshold.to_string(),
                    stock.get(&variant.id).copied().unwrap_or(0).to_string(),
                ]);
                for currency in &currencies {
                    let price = variant.prices.iter().find(|p| &p.currency == currency);
                    record.push(number(price.map(|p| p.amount)));
                    record.push(number(price.and_then(|p| p.compare_at_amount)));
                }
                // A cell a spreadsheet would run as a formula gets an apostrophe first,
                // which an import takes off again.
                let record: Vec<String> = record.into_iter().map(defuse).collect();
                writer.write_record(&record).map_err(failed)?;
                rows += 1;
            }
        }
        if page.len() < 500 {
            break;
        }
    }
    writer.flush().map_err(|err| AppError::internal(anyhow::anyhow!("cannot write the export: {err}")))?;
    Ok(rows)
}

/// A cell a spreadsheet would take for a formula, quoted with a leading apostrophe.
pub fn defuse(cell: String) -> String {
    if cell.starts_with(['=', '+', '@']) || (cell.starts_with('-') && cell.parse::<i64>().is_err()) {
        format!("'{cell}")
    } else {
        cell
    }
}
