//! Shoppers browse and search the catalog, on both databases with the same answers:
//! categories (a tree, descendants included) and collections (curated order); filters by
//! tag, price, availability and option values; sorting and cursors; search with relevance,
//! prefixes and typos; facet counts.

mod common;

use backroom::accounts::roles::Role;
use common::TestApp;
use serde_json::{Value, json};

struct Shop {
    app: TestApp,
    auth: String,
}

impl Shop {
    async fn open(backend: common::Backend) -> Self {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        Self { app, auth }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let answer = self.app.post(path, body, &[("authorization", &self.auth)]).await;
        assert!(answer.status == 201 || answer.status == 200, "{path}: {} {}", answer.status, answer.text);
        answer.body
    }

    async fn category(&self, name: &str, parent: Option<&str>) -> String {
        let body = self.post("/api/v1/admin/categories", json!({"name": name, "parent_id": parent})).await;
        body["id"].as_str().unwrap().to_owned()
    }

    /// A published product; `variants` are `(sku, size, colour, EUR cents)`.
    async fn product(
        &self,
        title: &str,
        description: &str,
        tags: &[&str],
        categories: &[&str],
        variants: &[(&str, &str, &str, i64)],
    ) -> Value {
        let sizes: Vec<&str> = variants.iter().map(|v| v.1).fold(Vec::new(), |mut all, s| {
            if !all.contains(&s) {
                all.push(s);
            }
            all
        });
        let colours: Vec<&str> = variants.iter().map(|v| v.2).fold(Vec::new(), |mut all, c| {
            if !all.contains(&c) {
                all.push(c);
            }
            all
        });
        let variants: Vec<Value> = variants
            .iter()
            .map(|(sku, size, colour, cents)| {
                json!({"sku": sku, "options": {"Size": size, "Colour": colour}, "prices": [{"currency": "EUR", "amount": cents}]})
            })
            .collect();
        self.post(
            "/api/v1/admin/products",
            json!({
                "title": title, "description": description, "status": "published", "tags": tags,
                "categories": categories,
                "options": [{"name": "Size", "values": sizes}, {"name": "Colour", "values": colours}],
                "variants": variants,
            }),
        )
        .await
    }

    async fn stock(&self, product: &Value, units: i64) {
        let variant = product["variants"][0]["id"].as_str().unwrap();
        self.post(
            &format!("/api/v1/admin/variants/{variant}/inventory/movements"),
            json!({"quantity": units, "kind": "received"}),
        )
        .await;
    }

    /// The handles a store list answers, in order.
    async fn handles(&self, path: &str) -> Vec<String> {
        let answer = self.app.get(path, &[]).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        answer.body["data"].as_array().unwrap().iter().map(|p| p["handle"].as_str().unwrap().to_owned()).collect()
    }
}

fn count_of(facet: &Value, value: &str) -> Option<u64> {
    facet.as_array().unwrap().iter().find(|v| v["value"] == value).map(|v| v["count"].as_u64().unwrap())
}

conformance! {
    async fn shoppers_browse_the_category_tree_and_collections(backend) {
        let shop = Shop::open(backend).await;
        let clothing = shop.category("Clothing", None).await;
        let tops = shop.category("Tops", Some(&clothing)).await;
        let tees = shop.category("Tees", Some(&tops)).await;
        let bottoms = shop.category("Bottoms", Some(&clothing)).await;
        let gifts = shop.category("Gift Cards", None).await;

        let tee = shop.product("Plain Tee", "", &[], &[&tees], &[("T-1", "M", "White", 1500)]).await;
        let shirt = shop.product("Linen Shirt", "", &[], &[&tops], &[("S-1", "M", "Blue", 4500)]).await;
        let jeans = shop.product("Jeans", "", &[], &[&bottoms], &[("J-1", "32", "Blue", 8000)]).await;
        shop.product("Gift Card", "", &[], &[&gifts], &[("G-1", "One", "None", 2500)]).await;
        assert_eq!(tee["categories"], json!([tees]));
        let by_id = shop.app.get(&format!("/api/v1/store/products/{}", tee["id"].as_str().unwrap()), &[]).await;
        assert_eq!(by_id.body["handle"], "plain-tee", "a product by its id too: {}", by_id.text);

        // The tree, in order, with counts that include what sits below.
        let tree = shop.app.get("/api/v1/store/categories", &[]).await;
        assert_eq!(tree.status, 200, "{}", tree.text);
        let names: Vec<&str> = tree.body.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Clothing", "Gift Cards"]);
        assert_eq!(tree.body[0]["product_count"], 3);
        assert_eq!(tree.body[0]["children"][1]["handle"], "tops");
        assert_eq!(tree.body[0]["children"][1]["product_count"], 2);
        assert_eq!(tree.body[0]["children"][1]["children"][0]["handle"], "tees");

        // A category's page gives the way to it; a category lists its descendants' products.
        let page = shop.app.get("/api/v1/store/categories/tees", &[]).await;
        assert_eq!(page.body["ancestors"], json!([{"handle": "clothing", "name": "Clothing"}, {"handle": "tops", "name": "Tops"}]));
        let mut in_clothing = shop.handles("/api/v1/store/products?category=clothing").await;
        in_clothing.sort();
        assert_eq!(in_clothing, ["jeans", "linen-shirt", "plain-tee"]);
        assert_eq!(shop.handles("/api/v1/store/products?category=tops&category=bottoms&sort=title").await, ["jeans", "linen-shirt", "plain-tee"]);
        assert_eq!(shop.handles("/api/v1/store/products?category=no-such-category").await, Vec::<String>::new());

        // The tree refuses cycles and duplicate handles, and keeps categories with children.
        let moved = shop.app.patch(&format!("/api/v1/admin/categories/{clothing}"), json!({"parent_id": tees}), &[("authorization", &shop.auth)]).await;
        assert_eq!(moved.problem(422, "validation_failed")["errors"][0]["code"], "cycle");
        let taken = shop.app.post("/api/v1/admin/categories", json!({"name": "Other", "handle": "tops"}), &[("authorization", &shop.auth)]).await;
        taken.problem(409, "conflict");
        shop.app.delete(&format!("/api/v1/admin/categories/{tops}"), &[("authorization", &shop.auth)]).await.problem(409, "conflict");
        let orphan = shop.app.post("/api/v1/admin/categories", json!({"name": "X", "parent_id": "cat_01JZZZZZZZZZZZZZZZZZZZZZZZ"}), &[("authorization", &shop.auth)]).await;
        assert_eq!(orphan.problem(422, "validation_failed")["errors"][0]["field"], "parent_id");

        // Moving Tops to the top of the tree, under If-Match, moves its products with it.
        let read = shop.app.get(&format!("/api/v1/admin/categories/{tops}"), &[("authorization", &shop.auth)]).await;
        let etag = read.header("etag").unwrap().to_owned();
        let to_top = shop.app.patch(&format!("/api/v1/admin/categories/{tops}"), json!({"parent_id": null, "name": "Tops & Tees"}), &[("authorization", &shop.auth), ("if-match", &etag)]).await;
        assert_eq!(to_top.status, 200, "{}", to_top.text);
        assert_eq!(to_top.body["parent_id"], Value::Null);
        assert_eq!(shop.handles("/api/v1/store/products?category=clothing").await, ["jeans"]);
        let search = shop.app.get("/api/v1/store/search?q=tees", &[]).await;
        assert_eq!(search.body["total"], 2, "category names are searched: {}", search.text);

        // A product placed in an unknown category is refused whole.
        let before = shop.app.count("SELECT COUNT(*) FROM products").await;
        let bad = shop.app.post("/api/v1/admin/products", json!({"title": "Ghost", "categories": ["cat_01JZZZZZZZZZZZZZZZZZZZZZZZ"], "variants": [{}]}), &[("authorization", &shop.auth)]).await;
        assert_eq!(bad.problem(422, "validation_failed")["errors"][0]["field"], "categories[0]");
        assert_eq!(shop.app.count("SELECT COUNT(*) FROM products").await, before);

        // Collections keep staff's order; shoppers see only published ones.
        let ids = [&jeans, &tee, &shirt].map(|p| p["id"].as_str().unwrap().to_owned());
        let collection = shop.post("/api/v1/admin/collections", json!({"title": "Staff Picks", "product_ids": ids})).await;
        assert_eq!(collection["handle"], "staff-picks");
        assert!(shop.app.get("/api/v1/store/collections", &[]).await.body.as_array().unwrap().is_empty());
        assert_eq!(shop.handles("/api/v1/store/products?collection=staff-picks").await, Vec::<String>::new());
        let id = collection["id"].as_str().unwrap();
        let published = shop.app.patch(&format!("/api/v1/admin/collections/{id}"), json!({"published": true}), &[("authorization", &shop.auth), ("if-match", "\"v1\"")]).await;
        assert_eq!(published.status, 200, "{}", published.text);
        let listed = shop.app.get("/api/v1/store/collections", &[]).await;
        assert_eq!(listed.body[0]["handle"], "staff-picks");
        assert_eq!(listed.body[0]["product_count"], 3);
        assert_eq!(shop.handles("/api/v1/store/products?collection=staff-picks").await, ["jeans", "plain-tee", "linen-shirt"]);
        let reordered = [&shirt, &jeans].map(|p| p["id"].as_str().unwrap().to_owned());
        shop.app.patch(&format!("/api/v1/admin/collections/{id}"), json!({"product_ids": reordered}), &[("authorization", &shop.auth)]).await;
        assert_eq!(shop.handles("/api/v1/store/products?collection=staff-picks").await, ["linen-shirt", "jeans"]);
        assert_eq!(shop.handles("/api/v1/store/products?collection=staff-picks&sort=price&currency=EUR").await, ["linen-shirt", "jeans"]);
        let unknown = shop.app.patch(&format!("/api/v1/admin/collections/{id}"), json!({"product_ids": ["prd_01JZZZZZZZZZZZZZZZZZZZZZZZ"]}), &[("authorization", &shop.auth)]).await;
        assert_eq!(unknown.problem(422, "validation_failed")["errors"][0]["field"], "product_ids[0]");
        assert_eq!(shop.handles("/api/v1/store/products?collection=staff-picks").await, ["linen-shirt", "jeans"]);
    }

    async fn shoppers_filter_sort_and_page_through_products(backend) {
        let shop = Shop::open(backend).await;
        let tee = shop.product("Basic Tee", "", &["cotton", "summer"], &[], &[("BT-S", "S", "White", 1500), ("BT-M", "M", "Black", 1700)]).await;
        let hoodie = shop.product("Zip Hoodie", "", &["cotton", "winter"], &[], &[("ZH-M", "M", "Grey", 5500)]).await;
        shop.product("Rain Jacket", "", &["winter"], &[], &[("RJ-L", "L", "Yellow", 12000)]).await;
        shop.product("Anorak", "", &["winter"], &[], &[("AN-L", "L", "Green", 9900)]).await;
        shop.stock(&tee, 20).await;
        shop.stock(&hoodie, 2).await;

        assert_eq!(shop.handles("/api/v1/store/products").await, ["anorak", "rain-jacket", "zip-hoodie", "basic-tee"]);
        assert_eq!(shop.handles("/api/v1/store/products?sort=title").await, ["anorak", "basic-tee", "rain-jacket", "zip-hoodie"]);
        assert_eq!(shop.handles("/api/v1/store/products?sort=price&currency=EUR").await, ["basic-tee", "zip-hoodie", "anorak", "rain-jacket"]);
        assert_eq!(shop.handles("/api/v1/store/products?sort=-price&currency=EUR").await, ["rain-jacket", "anorak", "zip-hoodie", "basic-tee"]);
        assert_eq!(shop.handles("/api/v1/store/products?tag=cotton&sort=title").await, ["basic-tee", "zip-hoodie"]);
        assert_eq!(shop.handles("/api/v1/store/products?tag=summer&tag=winter&sort=title").await.len(), 4);
        assert_eq!(shop.handles("/api/v1/store/products?currency=EUR&price_min=1600&price_max=10000&sort=price").await, ["zip-hoodie", "anorak"]);
        assert_eq!(shop.handles("/api/v1/store/products?available=true&sort=title").await, ["basic-tee", "zip-hoodie"]);
        assert_eq!(shop.handles("/api/v1/store/products?available=false&sort=title").await, ["anorak", "rain-jacket"]);
        assert_eq!(shop.handles("/api/v1/store/products?option=Size:M&sort=title").await, ["basic-tee", "zip-hoodie"]);
        assert_eq!(shop.handles("/api/v1/store/products?option=Size:M&option=Colour:Black").await, ["basic-tee"]);
        assert_eq!(shop.handles("/api/v1/store/products?option=Size:L&option=Size:S&sort=title").await, ["anorak", "basic-tee", "rain-jacket"]);

        // Cursors walk a sorted list without repeats or gaps.
        let mut seen = Vec::new();
        let mut path = "/api/v1/store/products?sort=price&currency=EUR&limit=3".to_owned();
        loop {
            let page = shop.app.get(&path, &[]).await;
            assert_eq!(page.body["total"], 4);
            seen.extend(page.body["data"].as_array().unwrap().iter().map(|p| p["handle"].as_str().unwrap().to_owned()));
            match page.body["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/store/products?sort=price&currency=EUR&limit=3&after={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen, ["basic-tee", "zip-hoodie", "anorak", "rain-jacket"]);

        // A sale ends: the list follows at once, and the ETag changes with it.
        let before = shop.app.get("/api/v1/store/products?available=true", &[]).await;
        let etag = before.header("etag").unwrap().to_owned();
        assert_eq!(shop.app.get("/api/v1/store/products?available=true", &[("if-none-match", &etag)]).await.status, 304);
        let variant = hoodie["variants"][0]["id"].as_str().unwrap();
        shop.post(&format!("/api/v1/admin/variants/{variant}/inventory/movements"), json!({"quantity": -2, "kind": "adjusted"})).await;
        let after = shop.app.get("/api/v1/store/products?available=true", &[("if-none-match", &etag)]).await;
        assert_eq!(after.status, 200);
        assert_eq!(shop.handles("/api/v1/store/products?available=true").await, ["basic-tee"]);

        // Bad filters are named, each of them.
        let bad = shop.app.get("/api/v1/store/products?price_min=-1&sort=relevance&limit=0&option=Size&after=xyz&colour=red", &[]).await;
        let mut fields = bad.error_fields();
        fields.sort();
        assert_eq!(fields, ["after", "colour", "limit", "option", "price_min", "sort"], "{}", bad.text);
        shop.app.get("/api/v1/store/products?sort=price", &[]).await.problem(422, "validation_failed");
        let title_cursor = shop.app.get("/api/v1/store/products?sort=title&limit=1", &[]).await;
        let cursor = title_cursor.body["next_cursor"].as_str().unwrap();
        // A cursor belongs to its order.
        shop.app.get(&format!("/api/v1/store/products?after={cursor}"), &[]).await.problem(422, "validation_failed");
    }

    async fn search_ranks_titles_first_forgives_typos_and_counts_facets(backend) {
        let shop = Shop::open(backend).await;
        let knitwear = shop.category("Knitwear", None).await;
        let sweater = shop.product("Merino Sweater", "A classic crew neck.", &["wool"], &[&knitwear], &[("MS-S", "S", "Navy", 8900), ("MS-M", "M", "Navy", 8900)]).await;
        shop.product("Cotton Tee", "Pairs well with a merino cardigan.", &["cotton"], &[], &[("CT-M", "M", "White", 1900)]).await;
        shop.product("Turtleneck Jumper", "Chunky knit.", &["wool"], &[&knitwear], &[("TJ-L", "L", "Cream", 12900)]).await;
        shop.product("Tea Towel", "Linen.", &[], &[], &[("TT-1", "One", "Natural", 900)]).await;
        shop.stock(&sweater, 3).await;

        let search = |q: &str| {
            let path = format!("/api/v1/store/search?q={q}");
            let shop = &shop;
            async move { shop.handles(&path).await }
        };
        // A title match beats a description match.
        assert_eq!(search("merino").await, ["merino-sweater", "cotton-tee"]);
        // Prefixes as you type; a typo in a longer word; two in a long one; none in short words.
        assert_eq!(search("merino%20swe").await, ["merino-sweater"]);
        assert_eq!(search("sweatre").await, ["merino-sweater"]);
        assert_eq!(search("trutlenekc").await, ["turtleneck-jumper"]);
        assert_eq!(search("tee").await, ["cotton-tee"]);
        // SKUs, tags and category names are searched too; accents fold.
        assert_eq!(search("ms-m").await, ["merino-sweater"]);
        assert_eq!(search("knitwear").await.len(), 2);
        assert_eq!(search("m%C3%A9rino%20sweater").await, ["merino-sweater"]);
        assert!(search("zzzzzz").await.is_empty());

        // Facets count the results; a chosen filter's own facet still counts the others.
        let faceted = shop.app.get("/api/v1/store/search?q=wool&currency=EUR&tag=wool&option=Size:S", &[]).await;
        assert_eq!(faceted.status, 200, "{}", faceted.text);
        assert_eq!(faceted.body["total"], 1);
        let facets = &faceted.body["facets"];
        assert_eq!(count_of(&facets["categories"], "knitwear"), Some(1));
        assert_eq!(facets["categories"][0]["name"], "Knitwear");
        assert_eq!(count_of(&facets["tags"], "wool"), Some(1));
        let sizes = facets["options"].as_array().unwrap().iter().find(|o| o["name"] == "Size").unwrap();
        assert_eq!(count_of(&sizes["values"], "S"), Some(1));
        assert_eq!(count_of(&sizes["values"], "L"), Some(1), "the Size facet ignores the Size filter: {facets}");
        assert_eq!(count_of(&facets["availability"], "low_stock"), Some(1));
        assert_eq!(facets["price"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 1);

        let all = shop.app.get("/api/v1/store/search?q=&currency=EUR", &[]).await;
        assert_eq!(all.body["total"], 4);
        assert_eq!(count_of(&all.body["facets"]["availability"], "out_of_stock"), Some(3));
        assert_eq!(all.body["facets"]["price"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 4);
    }
}
