//! Finding products on the shelf: words with prefixes and typos, filters, sorting, cursors
//! and facet counts. Plain Rust over the shelf's contents, so both databases give the same
//! answers.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::ToSchema;

use super::inventory::Availability;
use super::money::is_currency;
use super::shelf::{Contents, Item, Postings};
use super::text;
use crate::platform::error::{AppResult, Violations};
use crate::platform::pagination::{DEFAULT_LIMIT, MAX_LIMIT};

/// The most words of a query that count.
const MAX_WORDS: usize = 10;
/// The most words a prefix stands for.
const MAX_EXPANSIONS: usize = 100;
/// How much a match is worth, times the weight of its field.
const EXACT: u32 = 6;
const PREFIX: u32 = 4;
const ONE_TYPO: u32 = 3;
const TWO_TYPOS: u32 = 2;

/// How results are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Newest,
    Price,
    PriceDescending,
    Title,
    Relevance,
    /// The collection's own order.
    Position,
}

impl Sort {
    fn name(self) -> &'static str {
        match self {
            Self::Newest => "newest",
            Self::Price => "price",
            Self::PriceDescending => "-price",
            Self::Title => "title",
            Self::Relevance => "relevance",
            Self::Position => "position",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [Self::Newest, Self::Price, Self::PriceDescending, Self::Title, Self::Relevance, Self::Position]
            .into_iter()
            .find(|sort| sort.name() == name)
    }
}

/// Where the previous page ended: the last result's sort key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct Key(i64, i64, String, String);

/// A search or a list, as asked in the query string.
#[derive(Debug)]
pub struct Search {
    pub words: Vec<String>,
    pub categories: Vec<String>,
    pub collection: Option<String>,
    pub tags: Vec<String>,
    pub currency: Option<String>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub available: Option<bool>,
    /// Option name and value.
    pub options: Vec<(String, String)>,
    pub sort: Sort,
    after: Option<Key>,
    pub limit: u32,
}

impl Search {
    /// Parses `?q=&category=&collection=&tag=&currency=&price_min=&price_max=&available=&option=Name:Value&sort=&limit=&after=`;
    /// `category`, `tag` and `option` may repeat.
    pub fn parse(query: &str) -> AppResult<Self> {
        let mut violations = Violations::default();
        let mut search = Search {
            words: Vec::new(),
            categories: Vec::new(),
            collection: None,
            tags: Vec::new(),
            currency: None,
            price_min: None,
            price_max: None,
            available: None,
            options: Vec::new(),
            sort: Sort::Newest,
            after: None,
            limit: DEFAULT_LIMIT,
        };
        let mut sort = None;
        let mut after = None;
        let mut text_given = false;
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match name.as_ref() {
                "q" => {
                    if value.chars().count() > 200 {
                        violations.add("q", "too_long", "must be at most 200 characters");
                    }
                    text_given = !value.is_empty();
                    search.words = text::words(value).into_iter().take(MAX_WORDS).collect();
                }
                "category" => search.categories.push(value.to_owned()),
                "collection" => search.collection = Some(value.to_owned()),
                "tag" => search.tags.push(value.to_lowercase()),
                "currency" => {
                    if !is_currency(value) {
                        violations.add("currency", "invalid", "must be an ISO 4217 currency code such as EUR");
                    }
                    search.currency = Some(value.to_owned());
                }
                "price_min" | "price_max" => match value.parse::<i64>() {
                    Ok(amount) if amount >= 0 => {
                        if name == "price_min" {
                            search.price_min = Some(amount);
                        } else {
                            search.price_max = Some(amount);
                        }
                    }
                    _ => violations.add(&name, "invalid", "must be a whole number of minor units, 0 or more"),
                },
                "available" => match value {
                    "true" => search.available = Some(true),
                    "false" => search.available = Some(false),
                    _ => violations.add("available", "invalid", "must be `true` or `false`"),
                },
                "option" => match value.split_once(':') {
                    Some((option, choice)) if !option.trim().is_empty() && !choice.trim().is_empty() => {
                        search.options.push((option.trim().to_owned(), choice.trim().to_owned()));
                    }
                    _ => violations.add("option", "invalid", "must be `Name:Value`, such as `Size:M`"),
                },
                "sort" => match Sort::parse(value) {
                    Some(chosen) => sort = Some(chosen),
                    None => violations.add(
                        "sort",
                        "invalid",
                        "must be `newest`, `price`, `-price`, `title`, `relevance` or `position`",
                    ),
                },
                "limit" => match value.parse::<u32>() {
                    Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => search.limit = limit,
                    _ => violations.add("limit", "out_of_range", format!("must be between 1 and {MAX_LIMIT}")),
                },
                "after" => after = Some(value.to_owned()),
                "facets" => {}
                other => violations.add(other, "unknown", "is not a parameter of this list"),
            }
        }
        let too_many =
            [("category", search.categories.len()), ("tag", search.tags.len()), ("option", search.options.len())];
        for (name, count) in too_many {
            if count > 20 {
                violations.add(name, "too_many", "may be given at most 20 times");
            }
        }
        if (search.price_min.is_some() || search.price_max.is_some()) && search.currency.is_none() {
            violations.add("currency", "required", "is needed to filter by price");
        }
        if let (Some(min), Some(max)) = (search.price_min, search.price_max)
            && min > max
        {
            violations.add("price_max", "out_of_range", "must not be below `price_min`");
        }
        search.sort = match sort {
            Some(Sort::Price | Sort::PriceDescending) if search.currency.is_none() => {
                violations.add("currency", "required", "is needed to sort by price");
                Sort::Newest
            }
            Some(Sort::Relevance) if !text_given => {
                violations.add("sort", "invalid", "`relevance` needs words to search for in `q`");
                Sort::Newest
            }
            Some(Sort::Position) if search.collection.is_none() => {
                violations.add("sort", "invalid", "`position` needs a `collection`");
                Sort::Newest
            }
            Some(chosen) => chosen,
            None if text_given => Sort::Relevance,
            None if search.collection.is_some() => Sort::Position,
            None => Sort::Newest,
        };
        if let Some(after) = after {
            match decode_cursor(&after) {
                Some((sort, key)) if sort == search.sort.name() => search.after = Some(key),
                _ => violations.add("after", "invalid", "is not a cursor this list gave out"),
            }
        }
        violations.finish()?;
        Ok(search)
    }
}

fn decode_cursor(cursor: &str) -> Option<(String, Key)> {
    if cursor.len() > 600 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn encode_cursor(sort: Sort, key: &Key) -> String {
    let json = serde_json::to_vec(&(sort.name(), key)).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// One value of a facet and how many results it has.
#[derive(Debug, Serialize, ToSchema)]
pub struct FacetValue {
    pub value: String,
    /// A category's name; absent elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub count: usize,
}

/// An option's values and their counts.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptionFacet {
    pub name: String,
    pub values: Vec<FacetValue>,
}

/// A price range, in minor units: `min` included, `max` excluded.
#[derive(Debug, Serialize, ToSchema)]
pub struct PriceBucket {
    pub min: i64,
    pub max: i64,
    pub count: usize,
}

/// How many results each filter value would give. The counts for one filter ignore that
/// filter's own choice, so the other values of a chosen filter still show what they hold.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Facets {
    /// By category handle; a category counts the products of its descendants too.
    pub categories: Vec<FacetValue>,
    pub tags: Vec<FacetValue>,
    pub options: Vec<OptionFacet>,
    /// In the currency asked for; empty without one.
    pub price: Vec<PriceBucket>,
    pub availability: Vec<FacetValue>,
}

/// One page of results.
pub struct Found {
    pub slots: Vec<u32>,
    pub next_cursor: Option<String>,
    pub total: usize,
    pub facets: Option<Facets>,
}

const CATEGORY: u64 = 1;
const TAG: u64 = 1 << 1;
const PRICE: u64 = 1 << 2;
const AVAILABILITY: u64 = 1 << 3;
/// Option filters take the bits from here, one per option name.
const FIRST_OPTION: u32 = 4;

/// The slots matching every word, with their relevance.
fn matching_words(contents: &Contents, words: &[String]) -> HashMap<u32, u32> {
    let mut result: Option<HashMap<u32, u32>> = None;
    for (index, word) in words.iter().enumerate() {
        let last = index + 1 == words.len();
        let mut best: HashMap<u32, u32> = HashMap::new();
        let mut credit = |postings: &[(u32, u8)], quality: u32| {
            for (slot, weight) in postings {
                let score = u32::from(*weight) * quality;
                let entry = best.entry(*slot).or_insert(0);
                *entry = (*entry).max(score);
            }
        };
        if let Some(postings) = contents.postings.get(word) {
            credit(postings, EXACT);
        }
        if last {
            for (_, postings) in contents
                .postings
                .range::<str, _>((std::ops::Bound::Excluded(word.as_str()), std::ops::Bound::Unbounded))
                .take_while(|(term, _)| term.starts_with(word.as_str()))
                .take(MAX_EXPANSIONS)
            {
                credit(postings, PREFIX);
            }
        }
        let allowed = text::typos_allowed(word);
        if allowed > 0 {
            let chars: Vec<char> = word.chars().collect();
            // One typo may not touch the first letter, which keeps the scan short; two may.
            let first = word.chars().next().map(String::from).unwrap_or_default();
            let scan: Box<dyn Iterator<Item = (&String, &Postings)>> = if allowed == 1 {
                Box::new(contents.postings.range(first.clone()..).take_while(|(term, _)| term.starts_with(&first)))
            } else {
                Box::new(contents.postings.iter())
            };
            for (term, postings) in scan {
                if term == word || term.len().abs_diff(word.len()) > allowed * 4 {
                    continue;
                }
                let term_chars: Vec<char> = term.chars().collect();
                match text::distance_within(&chars, &term_chars, allowed) {
                    Some(1) => credit(postings, ONE_TYPO),
                    Some(2) => credit(postings, TWO_TYPOS),
                    _ => {}
                }
            }
        }
        result = Some(match result {
            None => best,
            Some(mut so_far) => {
                so_far.retain(|slot, score| match best.get(slot) {
                    Some(more) => {
                        *score += more;
                        true
                    }
                    None => false,
                });
                so_far
            }
        });
    }
    result.unwrap_or_default()
}

/// Counts facet values over the results, and over the results but for one filter.
#[derive(Default)]
struct Counter {
    categories: HashMap<String, usize>,
    tags: HashMap<String, usize>,
    options: HashMap<(String, String), usize>,
    prices: Vec<i64>,
    availability: HashMap<&'static str, usize>,
}

fn availability_name(availability: Availability) -> &'static str {
    match availability {
        Availability::InStock => "in_stock",
        Availability::LowStock => "low_stock",
        Availability::OutOfStock => "out_of_stock",
        Availability::Backorder => "backorder",
    }
}

/// Finds one page of `search` on the shelf.
pub fn run(contents: &Contents, search: &Search, with_facets: bool) -> Found {
    let scored: Vec<(u32, u32)> = if search.words.is_empty() {
        contents.items().map(|(slot, _)| (slot, 0)).collect()
    } else {
        matching_words(contents, &search.words).into_iter().collect()
    };
    let collection = search.collection.as_ref().map(|handle| {
        contents
            .collection_by_handle
            .get(handle)
            .filter(|id| contents.collections.get(*id).is_some_and(|c| c.published))
    });
    let allowed_categories: Option<HashSet<String>> = (!search.categories.is_empty()).then(|| {
        search
            .categories
            .iter()
            .filter_map(|handle| contents.category_by_handle.get(handle))
            .flat_map(|id| contents.with_descendants(id))
            .collect()
    });
    let mut option_names: Vec<&str> = Vec::new();
    for (name, _) in &search.options {
        if !option_names.contains(&name.as_str()) {
            option_names.push(name);
        }
    }
    let price_range = search.price_min.is_some() || search.price_max.is_some();
    let mut counter = Counter::default();
    let mut results: Vec<(Key, u32)> = Vec::new();
    for (slot, score) in scored {
        let Some(item) = contents.item(slot) else { continue };
        let position = match collection {
            None => 0,
            Some(None) => continue,
            Some(Some(id)) => match item.collections.iter().find(|(c, _)| c == id) {
                Some((_, position)) => *position,
                None => continue,
            },
        };
        let mut failed = 0u64;
        if let Some(allowed) = &allowed_categories
            && !item.categories.iter().any(|c| allowed.contains(c))
        {
            failed |= CATEGORY;
        }
        if !search.tags.is_empty() && !item.tags.iter().any(|t| search.tags.contains(t)) {
            failed |= TAG;
        }
        let price = search.currency.as_ref().and_then(|currency| item.prices.get(currency)).copied();
        if price_range
            && !price.is_some_and(|p| {
                search.price_min.is_none_or(|min| p >= min) && search.price_max.is_none_or(|max| p <= max)
            })
        {
            failed |= PRICE;
        }
        if let Some(wanted) = search.available
            && (item.availability != Availability::OutOfStock) != wanted
        {
            failed |= AVAILABILITY;
        }
        for (at, name) in option_names.iter().enumerate() {
            let chosen = |(option, value): &(String, String)| {
                option == name && item.options.iter().any(|(n, v)| n == option && v == value)
            };
            if !search.options.iter().any(chosen) {
                failed |= 1 << (FIRST_OPTION + at as u32);
            }
        }
        if with_facets && failed.count_ones() <= 1 {
            count(&mut counter, contents, item, failed, price, &option_names);
        }
        if failed == 0 {
            results.push((key_of(search.sort, item, score, position, price), slot));
        }
    }
    let total = results.len();
    results.sort_unstable();
    let start = match &search.after {
        Some(after) => results.partition_point(|(key, _)| key <= after),
        None => 0,
    };
    let page: Vec<&(Key, u32)> = results[start..].iter().take(search.limit as usize + 1).collect();
    let more = page.len() > search.limit as usize;
    let page = &page[..page.len().min(search.limit as usize)];
    let next_cursor = if more { page.last().map(|(key, _)| encode_cursor(search.sort, key)) } else { None };
    Found {
        slots: page.iter().map(|(_, slot)| *slot).collect(),
        next_cursor,
        total,
        facets: with_facets.then(|| facets_of(counter, contents)),
    }
}

fn key_of(sort: Sort, item: &Item, score: u32, position: i64, price: Option<i64>) -> Key {
    let id = item.id.clone();
    match sort {
        Sort::Newest => Key(-item.published_at, 0, String::new(), id),
        Sort::Price => Key(price.unwrap_or(i64::MAX), 0, String::new(), id),
        Sort::PriceDescending => Key(price.map_or(i64::MAX, |p| -p), 0, String::new(), id),
        Sort::Title => Key(0, 0, item.title_key.clone(), id),
        Sort::Relevance => Key(-i64::from(score), -item.published_at, String::new(), id),
        Sort::Position => Key(position, 0, String::new(), id),
    }
}

/// Counts `item` in every facet when it passed every filter, or only in the facet of the
/// one filter it failed.
fn count(
    counter: &mut Counter,
    contents: &Contents,
    item: &Item,
    failed: u64,
    price: Option<i64>,
    option_names: &[&str],
) {
    let counts = |bit: u64| failed == 0 || failed == bit;
    if counts(CATEGORY) {
        let mut seen: Vec<&str> = Vec::new();
        for category in &item.categories {
            for id in contents.with_ancestors(category) {
                if !seen.contains(&id) {
                    seen.push(id);
                    *counter.categories.entry(id.to_owned()).or_default() += 1;
                }
            }
        }
    }
    if counts(TAG) {
        for tag in &item.tags {
            *counter.tags.entry(tag.clone()).or_default() += 1;
        }
    }
    if counts(PRICE)
        && let Some(price) = price
    {
        counter.prices.push(price);
    }
    if counts(AVAILABILITY) {
        *counter.availability.entry(availability_name(item.availability)).or_default() += 1;
    }
    for (name, value) in &item.options {
        let bit = option_names.iter().position(|n| n == name).map_or(0, |at| 1 << (FIRST_OPTION + at as u32));
        if failed == 0 || (bit != 0 && failed == bit) {
            *counter.options.entry((name.clone(), value.clone())).or_default() += 1;
        }
    }
}

fn by_count(mut values: Vec<FacetValue>, most: usize) -> Vec<FacetValue> {
    values.sort_by(|a, b| (Reverse(a.count), &a.value).cmp(&(Reverse(b.count), &b.value)));
    values.truncate(most);
    values
}

fn facets_of(counter: Counter, contents: &Contents) -> Facets {
    let categories = counter
        .categories
        .into_iter()
        .filter_map(|(id, count)| {
            let category = contents.categories.get(&id)?;
            Some(FacetValue { value: category.handle.clone(), name: Some(category.name.clone()), count })
        })
        .collect();
    let tags = counter.tags.into_iter().map(|(value, count)| FacetValue { value, name: None, count }).collect();
    let mut options: Vec<OptionFacet> = Vec::new();
    for ((name, value), count) in counter.options {
        let value = FacetValue { value, name: None, count };
        match options.iter_mut().find(|o| o.name == name) {
            Some(option) => option.values.push(value),
            None => options.push(OptionFacet { name, values: vec![value] }),
        }
    }
    options.sort_by(|a, b| a.name.cmp(&b.name));
    for option in &mut options {
        option.values = by_count(std::mem::take(&mut option.values), 100);
    }
    let availability =
        counter.availability.into_iter().map(|(value, count)| FacetValue { value: value.into(), name: None, count });
    Facets {
        categories: by_count(categories, 100),
        tags: by_count(tags, 50),
        options,
        price: price_buckets(counter.prices),
        availability: by_count(availability.collect(), 4),
    }
}

/// Up to about six ranges of a round width (1, 2 or 5 times a power of ten) over `prices`,
/// leaving out the empty ones.
fn price_buckets(mut prices: Vec<i64>) -> Vec<PriceBucket> {
    let (Some(&low), Some(&high)) = (prices.iter().min(), prices.iter().max()) else { return Vec::new() };
    let span = (high - low).max(1);
    let mut width = 1i64;
    'grow: for power in 0..18 {
        for step in [1i64, 2, 5] {
            width = step * 10i64.pow(power);
            if span / width < 6 {
                break 'grow;
            }
        }
    }
    prices.sort_unstable();
    let mut buckets: Vec<PriceBucket> = Vec::new();
    for price in prices {
        let min = price / width * width;
        match buckets.last_mut() {
            Some(bucket) if bucket.min == min => bucket.count += 1,
            _ => buckets.push(PriceBucket { min, max: min + width, count: 1 }),
        }
    }
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_buckets_have_round_widths() {
        let buckets = price_buckets(vec![1_500, 2_500, 2_900, 9_900, 12_000]);
        assert!(buckets.iter().all(|b| b.max - b.min == 2_000), "{buckets:?}");
        assert_eq!(buckets.iter().map(|b| b.count).sum::<usize>(), 5);
        assert_eq!(buckets[0].min, 0);
        assert!(price_buckets(Vec::new()).is_empty());
        assert_eq!(price_buckets(vec![500, 500]).len(), 1);
    }

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let key = Key(-5, 3, "title".into(), "prd_x".into());
        let cursor = encode_cursor(Sort::Title, &key);
        assert_eq!(decode_cursor(&cursor), Some(("title".into(), key)));
        assert_eq!(decode_cursor("not a cursor"), None);
    }
}
