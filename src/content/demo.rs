//! The demo shop's words: what the site says of the shop, a few pages, a few blog posts and
//! two menus, so that a new demo has a site to show as well as a catalog.

use crate::app::AppState;
use crate::catalog::markdown;
use crate::platform::error::AppResult;
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;
use crate::{db_execute, db_run};

const PAGES: [(&str, &str, &str); 4] = [
    (
        "About us",
        "about",
        "Oak & Thread makes clothes, shoes and bags to be worn for years.\n\n\
         We work with a handful of workshops in Portugal and France, pay them fairly, and visit them \
         every season. Most of what we sell is made from organic cotton, linen, wool and leather \
         tanned without chrome.",
    ),
    (
        "Shipping and returns",
        "shipping-and-returns",
        "## Shipping\n\nOrders leave our warehouse within two working days. Delivery in France takes \
         2 to 3 days, elsewhere in Europe 3 to 5, and in the United States 5 to 8.\n\n\
         ## Returns\n\nSend back anything unworn within 30 days for a full refund. Sale items can be \
         exchanged but not refunded.",
    ),
    (
        "Privacy",
        "privacy",
        "We keep your name, addresses and orders to deliver what you buy and to answer you. We never \
         sell them. Ask us at any time for a copy of what we hold, or to delete it.",
    ),
    (
        "Contact",
        "contact",
        "Write to **hello@oakandthread.example** or call **+33 1 23 45 67 89**, Monday to Friday, \
         9:00 to 18:00 (Paris time).",
    ),
];

/// Title, slug, tags, days ago, body.
const POSTS: [(&str, &str, &str, u64, &str); 3] = [
    (
        "How our linen is made",
        "how-our-linen-is-made",
        r#"["Linen", "Making of"]"#,
        21,
        "Flax grows in Normandy, is pulled rather than cut, and left in the fields to ret.\n\n\
         It is then spun in northern Portugal and woven into the cloth our shirts are cut from. \
         Linen gets softer with every wash: keep it out of the dryer and it will last for years.",
    ),
    (
        "Caring for leather shoes",
        "caring-for-leather-shoes",
        r#"["Care", "Shoes"]"#,
        9,
        "Brush off the dust after each wear, let them rest a day between wears, and feed the leather \
         with a neutral cream once a month.\n\n\
         - Cedar shoe trees keep their shape.\n- Resole them before the welt wears through.",
    ),
    (
        "The autumn collection is here",
        "the-autumn-collection-is-here",
        r#"["News"]"#,
        2,
        "Merino jumpers, waxed jackets and our first pair of boots made in France.\n\n\
         Everything in the collection is in stock now, with free shipping in Europe above 100 EUR.",
    ),
];

/// Seeds the site's settings, pages, posts and menus into a shop without pages or posts.
/// Returns whether it did.
pub async fn seed(state: &AppState) -> AppResult<bool> {
    let existing = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM content").fetch_one(conn).await
    })?;
    if existing > 0 {
        return Ok(false);
    }
    let top_categories = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String)>(
            "SELECT id, name FROM categories WHERE parent_id IS NULL ORDER BY position LIMIT 4",
        )
        .fetch_all(conn)
        .await
    })?;
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "UPDATE site_settings SET name = 'Oak & Thread', description = $1, social = $2, contact_email = $3, \
             contact_phone = $4, contact_address = $5, updated_at = $6, version = version + 1 \
             WHERE id = 1 AND version = 1",
        )
        .bind("Clothes, shoes and bags made to be worn for years.")
        .bind(r#"{"instagram":"https://www.instagram.com/oakandthread.example"}"#)
        .bind("hello@oakandthread.example")
        .bind("+33 1 23 45 67 89")
        .bind("5 rue Saint-Denis\n75001 Paris\nFrance")
        .bind(now)
        .execute(conn)
        .await
    })?;
    let mut pages = Vec::new();
    for (title, slug, body) in PAGES {
        let id = new_id("pag");
        insert(&mut tx, &id, "page", title, slug, body, "[]", now).await?;
        pages.push(id);
    }
    for (title, slug, tags, days_ago, body) in POSTS {
        let published = Timestamp(now.0 - days_ago as i64 * 86_400_000);
        let id = new_id("pst");
        insert(&mut tx, &id, "post", title, slug, body, tags, published).await?;
        let tags: Vec<String> = serde_json::from_str(tags).unwrap_or_default();
        for tag in tags {
            db_execute!(tx.conn(), |conn| {
                sqlx::query("INSERT INTO content_tags (content_id, tag_slug) VALUES ($1, $2)")
                    .bind(&id)
                    .bind(crate::catalog::products::slugify(&tag))
                    .execute(conn)
                    .await
            })?;
        }
    }
    let item = |label: &str, kind: &str, target: &str| serde_json::json!({"label": label, "kind": kind, "target": target, "children": []});
    let mut main = vec![item("Home", "home", "")];
    main.extend(top_categories.iter().map(|(id, name)| item(name, "category", id)));
    main.extend([item("Journal", "blog", ""), item("About us", "page", &pages[0])]);
    let footer = vec![
        item("Shipping and returns", "page", &pages[1]),
        item("Privacy", "page", &pages[2]),
        item("Contact", "page", &pages[3]),
        item("Instagram", "url", "https://www.instagram.com/oakandthread.example"),
    ];
    for (handle, title, items) in [("main", "Main", main), ("footer", "Footer", footer)] {
        db_execute!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO menus (id, handle, title, items, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
            )
            .bind(new_id("mnu"))
            .bind(handle)
            .bind(title)
            .bind(serde_json::Value::Array(items).to_string())
            .bind(now)
            .execute(conn)
            .await
        })?;
    }
    tx.commit().await?;
    Ok(true)
}

#[expect(clippy::too_many_arguments, reason = "one row's columns, named at the call")]
async fn insert(
    tx: &mut crate::platform::db::Tx,
    id: &str,
    kind: &str,
    title: &str,
    slug: &str,
    body: &str,
    tags: &str,
    published_at: Timestamp,
) -> AppResult<()> {
    db_execute!(tx.conn(), |conn| {
        sqlx::query(
            "INSERT INTO content (id, kind, slug, title, body, body_html, tags, status, published_at, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'published', $8, $8, $8)",
        )
        .bind(id)
        .bind(kind)
        .bind(slug)
        .bind(title)
        .bind(body)
        .bind(markdown::render(body))
        .bind(tags)
        .bind(published_at)
        .execute(conn)
        .await
    })?;
    Ok(())
}
