//! A sample shop: a category tree, collections, and products with variants, prices and
//! stock, made up the same way every time. `backroom serve --demo` seeds it into an empty
//! database so that a first look shows a living shop; the benchmark imports 10,000 of its
//! products.

use std::fmt::Write as _;

use super::import::{self, ImportOptions};
use super::inventory::Actor;
use crate::app::AppState;
use crate::db_run;
use crate::platform::db::Param;
use crate::platform::error::{AppError, AppResult};
use crate::platform::ids::new_id;
use crate::platform::time::Timestamp;

/// A leaf category: its name, the nouns of the products made for it, and their sizes.
type LeafSpec = (&'static str, &'static [&'static str], &'static [&'static str]);
/// A category with the leaves under it.
type Branch = (&'static str, &'static [LeafSpec]);

/// The tree: top categories, the branches under them, and their leaves.
const TREE: &[(&str, &[Branch])] = &[
    (
        "Clothing",
        &[
            (
                "Tops",
                &[
                    ("T-shirts", &["T-shirt", "Tee", "Henley"], &["XS", "S", "M", "L", "XL"]),
                    ("Shirts", &["Shirt", "Overshirt", "Blouse"], &["S", "M", "L", "XL"]),
                    ("Sweaters", &["Sweater", "Cardigan", "Hoodie", "Jumper"], &["S", "M", "L", "XL"]),
                ],
            ),
            (
                "Bottoms",
                &[
                    ("Jeans", &["Jeans", "Denim"], &["28", "30", "32", "34", "36"]),
                    ("Trousers", &["Trousers", "Chinos", "Joggers"], &["S", "M", "L", "XL"]),
                    ("Shorts", &["Shorts", "Swim Shorts"], &["S", "M", "L"]),
                ],
            ),
            ("Outerwear", &[("Jackets", &["Jacket", "Parka", "Windbreaker"], &["S", "M", "L", "XL"])]),
        ],
    ),
    (
        "Footwear",
        &[
            ("Sneakers", &[("Running Shoes", &["Sneaker", "Trainer", "Runner"], &["40", "41", "42", "43", "44"])]),
            ("Boots", &[("Winter Boots", &["Boot", "Chelsea Boot"], &["39", "40", "41", "42", "43"])]),
        ],
    ),
    (
        "Accessories",
        &[
            ("Bags", &[("Backpacks", &["Backpack", "Tote", "Duffel"], &["One size"])]),
            ("Hats", &[("Beanies", &["Beanie", "Cap", "Bucket Hat"], &["One size"])]),
        ],
    ),
    (
        "Home",
        &[
            ("Kitchen", &[("Mugs", &["Mug", "Tea Towel", "Apron"], &["One size"])]),
            ("Textiles", &[("Blankets", &["Blanket", "Cushion", "Throw"], &["One size"])]),
        ],
    ),
];

const ADJECTIVES: &[&str] = &[
    "Classic",
    "Everyday",
    "Heritage",
    "Urban",
    "Alpine",
    "Coastal",
    "Vintage",
    "Essential",
    "Relaxed",
    "Slim",
    "Oversized",
    "Lightweight",
    "Heavyweight",
    "Organic",
    "Recycled",
    "Premium",
    "Weekend",
    "Studio",
    "Trail",
    "Nordic",
];
const MATERIALS: &[&str] = &[
    "Cotton", "Linen", "Merino", "Wool", "Denim", "Canvas", "Corduroy", "Fleece", "Cashmere", "Leather", "Hemp",
    "Silk", "Jersey", "Twill", "Flannel",
];
const COLOURS: &[&str] =
    &["Black", "White", "Navy", "Grey", "Olive", "Sand", "Rust", "Forest", "Sky", "Burgundy", "Cream", "Charcoal"];
/// The colours as pictures show them.
const COLOUR_RGB: &[[u8; 3]] = &[
    [30, 30, 32],
    [236, 236, 230],
    [28, 42, 84],
    [128, 130, 134],
    [96, 110, 52],
    [206, 186, 146],
    [170, 78, 40],
    [34, 84, 54],
    [120, 176, 222],
    [112, 28, 42],
    [240, 228, 200],
    [62, 64, 68],
];
const VENDORS: &[&str] = &["North & Co", "Backroom Basics", "Fjell", "Harbour Mill", "Loom Street", "Oak & Thread"];
const TAGS: &[&str] = &["new", "bestseller", "sustainable", "gift", "limited", "sale", "unisex", "handmade"];
const SENTENCES: &[&str] = &[
    "Made to be worn every day and to last for years.",
    "Cut for an easy fit that layers well.",
    "Finished by hand in a small workshop.",
    "The fabric softens with every wash.",
    "Dyed with low-impact dyes and packed without plastic.",
    "A **shop favourite** since our first season.",
    "Machine wash cold, dry flat.",
    "Designed in-house and made in small runs.",
];

/// A small, fixed random sequence (xorshift), so the demo is the same on every machine.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A leaf category with what is made for it.
struct Leaf {
    handle: String,
    nouns: &'static [&'static str],
    sizes: &'static [&'static str],
}

fn handle_of(name: &str) -> String {
    super::products::slugify(name)
}

fn leaves() -> Vec<Leaf> {
    let mut leaves = Vec::new();
    for (_, middles) in TREE {
        for (_, ends) in *middles {
            for (name, nouns, sizes) in *ends {
                leaves.push(Leaf { handle: handle_of(name), nouns, sizes });
            }
        }
    }
    leaves
}

/// `count` products in the import layout (`docs/CSV.md`), three variants each (two for
/// one-size goods), with prices in EUR and USD and stock at the default location.
pub fn products_csv(count: usize) -> String {
    let mut dice = Dice(0x5eed_cafe_f00d_d00d);
    let leaves = leaves();
    let mut csv = String::from(
        "handle,title,description,status,vendor,tags,categories,option1_name,option1_value,option2_name,\
         option2_value,sku,weight_grams,inventory,price_EUR,compare_at_price_EUR,price_USD\n",
    );
    for n in 1..=count {
        let leaf = &leaves[dice.below(leaves.len())];
        let noun = dice.pick(leaf.nouns);
        let title = format!("{} {} {noun}", dice.pick(ADJECTIVES), dice.pick(MATERIALS));
        let handle = format!("{}-{n}", handle_of(&title));
        let description: Vec<&str> = (0..3).map(|_| dice.pick(SENTENCES)).collect();
        let mut tags = vec![dice.pick(TAGS)];
        let extra = dice.pick(TAGS);
        if extra != tags[0] {
            tags.push(extra);
        }
        let base = 900 + 100 * dice.below(180) as i64;
        let on_sale = dice.below(5) == 0;
        let variants = if leaf.sizes.len() == 1 { 2 } else { 3 };
        let first_size = dice.below(leaf.sizes.len().saturating_sub(variants - 1).max(1));
        let colour = dice.pick(COLOURS);
        let second_colour = COLOURS[(COLOURS.iter().position(|c| *c == colour).unwrap_or(0) + 1) % COLOURS.len()];
        for v in 0..variants {
            let (size, colour) = if leaf.sizes.len() == 1 {
                (leaf.sizes[0], if v == 0 { colour } else { second_colour })
            } else {
                (leaf.sizes[first_size + v], colour)
            };
            let first = v == 0;
            let product = |text: String| if first { text } else { String::new() };
            let (amount, compare_at) = if on_sale { (base * 8 / 10, base.to_string()) } else { (base, String::new()) };
            let _ = writeln!(
                csv,
                "{handle},{},\"{}\",published,{},\"{}\",{},{},{size},{},{colour},DEMO-{n:05}-{v},{},{},{amount},{},{}",
                product(title.clone()),
                product(description.join(" ")),
                product(dice.pick(VENDORS).to_owned()),
                product(tags.join(", ")),
                product(leaf.handle.clone()),
                product("Size".into()),
                product("Colour".into()),
                200 + 50 * dice.below(20),
                if dice.below(8) == 0 { 0 } else { 1 + dice.below(40) },
                compare_at,
                amount * 108 / 100,
            );
        }
    }
    csv
}

/// Creates the category tree, unless categories exist already.
pub async fn create_categories(state: &AppState) -> AppResult<()> {
    let existing = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM categories").fetch_one(conn).await
    })?;
    if existing > 0 {
        return Ok(());
    }
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    let mut position = 0;
    let mut add = async |tx: &mut crate::platform::db::Tx, name: &str, parent: Option<&str>| -> AppResult<String> {
        let id = new_id("cat");
        position += 1;
        db_run!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO categories (id, parent_id, handle, name, position, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&id)
            .bind(parent)
            .bind(handle_of(name))
            .bind(name)
            .bind(position)
            .bind(now)
            .execute(conn)
            .await
            .map(drop)
        })?;
        Ok(id)
    };
    for (top, middles) in TREE {
        let top_id = add(&mut tx, top, None).await?;
        for (middle, ends) in *middles {
            let middle_id = add(&mut tx, middle, Some(&top_id)).await?;
            for (end, _, _) in *ends {
                add(&mut tx, end, Some(&middle_id)).await?;
            }
        }
    }
    tx.invalidate(super::taxonomy_changed());
    tx.commit().await?;
    Ok(())
}

/// A product picture in one colour: a rounded shape on a soft light background, as a PNG.
fn picture(colour: [u8; 3]) -> AppResult<Vec<u8>> {
    let size = 800u32;
    let picture = image::RgbImage::from_fn(size, size, |x, y| {
        let (dx, dy) = (x as f32 - 400.0, y as f32 - 420.0);
        let inside = (dx * dx) / (250.0 * 250.0) + (dy * dy) / (300.0 * 300.0) < 1.0;
        let shade = y as f32 / size as f32;
        if inside {
            let light = 1.0 - 0.25 * shade;
            image::Rgb(colour.map(|c| (f32::from(c) * light).min(255.0) as u8))
        } else {
            let grey = (246.0 - 14.0 * shade) as u8;
            image::Rgb([grey, grey, grey.saturating_sub(2)])
        }
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(picture)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(AppError::internal)?;
    Ok(png)
}

/// Gives every product a picture in the colour of its first variant.
async fn add_pictures(state: &AppState) -> AppResult<()> {
    let mut media_ids = Vec::with_capacity(COLOURS.len());
    for rgb in COLOUR_RGB {
        let (media, _) = super::media::save_image(state, picture(*rgb)?.into()).await?;
        media_ids.push(media.id);
    }
    let products = db_run!(state.db.read().await?, |conn| {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT p.id, p.title, v.option_values FROM products p \
             JOIN product_variants v ON v.product_id = p.id AND v.position = 0",
        )
        .fetch_all(conn)
        .await
    })?;
    let rows: Vec<Vec<Param>> = products
        .into_iter()
        .map(|(id, title, options)| {
            let options: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&options).unwrap_or_default();
            let colour = options.get("Colour").and_then(|c| COLOURS.iter().position(|known| known == c)).unwrap_or(0);
            vec![Param::Text(id), Param::Text(media_ids[colour].clone()), Param::Int(0), Param::Text(title)]
        })
        .collect();
    let mut tx = state.db.begin().await?;
    tx.insert_rows("INSERT INTO product_images (product_id, media_id, position, alt)", &rows, "").await?;
    tx.invalidate(super::taxonomy_changed());
    tx.commit().await?;
    Ok(())
}

/// Seeds the sample shop into a database without products: categories, `count` products
/// with stock and a picture each (drawn here, one per colour), three collections, and the
/// regions, taxes and shipping a checkout needs. Returns whether it seeded.
pub async fn seed(state: &AppState, count: usize) -> AppResult<bool> {
    crate::checkout::demo::seed(state).await?;
    let products = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM products").fetch_one(conn).await
    })?;
    if products > 0 {
        return Ok(false);
    }
    create_categories(state).await?;
    let csv = products_csv(count);
    let actor = Actor { kind: "system", id: "demo" };
    let report = import::import_products(state, csv.as_bytes(), ImportOptions::default(), actor, &|_, _| {}).await?;
    if !report.errors.is_empty() {
        let first = &report.errors[0];
        return Err(AppError::internal(anyhow::anyhow!(
            "the demo catalog does not import: row {}, {}: {}",
            first.row,
            first.column,
            first.reason
        )));
    }
    add_pictures(state).await?;
    let ids = db_run!(state.db.read().await?, |conn| {
        sqlx::query_scalar::<_, String>("SELECT id FROM products ORDER BY handle").fetch_all(conn).await
    })?;
    let now = Timestamp::now();
    let mut tx = state.db.begin().await?;
    for (at, (title, every)) in [("New Arrivals", 7), ("Best Sellers", 11), ("Gift Ideas", 13)].into_iter().enumerate()
    {
        let id = new_id("col");
        db_run!(tx.conn(), |conn| {
            sqlx::query(
                "INSERT INTO collections (id, handle, title, description, description_html, published, created_at, \
                 updated_at) VALUES ($1, $2, $3, '', '', $4, $5, $5)",
            )
            .bind(&id)
            .bind(handle_of(title))
            .bind(title)
            .bind(true)
            .bind(now)
            .execute(conn)
            .await
            .map(drop)
        })?;
        for (position, product) in ids.iter().skip(at).step_by(every).take(24).enumerate() {
            db_run!(tx.conn(), |conn| {
                sqlx::query("INSERT INTO collection_products (collection_id, product_id, position) VALUES ($1, $2, $3)")
                    .bind(&id)
                    .bind(product)
                    .bind(position as i64)
                    .execute(conn)
                    .await
                    .map(drop)
            })?;
        }
    }
    tx.invalidate(super::taxonomy_changed());
    tx.commit().await?;
    crate::content::demo::seed(state).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_catalog_is_the_same_every_time() {
        let csv = products_csv(50);
        assert_eq!(csv, products_csv(50));
        assert!(csv.lines().filter(|line| line.contains("DEMO-00050-")).count() >= 2);
        assert!(csv.lines().count() > 100);
    }
}
