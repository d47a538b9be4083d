//! The storefront's pages, on both databases: every page type valid HTML (the Nu Html
//! Checker) with the structured data and social cards search engines and networks read
//! (checked in Rust and by structured-data-testing-tool); one canonical address per page;
//! texts people set shown inert; answers cached, compressed and revalidated; a theme folder
//! that replaces templates and assets.

mod common;

use std::path::Path;
use std::process::Command;

use backroom::accounts::roles::Role;
use common::{Resp, TestApp};
use serde_json::{Value, json};

const BROWSER: [(&str, &str); 1] = [("accept", "text/html,application/xhtml+xml")];

/// A demo shop: the sample catalog, pages, posts and menus.
async fn demo_shop(backend: common::Backend) -> TestApp {
    let app = TestApp::spawn(backend).await;
    assert!(backroom::catalog::demo::seed(&app.state, 30).await.expect("the demo seeds"));
    app
}

async fn page(app: &TestApp, path: &str) -> Resp {
    let page = app.get(path, &BROWSER).await;
    assert!(
        page.header("content-type").is_some_and(|t| t.starts_with("text/html")),
        "{path}: {} {:?}",
        page.status,
        page.header("content-type")
    );
    page
}

/// The JSON-LD blocks of a page, parsed.
fn json_ld(html: &str) -> Vec<Value> {
    let open = "<script type=\"application/ld+json\">";
    html.split(open)
        .skip(1)
        .map(|rest| {
            let block = &rest[..rest.find("</script>").expect("a closed script")];
            serde_json::from_str(block).unwrap_or_else(|err| panic!("JSON-LD does not parse ({err}): {block}"))
        })
        .collect()
}

fn of_type<'a>(blocks: &'a [Value], kind: &str) -> &'a Value {
    blocks.iter().find(|b| b["@type"] == kind).unwrap_or_else(|| panic!("no {kind} in {blocks:?}"))
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The value of `attribute` on the first tag that starts with `start`.
fn attribute(html: &str, start: &str, attribute: &str) -> Option<String> {
    let tag = &html[html.find(start)?..];
    let tag = &tag[..tag.find('>')?];
    let key = format!("{attribute}=\"");
    let value = &tag[tag.find(&key)? + key.len()..];
    Some(unescape(&value[..value.find('"')?]))
}

/// The value of the hidden field `name` of the first form holding it.
fn hidden(html: &str, name: &str) -> String {
    attribute(html, &format!("<input type=\"hidden\" name=\"{name}\""), "value")
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn canonical(html: &str) -> Option<String> {
    attribute(html, "<link rel=\"canonical\"", "href")
}

fn meta(html: &str, name: &str) -> Option<String> {
    attribute(html, &format!("<meta name=\"{name}\""), "content")
        .or_else(|| attribute(html, &format!("<meta property=\"{name}\""), "content"))
}

/// Runs the Nu Html Checker on every page; panics with its findings.
fn assert_valid_html(folder: &Path) {
    let jar = common::npm_tools().join("node_modules/vnu-jar/build/dist/vnu.jar");
    let output = Command::new("java")
        .arg("-jar")
        .arg(jar)
        .args(["--errors-only", "--skip-non-html"])
        .arg(folder)
        .output()
        .expect("java runs the checker");
    assert!(
        output.status.success(),
        "the Nu Html Checker found errors:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs structured-data-testing-tool on a saved page: the schemas are there, and Google's,
/// Twitter's and Facebook's presets pass.
fn assert_structured_data(file: &Path, schemas: &str) {
    let tool = common::npm_tools().join("node_modules/.bin/sdtt");
    let output = Command::new(tool)
        .arg("--file")
        .arg(file)
        .args(["--presets", "Google,Twitter,Facebook", "--schemas", schemas])
        .output()
        .expect("sdtt runs");
    assert!(
        output.status.success(),
        "structured data of {} ({schemas}):\n{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout)
    );
}

/// Fetches the sitemap index and every sitemap it lists, and validates them against the
/// sitemaps.org schemas (with Google's image extension).
async fn assert_valid_sitemaps(app: &TestApp) {
    let folder = tempfile::tempdir().unwrap();
    let index = app.get("/sitemap.xml", &[]).await;
    assert_eq!(index.status, 200);
    std::fs::write(folder.path().join("sitemap.xml"), &index.text).unwrap();
    let mut files = vec![folder.path().join("sitemap.xml")];
    for loc in index.text.split("<loc>").skip(1) {
        let url = &loc[..loc.find("</loc>").unwrap()];
        let name = url.rsplit('/').next().unwrap();
        let file = app.get(&format!("/sitemaps/{name}"), &[]).await;
        assert_eq!(file.status, 200, "{url}");
        std::fs::write(folder.path().join(name), &file.text).unwrap();
        files.push(folder.path().join(name));
    }
    assert!(files.len() >= 5, "an index of the sitemaps of each kind");
    let python = common::python_with("lxml==6.1.3");
    let schema = common::npm_tools().join("node_modules/sitemap/schema/sitemap.xsd");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/validate_sitemaps.py");
    let output = Command::new(python).arg(script).arg(schema).args(&files).output().expect("python runs");
    assert!(
        output.status.success(),
        "the sitemaps do not validate:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

conformance! {
    async fn every_page_type_is_valid_html_with_structured_data_and_social_cards(backend) {
        let app = demo_shop(backend).await;
        let listed = app.get("/api/v1/store/products?limit=1", &[]).await;
        let handle = listed.body["data"][0]["handle"].as_str().unwrap().to_owned();
        let category = listed.body["data"][0]["categories"][0].as_str().unwrap().to_owned();
        let tree = app.get(&format!("/api/v1/store/categories/{category}"), &[]).await;
        let mut category_path: Vec<String> =
            tree.body["ancestors"].as_array().unwrap().iter().map(|a| a["handle"].as_str().unwrap().to_owned()).collect();
        category_path.push(category.clone());
        let category_path = format!("/categories/{}", category_path.join("/"));

        let folder = tempfile::tempdir().unwrap();
        let pages = [
            ("home", "/".to_owned(), 200, "jsonld:Organization,jsonld:WebSite"),
            ("product", format!("/products/{handle}"), 200, "jsonld:Product,jsonld:BreadcrumbList"),
            ("category", category_path.clone(), 200, "jsonld:CollectionPage,jsonld:BreadcrumbList"),
            ("collection", "/collections/best-sellers".to_owned(), 200, "jsonld:CollectionPage"),
            ("search", "/search?q=linen".to_owned(), 200, ""),
            ("blog", "/blog".to_owned(), 200, "jsonld:CollectionPage"),
            ("tag", "/blog/tag/care".to_owned(), 200, "jsonld:CollectionPage"),
            ("post", "/blog/caring-for-leather-shoes".to_owned(), 200, "jsonld:BlogPosting"),
            ("page", "/pages/about".to_owned(), 200, "jsonld:WebPage"),
            ("missing", "/no/such/page".to_owned(), 404, ""),
        ];
        let mut html = std::collections::HashMap::new();
        for (name, path, status, _) in &pages {
            let answer = page(&app, path).await;
            assert_eq!(answer.status, *status, "{path}: {}", answer.text);
            assert!(answer.text.contains("<main id=\"main\">"), "{path}");
            std::fs::write(folder.path().join(format!("{name}.html")), &answer.text).unwrap();
            html.insert(*name, answer.text);
        }
        assert_valid_html(folder.path());
        for (name, _, _, schemas) in &pages {
            if !schemas.is_empty() {
                assert_structured_data(&folder.path().join(format!("{name}.html")), schemas);
            }
        }

        let base = app.state.config.public_url();
        let home = json_ld(&html["home"]);
        assert_eq!(of_type(&home, "Organization")["name"], "Oak & Thread");
        let search = &of_type(&home, "WebSite")["potentialAction"];
        assert_eq!(search["@type"], "SearchAction");
        assert_eq!(search["target"]["urlTemplate"], format!("{base}/search?q={{search_term_string}}"));
        assert_eq!(search["query-input"], "required name=search_term_string");

        let product = app.get(&format!("/api/v1/store/products/{handle}"), &[]).await.body;
        let blocks = json_ld(&html["product"]);
        let described = of_type(&blocks, "Product");
        assert_eq!(described["name"], product["title"]);
        assert_eq!(described["url"], format!("{base}/products/{handle}"));
        let offers = &described["offers"];
        let one = if offers["@type"] == "AggregateOffer" { &offers["offers"][0] } else { offers };
        assert_eq!(one["priceCurrency"], "EUR");
        let cents = product["variants"][0]["prices"].as_array().unwrap().iter().find(|p| p["currency"] == "EUR").unwrap()["amount"].as_i64().unwrap();
        assert_eq!(one["price"], format!("{}.{:02}", cents / 100, cents % 100));
        let availability = match product["variants"][0]["availability"].as_str().unwrap() {
            "in_stock" => "InStock",
            "low_stock" => "LimitedAvailability",
            "backorder" => "BackOrder",
            _ => "OutOfStock",
        };
        assert_eq!(one["availability"], format!("https://schema.org/{availability}"));
        let crumbs = of_type(&blocks, "BreadcrumbList")["itemListElement"].as_array().unwrap().clone();
        assert_eq!(crumbs.first().unwrap()["item"], format!("{base}/"));
        assert_eq!(crumbs.last().unwrap()["item"], format!("{base}/products/{handle}"));
        for (at, crumb) in crumbs.iter().enumerate() {
            assert_eq!(crumb["position"], at + 1);
        }
        assert_eq!(meta(&html["product"], "og:type").as_deref(), Some("product"));
        assert!(meta(&html["product"], "og:image").unwrap().starts_with(&format!("{base}/media/")));
        assert_eq!(meta(&html["product"], "twitter:card").as_deref(), Some("summary_large_image"));
        assert!(html["product"].contains("name=\"variant_id\""), "a variant can be chosen");

        let listing = of_type(&json_ld(&html["category"]), "CollectionPage").clone();
        let items = listing["mainEntity"]["itemListElement"].as_array().unwrap();
        assert!(!items.is_empty());
        assert!(items.iter().all(|item| item["url"].as_str().unwrap().starts_with(&format!("{base}/products/"))));

        let post = of_type(&json_ld(&html["post"]), "BlogPosting").clone();
        assert_eq!(post["headline"], "Caring for leather shoes");
        assert!(post["datePublished"].as_str().unwrap().ends_with('Z'));
        assert_eq!(meta(&html["post"], "og:type").as_deref(), Some("article"));
        assert!(html["tag"].contains("Caring for leather shoes") && !html["tag"].contains("How our linen is made"));

        assert_eq!(meta(&html["search"], "robots").as_deref(), Some("noindex, follow"));
        assert_eq!(meta(&html["missing"], "robots").as_deref(), Some("noindex, follow"));
        assert_eq!(meta(&html["home"], "robots").as_deref(), Some("index, follow"));
        assert!(html["product"].contains("/media/"), "the sitemaps have images to list");
        assert_valid_sitemaps(&app).await;
    }

    async fn every_page_has_one_canonical_address(backend) {
        let app = demo_shop(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        let base = app.state.config.public_url();
        let listed = app.get("/api/v1/store/products?limit=1", &[]).await;
        let handle = listed.body["data"][0]["handle"].as_str().unwrap().to_owned();
        let id = listed.body["data"][0]["id"].as_str().unwrap().to_owned();

        // Tracking parameters change nothing; the canonical address has none.
        let tracked = page(&app, &format!("/products/{handle}?utm_source=news&utm_medium=email")).await;
        assert_eq!(tracked.status, 200);
        assert_eq!(canonical(&tracked.text), Some(format!("{base}/products/{handle}")));

        // A trailing slash leads to the address without it, the query kept.
        let slashed = app.get(&format!("/products/{handle}/?ref=x"), &BROWSER).await;
        assert_eq!(slashed.status, 301);
        assert_eq!(slashed.header("location"), Some(format!("/products/{handle}?ref=x").as_str()));
        let slashed = app.get("/categories/clothing/", &BROWSER).await;
        assert_eq!((slashed.status, slashed.header("location")), (301, Some("/categories/clothing")));

        // A category is at the path from the top of the tree.
        let short = app.get("/categories/tops?sort=title", &BROWSER).await;
        assert_eq!((short.status, short.header("location")), (301, Some("/categories/clothing/tops?sort=title")));

        // A renamed product keeps its old address, which leads to the new one.
        let product = app.get(&format!("/api/v1/admin/products/{id}"), &h).await;
        let version = product.header("etag").unwrap().to_owned();
        let renamed = app
            .patch(&format!("/api/v1/admin/products/{id}"), json!({"handle": "renamed-one"}), &[h[0], ("if-match", &version)])
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        let old = app.get(&format!("/products/{handle}"), &BROWSER).await;
        assert_eq!((old.status, old.header("location")), (301, Some("/products/renamed-one")));
        assert_eq!(page(&app, "/products/renamed-one").await.status, 200);

        // Lists: pages of the plain list are their own, with links to their neighbours;
        // filtered and sorted lists are kept out of indexes and point at the plain list.
        let first = page(&app, "/search").await;
        assert!(first.text.contains("rel=\"next\""));
        let clothing = page(&app, "/categories/clothing").await;
        assert_eq!(canonical(&clothing.text), Some(format!("{base}/categories/clothing")));
        assert_eq!(meta(&clothing.text, "robots").as_deref(), Some("index, follow"));
        let filtered = page(&app, "/categories/clothing?sort=title&tag=organic").await;
        assert_eq!(filtered.status, 200);
        assert_eq!(canonical(&filtered.text), Some(format!("{base}/categories/clothing")));
        assert_eq!(meta(&filtered.text, "robots").as_deref(), Some("noindex, follow"));
        let all = page(&app, "/search?sort=title").await;
        let next = attribute(&all.text, "<link rel=\"next\"", "href").expect("a next page");
        assert_eq!(next, format!("{base}/search?sort=title&page=2"));
        let second = page(&app, "/search?sort=title&page=2").await;
        // Numbered pages follow on from each other, in the order the API gives.
        let titles = |html: &str| -> Vec<String> {
            html.split("<span class=\"title\">").skip(1).map(|rest| unescape(&rest[..rest.find("</span>").unwrap()])).collect()
        };
        let listed = app.get("/api/v1/store/products?sort=title&limit=100", &[]).await;
        let expected: Vec<String> = listed.body["data"].as_array().unwrap().iter().map(|p| p["title"].as_str().unwrap().to_owned()).collect();
        let shown: Vec<String> = titles(&all.text).into_iter().chain(titles(&second.text)).collect();
        assert_eq!(shown, expected);
        assert_eq!(attribute(&second.text, "<link rel=\"prev\"", "href"), Some(format!("{base}/search?sort=title")));
        assert_eq!(page(&app, "/categories/clothing?page=400").await.status, 404);
        let bad = page(&app, "/categories/clothing?page=first").await;
        assert_eq!(bad.status, 400);
        assert!(bad.text.contains("`page` must be a page number"), "{}", bad.text);
        assert_eq!(page(&app, "/search?sort=sideways").await.status, 400);

        // A redirect rule is consulted before a 404; browsers get the theme's 404 page, API
        // clients a problem.
        let rule = app.post("/api/v1/admin/redirects", json!({"from": "/old-shop/*", "to": "/categories/*", "status": 301}), &h).await;
        assert_eq!(rule.status, 201, "{}", rule.text);
        let moved = app.get("/old-shop/clothing", &BROWSER).await;
        assert_eq!((moved.status, moved.header("location")), (301, Some("/categories/clothing")));
        // Even under a path the storefront answers, once no page is there.
        let rule = app.post("/api/v1/admin/redirects", json!({"from": "/products/sold-out-forever", "to": "/categories/clothing", "status": 301}), &h).await;
        assert_eq!(rule.status, 201, "{}", rule.text);
        let moved = app.get("/products/sold-out-forever", &BROWSER).await;
        assert_eq!((moved.status, moved.header("location")), (301, Some("/categories/clothing")));
        let missing = page(&app, "/nothing-here").await;
        assert_eq!(missing.status, 404);
        assert!(missing.text.contains("Page not found"));
        app.get("/nothing-here", &[]).await.problem(404, "not_found");
        app.get("/api/v1/nothing-here", &BROWSER).await.problem(404, "not_found");
        assert_eq!(page(&app, "/blog/no-such-post").await.status, 404);
        assert_eq!(page(&app, "/categories/no-such-category").await.status, 404);
    }

    async fn texts_people_set_are_shown_inert(backend) {
        let app = TestApp::spawn(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let h = [("authorization", auth.as_str())];
        let evil = "Evil \"><script>alert(1)</script><img src=x onerror=alert(2)>";
        // Tags and option names are at most 50 characters.
        let short = "Evil \"><script>alert(1)</script>";
        let post = |path: &'static str, body: Value| {
            let app = &app;
            async move {
                let answer = app.post(path, body, &h).await;
                assert!(answer.status == 201 || answer.status == 200, "{path}: {}", answer.text);
                answer.body
            }
        };
        let category = post("/api/v1/admin/categories", json!({"name": evil, "handle": "evil", "description": evil})).await;
        let product = post(
            "/api/v1/admin/products",
            json!({
                "title": evil, "handle": "evil-product", "status": "published", "vendor": evil, "tags": [short],
                "description": format!("{evil}\n\n[link](javascript:alert(3)) <a href=\"javascript:alert(4)\">a</a>"),
                "seo_description": evil,
                "categories": [category["id"]],
                "options": [{"name": short, "values": [short, "plain"]}],
                "variants": [
                    {"sku": "E-1", "options": {short: short}, "prices": [{"currency": "EUR", "amount": 1000}]},
                    {"sku": "E-2", "options": {short: "plain"}, "prices": [{"currency": "EUR", "amount": 1200}]},
                ],
            }),
        )
        .await;
        post("/api/v1/admin/collections", json!({"title": evil, "handle": "evil-collection", "published": true, "description": evil, "product_ids": [product["id"]]})).await;
        post("/api/v1/admin/posts", json!({"title": evil, "slug": "evil-post", "status": "published", "body": format!("{evil}\n\n[x](javascript:alert(5))"), "tags": [short], "meta_description": evil})).await;
        post("/api/v1/admin/pages", json!({"title": evil, "slug": "evil-page", "status": "published", "body": evil})).await;
        let raw = app.post("/api/v1/admin/menus", json!({"handle": "main", "title": "Main", "items": [{"label": "x", "kind": "url", "target": "/search?q=\"><script>"}]}), &h).await;
        assert_eq!(raw.problem(422, "validation_failed")["errors"][0]["field"], "items[0].target");
        post("/api/v1/admin/menus", json!({"handle": "main", "title": evil, "items": [{"label": evil, "kind": "url", "target": "/search?q=%22%3E%3Cscript%3E"}]})).await;
        let site = app.get("/api/v1/admin/site", &h).await;
        let version = site.header("etag").unwrap().to_owned();
        let changed = app
            .patch("/api/v1/admin/site", json!({"name": evil, "description": evil, "contact": {"email": "a@example.com", "phone": "1", "address": evil}}), &[h[0], ("if-match", &version)])
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text);

        let folder = tempfile::tempdir().unwrap();
        let paths = [
            "/", "/products/evil-product", "/categories/evil", "/collections/evil-collection", "/blog",
            "/blog/evil-post", "/pages/evil-page", "/search?q=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E", "/nowhere",
        ];
        for (at, path) in paths.iter().enumerate() {
            let shown = page(&app, path).await;
            assert!(shown.status == 200 || *path == "/nowhere", "{path}: {}", shown.status);
            // JSON-LD holds the texts as data, with no `<` that could end its element.
            let mut html = shown.text.clone();
            while let Some(start) = html.find("<script type=\"application/ld+json\">") {
                let end = start + html[start..].find("</script>").unwrap();
                assert!(!html[start + 35..end].contains('<'), "{path}: {}", &html[start..end]);
                html.replace_range(start..end + "</script>".len(), "");
            }
            assert!(!html.contains("<script>alert"), "{path} runs a script");
            assert!(!html.contains("<img src=x"), "{path} has a raw image");
            assert!(!html.contains("onerror=alert(2)>") && !html.contains("onerror=\""), "{path} has a handler");
            // `javascript:` may be shown as text, never inside a tag.
            let lower = html.to_lowercase();
            for (at, _) in lower.match_indices("javascript:") {
                let before = &lower[..at];
                assert!(before.rfind('<') < before.rfind('>'), "{path} links to a script: {}", &html[at.saturating_sub(100)..at]);
            }
            assert!(html.contains("Evil &quot;&gt;&lt;script&gt;"), "{path} shows the text, escaped");
            std::fs::write(folder.path().join(format!("{at}.html")), &shown.text).unwrap();
        }
        let blocks = json_ld(&page(&app, "/products/evil-product").await.text);
        assert_eq!(of_type(&blocks, "Product")["name"], evil);
        assert_valid_html(folder.path());
    }

    async fn a_shopper_buys_with_plain_forms_and_no_script(backend) {
        let app = demo_shop(backend).await;
        let browser = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let get = |path: String| {
            let browser = browser.clone();
            let url = app.url(&path);
            async move { Resp::read(browser.get(url).header("accept", "text/html").send().await.unwrap()).await }
        };
        let send = |path: &'static str, form: Vec<(&'static str, String)>, extra: Option<(&'static str, &'static str)>| {
            let browser = browser.clone();
            let url = app.url(path);
            async move {
                let mut request = browser.post(url).form(&form);
                if let Some((name, value)) = extra {
                    request = request.header(name, value);
                }
                Resp::read(request.send().await.unwrap()).await
            }
        };
        let folder = tempfile::tempdir().unwrap();
        let listed = app.get("/api/v1/store/products?available=true&sort=title&limit=1", &[]).await;
        let product = &listed.body["data"][0];
        let variant = product["variants"].as_array().unwrap().iter().find(|v| v["availability"] != "out_of_stock").unwrap();
        let variant_id = variant["id"].as_str().unwrap().to_owned();
        let shown = get(format!("/products/{}", product["handle"].as_str().unwrap())).await;
        assert!(shown.text.contains(&format!("value=\"{variant_id}\"")), "the product page offers the variant");
        assert!(shown.text.contains("action=\"/cart/lines\""));

        // Into the cart: a cookie holds it, for this site's pages only.
        let added = send("/cart/lines", vec![("variant_id", variant_id.clone()), ("quantity", "2".into())], None).await;
        assert_eq!((added.status, added.header("location")), (303, Some("/cart")));
        let cookie = added.set_cookie_line("backroom_cart").expect("the cart's cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
        let cart = get("/cart".into()).await;
        assert_eq!(cart.status, 200);
        assert_eq!(cart.header("cache-control"), Some("no-store"));
        assert!(cart.text.contains(product["title"].as_str().unwrap()));
        assert!(cart.text.contains("value=\"2\""));
        std::fs::write(folder.path().join("cart.html"), &cart.text).unwrap();
        let line = cart.text.split("action=\"/cart/lines/").nth(1).unwrap().split('"').next().unwrap().to_owned();

        // Another site's form changes nothing.
        let forged = send("/cart/lines", vec![("variant_id", variant_id.clone()), ("quantity", "5".into())], Some(("sec-fetch-site", "cross-site"))).await;
        assert_eq!(forged.status, 403);
        let changed = browser.post(app.url(&format!("/cart/lines/{line}"))).form(&[("quantity", "3")]).send().await.unwrap();
        assert_eq!(changed.status(), 303);
        assert!(get("/cart".into()).await.text.contains("value=\"3\""), "the quantity is 3, not 8");
        let too_many = send("/cart/lines", vec![("variant_id", variant_id.clone()), ("quantity", "lots".into())], None).await;
        assert_eq!(too_many.status, 422);
        assert!(too_many.text.contains("`quantity` must be a whole number"), "{}", too_many.text);
        let bad_code = send("/cart/codes", vec![("code", "NOSUCHCODE".into())], None).await;
        assert!(bad_code.status >= 400 && bad_code.text.contains("role=\"alert\""), "{}", bad_code.status);

        // Checkout: details first, then the methods that fit them, then the order.
        let checkout = get("/checkout".into()).await;
        assert_eq!(checkout.status, 200);
        let key = checkout.text.split("name=\"key\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let details = |postcode: &str, action: &str, card: &str, method: &str, total: &str| -> Vec<(&'static str, String)> {
            vec![
                ("key", key.clone()), ("email", "ana@example.com".into()), ("first_name", "Ana".into()),
                ("last_name", "Silva".into()), ("line1", "1 Rue de Rivoli".into()), ("city", "Paris".into()),
                ("postcode", postcode.into()), ("country", "FR".into()), ("provider", "test".into()),
                ("card_number", card.into()), ("shipping_method_id", method.into()), ("action", action.into()),
                ("total", total.into()),
            ]
        };
        let wrong = send("/checkout", details("ABC", "update", "", "", ""), None).await;
        assert_eq!(wrong.status, 422);
        assert!(wrong.text.contains("postcode"), "the page says what is wrong");
        assert!(wrong.text.contains("value=\"ABC\""), "what was typed is kept");
        let updated = send("/checkout", details("75001", "update", "", "", ""), None).await;
        assert_eq!(updated.status, 200);
        std::fs::write(folder.path().join("checkout.html"), &updated.text).unwrap();
        // A method is chosen for the shopper, so the total shown is the total to pay.
        let method = updated.text.split("name=\"shipping_method_id\" value=\"").nth(1).expect("shipping methods").split('"').next().unwrap().to_owned();
        assert!(updated.text.contains(&format!("value=\"{method}\" checked")), "the first method is chosen");
        let total = hidden(&updated.text, "total");
        let cart_total = app.get(&format!("/api/v1/store/carts/{}", added.cookie("backroom_cart").unwrap()), &[]).await.body["totals"]["total"].to_string();
        assert_eq!(total, cart_total);

        // A total other than the one shown places nothing: the page shows the new one.
        let stale = send("/checkout", details("75001", "place", "4242424242424242", &method, "1"), None).await;
        assert_eq!(stale.status, 409, "{}", stale.text);
        assert!(stale.text.contains("The total has changed"));
        assert_eq!(hidden(&stale.text, "total"), total);
        let declined = send("/checkout", details("75001", "place", "4000000000000002", &method, &total), None).await;
        assert_eq!(declined.status, 402, "{}", declined.text);
        assert!(declined.text.contains("role=\"alert\""));
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 0, "a declined card, or a stale total, sells nothing");

        let placed = send("/checkout", details("75001", "place", "4242 4242 4242 4242", &method, &total), None).await;
        assert_eq!((placed.status, placed.header("location")), (303, Some("/checkout/complete")), "{}", placed.text);
        let again = send("/checkout", details("75001", "place", "4242 4242 4242 4242", &method, &total), None).await;
        assert_eq!((again.status, again.header("location")), (303, Some("/checkout/complete")));
        assert_eq!(app.count("SELECT COUNT(*) FROM orders").await, 1, "the form sent twice is one order");
        // Only the browser holding the cart sees its order.
        let stranger = app.get("/checkout/complete", &[("accept", "text/html"), ("cookie", "backroom_order=ord_01JZZZZZZZZZZZZZZZZZZZZZZZ")]).await;
        assert_eq!((stranger.status, stranger.header("location")), (303, Some("/cart")));
        let thanks = get("/checkout/complete".into()).await;
        assert_eq!(thanks.status, 200);
        assert!(thanks.text.contains("#1001") && thanks.text.contains("ana@example.com"), "{}", thanks.text);
        std::fs::write(folder.path().join("confirmation.html"), &thanks.text).unwrap();
        let mails = app.wait_for_emails(1).await;
        assert!(mails.iter().any(|mail| mail.to.contains("ana@example.com") && mail.subject.contains("1001")), "{:?}", mails.iter().map(|m| &m.subject).collect::<Vec<_>>());
        // The cart became the order: it is empty again.
        assert!(get("/cart".into()).await.text.contains("Your cart is empty"));
        assert_valid_html(folder.path());
    }

    async fn a_customer_registers_signs_in_and_finds_their_orders(backend) {
        let app = demo_shop(backend).await;
        let browser = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let get = |path: &'static str| {
            let request = browser.get(app.url(path)).header("accept", "text/html");
            async move { Resp::read(request.send().await.unwrap()).await }
        };
        let send = |path: &'static str, form: Vec<(&'static str, String)>| {
            let request = browser.post(app.url(path)).form(&form);
            async move { Resp::read(request.send().await.unwrap()).await }
        };
        let folder = tempfile::tempdir().unwrap();
        let away = get("/account").await;
        assert_eq!((away.status, away.header("location")), (303, Some("/account/signin")));

        let weak = send("/account/register", vec![("first_name", "Ana".into()), ("last_name", "Silva".into()), ("email", "ana@example.com".into()), ("password", "short".into())]).await;
        assert_eq!(weak.status, 422);
        assert!(weak.text.contains("`password`") && weak.text.contains("value=\"ana@example.com\""), "{}", weak.text);
        let registered = send("/account/register", vec![("first_name", "Ana".into()), ("last_name", "Silva".into()), ("email", "ana@example.com".into()), ("password", "a long enough passphrase".into())]).await;
        assert_eq!(registered.status, 200);
        assert!(registered.text.contains("Check your inbox"));
        std::fs::write(folder.path().join("register.html"), &registered.text).unwrap();

        let wrong = send("/account/signin", vec![("email", "ana@example.com".into()), ("password", "not the passphrase".into())]).await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.text.contains("The email or password is wrong."));
        std::fs::write(folder.path().join("signin.html"), &wrong.text).unwrap();
        let signed = send("/account/signin", vec![("email", "ana@example.com".into()), ("password", "a long enough passphrase".into())]).await;
        assert_eq!((signed.status, signed.header("location")), (303, Some("/account")));
        assert!(signed.set_cookie_line("backroom_session").is_some_and(|c| c.contains("HttpOnly")));
        let mine = get("/account").await;
        assert_eq!(mine.status, 200);
        assert!(mine.text.contains("ana@example.com") && mine.text.contains("No orders yet"));
        std::fs::write(folder.path().join("account-empty.html"), &mine.text).unwrap();

        // An address saved in the account is where checkout starts.
        let token = mine.text.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        let address = |line1: &str, csrf: &str| -> Vec<(&'static str, String)> {
            vec![("csrf", csrf.into()), ("first_name", "Ana".into()), ("last_name", "Silva".into()), ("line1", line1.into()),
                 ("city", "Paris".into()), ("postcode", "75001".into()), ("country", "FR".into()), ("default", "1".into())]
        };
        assert_eq!(send("/account/addresses", address("9 Rue Cler", "forged")).await.status, 403);
        let saved = send("/account/addresses", address("9 Rue Cler", &token)).await;
        assert_eq!((saved.status, saved.header("location")), (303, Some("/account#addresses")));
        assert!(get("/account").await.text.contains("Ana Silva, 9 Rue Cler, 75001, Paris, FR <strong>(default)</strong>"));

        // Checked out while signed in, the order is the customer's.
        let listed = app.get("/api/v1/store/products?available=true&sort=title&limit=1", &[]).await;
        let variant = listed.body["data"][0]["variants"].as_array().unwrap().iter().find(|v| v["availability"] != "out_of_stock").unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(send("/cart/lines", vec![("variant_id", variant), ("quantity", "1".into())]).await.status, 303);
        let checkout = get("/checkout").await;
        assert!(checkout.text.contains("value=\"9 Rue Cler\"") && checkout.text.contains("value=\"ana@example.com\""), "prefilled");
        let (key, csrf) = (hidden(&checkout.text, "key"), hidden(&checkout.text, "csrf"));
        let mut details = vec![
            ("key", key), ("csrf", csrf.clone()), ("email", "ana@example.com".into()), ("first_name", "Ana".into()),
            ("last_name", "Silva".into()), ("line1", "1 Rue de Rivoli".into()), ("city", "Paris".into()),
            ("postcode", "75001".into()), ("country", "FR".into()), ("provider", "test".into()),
            ("card_number", "4242424242424242".into()), ("action", "update".into()),
        ];
        let updated = send("/checkout", details.clone()).await;
        let method = updated.text.split("name=\"shipping_method_id\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        details.push(("shipping_method_id", method));
        details.push(("total", hidden(&updated.text, "total")));
        details.retain(|(name, _)| *name != "action");
        details.push(("action", "place".into()));
        let placed = send("/checkout", details).await;
        assert_eq!(placed.status, 303, "{}", placed.text);
        let mine = get("/account").await;
        assert!(mine.text.contains("#1001"), "{}", mine.text);
        assert_eq!(app.count("SELECT COUNT(*) FROM orders WHERE customer_id IS NOT NULL").await, 1);
        std::fs::write(folder.path().join("account.html"), &mine.text).unwrap();

        // Signing out takes the session's token: another site cannot sign the customer out.
        let forged = send("/account/signout", vec![("csrf", "not-the-token".into())]).await;
        assert_eq!(forged.status, 403);
        assert_eq!(get("/account").await.status, 200);
        let out = send("/account/signout", vec![("csrf", csrf)]).await;
        assert_eq!((out.status, out.header("location")), (303, Some("/")));
        assert!(out.set_cookie_line("backroom_cart").is_some_and(|c| c.contains("Max-Age=0")), "the cart goes with the session");
        assert_eq!(get("/account").await.status, 303);
        assert_valid_html(folder.path());
    }

    async fn emailed_links_open_pages_that_act_only_when_asked(backend) {
        let app = TestApp::spawn(backend).await;
        let browser = reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let get = |path: String| {
            let request = browser.get(app.url(&path)).header("accept", "text/html");
            async move { Resp::read(request.send().await.unwrap()).await }
        };
        let send = |path: &'static str, form: Vec<(&'static str, String)>| {
            let request = browser.post(app.url(path)).form(&form);
            async move { Resp::read(request.send().await.unwrap()).await }
        };
        // The path and query of the link to `path` in the latest email to `to`.
        let link = |to: &str, path: &str| -> String {
            let mail = app.emails().into_iter().rev().find(|mail| mail.to == to && mail.text.contains(path)).expect("the email");
            let at = mail.text.find(path).unwrap();
            mail.text[at..].split_whitespace().next().unwrap().to_owned()
        };
        let folder = tempfile::tempdir().unwrap();
        let registered = send("/account/register", vec![("first_name", "Ana".into()), ("last_name", "Silva".into()), ("email", "ana@example.com".into()), ("password", "a long enough passphrase".into())]).await;
        assert_eq!(registered.status, 200);
        app.wait_for_emails(1).await;

        // Opening the link changes nothing; the button does.
        let verify = link("ana@example.com", "/account/verify-email?token=");
        let opened = get(verify.clone()).await;
        assert_eq!(opened.status, 200);
        std::fs::write(folder.path().join("verify.html"), &opened.text).unwrap();
        assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE email_verified_at IS NOT NULL").await, 0);
        let token = hidden(&opened.text, "token");
        let confirmed = send("/account/verify-email", vec![("token", token.clone())]).await;
        assert_eq!(confirmed.status, 200);
        assert!(confirmed.text.contains("Your email address is confirmed"));
        assert_eq!(app.count("SELECT COUNT(*) FROM customers WHERE email_verified_at IS NOT NULL").await, 1);
        let again = send("/account/verify-email", vec![("token", token)]).await;
        assert!(again.status >= 400 && again.text.contains("could not be confirmed"), "{}", again.status);

        // A forgotten password: a link by email, then a new password.
        let asked = send("/account/reset-password", vec![("email", "ana@example.com".into())]).await;
        assert_eq!(asked.status, 200);
        assert!(asked.text.contains("Check your inbox"));
        app.wait_for_emails(2).await;
        let reset = get(link("ana@example.com", "/account/reset-password?token=")).await;
        std::fs::write(folder.path().join("reset.html"), &reset.text).unwrap();
        let weak = send("/account/reset-password", vec![("token", hidden(&reset.text, "token")), ("new_password", "short".into())]).await;
        assert_eq!(weak.status, 422);
        let changed = send("/account/reset-password", vec![("token", hidden(&reset.text, "token")), ("new_password", "another long passphrase".into())]).await;
        assert_eq!(changed.status, 200, "{}", changed.text);
        assert!(changed.text.contains("Your password is changed"));
        let signed = send("/account/signin", vec![("email", "ana@example.com".into()), ("password", "another long passphrase".into())]).await;
        assert_eq!(signed.status, 303);

        // The newsletter: confirmed, then left.
        let subscribed = app.post("/api/v1/store/newsletter/subscriptions", json!({"email": "ben@example.com"}), &[]).await;
        assert!(subscribed.status < 300, "{}", subscribed.text);
        app.wait_for_emails(3).await;
        let confirm = get(link("ben@example.com", "/newsletter/confirm?token=")).await;
        assert_eq!(confirm.status, 200);
        let joined = send("/newsletter/confirm", vec![("token", hidden(&confirm.text, "token"))]).await;
        assert!(joined.text.contains("You are subscribed"), "{}", joined.text);
        assert_eq!(app.count("SELECT COUNT(*) FROM newsletter_subscribers WHERE status = 'subscribed'").await, 1);
        app.wait_for_emails(4).await;
        let leave = get(link("ben@example.com", "/newsletter/unsubscribe?key=")).await;
        std::fs::write(folder.path().join("unsubscribe.html"), &leave.text).unwrap();
        let left = send("/newsletter/unsubscribe", vec![("key", hidden(&leave.text, "key"))]).await;
        assert!(left.text.contains("You have left the newsletter"), "{}", left.text);
        assert_eq!(app.count("SELECT COUNT(*) FROM newsletter_subscribers WHERE status = 'unsubscribed'").await, 1);
        assert_valid_html(folder.path());
    }

    async fn pages_are_cached_compressed_revalidated_and_refreshed_on_change(backend) {
        let app = demo_shop(backend).await;
        let auth = app.staff("admin@example.com", Role::Admin).await;
        let listed = app.get("/api/v1/store/products?limit=1", &[]).await;
        let handle = listed.body["data"][0]["handle"].as_str().unwrap().to_owned();
        let id = listed.body["data"][0]["id"].as_str().unwrap().to_owned();
        let path = format!("/products/{handle}");

        let first = page(&app, &path).await;
        assert_eq!(first.header("cache-control"), Some("public, max-age=60, stale-while-revalidate=300"));
        assert_eq!(first.header("vary"), Some("Accept-Encoding"));
        assert!(first.header("content-security-policy").unwrap().contains("script-src 'self'"));
        let etag = first.header("etag").unwrap().to_owned();
        let again = app.get(&path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status, 304);
        assert_eq!(page(&app, "/search?q=linen").await.header("cache-control"), Some("public, max-age=30"));
        assert_eq!(page(&app, "/nowhere").await.header("cache-control"), Some("no-store"));

        // Brotli and gzip, for clients that take them; the same page either way.
        for (encoding, decode) in [("br", "br"), ("gzip", "gzip")] {
            let raw = reqwest::Client::new();
            let response = raw.get(app.url(&path)).header("accept-encoding", encoding).send().await.unwrap();
            assert_eq!(response.headers()["content-encoding"], decode);
            let bytes = response.bytes().await.unwrap();
            assert!(bytes.len() < first.text.len() / 2, "{encoding}: {} of {}", bytes.len(), first.text.len());
            let mut plain = Vec::new();
            if encoding == "br" {
                brotli::BrotliDecompress(&mut std::io::Cursor::new(&bytes[..]), &mut plain).unwrap();
            } else {
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut plain).unwrap();
            }
            assert_eq!(String::from_utf8(plain).unwrap(), first.text);
        }

        // Sitemaps and feeds too, with their own ETag.
        for path in ["/sitemaps/products-1.xml", "/blog/rss.xml"] {
            let plain = app.get(path, &[]).await;
            assert_eq!(plain.status, 200, "{path}");
            let response = reqwest::Client::new().get(app.url(path)).header("accept-encoding", "br").send().await.unwrap();
            assert_eq!(response.headers()["content-encoding"], "br", "{path}");
            let bytes = response.bytes().await.unwrap();
            let mut text = Vec::new();
            brotli::BrotliDecompress(&mut std::io::Cursor::new(&bytes[..]), &mut text).unwrap();
            assert_eq!(String::from_utf8(text).unwrap(), plain.text, "{path}");
            let etag = plain.header("etag").unwrap().to_owned();
            assert_eq!(app.get(path, &[("if-none-match", &etag)]).await.status, 304, "{path}");
        }

        // Assets have hashed names and are kept for ever.
        let css = attribute(&first.text, "<link rel=\"stylesheet\"", "href").unwrap();
        assert!(css.starts_with("/assets/theme.") && css.ends_with(".css"), "{css}");
        let sheet = app.get(&css, &[]).await;
        assert_eq!(sheet.status, 200);
        assert_eq!(sheet.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert_eq!(sheet.header("content-type"), Some("text/css; charset=utf-8"));
        assert_eq!(app.get("/assets/theme.0000000000.css", &[]).await.status, 404);

        // A change shows at once.
        let product = app.get(&format!("/api/v1/admin/products/{id}"), &[("authorization", &auth)]).await;
        let version = product.header("etag").unwrap().to_owned();
        let renamed = app
            .patch(&format!("/api/v1/admin/products/{id}"), json!({"title": "A Brand New Title"}), &[("authorization", &auth), ("if-match", &version)])
            .await;
        assert_eq!(renamed.status, 200, "{}", renamed.text);
        let fresh = page(&app, &path).await;
        assert!(fresh.text.contains("A Brand New Title"));
        assert_ne!(fresh.header("etag").unwrap(), etag);
        assert_eq!(app.get(&path, &[("if-none-match", &etag)]).await.status, 200);
        let site = app.get("/api/v1/admin/site", &[("authorization", &auth)]).await;
        let version = site.header("etag").unwrap().to_owned();
        app.patch("/api/v1/admin/site", json!({"name": "Renamed Shop"}), &[("authorization", &auth), ("if-match", &version)]).await;
        assert!(page(&app, &path).await.text.contains("Renamed Shop"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_theme_folder_replaces_templates_and_assets() {
    let theme = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(theme.path().join("templates")).unwrap();
    std::fs::create_dir_all(theme.path().join("assets")).unwrap();
    std::fs::write(
        theme.path().join("templates/error.html"),
        "{% extends \"layout.html\" %}{% block main %}<h1>Lost? {{ heading }}</h1>{% endblock %}",
    )
    .unwrap();
    std::fs::write(theme.path().join("assets/theme.css"), "body{background:#000}").unwrap();
    // A home page that fails as it renders: the theme's error page answers, with a 500.
    std::fs::write(
        theme.path().join("templates/home.html"),
        "{% extends \"layout.html\" %}{% block main %}{{ asset(\"no-such-file.css\") }}{% endblock %}",
    )
    .unwrap();
    let folder = theme.path().to_path_buf();
    let app =
        TestApp::spawn_with(common::Backend::Sqlite, move |config| config.storefront.theme_dir = Some(folder)).await;
    let missing = page(&app, "/nowhere").await;
    assert_eq!(missing.status, 404);
    assert!(missing.text.contains("<h1>Lost? Page not found</h1>"), "{}", missing.text);
    let css = attribute(&missing.text, "<link rel=\"stylesheet\"", "href").unwrap();
    assert_eq!(app.get(&css, &[]).await.text, "body{background:#000}");
    let failed = page(&app, "/").await;
    assert_eq!(failed.status, 500);
    assert!(failed.text.contains("<h1>Lost? Something went wrong</h1>"), "{}", failed.text);
    assert_eq!(failed.header("cache-control"), Some("no-store"));
    assert!(!failed.text.contains("no-such-file"), "the cause is logged, not shown");
    // What the folder leaves alone is the built-in theme's.
    let js = attribute(&missing.text, "<script src=", "src").unwrap();
    assert!(app.get(&js, &[]).await.text.contains("Enhancements only"));

    // A template that does not compile stops the start, named.
    std::fs::write(theme.path().join("templates/home.html"), "{% block main %}").unwrap();
    let mut config = common::test_config(tempfile::tempdir().unwrap().path());
    config.storefront.theme_dir = Some(theme.path().to_path_buf());
    let refused = backroom::app::build_state(config).await.err().expect("the start is refused");
    assert!(format!("{refused:#}").contains("home.html"), "{refused:#}");
}
