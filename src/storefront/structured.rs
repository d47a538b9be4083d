//! Structured data (schema.org as JSON-LD) for each kind of page: what search engines read
//! to show prices, stock, breadcrumbs, articles and the shop's own search box.

use serde_json::{Value, json};

use super::Chrome;

/// A block of JSON-LD, safe to put inside `<script type="application/ld+json">`: no `<` can
/// close the element or open a comment.
pub fn block(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default().replace('<', "\\u003c")
}

/// A crumb: its name and its path.
pub struct Crumb<'a> {
    pub name: &'a str,
    pub path: &'a str,
}

/// The way down to a page, from the home page.
pub fn breadcrumbs(chrome: &Chrome, crumbs: &[Crumb<'_>]) -> Value {
    let items: Vec<Value> = crumbs
        .iter()
        .enumerate()
        .map(|(at, crumb)| {
            json!({
                "@type": "ListItem",
                "position": at + 1,
                "name": crumb.name,
                "item": format!("{}{}", chrome.base, crumb.path),
            })
        })
        .collect();
    json!({ "@context": "https://schema.org", "@type": "BreadcrumbList", "itemListElement": items })
}

/// The shop, and its site with the search box search engines may show.
pub fn organization_and_site(chrome: &Chrome) -> [Value; 2] {
    let mut organization = json!({
        "@context": "https://schema.org",
        "@type": "Organization",
        "@id": format!("{}/#organization", chrome.base),
        "name": chrome.site.name,
        "url": format!("{}/", chrome.base),
    });
    organization["logo"] = json!(chrome.logo_url);
    if !chrome.site.description.is_empty() {
        organization["description"] = json!(chrome.site.description);
    }
    let same_as: Vec<&String> = chrome.site.social.values().collect();
    if !same_as.is_empty() {
        organization["sameAs"] = json!(same_as);
    }
    let contact = &chrome.site.contact;
    if !contact.email.is_empty() || !contact.phone.is_empty() {
        let mut point = json!({ "@type": "ContactPoint", "contactType": "customer service" });
        if !contact.email.is_empty() {
            point["email"] = json!(contact.email);
        }
        if !contact.phone.is_empty() {
            point["telephone"] = json!(contact.phone);
        }
        organization["contactPoint"] = point;
    }
    let site = json!({
        "@context": "https://schema.org",
        "@type": "WebSite",
        "name": chrome.site.name,
        "url": format!("{}/", chrome.base),
        "inLanguage": chrome.site.language,
        "publisher": { "@id": format!("{}/#organization", chrome.base) },
        "potentialAction": {
            "@type": "SearchAction",
            "target": {
                "@type": "EntryPoint",
                "urlTemplate": format!("{}/search?q={{search_term_string}}", chrome.base),
            },
            "query-input": "required name=search_term_string",
        },
    });
    [organization, site]
}

/// One offer of a product: a variant's price and whether it can be bought.
pub struct Offer<'a> {
    pub sku: Option<&'a str>,
    /// In minor units, for ordering.
    pub amount: i64,
    /// In the currency's decimal form: `12.50`.
    pub price: String,
    pub availability: &'a str,
}

/// What a product page says of the product.
pub struct ProductFacts<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub path: &'a str,
    pub images: Vec<String>,
    pub brand: &'a str,
    pub currency: Option<&'a str>,
    pub offers: Vec<Offer<'a>>,
}

/// schema.org's word for an availability.
pub fn availability_url(availability: &str) -> &'static str {
    match availability {
        "in_stock" => "https://schema.org/InStock",
        "low_stock" => "https://schema.org/LimitedAvailability",
        "backorder" => "https://schema.org/BackOrder",
        _ => "https://schema.org/OutOfStock",
    }
}

pub fn product(chrome: &Chrome, facts: &ProductFacts<'_>) -> Value {
    let url = format!("{}{}", chrome.base, facts.path);
    let mut product = json!({
        "@context": "https://schema.org",
        "@type": "Product",
        "name": facts.name,
        "url": url,
    });
    if !facts.description.is_empty() {
        product["description"] = json!(facts.description);
    }
    if !facts.images.is_empty() {
        product["image"] = json!(facts.images);
    }
    if !facts.brand.is_empty() {
        product["brand"] = json!({ "@type": "Brand", "name": facts.brand });
    }
    if let [only] = facts.offers.as_slice()
        && let Some(sku) = only.sku
    {
        product["sku"] = json!(sku);
    }
    if let Some(currency) = facts.currency {
        let offers: Vec<Value> = facts
            .offers
            .iter()
            .map(|offer| {
                let mut one = json!({
                    "@type": "Offer",
                    "url": url,
                    "price": offer.price,
                    "priceCurrency": currency,
                    "availability": availability_url(offer.availability),
                    "itemCondition": "https://schema.org/NewCondition",
                });
                if let Some(sku) = offer.sku {
                    one["sku"] = json!(sku);
                }
                one
            })
            .collect();
        product["offers"] = match offers.len() {
            0 => Value::Null,
            1 => offers.into_iter().next().unwrap_or_default(),
            count => {
                let low = facts.offers.iter().min_by_key(|o| o.amount);
                let high = facts.offers.iter().max_by_key(|o| o.amount);
                json!({
                    "@type": "AggregateOffer",
                    "priceCurrency": currency,
                    "lowPrice": low.map(|o| o.price.clone()),
                    "highPrice": high.map(|o| o.price.clone()),
                    "offerCount": count,
                    "offers": offers,
                })
            }
        };
        if product["offers"].is_null()
            && let Some(map) = product.as_object_mut()
        {
            map.remove("offers");
        }
    }
    product
}

/// A list of products: a category or a collection.
pub fn collection_page(
    chrome: &Chrome,
    name: &str,
    description: &str,
    path: &str,
    items: &[(String, String)],
) -> Value {
    let list: Vec<Value> = items
        .iter()
        .enumerate()
        .map(|(at, (name, item_path))| {
            json!({ "@type": "ListItem", "position": at + 1, "url": format!("{}{item_path}", chrome.base), "name": name })
        })
        .collect();
    let mut page = json!({
        "@context": "https://schema.org",
        "@type": "CollectionPage",
        "name": name,
        "url": format!("{}{path}", chrome.base),
        "mainEntity": { "@type": "ItemList", "numberOfItems": list.len(), "itemListElement": list },
    });
    if !description.is_empty() {
        page["description"] = json!(description);
    }
    page
}

/// What a post page says of the post.
pub struct PostFacts<'a> {
    pub headline: &'a str,
    pub description: &'a str,
    pub path: &'a str,
    pub image: Option<String>,
    pub published: String,
    pub modified: String,
    pub authors: Vec<&'a str>,
}

pub fn blog_posting(chrome: &Chrome, facts: &PostFacts<'_>) -> Value {
    let url = format!("{}{}", chrome.base, facts.path);
    let authors: Vec<Value> = if facts.authors.is_empty() {
        vec![json!({ "@type": "Organization", "name": chrome.site.name, "url": format!("{}/", chrome.base) })]
    } else {
        facts.authors.iter().map(|name| json!({ "@type": "Person", "name": name })).collect()
    };
    let publisher = json!({
        "@type": "Organization",
        "name": chrome.site.name,
        "url": format!("{}/", chrome.base),
        "logo": { "@type": "ImageObject", "url": chrome.logo_url },
    });
    let mut post = json!({
        "@context": "https://schema.org",
        "@type": "BlogPosting",
        "headline": facts.headline,
        "url": url,
        "mainEntityOfPage": { "@type": "WebPage", "@id": url },
        "datePublished": facts.published,
        "dateModified": facts.modified,
        "author": authors,
        "publisher": publisher,
        "inLanguage": chrome.site.language,
    });
    if !facts.description.is_empty() {
        post["description"] = json!(facts.description);
    }
    post["image"] = json!([facts.image.clone().unwrap_or_else(|| chrome.share_image.url.clone())]);
    post
}

/// A page of the shop's own: "About us".
pub fn web_page(chrome: &Chrome, name: &str, description: &str, path: &str) -> Value {
    let mut page = json!({
        "@context": "https://schema.org",
        "@type": "WebPage",
        "name": name,
        "url": format!("{}{path}", chrome.base),
        "inLanguage": chrome.site.language,
    });
    if !description.is_empty() {
        page["description"] = json!(description);
    }
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_cannot_close_its_script_element() {
        let text = block(&json!({ "name": "</script><script>alert(1)</script>" }));
        assert!(!text.contains('<'), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["name"], "</script><script>alert(1)</script>");
    }
}
