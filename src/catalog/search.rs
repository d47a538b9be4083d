//! Finding products on the shelf: words with prefixes and typos, filters, sorting, cursors
//! and facet counts. Plain Rust over the shelf's contents, so both databases give the same
//! answers.

use std::cmp::Reverse;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use utoipa::ToSchema;

use super::inventory::Availability;
use super::money::is_currency;
use super::shelf::{Contents, FacetKey, Item, Postings};
use super::text;
use crate::platform::error::{AppResult, Violations};
use crate::platform::pagination::{DEFAULT_LIMIT, MAX_LIMIT};

/// The most words of a query that count.
const MAX_WORDS: usize = 10;
/// How many of a query's words may carry typos.
const MAX_TYPO_WORDS: usize = 3;
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
    /// Results to skip before the page: for numbered pages, which the storefront links to.
    pub offset: usize,
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
            offset: 0,
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
fn matching_words(contents: &Contents, words: &[String]) -> Vec<(u32, u32)> {
    // Scores by slot, dense: a match always scores above zero.
    let slots = contents.items.len();
    let mut total: Option<Vec<u32>> = None;
    let mut term_chars: Vec<char> = Vec::with_capacity(40);
    for (index, word) in words.iter().enumerate() {
        let last = index + 1 == words.len();
        let mut best = vec![0u32; slots];
        let mut credit = |postings: &[(u32, u8)], quality: u32| {
            for (slot, weight) in postings {
                let score = u32::from(*weight) * quality;
                if let Some(entry) = best.get_mut(*slot as usize) {
                    *entry = (*entry).max(score);
                }
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
        // Typos are forgiven in the first words only: each costs a scan of the vocabulary.
        let allowed = if index < MAX_TYPO_WORDS { text::typos_allowed(word) } else { 0 };
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
                term_chars.clear();
                term_chars.extend(term.chars());
                match text::distance_within(&chars, &term_chars, allowed) {
                    Some(1) => credit(postings, ONE_TYPO),
                    Some(2) => credit(postings, TWO_TYPOS),
                    _ => {}
                }
            }
        }
        total = Some(match total {
            None => best,
            Some(mut so_far) => {
                for (score, more) in so_far.iter_mut().zip(&best) {
                    *score = if *score == 0 || *more == 0 { 0 } else { *score + more };
                }
                so_far
            }
        });
    }
    total
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .filter(|(_, score)| *score > 0)
        .map(|(slot, score)| (slot as u32, score))
        .collect()
}

/// Counts facet values over the results, and over the results but for one filter.
/// Counts by the shelf's numbers: counting a product allocates and hashes nothing.
struct Counter {
    categories: Vec<u32>,
    facets: Vec<u32>,
    prices: Vec<i64>,
    availability: [usize; 4],
}

const AVAILABILITIES: [Availability; 4] =
    [Availability::InStock, Availability::LowStock, Availability::OutOfStock, Availability::Backorder];

/// A result's place in the order: the sort key of [`Key`], borrowed from the shelf.
type Place<'a> = (i64, i64, &'a str, &'a str);

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
        matching_words(contents, &search.words)
    };
    let collection = search.collection.as_ref().map(|handle| {
        contents
            .collection_by_handle
            .get(handle)
            .filter(|id| contents.collections.get(*id).is_some_and(|c| c.published))
    });
    // A product's category set holds every category above its own: being in a category or
    // below it is having it in the set.
    let allowed_categories: Option<Vec<u32>> = (!search.categories.is_empty()).then(|| {
        search
            .categories
            .iter()
            .filter_map(|handle| contents.category_by_handle.get(handle))
            .filter_map(|id| contents.category_numbers.get(id).copied())
            .collect()
    });
    let tags: Vec<u32> =
        search.tags.iter().filter_map(|tag| contents.facet_number(&FacetKey::Tag(tag.clone()))).collect();
    let mut option_names: Vec<&str> = Vec::new();
    for (name, _) in &search.options {
        if !option_names.contains(&name.as_str()) {
            option_names.push(name);
        }
    }
    // For each option filtered on, the numbers of the values chosen.
    let chosen: Vec<Vec<u32>> = option_names
        .iter()
        .map(|name| {
            search
                .options
                .iter()
                .filter(|(option, _)| option == name)
                .filter_map(|(option, value)| contents.facet_number(&FacetKey::Option(option.clone(), value.clone())))
                .collect()
        })
        .collect();
    // The option filter each numbered value belongs to, as its bit.
    let option_bits: Vec<u64> = if with_facets && !option_names.is_empty() {
        contents
            .facet_keys
            .iter()
            .map(|key| match key {
                FacetKey::Option(name, _) => {
                    option_names.iter().position(|n| n == name).map_or(0, |at| 1 << (FIRST_OPTION + at as u32))
                }
                FacetKey::Tag(_) => 0,
            })
            .collect()
    } else {
        Vec::new()
    };
    let price_range = search.price_min.is_some() || search.price_max.is_some();
    let mut counter = Counter {
        categories: if with_facets { vec![0; contents.category_ids.len()] } else { Vec::new() },
        facets: if with_facets { vec![0; contents.facet_keys.len()] } else { Vec::new() },
        prices: Vec::new(),
        availability: [0; 4],
    };
    let mut results: Vec<(Place, u32)> = Vec::new();
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
            && !item.category_set.iter().any(|c| allowed.contains(c))
        {
            failed |= CATEGORY;
        }
        if !search.tags.is_empty() && !item.facets.iter().any(|f| tags.contains(f)) {
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
        for (at, values) in chosen.iter().enumerate() {
            if !item.facets.iter().any(|f| values.contains(f)) {
                failed |= 1 << (FIRST_OPTION + at as u32);
            }
        }
        if with_facets && failed.count_ones() <= 1 {
            count(&mut counter, contents, item, failed, price, &option_bits);
        }
        if failed == 0 {
            results.push((key_of(search.sort, item, score, position, price), slot));
        }
    }
    let total = results.len();
    if let Some(after) = &search.after {
        let after: Place = (after.0, after.1, after.2.as_str(), after.3.as_str());
        results.retain(|(place, _)| *place > after);
    }
    // Only the page is put in order: a partial selection, not a sort of every match.
    let wanted = search.offset + search.limit as usize + 1;
    if results.len() > wanted {
        results.select_nth_unstable(wanted - 1);
        results.truncate(wanted);
    }
    // What comes before the page is only set apart, never sorted.
    let start = search.offset.min(results.len());
    if start > 0 && start < results.len() {
        results.select_nth_unstable(start);
    }
    results.drain(..start);
    results.sort_unstable();
    let more = results.len() > search.limit as usize;
    results.truncate(search.limit as usize);
    let next_cursor = if more {
        results
            .last()
            .map(|((a, b, title, id), _)| encode_cursor(search.sort, &Key(*a, *b, (*title).into(), (*id).into())))
    } else {
        None
    };
    let page = results;
    Found {
        slots: page.iter().map(|(_, slot)| *slot).collect(),
        next_cursor,
        total,
        facets: with_facets.then(|| facets_of(counter, contents)),
    }
}

fn key_of(sort: Sort, item: &Item, score: u32, position: i64, price: Option<i64>) -> Place<'_> {
    let id = item.id.as_str();
    match sort {
        Sort::Newest => (-item.published_at, 0, "", id),
        Sort::Price => (price.unwrap_or(i64::MAX), 0, "", id),
        Sort::PriceDescending => (price.map_or(i64::MAX, |p| -p), 0, "", id),
        Sort::Title => (0, 0, item.title_key.as_str(), id),
        Sort::Relevance => (-i64::from(score), -item.published_at, "", id),
        Sort::Position => (position, 0, "", id),
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
    option_bits: &[u64],
) {
    let counts = |bit: u64| failed == 0 || failed == bit;
    if counts(CATEGORY) {
        for number in &item.category_set {
            counter.categories[*number as usize] += 1;
        }
    }
    if counts(PRICE)
        && let Some(price) = price
    {
        counter.prices.push(price);
    }
    if counts(AVAILABILITY) {
        counter.availability[AVAILABILITIES.iter().position(|a| *a == item.availability).unwrap_or(2)] += 1;
    }
    for number in &item.facets {
        let tag = matches!(contents.facet_keys.get(*number as usize), Some(FacetKey::Tag(_)));
        let counted = if tag {
            counts(TAG)
        } else {
            failed == 0 || option_bits.get(*number as usize).is_some_and(|bit| *bit != 0 && *bit == failed)
        };
        if counted {
            counter.facets[*number as usize] += 1;
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
        .iter()
        .enumerate()
        .filter(|(_, count)| **count > 0)
        .filter_map(|(number, count)| {
            let category = contents.categories.get(contents.category_ids.get(number)?)?;
            Some(FacetValue {
                value: category.handle.clone(),
                name: Some(category.name.clone()),
                count: *count as usize,
            })
        })
        .collect();
    let mut tags = Vec::new();
    let mut options: Vec<OptionFacet> = Vec::new();
    for (number, count) in counter.facets.iter().enumerate().filter(|(_, count)| **count > 0) {
        let count = *count as usize;
        match contents.facet_keys.get(number) {
            Some(FacetKey::Tag(tag)) => tags.push(FacetValue { value: tag.clone(), name: None, count }),
            Some(FacetKey::Option(name, value)) => {
                let value = FacetValue { value: value.clone(), name: None, count };
                match options.iter_mut().find(|o| &o.name == name) {
                    Some(option) => option.values.push(value),
                    None => options.push(OptionFacet { name: name.clone(), values: vec![value] }),
                }
            }
            None => {}
        }
    }
    options.sort_by(|a, b| a.name.cmp(&b.name));
    for option in &mut options {
        option.values = by_count(std::mem::take(&mut option.values), 100);
    }
    let availability = AVAILABILITIES
        .iter()
        .zip(counter.availability)
        .filter(|(_, count)| *count > 0)
        .map(|(availability, count)| FacetValue { value: availability_name(*availability).into(), name: None, count })
        .collect();
    Facets {
        categories: by_count(categories, 100),
        tags: by_count(tags, 50),
        options,
        price: price_buckets(counter.prices),
        availability: by_count(availability, 4),
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
